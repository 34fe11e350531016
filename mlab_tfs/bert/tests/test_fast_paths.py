"""The solution's fast path (attn_implementation="sdpa") equals the hand-written one."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.bert import solution
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.tiny import BERT_CONFIGS

from .helpers import assert_bert_grads_close, batch, hf_grads_as_ours

pytestmark = pytest.mark.solution_only


@pytest.mark.parametrize("name", list(BERT_CONFIGS))
def test_sdpa_equals_eager_outputs_and_gradients(checkpoint, name):
    folder = checkpoint(name, "mlm")
    eager = solution.BertForMaskedLM.from_pretrained(folder, attn_implementation="eager")
    sdpa = solution.BertForMaskedLM.from_pretrained(folder)
    assert sdpa.config.attn_implementation == "sdpa", "sdpa is the default, as in transformers"
    ids, mask, types, _ = batch(eager.config, seed=10)
    mask[3] = 0  # an all-padding row: its queries see no key, and output 0 on both paths
    labels = ids.masked_fill(mask == 0, -100)
    kwargs = dict(attention_mask=mask, token_type_ids=types, labels=labels)
    a, b = eager(ids, **kwargs), sdpa(ids, **kwargs)
    assert_close(b.logits, a.logits, name="sdpa logits (padding included)", atol=1e-5)
    assert_close(b.loss, a.loss, name="sdpa loss", atol=1e-6)
    a.loss.backward()
    b.loss.backward()
    assert_grads_close({n: p.grad for n, p in sdpa.named_parameters() if not n.endswith("key.bias")},
                       {n: p.grad for n, p in eager.named_parameters() if not n.endswith("key.bias")}, rtol=1e-5)


def test_sdpa_falls_back_for_attention_patterns(checkpoint):
    folder = checkpoint("base", "model")
    eager = solution.BertModel.from_pretrained(folder, attn_implementation="eager")
    sdpa = solution.BertModel.from_pretrained(folder)
    ids = torch.randint(0, 99, (1, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        for i, (x, y) in enumerate(zip(eager(ids, output_attentions=True).attentions,
                                       sdpa(ids, output_attentions=True).attentions)):
            assert_close(y, x, name=f"sdpa attentions[{i}]", atol=0)


def _hf_mlm(folder, attn_implementation=None):
    """transformers' BertForMaskedLM; without attn_implementation, its default path (sdpa)."""
    import transformers

    extra = {} if attn_implementation is None else dict(attn_implementation=attn_implementation)
    model = transformers.BertForMaskedLM.from_pretrained(folder, dtype=torch.float32, **extra).eval()
    assert attn_implementation is not None or model.config._attn_implementation == "sdpa"
    return model


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_all_padding_sequence_equals_transformers_default(checkpoint, attn):
    """A sequence that is all padding: each of its queries sees no key. Finite, and equal to
    transformers' default from_pretrained model everywhere, gradients included."""
    folder = checkpoint("base", "mlm")
    ours = solution.BertForMaskedLM.from_pretrained(folder, attn_implementation=attn)
    hf = _hf_mlm(folder)
    ids, mask, types, _ = batch(ours.config, seed=11)
    mask[1] = 0
    kwargs = dict(attention_mask=mask, token_type_ids=types, labels=ids.masked_fill(mask == 0, -100))
    out, expected = ours(ids, **kwargs), hf(ids, **kwargs)
    assert bool(torch.isfinite(out.logits).all()), "non-finite logits with an all-padding sequence"
    assert_close(out.logits, expected.logits, name=f"MLM logits ({attn}), the all-padding sequence included",
                 atol=1e-5)
    assert_close(out.loss, expected.loss, name=f"MLM loss ({attn})", atol=1e-5)
    # Gradients through every position, padding included (the loss alone never reads padding).
    g = torch.randn(out.logits.shape, generator=torch.Generator().manual_seed(12))
    hf.zero_grad()
    (out.logits * g).sum().backward()
    (expected.logits * g).sum().backward()
    assert_bert_grads_close(ours, hf_grads_as_ours(hf, ours, "mlm"), rtol=1e-4)


def test_transformers_eager_path_differs_on_an_all_padding_sequence(checkpoint):
    """Documents where transformers' paths differ: eager gives the all-padding sequence a
    uniform pattern over its (padding) keys, the default sdpa path zeros; ours is the latter."""
    folder = checkpoint("base", "mlm")
    ours, default, eager = solution.BertForMaskedLM.from_pretrained(folder), _hf_mlm(folder), _hf_mlm(folder, "eager")
    ids, mask, types, real = batch(ours.config, seed=13)
    mask[2] = 0
    kwargs = dict(attention_mask=mask, token_type_ids=types)
    with torch.no_grad():
        a, b, c = (m(ids, **kwargs).logits for m in (ours, default, eager))
    assert_close(a, b, name="logits vs transformers' default", atol=1e-5)
    assert_close(c[mask.bool()], b[mask.bool()], name="transformers' eager vs default at real tokens", atol=1e-5)
    assert float((c[2] - b[2]).abs().max()) > 1e-3, "transformers' eager path now agrees on all-padding sequences"


def test_set_attn_implementation(checkpoint):
    model = solution.BertForSequenceClassification.from_pretrained(checkpoint("base", "classifier"),
                                                                   attn_implementation=None)
    assert model.config.attn_implementation == "sdpa", "attn_implementation=None is the default, as in transformers"
    ids, mask, types, _ = batch(model.config, seed=14)
    with torch.no_grad():
        fused = model(ids, attention_mask=mask, token_type_ids=types).logits
        model.set_attn_implementation("eager")
        assert all(layer.attention.self.config is model.config for layer in model.bert.encoder.layer)
        eager = model(ids, attention_mask=mask, token_type_ids=types).logits
    assert_close(eager, fused, name="classifier logits after set_attn_implementation('eager')", atol=1e-5)
    with pytest.raises(ValueError, match=r"attn_implementation must be one of \('eager', 'sdpa'\), got 'flash'"):
        model.set_attn_implementation("flash")


def test_an_unknown_path_on_the_config_is_an_error_at_forward(checkpoint):
    model = solution.BertModel.from_pretrained(checkpoint("base", "model"))
    model.config.attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match=r"config.attn_implementation must be one of \('eager', 'sdpa'\), "
                                         r"got 'flex_attention'"):
        model(torch.zeros(1, 3, dtype=torch.long))


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_all_padding_sequence_in_float16_is_zero_with_finite_gradients(checkpoint, attn):
    """float16, every score of an all-padding sequence -18: finfo.min *added* to them rounds to
    -inf (a NaN softmax row, NaN gradients even with the row zeroed afterwards). Its queries'
    outputs are exactly 0 and pass back exactly 0; the real sequence's gradients stay finite."""
    model = solution.BertModel.from_pretrained(checkpoint("base", "model"), attn_implementation=attn,
                                               dtype=torch.float16)
    layer = model.encoder.layer[0].attention.self
    C = model.config.hidden_size
    with torch.no_grad():  # q = -3 and k = 3 in every coordinate: each score is -9 * hs * hs**-0.5 = -18
        for lin, b in ((layer.query, -3.0), (layer.key, 3.0)):
            lin.weight.zero_()
            lin.bias.fill_(b)
    x = torch.randn(2, 5, C, generator=torch.Generator().manual_seed(15)).half().requires_grad_()
    mask = solution.padding_mask(torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]))
    y = layer(x, mask)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(16)).half()
    (y.float() * g).sum().backward()
    assert_close(y[1], torch.zeros(5, C, dtype=torch.float16), name=f"float16 outputs of the all-padding sequence "
                 f"({attn})", atol=0, hint="fill masked scores with finfo.min (masked_fill), don't add it")
    assert_close(x.grad[1], torch.zeros(5, C, dtype=torch.float16), name="float16 gradient of the all-padding "
                 "sequence's input", atol=0)
    grads = {"x": x.grad, **{n: p.grad for n, p in layer.named_parameters()}}
    bad = [n for n, t in grads.items() if not bool(torch.isfinite(t).all())]
    assert not bad, f"non-finite float16 gradients ({attn}) for {bad}"


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.long])
def test_the_attention_layer_refuses_a_mask_that_is_not_bool(checkpoint, attn, dtype):
    """transformers' additive float mask, or a 0/1 integer one, would be inverted bit-wise
    (~1 is -2) or fail deep inside; it is a TypeError naming the argument on both paths."""
    model = solution.BertModel.from_pretrained(checkpoint("base", "model"), attn_implementation=attn)
    mask = torch.ones(1, 1, 1, 4, dtype=dtype)
    with pytest.raises(TypeError, match=rf"BertSelfAttention: mask must be a bool tensor.*got a tensor of dtype "
                                        rf"{dtype}"):
        model.encoder.layer[0].attention.self(torch.randn(1, 4, model.config.hidden_size), mask)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        solution.attention_pattern(torch.randn(1, 1, 4, 8), torch.randn(1, 1, 4, 8), mask, 1.0)
