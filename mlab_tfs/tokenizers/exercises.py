"""The tokenizer exercises in course order: (name, title, section of GUIDE.md)."""

from mlab_tfs.testing.exercises import Exercise

PART = "tokenizers"

EXERCISES = [
    Exercise("clean_text", "Cleaning the text", "1-cleaning-the-text"),
    Exercise("basic_tokenize", "BERT's basic tokenizer", "2-the-basic-tokenizer"),
    Exercise("wordpiece", "WordPiece matching", "3-wordpiece"),
    Exercise("bert_encode", "BERT encode and decode", "4-encode-and-decode"),
    Exercise("bert_batch", "Batches: truncation and padding", "5-batches-truncation-and-padding"),
    Exercise("bytes_to_unicode", "Bytes to unicode", "6-bytes-to-unicode"),
    Exercise("pretokenize", "GPT-2's pre-tokenizer regex", "7-the-pre-tokenizer"),
    Exercise("bpe_merge", "Merging by rank", "8-merging-by-rank"),
    Exercise("bpe_encode", "GPT-2 encode and decode", "9-gpt-2-encode-and-decode"),
    Exercise("bpe_train", "Training BPE", "10-training-bpe"),
]
