"""Tokenizers from scratch: your version.

Every function and method below that raises ``NotImplementedError`` is an exercise. Replace
the ``raise`` line with your code; the docstring says what goes in, what comes out and what
usually goes wrong. In order:

    WordPiece (BERT)                              byte-level BPE (GPT-2), in minbpe's order
     1. clean_text                                 6. bytes_to_unicode
     2. basic_tokenize                             7. pretokenize
     3. wordpiece                                  8. ByteLevelBPETokenizer.train
     4. WordPieceTokenizer.tokenize/encode/decode  9. bpe_merge
     5. truncate_pair, WordPieceTokenizer.        10. ByteLevelBPETokenizer.tokenize/encode/decode
        build_inputs_with_special_tokens,
        create_token_type_ids_from_sequences

Each has a section in ``mlab_tfs/tokenizers/GUIDE.md``; each stub's message links to it.

    mlab-tfs check tokenizers                                # progress table, first failure explained
    pytest --impl=student mlab_tfs/tokenizers -x             # the same tests, plain pytest
    pytest --impl=student mlab_tfs/tokenizers --exercise wordpiece   # one exercise

Given, not exercises: the character classes in ``chars.py`` (is_control, is_whitespace,
is_punctuation, is_cjk_char, is_accent, nfd, lower) and the vocabulary files in ``files.py``
(the base classes below: from_pretrained, save_pretrained, vocab, encoder, merges, bpe_ranks,
special tokens, convert_tokens_to_ids, and the input checks require_text, require_int and
check_ids), and calling a tokenizer like transformers' in ``batching.py`` (``__call__``,
``pad``, the offsets).

Rules: plain Python, ``unicodedata`` and ``regex``. Don't call transformers, tokenizers or
tiktoken: they are what the tests compare you with. Import with absolute names
(``from mlab_tfs.tokenizers.chars import ...``): this folder is called ``tokenizers`` like
Hugging Face's package.

The solution is in ``mlab_tfs/tokenizers/solution.py``; look only after you have tried.
"""

from __future__ import annotations

import heapq  # noqa: F401  (imported for your code)
import warnings  # noqa: F401  (train warns when the texts run out of pairs)
from collections import Counter, defaultdict  # noqa: F401
from typing import Iterable, Mapping

import regex  # noqa: F401

from mlab_tfs.tokenizers.batching import BPECalls, WordPieceCalls  # given: __call__ and pad
from mlab_tfs.tokenizers.chars import (  # noqa: F401  (given: use them)
    is_accent,
    is_cjk_char,
    is_control,
    is_punctuation,
    is_whitespace,
    lower,
    nfd,
)
from mlab_tfs.tokenizers.files import (  # noqa: F401  (given: GPT2_PATTERN, Encoding, the file classes)
    GPT2_PATTERN,
    BPEFiles,
    Encoding,
    WordPieceFiles,
    check_ids,
    describe,
    instance_or_class_method,
    require_bool,
    require_int,
    require_text,
)

__all__ = [
    "clean_text",
    "basic_tokenize",
    "wordpiece",
    "truncate_pair",
    "WordPieceTokenizer",
    "Encoding",
    "bytes_to_unicode",
    "GPT2_PATTERN",
    "pretokenize",
    "bpe_merge",
    "ByteLevelBPETokenizer",
]

# ----------------------------------------------------------------------------------------
# WordPiece (BERT)
# ----------------------------------------------------------------------------------------


def clean_text(text: str, tokenize_chinese_chars: bool = True) -> str:
    """BERT's first pass over the raw text, character by character:

    - drop NUL ("\\0"), the replacement character "\\ufffd" and every ``is_control`` character
      (zero-width spaces, BOMs, escape codes...);
    - turn every ``is_whitespace`` character (tab, newline, no-break space...) into " ";
    - if ``tokenize_chinese_chars`` (the default), put a space on both sides of every
      ``is_cjk_char`` ideograph: "我爱" -> " 我  爱 ". If False, leave them as they are:
      "我爱" stays one word (transformers: ``BertNormalizer(handle_chinese_chars=False)``).

    Returns the new string; everything else is unchanged (case and accents come later).
    Checks (given): ``require_text("text", text)`` and ``require_bool("tokenize_chinese_chars",
    ...)``: a non-str text or a flag like "no" is a TypeError, not a silent True.

    Pitfall: test is_control before is_whitespace; a few characters (U+001C...) are both,
    and BERT drops them. "\\r\\n" becomes two spaces, which is fine: splitting ignores runs.
    """
    raise NotImplementedError("Exercise 1 (clean text): see mlab_tfs/tokenizers/GUIDE.md#1-cleaning-the-text")


def basic_tokenize(text: str, lowercase: bool = True, strip_accents: bool | None = None,
                   tokenize_chinese_chars: bool = True) -> list[str]:
    """BERT's basic tokenizer: text -> words, before WordPiece.

    1. ``clean_text(text, tokenize_chinese_chars)``.
    2. Strip accents when ``strip_accents`` is True, or when it is None and ``lowercase`` is
       True (uncased BERT): ``nfd(text)`` splits "é" into "e" + a combining accent, then drop
       every character for which ``is_accent`` is true.
    3. Lower-case with ``lower(text)`` when ``lowercase`` (not ``str.lower``: see its docstring).
    4. Split on whitespace, then split every ``is_punctuation`` character off as a word of its
       own: "Hello, world!" -> ["hello", ",", "world", "!"].

    Returns the list of words, no empty strings. Checks (given): ``require_bool`` for
    lowercase and strip_accents (``none_ok=True``); clean_text checks the text.

    Hint: surrounding punctuation with spaces and calling ``.split()`` does step 4 in one go.
    Speed (optional): ``str.translate`` with a dict from code point to replacement runs in C.
    """
    raise NotImplementedError("Exercise 2 (basic tokenizer): see mlab_tfs/tokenizers/GUIDE.md#2-the-basic-tokenizer")


def wordpiece(word: str, vocab: Mapping[str, int], unk_token: str = "[UNK]", max_chars: int = 100) -> list[str]:
    """Split one word into vocabulary pieces, greedy longest-match-first.

    From the start of the word take the longest prefix that is in ``vocab``; from where it
    ends take the longest piece that is in ``vocab`` *with "##" in front* (a continuation);
    and so on to the end. "unaffable" -> ["un", "##aff", "##able"] with a vocabulary that has
    "un" but not "una" (BERT's README example); MiniLM's has "una": ["una", "##ffa", "##ble"].

    Returns ``[unk_token]`` (one token for the whole word) if some position has no piece at
    all, or if the word is longer than ``max_chars`` characters (a word of exactly
    ``max_chars`` is still matched).

    Pitfalls: check the length first (a 10 MB "word" must not be searched); no
    backtracking (BERT's rule, even if another split would work); only continuations get "##".
    """
    raise NotImplementedError("Exercise 3 (wordpiece): see mlab_tfs/tokenizers/GUIDE.md#3-wordpiece")


def truncate_pair(n_first: int, n_second: int | None, max_tokens: int, strategy: str = "longest_first") -> tuple[int, int | None]:
    """How many tokens to keep of each text so that both fit in ``max_tokens`` (special tokens
    already subtracted). ``n_second`` is None without a pair; then return (min(n_first,
    max_tokens), None).

    strategy:
    - "longest_first" (transformers' fast rule): if the two fit, keep both. Otherwise, if
      cutting only the longer one to ``max_tokens - shorter`` is enough, do that; if not, both
      get ``max_tokens // 2`` and the *longer* one gets the odd token (``+ max_tokens % 2``);
      when they are equally long, the second gets it.
    - "only_first" / "only_second": cut only that one; ValueError if that cannot be enough
      (or "only_second" without a pair, when the text alone does not fit).
    - max_tokens = 0, whatever the strategy: keep nothing, (0, 0) or (0, None).

    Example: (10, 2, 8) -> (6, 2); (10, 9, 7) -> (4, 3); (9, 10, 7) -> (3, 4); (10, 10, 7) -> (3, 4).
    Source: the Rust ``tokenizers`` library's ``truncate_encodings`` (utils/truncation.rs), which
    transformers' fast tokenizers run.

    The given ``__call__`` calls this with ``max_length`` minus the special tokens, then cuts
    (and, with ``return_overflowing_tokens``, makes the overflow windows). Checks: the counts
    with ``require_int`` (minimum 0), ValueError for an unknown strategy.
    """
    raise NotImplementedError("Exercise 5 (batches): see mlab_tfs/tokenizers/GUIDE.md#5-batches-truncation-and-padding")


class WordPieceTokenizer(WordPieceCalls, WordPieceFiles):
    """BERT's tokenizer. Given by the base class: ``from_pretrained(folder, tokenizer.json or vocab.txt)``,
    ``self.vocab`` (token -> id), ``self.ids_to_tokens``, ``self.do_lower_case``,
    ``self.strip_accents``, ``self.max_input_chars_per_word``, ``self.special_tokens`` (the
    list of special token strings), ``self.unk_token``, ``cls_token_id``, ``sep_token_id``,
    ``pad_token_id``, ``model_max_length``, ``convert_tokens_to_ids``, ``vocab_size``.

    Given by ``WordPieceCalls`` (batching.py): ``tokenizer(text, text_pair, padding=...,
    truncation=..., max_length=..., ...)`` and ``tokenizer.pad(...)`` with transformers'
    arguments and results. It calls your tokenize, truncate_pair (through ``_truncate_pair``
    below), build_inputs_with_special_tokens and create_token_type_ids_from_sequences."""

    _truncate_pair = staticmethod(truncate_pair)  # how the given __call__ truncates: yours

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of ``text``: "Hello, unaffable!" -> ["hello", ",", "una", "##ffa", "##ble", "!"]
        with MiniLM's vocabulary.

        Special tokens written in the text ("[SEP]", "[MASK]", exactly, case and all) stay
        whole and are not cleaned or lower-cased: split them out of the raw text first, then
        basic_tokenize + wordpiece the parts between them.

        Pass ``self.tokenize_chinese_chars`` on to basic_tokenize with the other options.
        Raise TypeError (``require_text("text", text)``) when text is not a str.
        Hint: cache wordpiece's result per word in a dict; words repeat a lot.
        """
        raise NotImplementedError("Exercise 4 (encode and decode): see mlab_tfs/tokenizers/GUIDE.md#4-encode-and-decode")

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """Ids of ``[CLS] text [SEP]``, or ``[CLS] text [SEP] text_pair [SEP]``; without [CLS]
        and [SEP] when ``add_special_tokens`` is False. Unknown pieces are [UNK]'s id. An empty
        ``text_pair`` ("") counts as none (``[CLS] text [SEP]``), as transformers' encode.
        Check the flag with ``require_bool("add_special_tokens", add_special_tokens)``."""
        raise NotImplementedError("Exercise 4 (encode and decode): see mlab_tfs/tokenizers/GUIDE.md#4-encode-and-decode")

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """The text of ``ids``, as transformers' fast BERT tokenizer writes it: tokens joined by
        single spaces, except that a "##" piece is glued to the token before it (without its
        "##") and so are ".", ",", "!" and "?". The first token is written as it is.
        ``skip_special_tokens`` drops [CLS], [SEP], [PAD]... first.

        [CLS] hello , world ! -> "[CLS] hello, world!"; don ' t -> "don ' t".
        Raise ValueError for ids outside [0, vocab_size): ``check_ids("ids", ids, self.vocab_size)``;
        check the flag with ``require_bool("skip_special_tokens", skip_special_tokens)``.
        """
        raise NotImplementedError("Exercise 4 (encode and decode): see mlab_tfs/tokenizers/GUIDE.md#4-encode-and-decode")

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        """One row of BERT's input: ``[CLS] A [SEP]``, or ``[CLS] A [SEP] B [SEP]`` when
        ``token_ids_1`` (the pair) is not None: ``[self.cls_token_id, *token_ids_0,
        self.sep_token_id]`` and so on. Returns a new list.

        The given ``__call__`` (batching.py) calls this on every row, after truncation, with
        *markers* in place of the ids to learn where each text's tokens land (for the offsets
        and the special-tokens mask): put the items you are given in the row as they are, do
        not look at their values. ``build_inputs_with_special_tokens([7, 8], [9])`` ->
        ``[101, 7, 8, 102, 9, 102]`` with MiniLM's vocabulary. Source: transformers'
        models/bert/tokenization_bert_legacy.py (``build_inputs_with_special_tokens``), and the
        fast tokenizer's template "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1" (tokenization_bert.py).
        """
        raise NotImplementedError("Exercise 5 (batches): see mlab_tfs/tokenizers/GUIDE.md#5-batches-truncation-and-padding")

    def create_token_type_ids_from_sequences(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        """The token types of the row build_inputs_with_special_tokens makes, one per token: 0
        for ``[CLS] A [SEP]``, 1 for ``B [SEP]`` (BERT's segment embeddings tell the two texts
        apart). ``([7, 8], [9])`` -> ``[0, 0, 0, 0, 1, 1]``; ``([7, 8], None)`` -> ``[0, 0, 0, 0]``.
        Only the lengths of the lists matter (they may hold markers, as above). Source: the
        ":0" / ":1" of the fast tokenizer's template (transformers' models/bert/tokenization_bert.py).
        """
        raise NotImplementedError("Exercise 5 (batches): see mlab_tfs/tokenizers/GUIDE.md#5-batches-truncation-and-padding")


# ----------------------------------------------------------------------------------------
# Byte-level BPE (GPT-2)
# ----------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte value 0..255 to a printable character.

    The 188 "nice" bytes stand for themselves: "!" (33) to "~" (126), "¡" (161) to "¬" (172)
    and "®" (174) to "ÿ" (255). The other 68 (0-32, 127-160, 173) get chr(256), chr(257)...
    in increasing byte order: so space (32) is "Ġ" (U+0120) and newline (10) is "Ċ" (U+010A).

    Returns a dict of 256 entries with 256 different characters.
    """
    raise NotImplementedError("Exercise 6 (bytes to unicode): see mlab_tfs/tokenizers/GUIDE.md#6-bytes-to-unicode")


def pretokenize(text: str) -> list[str]:
    """GPT-2's words: every match of ``GPT2_PATTERN`` (compile it once with the ``regex``
    package; Python's ``re`` has no ``\\p{L}``), in order. "Hello  world" -> ["Hello", " ",
    " world"]. The matches cover the text: ``"".join(pretokenize(t)) == t``."""
    raise NotImplementedError("Exercise 7 (the pre-tokenizer): see mlab_tfs/tokenizers/GUIDE.md#7-the-pre-tokenizer")


def bpe_merge(symbols: list[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Merge one word's symbols by rank: while some adjacent pair (a, b) is in ``ranks``,
    merge the pair with the lowest rank into a + b, the leftmost where it occurs more than
    once; when no adjacent pair has a rank, return the symbols.

    symbols: a word as single characters of bytes_to_unicode ("Ġ", "t", "o", "k"...).
    ranks: (left, right) -> rank, 0 for the first line of merges.txt (``self.bpe_ranks``).

    Example with ranks {("a","b"): 0, ("ab","c"): 1, ("c","d"): 2}: a b c d -> ab c d ->
    abc d (cd never happens: c was merged into abc first).

    Hint: the simple loop (find the best pair, merge it, start over) is right and is fine for
    normal words. A 10 MB run of letters is one word, though, and the simple loop is then
    quadratic; see the guide for the O(n log n) version with a heap.
    """
    raise NotImplementedError("Exercise 9 (merging by rank): see mlab_tfs/tokenizers/GUIDE.md#9-merging-by-rank")


class ByteLevelBPETokenizer(BPECalls, BPEFiles):
    """GPT-2's tokenizer. Given by the base class: ``from_pretrained(folder)``,
    ``save_pretrained(folder)``, ``self.encoder`` (token string -> id), ``self.decoder``
    (id -> token string), ``self.merges`` (list of pairs), ``self.bpe_ranks`` (pair -> rank),
    ``self.special_tokens`` (token -> id), ``self.cache`` (an empty dict for you), ``vocab_size``.
    ``ByteLevelBPETokenizer()`` with no arguments has the 256 bytes and no merges (to train).

    A special token has an id of its own, which ordinary text never encodes to, even when its
    string is also an ordinary token ("!" is the byte 0x21's token; ``encoder["!"]`` is 33,
    ``special_tokens["!"]`` another id). ``decoder`` maps both ids.

    Given by ``BPECalls`` (batching.py): ``tokenizer(text, ...)`` and ``tokenizer.pad(...)``
    as transformers' GPT2TokenizerFast (no special tokens added; padding needs
    ``tokenizer.pad_token = tokenizer.eos_token``). They call your encode and tokenize
    (with allowed_special="all"), and truncate_pair."""

    _truncate_pair = staticmethod(truncate_pair)  # how the given __call__ truncates: yours

    @instance_or_class_method
    def train(self, texts: str | Iterable[str], vocab_size: int, special_tokens: list[str] | None = None) -> ByteLevelBPETokenizer:
        """Learn a vocabulary of ``vocab_size`` tokens from ``texts``: ids 0..255 are the bytes,
        then one new token per merge, then ``special_tokens``. Returns self, with its
        vocabulary replaced: ``BPEFiles.__init__(self, encoder, merges, specials)`` with
        token strings written in bytes_to_unicode characters, as vocab.json has them.

        1. Count the words of all texts (pretokenize); work on distinct words as lists of ids.
        2. Count adjacent pairs, each weighted by its word's count; remember which words hold
           each pair.
        3. Repeat: take the most frequent pair (ties: the smallest (left id, right id)),
           give it a new id, rewrite the words that hold it, and update the counts of only the
           pairs in those words (take the old word's pairs out, put the new word's in).

        4. Stop when the 256 bytes, the new tokens and the special tokens fill ``vocab_size`` exactly
           (a merge whose bytes are already a token reuses its id and adds none); if no pair is
           left before that, stop there with a ``warnings.warn`` (the vocabulary is then smaller).
        5. The special tokens get the ids after the last merge, in their order: a fresh id each,
           even one whose string is already a token ("!", a learned "the").

        ``vocab_size``: ``require_int("vocab_size", vocab_size)``; ValueError if it is below
        256 + len(special_tokens). ``special_tokens``: a list of distinct non-empty str
        (TypeError / ValueError naming it otherwise). TypeError for texts that are not str
        (``require_text(f"texts[{i}]", text)``).
        Hint: a heap of (-count, pair) with stale entries skipped finds the best pair fast.
        Needs only your bytes_to_unicode and pretokenize (exercises 6 and 7): the tests of this
        exercise look at merges, ids and errors; encoding with what you trained is exercise 10.
        """
        raise NotImplementedError("Exercise 8 (training BPE): see mlab_tfs/tokenizers/GUIDE.md#8-training-bpe")

    def tokenize(self, text: str, allowed_special: str | set[str] = "none") -> list[str]:
        """BPE tokens as strings: "Hello world" -> ["Hello", "Ġworld"].

        1. Split out the allowed special tokens (``self._allowed(allowed_special)`` gives the
           set: "all", "none" or a set of names); they are tokens as they are.
        2. pretokenize the rest; for each word: its UTF-8 bytes, each as its bytes_to_unicode
           character, then bpe_merge with ``self.bpe_ranks``.

        Not allowed, "<|endoftext|>" is ordinary text. ``require_text("text", text)`` checks
        the text: TypeError for non-str, ValueError for lone surrogates (no UTF-8 bytes).
        Hint: cache each word's tokens in ``self.cache``; that is most of the speed.
        """
        raise NotImplementedError("Exercise 10 (GPT-2 encode and decode): see mlab_tfs/tokenizers/GUIDE.md#10-gpt-2-encode-and-decode")

    def encode(self, text: str, allowed_special: str | set[str] = "none") -> list[int]:
        """The ids of ``tokenize(text, allowed_special)``: ``self.encoder`` for the BPE tokens,
        ``self.special_tokens`` for the allowed special tokens. (Split the text as tokenize
        does: a special "!" and an ordinary "!" are the same string with different ids.)"""
        raise NotImplementedError("Exercise 10 (GPT-2 encode and decode): see mlab_tfs/tokenizers/GUIDE.md#10-gpt-2-encode-and-decode")

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``: each id's bytes, joined, decoded as UTF-8 with ``errors="replace"``
        (ids may cut a character's bytes apart). An ordinary token's bytes: map each character
        of ``self.decoder[id]`` back to its byte. A special token's id (a value of
        ``self.special_tokens``) stands for its text as it is: ``token.encode("utf-8")``.
        ``decode(encode(s)) == s``, as tiktoken's decode.
        ValueError for ids outside [0, vocab_size): ``check_ids("ids", ids, self.vocab_size)``.
        """
        raise NotImplementedError("Exercise 10 (GPT-2 encode and decode): see mlab_tfs/tokenizers/GUIDE.md#10-gpt-2-encode-and-decode")
