"""The loop's own numbers, each against a value computed here independently: the held-out
loss when the last batch is short, and the learning rate each step used (also across a
resume that extends the run, which recipe.json records)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel
from mlab_tfs.training.loop import evaluate, read_log, train

from .conftest import with_


def hand_mean_loss(model, blocks: torch.Tensor) -> float:
    """Mean over every predicted token of every block of -log p(next token), one block at a time."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for block in blocks:
            logits = model(block[None]).logits[0]  # (T, V)
            logp = torch.log_softmax(logits.double(), dim=-1)
            for t in range(len(block) - 1):
                total -= float(logp[t, block[t + 1]])
                count += 1
    return total / count


def test_held_out_loss_with_a_short_last_batch_is_the_mean_over_tokens():
    """7 blocks in batches of 3 (3 + 3 + 1): the token-weighted mean, whatever the batch size.
    1e-6: fp32 model, means over 8 tokens per block vs a float64 sum here."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    blocks = torch.randint(0, 50, (7, 9))
    expected = hand_mean_loss(model, blocks)
    for batch_size in (3, 1, 2, 7, 100):
        assert evaluate(model, blocks, batch_size) == pytest.approx(expected, abs=1e-6)
    # The mistake this guards against: the plain mean of the three batch means.
    batch_means = [hand_mean_loss(model, blocks[i : i + 3]) for i in range(0, 7, 3)]
    assert abs(sum(batch_means) / 3 - expected) > 1e-3
    assert model.training is False


def test_evaluate_refuses_what_it_cannot_measure():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match=r"at least one block of >= 2 tokens, got shape \(0, 9\)"):
        evaluate(model, torch.zeros(0, 9, dtype=torch.long), 4)
    with pytest.raises(TypeError, match="blocks must be a \\(M, T\\) long tensor"):
        evaluate(model, torch.zeros(2, 9), 4)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        evaluate(model, torch.zeros(2, 9, dtype=torch.long), 0)


def warmup_cosine(step: int, lr: float, min_lr: float, warmup: int, max_steps: int) -> float:
    """The schedule as GUIDE.md states it, written out again: linear warmup to lr over
    `warmup` steps, then a half cosine reaching min_lr at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / (max_steps - 1 - warmup)
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def test_the_logged_lr_is_the_one_each_step_used_also_across_a_longer_resume(tiny_config, tmp_path):
    """The optimizer's own learning rate, read inside every step (a step pre-hook), equals the
    lr in log.jsonl and the schedule computed by hand; resuming the finished 8-step run to 12
    steps applies the new length from step 9 on and recipe.json records the change."""
    cfg = with_(tiny_config, max_steps=8, warmup_steps=2, checkpoint_every=4, eval_every=100)
    used: list[list[float]] = []
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: used.append([g["lr"] for g in opt.param_groups]))
    try:
        train(cfg)
        train(with_(cfg, max_steps=12, eval_every=6), resume=True)
    finally:
        hook.remove()
    logged = [r["lr"] for r in read_log(tmp_path / "run" / "log.jsonl") if "loss" in r]
    assert [r["step"] for r in read_log(tmp_path / "run" / "log.jsonl") if "loss" in r] == list(range(1, 13))
    assert all(len(set(groups)) == 1 for groups in used)  # decayed and not-decayed groups alike
    assert logged == [groups[0] for groups in used]
    by_hand = [warmup_cosine(s, 3e-3, 3e-4, 2, 8) for s in range(8)] + \
              [warmup_cosine(s, 3e-3, 3e-4, 2, 12) for s in range(8, 12)]
    assert logged == pytest.approx(by_hand, rel=1e-12)
    assert logged[:3] == pytest.approx([1.5e-3, 3e-3, 3e-3], rel=1e-12)
    assert logged[7] == pytest.approx(3e-4, rel=1e-12)  # the first run ended at min_lr...
    assert logged[8] > logged[7]  # ...the extended schedule is back up the cosine at step 9

    recipe = json.loads((tmp_path / "run" / "model" / "recipe.json").read_text())
    assert recipe["resumed"] == [{"step": 8, "changed": {"max_steps": [8, 12], "eval_every": [100, 6]}}]
    assert recipe["config"]["max_steps"] == 12 and recipe["steps"] == 12
