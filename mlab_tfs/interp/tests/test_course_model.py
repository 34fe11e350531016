"""The course's own model has something to find: induction heads on repeated random tokens
(best head >= 0.3 with L = 40), a loss on the repeat at least 1 nat lower than on the first
half, and that drop gone when those heads are ablated. These test the shipped model with the
solution's tools, not an exercise.

The thresholds are the ones the model is trained to meet (mlab_tfs/training/course_model.toml:
a share of training rows repeat random tokens or their own text). The model trained without
them had none: best score 0.021 with L = 40, batch 8, seed 0, and no cheaper repeat."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.assets import course_model_path
from mlab_tfs.gpt2 import GPT2LMHeadModel
from mlab_tfs.interp import ablate_heads, induction_scores, per_token_loss, repeated_tokens

L = 40
THRESHOLD = 0.3


@pytest.fixture(scope="module")
def course():
    folder = course_model_path()
    return GPT2LMHeadModel.from_pretrained(folder).float().eval()


@pytest.fixture(scope="module")
def tokens(course):
    return repeated_tokens(course.config.vocab_size, L, batch=8, seed=0)


def halves(loss: torch.Tensor) -> tuple[float, float]:
    """Mean loss over the first half's predictions (entries 0 .. L - 2) and the repeat's that
    induction can make (entries L .. 2L - 2: tokens L + 1 .. 2L - 1, each after a token seen
    before); entry L - 1 predicts the repeat's first token, which nothing announces."""
    return float(loss[:, :L - 1].mean()), float(loss[:, L:].mean())


def test_the_course_model_has_induction_heads(course, tokens):
    scores = induction_scores(course, tokens)
    assert float(scores.max()) >= THRESHOLD, f"best induction score {float(scores.max()):.3f} < {THRESHOLD}"


def test_the_repeat_is_cheaper_until_the_induction_heads_are_ablated(course, tokens):
    scores = induction_scores(course, tokens)
    heads = [(int(i), int(j)) for i, j in (scores >= THRESHOLD).nonzero()]
    first, second = halves(per_token_loss(course, tokens))
    assert first - second >= 1.0, f"loss {first:.2f} on the first half, {second:.2f} on the repeat"
    logits = ablate_heads(course, tokens, heads).logits
    ablated = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    first_ablated, second_ablated = halves(ablated)
    assert first_ablated - second_ablated < (first - second) / 3, (
        f"with heads {heads} ablated the repeat still costs {first_ablated - second_ablated:.2f} nats less "
        f"(before: {first - second:.2f})")
