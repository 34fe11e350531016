"""Exercises 1-6 and 8: each building block against PyTorch or transformers' own module."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlab_tfs.testing.compare import assert_close, assert_grads_close

from .helpers import additive, config_of, load_into, no_shortcuts, shortcuts

# ----------------------------------------------------------------------------- 1. layer norm


def _ln_mistakes(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var_b = x.var(-1, keepdim=True, unbiased=False)
    var_u = x.var(-1, keepdim=True, unbiased=True)
    return {
        "the unbiased variance (divide by N-1; use unbiased=False)": (x - mean) / torch.sqrt(var_u + eps) * w + b,
        "eps outside the sqrt (sqrt(var) + eps; put eps inside the sqrt)": (x - mean) / (torch.sqrt(var_b) + eps) * w + b,
        "eps 1e-5 (PyTorch's and GPT-2's default; BERT's is 1e-12)":
            (x - mean) / torch.sqrt(var_b + 1e-5) * w + b,
        "swapping weight and bias": (x - mean) / torch.sqrt(var_b + eps) * b + w,
        "normalising over the wrong dimension (use the last one, dim=-1)": (
            (x - x.mean(-2, keepdim=True)) / torch.sqrt(x.var(-2, keepdim=True, unbiased=False) + eps) * w + b
        ),
    }


@pytest.mark.exercise("layer_norm")
def test_layer_norm_parameters_and_default_eps(bert):
    ln = bert.LayerNorm(16)
    params = dict(ln.named_parameters())
    assert set(params) == {"weight", "bias"}, f"LayerNorm should have parameters weight and bias, has {sorted(params)}"
    assert torch.equal(ln.weight.detach(), torch.ones(16)), "LayerNorm.weight should start at ones"
    assert torch.equal(ln.bias.detach(), torch.zeros(16)), "LayerNorm.bias should start at zeros"
    assert ln.eps == 1e-12, f"BERT's layer norm eps defaults to 1e-12 (config.layer_norm_eps), got {ln.eps}"
    assert bert.LayerNorm(4, eps=0.25).eps == 0.25, "keep eps as self.eps"


@pytest.mark.exercise("layer_norm")
@pytest.mark.parametrize("eps", [1e-12, 1e-3])
def test_layer_norm_matches_torch(bert, eps):
    torch.manual_seed(0)
    # Variance ~1e-5 in the second sequence, so that eps 1e-5 instead of 1e-12 shows (not offset
    # from 0 like the first: x - mean would lose digits to fp32 rounding).
    x = torch.randn(2, 5, 16) * torch.tensor([3.0, 3e-3])[:, None, None] + torch.tensor([1.0, 0.0])[:, None, None]
    ln = bert.LayerNorm(16, eps=eps)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(16))
        ln.bias.copy_(torch.randn(16))
    with shortcuts():
        actual = ln(x)
    w, b = ln.weight.detach(), ln.bias.detach()
    assert_close(actual, F.layer_norm(x, (16,), w, b, eps), name="LayerNorm(x)", atol=1e-5,
                 mistakes=_ln_mistakes(x, w, b, eps),
                 hint="(x - mean) / sqrt(var + eps) * weight + bias, statistics over the last dim")


@pytest.mark.exercise("layer_norm")
def test_layer_norm_gradients(bert):
    torch.manual_seed(1)
    x = (torch.randn(3, 7, 12) * 2).requires_grad_()
    ln, ref = bert.LayerNorm(12, eps=1e-12), nn.LayerNorm(12, eps=1e-12)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(12))
        ln.bias.copy_(torch.randn(12))
        ref.load_state_dict(ln.state_dict())
    g = torch.randn(3, 7, 12)
    (ln(x) * g).sum().backward()
    x_grad, x.grad = x.grad.clone(), None
    (ref(x) * g).sum().backward()
    assert_close(x_grad, x.grad, name="d LayerNorm(x) / dx", atol=1e-5,
                 hint="are you detaching the mean or the variance? Gradients must flow through both")
    assert_grads_close({n: p.grad for n, p in ln.named_parameters()}, {n: p.grad for n, p in ref.named_parameters()})


# ----------------------------------------------------------------------------- 2. embeddings


@pytest.mark.exercise("embeddings")
def test_embedding_lookup_and_gradient(bert):
    emb = bert.Embedding(11, 6)
    assert isinstance(emb.weight, nn.Parameter) and tuple(emb.weight.shape) == (11, 6), (
        "Embedding.weight should be an nn.Parameter of shape (num_embeddings, embedding_dim)"
    )
    ids = torch.tensor([[0, 3, 10], [10, 10, 1]])
    with shortcuts():
        actual = emb(ids)
    assert_close(actual, emb.weight.detach()[ids], name="Embedding(ids)", atol=0,
                 hint="row i of the weight is the vector of id i: index the weight with the ids")
    actual.sum().backward()
    counts = torch.bincount(ids.flatten(), minlength=11).float()[:, None].expand(11, 6)
    assert_close(emb.weight.grad, counts, name="Embedding.weight.grad", atol=0,
                 hint="each row's gradient is the number of times its id was looked up")


@pytest.mark.exercise("embeddings")
def test_embedding_padding_row_gets_no_gradient(bert):
    emb = bert.Embedding(7, 3, padding_idx=2)
    ref = nn.Embedding(7, 3, padding_idx=2)
    with torch.no_grad():
        ref.weight.copy_(emb.weight)
    ids = torch.tensor([[2, 1, 2, 5], [0, 2, 2, 2]])
    g = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    with shortcuts():
        (emb(ids) * g).sum().backward()
    (ref(ids) * g).sum().backward()
    assert_close(emb(ids), ref(ids), name="Embedding(ids) with padding_idx", atol=0,
                 hint="padding_idx changes the gradient, not the lookup")
    assert_close(emb.weight.grad, ref.weight.grad, name="Embedding.weight.grad with padding_idx", atol=1e-6,
                 hint="the padding row must get no gradient (as nn.Embedding(padding_idx=...)): look it up "
                      "through a detached copy where ids == padding_idx, e.g. torch.where(pad[..., None], "
                      "out.detach(), out)")


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


# ----------------------------------------------------------------------------- 3. attention pattern


@pytest.mark.exercise("attention_pattern")
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


def _qk(seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 3, 5, 8, generator=g) * 2
    k = torch.randn(2, 3, 5, 8, generator=g) * 2
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()[:, None, None, :]
    return q, k, keep


@pytest.mark.exercise("attention_pattern")
def test_attention_pattern(bert):
    q, k, keep = _qk()
    scale = 8**-0.5
    with no_shortcuts((F, "scaled_dot_product_attention")):
        actual = bert.attention_pattern(q, k, keep, scale)
    scores = q @ k.transpose(-1, -2)
    queries = keep.transpose(-1, -2)  # the same padding, on the query dim
    mistakes = {
        "forgetting the scale": torch.softmax(scores + additive(keep), -1),
        "a softmax over the queries (dim=-2) instead of the keys (dim=-1)": torch.softmax(scores * scale + additive(keep), -2),
        "the mask inverted (True means attend)": torch.softmax(scores * scale + additive(~keep), -1),
        "masking queries instead of keys (padding is masked as a key: the mask's last dim is S)":
            torch.softmax(scores * scale + additive(queries), -1),
        "a causal mask (BERT is bidirectional: every token sees every real token)":
            torch.softmax(scores * scale + additive(keep & torch.ones(5, 5).tril().bool()), -1),
        "no mask at all": torch.softmax(scores * scale, -1),
    }
    assert_close(actual, torch.softmax(scores * scale + additive(keep), -1), name="attention_pattern(q, k, mask, scale)",
                 atol=1e-6, mistakes=mistakes, hint="softmax over keys of q @ k^T * scale + additive_mask(mask)")


@pytest.mark.exercise("attention_pattern")
def test_attention_pattern_of_an_all_padding_row_is_finite(bert):
    q, k, _ = _qk(1)
    keep = torch.zeros(2, 1, 1, 5, dtype=torch.bool)
    keep[0, ..., :2] = True  # the second sequence is all padding
    actual = bert.attention_pattern(q, k, keep, 0.5)
    assert bool(torch.isfinite(actual).all()), (
        "attention_pattern gave NaN for a sequence that is all padding: mask with torch.finfo(dtype).min, not -inf"
    )
    assert_close(actual[1], torch.full((3, 5, 5), 0.2), name="pattern of an all-padding sequence", atol=1e-6,
                 hint="add finfo.min to the masked scores: the row then becomes uniform, as in transformers")


# ----------------------------------------------------------------------------- 4. attention


@pytest.mark.exercise("attention")
def test_self_attention_matches_transformers(bert, hf):
    model = hf("base")
    cfg = config_of(model)
    ours = load_into(bert.BertSelfAttention(cfg), model, "model", "encoder.layer.1.attention.self.")
    x = torch.randn(2, 5, cfg.hidden_size, generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()[:, None, None, :]
    with torch.no_grad(), shortcuts():
        out, pattern = ours(x, keep, True)
    with torch.no_grad():
        expected, expected_pattern = model.encoder.layer[1].attention.self(x, attention_mask=additive(keep))
    assert_close(pattern, expected_pattern, name="attention pattern (output_attentions=True)", atol=1e-6,
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
        out, pattern = ours(x, keep)
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
    assert pattern is None, "with output_attentions=False, return None as the pattern"


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
    (ours(x, keep)[0] * g).sum().backward()
    (ref(x, attention_mask=additive(keep))[0] * g).sum().backward()
    from .helpers import assert_bert_grads_close

    assert_bert_grads_close(ours, {n: p.grad for n, p in ref.named_parameters()})
    ref.zero_grad()


# ----------------------------------------------------------------------------- 5. MLP


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


# ----------------------------------------------------------------------------- 6. block


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
        with shortcuts():
            out, pattern = ours(x, keep, True)
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
        assert_close(pattern, sa(x, attention_mask=mask)[1], name="BertLayer pattern (output_attentions=True)",
                     atol=1e-6)


# ----------------------------------------------------------------------------- 8. pooler


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
