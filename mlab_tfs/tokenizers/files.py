"""Vocabulary files, special tokens and input checks of the two tokenizers (given code).

``WordPieceFiles`` and ``BPEFiles`` are the base classes of ``WordPieceTokenizer`` and
``ByteLevelBPETokenizer``: they read and write the files transformers uses (vocab.txt;
vocab.json + merges.txt) and map tokens to ids. The tokenizing itself is the exercise.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import types
from pathlib import Path
from typing import Iterable


def describe(x: object) -> str:
    """How an error message names a value that came: its type, and a short repr."""
    text = repr(x)
    return f"{type(x).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def require_text(name: str, text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {describe(text)}")
    return text


def check_ids(name: str, ids: object, vocab_size: int) -> list[int]:
    """ids: a sequence of ints (a list, a tuple or a 1-D tensor) in [0, vocab_size)."""
    if hasattr(ids, "tolist"):  # a tensor or an array
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple)):
        raise TypeError(f"{name} must be a list of int token ids, got {describe(ids)}")
    for i, x in enumerate(ids):
        if isinstance(x, bool) or not isinstance(x, int):
            raise TypeError(f"{name} must be a list of int token ids, got {describe(x)} at index {i}")
        if not 0 <= x < vocab_size:
            raise ValueError(f"{name} must be in [0, {vocab_size}) (the vocabulary size), got {x} at index {i}")
    return list(ids)


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
        self.do_lower_case = do_lower_case
        # None: strip accents exactly when lower-casing, as the original BERT does
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.unk_token, self.sep_token, self.pad_token = unk_token, sep_token, pad_token
        self.cls_token, self.mask_token = cls_token, mask_token
        for name in ("unk_token", "sep_token", "pad_token", "cls_token"):
            if getattr(self, name) not in self.vocab:
                raise ValueError(f"{name} {getattr(self, name)!r} is not in the vocabulary")
        self.special_tokens = [t for t in (unk_token, sep_token, pad_token, cls_token, mask_token) if t in self.vocab]
        self.max_input_chars_per_word = max_input_chars_per_word
        self.model_max_length = model_max_length

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs):
        """path: a folder with vocab.txt (and optionally tokenizer_config.json), or a vocab.txt.

        Options come from tokenizer_config.json where it has them (do_lower_case,
        strip_accents, tokenize_chinese_chars, the special tokens, model_max_length);
        keyword arguments override them.
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
                     "pad_token", "cls_token", "mask_token", "model_max_length")
            options = {k: config[k] for k in known if isinstance(config.get(k), (str, bool, int))}
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
        """Write vocab.txt and tokenizer_config.json; transformers' BertTokenizer loads them."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        ordered = sorted(self.vocab.items(), key=lambda kv: kv[1])
        if [i for _, i in ordered] != list(range(len(ordered))):
            raise ValueError("the vocabulary ids are not 0..n-1, so vocab.txt cannot hold them")
        (folder / "vocab.txt").write_text("".join(t + "\n" for t, _ in ordered), encoding="utf-8")
        config = {
            "tokenizer_class": "BertTokenizer", "do_lower_case": self.do_lower_case,
            "strip_accents": self.strip_accents, "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "unk_token": self.unk_token, "sep_token": self.sep_token, "pad_token": self.pad_token,
            "cls_token": self.cls_token, "mask_token": self.mask_token, "model_max_length": self.model_max_length,
        }
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
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


class BPEFiles:
    """A byte-level BPE vocabulary: ``encoder`` (token string -> id, vocab.json or OpenAI's
    encoder.json), the ranked ``merges`` (merges.txt or vocab.bpe) and the special tokens."""

    def __init__(
        self,
        encoder: dict[str, int] | None = None,
        merges: list[tuple[str, str]] | None = None,
        special_tokens: dict[str, int] | None = None,
    ):
        from mlab_tfs.tokenizers.solution import bytes_to_unicode  # the byte alphabet (an exercise)

        if encoder is None:  # no vocabulary yet (train one): the 256 bytes, id = byte value
            encoder = {ch: b for b, ch in bytes_to_unicode().items()}
        if special_tokens is None:  # GPT-2's end of text, wherever the vocabulary has it
            special_tokens = {t: encoder[t] for t in ("<|endoftext|>",) if t in encoder}
        self.encoder = dict(encoder)
        self.special_tokens = dict(special_tokens)
        for token, i in self.special_tokens.items():
            self.encoder.setdefault(token, i)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.merges = [tuple(m) for m in (merges or [])]
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.cache: dict[str, list[str]] = {}

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike):
        """path: a folder with vocab.json + merges.txt (transformers' names) or encoder.json +
        vocab.bpe (OpenAI's names for the same two files)."""
        path = Path(path)
        vocab_file = _resolve(path, "vocab.json", "encoder.json")
        merges_file = _resolve(path, "merges.txt", "vocab.bpe")
        if vocab_file is None or merges_file is None:
            raise FileNotFoundError(f"{path} needs vocab.json and merges.txt (or encoder.json and vocab.bpe)")
        encoder = json.loads(vocab_file.read_text(encoding="utf-8"))
        merges = []
        for line in merges_file.read_text(encoding="utf-8").split("\n"):
            if line.startswith("#version") or not line.strip():
                continue
            first, second = line.split(" ")
            merges.append((first, second))
        special = None
        config_file = _resolve(path, "tokenizer_config.json")
        if config_file is not None:
            added = json.loads(config_file.read_text(encoding="utf-8")).get("added_tokens_decoder", {})
            special = {v["content"]: int(k) for k, v in added.items() if v.get("special")} or None
        return cls(encoder, merges, special)

    def save_pretrained(self, folder: str | os.PathLike) -> list[Path]:
        """Write vocab.json and merges.txt; transformers' GPT2Tokenizer.from_pretrained loads them."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        ordered = dict(sorted(self.encoder.items(), key=lambda kv: kv[1]))
        (folder / "vocab.json").write_text(json.dumps(ordered, ensure_ascii=False), encoding="utf-8")
        lines = ["#version: 0.2", *(f"{a} {b}" for a, b in self.merges)]
        (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [folder / "vocab.json", folder / "merges.txt"]

    save = save_pretrained

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def __len__(self) -> int:
        return len(self.encoder)
