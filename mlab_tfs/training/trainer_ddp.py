"""Our GPT2LMHeadModel in transformers' Trainer over several processes (run with torchrun).

    torchrun --nproc-per-node 2 -m mlab_tfs.training.trainer_ddp OUT_DIR [--hf]

Trains the same tiny twin models as the Trainer tests for 10 steps, with a global batch of
8 split over the processes, and writes the per-step losses to OUT_DIR/losses.json (rank 0).
--hf trains transformers' GPT-2 instead, for comparison.

Trainer (through accelerate) starts a gloo process group and never ends it. A gloo worker
thread can still hold the last reference to a finished collective whose tensors Python
owned; releasing them needs the interpreter lock. If that happens while the interpreter
shuts down, the thread is stopped inside a C++ destructor and the process aborts
("terminate called without an active exception", SIGABRT, seen under load). Destroying the
group from Python instead can deadlock: the destructor waits for that thread while holding
the lock (the DDP reducer holds the last reference). So after a barrier (no rank still
talks to another) each process leaves with os._exit, which stops those threads without
running their teardown; everything the run writes is written and flushed before.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path


def main(argv: list[str]) -> None:
    import torch
    import transformers

    from mlab_tfs.assets import shakespeare_text
    from mlab_tfs.durable import write_text_atomic
    from mlab_tfs.training.hf import BlockDataset, causal_lm_collate, twin_gpt2

    torch.set_num_threads(1)
    out = Path(argv[0])
    ids = torch.tensor(list(shakespeare_text()[:40_000].encode("utf-8")))  # bytes: a 256-token vocabulary
    hf, ours = twin_gpt2(seed=0, vocab_size=256, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    model = hf if "--hf" in argv else ours
    world = int(os.environ.get("WORLD_SIZE", "1"))
    args = transformers.TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=8 // world, max_steps=10, logging_steps=1,
        learning_rate=3e-3, seed=0, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0, ddp_backend="gloo" if world > 1 else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = transformers.Trainer(model=model, args=args, train_dataset=BlockDataset(ids, 32, 200),
                                       data_collator=causal_lm_collate)
    trainer.train()
    if trainer.is_world_process_zero():
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        write_text_atomic(out / "losses.json", json.dumps(losses))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # no rank leaves while another still talks to it


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown (see the module docstring)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
    _exit_now(0)
