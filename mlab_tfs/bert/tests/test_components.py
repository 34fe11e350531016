"""Exercises 1-5 and 7: each building block against transformers' own module.

Layer norm, embedding and the attention pattern are the learner's GPT-2 pieces, tested in
mlab_tfs/gpt2/tests; here they are tested as BERT uses them (its eps, its padding row)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from mlab_tfs.bert.mistakes import MISTAKES as M
from mlab_tfs.hooks import capture
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.mistakes import likely

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
            M["no_token_type_embeddings"]: ref.LayerNorm(w + p),
            M["no_position_embeddings"]: ref.LayerNorm(w + t),
            M["no_embedding_layer_norm"]: w + p + t,
            M["default_layer_norm_eps"]:  # here config.layer_norm_eps is 1e-3
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
        f"padding_mask should return a bool tensor (True = may attend), got "
        f"{getattr(actual, 'dtype', type(actual))}\n  {likely(M['padding_mask_not_bool'])}"
    )
    expected = attention_mask.bool()[:, None, None, :]
    mistakes = {M["inverted_padding_mask"]: (~expected).float(),
                M["padding_mask_on_queries"]: expected.transpose(-1, -2).float()}
    S = attention_mask.shape[-1]
    # The keys' S in another dim than the last: the mask would hide queries (or heads), not keys.
    assert actual.shape == expected.shape or actual.shape[-1:] == (S,) or S not in actual.shape, (
        f"padding_mask(attention_mask) has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}: the keys "
        f"are the last dim of the scores (B, nh, T, S)\n  {likely(M['padding_mask_on_queries'])}")
    hint = ("(B, 1, 1, S): the mask is on keys, the last dim of the scores (B, nh, T, S)"
            if actual.numel() == expected.numel() else "(B, 1, 1, S), broadcast over heads and queries")
    assert_close(actual.float(), expected.float(), name="padding_mask(attention_mask)", atol=0, mistakes=mistakes,
                 hint=hint)


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
    ref = model.encoder.layer[1].attention.self
    with torch.no_grad():
        expected, expected_pattern = ref(x, attention_mask=additive(keep))
        nh = cfg.num_attention_heads
        q, k = (rearrange(lin(x), "b t (nh hs) -> b nh t hs", nh=nh) for lin in (ref.query, ref.key))
        by_hidden_size = torch.softmax((q @ k.transpose(-1, -2) / math.sqrt(cfg.hidden_size)).masked_fill(
            ~keep, torch.finfo(x.dtype).min), dim=-1)  # (B, nh, T, S)
        merged_wrongly = rearrange(expected, "b t (nh hs) -> b t (hs nh)", nh=nh)
        after_softmax = torch.softmax(q @ k.transpose(-1, -2) * cfg.head_dim**-0.5, dim=-1).masked_fill(~keep, 0.0)
    assert seen[0] is not None, "BertSelfAttention never called self.hook_pattern(pattern): pass the pattern through it"
    assert_close(seen[0], expected_pattern, name="attention pattern (hook_pattern)", atol=1e-6,
                 mistakes={M["attention_scale_hidden_size"]: by_hidden_size,
                           M["attention_mask_after_softmax"]: after_softmax},
                 hint="query/key/value are separate nn.Linear(C, C); split heads with "
                      "'b t (nh hs) -> b nh t hs'")
    assert_close(out, expected, name="BertSelfAttention output (before the output dense)", atol=1e-5,
                 mistakes={M["attention_heads_merged_wrongly"]: merged_wrongly},
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
            M["attention_pre_ln"]:
                x + ref.output.dense(ref.self(ref.output.LayerNorm(x), attention_mask=additive(keep))[0]),
            M["attention_no_residual"]:
                ref.output.LayerNorm(ref.output.dense(y)),
            M["attention_no_output_layer_norm"]: x + ref.output.dense(y),
            M["padding_mask_on_queries"]: ref.output.LayerNorm(ref.output.dense(y_queries) + x),
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
        M["tanh_gelu"]:
            0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        M["sigmoid_gelu"]: x * torch.sigmoid(1.702 * x),
        M["gelu_erf_over_2"]: 0.5 * x * (1 + torch.erf(x / 2)),
        M["gelu_no_half"]: x * (1 + torch.erf(x / math.sqrt(2))),
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
                     mistakes={M["tanh_gelu"]: tanh},
                     hint="dense (C -> intermediate_size), then the erf GELU")
        hh = layer.intermediate(x)
        with shortcuts():
            y = out(hh, x)
        mistakes = {
            M["mlp_no_residual"]: layer.output.LayerNorm(layer.output.dense(hh)),
            M["mlp_pre_ln"]: x + layer.output.dense(hh),
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
            M["block_pre_ln"]: pre,
            M["mlp_reads_block_input"]:
                ref.output(ref.intermediate(x), a),
            M["mlp_residual_block_input"]:
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
            M["pooler_mean"]: torch.tanh(ref.dense(x.mean(1))),
            M["pooler_last_token"]: torch.tanh(ref.dense(x[:, -1])),
            M["pooler_no_tanh"]: ref.dense(x[:, 0]),
        }
        assert_close(ours(x), ref(x), name="BertPooler output", atol=1e-6, mistakes=mistakes,
                     hint="tanh(dense(x[:, 0])): the hidden state of the first token, [CLS]")
