"""Tokenizers from scratch: BERT's WordPiece and GPT-2's byte-level BPE, with BPE training.

Pure Python (and the ``regex`` package for GPT-2's pattern). The tests hold both tokenizers
equal, id for id, to transformers' tokenizers and tiktoken on the real vocabularies.

    WordPiece (BERT)                         byte-level BPE (GPT-2), in minbpe's order
    1. clean_text                            6. bytes_to_unicode
    2. basic_tokenize                        7. pretokenize
    3. wordpiece                             8. ByteLevelBPETokenizer.train
    4. WordPieceTokenizer.tokenize/encode/   9. bpe_merge
       decode                               10. ByteLevelBPETokenizer.tokenize/encode/decode
    5. truncate_pair, WordPieceTokenizer.
       build_inputs_with_special_tokens/
       create_token_type_ids_from_sequences
       (batches; the call is batching.py)

Vocabulary files, special tokens and input checks are in ``files.py``; the character classes
(control, whitespace, punctuation, CJK, accents) in ``chars.py``.
"""

from __future__ import annotations

import heapq
import warnings
from collections import Counter, defaultdict
from typing import Iterable, Mapping

import regex

from mlab_tfs.tokenizers.batching import BPECalls, WordPieceCalls
from mlab_tfs.tokenizers.chars import is_accent, is_cjk_char, is_control, is_punctuation, is_whitespace, lower, nfd
from mlab_tfs.tokenizers.files import (  # noqa: F401  (GPT2_PATTERN, Encoding: re-exported)
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
    "bytes_to_unicode",
    "GPT2_PATTERN",
    "pretokenize",
    "bpe_merge",
    "ByteLevelBPETokenizer",
]


class _CharMap(dict):
    """A str.translate table that fills itself: rule(ch) runs once per distinct character,
    after which translate works at C speed. rule returns the replacement string."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def __missing__(self, cp: int) -> str:
        self[cp] = out = self.rule(chr(cp))
        return out


# ----------------------------------------------------------------------------------------
# WordPiece (BERT)
# ----------------------------------------------------------------------------------------


def _clean_char(ch: str, cjk: bool = True) -> str:
    if ch == "\0" or ch == "\ufffd" or is_control(ch):
        return ""  # NUL, the replacement character and invisible control/format characters go
    if is_whitespace(ch):
        return " "  # tabs, newlines, no-break spaces... all become one kind of space
    if cjk and is_cjk_char(ch):
        return f" {ch} "  # each ideograph is a word of its own
    return ch


_CLEAN = {True: _CharMap(_clean_char), False: _CharMap(lambda ch: _clean_char(ch, cjk=False))}


def clean_text(text: str, tokenize_chinese_chars: bool = True) -> str:
    """Drop control characters, turn whitespace into " ", put spaces around CJK ideographs
    (unless tokenize_chinese_chars is False: then they are letters like any other).

    transformers: BertNormalizer(clean_text=True, handle_chinese_chars=tokenize_chinese_chars).
    TypeError for a text that is not a str or a flag that is not a bool ("no" is not False).
    """
    require_text("text", text)
    return text.translate(_CLEAN[require_bool("tokenize_chinese_chars", tokenize_chinese_chars)])


_NO_ACCENTS = _CharMap(lambda ch: "" if is_accent(ch) else ch)
_SPLIT_PUNCT = _CharMap(lambda ch: f" {ch} " if is_punctuation(ch) else ch)


def basic_tokenize(text: str, lowercase: bool = True, strip_accents: bool | None = None,
                   tokenize_chinese_chars: bool = True) -> list[str]:
    """BERT's basic step: clean, strip accents, lower-case, split on whitespace and punctuation.

    The order is the fast tokenizer's: accents are stripped before lower-casing.
    tokenize_chinese_chars=False keeps runs of CJK ideographs together as words (the fast
    tokenizer's handle_chinese_chars=False). TypeError for a text that is not a str, or flags
    that are not bools (strip_accents may be None).
    """
    lowercase = require_bool("lowercase", lowercase)
    strip_accents = require_bool("strip_accents", strip_accents, none_ok=True)
    text = clean_text(text, tokenize_chinese_chars)
    if lowercase if strip_accents is None else strip_accents:
        if not text.isascii():  # ASCII has no accents: skip the normalisation
            text = nfd(text).translate(_NO_ACCENTS)
    if lowercase:
        text = lower(text)
    # Punctuation becomes a word of its own: surround it with spaces, then split on spaces.
    return text.translate(_SPLIT_PUNCT).split()


def wordpiece(word: str, vocab: Mapping[str, int], unk_token: str = "[UNK]", max_chars: int = 100) -> list[str]:
    """Greedy longest-match-first: take the longest prefix in the vocabulary, then the longest
    "##"-continuation of the rest, and so on. A word that cannot be covered is [UNK], whole,
    and so is a word of more than max_chars characters (exactly max_chars is still matched).

    transformers: tokenizers' WordPiece model (max_input_chars_per_word).
    """
    max_chars = require_int("max_chars", max_chars, minimum=1)
    if len(word) > max_chars:
        return [unk_token]  # checked first, so a 10 MB "word" costs nothing
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return [unk_token]
        pieces.append(piece)
        start = end
    return pieces


def truncate_pair(n_first: int, n_second: int | None, max_tokens: int, strategy: str = "longest_first") -> tuple[int, int | None]:
    """How many tokens of each sequence to keep so that together they fit in max_tokens.

    longest_first (tokenizers' truncate_encodings, which transformers' fast tokenizers use): if
    cutting only the longer one to what the shorter leaves is enough, do that; if both must be
    cut, each gets max_tokens // 2 and the longer one the odd token (the second one when they
    are equally long): (10, 9) in 7 -> (4, 3), (9, 10) in 7 -> (3, 4). only_first and
    only_second cut just that sequence (a ValueError when that cannot be enough, or for
    only_second without a pair that does not fit). max_tokens = 0 keeps nothing of either,
    whatever the strategy: (5, 3) in 0 -> (0, 0), as tokenizers' truncate_encodings does.

    Returns (kept of the first, kept of the second or None). TypeError for counts that are not
    ints, ValueError for negative ones or an unknown strategy.
    """
    n_first = require_int("n_first", n_first, minimum=0)
    n_second = None if n_second is None else require_int("n_second", n_second, minimum=0)
    max_tokens = require_int("max_tokens", max_tokens, minimum=0)
    if strategy not in ("longest_first", "only_first", "only_second"):
        raise ValueError(f"strategy must be 'longest_first', 'only_first' or 'only_second', got {strategy!r}")
    if max_tokens == 0:  # tokenizers' truncate_encodings, whatever the strategy: nothing of either text
        return 0, None if n_second is None else 0
    if n_second is None:
        if strategy == "only_second" and n_first > max_tokens:
            raise ValueError(f"truncation='only_second' needs a text pair: the text alone has {n_first} tokens, "
                             f"past max_tokens={max_tokens}")
        return min(n_first, max_tokens), None
    if n_first + n_second <= max_tokens:
        return n_first, n_second
    if strategy == "only_first":
        if n_second >= max_tokens:
            raise ValueError(f"cannot truncate only the first sequence: the second alone has {n_second} tokens")
        return max_tokens - n_second, n_second
    if strategy == "only_second":
        if n_first >= max_tokens:
            raise ValueError(f"cannot truncate only the second sequence: the first alone has {n_first} tokens")
        return n_first, max_tokens - n_first
    short, long = sorted((n_first, n_second))
    long = short if short > max_tokens else max(short, max_tokens - short)
    if short + long > max_tokens:  # both must be cut
        short, long = max_tokens // 2, max_tokens // 2 + max_tokens % 2
    return (short, long) if n_first <= n_second else (long, short)


class WordPieceTokenizer(WordPieceCalls, WordPieceFiles):
    """BERT's tokenizer. ``WordPieceTokenizer.from_pretrained(folder, tokenizer.json or vocab.txt)``.
    ``tokenizer(text, text_pair, padding=..., truncation=..., ...)`` and ``tokenizer.pad(...)``
    are transformers' (``batching.py``)."""

    _truncate_pair = staticmethod(truncate_pair)  # how the given __call__ truncates

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of text. Special tokens written in the text ("[SEP]") stay whole."""
        require_text("text", text)
        if not hasattr(self, "_cache"):
            self._cache: dict[str, list[str]] = {}
            specials = sorted(self.special_tokens, key=len, reverse=True)  # longest first
            self._special_re = regex.compile("(" + "|".join(map(regex.escape, specials)) + ")")
        tokens = []
        # The odd entries of the split are the special tokens, matched in the raw text.
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:
                tokens.append(part)
                continue
            options = (self.do_lower_case, self.strip_accents, self.tokenize_chinese_chars)
            for word in basic_tokenize(part, *options) if part else ():
                pieces = self._cache.get(word)
                if pieces is None:
                    pieces = self._cache[word] = wordpiece(word, self.vocab, self.unk_token, self.max_input_chars_per_word)
                tokens += pieces
        return tokens

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """[CLS] text [SEP] (text_pair [SEP]) as ids; without the special tokens if asked.
        An empty text_pair ("") counts as none, as transformers' encode ("if text_pair").
        add_special_tokens: a bool (TypeError otherwise: 0 or "no" are not False)."""
        add_special_tokens = require_bool("add_special_tokens", add_special_tokens)
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        if text_pair is not None:
            require_text("text_pair", text_pair)
        if not text_pair:
            return [self.cls_token_id, *ids, self.sep_token_id] if add_special_tokens else ids
        pair = self.convert_tokens_to_ids(self.tokenize(text_pair))
        if not add_special_tokens:
            return ids + pair
        return [self.cls_token_id, *ids, self.sep_token_id, *pair, self.sep_token_id]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """Tokens joined by spaces, "##" pieces glued to the previous one, as the fast tokenizer
        decodes: ".", ",", "!" and "?" also attach to the previous token. Lower-casing and
        accent stripping cannot be undone. skip_special_tokens: a bool (TypeError otherwise)."""
        tokens = [self.ids_to_tokens[i] for i in check_ids("ids", ids, self.vocab_size)]
        if require_bool("skip_special_tokens", skip_special_tokens):
            tokens = [t for t in tokens if t not in self.special_tokens]
        out = []
        for i, token in enumerate(tokens):
            if i and token.startswith("##"):
                out.append(token[2:])
            elif i and token not in (".", ",", "!", "?"):
                out.append(" " + token)
            else:
                out.append(token)
        return "".join(out)

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        """One row: [CLS] A [SEP], or [CLS] A [SEP] B [SEP] for a pair (BERT's input format,
        Devlin et al. 2019; transformers' BertTokenizer). The items are passed through as they
        are (the given __call__ passes markers to learn where the texts' tokens go)."""
        row = [self.cls_token_id, *token_ids_0, self.sep_token_id]
        return row if token_ids_1 is None else row + [*token_ids_1, self.sep_token_id]

    def create_token_type_ids_from_sequences(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        """Token types of that row: 0 for [CLS] A [SEP], 1 for B [SEP]."""
        first = [0] * (len(token_ids_0) + 2)
        return first if token_ids_1 is None else first + [1] * (len(token_ids_1) + 1)


# ----------------------------------------------------------------------------------------
# Byte-level BPE (GPT-2)
# ----------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """A printable character for each of the 256 byte values.

    Printable Latin-1 bytes stand for themselves; the other 68 (control bytes, space, a few
    Latin-1 oddities) get the characters from U+0100 on, in byte order. So a space is "Ġ"
    (U+0120) and a newline "Ċ" (U+010A): BPE tokens print as text, with no raw bytes.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_TO_CHAR = bytes_to_unicode()
_BYTES_TO_TEXT = {b: ch for b, ch in _BYTE_TO_CHAR.items()}  # translate table for latin-1 strings
_TEXT_TO_BYTES = {ord(ch): b for b, ch in _BYTE_TO_CHAR.items()}

# GPT-2's pre-tokenizer (Radford et al. 2019, from OpenAI's encoder.py): contractions, then
# runs of letters, of digits, of other symbols, each with at most one leading space, then
# whitespace. "\s+(?!\S)" leaves the last space of a run to start the next word.
_GPT2_RE = regex.compile(GPT2_PATTERN)


def pretokenize(text: str) -> list[str]:
    """Split text into GPT-2's words; BPE never merges across them. "".join(words) == text."""
    return _GPT2_RE.findall(text)


def bpe_merge(symbols: list[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Apply the merges to one word: repeatedly merge the adjacent pair of lowest rank
    (leftmost first among equals) until no adjacent pair has a rank.

    A heap of candidate pairs over a linked list of symbols: O(n log n) for a word of n
    symbols, where rescanning all pairs after each merge would be O(n^2) on a huge word.
    """
    n = len(symbols)
    if n < 2:
        return list(symbols)
    sym = list(symbols)
    nxt = list(range(1, n + 1))  # nxt[i]: index of the symbol after i (n at the end)
    prv = list(range(-1, n - 1))
    heap = []
    for i in range(n - 1):
        rank = ranks.get((sym[i], sym[i + 1]))
        if rank is not None:
            heap.append((rank, i, sym[i], sym[i + 1]))
    heapq.heapify(heap)
    while heap:
        rank, i, left, right = heapq.heappop(heap)
        j = nxt[i] if sym[i] is not None else n
        # Stale entry: a symbol of this pair was merged into something else since.
        if j >= n or sym[i] != left or sym[j] != right:
            continue
        sym[i], sym[j] = left + right, None  # merge j into i, unlink j
        nxt[i] = nxt[j]
        if nxt[i] < n:
            prv[nxt[i]] = i
        if prv[i] >= 0:  # new candidate pairs with the neighbours
            p = prv[i]
            r = ranks.get((sym[p], sym[i]))
            if r is not None:
                heapq.heappush(heap, (r, p, sym[p], sym[i]))
        if nxt[i] < n:
            r = ranks.get((sym[i], sym[nxt[i]]))
            if r is not None:
                heapq.heappush(heap, (r, i, sym[i], sym[nxt[i]]))
    return [s for s in sym if s is not None]


def _special_re(allowed: Iterable[str]):
    return regex.compile("(" + "|".join(map(regex.escape, sorted(allowed, key=len, reverse=True))) + ")")


class ByteLevelBPETokenizer(BPECalls, BPEFiles):
    """GPT-2's tokenizer. ``ByteLevelBPETokenizer.from_pretrained(folder)`` for a folder with
    tokenizer.json, or vocab.json + merges.txt (or encoder.json + vocab.bpe); ``ByteLevelBPETokenizer().train(...)``
    to learn a vocabulary of your own. ``tokenizer(text, ...)`` and ``tokenizer.pad(...)`` are
    transformers' (``batching.py``): no special tokens are added, and padding needs a pad token
    (``tokenizer.pad_token = tokenizer.eos_token``), as with GPT2TokenizerFast."""

    _truncate_pair = staticmethod(truncate_pair)  # how the given __call__ truncates

    def _word_tokens(self, word: str) -> list[str]:
        tokens = self.cache.get(word)
        if tokens is None:
            # UTF-8 bytes, each shown as its printable character, then the merges
            chars = word.encode("utf-8").decode("latin-1").translate(_BYTES_TO_TEXT)
            tokens = self.cache[word] = bpe_merge(list(chars), self.bpe_ranks)
        return tokens

    def _parts(self, text: str, allowed_special: str | set[str]) -> list[str]:
        """text split at the allowed special tokens: even entries are text, odd ones special tokens."""
        require_text("text", text)
        allowed = self._allowed(allowed_special)
        return _special_re(allowed).split(text) if allowed else [text]

    def tokenize(self, text: str, allowed_special: str | set[str] = "none") -> list[str]:
        """BPE tokens as strings ("Ġworld" for " world"). Special tokens ("<|endoftext|>") are
        matched in the text only if allowed: "all", or a set of them; otherwise they are text.

        ValueError for a text with lone surrogates (not Unicode text: no UTF-8 bytes).
        """
        tokens = []
        for i, part in enumerate(self._parts(text, allowed_special)):  # odd parts: allowed special tokens
            if i % 2:
                tokens.append(part)
            else:
                tokens += self._text_tokens(part)
        return tokens

    def _text_tokens(self, text: str) -> list[str]:
        tokens = []
        for word in pretokenize(text):
            tokens += self._word_tokens(word)
        return tokens

    def encode(self, text: str, allowed_special: str | set[str] = "none") -> list[int]:
        """Token ids of text; see tokenize for allowed_special. An allowed special token has
        its own id (``special_tokens``), even where its string is also an ordinary token; as
        tiktoken's Encoding.encode."""
        ids = []
        for i, part in enumerate(self._parts(text, allowed_special)):
            if i % 2:
                ids.append(self.special_tokens[part])
            else:
                ids += map(self.encoder.__getitem__, self._text_tokens(part))
        return ids

    def decode(self, ids: list[int]) -> str:
        """The text of ids: each id's bytes (a special token's are its text's UTF-8 bytes, an
        ordinary token's those its characters stand for), joined and decoded as UTF-8. Ids can
        split a character's bytes; invalid bytes decode as U+FFFD, as in tiktoken
        (Encoding.decode) and transformers (errors="replace")."""
        ids = check_ids("ids", ids, self.vocab_size)
        table = self._id_bytes()
        return b"".join([table[i] for i in ids]).decode("utf-8", "replace")

    def _id_bytes(self) -> list[bytes]:
        """id -> the bytes it stands for, built once per vocabulary."""
        decoder, table = getattr(self, "_bytes_of", (None, None))
        if decoder is not self.decoder:  # a new vocabulary (train, or a first call)
            special = {i: t.encode("utf-8") for t, i in self.special_tokens.items()}
            table = [special[i] if i in special else self.decoder[i].translate(_TEXT_TO_BYTES).encode("latin-1")
                     for i in range(self.vocab_size)]
            self._bytes_of = (self.decoder, table)
        return table

    @instance_or_class_method
    def train(self, texts: str | Iterable[str], vocab_size: int, special_tokens: list[str] | None = None) -> ByteLevelBPETokenizer:
        """Learn merges from texts until the vocabulary has vocab_size tokens (the 256 bytes,
        the merges, then special_tokens). Replaces this tokenizer's vocabulary; returns self,
        so ``tok = ByteLevelBPETokenizer().train(texts, 4096)`` reads well. Called on the class,
        ``ByteLevelBPETokenizer.train(texts, 4096)`` trains a new tokenizer.

        Each step merges the most frequent adjacent pair (ties: the smallest pair of ids),
        counting pairs inside GPT-2's words (Sennrich et al. 2016; Radford et al. 2019). Pair
        counts are updated only for the words that contain the merged pair, not recounted.

        special_tokens: distinct non-empty strings; they get the last ids, vocab_size - k .. -1,
        in order, even one that is also an ordinary token ("!", or a learned "the"): a special
        token's id is never what ordinary text encodes to (tiktoken's rule).
        vocab_size: an int (numpy ints and 0-d tensors too), at least 256 + len(special_tokens).
        If the texts run out of pairs first, training stops there with a UserWarning and the
        vocabulary is smaller; the special tokens then follow the last merge.

        TypeError for texts that are not str (or lone surrogates: ValueError), special_tokens
        that is not a list of str, a vocab_size that is not an int; ValueError for repeated
        special tokens or a vocab_size too small.
        """
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(texts, bytes) or not isinstance(texts, Iterable):
            raise TypeError(f"texts must be a str or an iterable of str, got {describe(texts)}")
        if special_tokens is None:
            special_tokens = []
        if isinstance(special_tokens, str) or not isinstance(special_tokens, (list, tuple)):
            raise TypeError(f"special_tokens must be a list of str, got {describe(special_tokens)}")
        special_tokens = list(special_tokens)
        for i, token in enumerate(special_tokens):
            if not require_text(f"special_tokens[{i}]", token):
                raise ValueError(f"special_tokens[{i}] is the empty string, which cannot be matched in a text")
            if token in special_tokens[:i]:
                raise ValueError(f"special_tokens has {token!r} twice (at {special_tokens.index(token)} and {i}): "
                                 "each special token needs one id")
        vocab_size = require_int("vocab_size", vocab_size)
        if vocab_size < 256 + len(special_tokens):
            raise ValueError(f"vocab_size must be an int of at least 256 (the bytes) + {len(special_tokens)} special "
                             f"tokens, got {vocab_size}")
        counts = Counter()
        for i, text in enumerate(texts):
            counts.update(pretokenize(require_text(f"texts[{i}]", text)))
        # Distinct words as lists of byte ids, each with its count.
        words = [list(w.encode("utf-8")) for w in counts]
        freqs = list(counts.values())
        token_bytes = [bytes([b]) for b in range(256)]  # id -> the bytes it stands for
        pair_counts: Counter = Counter()
        where = defaultdict(set)  # pair -> ids of the words that contain it
        for w, (word, freq) in enumerate(zip(words, freqs)):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += freq
                where[pair].add(w)
        # Max-heap of (count, pair), lazily: an entry is stale when its count is not current.
        heap = [(-c, pair) for pair, c in pair_counts.items()]
        heapq.heapify(heap)
        merges: list[tuple[int, int]] = []
        ids_of: dict[bytes, int] = {b: i for i, b in enumerate(token_bytes)}
        n_tokens = 256
        while n_tokens < vocab_size - len(special_tokens) and heap:
            neg, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -neg or -neg == 0:
                continue
            new_bytes = token_bytes[pair[0]] + token_bytes[pair[1]]
            new = ids_of.get(new_bytes)
            if new is None:  # two merges can spell the same bytes; they share one token
                new = ids_of[new_bytes] = len(token_bytes)
                token_bytes.append(new_bytes)
                n_tokens += 1
            merges.append(pair)
            changed = set()
            for w in where.pop(pair):
                word, freq = words[w], freqs[w]
                merged = _merge_ids(word, pair, new)
                if len(merged) == len(word):
                    continue
                for p in zip(word, word[1:]):  # take the old word's pairs out...
                    pair_counts[p] -= freq
                    changed.add(p)
                for p in zip(merged, merged[1:]):  # ...and put the new word's in
                    pair_counts[p] += freq
                    where[p].add(w)
                    changed.add(p)
                words[w] = merged
            for p in changed:
                if pair_counts[p] > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
                elif p in pair_counts:
                    del pair_counts[p]
        if n_tokens < vocab_size - len(special_tokens):
            warnings.warn(f"train: the texts have no pair left to merge after {len(merges)} merges, so the vocabulary "
                          f"has {n_tokens + len(special_tokens)} tokens, not vocab_size={vocab_size}", stacklevel=2)
        # As strings, the form vocab.json and merges.txt use.
        as_text = [b.decode("latin-1").translate(_BYTES_TO_TEXT) for b in token_bytes]
        encoder = {t: i for i, t in enumerate(as_text)}
        specials = {t: len(encoder) + k for k, t in enumerate(special_tokens)}  # fresh ids, after the merges
        BPEFiles.__init__(self, encoder, [(as_text[a], as_text[b]) for a, b in merges], specials)
        return self


def _merge_ids(word: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """word with every occurrence of pair (left to right, not overlapping) replaced by new."""
    out, i, n = [], 0, len(word)
    a, b = pair
    while i < n:
        if i < n - 1 and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out
