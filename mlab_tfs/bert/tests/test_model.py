"""Exercises 6 and 7: BertModel against transformers' BertModel, outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.bert.mistakes import MISTAKES as M
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.tiny import BERT_CONFIGS

from .helpers import assert_bert_grads_close, batch, config_of, hf_grads_as_ours, load_into, shortcuts

ATOL = 1e-5  # fp32 hidden states and losses
GRAD_RTOL = 1e-5  # per parameter, relative to its largest gradient entry
CONFIGS = list(BERT_CONFIGS)


def pair(bert, hf, name, add_pooling_layer=True):
    """(ours, transformers') BertModel from one checkpoint; ours loaded with the solution's name map."""
    ref = hf(name, "model")
    return load_into(bert.BertModel(config_of(ref), add_pooling_layer=add_pooling_layer), ref, "model"), ref


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", CONFIGS)
def test_hidden_states_and_gradients(bert, hf, name):
    model, ref = pair(bert, hf, name, add_pooling_layer=False)
    ids, mask, types, real = batch(model.config)
    with shortcuts():
        out = model(ids, attention_mask=mask, token_type_ids=types)
    ref.zero_grad()
    expected = ref(ids, attention_mask=mask, token_type_ids=types)
    assert out.pooler_output is None, "BertModel(config, add_pooling_layer=False) has no pooler: pooler_output is None"
    with torch.no_grad():
        mistakes = {M["mask_not_passed"]: lambda: ref(ids, token_type_ids=types).last_hidden_state[real],
                    M["token_type_ids_ignored"]: lambda: ref(ids, attention_mask=mask).last_hidden_state[real]}
    assert_close(out.last_hidden_state[real], expected.last_hidden_state[real],
                 name="last_hidden_state (non-padded positions)", atol=ATOL, mistakes=mistakes,
                 hint="run exercises 1-5 (and GPT-2's 1-3) first; then check the embeddings' inputs (token types, positions 0..T-1) "
                      "and that the padding mask reaches every layer")
    # Backpropagate from real positions only (padding outputs are never used).
    g = torch.randn(expected.last_hidden_state.shape, generator=torch.Generator().manual_seed(1)) * real[..., None]
    (out.last_hidden_state * g).sum().backward()
    (expected.last_hidden_state * g).sum().backward()
    assert_bert_grads_close(model, hf_grads_as_ours(ref, model, "model"), rtol=GRAD_RTOL,
                            hint="the word embedding's padding row must get no gradient (Embedding's padding_idx)")
    ref.zero_grad()


@pytest.mark.exercise("model")
def test_defaults_token_types_zero_positions_from_zero(bert, hf):
    model, ref = pair(bert, hf, "deep_narrow_heads", add_pooling_layer=False)
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert_close(model(ids).last_hidden_state, ref(ids).last_hidden_state, name="last_hidden_state, no mask",
                     atol=ATOL, hint="without token_type_ids every token is segment 0; positions are 0..T-1")
        pos = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5]])
        assert_close(model(ids, position_ids=pos).last_hidden_state, ref(ids, position_ids=pos).last_hidden_state,
                     name="last_hidden_state with position_ids", atol=ATOL,
                     mistakes={M["position_ids_ignored"]: ref(ids).last_hidden_state},
                     hint="use the position_ids you are given")


@pytest.mark.exercise("model")
def test_hidden_states_and_attentions(bert, hf):
    model, ref = pair(bert, hf, "deep_narrow_heads")
    ids, mask, types, real = batch(model.config, seed=1)
    kwargs = dict(attention_mask=mask, token_type_ids=types, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        out, expected = model(ids, **kwargs), ref(ids, **kwargs)
    n = model.config.num_hidden_layers
    assert out.hidden_states is not None and len(out.hidden_states) == n + 1, (
        f"hidden_states should hold num_hidden_layers + 1 = {n + 1} tensors (the embeddings, then each layer's "
        f"output), got {None if out.hidden_states is None else len(out.hidden_states)}"
    )
    for i, (h, e) in enumerate(zip(out.hidden_states, expected.hidden_states)):
        assert_close(h[real], e[real], name=f"hidden_states[{i}]", atol=ATOL,
                     hint="hidden_states[0] is the embeddings' output, then the output of each layer")
    assert out.attentions is not None and len(out.attentions) == n, f"attentions should hold {n} tensors"
    for i, (a, e) in enumerate(zip(out.attentions, expected.attentions)):
        assert_close(a.transpose(1, 2)[real], e.transpose(1, 2)[real], name=f"attentions[{i}] (real queries)",
                     atol=1e-6, hint="each pattern is (B, nh, T, T)")


@pytest.mark.exercise("model")
def test_output_fields(bert, hf):
    model, _ = pair(bert, hf, "base")
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(0))
    out = model(ids)
    assert out.hidden_states is None and out.attentions is None and out.past_key_values is None, (
        "without output_hidden_states or output_attentions those fields are None"
    )
    assert torch.equal(out[0], out.last_hidden_state) and torch.equal(out["last_hidden_state"], out[0])


# ----------------------------------------------------------------------------- 7. pooler


@pytest.mark.exercise("pooler")
@pytest.mark.parametrize("name", CONFIGS)
def test_pooler_output_and_gradients(bert, hf, name):
    model, ref = pair(bert, hf, name)
    ids, mask, types, real = batch(model.config, seed=3)
    out = model(ids, attention_mask=mask, token_type_ids=types)
    ref.zero_grad()
    expected = ref(ids, attention_mask=mask, token_type_ids=types)
    assert_close(out.pooler_output, expected.pooler_output, name="pooler_output", atol=ATOL,
                 hint="BertModel.__init__ builds self.pooler = BertPooler(config) when add_pooling_layer, and "
                      "forward returns pooler_output=self.pooler(last_hidden_state)")
    out.pooler_output.pow(2).sum().backward()
    expected.pooler_output.pow(2).sum().backward()
    assert_bert_grads_close(model, hf_grads_as_ours(ref, model, "model"), rtol=GRAD_RTOL)
    ref.zero_grad()


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def base_model(bert, hf):
    return pair(bert, hf, "base")[0]  # vocab 99, 40 positions, 2 token types


def _ids(*shape):
    return torch.zeros(*shape, dtype=torch.long)


BAD_INPUTS = {
    "negative id": (lambda: dict(input_ids=torch.tensor([[1, -1]])), "input_ids"),
    "id == vocab_size": (lambda: dict(input_ids=torch.tensor([[1, 99]])), "input_ids"),
    "float ids": (lambda: dict(input_ids=torch.tensor([[1.0, 2.0]])), "input_ids"),
    "1-d ids": (lambda: dict(input_ids=torch.tensor([1, 2])), "input_ids"),
    "longer than max_position_embeddings": (lambda: dict(input_ids=_ids(1, 41)), "max_position_embeddings"),
    "token type == type_vocab_size": (lambda: dict(input_ids=_ids(1, 3), token_type_ids=torch.tensor([[0, 1, 2]])),
                                      "token_type_ids"),
    "negative token type": (lambda: dict(input_ids=_ids(1, 2), token_type_ids=torch.tensor([[0, -1]])),
                            "token_type_ids"),
    "float token types": (lambda: dict(input_ids=_ids(1, 2), token_type_ids=torch.zeros(1, 2)), "token_type_ids"),
    "token types wrong length": (lambda: dict(input_ids=_ids(2, 3), token_type_ids=_ids(2, 4)), "token_type_ids"),
    "mask wrong length": (lambda: dict(input_ids=_ids(2, 3), attention_mask=torch.ones(2, 4)), "attention_mask"),
    "mask wrong batch": (lambda: dict(input_ids=_ids(2, 3), attention_mask=torch.ones(1, 3)), "attention_mask"),
    "mask 3-d": (lambda: dict(input_ids=_ids(2, 3), attention_mask=torch.ones(2, 1, 3)), "attention_mask"),
    "mask not 0/1": (lambda: dict(input_ids=_ids(1, 3), attention_mask=torch.tensor([[0.5, 1.0, 1.0]])),
                     "attention_mask"),
    "position past the table": (lambda: dict(input_ids=_ids(1, 2), position_ids=torch.tensor([[0, 40]])),
                                "position_ids"),
    "position_ids wrong shape": (lambda: dict(input_ids=_ids(1, 2), position_ids=torch.tensor([[0, 1, 2]])),
                                 "position_ids"),
}


@pytest.mark.exercise("model")
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error(base_model, case):
    make, argument = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=argument):
        base_model(**make())


@pytest.mark.exercise("model")
def test_non_tensor_input_is_a_type_error(base_model):
    with pytest.raises(TypeError, match="input_ids"):
        base_model([[1, 2, 3]])


@pytest.mark.exercise("model")
def test_bert_model_takes_no_labels(base_model):
    """BertModel has no head, so no loss: labels is not an argument (transformers' BertModel
    has none either), and passing it is Python's TypeError naming it."""
    with pytest.raises(TypeError, match="labels"):
        base_model(_ids(1, 2), labels=_ids(1, 2))
