"""Hook points: run_with_cache against transformers' hidden states and attentions, every
other hook point against a hand computation from the cached values, edits through
run_with_hooks against the same edit done by hand, and the hooks' bookkeeping (removed
after the call and after an error, unknown names, wrong shapes)."""

from __future__ import annotations

import math

import pytest
import torch

from mlab_tfs.bert.mistakes import MISTAKES as M
from mlab_tfs.hooks import HookPoint, capture
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.mistakes import likely

from .helpers import additive, assert_bert_grads_close, batch, config_of, hf_grads_as_ours, load_into

ATOL = 1e-5  # fp32


def _model(bert, hf, name="base", attn="eager", cls="BertModel", head="model"):
    """Ours (eval, loaded with the solution's name map) and transformers' model of one checkpoint."""
    ref = hf(name, head)
    cfg = config_of(ref)
    cfg.attn_implementation = attn
    target = {"model": "model", "mlm": "mlm", "classifier": "classifier"}[head]
    return load_into(getattr(bert, cls)(cfg), ref, target), ref


def _names(n_layers: int, ln: bool) -> list[str]:
    """TransformerLens's HookedEncoder names, in the order the forward reaches them."""
    lns = lambda p: [f"{p}.hook_scale", f"{p}.hook_normalized"] if ln else []  # noqa: E731
    names = ["embed.hook_embed", "embed.hook_pos_embed", "embed.hook_token_type_embed", *lns("embed.ln"),
             "hook_full_embed"]
    for i in range(n_layers):
        b = f"blocks.{i}."
        names += [b + "hook_resid_pre", *(b + f"attn.hook_{n}" for n in ("q", "k", "v", "attn_scores", "pattern",
                                                                          "z")),
                  b + "hook_attn_out", b + "hook_resid_mid", *lns(b + "ln1"), b + "mlp.hook_pre",
                  b + "mlp.hook_post", b + "hook_mlp_out", b + "hook_resid_post", *lns(b + "ln2"),
                  b + "hook_normalized_resid_post"]
    return names


def _has_ln_hooks(model) -> bool:
    """Whether the GPT-2 LayerNorm (BERT's) carries hook points; they are GPT-2's exercise."""
    return "embed.ln.hook_normalized" in model.hook_dict


WHERE = {  # hook name (its last part) -> where it is created, for the diagnosis
    "hook_embed": "BertEmbeddings", "hook_pos_embed": "BertEmbeddings", "hook_token_type_embed": "BertEmbeddings",
    "hook_full_embed": "BertModel", "hook_q": "BertSelfAttention", "hook_k": "BertSelfAttention",
    "hook_v": "BertSelfAttention", "hook_attn_scores": "BertSelfAttention", "hook_pattern": "BertSelfAttention",
    "hook_z": "BertSelfAttention", "hook_attn_out": "BertSelfOutput", "hook_resid_mid": "BertSelfOutput",
    "hook_pre": "BertIntermediate", "hook_post": "BertIntermediate", "hook_mlp_out": "BertOutput",
    "hook_resid_post": "BertOutput", "hook_resid_pre": "BertLayer", "hook_normalized_resid_post": "BertLayer",
    "hook_scale": "LayerNorm (GPT-2)", "hook_normalized": "LayerNorm (GPT-2)",
}


@pytest.fixture(scope="module")
def cached(bert, hf):
    """(model, ref, inputs, cache, output) for the padded batch, eager path, every hook point cached."""
    model, ref = _model(bert, hf, "deep_narrow_heads")
    ids, mask, types, real = batch(model.config, seed=3)
    with torch.no_grad():
        out, cache = model.run_with_cache(ids, attention_mask=mask, token_type_ids=types)
    return model, ref, (ids, mask, types, real), _NamedCache(cache), out


class _NamedCache(dict):
    """run_with_cache's dict, where a missing name fails the test naming the hook point to call."""

    def __missing__(self, name):
        leaf = name.rsplit(".", 1)[-1]
        pytest.fail(f"run_with_cache has no {name!r}: the hook point never ran. Call self.{leaf}(...) in "
                    f"{WHERE.get(leaf, 'its layer')}.forward (the docstring says where)", pytrace=False)


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("cls,head", [  # each class with its own exercise
    pytest.param("BertModel", "model", marks=pytest.mark.exercise("model")),
    pytest.param("BertForMaskedLM", "mlm", marks=pytest.mark.exercise("mlm_head")),
    pytest.param("BertForSequenceClassification", "classifier", marks=pytest.mark.exercise("classifier")),
])
def test_hook_points_have_transformer_lens_names_in_order(bert, hf, cls, head):
    model, _ = _model(bert, hf, "base", cls=cls, head=head)
    names = [n for n in model.hook_dict if not n.startswith("mlm_head.")]  # the MLM head's are extra
    expected = _names(model.config.num_hidden_layers, _has_ln_hooks(model))
    missing = [n for n in expected if n not in names]
    assert not missing, (f"{cls} lacks the hook points {missing[:4]}{'...' if len(missing) > 4 else ''}: create "
                         f"each as self.<name> = HookPoint() in {WHERE[missing[0].rsplit('.', 1)[-1]]}.__init__")
    assert names == expected, f"{cls}'s hook points, in the order of the forward: expected {expected}, got {names}"


@pytest.mark.exercise("model")
def test_every_hook_point_is_reached(cached):
    model, *_, cache, _ = cached
    unreached = [n for n in model.hook_dict if n not in cache]
    assert not unreached, (f"the forward never passed a value through {unreached}: call e.g. "
                           f"x = self.{unreached[0].rsplit('.', 1)[-1]}(x) in "
                           f"{WHERE[unreached[0].rsplit('.', 1)[-1]]}.forward")


# ----------------------------------------------------------------------------- against transformers


@pytest.mark.exercise("model")
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_run_with_cache_equals_transformers_hidden_states_and_attentions(bert, hf, checkpoint, attn):
    """hidden_states[0] = hook_full_embed, hidden_states[i + 1] = blocks.{i}.hook_normalized_resid_post
    (post-LN: the block's output is the normalized residual), attentions[i] = blocks.{i}.attn.hook_pattern;
    padded batch, every position. Ours on each path against transformers' on the same path
    (its sdpa path gives no attentions: those come from its eager path)."""
    model, ref = _model(bert, hf, "deep_narrow_heads", attn=attn)
    ids, mask, types, real = batch(model.config, seed=4)
    kw = dict(attention_mask=mask, token_type_ids=types)
    with torch.no_grad():
        out, cache = model.run_with_cache(ids, **kw)  # a hook on hook_pattern: the hand-written path
        # Without pattern or score hooks the configured path runs (the fused kernel for "sdpa").
        _, states = model.run_with_cache(ids, names_filter=lambda n: "resid" in n or n == "hook_full_embed", **kw)
        expected = ref(ids, **kw, output_hidden_states=True, output_attentions=True)
        if attn == "sdpa":
            fused = tiny.hf_bert(checkpoint("deep_narrow_heads", "model"), "model", "sdpa")
            expected.hidden_states = fused(ids, **kw, output_hidden_states=True).hidden_states
    n = model.config.num_hidden_layers
    assert_close(states["hook_full_embed"], expected.hidden_states[0], name="hook_full_embed vs hidden_states[0]",
                 atol=ATOL, hint="hook_full_embed is BertModel's: the embeddings' output, as block 0 receives it")
    for i in range(n):
        assert_close(states[f"blocks.{i}.hook_normalized_resid_post"], expected.hidden_states[i + 1],
                     name=f"blocks.{i}.hook_normalized_resid_post vs hidden_states[{i + 1}]", atol=ATOL,
                     hint="hook_normalized_resid_post is the block's output, after its last layer norm")
        assert_close(cache[f"blocks.{i}.attn.hook_pattern"], expected.attentions[i],
                     name=f"blocks.{i}.attn.hook_pattern vs attentions[{i}]", atol=ATOL,
                     hint="hook_pattern is (B, nh, T, S), after the softmax, before dropout")
    assert_close(out.last_hidden_state, expected.last_hidden_state, name="last_hidden_state under run_with_cache",
                 atol=ATOL)


@pytest.mark.exercise("model")
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_output_attentions_and_hidden_states_are_the_hook_values(bert, hf, attn):
    model, _ = _model(bert, hf, "base", attn=attn)
    ids, mask, types, _ = batch(model.config, seed=5)
    kw = dict(attention_mask=mask, token_type_ids=types)
    with torch.no_grad():
        out = model(ids, output_hidden_states=True, output_attentions=True, **kw)
        _, cache = model.run_with_cache(ids, **kw)
    n = model.config.num_hidden_layers
    states = ["hook_full_embed"] + [f"blocks.{i}.hook_normalized_resid_post" for i in range(n)]
    for i, name in enumerate(states):
        assert torch.equal(out.hidden_states[i], cache[name]), f"hidden_states[{i}] should be exactly {name}"
    for i in range(n):
        assert torch.equal(out.attentions[i], cache[f"blocks.{i}.attn.hook_pattern"]), (
            f"attentions[{i}] should be exactly blocks.{i}.attn.hook_pattern")
        assert torch.equal(cache[f"blocks.{i}.hook_resid_pre"], cache[states[i]]), (
            f"blocks.{i}.hook_resid_pre should be exactly the previous block's output ({states[i]})")


@pytest.mark.solution_only
def test_the_fused_kernel_runs_unless_a_hook_needs_the_pattern(bert, hf, monkeypatch):
    """sdpa model: residual hooks keep the fused path; a hook on hook_pattern or
    hook_attn_scores (or output_attentions) runs the hand-written one for that call."""
    from mlab_tfs.bert import solution

    model, _ = _model(bert, hf, "base", attn="sdpa")
    calls, real = [], solution.sdpa

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(solution, "sdpa", counting)
    ids = torch.randint(0, 99, (2, 6), generator=torch.Generator().manual_seed(0))
    n = model.config.num_hidden_layers
    with torch.no_grad():
        model.run_with_cache(ids, names_filter=lambda name: "resid" in name)
        assert len(calls) == n, f"residual hooks only: the fused kernel should run in each of {n} layers"
        for kwargs in (dict(names_filter="blocks.0.attn.hook_pattern"), dict(names_filter="blocks.1.attn.hook_attn_scores")):
            calls.clear()
            model.run_with_cache(ids, **kwargs)
            assert len(calls) == n - 1, f"{kwargs}: only the hooked layer should leave the fused kernel"
        calls.clear()
        model(ids, output_attentions=True)
        assert not calls, "output_attentions=True should run the hand-written path in every layer"


# ----------------------------------------------------------------------------- by hand


def _assert_heads_after_positions(actual, expected, name: str) -> None:
    """A (B, T, nh, hs) hook point holding (B, nh, T, hs) is the heads moved forward before the hook."""
    __tracebackhide__ = True  # failures point at the test's line
    swapped = (expected.shape[0], expected.shape[2], expected.shape[1], expected.shape[3])
    assert actual.shape == expected.shape or tuple(actual.shape) != swapped, (
        f"{name} is {tuple(actual.shape)}, expected (B, T, nh, hs) = {tuple(expected.shape)}\n"
        f"  {likely(M['hook_qkv_heads_first'])}")


def _ln_parts(x, eps):
    mean = x.mean(-1, keepdim=True)
    scale = torch.sqrt((x - mean).pow(2).mean(-1, keepdim=True) + eps)
    return scale, (x - mean) / scale


@pytest.mark.exercise("model")
def test_embedding_hooks_by_hand(cached):
    model, _, (ids, mask, types, _), cache, _ = cached
    emb, (B, T) = model.embeddings, ids.shape
    C = model.config.hidden_size
    with torch.no_grad():
        expected = {
            "embed.hook_embed": emb.word_embeddings.weight[ids],
            "embed.hook_token_type_embed": emb.token_type_embeddings.weight[types],
            "embed.hook_pos_embed": emb.position_embeddings.weight[torch.arange(T)].expand(B, T, C),
        }
    for name, value in expected.items():
        assert_close(cache[name], value, name=name, atol=0,
                     hint="each lookup, (B, T, C) (broadcast rows expanded to the batch), before the sum")
    x = sum(expected.values())
    if _has_ln_hooks(model):
        scale, normalized = _ln_parts(x, model.config.layer_norm_eps)
        assert_close(cache["embed.ln.hook_scale"], scale, name="embed.ln.hook_scale", atol=ATOL)
        assert_close(cache["embed.ln.hook_normalized"], normalized, name="embed.ln.hook_normalized", atol=ATOL,
                     hint="(x - mean) / scale, before the weight and bias")


@pytest.mark.exercise("model")
@pytest.mark.parametrize("layer", [0, 2])
def test_attention_hooks_by_hand(cached, layer):
    """hook_q/k/v = the projections of resid_pre split into heads (B, T, nh, hs); scores =
    q.k / sqrt(hs) with masked keys at finfo.min; pattern = softmax; z = pattern @ v;
    attn_out = dense(z merged); resid_mid = resid_pre + attn_out."""
    model, _, (ids, mask, types, _), cache, _ = cached
    sa, so = model.encoder.layer[layer].attention.self, model.encoder.layer[layer].attention.output
    b = f"blocks.{layer}."
    B, T = ids.shape
    nh, hs = model.config.num_attention_heads, model.config.head_dim
    x = cache[b + "hook_resid_pre"]
    with torch.no_grad():
        for name, lin in (("q", sa.query), ("k", sa.key), ("v", sa.value)):
            expected = (x @ lin.weight.T + lin.bias).reshape(B, T, nh, hs)
            _assert_heads_after_positions(cache[b + f"attn.hook_{name}"], expected, b + f"attn.hook_{name}")
            assert_close(cache[b + f"attn.hook_{name}"], expected, name=b + f"attn.hook_{name}", atol=ATOL,
                         mistakes={M["hook_qkv_heads_first"]: expected.transpose(1, 2)},
                         hint="the projection split into heads, (B, T, nh, hs) as TransformerLens: hook it "
                              "before moving the heads forward")
        q, k, v = (cache[b + f"attn.hook_{n}"] for n in "qkv")
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hs)
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
        assert_close(cache[b + "attn.hook_attn_scores"], scores, name=b + "attn.hook_attn_scores", atol=ATOL,
                     hint="q.k * scale, masked keys filled with finfo.min, before the softmax")
        pattern = torch.softmax(scores, -1)
        assert_close(cache[b + "attn.hook_pattern"], pattern, name=b + "attn.hook_pattern", atol=1e-6)
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
        assert_close(cache[b + "attn.hook_z"], z, name=b + "attn.hook_z", atol=ATOL,
                     hint="pattern @ v as (B, T, nh, hs), before the heads merge")
        attn_out = z.reshape(B, T, nh * hs) @ so.dense.weight.T + so.dense.bias
        assert_close(cache[b + "hook_attn_out"], attn_out, name=b + "hook_attn_out", atol=ATOL,
                     hint="after the output dense and its bias: what is added to the residual")
        assert_close(cache[b + "hook_resid_mid"], x + attn_out, name=b + "hook_resid_mid", atol=ATOL,
                     hint="resid_pre + attn_out, before the layer norm (ln1)")


@pytest.mark.exercise("model")
@pytest.mark.parametrize("layer", [0, 1])
def test_mlp_and_layer_norm_hooks_by_hand(cached, layer):
    """Post-LN: the MLP reads ln1(resid_mid); resid_post = ln1(resid_mid) + mlp_out; the
    block's output is ln2(resid_post)."""
    model, _, _, cache, _ = cached
    blk, b, eps = model.encoder.layer[layer], f"blocks.{layer}.", model.config.layer_norm_eps
    ln1, ln2 = blk.attention.output.LayerNorm, blk.output.LayerNorm
    with torch.no_grad():
        scale1, normalized1 = _ln_parts(cache[b + "hook_resid_mid"], eps)
        mlp_in = normalized1 * ln1.weight + ln1.bias
        pre = mlp_in @ blk.intermediate.dense.weight.T + blk.intermediate.dense.bias
        assert_close(cache[b + "mlp.hook_pre"], pre, name=b + "mlp.hook_pre", atol=ATOL,
                     hint="dense(ln1(resid_mid)), before the activation")
        post = 0.5 * pre * (1 + torch.erf(pre / math.sqrt(2)))
        assert_close(cache[b + "mlp.hook_post"], post, name=b + "mlp.hook_post", atol=ATOL,
                     hint="the erf GELU of hook_pre")
        mlp_out = post @ blk.output.dense.weight.T + blk.output.dense.bias
        assert_close(cache[b + "hook_mlp_out"], mlp_out, name=b + "hook_mlp_out", atol=ATOL)
        assert_close(cache[b + "hook_resid_post"], mlp_in + mlp_out, name=b + "hook_resid_post", atol=ATOL,
                     hint="post-LN: the MLP's residual adds the *normalized* resid_mid, ln1(resid_mid)")
        scale2, normalized2 = _ln_parts(cache[b + "hook_resid_post"], eps)
        assert_close(cache[b + "hook_normalized_resid_post"], normalized2 * ln2.weight + ln2.bias,
                     name=b + "hook_normalized_resid_post", atol=ATOL)
        if _has_ln_hooks(model):
            for name, value in (("ln1.hook_scale", scale1), ("ln1.hook_normalized", normalized1),
                                ("ln2.hook_scale", scale2), ("ln2.hook_normalized", normalized2)):
                assert_close(cache[b + name], value, name=b + name, atol=ATOL)


# ----------------------------------------------------------------------------- each layer alone
# The hook points of exercises 1, 3, 4 and 5, on the layer by itself: they need no later exercise.


def _seen(module, *args):
    """module(*args) with every hook point inside it recorded: (output, {path: value}); a point
    the forward never reached is a failure naming where to call it."""
    __tracebackhide__ = True  # failures point at the test's line
    points = {n: m for n, m in module.named_modules() if isinstance(m, HookPoint)}
    with torch.no_grad(), capture(list(points.values())) as values:
        out = module(*args)
    seen = dict(zip(points, values))
    for path, value in seen.items():
        leaf = path.rsplit(".", 1)[-1]
        if value is None:
            pytest.fail(f"{type(module).__name__}.{path} never ran: call self.{leaf}(...) in "
                        f"{WHERE.get(leaf, type(module).__name__)}.forward (the docstring says where)", pytrace=False)
    return out, seen


def _ln_alone(seen, prefix, x, eps):
    """The GPT-2 LayerNorm's own hook points, where that exercise has them."""
    __tracebackhide__ = True  # failures point at the test's line
    if prefix + "hook_normalized" in seen:
        scale, normalized = _ln_parts(x, eps)
        assert_close(seen[prefix + "hook_scale"], scale, name=prefix + "hook_scale", atol=ATOL)
        assert_close(seen[prefix + "hook_normalized"], normalized, name=prefix + "hook_normalized", atol=ATOL,
                     hint="(x - mean) / scale, before the weight and bias")


@pytest.mark.exercise("embeddings")
def test_embedding_hook_points_of_the_layer(bert, hf):
    ref = hf("base")
    cfg = config_of(ref)
    emb = load_into(bert.BertEmbeddings(cfg), ref, "model", "embeddings.")
    g = torch.Generator().manual_seed(3)
    B, T, C = 2, 5, cfg.hidden_size
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    types = torch.randint(0, cfg.type_vocab_size, (B, T), generator=g)
    pos = torch.arange(T)[None]  # (1, T): broadcast rows, as BertModel passes them
    out, seen = _seen(emb, ids, types, pos)
    expected = {
        "hook_embed": emb.word_embeddings.weight[ids],
        "hook_token_type_embed": emb.token_type_embeddings.weight[types],
        "hook_pos_embed": emb.position_embeddings.weight[torch.arange(T)].expand(B, T, C),
    }
    for name, value in expected.items():
        assert_close(seen[name], value.detach(), name=f"BertEmbeddings.{name}", atol=0,
                     hint="each lookup, (B, T, C) (broadcast rows expanded to the batch), before the sum")
    _ln_alone(seen, "LayerNorm.", sum(expected.values()).detach(), cfg.layer_norm_eps)


@pytest.mark.exercise("attention")
def test_attention_hook_points_of_the_layer(bert, hf):
    """hook_q/k/v = the projections split into heads (B, T, nh, hs); scores = q.k / sqrt(hs),
    masked keys at finfo.min; pattern = softmax; z = pattern @ v; attn_out = dense(z merged);
    resid_mid = x + attn_out; then the layer norm's own points."""
    ref = hf("deep_narrow_heads")
    cfg = config_of(ref)
    att = load_into(bert.BertAttention(cfg), ref, "model", "encoder.layer.1.attention.")
    sa, so = att.self, att.output
    B, T, nh, hs = 2, 5, cfg.num_attention_heads, cfg.head_dim
    x = torch.randn(B, T, cfg.hidden_size, generator=torch.Generator().manual_seed(4))
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()[:, None, None, :]
    _, seen = _seen(att, x, keep)
    with torch.no_grad():
        for name, lin in (("q", sa.query), ("k", sa.key), ("v", sa.value)):
            expected = lin(x).reshape(B, T, nh, hs)
            got = seen[f"self.hook_{name}"]
            _assert_heads_after_positions(got, expected, f"BertSelfAttention.hook_{name}")
            assert_close(got, expected, name=f"BertSelfAttention.hook_{name}", atol=ATOL,
                         mistakes={M["hook_qkv_heads_first"]: expected.transpose(1, 2)},
                         hint="the projection split into heads, (B, T, nh, hs) as TransformerLens: hook it "
                              "before moving the heads forward")
        q, k, v = (sa.query(x), sa.key(x), sa.value(x))
        q, k, v = (t.reshape(B, T, nh, hs) for t in (q, k, v))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hs)
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        assert_close(seen["self.hook_attn_scores"], scores, name="BertSelfAttention.hook_attn_scores", atol=ATOL,
                     hint="q.k * scale, masked keys filled with finfo.min, before the softmax: pass "
                          "self.hook_attn_scores to attention_pattern as its scores_hook")
        pattern = torch.softmax(scores, -1)
        assert_close(seen["self.hook_pattern"], pattern, name="BertSelfAttention.hook_pattern", atol=1e-6)
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
        assert_close(seen["self.hook_z"], z, name="BertSelfAttention.hook_z", atol=ATOL,
                     hint="pattern @ v as (B, T, nh, hs), before the heads merge")
        attn_out = so.dense(z.reshape(B, T, nh * hs))
        assert_close(seen["output.hook_attn_out"], attn_out, name="BertSelfOutput.hook_attn_out", atol=ATOL,
                     mistakes={M["hook_attn_out_after_residual"]: x + attn_out},
                     hint="after the output dense and its bias: what is added to the residual")
        assert_close(seen["output.hook_resid_mid"], x + attn_out, name="BertSelfOutput.hook_resid_mid", atol=ATOL,
                     hint="x + attn_out, before the layer norm")
    _ln_alone(seen, "output.LayerNorm.", x + attn_out, cfg.layer_norm_eps)


@pytest.mark.exercise("mlp")
def test_mlp_hook_points_of_the_layers(bert, hf):
    """BertIntermediate: hook_pre = dense(x), hook_post = gelu(hook_pre). BertOutput(h, x):
    hook_mlp_out = dense(h), hook_resid_post = x + mlp_out, before its layer norm."""
    ref = hf("deep_narrow_heads")
    cfg = config_of(ref)
    inter = load_into(bert.BertIntermediate(cfg), ref, "model", "encoder.layer.0.intermediate.")
    out_layer = load_into(bert.BertOutput(cfg), ref, "model", "encoder.layer.0.output.")
    x = torch.randn(2, 4, cfg.hidden_size, generator=torch.Generator().manual_seed(5))
    h, seen = _seen(inter, x)
    with torch.no_grad():
        pre = inter.dense(x)
        assert_close(seen["hook_pre"], pre, name="BertIntermediate.hook_pre", atol=ATOL,
                     hint="dense(x), before the activation")
        assert_close(seen["hook_post"], 0.5 * pre * (1 + torch.erf(pre / math.sqrt(2))),
                     name="BertIntermediate.hook_post", atol=ATOL,
                     mistakes={M["hook_post_before_activation"]: pre}, hint="the erf GELU of hook_pre")
    _, seen = _seen(out_layer, h, x)
    with torch.no_grad():
        mlp_out = out_layer.dense(h)
        assert_close(seen["hook_mlp_out"], mlp_out, name="BertOutput.hook_mlp_out", atol=ATOL,
                     mistakes={M["hook_mlp_out_after_residual"]: x + mlp_out},
                     hint="after the dense and its bias: what is added to the residual")
        assert_close(seen["hook_resid_post"], x + mlp_out, name="BertOutput.hook_resid_post", atol=ATOL,
                     hint="x + mlp_out, before the layer norm")
    _ln_alone(seen, "LayerNorm.", x + mlp_out, cfg.layer_norm_eps)


@pytest.mark.exercise("block")
def test_block_hook_points_of_the_layer(bert, hf):
    """BertLayer: hook_resid_pre is the block's input, hook_normalized_resid_post its output."""
    ref = hf("base")
    cfg = config_of(ref)
    layer = load_into(bert.BertLayer(cfg), ref, "model", "encoder.layer.0.")
    x = torch.randn(2, 4, cfg.hidden_size, generator=torch.Generator().manual_seed(6))
    out, seen = _seen(layer, x, None)
    assert_close(seen["hook_resid_pre"], x, name="BertLayer.hook_resid_pre", atol=0, hint="the block's input")
    assert_close(seen["hook_normalized_resid_post"], out, name="BertLayer.hook_normalized_resid_post", atol=0,
                 hint="the block's output, after the second layer norm")
    assert_close(seen["attention.self.hook_q"].reshape(2, 4, -1), layer.attention.self.query(x).detach(),
                 name="BertLayer: attention.self.hook_q (the attention reads the block's input)", atol=ATOL)


# ----------------------------------------------------------------------------- edits


def _hf_rest(ref, x, mask, start):
    """transformers' layers start.. on the hidden states x (B, T, C)."""
    add = additive(mask.bool()[:, None, None, :])  # transformers' (B, 1, 1, S) float mask
    for layer in ref.encoder.layer[start:]:
        x = layer(x, attention_mask=add)
        x = x[0] if isinstance(x, tuple) else x
    return x


@pytest.mark.exercise("model")
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_zero_ablating_a_head_through_hook_z_equals_the_edit_by_hand(bert, hf, attn):
    """Head 2 of block 1 set to 0 through hook_z == transformers' block 1 with that head's
    slice of the context zeroed before the output dense, then the remaining blocks."""
    model, ref = _model(bert, hf, "deep_narrow_heads", attn=attn)
    ids, mask, types, real = batch(model.config, seed=6)
    h = 2

    def ablate(z, hook):
        z = z.clone()
        z[:, :, h] = 0.0
        return z

    with torch.no_grad():
        out = model.run_with_hooks(ids, fwd_hooks=[("blocks.1.attn.hook_z", ablate)], attention_mask=mask,
                                   token_type_ids=types)
        hs = ref(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True).hidden_states
        add = additive(mask.bool()[:, None, None, :])
        layer, hd = ref.encoder.layer[1], model.config.head_dim
        context = layer.attention.self(hs[1], attention_mask=add)[0].clone()
        context[..., h * hd:(h + 1) * hd] = 0.0
        a = layer.attention.output(context, hs[1])
        x = layer.output(layer.intermediate(a), a)
        expected = _hf_rest(ref, x, mask, 2)
    assert_close(out.last_hidden_state, expected, name="last_hidden_state with head 2 of block 1 ablated", atol=ATOL,
                 mistakes={M["hook_output_ignored"]: hs[-1]},
                 hint="use what the hook point returns: z = self.hook_z(z), then merge the heads of that z")


@pytest.mark.exercise("model")
def test_editing_one_row_of_the_broadcast_position_embedding_in_place(bert, hf, checkpoint):
    """embed.hook_pos_embed is one (1, T, C) lookup broadcast to (B, T, C): TransformerLens's
    idiom ``x[0] = 0`` (no return) edits sequence 0 only, and equals transformers with the
    position table zeroed for that sequence and left as it is for the others. (Without the
    copy a hook gets, the write lands in the one row every sequence shares: all are edited.)"""
    model, ref = _model(bert, hf, "base")
    ids, mask, types, real = batch(model.config, seed=16)

    def zero_first(x, hook):
        x[0] = 0.0

    kwargs = dict(attention_mask=mask, token_type_ids=types)
    out = model.run_with_hooks(ids, fwd_hooks=[("embed.hook_pos_embed", zero_first)], **kwargs).last_hidden_state
    out.sum().backward()  # the edit keeps the graph intact
    with torch.no_grad():
        others = ref(ids[1:], attention_mask=mask[1:], token_type_ids=types[1:]).last_hidden_state
        ref = tiny.hf_bert(checkpoint("base", "model"), "model")  # a fresh copy: the shared one stays intact
        ref.embeddings.position_embeddings.weight.zero_()
        first = ref(ids[:1], attention_mask=mask[:1], token_type_ids=types[:1]).last_hidden_state
    assert_close(out[0][real[0]], first[0][real[0]], name="sequence 0 with its position embeddings zeroed",
                 atol=ATOL)
    assert_close(out[1:][real[1:]], others[real[1:]], name="the other sequences, untouched", atol=ATOL)


@pytest.mark.exercise("model")
def test_patching_the_residual_stream_equals_running_the_rest_by_hand(bert, hf):
    model, ref = _model(bert, hf, "deep_narrow_heads")
    ids, mask, types, _ = batch(model.config, seed=7)
    patch = torch.randn(*ids.shape, model.config.hidden_size, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        out = model.run_with_hooks(ids, fwd_hooks=[("blocks.1.hook_resid_pre", lambda x, hook: patch)],
                                   attention_mask=mask, token_type_ids=types)
        expected = _hf_rest(ref, patch, mask, 1)
    assert_close(out.last_hidden_state, expected, name="last_hidden_state with blocks.1.hook_resid_pre replaced",
                 atol=ATOL, hint="x = self.hook_resid_pre(x): the block must go on with the returned tensor")


@pytest.mark.exercise("model")
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_masking_scores_through_hook_attn_scores_equals_masking_the_key(bert, hf, attn):
    """Filling key 0's scores with finfo.min in every layer == an attention_mask with 0 at position 0
    (BERT's mask is on keys only). Every sequence keeps a real key: a query that sees none has a
    zero row by the mask's rule, a uniform one by softmax over finfo.min scores."""
    model, _ = _model(bert, hf, "base", attn=attn)
    ids, mask, types, _ = batch(model.config, lengths=(7, 3, 5, 2), seed=9)

    def hide_key_0(scores, hook):
        return scores.index_fill(-1, torch.tensor([0]), torch.finfo(scores.dtype).min)

    with torch.no_grad():
        out = model.run_with_hooks(ids, fwd_hooks=[(lambda n: n.endswith("hook_attn_scores"), hide_key_0)],
                                   attention_mask=mask, token_type_ids=types)
        expected = model(ids, attention_mask=mask.index_fill(-1, torch.tensor([0]), 0), token_type_ids=types)
    assert_close(out.last_hidden_state, expected.last_hidden_state, name="last_hidden_state, key 0 hidden by hooks",
                 atol=ATOL, hint="hook_attn_scores comes before the softmax: the pattern is softmax(hooked scores)")


# ----------------------------------------------------------------------------- bookkeeping


@pytest.mark.exercise("model")
def test_hooks_are_removed_after_the_call_and_after_an_error(bert, hf):
    model, _ = _model(bert, hf, "base")
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = model(ids).last_hidden_state
        model.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x * 0)])
        model.run_with_cache(ids)
        assert not [n for n, p in model.hook_dict.items() if p.has_hooks], "hooks left on after the calls"

        def fail(x, hook):
            raise RuntimeError("inside a hook")

        with pytest.raises(RuntimeError, match="inside a hook"):
            model.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x * 0),
                                                 ("blocks.1.attn.hook_pattern", fail)])
        with pytest.raises(RuntimeError, match="inside a hook"):
            model.run_with_hooks(ids, fwd_hooks=[(lambda n: True, fail)])  # fails at the first hook point
        assert not [n for n, p in model.hook_dict.items() if p.has_hooks], "hooks left on after an error in a hook"
        assert torch.equal(model(ids).last_hidden_state, clean), "the model computes differently after the hooks"


@pytest.mark.exercise("model")
def test_names_filter_and_unknown_names(bert, hf):
    model, _ = _model(bert, hf, "base")
    ids = torch.randint(0, 99, (1, 4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, one = model.run_with_cache(ids, names_filter="blocks.1.attn.hook_z")
        _, some = model.run_with_cache(ids, names_filter=["hook_full_embed", "blocks.0.mlp.hook_post"])
        _, by_fn = model.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    assert list(one) == ["blocks.1.attn.hook_z"]
    assert list(some) == ["hook_full_embed", "blocks.0.mlp.hook_post"]
    assert list(by_fn) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    with pytest.raises(ValueError, match=r"no hook point 'blocks\.0\.attn\.hook_patern'.*did you mean "
                                         r"'blocks\.0\.attn\.hook_pattern'"):
        model.run_with_cache(ids, names_filter="blocks.0.attn.hook_patern")
    with pytest.raises(ValueError, match=r"fwd_hooks: the model has no hook point 'ln_final\.hook_normalized'"):
        model.run_with_hooks(ids, fwd_hooks=[("ln_final.hook_normalized", lambda x, hook: x)])  # BERT has none
    with pytest.raises(ValueError, match=r"no hook point 'bert\.hook_full_embed'"):
        model.run_with_cache(ids, names_filter=["bert.hook_full_embed"])  # names drop the bert. prefix
    with pytest.raises(ValueError, match=r"hook on 'blocks\.0\.hook_attn_out' returned shape \(1, 4\)"):
        model.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_attn_out", lambda x, hook: x[..., 0])])


@pytest.mark.exercise("model")
def test_a_replacement_at_every_hook_point_takes_effect(bert, hf):
    """A hook returning 1.5 x at any one point changes the output: the forward goes on with
    what the hook point returns, everywhere."""
    model, _ = _model(bert, hf, "base")
    ids = torch.randint(0, 99, (2, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        clean = model(ids).last_hidden_state
        ignored = [name for name in model.hook_dict
                   if torch.equal(model.run_with_hooks(ids, fwd_hooks=[(name, lambda x, hook: x * 1.5)]).last_hidden_state,
                                  clean)]
    assert not ignored, (f"replacing the activation at {ignored} changed nothing: use the hook point's return value "
                         f"(x = self.{ignored[0].rsplit('.', 1)[-1]}(x)) in "
                         f"{WHERE[ignored[0].rsplit('.', 1)[-1]]}.forward")


@pytest.mark.exercise("model")
def test_gradients_flow_through_hidden_states_and_attentions(bert, hf):
    """output_hidden_states / output_attentions are gathered from the hook points without
    detaching: a loss on them backpropagates as transformers' does (1e-5 relative)."""
    model, ref = _model(bert, hf, "base")
    ids, mask, types, real = batch(model.config, seed=10)
    kw = dict(attention_mask=mask, token_type_ids=types, output_hidden_states=True, output_attentions=True)
    ref.zero_grad()
    losses = []
    for m in (model, ref):
        out = m(ids, **kw)
        loss = (out.hidden_states[1] * real[..., None]).pow(2).sum() + out.attentions[0][:, :, :, 0].sum()
        loss.backward()
        losses.append(loss.detach())
    assert_close(losses[0], losses[1], name="loss on hidden_states[1] and attentions[0]", atol=1e-4)
    assert_bert_grads_close(model, hf_grads_as_ours(ref, model, "model"), rtol=1e-5,
                            hint="keep the captured values attached to the graph (no .detach())")
    ref.zero_grad()


@pytest.mark.exercise("attention")
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_an_edit_of_the_scores_cannot_unmask_a_padding_key(bert, hf, attn):
    """hook_attn_scores replaced by zeros in every layer: each real query attends uniformly to
    the real keys of its sequence, never to padding (masked entries are masked again after
    the hook), and an all-padding sequence's rows stay 0."""
    model, _ = _model(bert, hf, "base", attn=attn)
    ids, mask, types, _ = batch(model.config, seed=19)
    mask = mask.clone()
    mask[-1] = 0  # a sequence of padding only: its queries see no key
    n = model.config.num_hidden_layers
    hooks = [(f"blocks.{i}.attn.hook_attn_scores", lambda s, hook: torch.zeros_like(s)) for i in range(n)]
    with torch.no_grad(), model.hooks(hooks):
        _, cache = model.run_with_cache(ids, names_filter=lambda name: name.endswith("hook_pattern"),
                                        attention_mask=mask, token_type_ids=types)
    keys = mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    uniform = (keys / keys.sum(-1, keepdim=True).clamp(min=1)).expand(-1, model.config.num_attention_heads,
                                                                      ids.shape[1], -1)
    for i in range(n):
        assert_close(cache[f"blocks.{i}.attn.hook_pattern"], uniform, atol=1e-6,
                     name=f"blocks.{i}.attn.hook_pattern with the scores set to 0",
                     hint="mask what hook_attn_scores returns again: an edit must not unmask a padding key")
