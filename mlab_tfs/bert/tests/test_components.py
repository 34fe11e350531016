"""Exercises 1-5 and 7: each building block against transformers' own module.

Layer norm, embedding and the attention pattern are the learner's GPT-2 pieces, tested in
mlab_tfs/gpt2/tests; here they are tested as BERT uses them (its eps, its padding row)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mlab_tfs.hooks import capture
from mlab_tfs.testing.compare import assert_close

from .helpers import additive, config_of, load_into, no_shortcuts, shortcuts

# ----------------------------------------------------------------------------- 1. embeddings


@pytest.mark.exercise("embeddings")
def test_bert_embeddings_match_transformers(bert, hf):
    model = hf("deep_narrow_heads")  # 3 token types, eps 1e-3
    cfg = config_of(model)
    ours = load_into(bert.BertEmbeddings(cfg), model, "model", "embeddings.")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (2, 6), generator=g)
    types = torch.randint(0, cfg.type_vocab_size, (2, 6), generator=g)
    pos = torch.arange(6)[None]
    ref = model.embeddings
    with torch.no_grad(), shortcuts():
        actual = ours(ids, types, pos)
    with torch.no_grad():
        expected = ref(input_ids=ids, token_type_ids=types, position_ids=pos)
        w, p, t = (ref.word_embeddings(ids), ref.position_embeddings(pos), ref.token_type_embeddings(types))
        mistakes = {
            "leaving out the token type embeddings": ref.LayerNorm(w + p),
            "leaving out the position embeddings": ref.LayerNorm(w + t),
            "no layer norm after the sum": w + p + t,
            "the layer norm's default eps (1e-5) instead of config.layer_norm_eps (here 1e-3)":
                F.layer_norm(w + p + t, (cfg.hidden_size,), ref.LayerNorm.weight, ref.LayerNorm.bias, 1e-5),
        }
    assert_close(actual, expected, name="BertEmbeddings output", atol=1e-5, mistakes=mistakes,
                 hint="LayerNorm(word_embeddings(ids) + token_type_embeddings(types) + position_embeddings(pos)), "
                      "then dropout")


@pytest.mark.exercise("embeddings")
def test_bert_embeddings_names(bert):
    cfg = bert.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=16, max_position_embeddings=10, type_vocab_size=3)
    names = {n: tuple(p.shape) for n, p in bert.BertEmbeddings(cfg).named_parameters()}
    assert names == {
        "word_embeddings.weight": (20, 8), "position_embeddings.weight": (10, 8),
        "token_type_embeddings.weight": (3, 8), "LayerNorm.weight": (8,), "LayerNorm.bias": (8,),
    }, f"BertEmbeddings' parameters should mirror transformers' names and shapes, got {names}"


# ----------------------------------------------------------------------------- 2. padding mask


@pytest.mark.exercise("padding_mask")
def test_padding_mask(bert):
    attention_mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    with no_shortcuts((F, "scaled_dot_product_attention")):
        actual = bert.padding_mask(attention_mask)
    assert isinstance(actual, torch.Tensor) and actual.dtype == torch.bool, (
        f"padding_mask should return a bool tensor, got {getattr(actual, 'dtype', type(actual))}"
    )
    expected = attention_mask.bool()[:, None, None, :]
    if actual.shape != expected.shape:
        hint = ("(B, 1, 1, S): the mask is on keys, the last dim of the scores (B, nh, T, S)"
                if actual.numel() == expected.numel() else "(B, 1, 1, S), broadcast over heads and queries")
        assert_close(actual.float(), expected.float(), name="padding_mask(attention_mask)", hint=hint)
    assert_close(actual.float(), expected.float(), name="padding_mask(attention_mask)", atol=0,
                 mistakes={"an inverted mask (True should mean: may attend)": (~expected).float()})


# ----------------------------------------------------------------------------- 3. attention


@pytest.mark.exercise("attention")
def test_self_attention_matches_transformers(bert, hf):
    model = hf("base")
    cfg = config_of(model)
    ours = load_into(bert.BertSelfAttention(cfg), model, "model", "encoder.layer.1.attention.self.")
    x = torch.randn(2, 5, cfg.hidden_size, generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()[:, None, None, :]
    with torch.no_grad(), shortcuts(), capture([ours.hook_pattern]) as seen:
        out = ours(x, keep)
    with torch.no_grad():
        expected, expected_pattern = model.encoder.layer[1].attention.self(x, attention_mask=additive(keep))
    assert seen[0] is not None, "BertSelfAttention never called self.hook_pattern(pattern): pass the pattern through it"
    assert_close(seen[0], expected_pattern, name="attention pattern (hook_pattern)", atol=1e-6,
                 hint="query/key/value are separate nn.Linear(C, C); split heads with "
                      "'b t (nh hs) -> b nh t hs'")
    assert_close(out, expected, name="BertSelfAttention output (before the output dense)", atol=1e-5,
                 hint="pattern @ v, heads merged back to (B, T, C) in the order they were split")


@pytest.mark.exercise("attention")
def test_attention_block_matches_transformers(bert, hf):
    model = hf("base")
    cfg = config_of(model)
    ref = model.encoder.layer[0].attention
    ours = load_into(bert.BertAttention(cfg), model, "model", "encoder.layer.0.attention.")
    x = torch.randn(2, 5, cfg.hidden_size, generator=torch.Generator().manual_seed(1)) * 2
    keep = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]).bool()[:, None, None, :]
    with torch.no_grad(), shortcuts():
        out = ours(x, keep)
    assert isinstance(out, torch.Tensor), f"BertAttention returns one tensor (B, T, C), got {type(out).__name__}"
    with torch.no_grad():
        y = ref.self(x, attention_mask=additive(keep))[0]
        y_queries = ref.self(x, attention_mask=additive(keep.transpose(-1, -2)))[0]
        mistakes = {
            "pre-LN (x + dense(attn(LN(x)))); BERT is post-LN: LayerNorm(x + dense(attn(x)))":
                x + ref.output.dense(ref.self(ref.output.LayerNorm(x), attention_mask=additive(keep))[0]),
            "forgetting the residual (LayerNorm(dense(y)) instead of LayerNorm(dense(y) + x))":
                ref.output.LayerNorm(ref.output.dense(y)),
            "forgetting the output layer norm": x + ref.output.dense(y),
            "masking queries instead of keys": ref.output.LayerNorm(ref.output.dense(y_queries) + x),
        }
        assert_close(out, ref(x, attention_mask=additive(keep))[0], name="BertAttention output", atol=1e-5,
                     mistakes=mistakes, hint="self-attention, then output: LayerNorm(dropout(dense(y)) + x)")


@pytest.mark.exercise("attention")
def test_attention_gradients(bert, hf):
    model = hf("deep_narrow_heads")
    cfg = config_of(model)
    ref = model.encoder.layer[2].attention
    ours = load_into(bert.BertAttention(cfg), model, "model", "encoder.layer.2.attention.")
    keep = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).bool()[:, None, None, :]
    x = torch.randn(2, 4, cfg.hidden_size, generator=torch.Generator().manual_seed(1))
    g = torch.randn(2, 4, cfg.hidden_size, generator=torch.Generator().manual_seed(2))
    ref.zero_grad()
    (ours(x, keep) * g).sum().backward()
    (ref(x, attention_mask=additive(keep))[0] * g).sum().backward()
    from .helpers import assert_bert_grads_close

    assert_bert_grads_close(ours, {n: p.grad for n, p in ref.named_parameters()})
    ref.zero_grad()


# ----------------------------------------------------------------------------- 4. MLP


@pytest.mark.exercise("mlp")
def test_gelu_is_the_erf_one(bert):
    from transformers.activations import GELUActivation

    x = torch.linspace(-8, 8, 401)
    with shortcuts():
        actual = bert.gelu(x)
    mistakes = {
        "the tanh approximation (gelu_new, GPT-2's); BERT uses the exact erf GELU":
            0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        "x * sigmoid(1.702 x) (the sigmoid approximation)": x * torch.sigmoid(1.702 * x),
        "erf(x / 2) instead of erf(x / sqrt(2))": 0.5 * x * (1 + torch.erf(x / 2)),
        "forgetting the 0.5": x * (1 + torch.erf(x / math.sqrt(2))),
    }
    assert_close(actual, GELUActivation()(x), name="gelu(x)", atol=1e-6, mistakes=mistakes,
                 hint="0.5 x (1 + erf(x / sqrt(2)))")


@pytest.mark.exercise("mlp")
def test_mlp_matches_transformers(bert, hf):
    model = hf("base")  # intermediate_size 37, not 4 * hidden_size
    cfg = config_of(model)
    layer = model.encoder.layer[1]
    inter = load_into(bert.BertIntermediate(cfg), model, "model", "encoder.layer.1.intermediate.")
    out = load_into(bert.BertOutput(cfg), model, "model", "encoder.layer.1.output.")
    x = torch.randn(3, 4, cfg.hidden_size, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad():
        with shortcuts():
            h = inter(x)
        tanh = layer.intermediate.dense(x)
        tanh = 0.5 * tanh * (1 + torch.tanh(math.sqrt(2 / math.pi) * (tanh + 0.044715 * tanh**3)))
        assert_close(h, layer.intermediate(x), name="BertIntermediate output", atol=1e-5,
                     mistakes={"the tanh GELU (gelu_new) instead of the erf one": tanh},
                     hint="dense (C -> intermediate_size), then the erf GELU")
        hh = layer.intermediate(x)
        with shortcuts():
            y = out(hh, x)
        mistakes = {
            "forgetting the residual": layer.output.LayerNorm(layer.output.dense(hh)),
            "pre-LN (x + dense(h)); BERT normalises after the addition": x + layer.output.dense(hh),
        }
        assert_close(y, layer.output(hh, x), name="BertOutput output", atol=1e-5, mistakes=mistakes,
                     hint="LayerNorm(dropout(dense(h)) + x), x being the MLP's input")


# ----------------------------------------------------------------------------- 5. block


@pytest.mark.exercise("block")
def test_block_matches_transformers(bert, hf):
    model = hf("deep_narrow_heads")
    cfg = config_of(model)
    ref = model.encoder.layer[1]
    ours = load_into(bert.BertLayer(cfg), model, "model", "encoder.layer.1.")
    x = torch.randn(2, 5, cfg.hidden_size, generator=torch.Generator().manual_seed(0)) * 2
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()[:, None, None, :]
    mask = additive(keep)
    with torch.no_grad():
        with shortcuts(), capture([ours.attention.self.hook_pattern]) as seen:
            out = ours(x, keep)
        a = ref.attention(x, attention_mask=mask)[0]
        sa = ref.attention.self
        pre_a = x + ref.attention.output.dense(sa(ref.attention.output.LayerNorm(x), attention_mask=mask)[0])
        pre = pre_a + ref.output.dense(ref.intermediate(ref.output.LayerNorm(pre_a)))
        mistakes = {
            "pre-LN (x = x + f(LN(x))); BERT is post-LN: x = LN(x + f(x))": pre,
            "the MLP reading the block input instead of the attention output":
                ref.output(ref.intermediate(x), a),
            "the MLP's residual adding the block input instead of the attention output":
                ref.output(ref.intermediate(a), x),
        }
        assert_close(out, ref(x, attention_mask=mask), name="BertLayer output", atol=1e-5, mistakes=mistakes,
                     hint="x = attention(x) (its own residual + LayerNorm inside); x = output(intermediate(x), x)")
        assert_close(seen[0], sa(x, attention_mask=mask)[1], name="BertLayer pattern (attention.self.hook_pattern)",
                     atol=1e-6)


# ----------------------------------------------------------------------------- 7. pooler


@pytest.mark.exercise("pooler")
def test_pooler_matches_transformers(bert, hf):
    model = hf("base")
    cfg = config_of(model)
    ours = load_into(bert.BertPooler(cfg), model, "model", "pooler.")
    x = torch.randn(3, 6, cfg.hidden_size, generator=torch.Generator().manual_seed(0))
    ref = model.pooler
    with torch.no_grad():
        mistakes = {
            "pooling the mean over tokens instead of the first token ([CLS])": torch.tanh(ref.dense(x.mean(1))),
            "pooling the last token instead of the first ([CLS])": torch.tanh(ref.dense(x[:, -1])),
            "forgetting the tanh": ref.dense(x[:, 0]),
        }
        assert_close(ours(x), ref(x), name="BertPooler output", atol=1e-6, mistakes=mistakes,
                     hint="tanh(dense(x[:, 0])): the hidden state of the first token, [CLS]")
