"""Tokenizer files as transformers 5 writes them: ``tokenizer.json`` (+ tokenizer_config.json),
read by our from_pretrained with transformers' ids, and our BPE folders read by
``AutoTokenizer`` with our ids. What we cannot tokenize identically is a ValueError naming the
file and the field.

Each equality runs over TEXTS: 300 lines of Shakespeare, the tricky pieces of strategies.py
alone and glued together, and texts with special tokens written in them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mlab_tfs import assets
from mlab_tfs.tokenizers.tests.strategies import TRICKY

transformers = pytest.importorskip("transformers")

_LINES = assets.shakespeare_text().splitlines()
TEXTS = [
    *[line for line in _LINES[1000:1600] if line.strip()][:300],
    *TRICKY,
    "".join(TRICKY), " ".join(TRICKY),
    "Héllo, Wörld! 中文東京 don't the end", "ROMEO: hello", "  leading and trailing  ", "",
    "a[SEP]b [CLS] c[MASK]", "x<|endoftext|>y <|endoftext|> <|endoftext|><|endoftext|>", "ÀÉÎÕÜ naïve café",
    "a" * 120 + " " + "b" * 99, "\U0002B820\U00020000 𠀀x", "３．１４ ½ ⅷ",
]


def _theirs(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _their_ids(hf, text: str, **kwargs) -> list[int]:
    return hf(text, **kwargs)["input_ids"]


def _rewrite(folder: Path, name: str, change) -> None:
    """Edit a JSON file of folder in place: change(data) mutates it."""
    data = json.loads((folder / name).read_text(encoding="utf-8"))
    change(data)
    (folder / name).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


@pytest.fixture(scope="module")
def bert_saved(tmp_path_factory):
    """MiniLM's tokenizer saved by transformers 5: tokenizer.json + tokenizer_config.json only."""
    folder = tmp_path_factory.mktemp("bert_saved")
    _theirs(assets.minilm_path()).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    return folder


@pytest.fixture(scope="module")
def gpt2_saved(tmp_path_factory):
    """GPT-2's vocabulary saved by transformers 5's GPT2TokenizerFast: tokenizer.json + config."""
    from transformers import GPT2TokenizerFast

    src = tmp_path_factory.mktemp("gpt2_files")
    shutil.copy(assets.gpt2_vocab_dir() / "encoder.json", src / "vocab.json")
    shutil.copy(assets.gpt2_vocab_dir() / "vocab.bpe", src / "merges.txt")
    folder = tmp_path_factory.mktemp("gpt2_saved")
    GPT2TokenizerFast.from_pretrained(str(src)).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    return folder


@pytest.fixture(scope="module")
def trained(tok):
    """Our BPE of 400 tokens with two special tokens, trained on Shakespeare."""
    return tok.ByteLevelBPETokenizer.train([assets.shakespeare_text()[:40_000]], 400,
                                           special_tokens=["<|endoftext|>", "<|pad|>"])


def _copy(src: Path, dst: Path, *names: str) -> Path:
    dst.mkdir()
    for name in names:
        shutil.copy(src / name, dst / name)
    return dst


def _assert_bert_equal(ours, hf, what: str) -> None:
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    for text in TEXTS:
        assert ours.encode(text) == _their_ids(hf, text), f"{what}: {text!r}"
    pairs = list(zip(TEXTS[::7], TEXTS[3::7]))
    for a, b in pairs:
        assert ours.encode(a, b) == _their_ids(hf, a, text_pair=b), f"{what}: pair {a!r}, {b!r}"


# ---------------------------------------------------------------------------------------------
# WordPiece
# ---------------------------------------------------------------------------------------------


@pytest.mark.exercise("bert_encode")
def test_wordpiece_reads_a_transformers_5_folder(tok, bert_saved):
    """The folder, and the tokenizer.json itself, give transformers' ids on every text."""
    hf = _theirs(bert_saved)
    for path in (bert_saved, bert_saved / "tokenizer.json"):
        ours = tok.WordPieceTokenizer.from_pretrained(path)
        assert len(ours) == len(hf) == 30522 and ours.model_max_length == hf.model_max_length == 512
        assert (ours.cls_token_id, ours.sep_token_id, ours.pad_token_id, ours.unk_token_id, ours.mask_token_id) \
            == (hf.cls_token_id, hf.sep_token_id, hf.pad_token_id, hf.unk_token_id, hf.mask_token_id) \
            == (101, 102, 0, 100, 103)
        _assert_bert_equal(ours, hf, str(path))


@pytest.mark.exercise("bert_encode")
@pytest.mark.parametrize("options", [
    {"do_lower_case": False},
    {"do_lower_case": False, "strip_accents": True},
    {"do_lower_case": True, "strip_accents": False},
    {"tokenize_chinese_chars": False},
])
def test_wordpiece_normalizer_options_from_a_saved_folder(tok, bert_saved, options, tmp_path):
    """BertTokenizer(options) saved by transformers: its config and tokenizer.json both carry
    the options, and ours follows them, id for id."""
    from transformers import BertTokenizer

    BertTokenizer.from_pretrained(str(bert_saved), **options).save_pretrained(tmp_path)
    hf = _theirs(tmp_path)
    ours = tok.WordPieceTokenizer.from_pretrained(tmp_path)
    assert ours.encode("Héllo 中文") != tok.WordPieceTokenizer.from_pretrained(bert_saved).encode("Héllo 中文")
    _assert_bert_equal(ours, hf, str(options))


@pytest.mark.exercise("bert_encode")
@pytest.mark.parametrize("normalizer", [
    {"lowercase": False},
    {"lowercase": False, "strip_accents": True},
    {"lowercase": True, "strip_accents": False},
    {"handle_chinese_chars": False},
    {},  # BERT's defaults, inside a Sequence of one
])
def test_wordpiece_tokenizer_json_alone(tok, bert_saved, normalizer, tmp_path):
    """tokenizer.json without tokenizer_config.json (a tokenizers library file): transformers
    builds everything from it, and so do we: normalizer, template, added tokens."""
    folder = _copy(bert_saved, tmp_path / "only", "tokenizer.json")

    def change(data):
        data["normalizer"].update(normalizer)
        if not normalizer:
            data["normalizer"] = {"type": "Sequence", "normalizers": [data["normalizer"]]}
            data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [data["pre_tokenizer"]]}

    _rewrite(folder, "tokenizer.json", change)
    hf = _theirs(folder)
    assert type(hf).__name__ == "TokenizersBackend", "test setup: transformers reads tokenizer.json alone"
    _assert_bert_equal(tok.WordPieceTokenizer.from_pretrained(folder), hf, str(normalizer))


@pytest.mark.exercise("bert_encode")
def test_wordpiece_bert_processing_and_config_class(tok, bert_saved, tmp_path):
    """BertProcessing (tokenizers' older post-processor) reads as the template does; with
    tokenizer_class BertTokenizer transformers takes the options from the config (its defaults:
    lower-casing) whatever tokenizer.json's normalizer says, and so do we."""
    folder = _copy(bert_saved, tmp_path / "a", "tokenizer.json")
    _rewrite(folder, "tokenizer.json", lambda d: d.update(
        post_processor={"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}))
    _assert_bert_equal(tok.WordPieceTokenizer.from_pretrained(folder), _theirs(folder), "BertProcessing")

    folder = _copy(bert_saved, tmp_path / "b", "tokenizer.json")
    _rewrite(folder, "tokenizer.json", lambda d: d["normalizer"].update(lowercase=False))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    ours, hf = tok.WordPieceTokenizer.from_pretrained(folder), _theirs(folder)
    assert ours.do_lower_case is True and ours.encode("Hello") == _their_ids(hf, "Hello") == [101, 7592, 102]


@pytest.mark.exercise("bert_encode")
def test_wordpiece_extra_special_tokens_are_kept_whole_and_saved(tok, bert_saved, tmp_path):
    """An added special token beyond BERT's five ([unused1], id 2) stays whole in a text, as in
    transformers, and survives our save (added_tokens_decoder) for both loaders."""
    folder = _copy(bert_saved, tmp_path / "extra", "tokenizer.json")
    added = {"id": 2, "content": "[unused1]", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
    _rewrite(folder, "tokenizer.json", lambda d: d["added_tokens"].append(added))
    ours, hf = tok.WordPieceTokenizer.from_pretrained(folder), _theirs(folder)
    text = "a[unused1]b [UNUSED1] [unused1][SEP]"
    assert ours.encode(text) == _their_ids(hf, text) == [101, 1037, 2, 1038, 1031, 15171, 2487, 1033, 2, 102, 102]
    assert ours.decode(ours.encode(text), skip_special_tokens=True) == hf.decode(_their_ids(hf, text),
                                                                                 skip_special_tokens=True)
    ours.save_pretrained(tmp_path / "ours")
    assert tok.WordPieceTokenizer.from_pretrained(tmp_path / "ours").encode(text) == ours.encode(text)
    assert _their_ids(_theirs(tmp_path / "ours"), text) == ours.encode(text)


@pytest.mark.exercise("bert_encode")
@pytest.mark.parametrize("options", [{}, {"do_lower_case": False}, {"do_lower_case": False, "strip_accents": True},
                                     {"tokenize_chinese_chars": False}])
def test_wordpiece_save_tells_autotokenizer_its_options(tok, options, tmp_path):
    """Our save (vocab.txt + tokenizer_config.json) gives AutoTokenizer our options and ids."""
    ours = tok.WordPieceTokenizer.from_pretrained(assets.minilm_path(), **options)
    ours.save_pretrained(tmp_path)
    hf = _theirs(tmp_path)
    assert hf.do_lower_case == ours.do_lower_case and hf.model_max_length == ours.model_max_length == 512
    _assert_bert_equal(ours, hf, str(options))
    again = tok.WordPieceTokenizer.from_pretrained(tmp_path)
    assert [again.encode(t) for t in TEXTS] == [ours.encode(t) for t in TEXTS]


@pytest.mark.solution_only
def test_wordpiece_config_options_and_clashes(tok, bert_saved, tmp_path):
    folder = _copy(bert_saved, tmp_path / "a", "tokenizer.json", "tokenizer_config.json")
    _rewrite(folder, "tokenizer_config.json", lambda d: d.update(model_max_length=77))
    assert tok.WordPieceTokenizer.from_pretrained(folder).model_max_length == _theirs(folder).model_max_length == 77
    # Without tokenizer_class BertTokenizer transformers follows tokenizer.json: a config saying
    # otherwise is a contradiction, not a choice to make silently.
    folder = _copy(bert_saved, tmp_path / "b", "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    with pytest.raises(ValueError, match=r"tokenizer.json and .*tokenizer_config.json disagree on do_lower_case"):
        tok.WordPieceTokenizer.from_pretrained(folder)
    # The same options said two ways (strip_accents None follows lower-casing) are no clash.
    _rewrite(folder, "tokenizer.json", lambda d: d["normalizer"].update(lowercase=False, strip_accents=None))
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "strip_accents": False}))
    ours = tok.WordPieceTokenizer.from_pretrained(folder)
    assert (ours.do_lower_case, ours.strip_accents) == (False, False)
    assert ours.encode("Héllo") == _their_ids(_theirs(folder), "Héllo")


BERT_REFUSED = [
    ("model.type", lambda d: d["model"].update(type="Unigram"), r"model.type = \"Unigram\" is not supported"),
    ("BPE", lambda d: d["model"].update(type="BPE"), r"ByteLevelBPETokenizer.from_pretrained"),
    ("prefix", lambda d: d["model"].update(continuing_subword_prefix="@@"),
     r"model.continuing_subword_prefix = \"@@\" is not supported"),
    ("clean_text", lambda d: d["normalizer"].update(clean_text=False), r"normalizer.clean_text = false"),
    ("normalizer", lambda d: d.update(normalizer={"type": "Lowercase"}), r"normalizer = \{\"type\": \"Lowercase\"\}"),
    ("no normalizer", lambda d: d.update(normalizer=None), r"normalizer = null is not supported"),
    ("pre_tokenizer", lambda d: d.update(pre_tokenizer={"type": "Whitespace"}), r"pre_tokenizer = .*Whitespace"),
    ("roberta", lambda d: d.update(post_processor={"type": "RobertaProcessing", "sep": ["[SEP]", 102],
                                                   "cls": ["[CLS]", 101]}), r"post_processor = .*RobertaProcessing"),
    ("no post", lambda d: d.update(post_processor=None), r"post_processor = null"),
    ("wrong cls id", lambda d: d.update(post_processor={"type": "BertProcessing", "sep": ["[SEP]", 102],
                                                        "cls": ["[CLS]", 7]}), r"post_processor \(cls\)"),
    ("not special", lambda d: d["added_tokens"].append({"id": 2, "content": "[unused1]", "special": False}),
     r"added_tokens\[5\] = .*not special"),
    ("lstrip", lambda d: d["added_tokens"][4].update(lstrip=True), r"added_tokens\[4\].lstrip = true"),
    ("gap", lambda d: d["added_tokens"].append({"id": 30530, "content": "<new>", "special": True}),
     r"'<new>' has the id 30530, past the vocabulary of 30522 tokens"),
    ("taken id", lambda d: d["added_tokens"].append({"id": 7, "content": "<new>", "special": True}),
     r"'<new>' has the id 7, but the vocabulary gives '<new>' the id None and 7 to another token"),
    ("moved", lambda d: d["added_tokens"][0].update(id=1), r"'\[PAD\]' is also model.vocab's token 0, and "
     r"transformers gives it that id, not 1"),
]


@pytest.mark.solution_only
@pytest.mark.parametrize("name, change, match", BERT_REFUSED, ids=[c[0] for c in BERT_REFUSED])
def test_wordpiece_refuses_what_it_cannot_tokenize_identically(tok, bert_saved, name, change, match, tmp_path):
    folder = _copy(bert_saved, tmp_path / "x", "tokenizer.json")
    _rewrite(folder, "tokenizer.json", change)
    with pytest.raises(ValueError, match=match) as e:
        tok.WordPieceTokenizer.from_pretrained(folder)
    assert str(folder / "tokenizer.json") in str(e.value)


@pytest.mark.solution_only
def test_missing_and_malformed_files(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or vocab.txt in"):
        tok.WordPieceTokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="needs tokenizer.json, or vocab.json and merges.txt"):
        tok.ByteLevelBPETokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tok.ByteLevelBPETokenizer.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "tokenizer.json").write_text("{not json")
    for cls in (tok.WordPieceTokenizer, tok.ByteLevelBPETokenizer):
        with pytest.raises(ValueError, match=r"tokenizer.json is not valid JSON"):
            cls.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------
# Byte-level BPE
# ---------------------------------------------------------------------------------------------


def _assert_bpe_equal(ours, hf, what: str) -> None:
    """transformers matches every special token in a text: allowed_special="all"; with
    split_special_tokens=True it matches none: allowed_special="none"."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    for text in TEXTS:
        assert ours.encode(text, allowed_special="all") == _their_ids(hf, text), f"{what}: {text!r}"
    hf_split = type(hf).from_pretrained(hf.name_or_path, split_special_tokens=True)
    for text in TEXTS[-12:]:
        assert ours.encode(text) == _their_ids(hf_split, text), f"{what}, split_special_tokens: {text!r}"


@pytest.mark.exercise("bpe_encode")
@pytest.mark.parametrize("merges_as", ["pairs", "strings"])
def test_bpe_reads_a_transformers_5_folder(tok, gpt2_saved, tmp_path, merges_as):
    """GPT-2 saved by transformers 5 (merges as [a, b] pairs; older files: "a b" strings): our
    ids are transformers' on every text, through the folder and the file itself."""
    folder = _copy(gpt2_saved, tmp_path / "g", "tokenizer.json", "tokenizer_config.json")
    if merges_as == "strings":
        _rewrite(folder, "tokenizer.json", lambda d: d["model"].update(merges=[" ".join(m) for m in d["model"]["merges"]]))
    hf = _theirs(folder)
    for path in (folder, folder / "tokenizer.json") if merges_as == "pairs" else (folder,):
        ours = tok.ByteLevelBPETokenizer.from_pretrained(path)
        assert len(ours) == len(hf) == 50257 and ours.special_tokens == {"<|endoftext|>": 50256}
        assert ours.encode("ROMEO: hello <|endoftext|>", allowed_special="all") == [33676, 4720, 25, 23748, 220, 50256]
        _assert_bpe_equal(ours, hf, str(path))


@pytest.mark.exercise("bpe_encode")
def test_bpe_tokenizer_json_alone(tok, gpt2_saved, tmp_path):
    """Without tokenizer_config.json transformers builds the tokenizer from tokenizer.json alone."""
    folder = _copy(gpt2_saved, tmp_path / "only", "tokenizer.json")
    hf = _theirs(folder)
    assert type(hf).__name__ == "TokenizersBackend", "test setup"
    _assert_bpe_equal(tok.ByteLevelBPETokenizer.from_pretrained(folder), hf, "tokenizer.json alone")


@pytest.mark.exercise("bpe_encode")
def test_our_bpe_folder_gives_our_ids_in_autotokenizer(tok, trained, tmp_path):
    """Our save -> AutoTokenizer: the same ids (special tokens in the text: allowed_special
    "all"; with split_special_tokens=True: "none"), the same decode, and the special tokens
    transformers needs: eos = bos = unk = <|endoftext|>, no pad unless set, no prefix space."""
    trained.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert {k: config[k] for k in ("tokenizer_class", "eos_token", "bos_token", "unk_token", "pad_token",
                                   "add_prefix_space", "model_max_length")} == {
        "tokenizer_class": "GPT2Tokenizer", "eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": None, "add_prefix_space": False, "model_max_length": int(1e30)}
    hf = _theirs(tmp_path)
    assert len(hf) == len(trained) == 400 and (hf.eos_token_id, hf.pad_token_id) == (398, None)
    assert hf.model_max_length == trained.model_max_length == int(1e30)
    _assert_bpe_equal(trained, hf, "our save")
    text = "x<|pad|>y<|endoftext|> end"
    assert _their_ids(hf, text) == [120, 399, 121, 398, *trained.encode(" end")]  # x, y: the bytes' ids
    for t in TEXTS[:50] + TEXTS[-12:]:
        ids = trained.encode(t, allowed_special="all")
        assert hf.decode(ids) == trained.decode(ids), t


@pytest.mark.exercise("bpe_encode")
def test_bpe_round_trip_through_transformers(tok, trained, tmp_path):
    """Ours -> AutoTokenizer -> transformers 5's save (tokenizer.json only) -> ours: the same
    vocabulary, merges, special tokens and ids; model_max_length and pad_token travel."""
    trained.save_pretrained(tmp_path / "ours")
    hf = _theirs(tmp_path / "ours")
    hf.pad_token = "<|pad|>"
    hf.model_max_length = 64
    hf.save_pretrained(tmp_path / "theirs")
    back = tok.ByteLevelBPETokenizer.from_pretrained(tmp_path / "theirs")
    assert back.encoder == trained.encoder and back.merges == trained.merges
    assert back.special_tokens == trained.special_tokens == {"<|endoftext|>": 398, "<|pad|>": 399}
    assert back.model_max_length == 64 and back.pad_token == "<|pad|>"
    assert [back.encode(t, allowed_special="all") for t in TEXTS] == [trained.encode(t, allowed_special="all")
                                                                      for t in TEXTS]
    back.save_pretrained(tmp_path / "again")
    config = json.loads((tmp_path / "again" / "tokenizer_config.json").read_text())
    assert (config["pad_token"], config["model_max_length"]) == ("<|pad|>", 64)
    again = _theirs(tmp_path / "again")
    assert (again.pad_token_id, again.model_max_length) == (399, 64)


@pytest.mark.exercise("bpe_encode")
def test_bpe_without_end_of_text_says_so(tok, tmp_path):
    """A vocabulary without <|endoftext|>: the config says bos/eos/unk none, so transformers
    adds no token of its own (its GPT2Tokenizer defaults would)."""
    bpe = tok.ByteLevelBPETokenizer.train([assets.shakespeare_text()[:20_000]], 300, special_tokens=["<s>"])
    bpe.save_pretrained(tmp_path)
    hf = _theirs(tmp_path)
    assert len(hf) == 300 and hf.eos_token is None and hf.unk_token is None
    _assert_bpe_equal(bpe, hf, "no <|endoftext|>")


BPE_REFUSED = [
    ("WordPiece", "tokenizer.json", lambda d: d["model"].update(type="WordPiece"), r"WordPieceTokenizer.from_pretrained"),
    ("Unigram", "tokenizer.json", lambda d: d["model"].update(type="Unigram"), r"model.type = \"Unigram\""),
    ("prefix", "tokenizer.json", lambda d: d["model"].update(continuing_subword_prefix="##"),
     r"model.continuing_subword_prefix = \"##\""),
    ("suffix", "tokenizer.json", lambda d: d["model"].update(end_of_word_suffix="</w>"), r"model.end_of_word_suffix"),
    ("dropout", "tokenizer.json", lambda d: d["model"].update(dropout=0.1), r"model.dropout = 0.1"),
    ("byte_fallback", "tokenizer.json", lambda d: d["model"].update(byte_fallback=True), r"model.byte_fallback = true"),
    ("ignore_merges", "tokenizer.json", lambda d: d["model"].update(ignore_merges=True), r"model.ignore_merges"),
    ("prefix space", "tokenizer.json", lambda d: d["pre_tokenizer"].update(add_prefix_space=True),
     r"pre_tokenizer.add_prefix_space = true"),
    ("not byte-level", "tokenizer.json", lambda d: d.update(pre_tokenizer={"type": "Whitespace"}),
     r"pre_tokenizer = \{\"type\": \"Whitespace\"\} .*not byte-level"),
    ("no regex", "tokenizer.json", lambda d: d["pre_tokenizer"].update(use_regex=False), r"pre_tokenizer = "),
    ("normalizer", "tokenizer.json", lambda d: d.update(normalizer={"type": "NFC"}), r"normalizer = \{\"type\": \"NFC\"\}"),
    ("bos template", "tokenizer.json", lambda d: d.update(post_processor={
        "type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                                                 {"Sequence": {"id": "A", "type_id": 0}}], "pair": [],
        "special_tokens": {}}), r"post_processor = .*adds no tokens"),
    ("not special", "tokenizer.json", lambda d: d["added_tokens"].append({"id": 50257, "content": "<x>", "special": False}),
     r"added_tokens\[1\] = .*not special"),
    ("special is ordinary", "tokenizer.json", lambda d: d["added_tokens"].append(
        {"id": 50257, "content": "!", "special": True, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False}), r"'!' is also model.vocab's token 0, and transformers gives it that id, not 50257"),
    ("config prefix space", "tokenizer_config.json", lambda d: d.update(add_prefix_space=True),
     r"tokenizer_config.json: add_prefix_space = true"),
]


@pytest.mark.solution_only
@pytest.mark.parametrize("name, file, change, match", BPE_REFUSED, ids=[c[0] for c in BPE_REFUSED])
def test_bpe_refuses_what_it_cannot_tokenize_identically(tok, gpt2_saved, name, file, change, match, tmp_path):
    """Each of these makes transformers' ids differ from GPT-2's byte-level BPE."""
    folder = _copy(gpt2_saved, tmp_path / "x", "tokenizer.json", "tokenizer_config.json")
    if file == "tokenizer.json":  # without the config, so that transformers would read all of tokenizer.json
        (folder / "tokenizer_config.json").unlink()
    _rewrite(folder, file, change)
    with pytest.raises(ValueError, match=match) as e:
        tok.ByteLevelBPETokenizer.from_pretrained(folder)
    assert str(folder / file) in str(e.value)


@pytest.mark.solution_only
def test_bpe_config_prefix_space_with_vocab_files(tok, tmp_path, trained):
    """add_prefix_space in the config of a vocab.json + merges.txt folder: transformers then puts
    a space before the first word (" ROMEO" not "ROMEO"); refused, not ignored."""
    trained.save_pretrained(tmp_path)
    _rewrite(tmp_path, "tokenizer_config.json", lambda d: d.update(add_prefix_space=True))
    assert _their_ids(_theirs(tmp_path), "ROMEO") == trained.encode(" ROMEO") != trained.encode("ROMEO")
    with pytest.raises(ValueError, match="add_prefix_space = true is not supported"):
        tok.ByteLevelBPETokenizer.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------
# Arbitrary text
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_pairs(tok, bert_saved, gpt2_saved, tmp_path_factory):
    """(ours, transformers') on tokenizer.json alone, for WordPiece (cased, no CJK splitting:
    the options most unlike the default) and for GPT-2."""
    folder = _copy(bert_saved, tmp_path_factory.mktemp("fuzz") / "bert", "tokenizer.json")
    _rewrite(folder, "tokenizer.json", lambda d: d["normalizer"].update(lowercase=False, handle_chinese_chars=False))
    gpt2 = _copy(gpt2_saved, tmp_path_factory.mktemp("fuzz") / "gpt2", "tokenizer.json")
    return {"bert": (tok.WordPieceTokenizer.from_pretrained(folder), _theirs(folder)),
            "gpt2": (tok.ByteLevelBPETokenizer.from_pretrained(gpt2), _theirs(gpt2))}


@pytest.mark.parametrize("kind", [pytest.param("bert", marks=pytest.mark.exercise("bert_encode")),
                                  pytest.param("gpt2", marks=pytest.mark.exercise("bpe_encode"))])
def test_tokenizer_json_fuzz(json_pairs, kind):
    """400 texts of arbitrary Unicode (strategies.any_text) per tokenizer: transformers' ids."""
    from hypothesis import given

    from mlab_tfs.tokenizers.tests.strategies import any_text, fuzz

    ours, hf = json_pairs[kind]
    encode = ours.encode if kind == "bert" else lambda text: ours.encode(text, allowed_special="all")

    @fuzz
    @given(any_text)
    def check(text):
        assert encode(text) == _their_ids(hf, text), text

    check()


@pytest.mark.solution_only
def test_wordpiece_save_warns_where_transformers_would_differ(tok, tmp_path):
    """max_input_chars_per_word=5: we load it back, transformers 5 uses 100 (measured: 'abcdef'
    is [UNK] for us, abc ##def... for it). Said at the save, and shown here."""
    ours = tok.WordPieceTokenizer.from_pretrained(assets.minilm_path(), max_input_chars_per_word=5)
    with pytest.warns(UserWarning, match="max_input_chars_per_word=5 is saved .* transformers 5's BertTokenizer "
                                         "ignores it"):
        ours.save_pretrained(tmp_path)
    assert tok.WordPieceTokenizer.from_pretrained(tmp_path).encode("abcdef hello") == [101, 100, 7592, 102]
    assert _their_ids(_theirs(tmp_path), "abcdef hello")[:2] != [101, 100]


@pytest.mark.exercise("bert_encode")
def test_special_tokens_added_in_transformers(tok, bert_saved, tmp_path):
    """add_special_tokens in transformers, then its save: new tokens past the vocabulary (<new>:
    30522) and vocabulary tokens made special ([unused5]: 6) are read as transformers reads
    them, and our saves keep them."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(bert_saved))
    hf.add_special_tokens({"additional_special_tokens": ["<new>", "[unused5]"]})
    hf.save_pretrained(tmp_path / "bert")
    ours = tok.WordPieceTokenizer.from_pretrained(tmp_path / "bert")
    text = "a<new>b [unused5]c <NEW>"
    assert len(ours) == 30523 and ours.encode(text) == _their_ids(hf, text) == [101, 1037, 30522, 1038, 6, 1039, 1026,
                                                                                2047, 1028, 102]
    ours.save_pretrained(tmp_path / "bert_ours")
    assert tok.WordPieceTokenizer.from_pretrained(tmp_path / "bert_ours").encode(text) == ours.encode(text)
    assert _their_ids(_theirs(tmp_path / "bert_ours"), text) == ours.encode(text)


@pytest.mark.exercise("bpe_encode")
def test_special_tokens_added_in_transformers_gpt2(tok, gpt2_saved, tmp_path):
    """The same for GPT-2: <pad> and <|im_start|> added in transformers get 50257 and 50258."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(gpt2_saved))
    hf.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": ["<|im_start|>"]})
    hf.save_pretrained(tmp_path / "gpt2")
    ours = tok.ByteLevelBPETokenizer.from_pretrained(tmp_path / "gpt2")
    text = "<|im_start|>hi<pad><pad><|endoftext|> x"
    assert ours.special_tokens == {"<|endoftext|>": 50256, "<pad>": 50257, "<|im_start|>": 50258}
    assert getattr(ours, "pad_token", None) == "<pad>"
    assert ours.encode(text, allowed_special="all") == _their_ids(hf, text) == [50258, 5303, 50257, 50257, 50256, 2124]
    ours.save_pretrained(tmp_path / "gpt2_ours")
    again = _theirs(tmp_path / "gpt2_ours")
    assert _their_ids(again, text) == ours.encode(text, allowed_special="all") and again.pad_token_id == 50257


@pytest.mark.solution_only
def test_other_tokenizer_classes_are_refused(tok, bert_saved, gpt2_saved, tmp_path):
    """RobertaTokenizer rebuilds a byte-level BPE with <s> ... </s> around every text, MPNet a
    WordPiece with other templates: a config naming them is refused, not read as GPT-2 / BERT."""
    for src, cls, other in ((gpt2_saved, tok.ByteLevelBPETokenizer, "RobertaTokenizer"),
                            (bert_saved, tok.WordPieceTokenizer, "MPNetTokenizer")):
        folder = _copy(src, tmp_path / other, "tokenizer.json", "tokenizer_config.json")
        _rewrite(folder, "tokenizer_config.json", lambda d: d.update(tokenizer_class=other))
        with pytest.raises(ValueError, match=f"tokenizer_config.json: tokenizer_class = \"{other}\" is not supported"):
            cls.from_pretrained(folder)
    folder = _copy(bert_saved, tmp_path / "distil", "tokenizer.json", "tokenizer_config.json")
    _rewrite(folder, "tokenizer_config.json", lambda d: d.update(tokenizer_class="DistilBertTokenizer"))
    assert tok.WordPieceTokenizer.from_pretrained(folder).encode("Hello there") == _their_ids(_theirs(folder), "Hello there")


@pytest.mark.exercise("bpe_encode")
def test_tokenizers_library_files(tok, tmp_path):
    """Files the tokenizers library writes (Tokenizer.save) after training its own models: a
    ByteLevelBPETokenizer reads with the library's ids and transformers'; a BertWordPieceTokenizer
    trained from scratch has no post-processor (no [CLS]/[SEP]: refused, saying how to add them)
    and, with tokenizer_class BertTokenizer in a config, reads with transformers' ids."""
    import tokenizers

    corpus, texts = assets.shakespeare_text()[:50_000], TEXTS
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([corpus], vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False)
    (tmp_path / "bpe").mkdir()
    bpe.save(str(tmp_path / "bpe" / "tokenizer.json"))
    ours, hf = tok.ByteLevelBPETokenizer.from_pretrained(tmp_path / "bpe"), _theirs(tmp_path / "bpe")
    assert ours.special_tokens == {"<|endoftext|>": 0} and len(ours) == 400
    for text in texts:
        assert ours.encode(text, allowed_special="all") == bpe.encode(text).ids == _their_ids(hf, text), text

    wp = tokenizers.BertWordPieceTokenizer(lowercase=False)
    wp.train_from_iterator([corpus], vocab_size=500, show_progress=False)
    (tmp_path / "wp").mkdir()
    wp.save(str(tmp_path / "wp" / "tokenizer.json"))
    with pytest.raises(ValueError, match=r"post_processor = null .* put \{\"tokenizer_class\": \"BertTokenizer\"\}"):
        tok.WordPieceTokenizer.from_pretrained(tmp_path / "wp")
    (tmp_path / "wp" / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                                         "do_lower_case": False}))
    _assert_bert_equal(tok.WordPieceTokenizer.from_pretrained(tmp_path / "wp"), _theirs(tmp_path / "wp"), "wp")


@pytest.mark.solution_only
def test_bpe_save_refuses_a_pad_token_outside_the_vocabulary(tok, trained, tmp_path):
    """A pad_token left from another vocabulary (a retrained tokenizer): transformers would add
    it as a new token, an id past the model's embeddings."""
    bpe = tok.ByteLevelBPETokenizer.train([assets.shakespeare_text()[:5_000]], 260, special_tokens=["<|endoftext|>"])
    try:
        bpe.pad_token = "<|pad|>"
    except ValueError:  # refused where it is set (pad_token's own check): as good
        pass
    else:
        with pytest.raises(ValueError, match="pad_token '<\\|pad\\|>' is not a token of this vocabulary"):
            bpe.save_pretrained(tmp_path)
        assert list(tmp_path.iterdir()) == []
    bpe.pad_token = "<|endoftext|>"
    bpe.save_pretrained(tmp_path)
    assert _theirs(tmp_path).pad_token_id == 259 == tok.ByteLevelBPETokenizer.from_pretrained(tmp_path).special_tokens[
        "<|endoftext|>"]


@pytest.mark.exercise("bert_batch")  # given code (the files), run through your call's pieces
@pytest.mark.parametrize("files", [("tokenizer.json",), ("vocab.txt",), ("tokenizer.json", "tokenizer_config.json")],
                         ids=["tokenizer.json", "vocab.txt", "with-config"])
def test_wordpiece_model_max_length_as_transformers(tok, bert_saved, files, tmp_path):
    """model_max_length is the config's where it has one (MiniLM's 512), else transformers'
    "no limit" (VERY_LARGE_INTEGER): truncation=True and padding="max_length" without a
    max_length then neither cut nor pad, as transformers'; a save keeps it, for both."""
    from transformers import BertTokenizerFast

    folder = tmp_path / "in"
    folder.mkdir()
    for name in files:
        source = assets.minilm_path() / name if name == "vocab.txt" else bert_saved / name
        shutil.copy(source, folder / name)
    ours, hf = tok.WordPieceTokenizer.from_pretrained(folder), BertTokenizerFast.from_pretrained(str(folder))
    limit = 512 if "tokenizer_config.json" in files else int(1e30)
    assert ours.model_max_length == hf.model_max_length == limit
    long = "a " * 600
    cases = [  # the row lengths with a limit of 512, and without
        ({"truncation": True}, [512, 3], [602, 3]),
        ({"padding": "max_length"}, [602, 512], [602, 3]),
        ({"truncation": True, "padding": "max_length"}, [512, 512], [602, 3]),
        ({"truncation": "only_first", "return_overflowing_tokens": True, "stride": 4}, [512, 96, 3], [602, 3]),
    ]
    for kwargs, at_512, unlimited in cases:
        got, expected = ours([long, "b"], **kwargs), hf([long, "b"], **kwargs)
        assert dict(got) == dict(expected), kwargs
        assert [len(r) for r in got["input_ids"]] == (at_512 if limit == 512 else unlimited), kwargs
    ours.save_pretrained(tmp_path / "out")
    assert tok.WordPieceTokenizer.from_pretrained(tmp_path / "out").model_max_length == limit
    assert BertTokenizerFast.from_pretrained(str(tmp_path / "out")).model_max_length == limit
    assert tok.WordPieceTokenizer(dict(ours.vocab)).model_max_length == int(1e30)  # the default, as transformers'


@pytest.mark.exercise("bert_encode")  # given code (the files), compared through your encode
def test_wordpiece_without_a_pad_token_names_the_file(tok, tmp_path):
    """A WordPiece trained by the tokenizers library without [PAD]: the error names the file
    and says how to choose the token; given one of the vocabulary, the ids are transformers'."""
    import tokenizers
    from tokenizers import normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    wp = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
    wp.normalizer, wp.pre_tokenizer = normalizers.BertNormalizer(), pre_tokenizers.BertPreTokenizer()
    wp.train_from_iterator([assets.shakespeare_text()[:30_000]], WordPieceTrainer(
        vocab_size=300, special_tokens=["[UNK]", "[CLS]", "[SEP]"], show_progress=False))
    wp.post_processor = processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    (tmp_path / "wp").mkdir()
    wp.save(str(tmp_path / "wp" / "tokenizer.json"))
    file = tmp_path / "wp" / "tokenizer.json"
    with pytest.raises(ValueError, match=rf"^{re.escape(str(file))}: pad_token '\[PAD\]' is not in the vocabulary; "
                                         r".*from_pretrained\(path, pad_token=\.\.\.\)"):
        tok.WordPieceTokenizer.from_pretrained(tmp_path / "wp")
    ours = tok.WordPieceTokenizer.from_pretrained(tmp_path / "wp", pad_token="[UNK]")
    hf = _theirs(tmp_path / "wp")
    for text in TEXTS[:40]:
        assert ours.encode(text) == _their_ids(hf, text) == wp.encode(text).ids, text


# Given code (the files and the call), run through your call's pieces: BERT's are exercise 5's,
# GPT-2's need your GPT-2 encode (exercise 10); so each kind counts there.
CALL_KINDS = pytest.mark.parametrize("kind", [pytest.param("bert", marks=pytest.mark.exercise("bert_batch")),
                                              pytest.param("gpt2", marks=pytest.mark.exercise("bpe_encode"))])


@CALL_KINDS
def test_padding_and_truncation_sides_are_read_and_saved(tok, bert_saved, gpt2_saved, kind, tmp_path):
    """padding_side / truncation_side of tokenizer_config.json (what transformers saves for a
    tokenizer made with padding_side="left") set ours, so padded and cut rows equal
    transformers'; our save writes them back; a value other than right/left names the file."""
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(str(bert_saved if kind == "bert" else gpt2_saved),
                                           padding_side="left", truncation_side="left")
    if kind == "gpt2":
        theirs.pad_token = theirs.eos_token
    theirs.save_pretrained(tmp_path / "in")
    cls = tok.WordPieceTokenizer if kind == "bert" else tok.ByteLevelBPETokenizer
    ours, theirs = cls.from_pretrained(tmp_path / "in"), AutoTokenizer.from_pretrained(str(tmp_path / "in"))
    assert (ours.padding_side, ours.truncation_side) == (theirs.padding_side, theirs.truncation_side) == ("left", "left")
    texts = ["one two three four five six", "short"]
    for kwargs in ({"padding": True}, {"padding": True, "truncation": True, "max_length": 4}):
        got, expected = ours(texts, **kwargs), theirs(texts, **kwargs)
        assert dict(got) == dict(expected), kwargs
    row = ours(texts, padding=True)["input_ids"][1]
    assert row[0] == ours.pad_token_id and row[-1] != ours.pad_token_id, "padded on the left"
    ours.save_pretrained(tmp_path / "out")
    again, hf_again = cls.from_pretrained(tmp_path / "out"), AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert (again.padding_side, again.truncation_side) == (hf_again.padding_side, hf_again.truncation_side) == \
        ("left", "left")
    _rewrite(tmp_path / "out", "tokenizer_config.json", lambda d: d.update(padding_side="middle"))
    with pytest.raises(ValueError, match=r"tokenizer_config.json: padding_side must be 'right' or 'left', got str 'middle'"):
        cls.from_pretrained(tmp_path / "out")


def test_bpe_adding_a_bos_token_is_refused(tok, gpt2_saved, tmp_path):
    """A GPT-2 folder saved with add_bos_token=True (its tokenizer.json's template adds
    <|endoftext|>; or the flag in the config) would give other ids: refused, naming the field."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(gpt2_saved), add_bos_token=True).save_pretrained(tmp_path / "a")
    assert AutoTokenizer.from_pretrained(str(tmp_path / "a"))("hi")["input_ids"] == [50256, 5303], "test setup"
    with pytest.raises(ValueError, match=r"tokenizer.json: post_processor = .* ByteLevelBPETokenizer adds no tokens"):
        tok.ByteLevelBPETokenizer.from_pretrained(tmp_path / "a")
    folder = _copy(gpt2_saved, tmp_path / "b", "tokenizer.json", "tokenizer_config.json")
    _rewrite(folder, "tokenizer_config.json", lambda d: d.update(add_eos_token=True))
    with pytest.raises(ValueError, match=r"tokenizer_config.json: add_eos_token = true is not supported"):
        tok.ByteLevelBPETokenizer.from_pretrained(folder)


@pytest.mark.exercise("bpe_train")  # given code (the files), on a vocabulary your train made
def test_bpe_vocab_files_with_add_bos_token_are_refused(tok, trained, tmp_path):
    """vocab.json + merges.txt with add_bos_token true in the config: transformers adds the
    token to every text, so we refuse, naming the file and field."""
    from transformers import AutoTokenizer

    trained.save_pretrained(tmp_path)
    _rewrite(tmp_path, "tokenizer_config.json", lambda d: d.update(add_bos_token=True))
    assert AutoTokenizer.from_pretrained(str(tmp_path))("hi")["input_ids"][0] == trained.special_tokens["<|endoftext|>"]
    with pytest.raises(ValueError, match=r"tokenizer_config.json: add_bos_token = true is not supported"):
        tok.ByteLevelBPETokenizer.from_pretrained(tmp_path)


@CALL_KINDS
def test_sides_from_tokenizer_json_padding_and_truncation(tok, bert_saved, gpt2_saved, kind, tmp_path):
    """A tokenizer.json whose padding / truncation go Left (and a config without the sides):
    transformers takes those directions as padding_side / truncation_side, and so do we."""
    from transformers import AutoTokenizer, BertTokenizerFast

    folder = _copy(bert_saved if kind == "bert" else gpt2_saved, tmp_path / "f", "tokenizer.json")

    def left(d):
        d["padding"] = {"strategy": "BatchLongest", "direction": "Left", "pad_to_multiple_of": None,
                        "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]" if kind == "bert" else "<|endoftext|>"}
        d["truncation"] = {"direction": "Left", "max_length": 512, "strategy": "LongestFirst", "stride": 0}
        if kind == "gpt2":
            d["padding"]["pad_id"] = 50256

    _rewrite(folder, "tokenizer.json", left)
    cls = tok.WordPieceTokenizer if kind == "bert" else tok.ByteLevelBPETokenizer
    ours = cls.from_pretrained(folder)
    theirs = (BertTokenizerFast if kind == "bert" else AutoTokenizer).from_pretrained(str(folder))
    assert (ours.padding_side, ours.truncation_side) == (theirs.padding_side, theirs.truncation_side) == ("left", "left")
    if kind == "gpt2":
        ours.pad_token = theirs.pad_token = "<|endoftext|>"
    texts = ["a b c d e f g h", "d"]
    for kwargs in ({"padding": True}, {"truncation": True, "max_length": 4}):
        assert dict(ours(texts, **kwargs)) == dict(theirs(texts, **kwargs)), kwargs


@CALL_KINDS
def test_model_input_names_from_the_config(tok, bert_saved, gpt2_saved, kind, tmp_path):
    """model_input_names in tokenizer_config.json choose the keys a call returns by default, as
    transformers'; our save writes them back; a malformed value names the file."""
    from transformers import AutoTokenizer

    folder = _copy(bert_saved if kind == "bert" else gpt2_saved, tmp_path / "f", "tokenizer.json",
                   "tokenizer_config.json")
    names = ["input_ids", "attention_mask"] if kind == "bert" else ["input_ids", "token_type_ids", "attention_mask"]
    _rewrite(folder, "tokenizer_config.json", lambda d: d.update(model_input_names=names))
    cls = tok.WordPieceTokenizer if kind == "bert" else tok.ByteLevelBPETokenizer
    ours, theirs = cls.from_pretrained(folder), AutoTokenizer.from_pretrained(str(folder))
    assert ours.model_input_names == theirs.model_input_names == names
    for args in (("a b",), ("a b", "c")):
        assert dict(ours(*args)) == dict(theirs(*args)), args
    ours.save_pretrained(tmp_path / "out")
    assert cls.from_pretrained(tmp_path / "out").model_input_names == \
        AutoTokenizer.from_pretrained(str(tmp_path / "out")).model_input_names == names
    _rewrite(folder, "tokenizer_config.json", lambda d: d.update(model_input_names="input_ids"))
    with pytest.raises(ValueError, match=r"tokenizer_config.json: model_input_names must be a list of str"):
        cls.from_pretrained(folder)
