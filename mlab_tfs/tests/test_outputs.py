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
