"""Hook points of DeBERTa: run_with_cache equals transformers' hidden_states and attentions, every
other point equals its value computed by hand from transformers' modules, edits through
run_with_hooks equal the same edit made by hand in transformers, and hooks never outlive the
call (also when one raises). The names are TransformerLens's (HookedEncoder's BERT blocks) plus
DeBERTa's own relative-attention points."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.testing.compare import assert_close

from .helpers import assert_attention_points, right_padded_batch

pytestmark = pytest.mark.exercise("model")

ATOL = 1e-5


@pytest.fixture(scope="module")
def models(deberta, checkpoints):
    return {name: deberta.DebertaV2ForMaskedLM.from_pretrained(folder) for name, folder in checkpoints.items()}


def _batch(cfg, seed=0, lengths=(8, 5, 7)):
    ids, mask, types = right_padded_batch(cfg.vocab_size, list(lengths), seed, cfg.type_vocab_size)
    return ids, dict(attention_mask=mask, token_type_ids=types)


def _heads(x, nh):  # (B, T, H) -> (B, T, nh, hs)
    return x.reshape(*x.shape[:2], nh, -1)


# ----------------------------------------------------------------------------- names


def test_hook_names_are_transformer_lens_names(models):
    """The exact names of a model with every optional point: absolute positions, token types,
    both relative terms, the convolution (c2p_embed_proj has no conv; v2_conv has no absolute
    positions), so two models between them."""
    per_block = ["hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores",
                 "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre",
                 "mlp.hook_post", "hook_mlp_out", "hook_resid_post", "hook_normalized_resid_post"]
    for name, extra_top, extra_block in [
        ("v2_conv", ["embed.hook_embed", "embed.hook_token_type_embed", "hook_full_embed", "hook_rel_embeddings", "conv.hook_out"],
         ["attn.hook_c2p_scores", "attn.hook_p2c_scores"]),
        ("c2p_embed_proj", ["embed.hook_embed", "embed.hook_pos_embed", "embed.hook_token_type_embed", "hook_full_embed",
                            "hook_rel_embeddings"], ["attn.hook_c2p_scores"]),
        ("absolute_only", ["embed.hook_embed", "embed.hook_pos_embed", "embed.hook_token_type_embed", "hook_full_embed"], []),
    ]:
        model = models[name]
        names = {n for n in model.hook_dict if ".ln" not in n and not n.startswith(("embed.ln", "ln_rel", "mlm_head"))}
        n_layers = model.config.num_hidden_layers
        expected = set(extra_top) | {f"blocks.{i}.{p}" for i in range(n_layers) for p in per_block + extra_block}
        assert names == expected, (f"{name}: missing {sorted(expected - names)}, unexpected {sorted(names - expected)}")
    # The base model has the same names (the MLM model drops its "deberta." prefix).
    base_names = set(models["v3"].deberta.hook_dict)
    assert base_names <= set(models["v3"].hook_dict) and "blocks.0.attn.hook_pattern" in base_names


def _forward_order(model, ids, **kwargs):
    """The hook names in the order one forward pass reaches them (each once)."""
    order = []
    with torch.no_grad(), model.hooks([(lambda n: True, lambda a, hook: order.append(hook.name))]):
        model(ids, **kwargs)
    return order


@pytest.mark.parametrize("name", ["v3", "v2_conv", "c2p_embed_proj", "p2c_buckets_untied", "both_unshared",
                                  "absolute_only"])
def test_hook_dict_lists_the_points_in_forward_order(models, name):
    """hook_dict (and run_with_cache's cache) in the order the forward reaches the points, as
    TransformerLens's: the relative table's points before layer 0 (the encoder builds the
    table after its layers), the convolution's right after layer 0, a layer's relative terms
    after hook_q/k/v, and hook_attn_out / hook_resid_mid before ln1 (each output block builds
    its layer norm first)."""
    model = models[name]
    ids, kwargs = _batch(model.config, seed=2)
    order = _forward_order(model, ids, **kwargs)
    assert len(order) == len(set(order)), f"{name}: a hook point ran twice in one forward: {order}"
    assert order == list(model.hook_dict), (f"{name}: hook_dict {list(model.hook_dict)} is not the forward's "
                                            f"order {order}")
    _, cache = model.run_with_cache(ids, **kwargs)
    assert list(cache) == order


def test_layer_norm_points_when_layer_norm_has_them(models):
    """Every layer norm's hook_normalized under its TransformerLens-style name: (x - mean) /
    sqrt(var + eps), before weight and bias. (They come with GPT-2's LayerNorm.)"""
    model = models["v3"]
    if "blocks.0.ln1.hook_normalized" not in model.hook_dict:
        pytest.skip("GPT-2's LayerNorm has no hook_normalized point")
    ids, kwargs = _batch(model.config, seed=11)
    _, cache = model.run_with_cache(ids, **kwargs)
    x = cache["blocks.0.hook_resid_mid"].double()
    eps = model.config.layer_norm_eps
    by_hand = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    assert_close(cache["blocks.0.ln1.hook_normalized"].double(), by_hand, name="blocks.0.ln1.hook_normalized",
                 atol=ATOL)
    for name in ("embed.ln.hook_normalized", "ln_rel.hook_normalized", "blocks.1.ln2.hook_normalized",
                 "mlm_head.ln.hook_normalized"):
        assert name in cache, f"{name} missing from the cache"


# ----------------------------------------------------------------------------- cache vs transformers


@pytest.mark.parametrize("name", ["v3", "v2_conv", "c2p_embed_proj", "absolute_only"])
def test_cache_equals_transformers_hidden_states_and_attentions(models, hf_models, name):
    model, hf = models[name], hf_models[name]
    ids, kwargs = _batch(model.config, seed=len(name))
    with torch.no_grad():
        out, cache = model.run_with_cache(ids, output_hidden_states=True, output_attentions=True, **kwargs)
        expected = hf(ids, output_hidden_states=True, output_attentions=True, **kwargs)
    n = model.config.num_hidden_layers
    assert_close(cache["hook_full_embed"], expected.hidden_states[0], name="hook_full_embed vs hidden_states[0]",
                 atol=ATOL)
    for i in range(n):
        point = "conv.hook_out" if i == 0 and "conv.hook_out" in cache else f"blocks.{i}.hook_normalized_resid_post"
        assert_close(cache[point], expected.hidden_states[i + 1], name=f"{point} vs hidden_states[{i + 1}]", atol=ATOL)
        assert_close(cache[f"blocks.{i}.hook_resid_pre"], expected.hidden_states[i],
                     name=f"blocks.{i}.hook_resid_pre vs hidden_states[{i}]", atol=ATOL)
        assert_close(cache[f"blocks.{i}.attn.hook_pattern"], expected.attentions[i],
                     name=f"blocks.{i}.attn.hook_pattern vs attentions[{i}]", atol=1e-6)
    # The model's own output_* are read from the same points: identical tensors.
    for a, c in zip(out.attentions, [cache[f"blocks.{i}.attn.hook_pattern"] for i in range(n)]):
        assert torch.equal(a, c)
    assert_close(out.logits, expected.logits, name="logits under run_with_cache", atol=ATOL)


def test_cache_of_the_base_model(models, checkpoints):
    import transformers

    base = models["v3"].deberta
    hf = transformers.DebertaV2Model.from_pretrained(checkpoints["v3"]).eval()
    ids, kwargs = _batch(base.config, seed=3)
    with torch.no_grad():
        _, cache = base.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_normalized_resid_post"), **kwargs)
        expected = hf(ids, output_hidden_states=True, **kwargs).hidden_states
    assert sorted(cache) == [f"blocks.{i}.hook_normalized_resid_post" for i in range(base.config.num_hidden_layers)]
    for i in range(base.config.num_hidden_layers):
        assert_close(cache[f"blocks.{i}.hook_normalized_resid_post"], expected[i + 1],
                     name=f"DebertaV2Model blocks.{i}.hook_normalized_resid_post", atol=ATOL)


# ----------------------------------------------------------------------------- hand values


@pytest.mark.parametrize("name", ["v3", "both_unshared", "p2c_buckets_untied", "c2p_embed_proj"])
def test_attention_points_by_hand(models, hf_models, name):
    """hook_rel_embeddings: transformers' table; per layer, the attention's points from
    hook_resid_pre by hand (assert_attention_points)."""
    model, hf = models[name], hf_models[name]
    cfg = model.config
    ids, kwargs = _batch(cfg, seed=5)
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, **kwargs)
        assert_close(cache["hook_rel_embeddings"], hf.deberta.encoder.get_rel_embedding(),
                     name="hook_rel_embeddings", atol=1e-6)
        for i in range(cfg.num_hidden_layers):
            prefix = f"blocks.{i}.attn."
            points = {k.removeprefix(prefix): v for k, v in cache.items() if k.startswith(prefix)}
            assert_attention_points(points, hf.deberta.encoder.layer[i].attention.self, cfg,
                                    cache[f"blocks.{i}.hook_resid_pre"], cache["hook_rel_embeddings"],
                                    kwargs["attention_mask"].bool(), where=prefix)


def test_block_points_by_hand(models, hf_models):
    """The residual stream of a post-LN block, from transformers' modules: attn_out =
    dense(z), resid_mid = resid_pre + attn_out, mlp pre/post around the activation,
    resid_post = LN1(resid_mid) + mlp_out, and the embeddings' lookups."""
    model, hf = models["c2p_embed_proj"], hf_models["c2p_embed_proj"]
    cfg = model.config
    ids, kwargs = _batch(cfg, seed=6)
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, **kwargs)
        emb = hf.deberta.embeddings
        assert_close(cache["embed.hook_embed"], emb.word_embeddings(ids), name="embed.hook_embed", atol=0)
        positions = emb.position_embeddings(torch.arange(ids.shape[1])).expand(*ids.shape, -1)  # (B, T, E)
        assert_close(cache["embed.hook_pos_embed"], positions,
                     name="embed.hook_pos_embed", atol=0)
        assert_close(cache["embed.hook_token_type_embed"], emb.token_type_embeddings(kwargs["token_type_ids"]),
                     name="embed.hook_token_type_embed", atol=0)
        for i in range(cfg.num_hidden_layers):
            layer = hf.deberta.encoder.layer[i]
            b = lambda p: cache[f"blocks.{i}.{p}"]  # noqa: E731
            attn_out = layer.attention.output.dense(b("attn.hook_z").flatten(-2))
            assert_close(b("hook_attn_out"), attn_out, name=f"blocks.{i}.hook_attn_out", atol=ATOL)
            assert_close(b("hook_resid_mid"), b("hook_resid_pre") + attn_out, name=f"blocks.{i}.hook_resid_mid",
                         atol=ATOL)
            normalized_mid = layer.attention.output.LayerNorm(b("hook_resid_mid"))
            assert_close(b("mlp.hook_pre"), layer.intermediate.dense(normalized_mid), name=f"blocks.{i}.mlp.hook_pre",
                         atol=ATOL)
            assert_close(b("mlp.hook_post"), layer.intermediate.intermediate_act_fn(b("mlp.hook_pre")),
                         name=f"blocks.{i}.mlp.hook_post", atol=ATOL)
            mlp_out = layer.output.dense(b("mlp.hook_post"))
            assert_close(b("hook_mlp_out"), mlp_out, name=f"blocks.{i}.hook_mlp_out", atol=ATOL)
            assert_close(b("hook_resid_post"), normalized_mid + mlp_out, name=f"blocks.{i}.hook_resid_post", atol=ATOL)
            assert_close(b("hook_normalized_resid_post"), layer.output.LayerNorm(b("hook_resid_post")),
                         name=f"blocks.{i}.hook_normalized_resid_post", atol=ATOL)


# ----------------------------------------------------------------------------- edits


def test_zero_ablating_a_head_equals_the_same_edit_in_transformers(models, hf_models):
    """hook_z of head 1 in layer 1 set to 0 == transformers with that head's context zeroed."""
    model, hf = models["v3"], hf_models["v3"]
    ids, kwargs = _batch(model.config, seed=7)
    hs = model.config.head_dim

    def ablate(z, hook):
        return z.index_fill(2, torch.tensor([1]), 0.0)  # (B, T, nh, hs)

    def ablate_hf(module, inputs, output):
        context = output[0].clone()
        context[..., hs : 2 * hs] = 0.0  # head 1's slice of the merged context
        return (context, *output[1:])

    handle = hf.deberta.encoder.layer[1].attention.self.register_forward_hook(ablate_hf)
    try:
        with torch.no_grad():
            expected = hf(ids, **kwargs).logits
    finally:
        handle.remove()
    with torch.no_grad():
        plain = model(ids, **kwargs).logits
        actual = model.run_with_hooks(ids, fwd_hooks=[("blocks.1.attn.hook_z", ablate)], **kwargs).logits
    assert not torch.allclose(plain, expected, atol=1e-3), "the edit should change the logits"
    assert_close(actual, expected, name="logits with head 1 of layer 1 zero-ablated", atol=ATOL)


def test_patching_the_residual_stream(models, hf_models):
    """Adding a vector to blocks.1.hook_resid_pre == adding it to layer 1's input in transformers."""
    model, hf = models["v2_conv"], hf_models["v2_conv"]
    ids, kwargs = _batch(model.config, seed=8)
    delta = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(9))
    # transformers' encoder passes the hidden states first, positionally.
    handle = hf.deberta.encoder.layer[1].register_forward_pre_hook(
        lambda m, args, kw: ((args[0] + delta, *args[1:]), kw), with_kwargs=True)
    try:
        with torch.no_grad():
            expected = hf(ids, **kwargs).logits
    finally:
        handle.remove()
    with torch.no_grad():
        actual = model.run_with_hooks(ids, fwd_hooks=[("blocks.1.hook_resid_pre", lambda x, hook: x + delta)],
                                      **kwargs).logits
    assert_close(actual, expected, name="logits with blocks.1.hook_resid_pre + delta", atol=ATOL)


def test_editing_the_shared_relative_table(models, hf_models, monkeypatch):
    """Halving hook_rel_embeddings changes every layer's c2p and p2c: the same as transformers
    with get_rel_embedding halved."""
    model, hf = models["both_unshared"], hf_models["both_unshared"]
    ids, kwargs = _batch(model.config, seed=10)
    original = hf.deberta.encoder.get_rel_embedding
    monkeypatch.setattr(hf.deberta.encoder, "get_rel_embedding", lambda: original() * 0.5)
    with torch.no_grad():
        expected = hf(ids, **kwargs).logits
        actual = model.run_with_hooks(ids, fwd_hooks=[("hook_rel_embeddings", lambda t, hook: t * 0.5)],
                                      **kwargs).logits
    assert_close(actual, expected, name="logits with the relative table halved", atol=ATOL)


def test_a_pattern_edit_reaches_output_attentions(models):
    """output_attentions reports the pattern as the layers used it, after any hook's edit."""
    model = models["v3"]
    ids, kwargs = _batch(model.config, seed=12)

    def uniform(pattern, hook):
        return torch.full_like(pattern, 1.0 / pattern.shape[-1])

    with torch.no_grad():
        out = model.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_pattern", uniform)], output_attentions=True,
                                   **kwargs)
    assert bool((out.attentions[0] == 1.0 / ids.shape[1]).all())


# ----------------------------------------------------------------------------- hooks go away


def _no_hooks_left(model):
    return [name for name, point in model.hook_dict.items() if point.has_hooks]


def test_hooks_are_removed_after_the_call_and_after_an_error(models):
    model = models["c2p_embed_proj"]
    ids, kwargs = _batch(model.config, seed=13)
    with torch.no_grad():
        plain = model(ids, **kwargs).logits
        model.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_mlp_out", lambda x, hook: x * 0)], **kwargs)
        model.run_with_cache(ids, **kwargs)
        assert _no_hooks_left(model) == []

        def boom(x, hook):
            raise RuntimeError("inside a hook")

        with pytest.raises(RuntimeError, match="inside a hook"):
            model.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_resid_mid", lambda x, hook: x * 2),
                                                 ("blocks.1.attn.hook_q", boom)], **kwargs)
        assert _no_hooks_left(model) == [], "hooks left behind after an exception inside a hook"
        with pytest.raises(ValueError, match="position_ids"):
            model.run_with_cache(ids, names_filter=["blocks.0.attn.hook_k"], attention_mask=kwargs["attention_mask"],
                                 token_type_ids=kwargs["token_type_ids"],
                                 position_ids=torch.full((1, ids.shape[1]), 99))  # past the table: an error
        assert _no_hooks_left(model) == []
        assert torch.equal(model(ids, **kwargs).logits, plain), "the model changed after the hooked calls"


# ----------------------------------------------------------------------------- bad use


def test_names_filter_forms(models):
    model = models["v3"]
    ids = torch.randint(1, 83, (2, 6), generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        _, one = model.run_with_cache(ids, names_filter="blocks.1.attn.hook_p2c_scores")
        _, some = model.run_with_cache(ids, names_filter=["hook_rel_embeddings", "blocks.0.hook_resid_pre"])
        _, by_fn = model.run_with_cache(ids, names_filter=lambda n: n.startswith("blocks.0.attn."))
    assert list(one) == ["blocks.1.attn.hook_p2c_scores"] and one["blocks.1.attn.hook_p2c_scores"].shape == (2, 4, 6, 6)
    assert sorted(some) == ["blocks.0.hook_resid_pre", "hook_rel_embeddings"]
    assert some["hook_rel_embeddings"].shape == (2 * model.config.att_span, model.config.hidden_size)
    assert sorted(by_fn) == sorted(f"blocks.0.attn.{p}" for p in (
        "hook_q", "hook_k", "hook_v", "hook_c2p_scores", "hook_p2c_scores", "hook_attn_scores", "hook_pattern",
        "hook_z"))
    assert by_fn["blocks.0.attn.hook_q"].shape == (2, 6, 4, 8)  # (batch, pos, head, d_head)


@pytest.mark.parametrize("call", ["cache", "hooks"])
def test_unknown_hook_name_is_a_value_error_naming_it(models, call):
    model = models["c2p_embed_proj"]  # c2p only: there is no p2c point
    ids = torch.ones(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.hook_p2c_scores"):
        if call == "cache":
            model.run_with_cache(ids, names_filter=["blocks.0.attn.hook_p2c_scores"])
        else:
            model.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_p2c_scores", lambda x, hook: None)])
    with pytest.raises(ValueError, match="hook_patern"):
        model.run_with_cache(ids, names_filter="blocks.0.attn.hook_patern")


def test_a_hook_returning_a_wrong_shape_or_type_is_refused(models):
    model = models["v3"]
    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.hook_pattern.*shape"):
        model.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda p, hook: p[..., :2])])
    with pytest.raises(TypeError, match=r"hook_rel_embeddings"):
        model.run_with_hooks(ids, fwd_hooks=[("hook_rel_embeddings", lambda t, hook: t.tolist())])
    assert _no_hooks_left(model) == []


# ----------------------------------------------------------------------------- padding


@pytest.mark.parametrize("name", ["v2_conv", "c2p_embed_proj"])
def test_no_real_position_reads_padding(models, name):
    """An encoder reads both ways, but never the padding: other ids and token types at padded
    positions leave every hook value of every real position exactly as it was (the padded keys
    get weight 0, the convolution reads zeroed embeddings), and the logits too."""
    model = models[name]
    cfg = model.config
    ids, kwargs = _batch(cfg, seed=15)
    pad = kwargs["attention_mask"] == 0
    other_ids = ids.masked_fill(pad, 7)
    other = dict(kwargs, token_type_ids=None if kwargs["token_type_ids"] is None
                 else kwargs["token_type_ids"].masked_fill(pad, 1))
    with torch.no_grad():
        out, cache = model.run_with_cache(ids, **kwargs)
        out2, cache2 = model.run_with_cache(other_ids, **other)
    real = ~pad
    B, T = ids.shape
    compared = 0
    for point, value in cache.items():
        if value.shape[:2] == (B, T):  # (B, T, ...): a row per position
            a, b = value[real], cache2[point][real]
        elif value.dim() == 4 and value.shape[0] == B and value.shape[2:] == (T, T):  # (B, nh, T, T): real queries
            a, b = value.transpose(1, 2)[real], cache2[point].transpose(1, 2)[real]
        else:  # the relative table: no position
            a, b = value, cache2[point]
        assert torch.equal(a, b), f"{point} at a real position changed when only padding changed"
        compared += 1
    assert compared == len(cache) and torch.equal(out.logits[real], out2.logits[real])


def test_an_edit_of_the_scores_cannot_unmask_a_padding_key(models):
    """hook_attn_scores replaced by zeros in every layer: a real query attends uniformly to the
    real keys of its sequence and never to padding (masked entries are masked again after the
    hook); a padding query's row stays uniform over every key, DeBERTa's rule (no real position
    reads it)."""
    model = models["v3"]
    ids, kwargs = _batch(model.config, seed=20)
    n = model.config.num_hidden_layers
    hooks = [(f"blocks.{i}.attn.hook_attn_scores", lambda s, hook: torch.zeros_like(s)) for i in range(n)]
    with torch.no_grad(), model.hooks(hooks):
        _, cache = model.run_with_cache(ids, names_filter=lambda name: name.endswith("hook_pattern"), **kwargs)
    real = kwargs["attention_mask"].bool()
    T = ids.shape[1]
    keys = real[:, None, None, :].expand(-1, 1, T, -1)  # (B, 1, T, T)
    keys = torch.where(real[:, None, :, None], keys, torch.ones_like(keys))  # padding queries: all keys
    uniform = keys / keys.sum(-1, keepdim=True)
    for i in range(n):
        pattern = cache[f"blocks.{i}.attn.hook_pattern"]
        assert_close(pattern, uniform.expand_as(pattern), atol=1e-6,
                     name=f"blocks.{i}.attn.hook_pattern with the scores set to 0",
                     hint="mask what hook_attn_scores returns again: an edit must not unmask a padding key")
