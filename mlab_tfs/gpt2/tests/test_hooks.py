"""Hook points: run_with_cache's values against transformers' hidden_states and attentions and
against a computation by hand; run_with_hooks' edits against the same edit made by hand; hooks
removed afterwards (also after an error); names_filter's forms; bad input named.

The hook points are part of exercises 1, 5, 7, 8 and 9 (each layer creates and calls its own);
these tests check them for your code too, and with exercise 11 through a KV cache."""

from __future__ import annotations

import math

import pytest
import torch

from mlab_tfs.gpt2.mistakes import MISTAKES as M
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.mistakes import likely
from mlab_tfs.testing.tiny import hf_gpt2, left_padded_batch

from mlab_tfs.hooks import capture

from .helpers import config_of, hook_point, keep_mask, load_into, zero_blind_rows
from .test_model import pair

ATOL = 1e-5


def _model(gpt2, checkpoints, attn="sdpa", name="base"):
    model, hf = pair(gpt2, checkpoints[name])
    model.config.attn_implementation = attn
    return model, hf


def _batch(vocab_size, seed=0):
    ids, mask, pos = left_padded_batch(vocab_size, [6, 3, 5], seed)
    return ids, dict(attention_mask=mask, position_ids=pos), mask


def _get(cache, name, fix):
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    if name not in cache:
        pytest.fail(f"run_with_cache has no {name!r}: the hook point never ran. {fix}", pytrace=False)
    return cache[name]


def _named(name: str) -> str:
    """Where a hook point is called, for the diagnoses."""
    leaf = name.rsplit(".", 1)[-1]
    owner = ("LayerNorm" if ".ln" in name else "GPT2Attention" if ".attn." in name else
             "GPT2MLP" if ".mlp." in name else "GPT2Block" if name.startswith("blocks.") else "GPT2Model")
    return f"call self.{leaf}(...) in {owner}.forward (the docstring says where)"


# ------------------------------------------------------------------------- each layer's own points


def _seen(module, names, *args):
    """module(*args) with every named hook point recorded: (output, {name: value})."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    points = [hook_point(module, n) for n in names]
    with capture(points) as values:
        out = module(*args)
    for n, v in zip(names, values):
        where = type(module).__name__
        if v is None:
            pytest.fail(f"{where}.{n} never ran: call self.{n}(...) in {where}.forward (the docstring says where)",
                        pytrace=False)
    return out, dict(zip(names, values))


@pytest.mark.exercise("layer_norm")
def test_layer_norm_hook_points(gpt2):
    g = torch.Generator().manual_seed(0)
    ln = gpt2.LayerNorm(8, eps=1e-3)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(8, generator=g))
        ln.bias.copy_(torch.randn(8, generator=g))
    x = torch.randn(2, 3, 8, generator=g) * 2 + 1
    out, seen = _seen(ln, ["hook_scale", "hook_normalized"], x)
    scale = torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-3)
    normalized = (x - x.mean(-1, keepdim=True)) / scale
    assert_close(seen["hook_scale"], scale, name="LayerNorm.hook_scale", atol=1e-6,
                 hint="hook_scale is sqrt(var + eps), shape (..., 1)")
    assert_close(seen["hook_normalized"], normalized, name="LayerNorm.hook_normalized", atol=1e-6,
                 mistakes={M["hook_normalized_after_affine"]: out.detach()})


@pytest.mark.exercise("attention")
def test_attention_hook_points(gpt2, hf_base):
    cfg = config_of(hf_base)
    attn = load_into(gpt2.GPT2Attention(cfg, layer_idx=1), hf_base, "transformer.h.1.attn.")
    x = torch.randn(2, 5, cfg.n_embd, generator=torch.Generator().manual_seed(1))
    keep = keep_mask(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]), 5, 5)
    with torch.no_grad():
        out, seen = _seen(attn, ["hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"], x, keep)
        q, k, v = (t.reshape(2, 5, cfg.n_head, cfg.head_dim) for t in attn.c_attn(x).split(cfg.n_embd, dim=-1))
    for name, want in (("hook_q", q), ("hook_k", k), ("hook_v", v)):
        assert_close(seen[name], want, name=f"GPT2Attention.{name}", atol=1e-6,
                     hint=f"{name} is (B, T, nh, hs): after splitting heads, before moving the head dimension forward")
    pattern = seen["hook_pattern"]
    assert_close(seen["hook_z"], (pattern @ v.transpose(1, 2)).transpose(1, 2), name="GPT2Attention.hook_z",
                 atol=1e-6, hint="hook_z is pattern @ v, (B, T, nh, hs), before the heads are merged")
    assert_close(out, attn.c_proj(seen["hook_z"].reshape(2, 5, cfg.n_embd)), name="output = c_proj(hook_z merged)",
                 atol=1e-6)
    scores = seen["hook_attn_scores"]
    assert_close(scores.masked_fill(~keep, 0), (q.transpose(1, 2) @ k.permute(0, 2, 3, 1) * attn.scale).masked_fill(~keep, 0),
                 name="GPT2Attention.hook_attn_scores (allowed entries)", atol=1e-5,
                 hint="hook_attn_scores: the scaled scores, before the softmax (pass it to attention_pattern)")
    assert bool((scores[~keep.expand_as(scores)] == torch.finfo(scores.dtype).min).all()), (
        "hook_attn_scores: masked entries should be finfo.min (filled before the hook is called)")


@pytest.mark.exercise("attention")
def test_attention_hook_pattern_is_before_dropout(gpt2, hf_base):
    """In training mode with attn_pdrop = 0.5, hook_pattern's rows still sum to 1: dropout comes
    after the hook."""
    cfg = config_of(hf_base)
    cfg.attn_pdrop = 0.5
    attn = load_into(gpt2.GPT2Attention(cfg, layer_idx=0), hf_base, "transformer.h.0.attn.").train()
    x = torch.randn(2, 6, cfg.n_embd, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    with torch.no_grad():
        _, seen = _seen(attn, ["hook_pattern"], x, None)
    sums = seen["hook_pattern"].sum(-1)
    # Dropout zeroes entries and scales the rest by 2: rows that no longer sum to 1 can only come from it.
    assert bool(torch.isclose(sums, torch.ones_like(sums), atol=1e-5).all()), (
        f"GPT2Attention.hook_pattern rows should sum to 1 in training mode too, got sums from "
        f"{float(sums.min()):.4g} to {float(sums.max()):.4g}\n  {likely(M['hook_pattern_after_dropout'])}")


@pytest.mark.exercise("mlp")
def test_mlp_hook_points(gpt2, hf_base):
    cfg = config_of(hf_base)
    mlp = load_into(gpt2.GPT2MLP(cfg), hf_base, "transformer.h.0.mlp.")
    x = torch.randn(2, 4, cfg.n_embd, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out, seen = _seen(mlp, ["hook_pre", "hook_post"], x)
        pre = mlp.c_fc(x)
    assert_close(seen["hook_pre"], pre, name="GPT2MLP.hook_pre", atol=1e-6, hint="hook_pre is c_fc's output")
    assert_close(seen["hook_post"], hf_base.transformer.h[0].mlp.act(pre), name="GPT2MLP.hook_post", atol=1e-6,
                 mistakes={M["hook_post_before_activation"]: pre})
    assert_close(out, mlp.c_proj(seen["hook_post"]), name="output = c_proj(hook_post)", atol=1e-6)


@pytest.mark.exercise("block")
def test_block_hook_points(gpt2, hf_base):
    cfg = config_of(hf_base)
    block = load_into(gpt2.GPT2Block(cfg, layer_idx=0), hf_base, "transformer.h.0.")
    x = torch.randn(2, 4, cfg.n_embd, generator=torch.Generator().manual_seed(3))
    names = ["hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"]
    with torch.no_grad():
        out, seen = _seen(block, names, x)
        attn_out = block.attn(block.ln_1(x))
        mid = x + attn_out
    assert_close(seen["hook_resid_pre"], x, name="GPT2Block.hook_resid_pre", atol=0, hint="the block's input")
    assert_close(seen["hook_attn_out"], attn_out, name="GPT2Block.hook_attn_out", atol=1e-6,
                 mistakes={M["hook_attn_out_after_residual"]: mid},
                 hint="hook_attn_out is the attention branch's output, before it is added")
    assert_close(seen["hook_resid_mid"], mid, name="GPT2Block.hook_resid_mid", atol=1e-6)
    assert_close(seen["hook_mlp_out"], out - mid, name="GPT2Block.hook_mlp_out", atol=1e-5)
    assert_close(seen["hook_resid_post"], out, name="GPT2Block.hook_resid_post", atol=0,
                 hint="hook_resid_post is the block's output")


# ------------------------------------------------------------------------- the whole model


@pytest.mark.exercise("model")
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_run_with_cache_equals_transformers_hidden_states_and_attentions(gpt2, checkpoints, attn):
    """Left-padded: hook_resid_pre = hidden_states[i], ln_final's output = hidden_states[-1],
    hook_pattern = attentions[i] (transformers' eager pattern, rows of queries that see no key
    zeroed, as its default path computes), on both of our attention paths."""
    model, hf = _model(gpt2, checkpoints, attn, "deep_narrow_heads")
    ids, kwargs, mask = _batch(model.config.vocab_size)
    with torch.no_grad():
        out, cache = model.run_with_cache(ids, **kwargs)
        plain = model(ids, **kwargs).logits
        expected = hf(ids, output_hidden_states=True, **kwargs)
        eager = hf_gpt2(checkpoints["deep_narrow_heads"])(ids, output_attentions=True, **kwargs).attentions
    assert_close(out.logits, expected.logits, name=f"logits under run_with_cache ({attn})", atol=ATOL)
    assert_close(out.logits, plain, name="logits with and without hooks", atol=ATOL)
    keep = keep_mask(mask, ids.shape[1], ids.shape[1])
    n = model.config.n_layer
    for i in range(n):
        assert_close(_get(cache, f"blocks.{i}.hook_resid_pre", _named("hook_resid_pre")), expected.hidden_states[i],
                     name=f"blocks.{i}.hook_resid_pre vs hidden_states[{i}]", atol=ATOL,
                     hint="hook_resid_pre is the block's input (the embeddings' sum, after dropout, for block 0)")
        assert_close(_get(cache, f"blocks.{i}.attn.hook_pattern", _named("blocks.0.attn.hook_pattern")),
                     zero_blind_rows(eager[i], keep), name=f"blocks.{i}.attn.hook_pattern vs attentions[{i}]",
                     atol=1e-6, hint="hook_pattern is after the softmax (B, nh, T, S)")
    ln = model.transformer.ln_f
    final = _get(cache, "ln_final.hook_normalized", _named("ln_final.hook_normalized")) * ln.weight + ln.bias
    assert_close(final, expected.hidden_states[n], name="ln_final.hook_normalized * weight + bias vs hidden_states[-1]",
                 atol=ATOL, mistakes={M["hook_normalized_after_affine"]:
                                      (expected.hidden_states[n] * ln.weight + ln.bias).detach()})
    # Causal, for the hook values too: no query attends to a later key.
    for i in range(n):
        p = cache[f"blocks.{i}.attn.hook_pattern"]
        assert not p.triu(1).any(), f"blocks.{i}.attn.hook_pattern has weight above the diagonal (a later key)"


@pytest.mark.exercise("model")
def test_every_hook_point_by_hand(gpt2, checkpoints):
    """Each hook point's value, computed from the model's weights and the cached block input."""
    model, _ = _model(gpt2, checkpoints, "eager")
    ids, kwargs, mask = _batch(model.config.vocab_size, seed=1)
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, **kwargs)
    tr, cfg = model.transformer, model.config
    B, T = ids.shape
    nh, hs = cfg.n_head, cfg.head_dim
    with torch.no_grad():
        assert_close(_get(cache, "hook_embed", _named("hook_embed")), tr.wte.weight[ids], name="hook_embed", atol=0,
                     hint="hook_embed is wte(input_ids), before adding the positions")
        assert_close(_get(cache, "hook_pos_embed", _named("hook_pos_embed")), tr.wpe.weight[kwargs["position_ids"]],
                     name="hook_pos_embed", atol=0)
        for i, block in enumerate(tr.h):
            get = lambda leaf: _get(cache, f"blocks.{i}.{leaf}", _named(f"blocks.{i}.{leaf}"))  # noqa: E731
            x = get("hook_resid_pre")
            mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
            scale = torch.sqrt(var + block.ln_1.eps)
            normalized = (x - mean) / scale
            assert_close(get("ln1.hook_scale"), scale, name=f"blocks.{i}.ln1.hook_scale", atol=1e-6,
                         hint="hook_scale is sqrt(var + eps), (B, T, 1)")
            ln_out = normalized * block.ln_1.weight + block.ln_1.bias
            assert_close(get("ln1.hook_normalized"), normalized, name=f"blocks.{i}.ln1.hook_normalized", atol=1e-5,
                         mistakes={M["hook_normalized_after_affine"]: ln_out})
            q, k, v = block.attn.c_attn(ln_out).split(cfg.n_embd, dim=-1)
            q, k, v = (t.reshape(B, T, nh, hs) for t in (q, k, v))
            for leaf, want in (("hook_q", q), ("hook_k", k), ("hook_v", v)):
                assert_close(get(f"attn.{leaf}"), want, name=f"blocks.{i}.attn.{leaf}", atol=1e-5,
                             hint=f"{leaf} is (B, T, nh, hs): call it after splitting heads, before moving the head "
                                  f"dimension forward")
            keep = keep_mask(mask, T, T)  # (B, 1, T, T)
            scores = (q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2)) * block.attn.scale
            scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
            assert_close(get("attn.hook_attn_scores"), scores, name=f"blocks.{i}.attn.hook_attn_scores", atol=1e-5,
                         hint="hook_attn_scores: scaled and masked (finfo.min) scores, before the softmax; pass "
                              "self.hook_attn_scores to attention_pattern")
            pattern = torch.softmax(scores, -1).masked_fill(~keep.any(-1, keepdim=True), 0.0)
            assert_close(get("attn.hook_pattern"), pattern, name=f"blocks.{i}.attn.hook_pattern", atol=1e-6)
            z = (pattern @ v.transpose(1, 2)).transpose(1, 2)  # (B, T, nh, hs)
            assert_close(get("attn.hook_z"), z, name=f"blocks.{i}.attn.hook_z", atol=1e-5,
                         hint="hook_z is pattern @ v per head, (B, T, nh, hs), before the heads are merged")
            attn_out = block.attn.c_proj(z.reshape(B, T, cfg.n_embd))
            assert_close(get("hook_attn_out"), attn_out, name=f"blocks.{i}.hook_attn_out", atol=1e-5,
                         hint="hook_attn_out is the attention's output (after c_proj and its bias)")
            mid = x + attn_out
            assert_close(get("hook_resid_mid"), mid, name=f"blocks.{i}.hook_resid_mid", atol=1e-5)
            pre = block.mlp.c_fc(block.ln_2(mid))
            assert_close(get("mlp.hook_pre"), pre, name=f"blocks.{i}.mlp.hook_pre", atol=1e-5,
                         hint="mlp.hook_pre is c_fc's output, before the activation")
            post = 0.5 * pre * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (pre + 0.044715 * pre**3)))
            assert_close(get("mlp.hook_post"), post, name=f"blocks.{i}.mlp.hook_post", atol=1e-5,
                         mistakes={M["hook_post_before_activation"]: pre})
            mlp_out = block.mlp.c_proj(post)
            assert_close(get("hook_mlp_out"), mlp_out, name=f"blocks.{i}.hook_mlp_out", atol=1e-5)
            assert_close(get("hook_resid_post"), mid + mlp_out, name=f"blocks.{i}.hook_resid_post", atol=1e-5)
        if i + 1 < cfg.n_layer:
            assert_close(cache[f"blocks.{i + 1}.hook_resid_pre"], cache[f"blocks.{i}.hook_resid_post"],
                         name="the next block's hook_resid_pre", atol=0)


@pytest.mark.exercise("model")
def test_hook_pos_embed_has_a_row_per_sequence_without_position_ids(gpt2, checkpoints):
    """Without position_ids the positions 0..T-1 are shared by the batch; hook_pos_embed is
    still (B, T, C), as documented and as TransformerLens's, and an edit of one sequence's
    rows (in place) changes that sequence only: the others equal the model without the hook."""
    model, _ = _model(gpt2, checkpoints)
    ids = torch.randint(0, model.config.vocab_size, (3, 6), generator=torch.Generator().manual_seed(17))
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names_filter="hook_pos_embed")
        expected = model.transformer.wpe.weight[torch.arange(6)].expand(3, 6, -1)
        assert_close(cache["hook_pos_embed"], expected, name="hook_pos_embed without position_ids", atol=0,
                     hint="expand the (1, T, C) lookup to (B, T, C): .expand_as(the token embeddings)")

        def zero_first(x, hook):
            x[0] = 0.0

        out = model.run_with_hooks(ids, fwd_hooks=[("hook_pos_embed", zero_first)]).logits
        plain = model(ids).logits
    assert_close(out[1:], plain[1:], name="logits of the sequences whose positions were not edited", atol=0)
    assert (out[0] - plain[0]).abs().max() > 1e-3, "editing sequence 0's position embeddings changed nothing"


@pytest.mark.exercise("model")
def test_hook_names_are_transformerlens_ones(gpt2, checkpoints):
    model, _ = _model(gpt2, checkpoints)
    per_block = ["hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k",
                 "attn.hook_v", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
                 "hook_resid_mid", "ln2.hook_scale", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post",
                 "hook_mlp_out", "hook_resid_post"]
    expected = ["hook_embed", "hook_pos_embed",
                *(f"blocks.{i}.{n}" for i in range(model.config.n_layer) for n in per_block),
                "ln_final.hook_scale", "ln_final.hook_normalized"]
    assert list(model.hook_dict) == expected, (
        "hook points (in model order) differ from TransformerLens's: create them in the order the forward uses "
        f"them, with the names the docstrings give.\n  missing: {sorted(set(expected) - set(model.hook_dict))}"
        f"\n  unexpected: {sorted(set(model.hook_dict) - set(expected))}"
    )
    assert list(model.transformer.hook_dict) == expected, "GPT2Model alone has the same hook names"


@pytest.mark.exercise("model")
def test_hook_pattern_is_before_dropout_and_attn_out_is_what_enters_the_residual(gpt2, checkpoints):
    """In training mode, with dropout on: hook_pattern rows still sum to 1, and
    hook_resid_mid = hook_resid_pre + hook_attn_out exactly (dropout included in attn_out)."""
    model, _ = _model(gpt2, checkpoints, "eager")
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.5
    ids = torch.randint(0, model.config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    with torch.no_grad():
        _, cache = model.run_with_cache(ids)
    for i in range(model.config.n_layer):
        sums = cache[f"blocks.{i}.attn.hook_pattern"].sum(-1)
        assert_close(sums, torch.ones_like(sums), name=f"blocks.{i}.attn.hook_pattern row sums in training mode",
                     atol=1e-5, hint="hook_pattern gets the pattern after dropout: call it before attn_dropout")
        assert_close(cache[f"blocks.{i}.hook_resid_mid"],
                     cache[f"blocks.{i}.hook_resid_pre"] + cache[f"blocks.{i}.hook_attn_out"],
                     name=f"blocks.{i}.hook_resid_mid - hook_resid_pre", atol=1e-6,
                     hint="hook_attn_out is what is added to the residual: after resid_dropout")
        assert_close(cache[f"blocks.{i}.hook_resid_post"],
                     cache[f"blocks.{i}.hook_resid_mid"] + cache[f"blocks.{i}.hook_mlp_out"],
                     name=f"blocks.{i}.hook_resid_post - hook_resid_mid", atol=1e-6,
                     hint="hook_mlp_out is what is added to the residual: after the MLP's dropout")


# ------------------------------------------------------------------------- run_with_hooks


@pytest.mark.exercise("model")
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_zero_ablating_a_head_equals_zeroing_its_projection_rows(gpt2, checkpoints, attn):
    """hook_z of head 2 in block 1 set to 0 == transformers' model with the c_proj rows that
    read head 2 zeroed (Conv1D weight is (in, out))."""
    model, hf = _model(gpt2, checkpoints, attn)  # hf: a fresh copy, its default path
    ids, kwargs, _ = _batch(model.config.vocab_size, seed=4)
    hs, h = model.config.head_dim, 2

    def ablate(z, hook):
        z = z.clone()
        z[:, :, h] = 0.0
        return z

    with torch.no_grad():
        got = model.run_with_hooks(ids, fwd_hooks=[("blocks.1.attn.hook_z", ablate)], **kwargs).logits
        hf.transformer.h[1].attn.c_proj.weight[h * hs : (h + 1) * hs] = 0.0
        expected = hf(ids, **kwargs).logits
        untouched = model(ids, **kwargs).logits
    assert_close(got, expected, name=f"logits with head {h} of block 1 zero-ablated ({attn})", atol=ATOL,
                 hint="hook_z is (B, T, nh, hs): head h is z[:, :, h]; its replacement must be what gets merged")
    assert (got - untouched).abs().max() > 1e-3, "the ablation changed nothing: the hook's return value was not used"


@pytest.mark.exercise("model")
@pytest.mark.parametrize("point, qkv", [("hook_q", 0), ("hook_k", 1), ("hook_v", 2)])
def test_an_ablation_in_place_equals_zeroing_the_projection_in_transformers(gpt2, checkpoints, point, qkv):
    """TransformerLens's idiom, ``x[:, :, h] = 0`` and no return, on q, k or v of head h, with
    gradients: the logits and every gradient outside that projection equal transformers'
    model with head h's columns of c_attn zeroed. (q, k, v are split from one matmul: an
    edit in place of such a view fails in PyTorch, so the hook gets a copy.)"""
    from .helpers import hf_grads_as_ours

    model, hf = _model(gpt2, checkpoints, "eager")
    ids, kwargs, _ = _batch(model.config.vocab_size, seed=12)
    C, hs, h = model.config.n_embd, model.config.head_dim, 1

    def ablate(x, hook):
        x[:, :, h] = 0.0

    real = kwargs["attention_mask"].bool()
    # Scored where transformers' eager path is exact: the logits read from real positions
    # (at left padding, its uniform pattern over all keys sees the future).
    labels = ids.masked_fill(~real, -100)
    labels[:, 1:] = labels[:, 1:].masked_fill(~real[:, :-1], -100)
    out = model.run_with_hooks(ids, fwd_hooks=[(f"blocks.0.attn.{point}", ablate)], labels=labels, **kwargs)
    out.loss.backward()
    hf.set_attn_implementation("eager")
    with torch.no_grad():
        cols = slice(qkv * C + h * hs, qkv * C + (h + 1) * hs)
        hf.transformer.h[0].attn.c_attn.weight[:, cols] = 0.0
        hf.transformer.h[0].attn.c_attn.bias[cols] = 0.0
    expected = hf(ids, labels=labels, **kwargs)
    expected.loss.backward()
    assert_close(out.logits[real], expected.logits[real], name=f"logits with {point} of head {h} zeroed in place",
                 atol=ATOL)
    assert (out.loss - expected.loss).abs() < ATOL, f"loss {out.loss.item()} vs transformers' {expected.loss.item()}"
    # c_attn of block 0 differs by construction: its zeroed columns still get gradients in transformers.
    ours = {n: p.grad for n, p in model.named_parameters() if not n.startswith("transformer.h.0.attn.c_attn")}
    theirs = {n: g for n, g in hf_grads_as_ours(hf).items() if not n.startswith("transformer.h.0.attn.c_attn")}
    assert_grads_close(ours, theirs, rtol=1e-4, what=f"gradient with {point} of head {h} zeroed in place")


@pytest.mark.exercise("model")
def test_patching_the_residual_equals_running_the_rest_by_hand(gpt2, checkpoints):
    """Activation patching: block 1's input replaced by another prompt's; the logits equal
    transformers' block 1, ln_f and head run on that residual."""
    model, hf = _model(gpt2, checkpoints)
    g = torch.Generator().manual_seed(5)
    a, b = (torch.randint(0, model.config.vocab_size, (2, 7), generator=g) for _ in range(2))
    with torch.no_grad():
        _, cache_b = model.run_with_cache(b, names_filter="blocks.1.hook_resid_pre")
        patched = cache_b["blocks.1.hook_resid_pre"]
        got = model.run_with_hooks(a, fwd_hooks=[("blocks.1.hook_resid_pre", lambda x, hook: patched)]).logits
        x = hf.transformer.h[1](patched)
        expected = hf.lm_head(hf.transformer.ln_f(x[0] if isinstance(x, tuple) else x))
    assert_close(got, expected, name="logits with blocks.1.hook_resid_pre patched", atol=ATOL)


@pytest.mark.exercise("model")
def test_hook_on_the_pattern_runs_the_hand_written_path(gpt2, checkpoints):
    """With the default sdpa config, a hook that replaces the pattern takes effect: all-zero
    patterns leave each attention output at c_proj's bias. Editing the scores works too:
    scores shifted by a constant leave the pattern (and the logits) unchanged."""
    model, _ = _model(gpt2, checkpoints, "sdpa")
    ids, kwargs, _ = _batch(model.config.vocab_size, seed=6)
    zero = lambda p, hook: torch.zeros_like(p)  # noqa: E731
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, **kwargs)
        with model.hooks([(lambda n: n.endswith("hook_pattern"), zero)]):
            _, edited = model.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_attn_out"), **kwargs)
        shifted = model.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_attn_scores", lambda s, hook: s + 3.0)],
                                       **kwargs).logits
        plain = model(ids, **kwargs).logits
    for i, block in enumerate(model.transformer.h):
        assert_close(edited[f"blocks.{i}.hook_attn_out"], block.attn.c_proj.bias.expand_as(edited[f"blocks.{i}.hook_attn_out"]),
                     name=f"blocks.{i}.hook_attn_out with a zero pattern", atol=1e-6,
                     hint="a hook on hook_pattern must run the hand-written path (the fused kernel forms no pattern) "
                          "and use the hook's return value")
        assert not torch.equal(cache[f"blocks.{i}.hook_attn_out"], edited[f"blocks.{i}.hook_attn_out"])
    assert_close(shifted, plain, name="logits with every score shifted by 3 (softmax is shift-invariant)", atol=1e-5)


# ------------------------------------------------------------------------- the machinery


def _hooked(model):
    return [name for name, p in model.hook_dict.items() if p.has_hooks]


@pytest.mark.exercise("model")
def test_hooks_are_removed_after_the_call_and_after_an_error(gpt2, checkpoints):
    model, _ = _model(gpt2, checkpoints)
    ids = torch.randint(0, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        plain = model(ids).logits
        model.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_mlp_out", lambda x, hook: x * 0)])
        assert _hooked(model) == [], f"hooks left on after run_with_hooks: {_hooked(model)}"
        model.run_with_cache(ids)
        assert _hooked(model) == [], f"hooks left on after run_with_cache: {_hooked(model)}"

        def boom(x, hook):
            raise RuntimeError("inside a hook")

        with pytest.raises(RuntimeError, match="inside a hook"):
            model.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x + 1),
                                                 ("blocks.1.attn.hook_z", boom)])
        assert _hooked(model) == [], f"hooks left on after an error inside a hook: {_hooked(model)}"
        with pytest.raises(ValueError, match="input_ids"):
            model.run_with_cache(torch.full((1, 3), 10**6))  # an error in the model's own checks
        assert _hooked(model) == []
        assert_close(model(ids).logits, plain, name="logits after the hooks are gone", atol=0)


@pytest.mark.exercise("model")
def test_names_filter_forms_and_unknown_names(gpt2, checkpoints):
    model, _ = _model(gpt2, checkpoints)
    ids = torch.randint(0, model.config.vocab_size, (1, 4), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        _, one = model.run_with_cache(ids, names_filter="blocks.1.hook_resid_post")
        _, two = model.run_with_cache(ids, names_filter=["hook_embed", "blocks.0.attn.hook_pattern"])
        _, fn = model.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_scale"))
        _, everything = model.run_with_cache(ids)
    assert list(one) == ["blocks.1.hook_resid_post"]
    assert list(two) == ["hook_embed", "blocks.0.attn.hook_pattern"]
    assert list(fn) == ["blocks.0.ln1.hook_scale", "blocks.0.ln2.hook_scale", "blocks.1.ln1.hook_scale",
                        "blocks.1.ln2.hook_scale", "ln_final.hook_scale"]
    assert list(everything) == list(model.hook_dict)
    for name in one:  # with every hook on, the pattern hooks run the hand-written attention: float rounding apart
        assert_close(one[name], everything[name], name=name, atol=1e-6)
    with pytest.raises(ValueError, match="blocks.0.attn.hook_patern.*did you mean 'blocks.0.attn.hook_pattern'"):
        model.run_with_cache(ids, names_filter=["blocks.0.attn.hook_patern"])
    with pytest.raises(ValueError, match="blocks.9.hook_resid_pre"):
        model.run_with_hooks(ids, fwd_hooks=[("blocks.9.hook_resid_pre", lambda x, hook: None)])
    with pytest.raises(TypeError, match="names_filter"):
        model.run_with_cache(ids, names_filter=3)
    with pytest.raises(TypeError, match="fwd_hooks"):
        model.run_with_hooks(ids, fwd_hooks=[("hook_embed",)])
    with pytest.raises(TypeError, match="callable"):
        model.run_with_hooks(ids, fwd_hooks=[("hook_embed", "not a function")])


@pytest.mark.exercise("model")
def test_a_hook_returning_a_wrong_shape_is_refused(gpt2, checkpoints):
    model, _ = _model(gpt2, checkpoints)
    ids = torch.randint(0, model.config.vocab_size, (2, 4), generator=torch.Generator().manual_seed(9))
    with pytest.raises(ValueError, match=r"blocks.0.attn.hook_z.*returned shape \(2, 4, 32\)"):
        model.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_z", lambda z, hook: z.flatten(2))])
    with pytest.raises(TypeError, match="hook_embed.*returned float"):
        model.run_with_hooks(ids, fwd_hooks=[("hook_embed", lambda x, hook: 1.0)])
    assert _hooked(model) == []


@pytest.mark.solution_only
def test_hooks_see_the_hand_written_activations(checkpoints):
    """The default path runs F.layer_norm, which forms no normalized input: a hooked call runs
    the hand-written layer norms and GELUs, so the cache holds exactly what the hand-written
    path (use_fused_ops(model, False)) gives."""
    from mlab_tfs.gpt2 import fast, solution

    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"]).eval()
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        out, cache = model.run_with_cache(ids)
        with fast.fused_ops(model, False):
            ref_out, ref = model.run_with_cache(ids)
    assert list(cache) == list(ref)
    for name in ref:
        assert torch.equal(cache[name], ref[name]), f"{name}: the default path's hooked value is not the hand-written one"
    assert torch.equal(out.logits, ref_out.logits)


@pytest.mark.solution_only
def test_a_compiled_block_runs_hooks_added_after_compiling(checkpoints):
    """A block compiled without hooks, then called inside ``model.hooks``: the hooks run (the
    compiled code guards on the hook points' hooks and compiles again) and the output equals
    the uncompiled hooked block's; once the hooks are off, the first graph's output again.
    (PyTorch does not guard on forward hooks: kept there, the hooks were skipped silently.)
    One block rather than the model: the same code, compiled in a fraction of the time."""
    from mlab_tfs.gpt2 import solution

    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"]).eval()
    block = model.transformer.h[1]
    x = torch.randn(2, 5, model.config.n_embd, generator=torch.Generator().manual_seed(13))
    compiled = torch.compile(block, backend="eager")  # dynamo's guards, no code generation: fast
    hooks = [("blocks.1.attn.hook_z", lambda z, hook: z * 0), ("blocks.1.attn.hook_pattern", lambda p, hook: None)]
    with torch.no_grad():
        plain = compiled(x)
        with model.hooks(hooks):
            want = block(x)
            got = compiled(x)
        again = compiled(x)
    assert_close(got, want, name="compiled block under hooks", atol=ATOL)
    assert (got - plain).abs().max() > 1e-3, "the hooks were skipped by the compiled block"
    assert_close(again, block(x), name="compiled block after the hooks are off", atol=ATOL)


def _up_to(name, value, t):
    """The part of a cached activation that belongs to positions 0..t (queries and keys)."""
    if name.endswith(("hook_pattern", "hook_attn_scores")):
        return value[:, :, : t + 1, : t + 1]  # (B, nh, T, S)
    return value[:, : t + 1]  # (B, T, ...)


@pytest.mark.exercise("model")
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("padded", [False, True])
def test_no_hook_value_depends_on_a_later_token(gpt2, checkpoints, attn, padded):
    """Causality on every path to every hook point: replacing the tokens after t leaves every
    cached activation at positions <= t as it was (left padding included: a padding query
    sees no key and outputs 0, it does not look ahead)."""
    model, _ = _model(gpt2, checkpoints, attn)
    ids, kwargs, _ = _batch(model.config.vocab_size, seed=14)
    if not padded:
        kwargs = {}
    T = ids.shape[1]
    g = torch.Generator().manual_seed(15)
    with torch.no_grad():
        _, base = model.run_with_cache(ids, **kwargs)
        for t in range(T - 1):
            changed = ids.clone()
            changed[:, t + 1 :] = torch.randint(1, model.config.vocab_size, (ids.shape[0], T - t - 1), generator=g)
            _, cache = model.run_with_cache(changed, **kwargs)
            for name, value in base.items():
                assert_close(_up_to(name, cache[name], t), _up_to(name, value, t), atol=1e-6,
                             name=f"{name} at positions <= {t} after the later tokens changed ({attn})",
                             hint="a value at position t must not read a later token: mask every path")


@pytest.mark.exercise("model")
@pytest.mark.parametrize("edit", ["zeros", "mean over the batch"])
def test_an_edit_of_the_scores_cannot_unmask_a_key(gpt2, checkpoints, edit):
    """hook_attn_scores replaced by zeros (uniform attention) or by its mean over the batch
    (finfo.min rows sum to -inf): the pattern is still causal and blind to padding, uniform
    over the keys each query may see, and finite, with finite gradients. Masked entries are
    masked again after the hook; otherwise zeros give every query the later tokens too."""
    model, _ = _model(gpt2, checkpoints, "eager")
    ids, kwargs, mask = _batch(model.config.vocab_size, seed=18)
    fn = (lambda s, hook: torch.zeros_like(s)) if edit == "zeros" else (
        lambda s, hook: s.mean(0, keepdim=True).expand_as(s).clone())
    names = [f"blocks.{i}.attn.hook_attn_scores" for i in range(model.config.n_layer)]
    with model.hooks([(n, fn) for n in names]):
        out, cache = model.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"), labels=ids,
                                          **kwargs)
    out.loss.backward()
    T = ids.shape[1]
    keep = keep_mask(mask, T, T)  # (B, 1, T, T)
    for i in range(model.config.n_layer):
        pattern = cache[f"blocks.{i}.attn.hook_pattern"]
        if edit == "zeros":
            uniform = zero_blind_rows(keep / keep.sum(-1, keepdim=True).clamp(min=1), keep).expand_as(pattern)
            assert_close(pattern, uniform, name=f"blocks.{i}.attn.hook_pattern with the scores set to 0",
                         atol=1e-6, hint="mask the scores again after scores_hook: the hook may edit masked entries")
        assert bool((pattern.masked_select(~keep.expand_as(pattern)) == 0).all()), (
            f"blocks.{i}: the edited scores let a query attend to a later token or to padding")
    assert all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in model.parameters()), \
        "non-finite gradients after editing the scores"
