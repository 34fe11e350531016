"""The loop data-parallel over 2 gloo processes on this machine equals 1 process with the same
global batch."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict

import pytest
import torch
import torch.multiprocessing as mp

from mlab_tfs.training.loop import TrainConfig, train

from .conftest import with_


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_two(start, tmp_path, attempts: int = 3):
    """start(folder, port) with a free port; again, in a new folder, if another process took the
    port between free_port() and the processes binding it (tests run side by side under xdist)."""
    for attempt in range(attempts):
        folder = tmp_path / f"two-{attempt}"
        try:
            start(folder, free_port())
            return folder
        except Exception as e:  # the rank-0 process's error, re-raised by torch.multiprocessing
            if "address already in use" not in str(e).lower() or attempt == attempts - 1:
                raise


def _worker(rank: int, world_size: int, port: int, config: dict, stop_after: int | None = None,
            resume: bool = False) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)  # two processes on a 2-core machine
    train(TrainConfig(**config), stop_after=stop_after, resume=resume)


@pytest.mark.solution_only
def test_two_gloo_processes_equal_one(tiny_config, tmp_path):
    """2 processes x 4 sequences vs 1 process x 2 micro-batches of 4: the same blocks in the
    same micro-batches, so the same gradient up to summation order (all-reduce vs accumulation).
    Losses within 1e-5 over 16 steps (dropout off: each process draws its own dropout masks)."""
    cfg = with_(tiny_config, dropout=0.0, max_steps=16, checkpoint_every=100, eval_every=100)
    single = train(with_(cfg, grad_accum=2, out=str(tmp_path / "one")))
    out = spawn_two(lambda folder, port: mp.start_processes(
        _worker, args=(2, port, asdict(with_(cfg, grad_accum=1, out=str(folder)))), nprocs=2, join=True,
        start_method="spawn"), tmp_path)
    import json

    records = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    two = [r["loss"] for r in records if "loss" in r]
    assert len(two) == 16
    torch.testing.assert_close(torch.tensor(two), torch.tensor(single["losses"]), rtol=0, atol=1e-5)
    recipe = json.loads((out / "model" / "recipe.json").read_text())
    assert recipe["processes"] == 2
    assert recipe["final_eval_loss"] == pytest.approx(single["final_eval_loss"], abs=1e-5)


def _torchrun(out, *extra) -> list[float]:
    import json
    import subprocess
    import sys

    # --standalone: torchrun's own rendezvous binds a free port itself (no race for a port
    # chosen here and bound later, which another test could take in between).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "mlab_tfs.training.trainer_ddp", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "losses.json").read_text())


@pytest.mark.solution_only
def test_trainer_over_two_gloo_processes_matches_transformers(tmp_path):
    """torchrun, 2 processes, transformers' Trainer (DistributedSampler, DDP over gloo): our
    GPT-2 gives transformers' GPT-2's losses for 10 steps (1e-4, the issue's Trainer tolerance)."""
    ours = _torchrun(tmp_path / "ours")
    theirs = _torchrun(tmp_path / "hf", "--hf")
    assert len(ours) == len(theirs) == 10
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(theirs), rtol=0, atol=1e-4)


def _losses(folder) -> list[float]:
    import json

    return [r["loss"] for r in map(json.loads, (folder / "log.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.solution_only
def test_fsdp_over_two_gloo_processes_equals_one(tiny_config, tmp_path):
    """parallel="fsdp" (FSDP2's fully_shard), on our Llama (2 query heads sharing 1 key/value
    head, the head tied to the embedding), with induction data (a quarter of the rows random
    repeats, a quarter text repeats, so micro-batches count different numbers of targets):
    2 processes x 2 micro-batches of 2 sequences vs
    1 process x 2 micro-batches of 4: the same 8 blocks per step, so per-step losses within
    1e-5 over 16 steps (16 of 16 compared), with gradient sync held back on the first
    micro-batch of every step. The two processes are stopped after step 12 and resumed from
    the step-8 checkpoint (gathered whole, loaded back into the shards): the log keeps each
    step once, and the final checkpoint's weights and AdamW moments equal the one process's
    (1e-5), as does the exported model's held-out loss."""
    import json

    cfg = with_(tiny_config, arch="llama", n_kv_head=1, intermediate_size=48, dropout=0.0, max_steps=16,
                checkpoint_every=8, eval_every=100, repeat_fraction=0.25, repeat_text_fraction=0.25)
    single = train(with_(cfg, grad_accum=2, out=str(tmp_path / "one")))
    def start(folder, port):
        config = asdict(with_(cfg, grad_accum=2, parallel="fsdp", out=str(folder)))
        mp.start_processes(_worker, args=(2, port, config, 12), nprocs=2, join=True, start_method="spawn")
        assert len(_losses(folder)) == 12
        mp.start_processes(_worker, args=(2, free_port(), config, None, True), nprocs=2, join=True,
                           start_method="spawn")

    out = spawn_two(start, tmp_path)
    two = _losses(out)
    assert len(two) == len(single["losses"]) == 16
    torch.testing.assert_close(torch.tensor(two), torch.tensor(single["losses"]), rtol=0, atol=1e-5)
    recipe = json.loads((out / "model" / "recipe.json").read_text())
    assert (recipe["processes"], recipe["parallel"]) == (2, "fsdp")
    assert recipe["final_eval_loss"] == pytest.approx(single["final_eval_loss"], abs=1e-5)

    sharded = torch.load(out / "checkpoint" / "state.pt", weights_only=True)
    whole = torch.load(tmp_path / "one" / "checkpoint" / "state.pt", weights_only=True)
    assert sharded["step"] == whole["step"] == 16
    assert sorted(sharded["model"]) == sorted(whole["model"])
    for name, tensor in whole["model"].items():
        torch.testing.assert_close(sharded["model"][name], tensor, rtol=0, atol=1e-5, msg=name)
    # FSDP's optimizer state is keyed by parameter name, the plain one by position in param_groups.
    from mlab_tfs.llama import LlamaForCausalLM
    from mlab_tfs.training.loop import param_groups

    model = LlamaForCausalLM.from_pretrained(tmp_path / "one" / "model")
    name_of = {id(p): n for n, p in model.named_parameters()}
    order = [name_of[id(p)] for group in param_groups(model, 1.0) for p in group["params"]]
    assert sorted(sharded["optimizer"]["state"]) == sorted(order)
    for i, name in enumerate(order):
        for moment in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sharded["optimizer"]["state"][name][moment],
                                       whole["optimizer"]["state"][i][moment], rtol=1e-4, atol=1e-8,
                                       msg=f"{name} {moment}")
