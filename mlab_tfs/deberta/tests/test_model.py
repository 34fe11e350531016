"""Exercise 7: the whole model against transformers' DebertaV2ForMaskedLM and DebertaV2Model,
outputs, MLM loss and every gradient, on padded batches; and bad input."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.testing.compare import assert_close

from .helpers import DEBERTA_CONFIGS, assert_model_grads_close, mlm_labels, named_grads, right_padded_batch

ATOL = 1e-5  # fp32 logits, hidden states and losses


def _batch(cfg, seed=0, lengths=(9, 5, 7, 2)):
    ids, mask, types = right_padded_batch(cfg.vocab_size, list(lengths), seed, cfg.type_vocab_size)
    return ids, dict(attention_mask=mask, token_type_ids=types), mlm_labels(ids, mask, seed)


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", list(DEBERTA_CONFIGS))
def test_logits_loss_and_gradients(deberta, checkpoints, hf_models, name):
    model = deberta.DebertaV2ForMaskedLM.from_pretrained(checkpoints[name])
    hf = hf_models[name]
    ids, kwargs, labels = _batch(model.config, seed=len(name))
    out = model(ids, labels=labels, **kwargs)
    hf.zero_grad()
    expected = hf(ids, labels=labels, **kwargs)
    assert_close(out.logits, expected.logits, name=f"logits ({name}, padded batch)", atol=ATOL,
                 hint="exercises 1-6 first: the component tests pin down which piece is off")
    assert_close(out.loss, expected.loss, name="MLM loss", atol=ATOL)
    out.loss.backward()
    expected.loss.backward()
    assert_model_grads_close(named_grads(model), named_grads(hf), model.config,
                             hint="outputs right but gradients wrong? Mask with masked_fill (not by adding), "
                                  "and keep the relative table inside the graph")
    hf.zero_grad()


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", ["v3", "v2_conv", "c2p_embed_proj"])
def test_hidden_states_and_attentions(deberta, checkpoints, hf_models, name):
    model = deberta.DebertaV2ForMaskedLM.from_pretrained(checkpoints[name])
    ids, kwargs, _ = _batch(model.config, seed=1)
    with torch.no_grad():
        out = model(ids, output_hidden_states=True, output_attentions=True, **kwargs)
        expected = hf_models[name](ids, output_hidden_states=True, output_attentions=True, **kwargs)
    n = model.config.num_hidden_layers
    assert len(out.hidden_states) == n + 1 and len(out.attentions) == n, (
        f"expected {n + 1} hidden states (embeddings, then each layer) and {n} attention patterns"
    )
    for i, (a, e) in enumerate(zip(out.hidden_states, expected.hidden_states)):
        assert_close(a, e, name=f"hidden_states[{i}]", atol=ATOL)
    for i, (a, e) in enumerate(zip(out.attentions, expected.attentions)):
        assert_close(a, e, name=f"attentions[{i}]", atol=1e-6)


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", ["v3", "p2c_buckets_untied", "absolute_only"])
def test_base_model_matches_transformers(deberta, checkpoints, name):
    import transformers

    model = deberta.DebertaV2Model.from_pretrained(checkpoints[name])  # from an MLM checkpoint: head dropped
    hf = transformers.DebertaV2Model.from_pretrained(checkpoints[name], attn_implementation="eager").eval()
    ids, kwargs, _ = _batch(model.config, seed=2)
    with torch.no_grad():
        assert_close(model(ids, **kwargs).last_hidden_state, hf(ids, **kwargs).last_hidden_state,
                     name=f"DebertaV2Model last_hidden_state ({name})", atol=ATOL)


@pytest.mark.exercise("model")
def test_unpadded_defaults(deberta, checkpoints, hf_models):
    """No mask, no token types, no position ids: the defaults are all-real, type 0, 0..T-1."""
    model = deberta.DebertaV2ForMaskedLM.from_pretrained(checkpoints["c2p_embed_proj"])
    ids = torch.randint(0, model.config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close(model(ids).logits, hf_models["c2p_embed_proj"](ids).logits, name="logits (defaults)", atol=ATOL)


@pytest.mark.exercise("model")
def test_long_sequence_without_absolute_positions(deberta, checkpoints, hf_models):
    """both_unshared has max_position_embeddings=8 and no absolute positions: 20 tokens are fine,
    relative distances past k are clamped."""
    model = deberta.DebertaV2ForMaskedLM.from_pretrained(checkpoints["both_unshared"])
    ids = torch.randint(0, model.config.vocab_size, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(model(ids).logits, hf_models["both_unshared"](ids).logits, name="logits (T > k)", atol=ATOL)


@pytest.mark.exercise("model")
def test_output_fields(deberta, checkpoints):
    model = deberta.DebertaV2ForMaskedLM.from_pretrained(checkpoints["v3"])
    ids = torch.randint(0, 83, (2, 5), generator=torch.Generator().manual_seed(0))
    out = model(ids)
    assert out.loss is None and out.hidden_states is None and out.attentions is None, (
        "without labels, output_hidden_states or output_attentions those fields are None"
    )
    assert torch.equal(out[0], out.logits)
    with_loss = model(ids, labels=ids)
    assert torch.equal(with_loss[0], with_loss.loss), "as in transformers, out[0] is the loss when there is one"


@pytest.mark.exercise("model")
def test_heads_are_tied_as_in_transformers(deberta, checkpoints):
    tied = deberta.DebertaV2ForMaskedLM.from_pretrained(checkpoints["v2_conv"])
    head = tied.cls.predictions
    assert head.decoder.weight is tied.deberta.embeddings.word_embeddings.weight and head.decoder.bias is head.bias
    untied = deberta.DebertaV2ForMaskedLM.from_pretrained(checkpoints["p2c_buckets_untied"])
    assert untied.cls.predictions.decoder.weight is not untied.deberta.embeddings.word_embeddings.weight


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def models(deberta, checkpoints):
    return {name: deberta.DebertaV2ForMaskedLM.from_pretrained(checkpoints[name])
            for name in ("c2p_embed_proj", "v3")}


def _ids(*shape):
    return torch.ones(*shape, dtype=torch.long)


# (model, arguments, the name the error must mention). c2p_embed_proj: vocab 83, 2 token
# types, 24 absolute positions; v3: no token types, no absolute positions.
BAD_INPUTS = {
    "negative id": ("c2p_embed_proj", lambda: dict(input_ids=torch.tensor([[1, -1]])), "input_ids"),
    "id == vocab_size": ("c2p_embed_proj", lambda: dict(input_ids=torch.tensor([[1, 83]])), "input_ids"),
    "float ids": ("c2p_embed_proj", lambda: dict(input_ids=torch.tensor([[1.0, 2.0]])), "input_ids"),
    "1-d ids": ("c2p_embed_proj", lambda: dict(input_ids=torch.tensor([1, 2])), "input_ids"),
    "token type == type_vocab_size": ("c2p_embed_proj", lambda: dict(input_ids=_ids(1, 2),
                                      token_type_ids=torch.tensor([[0, 2]])), "token_type_ids"),
    "token type without token types": ("v3", lambda: dict(input_ids=_ids(1, 2), token_type_ids=torch.tensor([[0, 1]])),
                                       "token_type_ids"),
    "token types wrong shape": ("c2p_embed_proj", lambda: dict(input_ids=_ids(2, 3), token_type_ids=_ids(2, 4) * 0),
                                "token_type_ids"),
    "longer than max_position_embeddings": ("c2p_embed_proj", lambda: dict(input_ids=_ids(1, 25)),
                                            "max_position_embeddings"),
    "position past the table": ("c2p_embed_proj", lambda: dict(input_ids=_ids(1, 2),
                                position_ids=torch.tensor([[0, 24]])), "position_ids"),
    "mask wrong length": ("c2p_embed_proj", lambda: dict(input_ids=_ids(2, 3), attention_mask=_ids(2, 4)),
                          "attention_mask"),
    "mask wrong batch": ("v3", lambda: dict(input_ids=_ids(2, 3), attention_mask=_ids(1, 3)), "attention_mask"),
    "mask not 0/1": ("v3", lambda: dict(input_ids=_ids(1, 3), attention_mask=torch.tensor([[0.5, 1.0, 1.0]])),
                     "attention_mask"),
    "labels wrong shape": ("v3", lambda: dict(input_ids=_ids(1, 2), labels=_ids(1, 3)), "labels"),
    "label out of range": ("v3", lambda: dict(input_ids=_ids(1, 2), labels=torch.tensor([[0, 83]])), "labels"),
}


@pytest.mark.exercise("model")
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error(models, case):
    name, make, argument = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=argument):
        models[name](**make())


@pytest.mark.exercise("model")
def test_non_tensor_input_is_a_type_error(models):
    with pytest.raises(TypeError, match="input_ids"):
        models["v3"]([[1, 2, 3]])


@pytest.mark.exercise("model")
@pytest.mark.parametrize("flag", ["output_attentions", "output_hidden_states"])
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_output_flags_must_be_bools(models, flag, value):
    with pytest.raises(TypeError, match=flag):
        models["v3"](_ids(1, 3), **{flag: value})


@pytest.mark.exercise("model")
def test_the_base_model_takes_no_labels(models):
    """transformers' DebertaV2Model has no labels argument (no head to score them): neither has ours."""
    with pytest.raises(TypeError, match="labels"):
        models["v3"].deberta(_ids(1, 3), labels=_ids(1, 3))


@pytest.mark.exercise("model")
def test_long_input_is_fine_without_absolute_positions(models):
    out = models["v3"](_ids(1, 40))  # max_position_embeddings is 24, but v3 has no absolute positions
    assert out.logits.shape == (1, 40, 83)


@pytest.mark.exercise("model")
def test_float64_stays_float64(deberta, checkpoints):
    """GPT-2's precision rule: layer norms compute in the input's dtype (fp32 statistics only for
    fp16/bf16), so a float64 model equals transformers' float64 one to float64 rounding, not
    to float32's (a layer norm that downcasts to fp32 is off by about 5e-8 here)."""
    import transformers

    model = deberta.DebertaV2ForMaskedLM.from_pretrained(checkpoints["v2_conv"], dtype=torch.float64)
    hf = transformers.DebertaV2ForMaskedLM.from_pretrained(checkpoints["v2_conv"], dtype=torch.float64).eval()
    ids, kwargs, _ = _batch(model.config, seed=4)
    with torch.no_grad():
        out = model(ids, **kwargs).logits
        expected = hf(ids, **kwargs).logits
    assert out.dtype == torch.float64
    assert_close(out, expected, name="float64 logits", atol=1e-10,
                 hint="keep float64 in float64: statistics in fp32 only for half-precision inputs")
