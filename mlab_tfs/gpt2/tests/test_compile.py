"""torch.compile of our GPT-2 equals the uncompiled model, forward and backward, on every
attention path, with left padding (labels -100 on padding only, so the prediction made at the
last padding position counts).

fullgraph=True: the rule for queries that see no key is part of the one graph, not a Python-side
guard the compiler may trace around. Compiling on a CPU takes seconds per graph, so these use a one-layer, 16-wide model and one
batch each.
"""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.gpt2 import fast, solution
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close, assert_grads_close

from .test_causality import _check_causal, _mask, _positions

pytestmark = pytest.mark.solution_only

TINIEST = dict(vocab_size=31, n_positions=16, n_embd=16, n_layer=1, n_head=2)


@pytest.fixture(scope="module")
def tiniest(tmp_path_factory):
    return tiny.gpt2_checkpoint(tmp_path_factory.mktemp("gpt2_tiniest"), "base", seed=5, **TINIEST)


def _batch():
    """The causality tests' left-padded batch (B = 3, T = 8), so that their check reuses the graph."""
    mask = _mask("left")
    ids = torch.randint(0, TINIEST["vocab_size"], mask.shape, generator=torch.Generator().manual_seed(6))
    ids = ids.masked_fill(mask == 0, 0)
    return ids, dict(attention_mask=mask, position_ids=_positions(mask)), ids.masked_fill(mask == 0, -100)


def _loss_and_grads(model, forward, ids, kwargs, labels):
    """The loss outside the compiled graph: the same graph then serves the causality check."""
    model.zero_grad(set_to_none=True)
    logits = forward(ids, **kwargs).logits
    loss = solution.lm_loss(logits, labels)
    loss.backward()
    return logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_compiled_equals_uncompiled_forward_and_backward(tiniest, attn):
    model = solution.GPT2LMHeadModel.from_pretrained(tiniest, attn_implementation=attn)
    ids, kwargs, labels = _batch()
    logits, loss, grads = _loss_and_grads(model, model, ids, kwargs, labels)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    c_logits, c_loss, c_grads = _loss_and_grads(model, compiled, ids, kwargs, labels)
    assert_close(c_logits, logits, name=f"compiled logits ({attn}), padding positions included", atol=1e-5)
    assert_close(c_loss, loss, name=f"compiled loss ({attn})", atol=1e-5)
    assert_grads_close(c_grads, grads, rtol=1e-4, what=f"compiled gradient ({attn})",
                       hint="a guard for fully masked rows that does not hold under compile?")
    # And causal: every later token changed, through the same compiled graph (same shapes).
    _check_causal(model, lambda m, i, k: compiled(i, attention_mask=k, position_ids=_positions(k)).logits, "left")


# The default path only: each compile costs seconds, the eager path's static cache is tested
# equal to sdpa's uncompiled (test_fast_paths.py), and sampling's tests compile the decode step.
@pytest.mark.parametrize("attn", ["sdpa"])
def test_compiled_static_cache_prefill_equals_uncompiled(tiniest, attn):
    model = solution.GPT2LMHeadModel.from_pretrained(tiniest, attn_implementation=attn)
    ids, kwargs, _ = _batch()
    mask, pos = kwargs["attention_mask"], kwargs["position_ids"]
    outs = []
    torch._dynamo.reset()
    for forward in (fast.static_forward, torch.compile(fast.static_forward, fullgraph=True)):
        cache = solution.KVCache.for_model(model, ids.shape[0], ids.shape[1] + 2)
        cache.reset(mask)
        with torch.no_grad():
            outs.append(forward(model, ids, pos, cache, torch.arange(ids.shape[1])))
    assert_close(outs[1], outs[0], name=f"compiled static-cache logits ({attn}), padding included", atol=1e-5)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, position_ids=pos).logits
    assert_close(outs[1], full, name=f"compiled static-cache logits ({attn}) vs a full pass", atol=1e-5)



# The step through the cache only, forward only: each further graph (the prefix, a backward)
# costs seconds on a CPU, and training does not go through the cache.
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_compiled_step_through_a_tuple_cache_equals_uncompiled(tiniest, attn):
    """3 columns after a cached 5-column prefix, with left padding and holes (new columns whose
    first keys are padding): compiled logits equal to uncompiled and to the full pass, padding
    positions included."""
    model = solution.GPT2LMHeadModel.from_pretrained(tiniest, attn_implementation=attn)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [0, 1, 0, 1, 1, 0, 1, 1], [1] * 8])
    ids = torch.randint(0, TINIEST["vocab_size"], mask.shape, generator=torch.Generator().manual_seed(7))
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    torch._dynamo.reset()
    with torch.no_grad():
        cache = model(ids[:, :5], attention_mask=mask[:, :5], position_ids=pos[:, :5], use_cache=True).past_key_values
        # A KVCache is updated in place: each run gets the prefix as a legacy tuple (wrapped in a new cache).
        legacy = cache.to_legacy_cache()
        outs = [forward(ids[:, 5:], attention_mask=mask, position_ids=pos[:, 5:], past_key_values=legacy).logits
                for forward in (model, torch.compile(model, fullgraph=True))]
        full = model(ids, attention_mask=mask, position_ids=pos).logits
    assert_close(outs[1], outs[0], name=f"compiled logits through the cache ({attn})", atol=1e-5)
    assert_close(outs[1], full[:, 5:], name=f"compiled logits through the cache ({attn}) vs a full pass", atol=1e-5)


def test_set_attn_implementation_after_compiling_is_read_by_the_compiled_model(tiniest):
    """The compiled model guards on config.attn_implementation: after a switch it is traced again
    (same logits), and a name no layer knows fails as uncompiled instead of silently running the
    path traced before. backend="eager": the guards are dynamo's; code generation adds seconds."""
    model = solution.GPT2LMHeadModel.from_pretrained(tiniest)
    ids, kwargs, _ = _batch()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager")
    with torch.no_grad():
        fused = compiled(ids, **kwargs).logits
        compiled.set_attn_implementation("eager")
        assert model.config.attn_implementation == "eager"
        assert_close(compiled(ids, **kwargs).logits, fused, name="compiled logits after switching to eager",
                     atol=1e-5)
        model.config.attn_implementation = "flash_attention_2"
        with pytest.raises(ValueError, match=r"config.attn_implementation must be one of \('eager', 'sdpa'\)"):
            compiled(ids, **kwargs)


def test_static_decode_step_is_one_graph(tiniest):
    """The decode step over a static KVCache traces to one graph, no break (what CUDA graphs
    need): the model's value-reading checks are skipped while compiling, and the cache's
    update is an in-place write. torch._dynamo.explain traces without generating code."""
    model = solution.GPT2LMHeadModel.from_pretrained(tiniest)
    ids, kwargs, _ = _batch()
    cache = solution.KVCache.for_model(model, ids.shape[0], ids.shape[1] + 2)
    cache.reset(kwargs["attention_mask"])
    torch._dynamo.reset()
    with torch.no_grad():
        fast.static_forward(model, ids, kwargs["position_ids"], cache, torch.arange(ids.shape[1]))
        step = (ids[:, -1:], kwargs["position_ids"][:, -1:] + 1, cache, torch.tensor([ids.shape[1]]))
        explained = torch._dynamo.explain(fast.static_forward)(model, *step)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, (
        f"the static decode step is {explained.graph_count} graphs with {explained.graph_break_count} breaks: "
        f"{[str(b.reason) for b in explained.break_reasons][:3]}"
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: CUDA graphs (mode='reduce-overhead')")
def test_static_decode_replayed_as_a_cuda_graph_equals_uncompiled(tiniest):
    """Four decode steps of the compiled, CUDA-graph step over one static KVCache: the same
    logits as the uncompiled steps and as a full pass (padding included)."""
    model = solution.GPT2LMHeadModel.from_pretrained(tiniest).cuda()
    ids, kwargs, _ = _batch()
    mask, pos = kwargs["attention_mask"].cuda(), kwargs["position_ids"].cuda()
    ids = ids.cuda()
    T0 = ids.shape[1] - 4
    torch._dynamo.reset()
    compiled = torch.compile(fast.static_forward, fullgraph=True, mode="reduce-overhead")
    runs = []
    for forward in (fast.static_forward, compiled):
        cache = solution.KVCache.for_model(model, ids.shape[0], ids.shape[1])
        for t in cache.buffers():
            torch._dynamo.mark_static_address(t)
        cache.reset(mask)
        with torch.no_grad():
            logits = [fast.static_forward(model, ids[:, :T0], pos[:, :T0], cache, torch.arange(T0, device="cuda"))]
            for t in range(T0, ids.shape[1]):
                torch.compiler.cudagraph_mark_step_begin()
                step = forward(model, ids[:, t : t + 1], pos[:, t : t + 1], cache, torch.tensor([t], device="cuda"))
                logits.append(step.clone())  # a CUDA graph's output is overwritten by its next replay
        runs.append(torch.cat(logits, dim=1))
    with torch.no_grad():
        full = model(ids, attention_mask=mask, position_ids=pos).logits
    assert_close(runs[1].cpu(), runs[0].cpu(), name="CUDA-graph decode logits vs uncompiled", atol=1e-5)
    assert_close(runs[1].cpu(), full.cpu(), name="CUDA-graph decode logits vs a full pass", atol=1e-5)
