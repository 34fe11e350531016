"""GPT2Config: every field checked where it is built, and every field that changes the
computation equal to transformers' GPT-2 with the same value (logits and gradients)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mlab_tfs import activations
from mlab_tfs.gpt2 import solution
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.fields import assert_init_like, bad_cases

from .helpers import hf_grads_as_ours

FIELDS = {
    "vocab_size": "positive_int", "n_positions": "positive_int", "n_embd": "positive_int", "n_layer": "positive_int",
    "n_head": "positive_int", "n_inner": "optional_positive_int", "activation_function": "choice",
    "resid_pdrop": "probability", "embd_pdrop": "probability", "attn_pdrop": "probability",
    "layer_norm_epsilon": "positive_float", "initializer_range": "non_negative_float",
    "scale_attn_weights": "bool", "scale_attn_by_inverse_layer_idx": "bool", "reorder_and_upcast_attn": "bool",
    "tie_word_embeddings": "bool", "bos_token_id": "token_id", "eos_token_id": "token_id", "pad_token_id": "token_id",
    "attn_implementation": "choice",
}
SMALL = dict(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2)


def test_every_field_is_listed():
    assert sorted(FIELDS) == sorted(f.name for f in dataclasses.fields(solution.GPT2Config))


@pytest.mark.parametrize("field,value", bad_cases(FIELDS), ids=repr)
def test_bad_field_value_is_refused_naming_it(field, value):
    kwargs = {**SMALL, field: value}
    with pytest.raises(ValueError, match=f"GPT2Config\\.{field}"):
        solution.GPT2Config(**kwargs)


def test_from_dict_needs_a_dict():
    with pytest.raises(TypeError, match="GPT2Config.from_dict needs a dict"):
        solution.GPT2Config.from_dict([("n_embd", 8)])


# ---------------------------------------------------------------------------------------
# Parity with transformers, one field at a time
# ---------------------------------------------------------------------------------------

# Each changes the computation; values far from the default so that ignoring one shows.
PARITY = {
    "reorder_and_upcast_attn": dict(reorder_and_upcast_attn=True),
    "reorder_and_upcast_inverse_layer_unscaled": dict(reorder_and_upcast_attn=True,
                                                      scale_attn_by_inverse_layer_idx=True, scale_attn_weights=False),
    "reorder_and_upcast_inverse_layer": dict(reorder_and_upcast_attn=True, scale_attn_by_inverse_layer_idx=True),
    "scale_attn_weights_off": dict(scale_attn_weights=False),
    "scale_attn_by_inverse_layer_idx": dict(scale_attn_by_inverse_layer_idx=True),
    "n_inner": dict(n_inner=21),
    "layer_norm_epsilon": dict(layer_norm_epsilon=0.5),
    "untied": dict(tie_word_embeddings=False),
    **{f"activation_{name}": dict(activation_function=name) for name in activations.ACTIVATIONS},
}


@pytest.fixture(scope="module")
def parity_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt2_fields")
    # n_layer 3 so that 1 / (layer_idx + 1) differs between layers; initializer_range 0.3
    # for attention patterns far from uniform, where a missing scale shows.
    return {name: tiny.gpt2_checkpoint(root / name, "base", seed=i, n_layer=3, initializer_range=0.3, **overrides)
            for i, (name, overrides) in enumerate(PARITY.items())}


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("attn", solution.ATTN_IMPLEMENTATIONS)
@pytest.mark.parametrize("name", list(PARITY))
def test_field_matches_transformers(gpt2, parity_folders, name, attn):
    folder = parity_folders[name]
    hf = tiny.hf_gpt2(folder)
    ours = gpt2.GPT2LMHeadModel.from_pretrained(folder, attn_implementation=attn)
    for field, value in PARITY[name].items():
        assert getattr(ours.config, field) == value
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1))
    out, ref = ours(ids, labels=ids), hf(ids, labels=ids)
    assert_close(out.logits, ref.logits, name=f"logits with {PARITY[name]} ({attn})", atol=1e-5)
    out.loss.backward()
    ref.loss.backward()
    assert_grads_close({n: p.grad for n, p in ours.named_parameters()}, hf_grads_as_ours(hf), rtol=1e-4,
                       what=f"gradient with {PARITY[name]} ({attn})")


@pytest.mark.solution_only
def test_activations_are_transformers_ones():
    """Every accepted name is one of transformers' ACT2FN, with its values to 1e-6."""
    from transformers.activations import ACT2FN

    x = torch.linspace(-6, 6, 241)
    for name in activations.ACTIVATIONS:
        assert_close(activations.get_activation(name)(x), ACT2FN[name](x), name=f"activation {name}", atol=1e-6)


DROPOUTS = {"resid_pdrop": dict(resid_pdrop=0.3, embd_pdrop=0.0, attn_pdrop=0.0),
            "embd_pdrop": dict(resid_pdrop=0.0, embd_pdrop=0.3, attn_pdrop=0.0),
            "attn_pdrop": dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.3),
            "all": dict(resid_pdrop=0.1, embd_pdrop=0.2, attn_pdrop=0.3)}


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("name", list(DROPOUTS))
def test_dropout_fields_in_train_mode(gpt2, tmp_path, name):
    """Each dropout field drops where transformers' does: train mode, eager attention on both
    sides, the same seed, hence the same random masks drawn in the same order."""
    folder = tiny.gpt2_checkpoint(tmp_path, "base", **DROPOUTS[name])
    hf = tiny.hf_gpt2(folder).train()
    ours = gpt2.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").train()
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(11)
    a = ours(ids).logits
    torch.manual_seed(11)
    b = hf(ids).logits
    assert_close(a, b, name=f"train-mode logits with {DROPOUTS[name]}", atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(a, ours.eval()(ids).logits), "dropout should act in train mode"


@pytest.mark.solution_only
@pytest.mark.parametrize("initializer_range", [0.02, 0.37])
def test_initializer_range_initialises_as_transformers(initializer_range):
    import transformers

    cfg = dict(vocab_size=500, n_positions=64, n_embd=64, n_layer=3, n_head=4, initializer_range=initializer_range,
               bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    ours = solution.GPT2LMHeadModel(solution.GPT2Config(**cfg))
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)).state_dict()
    theirs = {k: v.t() if k.endswith(solution.TRANSPOSED) else v for k, v in theirs.items()}
    assert_init_like(ours.state_dict(), {k: v for k, v in theirs.items() if k != "lm_head.weight"})


@pytest.mark.solution_only
def test_generic_field_names_are_read_as_transformers_does():
    """transformers' GPT2Config.attribute_map: hidden_size is n_embd, and so on; the generic
    name wins over GPT-2's own when a config.json holds both."""
    import transformers

    d = {"hidden_size": 64, "n_embd": 32, "num_attention_heads": 4, "num_hidden_layers": 3,
         "max_position_embeddings": 77, "vocab_size": 50}
    ours, theirs = solution.GPT2Config.from_dict(d), transformers.GPT2Config.from_dict(d)
    assert (ours.n_embd, ours.n_head, ours.n_layer, ours.n_positions) == (
        theirs.n_embd, theirs.n_head, theirs.n_layer, theirs.n_positions) == (64, 4, 3, 77)


@pytest.mark.solution_only
def test_generic_field_name_as_a_from_pretrained_keyword(tmp_path):
    """num_attention_heads=2 re-splits the same weights into two heads, in both libraries."""
    folder = tiny.gpt2_checkpoint(tmp_path / "ckpt", "base")  # 4 heads
    import transformers

    ours = solution.GPT2LMHeadModel.from_pretrained(folder, num_attention_heads=2)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(folder, num_attention_heads=2,
                                                          attn_implementation="eager").eval()
    assert ours.config.n_head == theirs.config.n_head == 2
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close(ours(ids).logits, theirs(ids).logits, name="logits with num_attention_heads=2", atol=1e-5)
