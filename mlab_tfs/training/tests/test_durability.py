"""Training checkpoints survive a failed save, a killed process and a torn log; one run per
output folder; a resume that would change the meaning of the checkpoint is refused."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from mlab_tfs.checkpoints import CheckpointError
from mlab_tfs.cli import main as cli_main
from mlab_tfs.training.loop import (
    LLAMA_ONLY,
    RESUME_FIXED,
    RESUME_MAY_CHANGE,
    RunFolderInUse,
    RunLock,
    TrainConfig,
    read_log,
    train,
)

from .conftest import tiny, with_

# 12 steps, a checkpoint every 4 (the first two saves come before the end), 11 held-out
# blocks evaluated in batches of 8 (so the last batch is short).
SHORT = dict(max_steps=12, checkpoint_every=4, eval_every=6, eval_blocks=11)


def losses(out) -> list[float]:
    return [r["loss"] for r in read_log(out / "log.jsonl") if "loss" in r]


def saved_steps(out) -> tuple[int, list[int]]:
    """(step of checkpoint/state.pt, steps of its rng files)."""
    folder = out / "checkpoint"
    state = torch.load(folder / "state.pt", weights_only=True)
    rngs = [torch.load(p, weights_only=True)["step"] for p in sorted(folder.glob("rng-*.pt"))]
    return state["step"], rngs


def partials(out) -> list[str]:
    return sorted(p.name for p in out.rglob("*.partial"))


@pytest.fixture(scope="module")
def reference(small_corpus, tmp_path_factory):
    """An uninterrupted run of SHORT: (its summary, its folder)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    return train(tiny(small_corpus, out, **SHORT)), out


def test_a_save_failing_midway_keeps_the_previous_checkpoint(small_corpus, tmp_path, reference, monkeypatch):
    """The disk fills while the step-8 checkpoint is written (its 2nd file, rng-0.pt): the run
    fails with that OSError, checkpoint/ still holds step 4 whole (state and rng agree), and
    --resume reproduces the uninterrupted run bit for bit (same process, dropout on)."""
    ref, ref_out = reference
    cfg = tiny(small_corpus, tmp_path / "run", **SHORT)
    real_save, calls = torch.save, []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(str(f))
        if len(calls) == 4:  # step 4: state.pt, rng-0.pt; step 8: state.pt, then this one
            real_save(obj, f, *args, **kwargs)
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left on device"):
        train(cfg)
    monkeypatch.setattr(torch, "save", real_save)
    assert [os.path.basename(c) for c in calls] == ["state.pt", "rng-0.pt", "state.pt", "rng-0.pt"]
    out = tmp_path / "run"
    assert saved_steps(out) == (4, [4])
    assert partials(out) == []  # the failed save cleaned up after itself
    assert len(losses(out)) == 8  # the log went on to step 8

    resumed = train(cfg, resume=True)  # the failed run released the folder's lock
    assert losses(out) == ref["losses"]
    assert resumed["final_eval_loss"] == ref["final_eval_loss"]
    a = torch.load(out / "checkpoint" / "state.pt", weights_only=True)["model"]
    b = torch.load(ref_out / "checkpoint" / "state.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


CHILD = textwrap.dedent("""
    import sys, time
    import torch
    from mlab_tfs import cli

    real_save, calls = torch.save, [0]

    def stalling_save(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 4:  # the step-8 checkpoint's rng-0.pt: write half of it, then stall
            with open(f, "wb") as fh:
                fh.write(b"half a file")
            print("IN-SAVE", flush=True)
            time.sleep(600)
        return real_save(obj, f, *args, **kwargs)

    torch.save = stalling_save
    sys.exit(cli.main(sys.argv[1:]))
""")


def test_a_run_killed_during_a_save_resumes_to_the_uninterrupted_result(small_corpus, tmp_path, reference, capsys):
    """`mlab-tfs train` in a subprocess, SIGKILLed in the middle of its second checkpoint.
    While it stalls there a second run into the same --out is refused (one line, its pid).
    After the kill, and a torn line appended to log.jsonl, --resume continues from step 4 and
    every step's loss equals the uninterrupted run's (1e-6: steps 1-4 ran in another process)."""
    ref, _ = reference
    out = tmp_path / "run"
    config = tmp_path / "run.json"
    config.write_text(json.dumps(asdict(tiny(small_corpus, out, **SHORT))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    with open(tmp_path / "child.err", "w") as err:
        child = subprocess.Popen([sys.executable, "-c", CHILD, "train", "--config", str(config)], stdout=subprocess.PIPE,
                                 stderr=err, text=True, env=env)
    watchdog = threading.Timer(180, child.kill)  # never hang the suite
    watchdog.start()
    try:
        for line in child.stdout:  # the run's own output (held-out losses, samples), then the marker
            if line == "IN-SAVE\n":
                break
        assert line == "IN-SAVE\n", (tmp_path / "child.err").read_text()[-2000:]

        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            cli_main(["train", "--config", str(config)])
        assert e.value.code == 2
        err_lines = capsys.readouterr().err.splitlines()
        assert err_lines == [f"mlab-tfs train: error: {out} is in use by another mlab-tfs train run "
                             f"(pid {child.pid}); wait for it to end or choose another --out"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        watchdog.cancel()
    assert child.returncode == -signal.SIGKILL
    assert saved_steps(out) == (4, [4])
    assert partials(out)  # the killed save's staging folder is left behind...
    with (out / "log.jsonl").open("a") as f:
        f.write('{"step": 9, "loss": 4.1')  # ...and a record cut short

    assert cli_main(["train", "--config", str(config), "--resume"]) == 0
    torch.testing.assert_close(torch.tensor(losses(out)), torch.tensor(ref["losses"]), rtol=0, atol=1e-6)
    assert [r["step"] for r in read_log(out / "log.jsonl") if "loss" in r] == list(range(1, 13))
    assert partials(out) == []  # ...and removed by the next save, its process being gone


def test_log_reader_skips_a_torn_last_line_only(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 5.0}\n{"step": 2, "loss": 4.9}\n{"step": 3, "lo')
    assert read_log(log) == [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.9}]
    log.write_text('{"step": 1, "loss": 5.0}\n{"step": 2, "lo\n{"step": 3, "loss": 4.8}\n')
    with pytest.raises(ValueError, match=r"log.jsonl, line 2: not a JSON record"):
        read_log(log)


def test_a_second_run_into_the_same_folder_is_refused(tiny_config, tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(RunFolderInUse, match=rf"{out} is in use by another mlab-tfs train run \(pid {os.getpid()}\)"):
            train(tiny_config)
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # nothing else was written
        with pytest.raises(RunFolderInUse):
            RunLock(out).acquire()
    RunLock(out).acquire().release()  # free again once its holder lets go


# --- what --resume may change ---------------------------------------------------------------

# Written out here, not derived from the loop's own list: every setting that decides what the
# checkpoint's weights, moments and data position mean.
MUST_NOT_CHANGE = {
    "corpus": ["elsewhere"], "eval_fraction": 0.1, "tokenizer": "gpt2", "vocab_size": 512, "n_layer": 3,
    "n_head": 4, "n_embd": 64, "n_positions": 128, "dropout": 0.2, "init_from": "some/model", "block_size": 16,
    "batch_size": 16, "grad_accum": 2, "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 2, "weight_decay": 0.0,
    "beta1": 0.8, "beta2": 0.99, "grad_clip": 0.5, "seed": 1, "arch": "llama", "parallel": "fsdp",
    "n_kv_head": 1, "intermediate_size": 64, "rope_theta": 500000.0, "repeat_fraction": 0.25, "repeat_text_fraction": 0.25,
}


@pytest.fixture(scope="module")
def stopped_at_4(small_corpus, tmp_path_factory):
    """The config of a run of SHORT stopped after its step-4 checkpoint, warmup unset (so
    min(100, 12 // 10) = 1, which a resume that leaves it unset keeps)."""
    cfg = tiny(small_corpus, tmp_path_factory.mktemp("stopped") / "run", **SHORT, warmup_steps=None)
    train(cfg, stop_after=4)
    return cfg


def test_the_settings_resume_may_not_change_are_every_setting_but_reporting_and_length():
    assert set(RESUME_FIXED) == set(MUST_NOT_CHANGE)
    assert set(RESUME_FIXED) | set(RESUME_MAY_CHANGE) == {f for f in TrainConfig.__dataclass_fields__}


@pytest.mark.parametrize("name", sorted(MUST_NOT_CHANGE))
def test_resume_refuses_each_setting_that_changes_the_checkpoint(stopped_at_4, name, tmp_path):
    cfg = stopped_at_4
    value = MUST_NOT_CHANGE[name]
    if name in ("corpus", "init_from"):  # paths that exist, so that only the resume check objects
        (tmp_path / "a.txt").write_text("To be, or not to be.\n")
        (tmp_path / "config.json").write_text("{}")
        value = [str(tmp_path)] if name == "corpus" else str(tmp_path)
    log = Path(cfg.out) / "log.jsonl"
    before = log.read_bytes()
    old = 1 if name == "warmup_steps" else getattr(cfg, name)  # the checkpoint records the resolved warmup
    if name in LLAMA_ONLY:  # a GPT-2 run refuses them before the checkpoint is read
        with pytest.raises(ValueError, match=rf"{name}={value!r} apply only to arch='llama'"):
            train(with_(cfg, **{name: value}), resume=True)
        assert log.read_bytes() == before
        return
    expected = f"cannot change: {name}: {old!r} -> {value!r} (only max_steps, "
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        train(with_(cfg, **{name: value}), resume=True)
    assert log.read_bytes() == before  # refused before anything was touched


def test_resume_names_every_difference_at_once(stopped_at_4):
    cfg = stopped_at_4
    with pytest.raises(CheckpointError, match=r"cannot change: n_embd: 32 -> 64; lr: 0.003 -> 0.01; seed: 0 -> 7 \(only"):
        train(with_(cfg, lr=0.01, n_embd=64, seed=7), resume=True)
    with pytest.raises(ValueError, match=r"max_steps=3, but the checkpoint in .* is at step 4"):
        train(with_(cfg, max_steps=3), resume=True)


def test_the_logged_held_out_loss_is_the_mean_over_its_tokens(reference):
    """The run's last evaluation (step 12: 11 held-out blocks in batches of 8, so 8 + 3),
    recomputed by hand from the final checkpoint's fp32 weights (1e-6)."""
    from mlab_tfs.gpt2 import GPT2LMHeadModel
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer
    from mlab_tfs.training.loop import prepare_data, select_eval_blocks

    from .test_accounting import hand_mean_loss

    _, out = reference
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 12
    model = GPT2LMHeadModel.from_pretrained(out / "model", dtype=torch.float32)
    model.load_state_dict(state["model"])
    cfg = TrainConfig(**state["config"])
    _, _, held_out = prepare_data(cfg, ByteLevelBPETokenizer.from_pretrained(out / "tokenizer"))
    blocks = select_eval_blocks(held_out, 11)
    assert len(blocks) == 11 and len(blocks) % (cfg.batch_size // cfg.grad_accum) == 3
    logged = [r["eval_loss"] for r in read_log(out / "log.jsonl") if "eval_loss" in r]
    assert [r["step"] for r in read_log(out / "log.jsonl") if "eval_loss" in r] == [6, 12]
    assert logged[-1] == pytest.approx(hand_mean_loss(model, blocks), abs=1e-6)


# --- a damaged checkpoint or log: refused before any work, one line at the command -------------

def _damage_rng_missing(out):
    (out / "checkpoint" / "rng-0.pt").unlink()


def _damage_rng_garbage(out):
    (out / "checkpoint" / "rng-0.pt").write_bytes(b"x")


def _damage_rng_other_step(out):
    path = out / "checkpoint" / "rng-0.pt"
    torch.save({**torch.load(path, weights_only=True), "step": 3}, path)


def _damage_state_garbage(out):
    (out / "checkpoint" / "state.pt").write_bytes(b"garbage")


def _damage_log_before_position(out):
    log = out / "log.jsonl"
    log.write_bytes(b"garbage\n" + log.read_bytes()[8:])  # same length, first record overwritten


DAMAGE = {
    "rng missing": (_damage_rng_missing, r"the checkpoint in .*run lacks rng-0.pt \(the random state of rank 0\)"),
    "rng garbage": (_damage_rng_garbage, r"checkpoint/rng-0.pt cannot be read \(UnpicklingError: .*\); the checkpoint "
                                         r"is damaged"),
    "rng other step": (_damage_rng_other_step, r"checkpoint/rng-0.pt is from step 3, the checkpoint from step 4"),
    "state garbage": (_damage_state_garbage, r"checkpoint/state.pt cannot be read \(UnpicklingError: "),
    "log garbage": (_damage_log_before_position, r"log.jsonl, line 1, before the checkpoint's position, is not a JSON "
                                                 r"record: b'garbage'; move the log aside"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_or_log_is_refused_before_any_work(stopped_at_4, damage, tmp_path, capsys):
    """Each damage is named in one line (exit status 2 at the command, no traceback), before
    the log is cut back or anything else in the folder changes."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(stopped_at_4.out, out)
    harm, message = DAMAGE[damage]
    harm(out)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "run.lock"}
    cfg = with_(stopped_at_4, out=str(out))
    with pytest.raises((CheckpointError, ValueError), match=message):
        train(cfg, resume=True)
    config = tmp_path / "run.json"
    config.write_text(json.dumps(asdict(cfg)))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--config", str(config), "--resume"])
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("mlab-tfs train: error: ") and re.search(message, err[0]), err
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "run.lock"} == before


def test_a_log_ending_in_zeros_after_a_crash_loses_those_records_only(stopped_at_4, tmp_path):
    """The machine went down after the step-4 checkpoint (synced) but before the log's last
    two appends reached the disk: they read as zero bytes. The resume warns, keeps steps 1-2,
    and its steps 5-12 equal those of a resume from an intact copy exactly."""
    import shutil

    intact, damaged = tmp_path / "intact", tmp_path / "damaged"
    shutil.copytree(stopped_at_4.out, intact)
    shutil.copytree(stopped_at_4.out, damaged)
    log = damaged / "log.jsonl"
    data = log.read_bytes()
    assert [r["step"] for r in read_log(log)] == [1, 2, 3, 4]
    second = data.index(b"\n", data.index(b"\n") + 1) + 1  # the end of the second record
    log.write_bytes(data[:second] + b"\0" * (len(data) - second))
    with pytest.warns(UserWarning, match=r"log.jsonl ends in zero bytes .*its records after the first 2 are lost"):
        train(with_(stopped_at_4, out=str(damaged)), resume=True)
    train(with_(stopped_at_4, out=str(intact)), resume=True)
    assert b"\0" not in log.read_bytes()
    assert [r["step"] for r in read_log(log) if "loss" in r] == [1, 2, *range(5, 13)]
    assert losses(damaged)[2:] == losses(intact)[4:]
