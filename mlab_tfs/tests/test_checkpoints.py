"""from_pretrained / save_pretrained of every model (mlab_tfs.checkpoints): keywords checked,
dtypes as transformers applies them, unreadable files named, saves all-or-nothing, and the
tie of a head decided by the parameters."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch
import transformers
import safetensors.torch
from safetensors.torch import load_file
from torch import nn

from mlab_tfs.bert import solution as bert
from mlab_tfs.checkpoints import CheckpointError, tie_weights
from mlab_tfs.deberta import solution as deberta
from mlab_tfs.testing.tiny import deberta_checkpoint
from mlab_tfs.gpt2 import solution as gpt2
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close

# kind -> (our class, transformers' class, where the tied head and embedding live)
KINDS = {
    "gpt2": (gpt2.GPT2LMHeadModel, transformers.GPT2LMHeadModel, "lm_head.weight", "transformer.wte.weight"),
    "bert": (bert.BertForMaskedLM, transformers.BertForMaskedLM, "cls.predictions.decoder.weight",
             "bert.embeddings.word_embeddings.weight"),
    "deberta": (deberta.DebertaV2ForMaskedLM, transformers.DebertaV2ForMaskedLM, "cls.predictions.decoder.weight",
                "deberta.embeddings.word_embeddings.weight"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """kind -> a tiny tied transformers checkpoint; "gpt2_other": a GPT-2 of another shape."""
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "gpt2": tiny.gpt2_checkpoint(root / "gpt2", "base"),
        "gpt2_other": tiny.gpt2_checkpoint(root / "gpt2_other", "deep_narrow_heads", seed=1),
        "bert": tiny.bert_checkpoint(root / "bert", "base", head="mlm"),
        "deberta": deberta_checkpoint(root / "deberta", "v2_conv"),
    }


def _ids(vocab_size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, 7), generator=torch.Generator().manual_seed(seed))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert sorted(state) == sorted(expected)
    for k, v in expected.items():
        assert state[k].dtype == v.dtype and torch.equal(state[k], v), f"{k} differs"


# ---------------------------------------------------------------------------------------
# Keywords
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_misspelt_keyword_is_a_type_error_with_a_suggestion(kind, folders):
    cls = KINDS[kind][0]
    with pytest.raises(TypeError, match=r"'attn_implementaton'.*did you mean 'attn_implementation'"):
        cls.from_pretrained(folders[kind], attn_implementaton="sdpa")
    with pytest.raises(TypeError, match=r"'dtpye'.*did you mean 'dtype'"):
        cls.from_pretrained(folders[kind], dtpye=torch.float16)
    with pytest.raises(TypeError, match="'no_such_option'"):
        cls.from_pretrained(folders[kind], no_such_option=1)


@pytest.mark.parametrize("key,value", [("output_loading_info", True), ("ignore_mismatched_sizes", True),
                                       ("quantization_config", {}), ("subfolder", "x"),
                                       ("trust_remote_code", True), ("low_cpu_mem_usage", True)])
def test_transformers_keywords_it_cannot_honour_are_refused(key, value, folders):
    with pytest.raises(TypeError, match=f"does not support transformers' {key}="):
        gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], **{key: value})


def test_config_field_keywords_override_config_json(folders):
    model = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], layer_norm_epsilon=0.25, attn_pdrop=0.0)
    assert model.config.layer_norm_epsilon == 0.25 and model.transformer.ln_f.eps == 0.25
    assert model.config.attn_pdrop == 0.0
    with pytest.raises(ValueError, match="GPT2Config.layer_norm_epsilon"):
        gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], layer_norm_epsilon=-1.0)
    # DeBERTa has only eager attention: that is accepted, another one refused.
    deberta.DebertaV2ForMaskedLM.from_pretrained(folders["deberta"], attn_implementation="eager")
    with pytest.raises(ValueError, match="only the eager attention"):
        deberta.DebertaV2ForMaskedLM.from_pretrained(folders["deberta"], attn_implementation="flash_attention_2")


# ---------------------------------------------------------------------------------------
# dtype
# ---------------------------------------------------------------------------------------

DTYPES = [("dtype", torch.float16), ("dtype", "bfloat16"), ("torch_dtype", torch.bfloat16),
          ("torch_dtype", "float16"), ("dtype", "float32"), ("dtype", "auto")]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("key,dtype", DTYPES, ids=[f"{k}={d}" for k, d in DTYPES])
def test_dtype_as_transformers_applies_it(kind, key, dtype, folders):
    cls, hf_cls, _, _ = KINDS[kind]
    ours = cls.from_pretrained(folders[kind], **{key: dtype})
    theirs = hf_cls.from_pretrained(folders[kind], **{key: dtype})
    expected = {k: v for k, v in theirs.state_dict().items() if v.is_floating_point()}
    saved = cls.ours_to_hf(ours.state_dict(), ours.config)  # in transformers' layout
    for k, v in saved.items():
        assert v.dtype == expected[k].dtype, f"{k}: {v.dtype}, transformers {expected[k].dtype}"
        assert torch.equal(v, expected[k]), f"{k} differs from transformers loaded with {key}={dtype!r}"


def test_dtype_auto_reads_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**tiny.GPT2_CONFIGS["base"], bos_token_id=0,
                                                              eos_token_id=0)).half()
    hf.save_pretrained(tmp_path)
    assert {p.dtype for p in gpt2.GPT2LMHeadModel.from_pretrained(tmp_path, dtype="auto").parameters()} == {
        torch.float16}
    config = json.loads((tmp_path / "config.json").read_text())
    del config["dtype"]  # without it, the weights' dtype
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert {p.dtype for p in gpt2.GPT2LMHeadModel.from_pretrained(tmp_path, dtype="auto").parameters()} == {
        torch.float16}
    # The default is "auto" too, as transformers 5's (modeling_utils: dtype None -> "auto").
    assert {p.dtype for p in gpt2.GPT2LMHeadModel.from_pretrained(tmp_path).parameters()} == {torch.float16}
    assert transformers.GPT2LMHeadModel.from_pretrained(tmp_path).dtype == torch.float16


@pytest.mark.parametrize("kwargs,match", [
    (dict(dtype="float17"), "dtype must be"), (dict(dtype=torch.int8), "dtype must be"),
    (dict(torch_dtype=3), "torch_dtype must be"), (dict(dtype=torch.float16, torch_dtype=torch.bfloat16), "disagree"),
    (dict(device="gpu9"), "device must name an available torch device"), (dict(device_map="auto"), "device_map must name one device"),
    (dict(device_map={"transformer": "cpu", "lm_head": "cuda:0"}), "device_map must name one device"),
    (dict(device="cpu", device_map="cpu"), "not both"), (dict(new_head="yes"), "new_head must be a bool"),
    (dict(new_head=True), "GPT2LMHeadModel has no head that may start fresh"),
    # float8 is floating but has no matmul: refused, as transformers refuses it.
    (dict(dtype=torch.float8_e4m3fn), "dtype must be"), (dict(dtype="float8_e5m2"), "dtype must be"),
    (dict(dtype="torch.float16"), "dtype must be"), (dict(dtype="complex64"), "dtype must be"),
    (dict(device="meta"), "weights would be dropped"), (dict(device_map="meta"), "weights would be dropped"),
])
def test_bad_dtype_or_device_is_refused(kwargs, match, folders):
    with pytest.raises((TypeError, ValueError), match=match):
        gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("kwargs", [dict(device="cuda"), dict(device=0), dict(device_map="cuda:0")])
def test_unavailable_device_is_a_value_error_naming_it(kwargs, folders):
    # Not torch's bare AssertionError from model.to(), after all the weights were read.
    with pytest.raises(ValueError, match=r"device (must name an available torch device|.* is not available here)"):
        gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], **kwargs)


@pytest.mark.parametrize("name,dtype", [("half", torch.float16), ("float", torch.float32), ("double", torch.float64),
                                        ("float64", torch.float64), (torch.float64, torch.float64)])
def test_dtype_names_torch_knows(name, dtype, folders):
    """torch's aliases, as transformers takes them; float64 logits equal transformers' in float64."""
    ours = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], dtype=name)
    assert {p.dtype for p in ours.parameters()} == {dtype}
    if dtype == torch.float64:
        theirs = transformers.GPT2LMHeadModel.from_pretrained(folders["gpt2"], dtype=name).eval()
        ids = _ids(ours.config.vocab_size)
        assert ours(ids).logits.dtype == torch.float64
        assert_close(ours(ids).logits, theirs(ids).logits, name="float64 logits", atol=1e-12, rtol=1e-12)


def test_attn_implementation_none_is_the_default(folders):
    """transformers reads attn_implementation=None as "the default"; so does this loader."""
    for kind in KINDS:
        model = KINDS[kind][0].from_pretrained(folders[kind], attn_implementation=None)
        default = KINDS[kind][0].from_pretrained(folders[kind])
        expected = {"gpt2": "sdpa", "bert": "sdpa", "deberta": "eager"}[kind]  # transformers' defaults
        assert getattr(default.config, "attn_implementation", "eager") == expected
        assert getattr(model.config, "attn_implementation", "eager") == expected


def test_device_map_naming_one_device(folders):
    for device_map in ("cpu", {"": "cpu"}, torch.device("cpu"), {"transformer": "cpu", "lm_head": "cpu"}):
        model = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], device_map=device_map)
        assert {p.device.type for p in model.parameters()} == {"cpu"}


# ---------------------------------------------------------------------------------------
# Paths and unreadable files
# ---------------------------------------------------------------------------------------


def test_missing_local_path_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    names = ["./nope", "../nope", "nope/", "a/b/c", "/definitely/not/here", tmp_path / "nope", "~/no-such-ckpt-x",
             "runs/ckpt", "has space", "a--b/c", "a\\b", "a/../b", str(tmp_path / "missing")]
    for name in names:
        start = time.perf_counter()
        with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
            gpt2.GPT2LMHeadModel.from_pretrained(name)
        assert time.perf_counter() - start < 1.0, f"{name!r} took {time.perf_counter() - start:.1f} s"
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="file.txt"):
        gpt2.GPT2LMHeadModel.from_pretrained("file.txt")
    for bad in (123, None, b"gpt2"):
        with pytest.raises(TypeError, match="name_or_path must be a str"):
            gpt2.GPT2LMHeadModel.from_pretrained(bad)
    with pytest.raises(ValueError, match="empty string"):
        gpt2.GPT2LMHeadModel.from_pretrained("")


def test_hub_id_offline_is_a_clear_error_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="'someone/no-such-model' is not a local folder, and the hub could not"):
        gpt2.GPT2LMHeadModel.from_pretrained("someone/no-such-model", cache_dir=tmp_path)
    assert time.perf_counter() - start < 1.0


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff not a weight file" * 10)


BROKEN = {
    "truncated safetensors": ("model.safetensors", _truncate),
    "garbage safetensors": ("model.safetensors", _garbage),
    "config not JSON": ("config.json", lambda p: p.write_text('{"n_embd": 32,')),
    "config not UTF-8": ("config.json", lambda p: p.write_bytes(b"\xff\xfe{}")),
    "config a list": ("config.json", lambda p: p.write_text("[1, 2]")),
    "config missing": ("config.json", lambda p: p.unlink()),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_unreadable_file_is_a_checkpoint_error_naming_it(case, folders, tmp_path):
    name, damage = BROKEN[case]
    folder = _copy(folders["gpt2"], tmp_path / "ckpt")
    damage(folder / name)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        gpt2.GPT2LMHeadModel.from_pretrained(folder)


@pytest.mark.parametrize("case", ["truncated", "garbage", "a list"])
def test_unreadable_pickle_is_a_checkpoint_error_naming_it(case, folders, tmp_path):
    folder = _copy(folders["gpt2"], tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    torch.save(load_file(folders["gpt2"] / "model.safetensors"), folder / "pytorch_model.bin")
    if case == "truncated":
        _truncate(folder / "pytorch_model.bin")
    elif case == "garbage":
        _garbage(folder / "pytorch_model.bin")
    else:
        torch.save([torch.zeros(2)], folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin"):
        gpt2.GPT2LMHeadModel.from_pretrained(folder)


def test_sharded_checkpoint_with_a_missing_shard(folders, tmp_path):
    folder = _copy(folders["gpt2"], tmp_path / "ckpt")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    weight_map = {k: "model-00001-of-00002.safetensors" for k in load_file(folder / "model-00001-of-00002.safetensors")}
    weight_map["x"] = "model-00002-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002\.safetensors: missing"):
        gpt2.GPT2LMHeadModel.from_pretrained(folder)
    (folder / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json must hold a 'weight_map'"):
        gpt2.GPT2LMHeadModel.from_pretrained(folder)


# ---------------------------------------------------------------------------------------
# Durable saves
# ---------------------------------------------------------------------------------------


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.endswith(".partial"))


@pytest.fixture
def saved_old(folders, tmp_path):
    """A folder holding our save of the base GPT-2 and a tokenizer file of another writer."""
    folder = tmp_path / "out"
    old = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    old.save_pretrained(folder)
    (folder / "vocab.json").write_text('{"a": 0}')
    return folder, _state(old), (folder / "config.json").read_bytes()


def _half_then_disk_full(tensors, filename, metadata=None):
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    Path(filename).write_bytes(data[: len(data) // 2])
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("where", ["weights", "swap"])
def test_failed_save_of_another_shape_leaves_the_old_checkpoint(where, saved_old, folders, monkeypatch):
    folder, old_state, old_config = saved_old
    other = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2_other"])
    if where == "weights":  # the weight writer fails halfway, the disk full
        monkeypatch.setattr("safetensors.torch.save_file", _half_then_disk_full)
    else:  # both files written, the disk full when flushing them
        def full(path):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr("mlab_tfs.durable._fsync_file", full)
    with pytest.raises(OSError, match="No space left"):
        other.save_pretrained(folder)
    monkeypatch.undo()
    assert (folder / "config.json").read_bytes() == old_config
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    assert _leftovers(folder.parent) == []
    _assert_same_state(gpt2.GPT2LMHeadModel.from_pretrained(folder), old_state)


def test_save_replaces_stale_weights_and_keeps_other_files(saved_old, folders):
    folder, _, _ = saved_old
    for stale in ("model-00001-of-00002.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        (folder / stale).write_text("stale")
    other = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2_other"])
    other.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    assert (folder / "vocab.json").read_text() == '{"a": 0}'
    _assert_same_state(gpt2.GPT2LMHeadModel.from_pretrained(folder), _state(other))


def test_save_killed_midway_leaves_the_old_checkpoint(saved_old, folders):
    folder, old_state, old_config = saved_old
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        import safetensors.torch
        from mlab_tfs.gpt2.solution import GPT2LMHeadModel

        def half_then_hang(tensors, filename, metadata=None):
            data = safetensors.torch.save(tensors, metadata=metadata)
            Path(filename).write_bytes(data[: len(data) // 2])
            print("halfway", flush=True)
            time.sleep(60)

        safetensors.torch.save_file = half_then_hang
        GPT2LMHeadModel.from_pretrained({str(folders["gpt2_other"])!r}).save_pretrained({str(folder)!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "halfway"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert (folder / "config.json").read_bytes() == old_config
    _assert_same_state(gpt2.GPT2LMHeadModel.from_pretrained(folder), old_state)
    assert len(_leftovers(folder.parent)) == 1  # the killed save's staging folder...
    model = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2_other"])
    model.save_pretrained(folder)  # ...which the next save removes
    assert _leftovers(folder.parent) == []
    _assert_same_state(gpt2.GPT2LMHeadModel.from_pretrained(folder), _state(model))


# ---------------------------------------------------------------------------------------
# Tying follows the parameters
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("fmt", ["safetensors", "pickle"])
def test_tied_config_with_a_different_head_in_the_file_loads_untied(kind, fmt, folders, tmp_path):
    """config.json says tied, but the file holds the head with its own values: transformers
    (tie_weights) leaves the pair untied and loads both; tying would silently drop one."""
    cls, hf_cls, head, embedding = KINDS[kind]
    state = load_file(folders[kind] / "model.safetensors")
    assert head not in state  # saved tied: once
    g = torch.Generator().manual_seed(5)
    state[head] = state[embedding] + torch.randn(state[embedding].shape, generator=g)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_bytes((folders[kind] / "config.json").read_bytes())
    if fmt == "safetensors":
        safetensors.torch.save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    else:
        torch.save(state, folder / "pytorch_model.bin")
    with pytest.warns(UserWarning, match=f"{re.escape(head)} and {re.escape(embedding)} with different values"):
        ours = cls.from_pretrained(folder)
    assert ours.get_parameter(head) is not ours.get_parameter(embedding)
    assert torch.equal(ours.get_parameter(head), state[head])
    assert torch.equal(ours.get_parameter(embedding), state[embedding])
    theirs = hf_cls.from_pretrained(folder, attn_implementation="eager").eval()
    assert theirs.get_parameter(head) is not theirs.get_parameter(embedding)
    ids = _ids(ours.config.vocab_size)
    with torch.no_grad():
        assert_close(ours(ids).logits, theirs(ids).logits, name="logits of a checkpoint whose head differs", atol=1e-5)
    # Both names for one tensor (as pickles hold them): tied, without a warning.
    state[head] = state[embedding]
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = cls.from_pretrained(folder)
    assert again.get_parameter(head) is again.get_parameter(embedding)


@pytest.mark.parametrize("kind", list(KINDS))
def test_head_untied_by_hand_is_saved_untied(kind, folders, tmp_path):
    cls, hf_cls, head, embedding = KINDS[kind]
    model = cls.from_pretrained(folders[kind])
    module_name, _, attr = head.rpartition(".")
    g = torch.Generator().manual_seed(3)
    untied = nn.Parameter(model.get_parameter(head).detach() + torch.randn(model.get_parameter(head).shape,
                                                                            generator=g))
    setattr(model.get_submodule(module_name), attr, untied)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is False
    back = cls.from_pretrained(tmp_path)
    assert back.get_parameter(head) is not back.get_parameter(embedding)
    assert torch.equal(back.get_parameter(head), untied) and not torch.equal(untied, back.get_parameter(embedding))
    assert torch.equal(back.get_parameter(embedding), model.get_parameter(embedding))
    theirs = hf_cls.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids = _ids(model.config.vocab_size)
    with torch.no_grad():
        # rtol too: the head drawn by hand (std 1) gives logits near 6, where 1e-5 is 20 float32
        # spacings; on some CPUs transformers' and our op order land 1.0e-5 apart (1.7e-6 relative).
        assert_close(theirs(ids).logits, model(ids).logits, name="transformers' logits of the untied save",
                     atol=1e-5, rtol=1e-5)
        assert_close(back(ids).logits, model(ids).logits, name="logits of the untied save", atol=0)


def test_head_tied_by_hand_is_saved_tied(tmp_path):
    torch.manual_seed(0)
    model = gpt2.GPT2LMHeadModel(gpt2.GPT2Config(**tiny.GPT2_CONFIGS["base"], tie_word_embeddings=False))
    model.lm_head.weight = model.transformer.wte.weight
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is True
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    back = gpt2.GPT2LMHeadModel.from_pretrained(tmp_path)
    assert back.lm_head.weight is back.transformer.wte.weight
    assert torch.equal(back.lm_head.weight, model.transformer.wte.weight)


@pytest.mark.parametrize("field,value", [("layer_norm_epsilon", -1), ("attn_pdrop", 2.0), ("n_head", "4"),
                                         ("scale_attn_weights", 1)])
def test_bad_value_in_config_json_names_the_field_and_the_file(field, value, folders, tmp_path):
    folder = _copy(folders["gpt2"], tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"GPT2Config\.{field} .*\(reading .*ckpt/config\.json\)"):
        gpt2.GPT2LMHeadModel.from_pretrained(folder)
    with pytest.raises(ValueError, match=rf"GPT2Config\.{field} .*with the keywords \['{field}'\]"):
        gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], **{field: value})


@pytest.mark.parametrize("model_class", [gpt2.GPT2LMHeadModel, bert.BertModel, deberta.DebertaV2Model])
def test_from_pretrained_names_an_unreadable_config_json(model_class, tmp_path):
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        model_class.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("not json")
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        model_class.from_pretrained(tmp_path)


def test_integer_weights_are_a_mismatch(folders, tmp_path):
    def edit(state):
        state["transformer.ln_f.weight"] = state["transformer.ln_f.weight"].long()

    folder = tiny.edited_checkpoint(folders["gpt2"], tmp_path / "ints", edit)
    with pytest.raises(CheckpointError, match=r"transformer\.ln_f\.weight: checkpoint dtype torch\.int64, model "
                                              r"torch\.float32"):
        gpt2.GPT2LMHeadModel.from_pretrained(folder)


# ---------------------------------------------------------------------------------------
# A config changed after it was built
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,field,value", [("gpt2", "layer_norm_epsilon", -1.0), ("gpt2", "n_head", 0),
                                              ("bert", "hidden_dropout_prob", 2.0), ("bert", "vocab_size", "99"),
                                              ("deberta", "layer_norm_eps", 0.0), ("deberta", "conv_kernel_size", 2)])
def test_config_changed_after_it_was_built_is_checked_by_the_model(kind, field, value, folders):
    """config.layer_norm_epsilon = -1 then Model(config): NaN logits, unless the model checks it."""
    cls = KINDS[kind][0]
    config = cls.from_pretrained(folders[kind]).config
    good = getattr(config, field)
    setattr(config, field, value)
    with pytest.raises(ValueError, match=rf"{type(config).__name__}\.{field}"):
        cls(config)
    setattr(config, field, good)
    assert isinstance(cls(config), cls)


@pytest.mark.parametrize("kind,other", [("gpt2", "bert"), ("bert", "deberta"), ("deberta", "gpt2")])
def test_checkpoint_of_another_model_names_its_config_json(kind, other, folders):
    with pytest.raises(ValueError, match=rf"model_type .*\(reading {re.escape(str(folders[other] / 'config.json'))}\)"):
        KINDS[kind][0].from_pretrained(folders[other])


def test_folder_of_an_interrupted_swap_names_where_its_contents_are(folders, tmp_path, monkeypatch):
    """A save killed between the two renames of the fallback swap leaves the folder missing and
    its old contents aside: loading says so at once (no hub lookup), and the next save restores them."""
    aside = _copy(folders["gpt2"], tmp_path / ".ckpt.999999999-0a1b2c3d.old.partial")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"a save into it was interrupted.*old\.partial"):
        gpt2.GPT2LMHeadModel.from_pretrained("ckpt")  # a hub-id-like name: still no hub lookup
    model = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2_other"])
    (aside / "vocab.json").write_text('{"a": 0}')
    model.save_pretrained("ckpt")
    assert not aside.exists() and (tmp_path / "ckpt" / "vocab.json").read_text() == '{"a": 0}'
    _assert_same_state(gpt2.GPT2LMHeadModel.from_pretrained("ckpt"), _state(model))


@pytest.mark.parametrize("legacy", [True, False])
def test_deberta_mlm_from_a_base_model_checkpoint_starts_a_fresh_head(legacy, tmp_path):
    """As BertForMaskedLM from a BertModel checkpoint, and as transformers does: the body
    loads, the MLM head starts fresh with a warning (silenced by new_head=True)."""
    hf_mlm = transformers.DebertaV2ForMaskedLM.from_pretrained(deberta_checkpoint(tmp_path / "mlm", "v2_conv",
                                                                                  legacy=legacy))
    hf_mlm.deberta.save_pretrained(tmp_path / "base")
    with pytest.warns(UserWarning, match="no weights for DebertaV2ForMaskedLM's head"):
        ours = deberta.DebertaV2ForMaskedLM.from_pretrained(tmp_path / "base")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deberta.DebertaV2ForMaskedLM.from_pretrained(tmp_path / "base", new_head=True)
    theirs = transformers.DebertaV2Model.from_pretrained(tmp_path / "base").eval()
    ids = _ids(ours.config.vocab_size)
    with torch.no_grad():
        assert_close(ours.deberta(ids).last_hidden_state, theirs(ids).last_hidden_state,
                     name="body of DebertaV2ForMaskedLM from a DebertaV2Model checkpoint", atol=1e-5)
    if legacy:  # the tied decoder reads the loaded embeddings
        assert ours.cls.predictions.decoder.weight is ours.deberta.embeddings.word_embeddings.weight


# DeBERTa's activations are lambdas, which do not pickle whatever the loader does.
@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_a_tied_model_pickles_whole(kind, folders, tmp_path):
    """torch.save(model) (and multiprocessing) pickle the model: the tying hooks must pickle
    too, and the copy keeps one tied Parameter and the same state dict."""
    cls, _, head, embedding = KINDS[kind]
    model = cls.from_pretrained(folders[kind])
    torch.save(model, tmp_path / "model.pt")
    back = torch.load(tmp_path / "model.pt", weights_only=False)
    assert back.get_parameter(head) is back.get_parameter(embedding)
    _assert_same_state(back, _state(model))
    assert head not in back.state_dict()


class _TwoUses(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.ModuleDict(dict(decoder=nn.Linear(3, 5)))
        self.head.bias = nn.Parameter(torch.zeros(5))


def test_tie_weights_makes_one_parameter_saved_once_and_loaded_back():
    torch.manual_seed(0)
    model = _TwoUses()
    tied = {"head.decoder.weight": "embed.weight", "head.decoder.bias": "head.bias"}
    tie_weights(model, tied)
    assert model.head.decoder.weight is model.embed.weight and model.head.decoder.bias is model.head.bias
    ids = torch.tensor([[1, 4, 2]])
    (model.head.decoder(model.embed(ids)) ** 2).sum().backward()
    # the gradient is the sum of both uses: by hand, lookup's rows plus the decoder's
    e = model.embed.weight.detach().requires_grad_()
    (torch.nn.functional.linear(e[ids], e, model.head.bias.detach()) ** 2).sum().backward()
    torch.testing.assert_close(model.embed.weight.grad, e.grad, rtol=0, atol=1e-6)
    state = model.state_dict()
    assert sorted(state) == ["embed.weight", "head.bias"]  # each tensor once
    other = _TwoUses()
    tie_weights(other, tied)
    other.load_state_dict(state)
    assert torch.equal(other.head.decoder.weight, model.embed.weight)
    with pytest.raises(AttributeError, match="embed.wieght|wieght"):
        tie_weights(_TwoUses(), {"head.decoder.weight": "embed.wieght"})


# ---------------------------------------------------------------------------------------
# Weights-only folders, config=, and the default dtype (transformers 5's "auto")
# ---------------------------------------------------------------------------------------


def _write_weights_only(model: nn.Module, folder, writer: str) -> None:
    """What tools write for a raw model: its own state dict, no config.json."""
    if writer == "accelerator":
        from accelerate import Accelerator

        Accelerator(cpu=True).save_model(model, folder)
    elif writer == "trainer":
        args = transformers.TrainingArguments(output_dir=str(folder), report_to=[], use_cpu=True)
        transformers.Trainer(model=model, args=args).save_model(str(folder))
    elif writer == "torch_save":
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:  # a safetensors file of the state dict
        folder.mkdir(parents=True, exist_ok=True)
        safetensors.torch.save_file(model.state_dict(), str(folder / "model.safetensors"))
    assert not (folder / "config.json").exists()


WRITERS = ["accelerator", "torch_save", "safetensors"]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("writer", WRITERS)
def test_weights_only_folder_loads_with_config(kind, writer, folders, tmp_path):
    cls = KINDS[kind][0]
    ours = cls.from_pretrained(folders[kind])
    _write_weights_only(ours, tmp_path / "raw", writer)
    loaded = cls.from_pretrained(tmp_path / "raw", config=ours.config)
    _assert_same_state(loaded, _state(ours))
    assert loaded.weights_are_tied() is True and not loaded.training
    ids = _ids(ours.config.vocab_size)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, ours.eval()(ids).logits)


def test_trainer_save_model_of_a_raw_gpt2_loads_with_config(folders, tmp_path):
    """The issue's case: Trainer.save_model of a raw model writes our transposed layout, no
    config.json; from_pretrained(folder, config=...) reads it, tied and equal."""
    ours = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    _write_weights_only(ours, tmp_path / "raw", "trainer")
    loaded = gpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "raw", config=ours.config)
    _assert_same_state(loaded, _state(ours))
    assert loaded.weights_are_tied()


@pytest.mark.parametrize("kind", list(KINDS))
def test_weights_only_folder_with_the_tied_pair_under_the_head_name_loads(kind, folders, tmp_path):
    """A tool that kept the head's name of a tied pair (and dropped the embedding's) still loads."""
    cls, _, head, table = KINDS[kind]
    ours = cls.from_pretrained(folders[kind])
    state = dict(ours.state_dict())
    state[head] = state.pop(table)
    (tmp_path / "raw").mkdir()
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "raw" / "model.safetensors"))
    loaded = cls.from_pretrained(tmp_path / "raw", config=ours.config)
    _assert_same_state(loaded, _state(ours))
    assert loaded.weights_are_tied()


def test_untied_weights_only_folder_keeps_both_tensors(tmp_path):
    folder = tiny.gpt2_checkpoint(tmp_path / "hf", "untied_erf_gelu_inverse_layer_scale", seed=2)
    ours = gpt2.GPT2LMHeadModel.from_pretrained(folder)
    _write_weights_only(ours, tmp_path / "raw", "safetensors")
    loaded = gpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "raw", config=ours.config)
    _assert_same_state(loaded, _state(ours))
    assert loaded.weights_are_tied() is False


@pytest.mark.parametrize("kind", list(KINDS))
def test_weights_only_folder_in_transformers_layout_loads_too(kind, folders, tmp_path):
    """transformers' own state dict saved alone (GPT-2's Conv1D weights transposed to ours):
    read through the model's name map when only that fits."""
    cls, hf_cls, _, _ = KINDS[kind]
    theirs = hf_cls.from_pretrained(folders[kind], dtype=torch.float32)
    # Each shared tensor once, under its first name, as safetensors' save_model keeps it.
    state, seen = {}, set()
    for k, v in theirs.state_dict().items():
        if v.data_ptr() not in seen:
            state[k] = v
            seen.add(v.data_ptr())
    (tmp_path / "raw").mkdir()
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "raw" / "model.safetensors"))
    expected = cls.from_pretrained(folders[kind])
    loaded = cls.from_pretrained(tmp_path / "raw", config=expected.config)
    _assert_same_state(loaded, _state(expected))


@pytest.mark.parametrize("writer", ["safetensors", "torch_save"])
def test_weights_only_folder_without_config_says_how_to_load_or_save(writer, folders, tmp_path):
    ours = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    _write_weights_only(ours, tmp_path / "raw", writer)
    name = "model.safetensors" if writer == "safetensors" else "pytorch_model.bin"
    with pytest.raises(CheckpointError) as info:
        gpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "raw")
    message = str(info.value)
    for part in (f"holds weights ({name}) but no config.json", "a weights-only folder",
                 "GPT2LMHeadModel.from_pretrained(folder, config=...)", "GPT2Config", "model.save_pretrained(folder)",
                 "mlab_tfs.as_transformers(model)"):
        assert part in message, message


def test_given_config_wins_over_config_json_as_in_transformers(folders):
    """config= with a full folder: the given config is used, config.json's is not (transformers'
    from_pretrained(..., config=...)); logits equal transformers' loaded the same way."""
    import dataclasses

    default = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"]).eval()
    config = dataclasses.replace(default.config, layer_norm_epsilon=0.5)
    ours = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], config=config).eval()
    assert ours.config.layer_norm_epsilon == 0.5 and default.config.layer_norm_epsilon == 1e-5
    assert config.layer_norm_epsilon == 0.5 and ours.config is not config  # a copy: the caller's stays theirs
    hf_config = transformers.GPT2Config.from_pretrained(folders["gpt2"], layer_norm_epsilon=0.5)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(folders["gpt2"], config=hf_config,
                                                          attn_implementation="eager").eval()
    ids = _ids(config.vocab_size)
    with torch.no_grad():
        mine, expected = ours(ids).logits, theirs(ids).logits
        assert (mine - default(ids).logits).abs().max() > 1e-3  # the given config changed the computation
    assert_close(mine, expected, name="logits with the given config", atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_transformers_config_is_read_through_to_dict(kind, folders):
    cls = KINDS[kind][0]
    hf_config = transformers.AutoConfig.from_pretrained(folders[kind])
    ours = cls.from_pretrained(folders[kind], config=hf_config)
    expected = cls.from_pretrained(folders[kind])
    assert ours.config == expected.config
    assert ours.config.architectures == hf_config.architectures
    _assert_same_state(ours, _state(expected))


def test_config_with_keyword_overrides_applies_both(folders):
    base = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"]).config
    model = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], config=base, attn_pdrop=0.0,
                                                 attn_implementation="eager")
    assert (model.config.attn_pdrop, model.config.attn_implementation) == (0.0, "eager")
    assert base.attn_pdrop == 0.1  # the passed config is not changed


@pytest.mark.parametrize("config, error, match", [
    ({"n_embd": 32}, TypeError, "config must be a GPT2Config .*got dict"),
    ("config.json", TypeError, "config must be a GPT2Config .*got str"),
    (bert.BertConfig(), ValueError, "config: config has model_type 'bert'; GPT2Config reads"),
    (transformers.BertConfig(), ValueError, "config: config has model_type 'bert'.*BertConfig passed as config="),
])
def test_config_of_another_kind_is_refused_naming_it(config, error, match, folders):
    with pytest.raises(error, match=match):
        gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"], config=config)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("stored", [torch.float16, torch.bfloat16])
def test_a_half_precision_checkpoint_loads_in_its_dtype_as_transformers_5(kind, stored, tmp_path):
    cls, hf_cls, _, _ = KINDS[kind]
    make = dict(gpt2=functools.partial(tiny.gpt2_checkpoint, name="base"),
                bert=functools.partial(tiny.bert_checkpoint, name="base", head="mlm"),
                deberta=functools.partial(deberta_checkpoint, name="v2_conv"))[kind]
    make(tmp_path / "fp32")
    hf_cls.from_pretrained(tmp_path / "fp32").to(stored).save_pretrained(tmp_path / "half")
    for dtype_kwargs, expected_dtype in (({}, stored), ({"dtype": "auto"}, stored),
                                         ({"dtype": torch.float32}, torch.float32)):
        ours = cls.from_pretrained(tmp_path / "half", **dtype_kwargs)
        theirs = hf_cls.from_pretrained(tmp_path / "half", **dtype_kwargs)
        assert ours.dtype == theirs.dtype == expected_dtype, dtype_kwargs
        saved = cls.ours_to_hf(ours.state_dict(), ours.config)
        expected = theirs.state_dict()
        for k, v in saved.items():
            assert v.dtype == expected[k].dtype and torch.equal(v, expected[k]), f"{k} with {dtype_kwargs}"
    # A weights-only folder keeps its dtype too (no config.json: the weights' dtype, as transformers).
    half = cls.from_pretrained(tmp_path / "half")
    _write_weights_only(half, tmp_path / "raw", "safetensors")
    assert cls.from_pretrained(tmp_path / "raw", config=half.config).dtype == stored
    assert cls.from_pretrained(tmp_path / "raw", config=half.config, dtype="float32").dtype == torch.float32


# ---------------------------------------------------------------------------------------
# Layouts: decided for the whole state dict; raw weights beside a config.json; state_dict=
# ---------------------------------------------------------------------------------------


def test_weights_only_gpt2_layout_is_decided_for_the_whole_state_dict(folders, tmp_path):
    """GPT-2's names are the same in both layouts and c_proj is square: a transformers-layout
    file must transpose c_proj too (decided by the non-square weights), ours must not."""
    theirs = transformers.GPT2LMHeadModel.from_pretrained(folders["gpt2"], dtype=torch.float32).eval()
    expected = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    c = expected.config.n_embd
    assert theirs.transformer.h[0].attn.c_proj.weight.shape == (c, c)  # the square one
    hf_state = {k: v.contiguous() for k, v in theirs.state_dict().items() if k != "lm_head.weight"}
    (tmp_path / "hf").mkdir()
    safetensors.torch.save_file(hf_state, str(tmp_path / "hf" / "model.safetensors"))
    loaded = gpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "hf", config=expected.config)
    assert torch.equal(loaded.transformer.h[0].attn.c_proj.weight, theirs.transformer.h[0].attn.c_proj.weight.t())
    _assert_same_state(loaded, _state(expected))
    ids = _ids(expected.config.vocab_size)
    with torch.no_grad():
        assert_close(loaded(ids).logits, theirs(ids).logits, name="logits", atol=1e-5, rtol=1e-5)
    _write_weights_only(expected, tmp_path / "ours", "safetensors")
    loaded = gpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "ours", config=expected.config)
    assert torch.equal(loaded.transformer.h[0].attn.c_proj.weight, expected.transformer.h[0].attn.c_proj.weight)
    _assert_same_state(loaded, _state(expected))


def test_weights_only_file_that_fits_both_layouts_is_an_error(tmp_path):
    """A model whose only transposed weight is square: its file cannot say which layout it
    is in, so loading it is an error saying so, never a silent guess."""
    from mlab_tfs.checkpoints import PretrainedMixin
    from mlab_tfs.gpt2.given import GPT2Config

    class Square(PretrainedMixin, nn.Module):
        config_class = GPT2Config
        hf_to_ours = staticmethod(lambda state, config: {k: v.t() for k, v in state.items()})
        ours_to_hf = staticmethod(lambda state, config: {k: v.t() for k, v in state.items()})

        def __init__(self, config):
            super().__init__()
            self.config = config
            self.proj = nn.Linear(4, 4, bias=False)

    config = GPT2Config(vocab_size=11, n_positions=8, n_embd=4, n_layer=1, n_head=1)
    model = Square(config)
    (tmp_path / "raw").mkdir()
    torch.save(model.state_dict(), tmp_path / "raw" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="both in its own layout and in transformers'.*cannot be told"):
        Square.from_pretrained(tmp_path / "raw", config=config)
    # A symmetric weight is the same in both: nothing to decide, it loads.
    with torch.no_grad():
        model.proj.weight.copy_(model.proj.weight + model.proj.weight.t())
    torch.save(model.state_dict(), tmp_path / "raw" / "pytorch_model.bin")
    assert torch.equal(Square.from_pretrained(tmp_path / "raw", config=config).proj.weight, model.proj.weight)


@pytest.mark.parametrize("writer", ["torch_save", "safetensors"])
def test_config_json_beside_weights_in_our_layout_says_what_it_is_and_what_to_do(writer, folders, tmp_path):
    ours = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    _write_weights_only(ours, tmp_path / "raw", writer)
    (tmp_path / "raw" / "config.json").write_text((folders["gpt2"] / "config.json").read_text())
    name = "model.safetensors" if writer == "safetensors" else "pytorch_model.bin"
    with pytest.raises(CheckpointError) as info:
        gpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "raw")
    message = str(info.value)
    for part in (f"{name} holds GPT2LMHeadModel's own state_dict()", "beside a config.json",
                 "transformers' layout", "model.save_pretrained(folder)", "config=..."):
        assert part in message, (part, message)
    # What it says to do works: the same file alone, with config=.
    (tmp_path / "raw" / "config.json").unlink()
    _assert_same_state(gpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "raw", config=ours.config), _state(ours))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("safe", [True, False])
def test_save_pretrained_state_dict_is_written_instead_of_the_parameters(kind, safe, folders, tmp_path, monkeypatch):
    """transformers' meaning of state_dict=: those tensors (our names) are saved, once, and load
    back in ours and in transformers; safe_serialization=False writes pytorch_model.bin."""
    cls, hf_cls, _, _ = KINDS[kind]
    ours = cls.from_pretrained(folders[kind])
    other = {k: v * 0.9 + 0.01 if v.is_floating_point() else v for k, v in ours.state_dict().items()}
    writes = []
    real = safetensors.torch.save_file
    monkeypatch.setattr(safetensors.torch, "save_file", lambda *a, **k: (writes.append(a[1]), real(*a, **k)))
    ours.save_pretrained(tmp_path / "saved", state_dict=other, safe_serialization=safe)
    assert len(writes) == (1 if safe else 0)
    names = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert names == ["config.json", "model.safetensors" if safe else "pytorch_model.bin"]
    loaded = cls.from_pretrained(tmp_path / "saved")
    _assert_same_state(loaded, {k: other[k] for k in _state(ours)})
    assert not torch.equal(next(iter(_state(loaded).values())), next(iter(_state(ours).values())))
    theirs = hf_cls.from_pretrained(tmp_path / "saved", dtype=torch.float32).eval()
    ids = _ids(ours.config.vocab_size)
    with torch.no_grad():
        assert_close(loaded(ids).logits, theirs(ids).logits, name="logits", atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad, error, match", [
    ({"nope": torch.zeros(1)}, ValueError, r"(?s)state_dict: .*unexpected keys.*nope"),
    ([1, 2], TypeError, r"state_dict must be a dict of parameter name -> tensor.*got list"),
    ({"transformer.wte.weight": 3}, TypeError, r"state_dict must be a dict"),
])
def test_save_pretrained_refuses_a_state_dict_that_does_not_fit(bad, error, match, folders, tmp_path):
    ours = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    with pytest.raises(error, match=match):
        ours.save_pretrained(tmp_path / "saved", state_dict=bad)
    assert not (tmp_path / "saved").exists()
    with pytest.raises(TypeError, match="safe_serialization must be a bool"):
        ours.save_pretrained(tmp_path / "saved", safe_serialization="yes")


@pytest.mark.parametrize("cls, hf_auto", [
    (bert.BertForMaskedLM, transformers.AutoModelForMaskedLM),
    (bert.BertForSequenceClassification, transformers.AutoModelForSequenceClassification),
    (deberta.DebertaV2Model, transformers.AutoModel),
    (gpt2.GPT2Model, transformers.AutoModel),
])
def test_save_pretrained_of_a_model_built_from_scratch_names_its_own_class(cls, hf_auto, folders, tmp_path):
    """A fresh config carries its class's default architectures (BertConfig: ["BertModel"]); the
    folder saved from a BertForMaskedLM must say BertForMaskedLM, and so does the model's config
    afterwards (as transformers' save_pretrained sets it)."""
    kind = {"bert": "bert", "deberta": "deberta", "gpt2": "gpt2"}[cls.__module__.split(".")[1]]
    config = type(KINDS[kind][0].from_pretrained(folders[kind]).config).from_dict(
        KINDS[kind][0].from_pretrained(folders[kind]).config.to_dict())
    model = cls(config).eval()
    model.save_pretrained(tmp_path / "fresh")
    saved = json.loads((tmp_path / "fresh" / "config.json").read_text())
    assert saved["architectures"] == [cls.__name__] == model.config.architectures
    assert transformers.AutoConfig.from_pretrained(tmp_path / "fresh").architectures == [cls.__name__]
    theirs = hf_auto.from_pretrained(tmp_path / "fresh", dtype=torch.float32).eval()
    assert type(theirs).__name__ == cls.__name__
    assert cls.from_pretrained(tmp_path / "fresh").config.architectures == [cls.__name__]
