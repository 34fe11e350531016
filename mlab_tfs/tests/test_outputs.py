"""The output containers behave as transformers' ModelOutput where code relies on it:
iteration and ``keys()`` over the fields that are set, ``values()``/``items()`` in the same
order, ``out[0]`` / slices over the values, string keys (transformers/utils/generic.py)."""

from __future__ import annotations

import pytest
import torch
from transformers.modeling_outputs import MaskedLMOutput as HFMaskedLMOutput

from mlab_tfs.outputs import MaskedLMOutput


@pytest.mark.parametrize("with_loss", [True, False])
def test_iteration_keys_values_and_indexing_match_transformers(with_loss):
    loss, logits = torch.tensor(1.5), torch.arange(6.0).reshape(1, 2, 3)
    hidden = (torch.zeros(1, 2, 4), torch.ones(1, 2, 4))
    kwargs = dict(loss=loss if with_loss else None, logits=logits, hidden_states=hidden)
    ours, theirs = MaskedLMOutput(**kwargs), HFMaskedLMOutput(**kwargs)
    expected_keys = (["loss"] if with_loss else []) + ["logits", "hidden_states"]
    assert list(ours) == list(theirs) == list(ours.keys()) == list(theirs.keys()) == expected_keys
    assert len(ours) == len(theirs) == len(expected_keys)
    assert [k for k, _ in ours.items()] == expected_keys
    for mine, hf in zip(ours.values(), theirs.values()):
        assert mine is hf  # the same objects, in the same order
    assert ours[0] is theirs[0] is (loss if with_loss else logits)  # Trainer's outputs[0]
    assert ours[1:] == theirs[1:]
    assert ours["logits"] is logits and ("attentions" in ours) is ("attentions" in theirs) is False
    assert ours.to_tuple() == theirs.to_tuple()
    with pytest.raises(KeyError):
        ours["attentions"]  # a field that is None is not a key, as in transformers


def test_item_and_attribute_assignment_stay_in_step_as_in_transformers():
    """out["k"] = v sets out.k and the reverse; a field set from None appears in keys(); a key
    that is not a field is added after the fields (transformers/utils/generic.py)."""
    logits, loss, extra = torch.ones(1, 2, 3), torch.tensor(0.5), torch.zeros(2)
    ours, theirs = MaskedLMOutput(logits=logits), HFMaskedLMOutput(logits=logits)
    for out in (ours, theirs):
        out["loss"] = loss
        assert out.loss is loss and out["loss"] is loss
        out.logits = logits * 2
        assert torch.equal(out["logits"], logits * 2)
        out["extra"] = extra
        assert out.extra is extra
    # The same keys and values; ours keep field order (loss first, so out[0] is the loss as
    # Trainer reads it), where transformers' OrderedDict appends a field set late.
    assert list(ours.keys()) == ["loss", "logits", "extra"] and list(theirs.keys()) == ["logits", "loss", "extra"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs.keys())
    assert ours[0] is loss and ours[2] is extra


@pytest.mark.parametrize("op", [
    lambda out: out.pop("logits"), lambda out: out.update(logits=None), lambda out: out.setdefault("loss", 1),
    lambda out: out.__delitem__("logits"),
])
def test_removing_keys_is_refused_as_in_transformers(op):
    ours, theirs = MaskedLMOutput(logits=torch.ones(1)), HFMaskedLMOutput(logits=torch.ones(1))
    with pytest.raises(Exception, match="You cannot use"):
        op(theirs)
    with pytest.raises(TypeError, match="You cannot use"):
        op(ours)
    assert ours.keys() == ["logits"]


@pytest.mark.parametrize("key, error", [(0, TypeError), ("keys", KeyError), ("_private", KeyError)])
def test_a_key_that_would_shadow_a_method_is_refused(key, error):
    with pytest.raises(error):
        MaskedLMOutput()[key] = torch.ones(1)
