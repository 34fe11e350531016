"""The common mistakes of the tokenizer exercises (see mlab_tfs/testing/mistakes.py).

The tests recognise each one by what it computes (tests/mistaken.py), the guide lists them
under each exercise, and tests/plants.py writes each into the solution to check that
``mlab-tfs check`` names it.
"""

from mlab_tfs.testing.mistakes import Catalogue, Mistake

PART = "tokenizers"

MISTAKES = Catalogue(PART, [
    # 1. clean_text
    Mistake("clean_text", "control_chars_kept", "control and format characters kept",
            "Invisible characters of categories Cc, Cf and Co (escape codes, zero-width spaces, byte-order marks) "
            "are dropped by `is_control`, or they end up inside words as characters no vocabulary has."),
    Mistake("clean_text", "replacement_char_kept", "NUL and U+FFFD kept",
            "BERT drops U+FFFD (the replacement character of undecodable bytes) by name, beside NUL: it is a "
            "symbol (category So), not a control character, so `is_control` alone keeps it (transformers' "
            "`_clean_text`)."),
    Mistake("clean_text", "cjk_not_spaced", "no spaces around CJK ideographs",
            "Chinese is written without spaces: each ideograph (`is_cjk_char`) gets a space on both sides, so that "
            "it becomes a word of its own."),
    Mistake("clean_text", "whitespace_dropped_as_control", "tabs and newlines dropped as control characters",
            "\\t, \\n and \\r are of category Cc, but they separate words: `is_control` leaves them out, so that "
            "`is_whitespace` turns them into spaces (test for control characters by category and \"a\\tb\" becomes "
            "one word)."),
    # 2. basic_tokenize
    Mistake("basic_tokenize", "accents_not_stripped", "accents not stripped (uncased)",
            "Uncased BERT strips accents (`strip_accents=None` means \"when lower-casing\"): `nfd`, then drop the "
            "`is_accent` marks, so \"Héllo\" is \"hello\"."),
    Mistake("basic_tokenize", "punctuation_not_split", "punctuation not split off",
            "Every punctuation character (`is_punctuation`: Unicode's P* and every ASCII symbol) becomes a word of "
            "its own: \"world!\" is two words."),
    Mistake("basic_tokenize", "str_lower_final_sigma", "str.lower (the final sigma)",
            "Python's `str.lower` gives a final \"ς\" at the end of a word; the fast tokenizer lower-cases one "
            "character at a time (\"σ\"): use `chars.lower` ([why the given classes](#why-the-given-character-classes-optional))."),
    Mistake("basic_tokenize", "strip_accents_flag_ignored", "strip_accents ignored (accents follow lowercase)",
            "`strip_accents=True` strips accents even when cased, `False` keeps them even when uncased; only `None` "
            "follows `lowercase`."),
    Mistake("basic_tokenize", "chinese_chars_flag_ignored", "tokenize_chinese_chars not passed on to clean_text",
            "With `tokenize_chinese_chars=False` the ideographs stay inside words; the flag must reach "
            "`clean_text`, or CJK text is split anyway."),
    # 3. wordpiece
    Mistake("wordpiece", "no_hash_prefix", "WordPiece without the ## prefix on continuations",
            "A piece that continues a word is looked up, and returned, as \"##\" + piece: \"able\" at the start of a "
            "word and \"##able\" inside one are different tokens."),
    Mistake("wordpiece", "unknown_piece_not_whole_word", "only the unmatched piece as [UNK] (not the whole word)",
            "If some position has no piece in the vocabulary, the *whole word* is [UNK], not the pieces so far "
            "plus [UNK]."),
    Mistake("wordpiece", "shortest_match_first", "shortest match first (not greedy longest-first)",
            "WordPiece takes the *longest* piece in the vocabulary at each position, and never backtracks."),
    Mistake("wordpiece", "long_word_not_unknown", "no [UNK] for a word over max_chars",
            "A word longer than `max_chars` (100) is [UNK] before any matching: matching costs up to L²/2 lookups."),
    Mistake("wordpiece", "max_chars_off_by_one", "[UNK] at exactly max_chars (>= instead of >)",
            "A word of exactly `max_chars` characters is still matched; only longer ones are [UNK] "
            "(tokenizers' `max_input_chars_per_word`)."),
    # 4. bert_encode
    Mistake("bert_encode", "no_special_tokens", "no [CLS] and [SEP] around the text",
            "`encode` adds [CLS] before and [SEP] after the text (unless `add_special_tokens=False`)."),
    Mistake("bert_encode", "special_tokens_split", "special tokens in the text tokenized as text",
            "Special tokens written in the text (\"[SEP]\", \"[MASK]\") are split out of the raw text first and "
            "kept whole; the basic step would lower-case them and split off their brackets."),
    Mistake("bert_encode", "hash_pieces_not_glued", "decode not gluing ## pieces to the previous token",
            "`decode` joins tokens with spaces but glues a \"##\" piece, without its \"##\", to the token before it."),
    Mistake("bert_encode", "punctuation_not_glued", "decode putting a space before . , ! ?",
            "The fast tokenizer's decoder also attaches \".\", \",\", \"!\" and \"?\" to the previous token "
            "([fast and legacy](#fast-and-legacy-bert-tokenizers-optional))."),
    # 5. bert_batch
    Mistake("bert_batch", "both_halved_when_one_cut_is_enough", "both texts cut to half when cutting the longer is enough",
            "longest_first cuts only the longer text when cutting it to what the shorter leaves is enough; only "
            "when both must be cut does each get half."),
    Mistake("bert_batch", "odd_token_to_the_shorter", "the odd token given to the shorter text",
            "When both texts are cut, each gets max_tokens // 2 and the *longer* one the odd token (the second one "
            "when they are equally long), as tokenizers' `truncate_encodings`."),
    Mistake("bert_batch", "first_text_cut_not_the_longer", "the first text cut instead of the longer one",
            "longest_first cuts the longer text, whichever of the two it is."),
    Mistake("bert_batch", "only_first_and_only_second_swapped", "only_first and only_second swapped",
            "`only_first` cuts the first text (`text`), `only_second` the pair (`text_pair`)."),
    Mistake("bert_batch", "zero_budget_keeps_a_text", "max_tokens 0 keeping a text",
            "With no room at all (max_tokens 0) nothing of either text is kept, whatever the strategy."),
    Mistake("bert_batch", "no_error_when_the_other_text_fills_it", "no error when the other text alone fills max_tokens",
            "`only_first` / `only_second` cannot fit when the other text alone fills max_tokens: a ValueError, as "
            "transformers' \"Sequence to truncate too short\"."),
    Mistake("bert_batch", "pair_row_without_final_sep", "no [SEP] at the end of a pair's row",
            "A pair's row is [CLS] A [SEP] B [SEP]: the pair ends with a [SEP] too."),
    Mistake("bert_batch", "two_seps_between_the_texts", "two [SEP] between the texts (RoBERTa's)",
            "BERT has one [SEP] between the texts; two (</s></s>) is RoBERTa's format."),
    Mistake("bert_batch", "cls_and_sep_swapped", "[CLS] and [SEP] swapped",
            "[CLS] comes first, a [SEP] after each text."),
    Mistake("bert_batch", "token_types_all_zero", "token type 0 for the pair too",
            "Token types are 0 for [CLS] A [SEP] and 1 for B [SEP]."),
    Mistake("bert_batch", "final_sep_type_zero", "token type 0 for the pair's final [SEP]",
            "The pair's [SEP] belongs to the pair: type 1."),
    Mistake("bert_batch", "first_sep_type_one", "token type 1 for the first text's [SEP]",
            "The first text's [SEP] belongs to the first text: type 0."),
    # 6. bytes_to_unicode
    Mistake("bytes_to_unicode", "unprintable_bytes_offset_by_value", "chr(256 + byte) for the unprintable bytes",
            "The 68 unprintable bytes get chr(256), chr(257)... in byte order, counted over those bytes only: "
            "chr(256 + n) for the n-th of them, not chr(256 + b). Space and newline coincide, byte 127 does not."),
    Mistake("bytes_to_unicode", "only_ascii_printable", "only ASCII counted as printable",
            "The printable Latin-1 bytes ¡..¬ and ®..ÿ stand for themselves too; only 68 bytes are remapped."),
    Mistake("bytes_to_unicode", "extra_chars_out_of_byte_order", "the remapped bytes not numbered in byte order",
            "The n-th unprintable byte, counting up from byte 0, gets chr(256 + n): space (the 33rd) is \"Ġ\", "
            "newline \"Ċ\". Another order gives other characters, and GPT-2's vocabulary no longer reads."),
    Mistake("bytes_to_unicode", "soft_hyphen_printable", "the soft hyphen (0xAD) counted as printable",
            "GPT-2's ranges skip 0xAD, the invisible soft hyphen: it is remapped (to \"Ń\")."),
    # 7. pretokenize
    Mistake("pretokenize", "spaces_not_attached", "spaces as pieces of their own (no \" ?\" before words)",
            "A word keeps the one space before it (\" ?\\p{L}+\"): \" world\" is one piece, and BPE learns \"Ġworld\"."),
    Mistake("pretokenize", "no_whitespace_lookahead", "whitespace without the (?!\\S) lookahead",
            "\"\\s+(?!\\S)\" leaves the last space of a run to start the next word: \"a   b\" is "
            "[\"a\", \"  \", \" b\"]."),
    Mistake("pretokenize", "contractions_not_split", "contractions not split off first",
            "\"'s|'t|'re|'ve|'m|'ll|'d\" come first in the pattern: \"I'm\" is [\"I\", \"'m\"]."),
    Mistake("pretokenize", "ascii_letters_only", "[a-zA-Z] for letters (not \\p{L})",
            "Letters are `\\p{L}` and digits `\\p{N}`: any script's letters, not just ASCII."),
    # 8. bpe_train
    Mistake("bpe_train", "ties_broken_differently", "BPE training ties broken differently (not the smallest pair of ids)",
            "Among pairs of equal count the smallest (left id, right id) goes first; the first seen or the "
            "largest gives other merges, and the order of a dict or heap is no rule."),
    Mistake("bpe_train", "word_counts_ignored", "each distinct word counted once (its frequency ignored)",
            "A pair's count is the sum over words of its occurrences times the word's frequency."),
    Mistake("bpe_train", "pairs_counted_across_words", "pairs counted across words (no pre-tokenizer)",
            "Pairs are counted inside GPT-2's words (`pretokenize`), as encoding merges inside words only."),
    # 9. bpe_merge
    Mistake("bpe_merge", "merge_by_frequency", "BPE merging by frequency instead of rank",
            "At each step merge the adjacent pair of *lowest rank* (the merge learned first), not the most "
            "frequent pair in the word nor the largest rank: the rank is an order, not a count."),
    Mistake("bpe_merge", "leftmost_pair_first", "the leftmost mergeable pair first (not the lowest rank)",
            "Merging left to right whatever the ranks gives other tokens: among all adjacent pairs, the lowest "
            "rank goes first, wherever it is."),
    Mistake("bpe_merge", "overlaps_merged_from_the_right", "overlapping pairs merged from the right",
            "Among equal ranks the leftmost goes first: \"aaa\" with a+a is [\"aa\", \"a\"], not [\"a\", \"aa\"]."),
    # 10. bpe_encode
    Mistake("bpe_encode", "no_pretokenize", "BPE over the whole text (no pre-tokenizer)",
            "BPE never merges across GPT-2's words: split with `pretokenize` first and merge each word alone."),
    Mistake("bpe_encode", "decode_tokens_separately", "decode decoding each token's bytes alone",
            "A character's UTF-8 bytes can be split over tokens: join all the bytes first, then decode once "
            "(errors=\"replace\"), or a split emoji becomes several U+FFFD."),
    Mistake("bpe_encode", "special_tokens_always_matched", "special tokens matched when not allowed",
            "\"<|endoftext|>\" in a text is ordinary text unless `allowed_special` allows it (tiktoken's "
            "`encode_ordinary`), so that user text cannot inject control tokens."),
])
