"""DebertaV2Config: every field checked where it is built, and every field that changes the
computation equal to transformers' DeBERTa-v2 with the same value (logits, loss, gradients)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mlab_tfs.activations import ACTIVATIONS
from mlab_tfs.deberta import solution
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.fields import assert_init_like, bad_cases
from mlab_tfs.testing.tiny import DEBERTA_COMMON

from .helpers import (
    assert_model_grads_close,
    deberta_checkpoint,
    hf_deberta,
    mlm_labels,
    named_grads,
    right_padded_batch,
)

FIELDS = {
    "vocab_size": "positive_int", "hidden_size": "positive_int", "num_hidden_layers": "positive_int",
    "num_attention_heads": "positive_int", "intermediate_size": "positive_int", "hidden_act": "choice",
    "hidden_dropout_prob": "probability", "attention_probs_dropout_prob": "probability",
    "max_position_embeddings": "positive_int", "type_vocab_size": "non_negative_int",
    "initializer_range": "non_negative_float", "layer_norm_eps": "positive_float", "pad_token_id": "token_id",
    "position_biased_input": "bool", "embedding_size": "optional_positive_int", "relative_attention": "bool",
    "max_relative_positions": "int", "position_buckets": "int", "share_att_key": "bool",
    "conv_kernel_size": "non_negative_int", "conv_groups": "positive_int", "conv_act": "choice", "legacy": "bool",
    "tie_word_embeddings": "bool",
    # Parsed forms, tested below.
    "pos_att_type": None, "norm_rel_ebd": None,
}
SMALL = dict(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
             max_position_embeddings=16)
EXTRA_BAD = [("pad_token_id", 50), ("pos_att_type", 3), ("pos_att_type", ["c2p", 1]), ("pos_att_type", "c2q"),
             ("norm_rel_ebd", None), ("norm_rel_ebd", "batch_norm"), ("norm_rel_ebd", 1)]


def test_every_field_is_listed():
    assert sorted(FIELDS) == sorted(f.name for f in dataclasses.fields(solution.DebertaV2Config))


@pytest.mark.parametrize("field,value", bad_cases({k: v for k, v in FIELDS.items() if v}) + EXTRA_BAD, ids=repr)
def test_bad_field_value_is_refused_naming_it(field, value):
    with pytest.raises(ValueError, match=f"DebertaV2Config\\.{field}"):
        solution.DebertaV2Config(**{**SMALL, field: value})


def test_from_dict_needs_a_dict():
    with pytest.raises(TypeError, match="DebertaV2Config.from_dict needs a dict"):
        solution.DebertaV2Config.from_dict("config.json")


# ---------------------------------------------------------------------------------------
# Parity with transformers, one field at a time, on top of a relative-attention base
# ---------------------------------------------------------------------------------------

BASE = dict(DEBERTA_COMMON, relative_attention=True, pos_att_type="p2c|c2p", position_buckets=-1, max_relative_positions=-1,
            share_att_key=True, norm_rel_ebd="none", position_biased_input=False, type_vocab_size=0,
            initializer_range=0.1, legacy=True)
PARITY = {
    **{f"hidden_act_{a}": dict(hidden_act=a) for a in ACTIVATIONS},
    **{f"conv_act_{a}": dict(conv_kernel_size=3, conv_act=a) for a in ("gelu", "relu", "tanh", "quick_gelu")},
    "conv_groups": dict(conv_kernel_size=5, conv_groups=4),
    "layer_norm_eps": dict(layer_norm_eps=0.3),
    "max_relative_positions_clamped": dict(max_relative_positions=2),
    "max_relative_positions_wide": dict(max_relative_positions=30),
    "position_buckets": dict(position_buckets=6, max_relative_positions=20),
    "position_buckets_default_max": dict(position_buckets=4),
    "share_att_key_off": dict(share_att_key=False),
    "norm_rel_ebd": dict(norm_rel_ebd="layer_norm"),
    "c2p_only": dict(pos_att_type=["c2p"]),
    "p2c_only": dict(pos_att_type=["p2c"]),
    "no_relative_terms": dict(pos_att_type=[]),
    "no_relative_attention": dict(relative_attention=False, pos_att_type=[]),
    "position_biased_input": dict(position_biased_input=True),
    "embedding_size": dict(embedding_size=24, position_biased_input=True),
    "type_vocab_size": dict(type_vocab_size=3),
    "pad_token_id": dict(pad_token_id=7),
    "untied": dict(tie_word_embeddings=False),
    "original_head": dict(legacy=False),
}


@pytest.fixture(scope="module")
def parity_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("deberta_fields")
    return {name: deberta_checkpoint(root / name, "v3", seed=i, **{**BASE, **overrides})
            for i, (name, overrides) in enumerate(PARITY.items())}


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", list(PARITY))
def test_field_matches_transformers(deberta, parity_folders, name):
    folder = parity_folders[name]
    hf = hf_deberta(folder)
    ours = deberta.DebertaV2ForMaskedLM.from_pretrained(folder)
    for field, value in PARITY[name].items():
        assert getattr(ours.config, field) == value
    ids, mask, types = right_padded_batch(ours.config.vocab_size, [9, 5, 7], seed=3,
                                          type_vocab_size=ours.config.type_vocab_size)
    ids = ids.masked_fill(mask == 0, ours.config.pad_token_id)
    labels = mlm_labels(ids, mask, seed=3)
    kwargs = dict(attention_mask=mask, token_type_ids=types, labels=labels)
    out, ref = ours(ids, **kwargs), hf(ids, **kwargs)
    assert_close(out.logits, ref.logits, name=f"logits with {PARITY[name]}", atol=1e-5)
    assert_close(out.loss, ref.loss, name=f"loss with {PARITY[name]}", atol=1e-5)
    out.loss.backward()
    ref.loss.backward()
    assert_model_grads_close(named_grads(ours), named_grads(hf), ours.config)


DROPOUTS = {"hidden_dropout_prob": dict(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.0),
            "attention_probs_dropout_prob": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.3),
            "both_with_conv": dict(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3, conv_kernel_size=3)}


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", list(DROPOUTS))
def test_dropout_fields_in_train_mode(deberta, tmp_path, name):
    """Each dropout field drops where transformers' does (train mode, the same seed: the same
    masks drawn in the same order)."""
    folder = deberta_checkpoint(tmp_path, "v3", **{**BASE, **DROPOUTS[name]})
    hf = hf_deberta(folder).train()
    ours = deberta.DebertaV2ForMaskedLM.from_pretrained(folder).train()
    ids, mask, _ = right_padded_batch(ours.config.vocab_size, [9, 5, 7], seed=3)
    torch.manual_seed(11)
    a = ours(ids, attention_mask=mask).logits
    torch.manual_seed(11)
    b = hf(ids, attention_mask=mask).logits
    assert_close(a, b, name=f"train-mode logits with {DROPOUTS[name]}", atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(a, ours.eval()(ids, attention_mask=mask).logits), "dropout should act in train mode"


@pytest.mark.solution_only
@pytest.mark.parametrize("legacy", [True, False])
def test_initializer_range_initialises_as_transformers(legacy):
    import transformers

    cfg = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
               max_position_embeddings=64, type_vocab_size=3, initializer_range=0.37, relative_attention=True,
               pos_att_type=["c2p", "p2c"], position_buckets=32, norm_rel_ebd="layer_norm", share_att_key=False,
               position_biased_input=True, conv_kernel_size=3, legacy=legacy)
    torch.manual_seed(0)
    ours = solution.DebertaV2ForMaskedLM(solution.DebertaV2Config(**cfg))
    theirs = transformers.DebertaV2ForMaskedLM(transformers.DebertaV2Config(**cfg)).state_dict()
    assert_init_like(ours.state_dict(), {k: v for k, v in theirs.items() if not k.startswith("cls.predictions.decoder")})
