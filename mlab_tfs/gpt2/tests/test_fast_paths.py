"""The solution's fast path (attn_implementation="sdpa") equals the hand-written one."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.gpt2 import solution
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.tiny import GPT2_CONFIGS, left_padded_batch

from .test_kv_cache import _steps

pytestmark = pytest.mark.solution_only


def _both(folder):
    eager = solution.GPT2LMHeadModel.from_pretrained(folder)
    sdpa = solution.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="sdpa")
    assert sdpa.config.attn_implementation == "sdpa"
    return eager, sdpa


@pytest.mark.parametrize("name", list(GPT2_CONFIGS))
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
def test_sdpa_equals_eager_outputs_and_gradients(checkpoints, name, padded):
    eager, sdpa = _both(checkpoints[name])
    if padded:
        ids, mask, pos = left_padded_batch(eager.config.vocab_size, [6, 2, 5], seed=4)
        kwargs = dict(attention_mask=mask, position_ids=pos)
    else:
        ids = torch.randint(0, eager.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(4))
        mask, kwargs = torch.ones_like(ids), {}
    labels = ids.masked_fill(mask == 0, -100)
    a, b = eager(ids, labels=labels, **kwargs), sdpa(ids, labels=labels, **kwargs)
    # Padding rows included: both paths add the same finfo.min mask.
    assert_close(b.logits, a.logits, name="sdpa logits", atol=1e-5)
    assert_close(b.loss, a.loss, name="sdpa loss", atol=1e-6)
    a.loss.backward()
    b.loss.backward()
    assert_grads_close({n: p.grad for n, p in sdpa.named_parameters()},
                       {n: p.grad for n, p in eager.named_parameters()}, rtol=1e-5)


def test_sdpa_with_cache_and_padding(checkpoints):
    eager, sdpa = _both(checkpoints["base"])
    ids, mask, _ = left_padded_batch(97, [7, 3], seed=5)
    with torch.no_grad():
        a, past_a = _steps(eager, ids, mask, prefix=3)
        b, past_b = _steps(sdpa, ids, mask, prefix=3)
    assert_close(b, a, name="sdpa logits through the cache", atol=1e-5)
    for (ka, va), (kb, vb) in zip(past_a, past_b):
        assert_close(kb, ka, name="sdpa cached keys", atol=1e-6)
        assert_close(vb, va, name="sdpa cached values", atol=1e-6)


def test_sdpa_falls_back_for_attention_patterns(checkpoints):
    eager, sdpa = _both(checkpoints["base"])
    ids = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        a = eager(ids, output_attentions=True).attentions
        b = sdpa(ids, output_attentions=True).attentions
    for i, (x, y) in enumerate(zip(a, b)):
        assert_close(y, x, name=f"sdpa attentions[{i}]", atol=0)
