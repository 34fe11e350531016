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


def _read_json(file: Path) -> dict:
    """A JSON object from file; ValueError naming the file if it is not one."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a JSON object, got {describe(data)}")
    return data


def _tokenizer_files(path: Path, names: tuple[str, ...]) -> tuple[Path | None, Path | None, dict]:
    """(tokenizer.json or None, the folder's first file of names or None, tokenizer_config.json's
    contents or {}) for a folder, a tokenizer.json or another tokenizer file. transformers reads
    tokenizer.json in preference to the older files, and so do we."""
    if path.is_file():
        json_file = path if path.name == "tokenizer.json" or path.suffix == ".json" and path.name not in names else None
        other = None if json_file else path
        folder = path.parent
    else:
        json_file, other, folder = _resolve(path, "tokenizer.json"), _resolve(path, *names), path
    config_file = _resolve(folder, "tokenizer_config.json")
    return json_file, other, _read_json(config_file) if config_file else {}


# transformers' "no limit" placeholder for model_max_length (tokenization_utils_base's VERY_LARGE_INTEGER).
NO_LIMIT = int(1e30)


def _unsupported(file: Path, field: str, value: object, why: str) -> ValueError:
    return ValueError(f"{file}: {field} = {json.dumps(value)[:200]} is not supported: {why}. mlab_tfs reads "
                      "what it can tokenize identically, rather than give different ids")


def _one_of_sequence(part: dict | None, key: str) -> dict | None:
    """A Sequence normalizer / pre-tokenizer of one element is that element."""
    if isinstance(part, dict) and part.get("type") == "Sequence" and isinstance(part.get(key), list) \
            and len(part[key]) == 1:
        return part[key][0]
    return part


def _check_added_tokens(file: Path, data: dict, vocab: dict[str, int], model: str) -> dict[str, int]:
    """tokenizer.json's added_tokens, checked: {content: id} of the special ones.

    Each must be special and matched as written (lstrip, rstrip, single_word false): that is
    what our tokenizers represent (a special token is kept whole where it appears in a text).
    For WordPiece, those past the vocabulary join it (``_add_to_vocab``)."""
    special = {}
    for n, token in enumerate(data.get("added_tokens") or []):
        field = f"added_tokens[{n}]"
        if not isinstance(token, dict) or not isinstance(token.get("content"), str) or not token["content"] \
                or _int_or_none(token.get("id")) is None:
            raise ValueError(f"{file}: {field} must be an object with a non-empty 'content' and an int 'id', "
                             f"got {describe(token)}")
        content, i = token["content"], int(token["id"])
        if not token.get("special", False):
            raise _unsupported(file, field, token, "an added token that is not special (transformers matches it in "
                               "every text; our tokenizers only match special tokens)")
        for flag in ("lstrip", "rstrip", "single_word"):
            if token.get(flag):
                raise _unsupported(file, f"{field}.{flag}", True, f"special tokens are matched exactly as written")
        if vocab.get(content, i) != i:  # tokenizers then gives the vocabulary's id; we would give i
            raise _unsupported(file, field, token, f"{content!r} is also model.vocab's token {vocab[content]}, and "
                               f"transformers gives it that id, not {i}")
        special[content] = i
    if model == "WordPiece":
        _add_to_vocab(file, vocab, special)
    return special


def _add_to_vocab(file: Path, vocab: dict[str, int], special: dict[str, int]) -> None:
    """Put special tokens that transformers added past the vocabulary (add_special_tokens: ids
    len(vocab), len(vocab) + 1, ...) into vocab, in place. ValueError for one whose id is another
    token's, or that leaves a gap."""
    for content, i in sorted(special.items(), key=lambda kv: kv[1]):
        if vocab.get(content, i) != i or content not in vocab and i in vocab.values():
            raise ValueError(f"{file}: the special token {content!r} has the id {i}, but the vocabulary gives "
                             f"{content!r} the id {vocab.get(content)!r} and {i} to another token")
        if content not in vocab:
            if i != len(vocab):
                raise ValueError(f"{file}: the special token {content!r} has the id {i}, past the vocabulary of "
                                 f"{len(vocab)} tokens: added tokens take the next ids, {len(vocab)} on")
            vocab[content] = i


def _extra_special_tokens(config_file: Path, config: dict, vocab: dict[str, int]) -> list[str]:
    """tokenizer_config.json's extra special tokens (transformers 5: ``extra_special_tokens``, a
    list or a dict of name -> token; 4.x: ``additional_special_tokens``), each in the vocabulary."""
    out = []
    for key in ("extra_special_tokens", "additional_special_tokens"):
        tokens = config.get(key) or []
        tokens = list(tokens.values()) if isinstance(tokens, dict) else tokens
        for t in tokens:
            t = t.get("content") if isinstance(t, dict) else t  # 4.x wrote AddedToken objects
            if not isinstance(t, str) or t not in vocab:
                raise ValueError(f"{config_file}: {key} has {describe(t)}, which is not a token of the vocabulary")
            out.append(t)
    return out


# What transformers' BertTokenizer makes of a tokenizer.json: with tokenizer_class BertTokenizer in
# tokenizer_config.json it rebuilds normalizer, pre-tokenizer and template from the config's options
# (models/bert/tokenization_bert.py), so only the vocabulary comes from tokenizer.json.
# (BertTokenizer's subclasses and aliases in transformers 5 too: DistilBert, ConvBert, MobileBert...)
BERT_CLASSES = tuple(f"{name}Tokenizer{fast}" for name in ("Bert", "DistilBert", "ConvBert", "MobileBert", "SqueezeBert",
                                                         "Electra", "LayoutLM", "DPRContextEncoder",
                                                         "DPRQuestionEncoder") for fast in ("", "Fast"))
BERT_DEFAULTS = {"do_lower_case": True, "strip_accents": None, "tokenize_chinese_chars": True}


# tokenizer_class values under which transformers builds the tokenizer from tokenizer.json as it is.
GENERIC_CLASSES = (None, "PreTrainedTokenizerFast", "TokenizersBackend")
GPT2_CLASSES = ("GPT2Tokenizer", "GPT2TokenizerFast")


def _read_sides(config_file: Path, config: dict, tokenizer, json_file: Path | None = None) -> None:
    """padding_side and truncation_side of tokenizer_config.json, set on tokenizer ("right" or
    "left"; transformers' PreTrainedTokenizerBase reads them from the config, as here); where the
    config has none, the direction of tokenizer.json's padding / truncation (transformers'
    TokenizersBackend.__init__ takes them as defaults)."""
    data = _read_json(json_file) if json_file is not None and not all(
        config.get(n) is not None for n in ("padding_side", "truncation_side")) else {}
    for name, part in (("padding_side", "padding"), ("truncation_side", "truncation")):
        if config.get(name) is not None:
            value, where = config[name], f"{config_file}: {name}"
        elif isinstance(data.get(part), dict) and isinstance(data[part].get("direction"), str):
            value, where = data[part]["direction"].lower(), f"{json_file}: {part}.direction"
        else:
            continue
        if value not in ("right", "left"):
            raise ValueError(f"{where} must be 'right' or 'left', got {describe(value)}")
        setattr(tokenizer, name, value)


def _read_input_names(config_file: Path, config: dict, tokenizer) -> None:
    """model_input_names (which keys a call returns by default): the config's where it has them,
    else the class's own, as transformers' PreTrainedTokenizerBase (BERT's with token_type_ids,
    as BertTokenizerFast on any folder; AutoTokenizer on a tokenizer.json with no config builds a
    generic TokenizersBackend, whose default is ["input_ids", "attention_mask"])."""
    names = config.get("model_input_names")
    if names is not None:
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names) \
                or names[0] != "input_ids":
            raise ValueError(f"{config_file}: model_input_names must be a list of str starting with 'input_ids', "
                             f"got {describe(names)}")
        tokenizer.model_input_names = list(names)


def _check_class(config_file: Path, config: dict, ours: tuple[str, ...], cls: str) -> None:
    """Another tokenizer class (RobertaTokenizer, MPNetTokenizer...) rebuilds the tokenizer its own
    way in transformers (other special tokens, templates): refused rather than read differently."""
    name = config.get("tokenizer_class")
    if name not in GENERIC_CLASSES + ours:
        raise _unsupported(config_file, "tokenizer_class", name, f"{cls} tokenizes as {' or '.join(ours[::2])} "
                           f"(or a generic tokenizer.json) does; transformers' {name} may add or split differently")


_READERS = {"WordPiece": "WordPieceTokenizer", "BPE": "ByteLevelBPETokenizer"}


def _tokenizer_json_model(file: Path, kind: str) -> tuple[dict, dict]:
    """(the whole tokenizer.json, its "model" object), whose model.type must be kind
    ("WordPiece" or "BPE"): a ValueError naming the file, the field and the class that reads
    the other kind otherwise."""
    data = _read_json(file)
    model = data.get("model")
    found = model.get("type") if isinstance(model, dict) else model
    if found != kind:
        other = next((f" (a {t} model loads with {c}.from_pretrained)" for t, c in _READERS.items()
                      if t == found), "")
        raise _unsupported(file, "model.type", found, f"{_READERS[kind]} reads a {kind} model{other}")
    return data, model


def _wordpiece_tokenizer_json(file: Path, config: dict) -> tuple[dict[str, int], dict, list[str]]:
    """(vocab, options of WordPieceFiles, extra special tokens) of a WordPiece tokenizer.json.
    ValueError naming the file and the field for whatever we cannot tokenize identically."""
    data, model = _tokenizer_json_model(file, "WordPiece")
    vocab = model.get("vocab")
    if isinstance(vocab, list):  # an older layout: the tokens in id order
        vocab = {t[0] if isinstance(t, list) else t: i for i, t in enumerate(vocab)}
    if not isinstance(vocab, dict) or not vocab or not all(isinstance(t, str) and _int_or_none(i) is not None
                                                            for t, i in vocab.items()):
        raise ValueError(f"{file}: model.vocab must be a non-empty object of token -> id, got {describe(vocab)}")
    vocab = {t: int(i) for t, i in vocab.items()}
    if model.get("continuing_subword_prefix", "##") != "##":
        raise _unsupported(file, "model.continuing_subword_prefix", model["continuing_subword_prefix"],
                           "WordPiece continues a word with '##' here")
    options = {"unk_token": model.get("unk_token", "[UNK]"),
               "max_input_chars_per_word": model.get("max_input_chars_per_word", 100)}
    special = _check_added_tokens(file, data, vocab, "WordPiece")
    if config.get("tokenizer_class") in BERT_CLASSES:  # transformers rebuilds the rest from the config
        options.update(BERT_DEFAULTS)
        return vocab, options, list(special)
    normalizer = _one_of_sequence(data.get("normalizer"), "normalizers")
    if not isinstance(normalizer, dict) or normalizer.get("type") != "BertNormalizer":
        raise _unsupported(file, "normalizer", data.get("normalizer"), "WordPieceTokenizer normalizes as BERT "
                           "does (a BertNormalizer)")
    if normalizer.get("clean_text", True) is not True:
        raise _unsupported(file, "normalizer.clean_text", normalizer["clean_text"], "text is always cleaned")
    options.update(do_lower_case=normalizer.get("lowercase", True), strip_accents=normalizer.get("strip_accents"),
                   tokenize_chinese_chars=normalizer.get("handle_chinese_chars", True))
    pre = _one_of_sequence(data.get("pre_tokenizer"), "pretokenizers")
    if not isinstance(pre, dict) or pre.get("type") != "BertPreTokenizer":
        raise _unsupported(file, "pre_tokenizer", data.get("pre_tokenizer"), "WordPieceTokenizer splits words as "
                           "BERT does (a BertPreTokenizer)")
    cls, sep = _bert_template(file, data.get("post_processor"), vocab)
    options.update(cls_token=cls, sep_token=sep)
    return vocab, options, list(special)


def _bert_template(file: Path, post: object, vocab: dict[str, int]) -> tuple[str, str]:
    """(cls, sep) of a post-processor that makes [CLS] A [SEP] and [CLS] A [SEP] B [SEP] with
    type ids 0 for the first part and 1 for the second (BertProcessing, or the TemplateProcessing
    transformers 5 writes); ValueError for any other."""
    why = "WordPieceTokenizer adds [CLS] A [SEP] (B [SEP]) with token types 0 (1)"
    if isinstance(post, dict) and post.get("type") == "BertProcessing":
        (cls, cls_id), (sep, sep_id) = post.get("cls", ("", -1)), post.get("sep", ("", -1))
    elif isinstance(post, dict) and post.get("type") == "TemplateProcessing":
        def piece(p):
            kind, body = next(iter(p.items())) if isinstance(p, dict) and len(p) == 1 else (None, {})
            return kind, body.get("id"), body.get("type_id")
        single, pair = [piece(p) for p in post.get("single", [])], [piece(p) for p in post.get("pair", [])]
        cls, sep = (single[0][1], single[2][1]) if len(single) == 3 else (None, None)
        want_single = [("SpecialToken", cls, 0), ("Sequence", "A", 0), ("SpecialToken", sep, 0)]
        want_pair = want_single + [("Sequence", "B", 1), ("SpecialToken", sep, 1)]
        if single != want_single or pair != want_pair:
            raise _unsupported(file, "post_processor", post, why)
        ids = {k: (v.get("ids") or [None])[0] for k, v in (post.get("special_tokens") or {}).items()}
        cls_id, sep_id = ids.get(cls), ids.get(sep)
    else:
        if post is None:  # what tokenizers' BertWordPieceTokenizer saves when trained from scratch
            why += ("; this one adds none. To have [CLS]/[SEP] added by transformers too, put "
                    '{"tokenizer_class": "BertTokenizer"} in a tokenizer_config.json beside it')
        raise _unsupported(file, "post_processor", post, why)
    for name, token, i in (("cls", cls, cls_id), ("sep", sep, sep_id)):
        if not isinstance(token, str) or vocab.get(token) != i:
            raise _unsupported(file, f"post_processor ({name})", [token, i], f"the {name} token must be in "
                               f"model.vocab with that id (model.vocab has {vocab.get(token)!r})")
    return cls, sep


def _bpe_tokenizer_json(file: Path, config: dict) -> tuple[dict[str, int], list[tuple[str, str]], dict[str, int]]:
    """(encoder, merges, special tokens) of a byte-level BPE tokenizer.json (GPT-2's).
    ValueError naming the file and the field for whatever we cannot tokenize identically."""
    data, model = _tokenizer_json_model(file, "BPE")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not all(isinstance(t, str) and _int_or_none(i) is not None
                                              for t, i in vocab.items()):
        raise ValueError(f"{file}: model.vocab must be an object of token -> id, got {describe(vocab)}")
    merges = []
    for n, merge in enumerate(model.get("merges") or []):
        pair = merge.split(" ") if isinstance(merge, str) else merge
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
            raise ValueError(f"{file}: model.merges[{n}] must be 'a b' or [a, b], got {describe(merge)}")
        merges.append((pair[0], pair[1]))
    # Options of tokenizers' BPE model under which it is no longer GPT-2's byte-level BPE.
    for field, ok in (("continuing_subword_prefix", (None, "")), ("end_of_word_suffix", (None, "")),
                      ("dropout", (None, 0, 0.0)), ("byte_fallback", (None, False)), ("ignore_merges", (None, False))):
        if model.get(field) not in ok:
            raise _unsupported(file, f"model.{field}", model[field], "GPT-2's byte-level BPE has none")
    if config.get("tokenizer_class") in GPT2_CLASSES:
        # transformers rebuilds the pre-tokenizer from add_prefix_space (models/gpt2/tokenization_gpt2.py)
        pre = {"type": "ByteLevel", "add_prefix_space": config.get("add_prefix_space", False)}
        pre_field = "tokenizer_config.json's add_prefix_space"
    else:
        pre, pre_field = _one_of_sequence(data.get("pre_tokenizer"), "pretokenizers"), "pre_tokenizer"
        if data.get("normalizer") is not None:
            raise _unsupported(file, "normalizer", data["normalizer"], "a byte-level BPE sees the text as it is")
    # transformers keeps tokenizer.json's post-processor whatever the class (GPT2Tokenizer too: a
    # folder saved with add_bos_token=True has a template adding <|endoftext|>)
    post = data.get("post_processor")
    adds_nothing = post is None or isinstance(post, dict) and (
        post.get("type") == "ByteLevel"  # offsets only
        or post.get("type") == "TemplateProcessing" and post.get("single") == [{"Sequence": {"id": "A", "type_id": 0}}])
    if not adds_nothing:
        raise _unsupported(file, "post_processor", post, "ByteLevelBPETokenizer adds no tokens to a text")
    if not isinstance(pre, dict) or pre.get("type") != "ByteLevel" or pre.get("use_regex", True) is not True:
        raise _unsupported(file, pre_field, pre, "ByteLevelBPETokenizer splits words with GPT-2's pattern "
                           "(a ByteLevel pre-tokenizer, use_regex true): another BPE is not byte-level")
    if pre.get("add_prefix_space", False):
        raise _unsupported(file, pre_field if pre_field != "pre_tokenizer" else "pre_tokenizer.add_prefix_space",
                           True, "GPT-2 puts no space before the first word")
    encoder = {t: int(i) for t, i in vocab.items()}
    special = _check_added_tokens(file, data, encoder, "BPE")
    return encoder, merges, special


# Files of a tokenizer that a save of ours replaces: transformers reads tokenizer.json before
# vocab.txt / vocab.json, and special_tokens_map.json for the special tokens, so an old one
# left next to new files would make transformers load the old tokenizer.
STALE_TOKENIZER_FILES = ("tokenizer.json", "special_tokens_map.json", "added_tokens.json")


class WordPieceFiles:
    """A WordPiece vocabulary (vocab.txt: one token per line, its id is the line number) and
    BERT's options and special tokens. model_max_length: the longest row truncation=True or
    padding="max_length" make without a max_length; by default, and when a folder's
    tokenizer_config.json gives none, transformers' "no limit" (VERY_LARGE_INTEGER, 1e30:
    tokenization_utils_base.py), so that those calls neither cut nor pad, as transformers'."""

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
        model_max_length: int = NO_LIMIT,
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
        """path: a folder with tokenizer.json (what transformers 5 saves) or vocab.txt, and
        optionally tokenizer_config.json; or the tokenizer.json or vocab.txt itself.

        tokenizer.json is read first where there is one, as transformers does: model.vocab,
        unk_token, max_input_chars_per_word, the BertNormalizer's options (lowercase,
        strip_accents, handle_chinese_chars), the [CLS]/[SEP] of the post-processor and the
        special added tokens. With ``tokenizer_class`` BertTokenizer in tokenizer_config.json,
        transformers' BertTokenizer rebuilds normalizer and template from the config's options
        (its defaults where the config has none: lower-casing, CJK splitting), and so do we.
        Options come from tokenizer_config.json where it has them (do_lower_case,
        strip_accents, tokenize_chinese_chars, the special tokens, model_max_length,
        max_input_chars_per_word); keyword arguments override them. The padding and
        truncation a tokenizer.json may carry are not read: transformers' ``__call__`` applies
        them only when asked, through its arguments.

        What this tokenizer cannot do identically is a ValueError naming the file and the
        field, never different ids: a tokenizer.json of another model (BPE, Unigram), another
        continuing-subword prefix than "##", a normalizer or pre-tokenizer other than BERT's,
        a post-processor other than [CLS] A [SEP] (B [SEP]), non-special added tokens; in
        tokenizer_config.json, do_basic_tokenize=False or a never_split list.
        FileNotFoundError without tokenizer.json or vocab.txt.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist (pass a folder with tokenizer.json or vocab.txt, "
                                    "or the file itself)")
        json_file, vocab_file, config = _tokenizer_files(path, ("vocab.txt",))
        if json_file is None and vocab_file is None:
            raise FileNotFoundError(f"no tokenizer.json or vocab.txt in {path} (pass a folder with one of them, "
                                    "or the file itself)")
        config_file = (json_file or vocab_file).parent / "tokenizer_config.json"
        # Options we cannot honour are refused, not ignored: the ids would differ from transformers'.
        if config.get("do_basic_tokenize") is False:
            raise ValueError(f"{config_file}: do_basic_tokenize=False (WordPiece on raw text) is not supported")
        if config.get("never_split"):
            raise ValueError(f"{config_file}: never_split={config['never_split']!r} is not supported")
        extra_special: list[str] = []
        _check_class(config_file, config, BERT_CLASSES, cls.__name__)
        if json_file is not None:
            vocab, options, extra_special = _wordpiece_tokenizer_json(json_file, config)
            vocab_file = json_file
        else:
            options = {}
            lines = vocab_file.read_text(encoding="utf-8").split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            vocab = {}
            for i, token in enumerate(lines):
                vocab[token.rstrip("\r")] = i  # a repeated line keeps the last id, as transformers does
        known = ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "unk_token", "sep_token",
                 "pad_token", "cls_token", "mask_token", "model_max_length", "max_input_chars_per_word")
        from_config = {k: config[k] for k in known if isinstance(config.get(k), (str, bool, int)) or
                       k == "strip_accents" and k in config and config[k] is None}
        if json_file is not None and config.get("tokenizer_class") not in BERT_CLASSES:
            # transformers then tokenizes as tokenizer.json says, whatever the config's options
            def effective(opts):  # strip_accents None means "as do_lower_case"
                return {**opts, "strip_accents": opts["do_lower_case"] if opts.get("strip_accents") is None
                        else opts["strip_accents"]} if "do_lower_case" in opts else opts
            mine, theirs = effective(options), effective({**options, **from_config})
            clash = {k: (mine[k], theirs[k]) for k in from_config if k in mine and mine[k] != theirs[k]}
            if clash:
                raise ValueError(f"{json_file} and {config_file} disagree on {', '.join(clash)} "
                                 f"(tokenizer.json, config: {list(clash.values())}); transformers follows "
                                 "tokenizer.json unless the config's tokenizer_class is BertTokenizer")
        options.update(from_config)
        options.update(kwargs)
        added = config.get("added_tokens_decoder")
        if isinstance(added, dict):  # what save_pretrained (ours, transformers' 4.x) writes for vocab.txt
            from_config = {v["content"]: int(k) for k, v in added.items() if isinstance(v, dict) and v.get("special")
                           and isinstance(v.get("content"), str) and str(k).isdigit()}
            _add_to_vocab(config_file, vocab, from_config)
            extra_special += list(from_config)
        extra_special += _extra_special_tokens(config_file, config, vocab)
        try:
            tokenizer = cls(vocab, **options)
        except (TypeError, ValueError) as e:  # say which file and how to choose another token
            raise type(e)(f"{vocab_file}: {e}; BERT's calls need [UNK], [SEP], [PAD] and [CLS] tokens: pass the "
                          f"ones this vocabulary has, e.g. from_pretrained(path, pad_token=...)") from None
        _read_sides(config_file, config, tokenizer, json_file)
        _read_input_names(config_file, config, tokenizer)
        # Other special tokens (an [unused0] made special, say) are kept whole in a text too.
        tokenizer.special_tokens += [t for t in dict.fromkeys(extra_special) if t not in tokenizer.special_tokens]
        return tokenizer

    def save_pretrained(self, folder: str | os.PathLike) -> list[Path]:
        """Write vocab.txt and tokenizer_config.json; transformers' ``AutoTokenizer`` (a
        BertTokenizer) loads them with our options (do_lower_case, strip_accents,
        tokenize_chinese_chars, the special tokens, model_max_length) and gives our ids.
        Special tokens beyond BERT's five go in ``added_tokens_decoder``. A
        max_input_chars_per_word other than 100 is saved with a UserWarning: transformers 5's
        BertTokenizer does not read it (models/bert/tokenization_bert.py).

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
            "padding_side": getattr(self, "padding_side", "right"), "truncation_side": getattr(self, "truncation_side", "right"),
            "model_input_names": list(getattr(self, "model_input_names", ["input_ids", "token_type_ids", "attention_mask"])),
        }
        if self.max_input_chars_per_word != 100:
            warnings.warn(f"max_input_chars_per_word={self.max_input_chars_per_word} is saved and mlab_tfs loads it "
                          "back, but transformers 5's BertTokenizer ignores it (its WordPiece model always uses 100): "
                          "words longer than that are [UNK] for us and word pieces for transformers", stacklevel=2)
        extra = [t for t in self.special_tokens if t not in
                 (self.unk_token, self.sep_token, self.pad_token, self.cls_token, self.mask_token)]
        if extra:  # special tokens beyond BERT's five, kept whole by both tokenizers
            config["added_tokens_decoder"] = {
                str(self.vocab[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                     "single_word": False, "special": True} for t in extra}
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
        """The id of each token string; unk_token's id for a string not in the vocabulary (as
        transformers' _convert_token_to_id_with_added_voc). TypeError for a token that is not a
        str, or tokens that are not a list of them."""
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
            raise TypeError(f"tokens must be a list of str, got {describe(tokens)}")
        unk, vocab, out = self.unk_token_id, self.vocab, []
        for i, t in enumerate(tokens):
            if not isinstance(t, str):
                raise TypeError(f"tokens must be a list of str, got {describe(t)} at index {i}")
            out.append(vocab.get(t, unk))
        return out

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

    # transformers' "no limit" (GPT-2's files carry none; a tokenizer_config.json may set one)
    model_max_length: int = NO_LIMIT

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike):
        """path: a folder with tokenizer.json (what transformers 5 saves), or vocab.json +
        merges.txt (transformers' older names) or encoder.json + vocab.bpe (OpenAI's names for
        the same two files); or the tokenizer.json itself.

        tokenizer.json is read first where there is one, as transformers does: model.vocab,
        model.merges ("a b" strings or [a, b] pairs) and the special added tokens. The special
        tokens otherwise come from tokenizer_config.json's ``added_tokens_decoder`` where there
        is one (what save_pretrained writes), else "<|endoftext|>" if the vocabulary has it.
        tokenizer_config.json also gives ``model_max_length`` and, where set, ``pad_token``.

        What this tokenizer cannot do identically is a ValueError naming the file and the
        field, never different ids: a tokenizer.json that is not GPT-2's byte-level BPE (a
        WordPiece or Unigram model, a BPE with a normalizer, continuing-subword prefix,
        end-of-word suffix, dropout, byte fallback or another pre-tokenizer), add_prefix_space
        true (in tokenizer.json or tokenizer_config.json), a post-processor that adds tokens
        (add_bos_token / add_eos_token true in tokenizer_config.json too),
        non-special added tokens. FileNotFoundError without the files; ValueError for a
        malformed merges line.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist (pass a folder with tokenizer.json, or vocab.json and "
                                    "merges.txt, or the tokenizer.json itself)")
        json_file, _, config = _tokenizer_files(path, ("vocab.json", "encoder.json"))
        folder = path.parent if path.is_file() else path
        config_file = folder / "tokenizer_config.json"
        _check_class(config_file, config, GPT2_CLASSES, cls.__name__)
        if config.get("add_prefix_space"):
            raise _unsupported(config_file, "add_prefix_space", True, "GPT-2 puts no space before the first word")
        for flag in ("add_bos_token", "add_eos_token"):  # transformers then builds a template adding them
            if config.get(flag):
                raise _unsupported(config_file, flag, True, "ByteLevelBPETokenizer adds no tokens to a text")
        special = None
        if json_file is not None:
            encoder, merges, special = _bpe_tokenizer_json(json_file, config)
        else:
            vocab_file = _resolve(folder, "vocab.json", "encoder.json")
            merges_file = _resolve(folder, "merges.txt", "vocab.bpe")
            if vocab_file is None or merges_file is None:
                raise FileNotFoundError(f"{path} needs tokenizer.json, or vocab.json and merges.txt (or encoder.json "
                                        "and vocab.bpe)")
            encoder = _read_json(vocab_file)
            merges = []
            for n, line in enumerate(merges_file.read_text(encoding="utf-8").split("\n"), start=1):
                if line.startswith("#version") or not line.strip():
                    continue
                pair = line.split(" ")
                if len(pair) != 2:
                    raise ValueError(f"{merges_file}, line {n}: a merge is two tokens separated by one space, "
                                     f"got {line!r}")
                merges.append((pair[0], pair[1]))
        added = config.get("added_tokens_decoder")
        if isinstance(added, dict):
            from_config = {v["content"]: int(k) for k, v in added.items() if isinstance(v, dict) and v.get("special")}
            special = {**(special or {}), **from_config} or None
        extra = _extra_special_tokens(config_file, config, {**encoder, **(special or {})})
        if extra:
            special = {**(special or {}), **{t: (special or {}).get(t, encoder.get(t)) for t in extra}}
        tokenizer = cls(encoder, merges, special)
        _read_sides(config_file, config, tokenizer, json_file)
        _read_input_names(config_file, config, tokenizer)
        limit = config.get("model_max_length")
        if _int_or_none(limit) is not None and 1 <= limit < NO_LIMIT:
            tokenizer.model_max_length = int(limit)
        pad = config.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad  # transformers 4 wrote AddedToken objects
        if isinstance(pad, str):
            if pad not in tokenizer.special_tokens and pad not in tokenizer.encoder:
                raise ValueError(f"{config_file}: pad_token {pad!r} is not a token of this vocabulary")
            tokenizer.pad_token = pad
        return tokenizer

    def save_pretrained(self, folder: str | os.PathLike) -> list[Path]:
        """Write vocab.json, merges.txt and tokenizer_config.json; transformers'
        ``AutoTokenizer.from_pretrained(folder)`` (a GPT2Tokenizer) loads them and gives our ids.

        tokenizer_config.json holds what AutoTokenizer reads: tokenizer_class GPT2Tokenizer,
        the special tokens (``added_tokens_decoder``), bos/eos/unk ("<|endoftext|>" where the
        vocabulary has it, else none), pad_token (where set), add_prefix_space false,
        model_max_length, clean_up_tokenization_spaces false (decode gives the text back), and
        the other special tokens as ``extra_special_tokens`` (so that transformers'
        all_special_ids and special-tokens masks count them, as ours do).
        transformers matches every special token in a text, so its ids equal
        ``encode(text, allowed_special="all")`` (``split_special_tokens=True``: "none").

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
        pad = getattr(self, "pad_token", None)
        if pad is not None and pad not in self.special_tokens and pad not in self.encoder:
            # transformers would add it as a new token, past the model's embeddings
            raise ValueError(f"pad_token {pad!r} is not a token of this vocabulary (set it to one, or None)")
        # Without "<|endoftext|>", GPT2Tokenizer's defaults would add it as a new token: say "none".
        eot = "<|endoftext|>" if "<|endoftext|>" in self.special_tokens else None
        config = {"tokenizer_class": "GPT2Tokenizer", "added_tokens_decoder": added, "bos_token": eot,
                  "eos_token": eot, "unk_token": eot, "pad_token": pad,
                  "add_prefix_space": False, "model_max_length": self.model_max_length,
                  "clean_up_tokenization_spaces": False, "errors": "replace",
                  "padding_side": getattr(self, "padding_side", "right"),
                  "truncation_side": getattr(self, "truncation_side", "right"),
                  "model_input_names": list(getattr(self, "model_input_names", ["input_ids", "attention_mask"]))}
        extra = [t for t in self.special_tokens if t not in (eot, pad)]
        if extra:  # so that transformers counts them special too (all_special_ids, special-tokens masks)
            config["extra_special_tokens"] = extra
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
