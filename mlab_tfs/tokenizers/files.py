"""Vocabulary files, special tokens and input checks of the two tokenizers (given code).

``WordPieceFiles`` and ``BPEFiles`` are the base classes of ``WordPieceTokenizer`` and
``ByteLevelBPETokenizer``: they read and write the files transformers uses (vocab.txt;
vocab.json + merges.txt) and map tokens to ids. The tokenizing itself is the exercise.
"""

from __future__ import annotations

import functools
import inspect
import json
import operator
import os
import re
import types
import warnings
from pathlib import Path
from typing import Iterable

from mlab_tfs import durable
from mlab_tfs.inputs import check_bool, check_int


def describe(x: object) -> str:
    """How an error message names a value that came: its type, and a short repr."""
    text = repr(x)
    return f"{type(x).__name__} {text[:60] + '...' if len(text) > 60 else text}"


_SURROGATE = re.compile("[\ud800-\udfff]")


def require_text(name: str, text: object) -> str:
    """text, checked: a str (TypeError otherwise) that is real Unicode text.

    A lone surrogate (U+D800..U+DFFF, what ``errors="surrogateescape"`` or half of a UTF-16
    pair leaves in a str) has no UTF-8 bytes, so no tokenizer can encode it: ValueError naming
    the argument and the position. transformers' tokenizers refuse such a str too (with a
    TypeError from the Rust binding); tiktoken replaces it with U+FFFD without a word.
    """
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {describe(text)}")
    bad = None if text.isascii() else _SURROGATE.search(text)
    if bad is not None:
        raise ValueError(
            f"{name} has a lone surrogate U+{ord(bad.group()):04X} at index {bad.start()}: it is not a Unicode "
            "character and has no UTF-8 bytes. To replace such code points with U+FFFD (as tiktoken does), pass "
            f"{name}.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')"
        )
    return text


def _int_or_none(x: object) -> int | None:
    """x as a Python int if it is an integer (int, numpy integer, 0-d integer tensor or array), else None.
    Booleans are not integers here: True as a length is a mistake, not 1."""
    if isinstance(x, bool) or "bool" in str(getattr(x, "dtype", "")) or getattr(x, "ndim", 0) != 0:
        return None
    try:
        return operator.index(x)
    except TypeError:
        return None


def require_int(name: str, value: object, minimum: int | None = None) -> int:
    """value as a Python int: an int, a numpy integer or a 0-d integer tensor.

    TypeError naming the argument for anything else (bools, floats, strings, tensors of more
    than one element); ValueError if it is below ``minimum``. (``mlab_tfs.inputs.check_int``.)
    """
    return check_int(name, value, minimum=minimum)


def check_ids(name: str, ids: object, vocab_size: int) -> list[int]:
    """ids: a sequence of ints (a list or tuple of ints, numpy ints or 0-d tensors, or a 1-D
    tensor or array) in [0, vocab_size). Returns them as a list of Python ints."""
    if hasattr(ids, "tolist") and getattr(ids, "ndim", 1) == 1:  # a 1-D tensor or array
        if "bool" in str(ids.dtype):
            raise TypeError(f"{name} must be a list of int token ids, got a bool {type(ids).__name__}")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple)):
        raise TypeError(f"{name} must be a list of int token ids, got {describe(ids)}")
    out = []
    for i, x in enumerate(ids):
        value = x if type(x) is int else _int_or_none(x)
        if value is None:
            raise TypeError(f"{name} must be a list of int token ids, got {describe(x)} at index {i}")
        if not 0 <= value < vocab_size:
            raise ValueError(f"{name} must be in [0, {vocab_size}) (the vocabulary size), got {value} at index {i}")
        out.append(value)
    return out


def require_bool(name: str, value: object, none_ok: bool = False) -> bool | None:
    """value, checked: True or False (or None where ``none_ok``); TypeError naming the argument
    otherwise (1 and "yes" are not options' values). (``mlab_tfs.inputs.check_bool``.)"""
    if value is None and none_ok:
        return None
    try:
        return check_bool(name, value)
    except TypeError as e:
        raise TypeError(str(e).replace("True or False", "True, False or None") if none_ok else str(e)) from None


class instance_or_class_method:
    """A method that also works on the class, on a fresh instance: ``Tok().train(...)`` trains
    that tokenizer, ``Tok.train(...)`` a new one; both return the trained tokenizer."""

    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __get__(self, obj, cls=None):
        if obj is not None:
            return types.MethodType(self.fn, obj)

        @functools.wraps(self.fn)
        def on_class(*args, **kwargs):
            return self.fn(cls(), *args, **kwargs)

        params = list(inspect.signature(self.fn).parameters.values())[1:]
        on_class.__signature__ = inspect.signature(self.fn).replace(parameters=params)
        return on_class


def _resolve(path: str | os.PathLike, *names: str) -> Path | None:
    folder = Path(path)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


# Files of a tokenizer that a save of ours replaces: transformers reads tokenizer.json before
# vocab.txt / vocab.json, and special_tokens_map.json for the special tokens, so an old one
# left next to new files would make transformers load the old tokenizer.
STALE_TOKENIZER_FILES = ("tokenizer.json", "special_tokens_map.json", "added_tokens.json")


class WordPieceFiles:
    """A WordPiece vocabulary (vocab.txt: one token per line, its id is the line number) and
    BERT's options and special tokens."""

    def __init__(
        self,
        vocab: dict[str, int],
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        max_input_chars_per_word: int = 100,
        model_max_length: int = 512,
    ):
        if not isinstance(vocab, dict) or not vocab:
            raise TypeError(f"vocab must be a non-empty dict of token -> id, got {describe(vocab)}")
        self.vocab = dict(vocab)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.do_lower_case = require_bool("do_lower_case", do_lower_case)
        # None: strip accents exactly when lower-casing, as the original BERT does
        strip_accents = require_bool("strip_accents", strip_accents, none_ok=True)
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents
        # False: CJK ideographs are letters like any other (no spaces put around them)
        self.tokenize_chinese_chars = require_bool("tokenize_chinese_chars", tokenize_chinese_chars)
        for name, token in (("unk_token", unk_token), ("sep_token", sep_token), ("pad_token", pad_token),
                            ("cls_token", cls_token), ("mask_token", mask_token)):
            if not isinstance(token, str) or not token:
                raise TypeError(f"{name} must be a non-empty str, got {describe(token)}")
        self.unk_token, self.sep_token, self.pad_token = unk_token, sep_token, pad_token
        self.cls_token, self.mask_token = cls_token, mask_token
        for name in ("unk_token", "sep_token", "pad_token", "cls_token"):
            if getattr(self, name) not in self.vocab:
                raise ValueError(f"{name} {getattr(self, name)!r} is not in the vocabulary")
        self.special_tokens = [t for t in (unk_token, sep_token, pad_token, cls_token, mask_token) if t in self.vocab]
        self.max_input_chars_per_word = require_int("max_input_chars_per_word", max_input_chars_per_word, minimum=1)
        self.model_max_length = require_int("model_max_length", model_max_length, minimum=1)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs):
        """path: a folder with vocab.txt (and optionally tokenizer_config.json), or a vocab.txt.

        Options come from tokenizer_config.json where it has them (do_lower_case,
        strip_accents, tokenize_chinese_chars, the special tokens, model_max_length,
        max_input_chars_per_word); keyword arguments override them. Options of transformers'
        BertTokenizer that this tokenizer does not have (do_basic_tokenize=False, a never_split
        list) raise ValueError rather than being ignored. FileNotFoundError without vocab.txt.
        """
        path = Path(path)
        vocab_file = path if path.is_file() else _resolve(path, "vocab.txt")
        if vocab_file is None:
            raise FileNotFoundError(f"no vocab.txt in {path} (pass a folder with vocab.txt, or the file itself)")
        options = {}
        config_file = _resolve(vocab_file.parent, "tokenizer_config.json")
        if config_file is not None:
            config = json.loads(config_file.read_text(encoding="utf-8"))
            known = ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "unk_token", "sep_token",
                     "pad_token", "cls_token", "mask_token", "model_max_length", "max_input_chars_per_word")
            options = {k: config[k] for k in known if isinstance(config.get(k), (str, bool, int))}
            # Options we cannot honour are refused, not ignored: the ids would differ from transformers'.
            if config.get("do_basic_tokenize") is False:
                raise ValueError(f"{config_file}: do_basic_tokenize=False (WordPiece on raw text) is not supported")
            if config.get("never_split"):
                raise ValueError(f"{config_file}: never_split={config['never_split']!r} is not supported")
            if options.get("model_max_length", 0) > 10**9:  # transformers' "no limit" placeholder
                del options["model_max_length"]
        options.update(kwargs)
        lines = vocab_file.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        vocab = {}
        for i, token in enumerate(lines):
            vocab[token.rstrip("\r")] = i  # a repeated line keeps the last id, as transformers does
        return cls(vocab, **options)

    def save_pretrained(self, folder: str | os.PathLike) -> list[Path]:
        """Write vocab.txt and tokenizer_config.json; transformers' BertTokenizer loads them.

        Atomic (``mlab_tfs.durable.atomic_folder``): a crash, a full disk or a kill at any
        moment leaves the folder with the old tokenizer or the new one, never a mix. Other
        files in the folder (a model's config.json and weights) are kept; tokenizer files of
        an older save that this one does not write (tokenizer.json...) are removed, since
        transformers would read them in preference to vocab.txt.
        Returns the paths of the two files.
        """
        folder = Path(folder)
        ordered = sorted(self.vocab.items(), key=lambda kv: kv[1])
        if [i for _, i in ordered] != list(range(len(ordered))):
            raise ValueError("the vocabulary ids are not 0..n-1, so vocab.txt cannot hold them")
        config = {
            "tokenizer_class": "BertTokenizer", "do_lower_case": self.do_lower_case,
            "strip_accents": self.strip_accents, "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "unk_token": self.unk_token, "sep_token": self.sep_token, "pad_token": self.pad_token,
            "cls_token": self.cls_token, "mask_token": self.mask_token, "model_max_length": self.model_max_length,
            "max_input_chars_per_word": self.max_input_chars_per_word,
        }
        with durable.atomic_folder(folder, drop=STALE_TOKENIZER_FILES) as staging:
            (staging / "vocab.txt").write_text("".join(t + "\n" for t, _ in ordered), encoding="utf-8")
            (staging / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        return [folder / "vocab.txt", folder / "tokenizer_config.json"]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def pad_token_id(self) -> int:
        return self.vocab[self.pad_token]

    @property
    def cls_token_id(self) -> int:
        return self.vocab[self.cls_token]

    @property
    def sep_token_id(self) -> int:
        return self.vocab[self.sep_token]

    @property
    def unk_token_id(self) -> int:
        return self.vocab[self.unk_token]

    @property
    def mask_token_id(self) -> int | None:
        return self.vocab.get(self.mask_token)

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        unk = self.unk_token_id
        return [self.vocab.get(t, unk) for t in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        ids = check_ids("ids", list(ids) if not hasattr(ids, "tolist") else ids, self.vocab_size)
        return [self.ids_to_tokens[i] for i in ids]


# GPT-2's pre-tokenizer: words with their leading space, numbers, punctuation runs and
# whitespace (OpenAI's gpt-2 encoder.py; tiktoken's "gpt2" pattern).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Encoding(dict):
    """What WordPieceTokenizer(...) returns: a dict (input_ids, token_type_ids, attention_mask)
    whose keys also read as attributes, like transformers' BatchEncoding."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class BPEFiles:
    """A byte-level BPE vocabulary: ``encoder`` (token string -> id, vocab.json or OpenAI's
    encoder.json), the ranked ``merges`` (merges.txt or vocab.bpe) and the special tokens.

    ``special_tokens`` (token -> id) each have an id of their own, which ordinary text never
    encodes to: "<|endoftext|>" written in a text is 7 ordinary tokens unless allowed. A special
    token whose string is not an ordinary token is also in ``encoder`` (vocab.json has
    "<|endoftext|>": 50256). One that is ("!" is the byte 0x21's token; a trained vocabulary
    may have learned "the") keeps its own id all the same: ``encoder`` keeps the ordinary
    token, ``decoder`` maps both ids, ``special_tokens`` says which id is the special one.
    ``decoder`` (id -> token string) covers every id in [0, vocab_size).
    """

    def _allowed(self, allowed_special: str | Iterable[str] | None) -> set[str]:
        """allowed_special ("all", "none"/None, or a set of special tokens) as the set of
        special tokens a text may contain whole (tiktoken's argument). TypeError for another
        type; ValueError naming tokens that are not special tokens here."""
        if allowed_special is None or allowed_special == "none":
            return set()
        if allowed_special == "all":
            return set(self.special_tokens)
        if (isinstance(allowed_special, str) or not isinstance(allowed_special, Iterable)
                or not all(isinstance(t, str) for t in allowed_special)):
            raise TypeError(f"allowed_special must be 'all', 'none' or a set of str, got {describe(allowed_special)}")
        unknown = set(allowed_special) - set(self.special_tokens)
        if unknown:
            raise ValueError(f"allowed_special has tokens that are not special tokens here: {sorted(unknown)}; "
                             f"the special tokens are {sorted(self.special_tokens)}")
        return set(allowed_special)

    def __init__(
        self,
        encoder: dict[str, int] | None = None,
        merges: list[tuple[str, str]] | None = None,
        special_tokens: dict[str, int] | None = None,
    ):
        from mlab_tfs.tokenizers.solution import bytes_to_unicode  # the byte alphabet (an exercise)

        if encoder is None:  # no vocabulary yet (train one): the 256 bytes, id = byte value
            encoder = {ch: b for b, ch in bytes_to_unicode().items()}
        if not isinstance(encoder, dict):
            raise TypeError(f"encoder must be a dict of token -> id, got {describe(encoder)}")
        if special_tokens is None:  # GPT-2's end of text, wherever the vocabulary has it
            special_tokens = {t: encoder[t] for t in ("<|endoftext|>",) if t in encoder}
        if not isinstance(special_tokens, dict):
            raise TypeError(f"special_tokens must be a dict of token -> id, got {describe(special_tokens)}")
        self.encoder = {require_text("encoder key", t): require_int(f"encoder[{t!r}]", i, minimum=0)
                        for t, i in encoder.items()}
        self.special_tokens = {}
        for token, i in special_tokens.items():
            if not isinstance(token, str) or not token:
                raise TypeError(f"special_tokens must map non-empty str to ids, got the key {describe(token)}")
            self.special_tokens[token] = require_int(f"special_tokens[{token!r}]", i, minimum=0)
        self.decoder = {i: t for t, i in self.encoder.items()}
        if len(self.decoder) != len(self.encoder):
            twice = next(i for i in self.decoder if sum(1 for v in self.encoder.values() if v == i) > 1)
            raise ValueError(f"encoder gives the id {twice} to more than one token "
                             f"({sorted(t for t, v in self.encoder.items() if v == twice)})")
        for token, i in self.special_tokens.items():
            if self.decoder.get(i, token) != token:
                raise ValueError(f"special token {token!r} has the id {i}, which is already the token "
                                 f"{self.decoder[i]!r}")
            if token not in self.encoder:
                self.encoder[token] = i
            self.decoder[i] = token
        if self.decoder and max(self.decoder) != len(self.decoder) - 1:
            missing = next(i for i in range(len(self.decoder)) if i not in self.decoder)
            raise ValueError(f"the token ids must be 0..n-1 with none missing: {len(self.decoder)} tokens, "
                             f"the largest id is {max(self.decoder)}, and no token has the id {missing}")
        self.merges = [tuple(m) for m in (merges or [])]
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.cache: dict[str, list[str]] = {}

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike):
        """path: a folder with vocab.json + merges.txt (transformers' names) or encoder.json +
        vocab.bpe (OpenAI's names for the same two files). The special tokens come from
        tokenizer_config.json's ``added_tokens_decoder`` where there is one (what
        save_pretrained writes), else "<|endoftext|>" if the vocabulary has it.

        FileNotFoundError without the two files; ValueError for a malformed merges line.
        """
        path = Path(path)
        vocab_file = _resolve(path, "vocab.json", "encoder.json")
        merges_file = _resolve(path, "merges.txt", "vocab.bpe")
        if vocab_file is None or merges_file is None:
            raise FileNotFoundError(f"{path} needs vocab.json and merges.txt (or encoder.json and vocab.bpe)")
        encoder = json.loads(vocab_file.read_text(encoding="utf-8"))
        merges = []
        for n, line in enumerate(merges_file.read_text(encoding="utf-8").split("\n"), start=1):
            if line.startswith("#version") or not line.strip():
                continue
            pair = line.split(" ")
            if len(pair) != 2:
                raise ValueError(f"{merges_file}, line {n}: a merge is two tokens separated by one space, got {line!r}")
            merges.append((pair[0], pair[1]))
        special = None
        config_file = _resolve(path, "tokenizer_config.json")
        if config_file is not None:
            added = json.loads(config_file.read_text(encoding="utf-8")).get("added_tokens_decoder", {})
            special = {v["content"]: int(k) for k, v in added.items() if v.get("special")} or None
        return cls(encoder, merges, special)

    def save_pretrained(self, folder: str | os.PathLike) -> list[Path]:
        """Write vocab.json, merges.txt and tokenizer_config.json (the special tokens, in
        ``added_tokens_decoder``); transformers' GPT2Tokenizer.from_pretrained loads them.

        Atomic (``mlab_tfs.durable.atomic_folder``): a crash, a full disk or a kill at any
        moment leaves the folder with the old tokenizer or the new one, never a mix. Other
        files in the folder (a model's config.json and weights) are kept; tokenizer files of
        an older save that this one does not write (tokenizer.json, encoder.json...) are
        removed. Returns the paths of the three files.

        A special token whose string is also an ordinary token ("!") cannot be in vocab.json
        under its own id, only in added_tokens_decoder. We load it back as it was; transformers'
        GPT2Tokenizer gives it the ordinary token's id instead (a UserWarning says so).
        """
        folder = Path(folder)
        ordered = dict(sorted(self.encoder.items(), key=lambda kv: kv[1]))
        lines = ["#version: 0.2", *(f"{a} {b}" for a, b in self.merges)]
        shared = [t for t, i in self.special_tokens.items() if self.encoder[t] != i]
        if shared:
            warnings.warn(f"special tokens {shared} are also ordinary tokens: mlab_tfs loads them back with their "
                          "own ids, but transformers' GPT2Tokenizer gives them the ordinary tokens' ids", stacklevel=2)
        added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                          "special": True} for t, i in sorted(self.special_tokens.items(), key=lambda kv: kv[1])}
        config = {"tokenizer_class": "GPT2Tokenizer", "added_tokens_decoder": added}
        if "<|endoftext|>" not in self.special_tokens:  # else transformers adds GPT-2's as a new token
            config.update(bos_token=None, eos_token=None, unk_token=None)
        with durable.atomic_folder(folder, drop=STALE_TOKENIZER_FILES + ("encoder.json", "vocab.bpe")) as staging:
            (staging / "vocab.json").write_text(json.dumps(ordered, ensure_ascii=False), encoding="utf-8")
            (staging / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
            (staging / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False),
                                                           encoding="utf-8")
        return [folder / "vocab.json", folder / "merges.txt", folder / "tokenizer_config.json"]

    save = save_pretrained

    @property
    def vocab_size(self) -> int:
        """The number of ids: ordinary tokens and special tokens; every id is in [0, vocab_size)."""
        return len(self.decoder)

    def __len__(self) -> int:
        return len(self.decoder)
