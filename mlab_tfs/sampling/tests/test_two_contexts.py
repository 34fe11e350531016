"""Exercise 9: one continuation from two contexts, both cached, in one batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlab_tfs.testing.compare import assert_close

from mlab_tfs.sampling.mistakes import MISTAKES as M

from .helpers import CountingModel, chi_square_p_value, padded_batch, prompts
from .test_generate import assert_tokens_equal

VOCAB = 97


@pytest.mark.exercise("two_contexts")
def test_combination_on_known_logits(sampling):
    a = torch.tensor([[2.0, 0.0, -1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, -1.0, 3.0]])
    assert_close(sampling.combine_two_contexts(a, b, "contrastive", 1.5), torch.tensor([[3.5, -1.5, -1.0, -2.0]]),
                 name="combine_two_contexts contrastive, gamma=1.5", atol=1e-6,
                 mistakes={M["contrastive_without_a"]: a - 1.5 * b, M["contrastive_sign_flipped"]: a + 1.5 * (b - a)},
                 hint="logits_a + gamma * (logits_a - logits_b)")
    expected = F.log_softmax(a, -1) + 0.5 * F.log_softmax(b, -1)
    assert_close(sampling.combine_two_contexts(a, b, "product", 0.5), expected,
                 name="combine_two_contexts product, gamma=0.5", atol=1e-6,
                 mistakes={M["product_of_raw_logits"]: a + 0.5 * b},
                 hint="log p_a + gamma * log p_b: log_softmax each context first")
    with pytest.raises(ValueError, match="mode"):
        sampling.combine_two_contexts(a, b, "average", 1.0)


@pytest.mark.exercise("two_contexts")
def test_product_of_experts_statistics(sampling):
    """p ∝ p_a · p_b: 20000 draws from the combined logits fit the normalised product."""
    a = torch.tensor([[1.0, 0.5, 0.0, -0.5, 2.0, -1.0]])
    b = torch.tensor([[0.0, 1.5, 1.0, -0.5, 0.5, 1.0]])
    pa, pb = a.softmax(-1), b.softmax(-1)
    product = (pa * pb / (pa * pb).sum())[0]
    combined = sampling.combine_two_contexts(a, b, "product", 1.0)
    n = 20_000
    draws = sampling.sample_token(combined.expand(n, -1), torch.Generator().manual_seed(0))
    p = chi_square_p_value(torch.bincount(draws, minlength=6), product)
    assert p > 1e-3, f"draws from the product do not fit p_a * p_b: chi-square p-value {p:.2g}"


@pytest.mark.exercise("two_contexts")
@pytest.mark.parametrize("mode", ["contrastive", "product"])
@pytest.mark.parametrize("eos", [None, [9, 6]], ids=["no-eos", "eos-list"])
def test_gamma_zero_is_plain_sampling_from_context_a(sampling, model, mode, eos):
    ids_a, mask_a = padded_batch(VOCAB, [5, 3], seed=30)
    ids_b, mask_b = padded_batch(VOCAB, [8, 6], seed=31)
    kw = dict(max_new_tokens=10, do_sample=True, temperature=0.9, top_k=20, pad_token_id=0, eos_token_id=eos)
    out = sampling.sample_two_contexts(model, ids_a, ids_b, mask_a, mask_b, mode=mode, gamma=0.0,
                                       generator=torch.Generator().manual_seed(4), **kw)
    plain = sampling.generate(model, ids_a, mask_a, generator=torch.Generator().manual_seed(4), **kw)
    assert_tokens_equal(out, plain, f"sample_two_contexts({mode}, gamma=0) vs generate on context a",
                        hint="gamma = 0 must leave context a's distribution unchanged; sample with the same "
                             "processors and one draw per row per step, as generate does")


def reference_two_context_greedy(model, ids_a, ids_b, gamma, steps):
    """Uncached, unbatched: at each step run each full context alone and combine."""
    out_a, out_b = list(ids_a), list(ids_b)
    for _ in range(steps):
        la = model(torch.tensor([out_a])).logits[0, -1].float()
        lb = model(torch.tensor([out_b])).logits[0, -1].float()
        nxt = int((la + gamma * (la - lb)).argmax())
        out_a.append(nxt)
        out_b.append(nxt)
    return out_a


@pytest.mark.exercise("two_contexts")
def test_contrastive_greedy_equals_uncached_reference_in_one_forward_per_step(sampling, model):
    pa, pb = prompts(VOCAB, [4, 7, 2], seed=32), prompts(VOCAB, [6, 3, 5], seed=33)
    ids_a, mask_a = sampling.left_pad(pa, 0)
    ids_b, mask_b = sampling.left_pad(pb, 0)
    counting = CountingModel(model)
    out = sampling.sample_two_contexts(counting, ids_a, ids_b, mask_a, mask_b, mode="contrastive", gamma=1.5,
                                       max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert counting.calls[0][0] == 6 and counting.calls[1:] == [(6, 1)] * 5, (
        f"both contexts go in one batch of 2B rows: one forward for the prompts, then one (2B, 1) forward per "
        f"step; got {counting.calls}"
    )
    for i in range(3):
        expected = reference_two_context_greedy(model, pa[i].tolist(), pb[i].tolist(), 1.5, 6)
        got = out[i][mask_a[i].bool().tolist() + [True] * 6].tolist()
        assert got == expected, f"row {i}: got {got}, expected {expected} (uncached reference)"
