"""Every setting is checked before any work, through the Python API and the command line
(one line, exit status 2); defaults that depend on max_steps scale with it."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlab_tfs.cli import main as cli_main
from mlab_tfs.training.loop import TrainConfig, check_config, resolve_config, train

from .conftest import with_

NAN, INF = float("nan"), float("inf")

# (setting, bad value, what the message says). Each float setting gets NaN and an infinity;
# each count zero or a negative; a value of the wrong type for a few of each kind.
BAD = [
    *[(name, v, rf"{name} must be a finite number, got {v}") for v in (NAN, INF, -INF)
      for name in ("eval_fraction", "dropout", "lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip",
                   "sample_temperature")],
    *[(name, v, rf"{name} must be >= 1, got {v}") for v in (0, -3)
      for name in ("vocab_size", "n_layer", "n_head", "n_embd", "n_positions", "block_size", "batch_size",
                   "grad_accum", "max_steps", "eval_every", "checkpoint_every", "sample_tokens")],
    ("eval_fraction", 0.0, r"eval_fraction must be in \(0, 1\), got 0.0"),
    ("eval_fraction", 1.0, r"eval_fraction must be in \(0, 1\), got 1.0"),
    ("dropout", 1.0, r"dropout must be in \[0, 1\), got 1.0"),
    ("dropout", -0.1, r"dropout must be in \[0, 1\), got -0.1"),
    ("lr", 0.0, r"lr > 0, got lr=0.0"),
    ("lr", -1e-3, r"lr > 0, got lr=-0.001"),
    ("min_lr", -1e-5, r"0 <= min_lr <= lr"),
    ("weight_decay", -0.1, r"weight_decay and grad_clip must be >= 0, got -0.1"),
    ("grad_clip", -1.0, r"weight_decay and grad_clip must be >= 0, got 0.1, -1.0"),
    ("beta1", 1.0, r"beta1, beta2 must be in \[0, 1\), got 1.0"),
    ("beta2", -0.5, r"beta1, beta2 must be in \[0, 1\), got 0.9, -0.5"),
    ("warmup_steps", -1, r"warmup_steps \(-1\) must be in \[0, max_steps=24\]"),
    ("warmup_steps", 25, r"warmup_steps \(25\) must be in \[0, max_steps=24\]"),
    ("seed", -1, r"seed must be in \[0, 2\*\*32\), got -1"),
    ("seed", 2**32, r"seed must be in \[0, 2\*\*32\), got 4294967296"),
    ("eval_blocks", -1, r"eval_blocks must be >= 0"),
    ("sample_temperature", 0.0, r"sample_temperature must be > 0"),
    ("sample_top_k", -1, r"sample_top_k >= 0, got 0.8, -1"),
    ("vocab_size", 256, r"vocab_size must be >= 257"),
    ("device", "gpu", r"device must be 'auto', 'cpu' or 'cuda\[:i\]', got 'gpu'"),
    ("device", "cuda:x", r"got 'cuda:x'"),
    ("out", "", r"out must name a folder"),
    ("tokenizer", "", r"tokenizer and init_from must not be empty"),
    *[("rope_theta", v, rf"rope_theta must be a finite number, got {v}") for v in (NAN, INF)],
    *[(name, v, rf"{name} must be >= 1 \(or unset\), got {v}") for v in (0, -2)
      for name in ("n_kv_head", "intermediate_size")],
    ("arch", "mistral", r"arch must be one of \['gpt2', 'llama'\], got 'mistral'"),
    ("arch", "GPT2", r"arch must be one of \['gpt2', 'llama'\], got 'GPT2'"),
    ("parallel", "zero", r"parallel must be one of \['ddp', 'fsdp'\], got 'zero'"),
    *[(name, v, rf"{name} must be in \[0, 1\], got {v}") for v in (1.5, -0.25)
      for name in ("repeat_fraction", "repeat_text_fraction")],
    *[(name, v, rf"{name} must be a finite number, got {v}") for v in (NAN, INF)
      for name in ("repeat_fraction", "repeat_text_fraction")],
    *[(name, v, rf"{name}={v!r} apply only to arch='llama' \(arch is 'gpt2'\)")
      for name, v in (("n_kv_head", 1), ("intermediate_size", 64), ("rope_theta", 500000.0))],
]
WRONG_TYPE = [("repeat_fraction", "0.1"), ("repeat_text_fraction", True), ("lr", "0.1"), ("lr", True), ("max_steps", 10.0), ("max_steps", "10"), ("n_layer", None),
              ("warmup_steps", 1.5), ("amp", "yes"), ("progress", 1), ("corpus", "plays.txt"), ("corpus", [1]),
              ("device", None), ("init_from", 3), ("sample_prompt", 5), ("arch", None), ("n_kv_head", 1.0),
              ("rope_theta", "1e4"), ("parallel", True)]


@pytest.mark.parametrize("name, value, message", BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_python_api_refuses_a_bad_setting_before_any_work(tiny_config, name, value, message):
    cfg = with_(tiny_config, **{name: value})
    with pytest.raises(ValueError, match=message):
        check_config(cfg)
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert not Path(tiny_config.out).exists()  # nothing was written


@pytest.mark.parametrize("name, value", WRONG_TYPE, ids=[f"{n}={v!r}" for n, v in WRONG_TYPE])
def test_python_api_refuses_a_setting_of_the_wrong_type(tiny_config, name, value):
    kind = {"lr": "float", "max_steps": "int", "n_layer": "int", "warmup_steps": r"int \| None", "amp": r"bool \| None",
            "progress": "bool", "corpus": r"list\[str\]", "device": "str", "init_from": r"str \| None",
            "sample_prompt": "str", "arch": "str", "n_kv_head": r"int \| None", "rope_theta": r"float \| None",
            "parallel": "str", "repeat_fraction": "float", "repeat_text_fraction": "float"}[name]
    with pytest.raises(TypeError, match=rf"{name} must be {kind}, got {type(value).__name__}"):
        train(with_(tiny_config, **{name: value}))
    assert not Path(tiny_config.out).exists()


def test_paths_that_cannot_be_used(tiny_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        check_config(with_(tiny_config, corpus=[str(tmp_path / "nope")]))
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path} has no vocab.json or merges.txt"):
        check_config(with_(tiny_config, tokenizer=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match=r"init_from must be a model folder with config.json"):
        check_config(with_(tiny_config, init_from=str(tmp_path)))
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=r"out must be a folder, but .*file is a file"):
        check_config(with_(tiny_config, out=str(tmp_path / "file")))
    with pytest.raises(NotADirectoryError, match=rf"out must be a folder, but {tmp_path / 'file'} \(in .*file/a/b\) is a file"):
        check_config(with_(tiny_config, out=str(tmp_path / "file" / "a" / "b")))
    with pytest.raises(TypeError, match="config must be a TrainConfig, got dict"):
        check_config({"lr": 0.1})
    with pytest.raises(TypeError, match="resume must be a bool, got str"):
        train(tiny_config, resume="yes")
    with pytest.raises(ValueError, match="stop_after must be None or an int >= 1, got 0"):
        train(tiny_config, stop_after=0)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


CLI_BAD = [(n, v, m) for n, v, m in BAD if n not in ("out", "tokenizer")]  # "" is not a flag value


@pytest.mark.parametrize("name, value, message", CLI_BAD, ids=[f"{n}={v}" for n, v, _ in CLI_BAD])
def test_cli_refuses_a_bad_setting_in_one_line(tiny_config, name, value, message, capsys):
    args = ["train", "--corpus", *tiny_config.corpus, "--out", tiny_config.out, f"{_flag(name)}={value}"]
    if name != "max_steps":
        args += ["--max-steps", "24"]  # as in tiny_config, which the messages quote
    with pytest.raises(SystemExit) as e:
        cli_main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("mlab-tfs train: error: bad settings: "), err
    assert re.search(message, err)
    assert not Path(tiny_config.out).exists()


@pytest.mark.parametrize("flag, value", [("--lr", "abc"), ("--max-steps", "1.5"), ("--n-layer", "")])
def test_cli_refuses_a_malformed_value_in_one_line(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["train", flag, value])
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"mlab-tfs train: error: argument {flag}: invalid "
                                       f"{'float' if flag == '--lr' else 'int'} value: {value!r}\n")


def test_cli_error_in_a_real_process_has_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mlab_tfs.cli", "train", "--lr", "inf", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == "mlab-tfs train: error: bad settings: lr must be a finite number, got inf\n"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("max_steps, warmup", [(1, 0), (9, 0), (10, 1), (30, 3), (999, 99), (1000, 100), (2000, 100),
                                                (50_000, 100)])
def test_default_warmup_scales_with_max_steps(max_steps, warmup):
    """Unset, warmup_steps = min(100, max_steps // 10): so --max-steps 30 alone is a valid run."""
    assert resolve_config(TrainConfig(max_steps=max_steps)).warmup_steps == warmup
    assert resolve_config(TrainConfig(max_steps=max_steps, warmup_steps=1)).warmup_steps == 1  # given: kept
    assert math.isclose(warmup, min(100, max_steps // 10))


@pytest.mark.parametrize("changes, message", [
    (dict(repeat_fraction=0.6, repeat_text_fraction=0.5), r"repeat_fraction \+ repeat_text_fraction must be <= 1, got 0.6 \+ 0.5"),
    (dict(repeat_fraction=0.1, block_size=7), r"repeat_fraction / repeat_text_fraction need block_size >= 8 .* got 7"),
    (dict(repeat_text_fraction=0.1, block_size=4), r"need block_size >= 8 \(a span of 4 tokens and its repeat\), got 4"),
])
def test_repeat_fractions_that_contradict(tiny_config, changes, message):
    with pytest.raises(ValueError, match=message):
        check_config(with_(tiny_config, **changes))


@pytest.mark.parametrize("changes", [dict(repeat_fraction=0.5, repeat_text_fraction=0.5),  # exactly 1
                                     dict(repeat_fraction=1.0), dict(repeat_text_fraction=1),
                                     dict(block_size=4)])  # short blocks without repeats
def test_repeat_fractions_at_their_bounds_are_accepted(tiny_config, changes):
    check_config(with_(tiny_config, **changes))
