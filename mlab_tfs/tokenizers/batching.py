"""Calling a tokenizer like transformers' (given code, shared by the solution and by you).

``tokenizer(text, text_pair, padding=..., truncation=..., ...)`` and ``tokenizer.pad(...)``
take transformers' arguments and give the results of its fast tokenizers
(``BertTokenizerFast`` / ``GPT2TokenizerFast``, i.e. the Rust ``tokenizers`` library behind
``transformers/tokenization_utils_tokenizers.py``) on the same vocabulary. The arguments, the
overflow windows, the padding, the offsets and the return types are handled here; what is
specific to a tokenizer comes from the class that mixes this in:

- ``tokenize`` / ``encode`` (exercises 4 and 10): the tokens of one text;
- ``build_inputs_with_special_tokens`` and ``create_token_type_ids_from_sequences``
  (exercise 5 for BERT: [CLS] A [SEP] B [SEP] and its token types; GPT-2 adds nothing);
- ``_truncate_pair`` (``truncate_pair``, exercise 5): how many tokens of each text to keep.

Sources: ``PreTrainedTokenizerBase.__call__`` / ``_get_padding_truncation_strategies`` / ``pad``
/ ``_pad`` (transformers/tokenization_utils_base.py), ``TokenizersBackend._encode_plus`` and
``_convert_encoding`` (tokenization_utils_tokenizers.py), and the Rust library's
``truncate_encodings``, ``Encoding::truncate`` (stride windows) and ``Encoding::merge_with``
(which overflow rows a pair gives, in which order).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import regex

from mlab_tfs.tokenizers.chars import is_accent, is_cjk_char, is_control, is_punctuation, is_whitespace, lower, nfd
from mlab_tfs.tokenizers.files import GPT2_PATTERN, Encoding, _int_or_none, describe, require_bool, require_int, require_text

_GPT2_WORDS = regex.compile(GPT2_PATTERN)

# transformers' LARGE_INTEGER: a model_max_length above it means "no limit" (GPT-2's files).
LARGE_INTEGER = int(1e20)
VERY_LARGE_INTEGER = int(1e30)  # what transformers sets model_max_length to when a tokenizer has none

_PADDING = {True: "longest", "longest": "longest", "max_length": "max_length", False: None, "do_not_pad": None}
_TRUNCATION = {True: "longest_first", "longest_first": "longest_first", "only_first": "only_first",
               "only_second": "only_second", False: None, "do_not_truncate": None}
_SIDES = ("right", "left")


def _option(name: str, value: object, table: dict) -> str | None:
    """value (a bool, a str or one of transformers' str enums) looked up in table."""
    if value is None and None not in table:
        raise ValueError(f"{name} must be one of {_choices(table)}, got None")
    key = value if isinstance(value, bool) else getattr(value, "value", value)  # PaddingStrategy.LONGEST -> "longest"
    if not (key is None or isinstance(key, (bool, str))) or key not in table:
        raise ValueError(f"{name} must be one of {_choices(table)}, got {describe(value)}")
    return table[key]


def _choices(table: dict) -> str:
    return ", ".join(repr(k) for k in table)


def _side(name: str, value: object) -> str:
    if value not in _SIDES:
        raise ValueError(f"{name} must be 'right' or 'left', got {describe(value)}")
    return value


# ----------------------------------------------------------------------------------------
# Results: dicts of lists, or of tensors
# ----------------------------------------------------------------------------------------


class BatchEncoding(Encoding):
    """What a call returns: a dict (keys also read as attributes) of lists, torch tensors or
    numpy arrays, like transformers' BatchEncoding. ``.to(device)`` moves the tensors;
    ``word_ids(i)``, ``sequence_ids(i)`` and ``tokens(i)`` describe row i of a call's result,
    as a fast tokenizer's BatchEncoding does."""

    _layouts = None  # per row, per position: (sequence, index) of a text's token, or None (special, pad)
    _row_ids: list = []
    _sources: list = []
    _words = None  # example index -> the word index of each token of (first, second)
    _tokenizer = None

    def _layout(self, batch_index: int, what: str) -> list:
        if self._layouts is None:
            raise ValueError(f"{what}() needs the result of calling the tokenizer (pad() keeps no words)")
        batch_index = require_int("batch_index", batch_index, minimum=0)
        if batch_index >= len(self._layouts):
            raise ValueError(f"batch_index must be in [0, {len(self._layouts)}) (the rows), got {batch_index}")
        return self._layouts[batch_index]

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """Per position of row batch_index: 0 for the text's tokens, 1 for the pair's, None for
        added special tokens and padding."""
        return [None if m is None else m[0] for m in self._layout(batch_index, "sequence_ids")]

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Per position of row batch_index: the index of the word its token came from (the
        pre-tokenizer's words, or the given words with is_split_into_words; counted anew in
        the pair), None for added special tokens and padding."""
        layout = self._layout(batch_index, "word_ids")
        first, second = self._words(self._sources[batch_index])
        return [None if m is None else (first if m[0] == 0 else second)[m[1]] for m in layout]

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of row batch_index."""
        self._layout(batch_index, "tokens")
        return self._tokenizer.convert_ids_to_tokens(self._row_ids[batch_index])

    def to(self, device) -> BatchEncoding:
        """Move every torch tensor to ``device`` (in place); returns self, as transformers'."""
        for key, value in self.items():
            if hasattr(value, "to") and hasattr(value, "device"):
                self[key] = value.to(device)
        return self


def _tensor_type(return_tensors: object) -> str | None:
    kind = getattr(return_tensors, "value", return_tensors)  # TensorType.PYTORCH -> "pt"
    if kind not in (None, "pt", "np"):
        raise ValueError(f"return_tensors must be None (lists), 'pt' (torch) or 'np' (numpy), got {describe(return_tensors)}")
    return kind


def as_tensors(values: dict[str, Any], kind: str | None) -> BatchEncoding:
    """values as a BatchEncoding of torch tensors ("pt"), numpy arrays ("np") or as they are
    (None). Rows of different lengths make no torch tensor (ValueError: pad them); numpy makes
    an object array of rows, as transformers' ``convert_to_tensors`` does."""
    if kind is None:
        return BatchEncoding(values)
    import numpy as np

    out = BatchEncoding()
    for key, value in values.items():
        if kind == "pt":
            import torch

            if isinstance(value, torch.Tensor):
                out[key] = value
                continue
            try:
                out[key] = torch.tensor(value, dtype=torch.long if _is_empty(value) else None)
            except (ValueError, TypeError) as e:
                lengths = sorted({len(v) for v in value}) if isinstance(value, list) and all(
                    isinstance(v, (list, tuple)) for v in value) else None
                raise ValueError(f"{key}: cannot make one tensor of rows of different lengths {lengths}: pass "
                                 "padding=True (and truncation=True) to have rows of one length" if lengths else
                                 f"{key}: cannot make a tensor of {describe(value)}: {e}") from None
        else:
            if isinstance(value, list) and value and all(isinstance(v, (list, tuple)) for v in value) \
                    and len({len(v) for v in value}) > 1:
                rows = np.empty(len(value), dtype=object)  # ragged: an array of row arrays
                rows[:] = [np.asarray(v) for v in value]
                out[key] = rows
            else:
                out[key] = np.asarray(value, dtype=np.int64 if _is_empty(value) else None)
    return out


def _is_empty(value: object) -> bool:
    return isinstance(value, (list, tuple)) and (len(value) == 0 or all(_is_empty(v) for v in value))


# ----------------------------------------------------------------------------------------
# Overflow windows (tokenizers' Encoding::truncate) and padding (transformers' _pad)
# ----------------------------------------------------------------------------------------


def windows(n: int, keep: int, stride: int, side: str) -> list[tuple[int, int]]:
    """The (start, stop) slices a sequence of n tokens is cut into when it may keep ``keep``:
    the first is the kept part, the others the overflow, each sharing ``stride`` tokens with
    the one before (tokenizers' Encoding::truncate). side "left" keeps the end and walks back.
    keep = 0 keeps nothing and the whole sequence overflows; keep >= n cuts nothing."""
    if keep >= n:
        return [(0, n)]
    if keep == 0:
        return [(0, 0), (0, n)]
    step = keep - stride  # stride < keep is checked by the caller
    if side == "right":
        out = []
        for start in range(0, n, step):
            out.append((start, min(start + keep, n)))
            if start + keep >= n:
                break
        return out
    out = []
    for stop in range(n, 0, -step):
        out.append((max(stop - keep, 0), stop))
        if stop - keep <= 0:
            break
    return out


def pad_row(row: dict[str, list], length: int, side: str, pad_id: int, pad_type_id: int = 0,
            attention: bool = True) -> dict[str, list]:
    """row padded to ``length`` tokens on ``side``: input_ids with pad_id, attention_mask with
    0 (made of 1s first if asked and absent), token_type_ids with pad_type_id,
    special_tokens_mask with 1, offset_mapping with (0, 0); other keys as they are
    (transformers' ``_pad``, plus the offsets the fast tokenizer pads). A row as long or
    longer is returned as it is."""
    n = len(row["input_ids"])
    row = dict(row)
    if attention and "attention_mask" not in row:
        row["attention_mask"] = [1] * n
    extra = length - n
    if extra <= 0:
        return row
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": pad_type_id, "special_tokens_mask": 1,
            "offset_mapping": (0, 0), "layout": None}
    for key, value in fill.items():
        if key in row and (key != "attention_mask" or attention):
            pad = [value] * extra
            row[key] = list(row[key]) + pad if side == "right" else pad + list(row[key])
    return row


def _combinations(cuts1, cuts2) -> list:
    """The rows of an example, in tokenizers' order (Encoding::merge_with): the kept parts
    together, then each overflow of the first with the kept and each overflow of the second,
    then the kept first with each overflow of the second."""
    if cuts2 is None:
        return [(c, None) for c in cuts1]
    (a0, *more_a), (b0, *more_b) = cuts1, cuts2
    out = [(a0, b0)]
    for a in more_a:
        out += [(a, b0)] + [(a, b) for b in more_b]
    return out + [(a0, b) for b in more_b]


def _round_up(length: int, multiple: int | None) -> int:
    return length if not multiple or length % multiple == 0 else (length // multiple + 1) * multiple


# ----------------------------------------------------------------------------------------
# Offsets: each token's span of characters in the original text
# ----------------------------------------------------------------------------------------


def _special_split(text: str, specials) -> list[tuple[int, int, bool]]:
    """(start, end, is_special) parts of text, special tokens matched whole, longest first."""
    if not specials:
        return [(0, len(text), False)]
    pattern = regex.compile("|".join(map(regex.escape, sorted(specials, key=len, reverse=True))))
    parts, pos = [], 0
    for m in pattern.finditer(text):
        parts.append((pos, m.start(), False))
        parts.append((m.start(), m.end(), True))
        pos = m.end()
    parts.append((pos, len(text), False))
    return parts


def _bert_words(tokenizer, text: str, start: int, end: int) -> list[list[int]]:
    """The words BERT's normalizer and pre-tokenizer make of text[start:end], each as the
    original index of each of its normalized characters (accent stripping and lower-casing
    can make one character several, cleaning none)."""
    words, word = [], []
    for i in range(start, end):
        ch = text[i]
        if ch == "\0" or ch == "\ufffd" or is_control(ch):
            continue  # dropped: belongs to no token
        if is_whitespace(ch) or (tokenizer.tokenize_chinese_chars and is_cjk_char(ch)):
            if word:
                words.append(word)
            word = []
            if not is_whitespace(ch):
                words.append([i])  # an ideograph is a word of its own
            continue
        form = ch
        if tokenizer.strip_accents:
            form = "".join(c for c in nfd(form) if not is_accent(c))
        if tokenizer.do_lower_case:
            form = lower(form)
        for c in form:
            if is_punctuation(c):
                if word:
                    words.append(word)
                words.append([i])
                word = []
            else:
                word.append(i)
    if word:
        words.append(word)
    return words


def wordpiece_offsets(tokenizer, text: str, tokens: list[str]) -> list[tuple[int, int]]:
    """(start, end) in text of each WordPiece token of ``tokenizer.tokenize(text)``, as the
    fast tokenizer reports them: a piece spans the original characters its normalized
    characters came from ("É" -> "e" spans the "É"; "ﬀ"...); [UNK] spans its whole word; a
    special token written in the text spans itself. ValueError if the tokens do not spell the
    text's words (a tokenize that drops or adds characters)."""
    return wordpiece_alignment(tokenizer, text, tokens)[0]


def wordpiece_alignment(tokenizer, text: str, tokens: list[str]) -> tuple[list[tuple[int, int]], list[int]]:
    """(the spans of wordpiece_offsets, the index of each token's word): the words of BERT's
    pre-tokenizer, a special token written in the text counting as one (as word_ids() counts)."""
    spans, words, k, n_words = [], [], 0, 0
    for start, end, special in _special_split(text, tokenizer.special_tokens):
        if special:
            spans.append((start, end))
            words.append(n_words)
            n_words += 1
            k += 1
            continue
        for word in _bert_words(tokenizer, text, start, end):
            if k >= len(tokens):
                raise ValueError(f"offsets: tokenize({text!r}) has {len(tokens)} tokens, fewer than the text's words")
            if tokens[k] == tokenizer.unk_token:
                spans.append((word[0], word[-1] + 1))
                words.append(n_words)
                n_words += 1
                k += 1
                continue
            i = 0
            while i < len(word):
                if k >= len(tokens):
                    raise ValueError(f"offsets: tokenize({text!r}) ends inside a word")
                piece = tokens[k][2:] if i and tokens[k].startswith("##") else tokens[k]
                n = max(len(piece), 1)
                spans.append((word[i], word[min(i + n, len(word)) - 1] + 1))
                words.append(n_words)
                i += n
                k += 1
            n_words += 1
    if k != len(tokens):
        raise ValueError(f"offsets: tokenize({text!r}) gives {len(tokens)} tokens, the text's words only {k}")
    return spans, words


def byte_level_offsets(tokenizer, text: str, tokens: list[str]) -> list[tuple[int, int]]:
    """(start, end) in text of each byte-level BPE token of ``tokenizer.tokenize(text, "all")``:
    the characters its bytes belong to, so two tokens that split one character's UTF-8 bytes
    both span that character (GPT2TokenizerFast: "😀" as "ðŁĺ" + "Ģ" gives (0, 1) twice)."""
    return byte_level_alignment(tokenizer, text, tokens)[0]


def byte_level_alignment(tokenizer, text: str, tokens: list[str]) -> tuple[list[tuple[int, int]], list[int]]:
    """(the spans of byte_level_offsets, the index of each token's word): GPT-2's
    pre-tokenizer words (GPT2_PATTERN), a special token written in the text counting as one."""
    from mlab_tfs.tokenizers.solution import bytes_to_unicode  # the byte alphabet, as BPEFiles uses it

    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    data = text.encode("utf-8")
    char_at = []  # byte index -> index of its character
    for i, ch in enumerate(text):
        char_at += [i] * len(ch.encode("utf-8"))
    word_at, n_words = [0] * len(text), 0  # character index -> index of its word
    for start, end, special in _special_split(text, list(tokenizer.special_tokens)):
        ranges = [(start, end)] if special else [m.span() for m in _GPT2_WORDS.finditer(text, start, end)]
        for a, b in ranges:
            word_at[a:b] = [n_words] * (b - a)
            n_words += 1
    spans, words, pos = [], [], 0
    for token in tokens:
        raw = token.encode("utf-8")
        if token in tokenizer.special_tokens and data.startswith(raw, pos):
            n = len(raw)
        else:
            n = len(token)  # one character per byte
            if any(c not in byte_of for c in token):
                raise ValueError(f"offsets: the token {token!r} is not made of bytes_to_unicode characters")
        if n == 0 or pos + n > len(data):
            raise ValueError(f"offsets: the tokens of {text!r} run past its {len(data)} bytes")
        spans.append((char_at[pos], char_at[pos + n - 1] + 1))
        words.append(word_at[char_at[pos]])
        pos += n
    if pos != len(data):
        raise ValueError(f"offsets: the tokens of {text!r} cover {pos} of its {len(data)} bytes")
    return spans, words


# ----------------------------------------------------------------------------------------
# The call
# ----------------------------------------------------------------------------------------


def _texts(name: str, value: object, split: bool) -> tuple[list, bool]:
    """(the batch, whether value was a single example). split: each example a list of words."""
    if split:
        single = isinstance(value, (list, tuple)) and not (value and isinstance(value[0], (list, tuple)))
        batch = [value] if single else value
        ok = isinstance(batch, (list, tuple)) and all(
            isinstance(ex, (list, tuple)) and all(isinstance(w, str) for w in ex) for ex in batch)
        if not ok:
            raise TypeError(f"{name} must be a list of str (the words of one text) or a list of such lists with "
                            f"is_split_into_words=True, got {describe(value)}")
    else:
        single = isinstance(value, str)
        batch = [value] if single else value
        if not isinstance(batch, (list, tuple)) or not all(isinstance(t, str) for t in batch):
            raise TypeError(f"{name} must be a str or a list of str, got {describe(value)}")
    return list(batch), single


class TransformersCalls:
    """``__call__`` and ``pad`` with transformers' arguments; see the module docstring."""

    padding_side = "right"
    truncation_side = "right"
    pad_token_type_id = 0
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]

    # -- what a tokenizer without special tokens does (byte-level BPE); BERT's are exercise 5

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        """The ids of one row: here the two sequences one after the other (GPT-2 adds no tokens)."""
        return list(token_ids_0) + list(token_ids_1 or [])

    def create_token_type_ids_from_sequences(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        """Token types of that row: 0 for the first sequence, 1 for the pair."""
        return [0] * len(token_ids_0) + [1] * len(token_ids_1 or [])

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many tokens build_inputs_with_special_tokens adds to one text (pair=False) or a pair."""
        return len(self.build_inputs_with_special_tokens([], [] if require_bool("pair", pair) else None))

    @property
    def all_special_tokens(self) -> list[str]:
        return list(self.special_tokens)

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def get_special_tokens_mask(self, token_ids_0: list[int], token_ids_1: list[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 for a special token, 0 for a sequence token (transformers' method, as
        DataCollatorForLanguageModeling calls it). already_has_special_tokens: the ids are a
        built row; mark the ids of special tokens. Otherwise: where build_inputs adds them."""
        if require_bool("already_has_special_tokens", already_has_special_tokens):
            if token_ids_1 is not None:
                raise ValueError("token_ids_1 must be None when already_has_special_tokens=True (the ids are a built row)")
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in token_ids_0]
        marks = self.build_inputs_with_special_tokens([None] * len(token_ids_0),
                                                      None if token_ids_1 is None else [None] * len(token_ids_1))
        return [0 if m is None else 1 for m in marks]

    # -- one sequence: ids and offsets (each tokenizer's mixin below)

    def _sequence(self, text: str, offsets: bool) -> tuple[list[int], list[tuple[int, int]] | None]:
        raise NotImplementedError  # each tokenizer's mixin below

    def _alignment(self, text: str) -> tuple[list[tuple[int, int]], list[int]]:
        raise NotImplementedError  # (offsets, word index) of each token of text

    def _example(self, example, split: bool, offsets: bool):
        if not split:
            return self._sequence(example, offsets)
        ids, spans = [], [] if offsets else None
        for word in example:  # each word on its own; offsets are within the word, as the fast tokenizers'
            word_ids, word_spans = self._sequence(word, offsets)
            ids += word_ids
            if offsets:
                spans += word_spans
        return ids, spans

    def _max_length_default(self) -> int | None:
        limit = getattr(self, "model_max_length", None)
        return None if limit is None or limit > LARGE_INTEGER else limit

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of, verbose=True, warn_name="padding"):
        """transformers' _get_padding_truncation_strategies: (padding, truncation, max_length)."""
        import warnings

        if max_length is not None:
            max_length = require_int("max_length", max_length, minimum=1)
        if pad_to_multiple_of is not None:
            pad_to_multiple_of = require_int("pad_to_multiple_of", pad_to_multiple_of, minimum=1)
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # a max_length alone cuts
        pad = _option("padding", padding, _PADDING)
        strategy = _option("truncation", truncation, {**_TRUNCATION, None: None})
        if pad == "longest" and max_length is not None and strategy is None and verbose:
            warnings.warn("max_length is ignored when padding to the longest row without truncation: pass "
                          "padding='max_length' to pad to it, or truncation=True to cut to it", stacklevel=3)
        if max_length is None:
            default = self._max_length_default()
            if pad == "max_length":
                pad, max_length = (None, None) if default is None else (pad, default)
            if strategy is not None:
                strategy, max_length = (None, max_length) if default is None else (strategy, default)
        if pad is not None and getattr(self, "pad_token", None) is None:
            raise ValueError("padding needs a pad token, and this tokenizer has none (pad_token is None): set one, "
                             "e.g. tokenizer.pad_token = tokenizer.eos_token, as with transformers' GPT-2 tokenizer")
        if strategy is not None and pad is not None and pad_to_multiple_of and max_length is not None \
                and max_length % pad_to_multiple_of:
            raise ValueError(f"max_length={max_length} must be a multiple of pad_to_multiple_of={pad_to_multiple_of} "
                             "when truncating and padding (rows cut to max_length could not be padded to a multiple)")
        return pad, strategy, max_length, pad_to_multiple_of

    def __call__(
        self,
        text: str | list[str] | list[list[str]] | None = None,
        text_pair: str | list[str] | list[list[str]] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        **aliases,
    ) -> BatchEncoding:
        """Model inputs for one text, a pair, or a batch of them, as transformers' fast tokenizers.

        text: a str (one example: each value is a flat list), or a list of str (a batch: a list
            of rows); with is_split_into_words=True, a list of words (one example) or a list of
            such lists. Each word is tokenized on its own; offsets are then within the word.
        text_pair: None, or the second texts, shaped as text. One text with an empty pair
            (``""``, or ``[]`` with is_split_into_words) is the text alone ([CLS] A [SEP]), as
            transformers' ``__call__`` drops a falsy pair; in a batch an empty pair is kept
            ([CLS] A [SEP] [SEP]), as there. (``texts=`` and ``text_pairs=``
            are accepted for the first two, the names this course used before.)
        add_special_tokens: [CLS] A [SEP] (B [SEP]) for BERT; GPT-2 adds none.
        padding: False / "do_not_pad", True / "longest" (to the longest row of the batch),
            "max_length" (to max_length, or model_max_length). padding_side: "right" (the
            default, ``self.padding_side``) or "left". pad_to_multiple_of: round the padded
            length up to a multiple. Padding without a pad token (GPT-2's files) is a ValueError.
        truncation: False, True / "longest_first", "only_first", "only_second". None (the
            default): "longest_first" if max_length is given and padding is off, else False.
            Cut from the right, or from the left with ``self.truncation_side = "left"``.
        max_length: the row length, special tokens included (default model_max_length; a
            tokenizer without one does not truncate or pad to a length). Below the special
            tokens' count it cannot be reached by truncation: ValueError (transformers returns
            rows uncut). At the count it keeps only the special tokens.
        stride, return_overflowing_tokens: the cut tokens become more rows, each window
            repeating the last ``stride`` tokens of the one before, and overflow_to_sample_mapping
            says which example each row came from. stride must be below the tokens kept of the
            sequence it cuts (tokenizers' panic "stride must be strictly less than max_len").
        return_token_type_ids / return_attention_mask: None gives them when they are in
            ``model_input_names`` (BERT: both; GPT-2: the attention mask only).
        return_special_tokens_mask: 1 for the tokens add_special_tokens added (and padding),
            0 for the text's own (a "[SEP]" written in the text is the text's own).
        return_offsets_mapping: (start, end) characters of the original text per token; (0, 0)
            for added special tokens and padding.
        return_length: the length of each row, padding included (a list even for one text).
        return_tensors: None (lists), "pt" (torch.long tensors (batch, seq); offsets
            (batch, seq, 2)) or "np" (numpy); with tensors one text is a batch of one.

        Returns a BatchEncoding with input_ids (+ token_type_ids, attention_mask as above,
        special_tokens_mask, offset_mapping, length, overflow_to_sample_mapping when asked);
        its word_ids(i), sequence_ids(i) and tokens(i) describe row i, as a fast tokenizer's.
        TypeError for texts that are not str / lists of str, flags that are not bools,
        ints that are not ints, unknown keywords; ValueError for bad option values, an empty
        batch, pairs whose count differs from the texts', texts that cannot be cut as asked.
        (transformers/tokenization_utils_base.py ``__call__``; tokenization_utils_tokenizers.py
        ``_encode_plus``.)
        """
        for old, new in (("texts", "text"), ("text_pairs", "text_pair")):
            if old in aliases:
                if (text if new == "text" else text_pair) is not None:
                    raise TypeError(f"pass {new} or {old}, not both")
                if new == "text":
                    text = aliases.pop(old)
                else:
                    text_pair = aliases.pop(old)
        if aliases:
            raise TypeError(f"unexpected keyword arguments {sorted(aliases)}: this tokenizer takes transformers' "
                            "__call__ arguments (text, text_pair, padding, truncation, max_length, stride, ...)")
        if text is None:
            raise TypeError("text is required: a str, or a list of str for a batch")
        flags = {}
        for name, value in (("add_special_tokens", add_special_tokens), ("is_split_into_words", is_split_into_words),
                            ("return_overflowing_tokens", return_overflowing_tokens),
                            ("return_special_tokens_mask", return_special_tokens_mask),
                            ("return_offsets_mapping", return_offsets_mapping), ("return_length", return_length),
                            ("verbose", verbose)):
            flags[name] = require_bool(name, value)
        want_types = require_bool("return_token_type_ids", return_token_type_ids, none_ok=True)
        want_mask = require_bool("return_attention_mask", return_attention_mask, none_ok=True)
        want_types = "token_type_ids" in self.model_input_names if want_types is None else want_types
        want_mask = "attention_mask" in self.model_input_names if want_mask is None else want_mask
        split = flags["is_split_into_words"]
        kind = _tensor_type(return_tensors)
        stride = require_int("stride", stride, minimum=0)
        side = _side("padding_side", self.padding_side if padding_side is None else padding_side)
        cut_side = _side("truncation_side", self.truncation_side)
        pad, strategy, limit, multiple = self._strategies(padding, truncation, max_length, pad_to_multiple_of,
                                                          flags["verbose"])

        batch, single = _texts("text", text, split)
        pairs = None
        if text_pair is not None:
            pairs, single_pair = _texts("text_pair", text_pair, split)
            if single != single_pair:
                raise TypeError(f"text_pair must be shaped as text: text is {'one example' if single else 'a batch'}, "
                                f"text_pair {'one example' if single_pair else 'a batch'}")
            if len(pairs) != len(batch):
                raise ValueError(f"text_pair must have one pair per text: {len(batch)} texts, {len(pairs)} pairs")
            if single and not pairs[0]:
                pairs = None  # one text with an empty pair ("" or []) is the text alone, as transformers' __call__
        if not batch:
            raise ValueError("text is an empty list: there is nothing to tokenize")
        where = (lambda name, i: name) if single else (lambda name, i: f"{name}[{i}]")
        for name, texts in (("text", batch), ("text_pair", pairs or [])):
            for i, example in enumerate(texts):
                for j, piece in enumerate(example if split else [example]):
                    require_text(where(name, i) + (f"[{j}]" if split else ""), piece)

        specials = self.num_special_tokens_to_add(pairs is not None) if flags["add_special_tokens"] else 0
        if strategy is not None and limit < specials:
            raise ValueError(
                f"max_length={limit} cannot be reached by truncation: every row keeps its {specials} special tokens; "
                f"pass max_length >= {specials}")

        one_text = self.num_special_tokens_to_add(False)
        if strategy is not None and limit >= one_text and stride > limit - one_text:
            # tokenizers' enable_truncation, checked with one text's special tokens whatever the input
            # (the cut itself then needs stride < the tokens kept: see _cuts)
            raise ValueError(f"stride={stride} must be at most max_length={limit} minus the "
                             f"{one_text} special tokens of a text: each overflow window "
                             "moves by the tokens kept minus stride")
        offsets = flags["return_offsets_mapping"]
        rows, sample, top = [], [], []  # top: the first row of each example (the padding length is theirs)
        for i, example in enumerate(batch):
            first = self._example(example, split, offsets)
            second = None if pairs is None else self._example(pairs[i], split, offsets)
            cuts1, cuts2 = [(0, len(first[0]))], None if second is None else [(0, len(second[0]))]
            if strategy is not None:
                cuts1, cuts2 = self._cuts(where("text", i), len(first[0]), None if second is None else len(second[0]),
                                          limit, specials, strategy, stride, cut_side)
            combos = _combinations(cuts1, cuts2)
            if not flags["return_overflowing_tokens"]:
                combos = combos[:1]
            for k, (c1, c2) in enumerate(combos):
                rows.append(self._row(first, second, c1, c2, flags["add_special_tokens"]))
                sample.append(i)
                if k == 0:
                    top.append(len(rows[-1]["input_ids"]))

        if pad is not None:
            target = _round_up(max(top) if pad == "longest" else limit, multiple)
            rows = [pad_row(r, target, side, self.pad_token_id, self.pad_token_type_id) for r in rows]
        keys = ["input_ids"] + ["token_type_ids"] * want_types + ["attention_mask"] * want_mask
        keys += ["special_tokens_mask"] * flags["return_special_tokens_mask"] + ["offset_mapping"] * offsets
        out = {key: [r[key] for r in rows] for key in keys}
        if flags["return_length"]:
            out["length"] = [len(r["input_ids"]) for r in rows]
        if flags["return_overflowing_tokens"]:
            out["overflow_to_sample_mapping"] = sample
        if single and kind is None and not flags["return_overflowing_tokens"]:
            out = {k: v[0] if v and isinstance(v[0], list) else v for k, v in out.items()}  # transformers' un-batching
        result = as_tensors(out, kind)
        # what word_ids() and sequence_ids() read, the words found only when asked
        result._layouts, result._row_ids, result._sources = [r["layout"] for r in rows], [r["input_ids"] for r in rows], sample
        result._tokenizer, cache = self, {}

        def words(i):
            if i not in cache:
                cache[i] = (self._word_indices(batch[i], split),
                            None if pairs is None else self._word_indices(pairs[i], split))
            return cache[i]

        result._words = words
        return result

    def _word_indices(self, example, split: bool) -> list[int]:
        if split:  # the given words
            return [j for j, word in enumerate(example) for _ in self._sequence(word, False)[0]]
        return self._alignment(example)[1]

    def _cuts(self, where, n1, n2, limit, specials, strategy, stride, side):
        """The windows of each sequence under truncation (the learner's truncate_pair counts)."""
        try:
            keep1, keep2 = self._truncate_pair(n1, n2, limit - specials, strategy)
        except ValueError as e:  # say which row and which settings
            raise ValueError(f"{where} cannot be cut to max_length={limit} with truncation={strategy!r}: {e}") from None
        cuts = []
        for n, keep, name in ((n1, keep1, "text"), (n2, keep2, "text_pair")):
            if n is None:
                cuts.append(None)
                continue
            if not isinstance(keep, int) or not 0 <= keep <= n:
                raise ValueError(f"truncate_pair({n1}, {n2}, {limit - specials}, {strategy!r}) returned {keep!r} for "
                                 f"the {name}: expected an int in [0, {n}]")
            if 0 < keep < n and stride >= keep:
                raise ValueError(f"stride={stride} must be less than the {keep} tokens kept of {where}'s {name} "
                                 f"(max_length={limit} minus {specials} special tokens, shared as truncation="
                                 f"{strategy!r} does): each overflow window moves by keep - stride tokens")
            cuts.append(windows(n, keep, stride, side))
        return cuts[0], cuts[1]

    def _row(self, first, second, c1, c2, add_special_tokens) -> dict[str, list]:
        """One row from the slices c1 of the first sequence and c2 of the second (or None)."""
        marks0 = [(0, j) for j in range(*c1)]
        marks1 = None if second is None else [(1, j) for j in range(*c2)]
        if add_special_tokens:
            # the learner's methods, run on markers: which positions are the sequences' tokens
            built = list(self.build_inputs_with_special_tokens(marks0, marks1))
            types = list(self.create_token_type_ids_from_sequences(marks0, marks1))
        else:
            built = marks0 + (marks1 or [])
            types = [0] * len(marks0) + [1] * len(marks1 or [])
        if len(types) != len(built):
            raise ValueError(f"create_token_type_ids_from_sequences gave {len(types)} types for a row of {len(built)} "
                             "tokens (build_inputs_with_special_tokens): they must be as long")
        seqs = (first, second)
        row = {"input_ids": [], "token_type_ids": types, "attention_mask": [1] * len(built), "special_tokens_mask": [],
               "offset_mapping": [], "layout": [m if isinstance(m, tuple) else None for m in built]}
        for m in built:
            if isinstance(m, tuple):
                ids, spans = seqs[m[0]]
                row["input_ids"].append(ids[m[1]])
                row["special_tokens_mask"].append(0)
                row["offset_mapping"].append(spans[m[1]] if spans is not None else (0, 0))
            else:
                row["input_ids"].append(m)
                row["special_tokens_mask"].append(1)
                row["offset_mapping"].append((0, 0))
        return row

    # -- pad: what DataCollatorWithPadding calls

    def pad(
        self,
        encoded_inputs: Mapping | list[Mapping],
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad encoded inputs (what __call__ returned, a dict of lists, or a list of such dicts,
        one per example: a DataLoader's batch) to the longest row / max_length, as
        transformers' ``PreTrainedTokenizerBase.pad`` (tokenization_utils_base.py), so that
        ``DataCollatorWithPadding(tokenizer=ours)`` works. input_ids get the pad id,
        attention_mask 0 (made if absent and return_attention_mask, or None and it is a model
        input), token_type_ids pad_token_type_id, special_tokens_mask 1; other keys (labels)
        are kept and converted with the rest. Tensors in give tensors out unless return_tensors
        says otherwise. ValueError without input_ids, for rows of other keys that do not match,
        or for padding without a pad token.
        """
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            first = list(encoded_inputs[0].keys())
            for i, example in enumerate(encoded_inputs):
                if not isinstance(example, Mapping) or set(example.keys()) != set(first):
                    raise ValueError(f"encoded_inputs[{i}] must be a dict with the keys of encoded_inputs[0] {first}, "
                                     f"got {describe(example)}")
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in first}
        if not isinstance(encoded_inputs, Mapping):
            raise TypeError(f"encoded_inputs must be a dict of lists or a list of dicts, got {describe(encoded_inputs)}")
        encoded_inputs = dict(encoded_inputs)
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise ValueError(f"encoded_inputs must have {main!r}, got the keys {list(encoded_inputs)}")
        kind = _tensor_type(return_tensors)
        want_mask = require_bool("return_attention_mask", return_attention_mask, none_ok=True)
        want_mask = "attention_mask" in self.model_input_names if want_mask is None else want_mask
        side = _side("padding_side", self.padding_side if padding_side is None else padding_side)
        required = encoded_inputs[main]
        if required is None or len(required) == 0:
            if return_attention_mask:  # only when asked, as transformers' pad (None adds none here)
                encoded_inputs["attention_mask"] = []
            return BatchEncoding(encoded_inputs)
        # tensors and arrays in: work on lists, and give the same kind back
        sample = required[0]
        if isinstance(sample, (list, tuple)):
            sample = next((row[0] for row in required if len(row)), sample)
        if not isinstance(sample, (int, list, tuple)):
            if type(sample).__module__.startswith("torch"):
                kind = "pt" if return_tensors is None else kind
            elif type(sample).__module__.startswith("numpy"):
                kind = "np" if return_tensors is None else kind
            else:
                raise TypeError(f"encoded_inputs[{main!r}] must hold ints, lists, torch tensors or numpy arrays, "
                                f"got {describe(sample)}")
            encoded_inputs = {k: v.tolist() if hasattr(v, "tolist") else [x.tolist() if hasattr(x, "tolist") else x
                                                                           for x in v]
                              for k, v in encoded_inputs.items()}
        pad, _, limit, multiple = self._strategies(padding, None, max_length, pad_to_multiple_of, False)
        required = encoded_inputs[main]
        one = not isinstance(required[0], (list, tuple))
        if not one:
            for key, value in encoded_inputs.items():
                if not isinstance(value, (list, tuple)) or len(value) != len(required):
                    raise ValueError(f"encoded_inputs[{key!r}] has {len(value) if isinstance(value, (list, tuple)) else describe(value)} "
                                     f"rows, {main!r} {len(required)}: every key needs one row per example")
        examples = [encoded_inputs] if one else [
            {k: v[i] for k, v in encoded_inputs.items()} for i in range(len(required))]
        for i, e in enumerate(examples):  # the ids are ints, and the per-token keys as long as them
            where = f"encoded_inputs[{main!r}]" + ("" if one else f"[{i}]")
            ids = e[main]
            if not isinstance(ids, (list, tuple)):
                raise TypeError(f"{where} must be a list of int token ids, got {describe(ids)}")
            for j, x in enumerate(ids):
                if type(x) is not int and _int_or_none(x) is None:
                    raise TypeError(f"{where} must be a list of int token ids, got {describe(x)} at index {j}")
            for key in ("attention_mask", "token_type_ids", "special_tokens_mask", "offset_mapping"):
                if key in e and (not isinstance(e[key], (list, tuple)) or len(e[key]) != len(ids)):
                    raise ValueError(f"encoded_inputs[{key!r}]{'' if one else f'[{i}]'} must have one value per token "
                                     f"of {where} ({len(ids)}), got {describe(e[key])}")
        if pad is None:
            target = None
        else:
            target = _round_up(max(len(e[main]) for e in examples) if pad == "longest" else limit, multiple)
        rows = []
        for e in examples:
            e = {k: list(v) if isinstance(v, tuple) else v for k, v in e.items()}
            if target is None:
                rows.append(pad_row(e, 0, side, 0, attention=want_mask))
            else:
                rows.append(pad_row(e, target, side, self.pad_token_id, self.pad_token_type_id, want_mask))
        out = rows[0] if one else {k: [r[k] for r in rows] for k in rows[0]}
        return as_tensors(out, kind)

    def convert_tokens_to_ids(self, tokens):
        """A token's id, or a list of tokens' ids (a str is one token, as in transformers);
        unk_token's id for a string not in the vocabulary. TypeError for anything but a str or
        a list of str."""
        if isinstance(tokens, str):
            return super().convert_tokens_to_ids([tokens])[0]
        return super().convert_tokens_to_ids(tokens)


class WordPieceCalls(TransformersCalls):
    """transformers' calls for a WordPiece tokenizer (BERT): ids of ``tokenize``'s pieces."""

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    # BERT has no begin/end-of-text tokens (None, as transformers' BertTokenizer)
    bos_token = eos_token = bos_token_id = eos_token_id = None

    def get_vocab(self) -> dict[str, int]:
        """token -> id."""
        return dict(self.vocab)

    def _sequence(self, text, offsets):
        tokens = self.tokenize(text)
        ids = self.convert_tokens_to_ids(tokens)
        return ids, wordpiece_alignment(self, text, tokens)[0] if offsets else None

    def _alignment(self, text):
        return wordpiece_alignment(self, text, self.tokenize(text))


def _special_token(name: str, default: str | None) -> property:
    """A special-token attribute as transformers' (pad_token, eos_token...): a token string of
    the vocabulary or None, settable. default: the token when the vocabulary has it, else None."""

    def get(self) -> str | None:
        if name in self.__dict__:
            return self.__dict__[name]
        return default if default is not None and default in self.special_tokens else None

    def set(self, token: str | None) -> None:
        if token is not None:
            if not isinstance(token, str) or not token:
                raise TypeError(f"{name} must be a non-empty str or None, got {describe(token)}")
            if token not in self.special_tokens and token not in self.encoder:
                raise ValueError(f"{name} {token!r} is not a token of this vocabulary")
        self.__dict__[name] = token

    return property(get, set, doc=f"{name}: a token string or None (settable), as transformers' tokenizers")


def _special_token_id(name: str) -> property:
    """The id of a special-token attribute; setting an id sets the token."""

    def get(self) -> int | None:
        token = getattr(self, name)
        return None if token is None else self.convert_tokens_to_ids(token)

    def set(self, value: int | None) -> None:
        if value is not None:
            value = require_int(f"{name}_id", value, minimum=0)
            if value not in self.decoder:
                raise ValueError(f"{name}_id must be an id in [0, {self.vocab_size}), got {value}")
        setattr(self, name, None if value is None else self.decoder[value])

    return property(get, set, doc=f"{name}_id: the id of {name} or None (settable)")


class BPECalls(TransformersCalls):
    """transformers' calls for a byte-level BPE tokenizer (GPT-2): no special tokens added,
    special tokens written in a text are matched (as transformers' GPT2TokenizerFast does),
    and a pad token only once one is set (``tokenizer.pad_token = tokenizer.eos_token``)."""

    model_input_names = ["input_ids", "attention_mask"]
    model_max_length = VERY_LARGE_INTEGER  # no limit, as transformers reads GPT-2's vocabulary files
    _END = "<|endoftext|>"

    def get_vocab(self) -> dict[str, int]:
        """token -> id for every id, the special tokens with their own ids."""
        return {**self.encoder, **self.special_tokens}

    def _sequence(self, text, offsets):
        ids = self.encode(text, "all")
        return ids, self._alignment(text)[0] if offsets else None

    def _alignment(self, text):
        return byte_level_alignment(self, text, self.tokenize(text, "all"))

    pad_token = _special_token("pad_token", None)  # GPT-2 has none: set one to pad
    eos_token = _special_token("eos_token", _END)
    bos_token = _special_token("bos_token", _END)
    unk_token = _special_token("unk_token", _END)
    # GPT-2 has none of these (transformers' GPT2TokenizerFast: None); DataCollatorForLanguageModeling
    # with mlm=True reads mask_token and says it is missing
    mask_token = _special_token("mask_token", None)
    cls_token = _special_token("cls_token", None)
    sep_token = _special_token("sep_token", None)
    pad_token_id = _special_token_id("pad_token")
    mask_token_id = _special_token_id("mask_token")
    cls_token_id = _special_token_id("cls_token")
    sep_token_id = _special_token_id("sep_token")
    eos_token_id = _special_token_id("eos_token")
    bos_token_id = _special_token_id("bos_token")
    unk_token_id = _special_token_id("unk_token")

    def convert_tokens_to_ids(self, tokens):
        """A token's id (a special token's own id first), or a list of ids. A string that is no
        token of the vocabulary gives unk_token's id (GPT-2's files: <|endoftext|>, 50256), as
        transformers' ``_convert_token_to_id_with_added_voc``; with unk_token set to None it is
        a ValueError (transformers would return None in the list). TypeError for anything but a
        str or a list of str."""
        if isinstance(tokens, str):
            if tokens in self.special_tokens:
                return self.special_tokens[tokens]
            if tokens in self.encoder:
                return self.encoder[tokens]
            unk = self.unk_token
            if unk is None:
                raise ValueError(f"{tokens!r} is not a token of this vocabulary, and unk_token is None")
            return self.special_tokens[unk] if unk in self.special_tokens else self.encoder[unk]
        if isinstance(tokens, bytes) or not isinstance(tokens, (list, tuple)) and not hasattr(tokens, "__iter__"):
            raise TypeError(f"tokens must be a str or a list of str, got {describe(tokens)}")
        out = []
        for i, t in enumerate(tokens):
            if not isinstance(t, str):
                raise TypeError(f"tokens must be a str or a list of str, got {describe(t)} at index {i}")
            out.append(self.convert_tokens_to_ids(t))
        return out

    def convert_ids_to_tokens(self, ids):
        """A token string per id (an int gives one str)."""
        from mlab_tfs.tokenizers.files import check_ids

        if isinstance(ids, int) and not isinstance(ids, bool):
            return self.decoder[check_ids("ids", [ids], self.vocab_size)[0]]
        return [self.decoder[i] for i in check_ids("ids", ids, self.vocab_size)]
