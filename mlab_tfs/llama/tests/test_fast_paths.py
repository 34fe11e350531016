"""The solution's sdpa path reads grouped key/value heads without repeating them
(``enable_gqa``) whenever it has no mask: equal to the hand-written attention, which repeats
them (repeat_kv), in outputs and gradients (1e-5), and still causal."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.llama import solution
from mlab_tfs.testing.compare import assert_close, assert_grads_close

pytestmark = pytest.mark.solution_only

GROUPED = ["llama/gqa", "llama/llama3_rope_head_dim", "qwen3/qk_norm"]  # num_key_value_heads < heads


def _loss(model, ids):
    out = model(ids, labels=ids)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", GROUPED)
def test_grouped_sdpa_equals_eager_without_repeating(monkeypatch, checkpoints, name):
    eager = solution.LlamaForCausalLM.from_pretrained(checkpoints[name], attn_implementation="eager").eval()
    fast = solution.LlamaForCausalLM.from_pretrained(checkpoints[name]).eval()
    assert fast.config.attn_implementation == "sdpa"
    cfg = fast.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    ids = torch.randint(1, cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(5))
    a, grads_a = _loss(eager, ids)

    repeated = []
    real = solution.repeat_kv
    monkeypatch.setattr(solution, "repeat_kv", lambda x, n: repeated.append(n) or real(x, n))
    b, grads_b = _loss(fast, ids)
    assert repeated == [], "without a mask the sdpa path leaves the key/value heads unrepeated"
    assert_close(b, a, name=f"sdpa logits ({name})", atol=1e-5)
    assert_grads_close(grads_b, grads_a, rtol=1e-5)

    # With a padding mask the heads are repeated (the masked grouped call would run the math kernel).
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        masked = fast(ids, attention_mask=mask).logits
        expected = eager(ids, attention_mask=mask).logits
    assert repeated and set(repeated) == {cfg.num_attention_heads // cfg.num_key_value_heads}
    keep = mask.bool()
    assert_close(masked[keep], expected[keep], name=f"left-padded sdpa logits ({name})", atol=1e-5)


@pytest.mark.parametrize("name", GROUPED)
def test_grouped_sdpa_repeats_the_heads_where_the_kernel_does_not_read_them(monkeypatch, checkpoints, name):
    """On a GPU in float32 the maskless call does not pass grouped heads (enable_gqa off):
    the heads must then be repeated first (passed unrepeated, PyTorch's kernel refused the
    head counts). Simulated on the CPU by switching the kernel choice off."""
    eager = solution.LlamaForCausalLM.from_pretrained(checkpoints[name], attn_implementation="eager").eval()
    fast = solution.LlamaForCausalLM.from_pretrained(checkpoints[name]).eval()
    ids = torch.randint(1, fast.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(5))
    a, grads_a = _loss(eager, ids)
    monkeypatch.setattr(solution, "_kernel_reads_grouped_heads", lambda q: False)
    repeated = []
    real = solution.repeat_kv
    monkeypatch.setattr(solution, "repeat_kv", lambda x, n: repeated.append(n) or real(x, n))
    b, grads_b = _loss(fast, ids)
    assert repeated and all(n > 1 for n in repeated)
    assert_close(b, a, name=f"sdpa logits, heads repeated ({name})", atol=1e-5)
    assert_grads_close(grads_b, grads_a, rtol=1e-5)
    with torch.no_grad():  # one new query over a cache (T == 1), the other maskless call
        out = fast(ids[:, :8], use_cache=True)
        step = fast(ids[:, 8:], past_key_values=out.past_key_values).logits
        assert_close(step, eager(ids).logits[:, 8:], name=f"one-token step, heads repeated ({name})", atol=1e-5)


@pytest.mark.parametrize("name", GROUPED[:1])
def test_grouped_sdpa_stays_causal(checkpoints, name):
    fast = solution.LlamaForCausalLM.from_pretrained(checkpoints[name]).eval()
    ids = torch.randint(1, fast.config.vocab_size, (1, 8), generator=torch.Generator().manual_seed(6))
    changed = ids.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % fast.config.vocab_size
    with torch.no_grad():
        a, b = fast(ids).logits, fast(changed).logits
    assert torch.equal(a[:, :5], b[:, :5]), "no output before position 5 depends on tokens 5 .. 7"
    assert not torch.allclose(a[:, 5:], b[:, 5:])
