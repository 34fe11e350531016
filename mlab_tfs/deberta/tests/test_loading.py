"""Checkpoints: from_pretrained / save_pretrained in the layouts transformers reads and writes,
clear errors for ones that don't fit, and config contradictions caught at config time."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from mlab_tfs.checkpoints import CheckpointError
from mlab_tfs.deberta import solution
from mlab_tfs.testing.compare import assert_close, assert_same_checkpoint
from mlab_tfs.testing.tiny import assert_load_lists, edited_checkpoint

from .helpers import DEBERTA_CONFIGS


def _ids(vocab_size: int, seed: int = 0, T: int = 7) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", list(DEBERTA_CONFIGS))
def test_save_pretrained_loads_in_transformers(deberta, checkpoints, name, tmp_path):
    model = deberta.DebertaV2ForMaskedLM.from_pretrained(checkpoints[name])
    model.save_pretrained(tmp_path)
    hf, info = transformers.DebertaV2ForMaskedLM.from_pretrained(
        tmp_path, output_loading_info=True, attn_implementation="eager"
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], (
        f"transformers reports {info}"
    )
    assert_same_checkpoint(tmp_path / "model.safetensors", checkpoints[name] / "model.safetensors")
    ids = _ids(model.config.vocab_size, 1)
    with torch.no_grad():
        assert_close(hf.eval()(ids).logits, model(ids).logits, name="transformers' logits from our checkpoint", atol=1e-5)


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", ["v3", "v2_conv"])
def test_base_model_save_pretrained_loads_in_transformers(deberta, checkpoints, name, tmp_path):
    model = deberta.DebertaV2Model.from_pretrained(checkpoints[name])
    model.save_pretrained(tmp_path)
    hf, info = transformers.DebertaV2Model.from_pretrained(tmp_path, output_loading_info=True,
                                                           attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], f"{info}"
    ids = _ids(model.config.vocab_size, 2)
    with torch.no_grad():
        assert_close(hf.eval()(ids).last_hidden_state, model(ids).last_hidden_state, name="last_hidden_state", atol=1e-5)


def _v3_style_checkpoint(src, dst):
    """A checkpoint in microsoft/DeBERTa's names: the original head, lm_predictions.* (its
    MaskedLanguageModel), the replaced-token-detection head, mask_predictions.* (its
    ReplacedTokenDetectionModel, whose LMMaskPredictionHead spells its last layer `classifer`), and
    no 'legacy' in config.json."""
    dst.mkdir()
    config = json.loads((src / "config.json").read_text())
    config.pop("legacy")
    (dst / "config.json").write_text(json.dumps(config))
    state = load_file(src / "model.safetensors")
    state["mask_predictions.dense.weight"] = torch.zeros(32, 32)
    state["mask_predictions.classifer.weight"] = torch.zeros(1, 32)  # sic
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_original_head_layout_asks_for_legacy_false(checkpoints, tmp_path, hf_models):
    folder = _v3_style_checkpoint(checkpoints["v3"], tmp_path / "v3")
    with pytest.raises(CheckpointError, match="legacy=False"):
        solution.DebertaV2ForMaskedLM.from_pretrained(folder)
    model = solution.DebertaV2ForMaskedLM.from_pretrained(folder, legacy=False)
    ids = _ids(83, 3)
    with torch.no_grad():
        assert_close(model(ids).logits, hf_models["v3"](ids).logits, name="logits with legacy=False", atol=1e-5)


def test_unused_absolute_positions_are_dropped(checkpoints, tmp_path, hf_models):
    """Some checkpoints store position_embeddings with position_biased_input=False; transformers ignores them."""
    def edit(state):
        state["deberta.embeddings.position_embeddings.weight"] = torch.zeros(24, 32)

    dst = edited_checkpoint(checkpoints["v2_conv"], tmp_path / "extra", edit)
    model = solution.DebertaV2ForMaskedLM.from_pretrained(dst)
    with torch.no_grad():
        assert_close(model(_ids(83)).logits, hf_models["v2_conv"](_ids(83)).logits, name="logits", atol=1e-5)


def test_missing_and_mismatched_keys_are_listed(checkpoints, tmp_path):
    def edit(state):
        del state["deberta.encoder.layer.1.attention.self.value_proj.bias"]
        state["deberta.encoder.rel_embeddings.weight"] = torch.zeros(10, 32)
        state["deberta.encoder.layer.0.attention.self.pos_key_proj.weight"] = torch.zeros(32, 32)

    dst = edited_checkpoint(checkpoints["v3"], tmp_path / "broken", edit)
    assert_load_lists(solution.DebertaV2ForMaskedLM, dst, "layer.1.attention.self.value_proj.bias",
                      "layer.0.attention.self.pos_key_proj.weight",
                      "deberta.encoder.rel_embeddings.weight: checkpoint (10, 32), model (16, 32)")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    config = transformers.DebertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=32)
    transformers.DebertaModel(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type 'deberta'"):
        solution.DebertaV2ForMaskedLM.from_pretrained(tmp_path)


CONTRADICTIONS = {
    "divisible": dict(hidden_size=30, num_attention_heads=4),
    "relative_attention": dict(position_buckets=8, relative_attention=False),
    "pos_att_type": dict(relative_attention=True, share_att_key=True, pos_att_type=["c2p", "p2p"]),
    "pos_att_type.*c2q": dict(relative_attention=True, pos_att_type="p2c|c2q"),
    "log buckets need": dict(relative_attention=True, position_buckets=64, max_position_embeddings=32),
    "conv_kernel_size must be odd": dict(conv_kernel_size=4),
    "conv_groups": dict(conv_kernel_size=3, hidden_size=32, num_attention_heads=4, conv_groups=3),
    "embedding_size == hidden_size": dict(legacy=False, embedding_size=16, hidden_size=32, num_attention_heads=4),
    "norm_rel_ebd": dict(norm_rel_ebd="batch_norm"),
    "hidden_act": dict(hidden_act="gelu_nope"),
    "type_vocab_size": dict(type_vocab_size=-1),
    "num_hidden_layers": dict(num_hidden_layers=0),
}


@pytest.mark.parametrize("match", list(CONTRADICTIONS))
def test_config_contradictions_are_refused(match):
    with pytest.raises(ValueError, match=match):
        solution.DebertaV2Config(**CONTRADICTIONS[match])


def test_pos_att_type_forms():
    assert solution.DebertaV2Config(pos_att_type="p2c|c2p").pos_att_type == ["p2c", "c2p"]
    assert solution.DebertaV2Config(pos_att_type="None").pos_att_type == []  # as transformers' own tests write it
    assert solution.DebertaV2Config(pos_att_type=None).pos_att_type == []


def test_config_round_trips_through_transformers():
    for overrides in DEBERTA_CONFIGS.values():
        ours = solution.DebertaV2Config(**overrides)
        theirs = transformers.DebertaV2Config(**ours.to_dict())
        assert solution.DebertaV2Config.from_dict(theirs.to_dict()) == ours


@pytest.mark.solution_only
def test_tied_head_is_saved_once(tmp_path):
    """safetensors refuses two names for one tensor (and transformers' Trainer saves a plain
    state_dict with it): the tied decoder weight and bias appear once and load back tied."""
    config = solution.DebertaV2Config(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=20)
    model = solution.DebertaV2ForMaskedLM(config)
    state = model.state_dict()
    assert "cls.predictions.decoder.weight" not in state and "cls.predictions.decoder.bias" not in state
    save_file(state, tmp_path / "plain.safetensors")
    fresh = solution.DebertaV2ForMaskedLM(config)
    fresh.load_state_dict(load_file(tmp_path / "plain.safetensors"), strict=True)
    head = fresh.cls.predictions
    assert head.decoder.weight is fresh.deberta.embeddings.word_embeddings.weight and head.decoder.bias is head.bias
    assert torch.equal(head.decoder.weight, model.cls.predictions.decoder.weight)
