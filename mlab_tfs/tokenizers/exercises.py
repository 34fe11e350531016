"""The tokenizer exercises in course order: (name, title, section of GUIDE.md).

Part 2 follows minbpe's order: train a BPE of your own (after the byte table and the
pre-tokenizer it needs), then apply merges by rank and load GPT-2's vocabulary."""

from mlab_tfs.testing.exercises import Exercise

PART = "tokenizers"

EXERCISES = [
    Exercise("clean_text", "Cleaning the text", "1-cleaning-the-text", difficulty=1, importance=2, minutes=15),
    Exercise("basic_tokenize", "BERT's basic tokenizer", "2-the-basic-tokenizer", difficulty=2, importance=2, minutes=20),
    Exercise("wordpiece", "WordPiece matching", "3-wordpiece", difficulty=2, importance=4, minutes=25),
    Exercise("bert_encode", "BERT encode and decode", "4-encode-and-decode", difficulty=2, importance=3, minutes=30),
    Exercise("bert_batch", "Batches: truncation and padding", "5-batches-truncation-and-padding", difficulty=3, importance=3, minutes=40),
    Exercise("bytes_to_unicode", "Bytes to unicode", "6-bytes-to-unicode", difficulty=1, importance=3, minutes=15),
    Exercise("pretokenize", "GPT-2's pre-tokenizer regex", "7-the-pre-tokenizer", difficulty=1, importance=3, minutes=15),
    Exercise("bpe_train", "Training BPE", "8-training-bpe", difficulty=4, importance=5, minutes=60),
    Exercise("bpe_merge", "Merging by rank", "9-merging-by-rank", difficulty=3, importance=5, minutes=35),
    Exercise("bpe_encode", "GPT-2 encode and decode", "10-gpt-2-encode-and-decode", difficulty=2, importance=4, minutes=30),
]
