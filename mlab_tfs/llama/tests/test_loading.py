"""Loading transformers' Llama and Qwen3 checkpoints and saving ours: the config (both rope
spellings, both families), the round trip both ways (no missing or unexpected keys, the same
logits, bit-identical weights), and clear errors for what is not implemented."""

from __future__ import annotations

import json

import pytest
import torch

from mlab_tfs.checkpoints import read_config
from mlab_tfs.configs import ConfigError
from mlab_tfs.testing.compare import assert_close, assert_same_checkpoint
from mlab_tfs.testing.tiny import llama_checkpoint

from .helpers import GQA, LLAMA3, NAMES, QWEN3, QWEN3_TIED, TIED, pair, random_ids


@pytest.mark.parametrize("name", NAMES)
def test_saved_folder_loads_in_transformers_with_no_missing_or_unexpected_keys(llama, checkpoints, hf_models,
                                                                                 name, tmp_path):
    import transformers

    model, hf = pair(llama, checkpoints, hf_models, name)
    model.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    family = "Qwen3" if name.startswith("qwen3") else "Llama"
    assert saved["model_type"] == family.lower() and saved["architectures"] == [f"{family}ForCausalLM"]
    theirs, info = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "ours", attn_implementation="eager", dtype=torch.float32, output_loading_info=True)
    assert type(theirs) is type(hf)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids = random_ids(model.config.vocab_size)
    with torch.no_grad():
        assert_close(theirs.eval()(ids).logits, model(ids).logits, name=f"{name}: transformers on our folder",
                     atol=1e-5)
    # The weights come back bit for bit, and the config field for field.
    assert_same_checkpoint(tmp_path / "ours" / "model.safetensors", checkpoints[name] / "model.safetensors")
    original = read_config(checkpoints[name])
    for key in ("hidden_size", "num_key_value_heads", "head_dim", "rope_parameters", "rms_norm_eps",
                "tie_word_embeddings", "attention_bias", "eos_token_id", "bos_token_id", "pad_token_id"):
        assert saved.get(key) == original.get(key), key
    assert theirs.config.to_dict()["rope_parameters"] == hf.config.to_dict()["rope_parameters"]


@pytest.mark.parametrize("name", [GQA, QWEN3_TIED])
def test_our_folder_loads_back_in_ours(llama, checkpoints, hf_models, name, tmp_path):
    model, _ = pair(llama, checkpoints, hf_models, name)
    model.save_pretrained(tmp_path / "ours")
    again = llama.LlamaForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert again.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    if model.config.tie_word_embeddings:
        assert again.lm_head.weight is again.model.embed_tokens.weight


def test_tied_and_untied_heads(llama, checkpoints, hf_models):
    tied, _ = pair(llama, checkpoints, hf_models, TIED)
    untied, hf = pair(llama, checkpoints, hf_models, GQA)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    assert torch.equal(untied.lm_head.weight, hf.lm_head.weight)


def test_legacy_rope_theta_and_rope_scaling_load_as_rope_parameters(llama, checkpoints, hf_models, tmp_path):
    """A config.json from before transformers 5 (top-level rope_theta, rope_scaling with "type"
    or "rope_type") loads to the same model; saving writes transformers 5's rope_parameters."""
    model, hf = pair(llama, checkpoints, hf_models, LLAMA3)
    folder = tmp_path / "legacy"
    folder.mkdir()
    d = read_config(checkpoints[LLAMA3])
    rope = d.pop("rope_parameters")
    d["rope_theta"] = rope.pop("rope_theta")
    d["rope_scaling"] = {"type": rope.pop("rope_type"), **rope}
    (folder / "config.json").write_text(json.dumps(d))
    (folder / "model.safetensors").write_bytes((checkpoints[LLAMA3] / "model.safetensors").read_bytes())
    legacy = llama.LlamaForCausalLM.from_pretrained(folder).eval()
    assert legacy.config.rope_parameters == model.config.rope_parameters
    ids = random_ids(model.config.vocab_size)
    with torch.no_grad():
        assert_close(legacy(ids).logits, hf(ids).logits, name="logits of the legacy config", atol=1e-5)
    legacy.save_pretrained(tmp_path / "resaved")
    saved = read_config(tmp_path / "resaved")
    assert "rope_scaling" not in saved and "rope_theta" not in saved
    assert saved["rope_parameters"] == read_config(checkpoints[LLAMA3])["rope_parameters"]
    # The constructor takes the legacy spelling too.
    cfg = llama.LlamaConfig(rope_theta=5.0, rope_scaling=None)
    assert cfg.rope_parameters == {"rope_type": "default", "rope_theta": 5.0}


def test_llama_model_body_loads_and_saves(llama, checkpoints, hf_models, tmp_path):
    """LlamaModel reads a causal LM's checkpoint (head left out) and writes one transformers'
    LlamaModel reads with no missing or unexpected keys."""
    import transformers

    body = llama.LlamaModel.from_pretrained(checkpoints[GQA]).eval()
    hf = hf_models[GQA]
    ids = random_ids(body.config.vocab_size)
    with torch.no_grad():
        assert_close(body(ids).last_hidden_state, hf.model(ids).last_hidden_state, name="LlamaModel", atol=1e-5)
    body.save_pretrained(tmp_path / "body")
    assert read_config(tmp_path / "body")["architectures"] == ["LlamaModel"]
    theirs, info = transformers.LlamaModel.from_pretrained(tmp_path / "body", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_qwen3_config_defaults_where_config_json_is_silent(llama):
    """Qwen3Config's own defaults (head_dim 128, 32 key/value heads) where a config.json
    leaves them out, as transformers reads it."""
    import transformers

    d = dict(model_type="qwen3", vocab_size=10, hidden_size=64, num_attention_heads=32, num_hidden_layers=1,
             intermediate_size=8)
    ours = llama.LlamaConfig.from_dict(d)
    theirs = transformers.Qwen3Config(**{k: v for k, v in d.items() if k != "model_type"})
    assert (ours.head_dim, ours.num_key_value_heads) == (theirs.head_dim, theirs.num_key_value_heads) == (128, 32)
    assert llama.LlamaConfig.from_dict({**d, "model_type": "llama"}).head_dim == 2  # LlamaConfig: 64 // 32


BAD_CONFIGS = {
    "sliding window": (dict(model_type="qwen3", use_sliding_window=True), "use_sliding_window"),
    "yarn rope": (dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}), "rope_type"),
    "llama3 without factor": (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 1e4}), "factor"),
    "partial rotary": (dict(rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                             "partial_rotary_factor": 0.5}), "partial_rotary_factor"),
    "negative theta": (dict(rope_parameters={"rope_type": "default", "rope_theta": -1.0}), "rope_theta"),
    "heads not a multiple of kv heads": (dict(num_attention_heads=6, num_key_value_heads=4), "num_key_value_heads"),
    "odd head_dim": (dict(head_dim=7), "head_dim"),
    "zero eps": (dict(rms_norm_eps=0.0), "rms_norm_eps"),
    "another model_type": (dict(model_type="mistral"), "model_type"),
    "bool heads": (dict(num_key_value_heads=True), "num_key_value_heads"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_is_a_clear_error(llama, case):
    fields, name = BAD_CONFIGS[case]
    base = dict(vocab_size=10, hidden_size=48, num_attention_heads=6, num_hidden_layers=1, intermediate_size=8)
    with pytest.raises(ConfigError, match=name):
        llama.LlamaConfig(**{**base, **fields})


def test_another_model_type_in_config_json_is_an_error(llama, checkpoints, tmp_path):
    folder = tmp_path / "mistral"
    folder.mkdir()
    d = read_config(checkpoints[GQA])
    (folder / "config.json").write_text(json.dumps({**d, "model_type": "mistral"}))
    (folder / "model.safetensors").write_bytes((checkpoints[GQA] / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="model_type"):
        llama.LlamaForCausalLM.from_pretrained(folder)


def test_older_checkpoint_with_inv_freq_buffer_loads(llama, checkpoints, hf_models, tmp_path):
    """Checkpoints saved by older transformers carry rotary_emb.inv_freq per layer: dropped
    (it is computed from the config)."""
    from mlab_tfs.testing.tiny import edited_checkpoint

    def add(state):
        state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)

    folder = edited_checkpoint(checkpoints[GQA], tmp_path / "old", add)
    model = llama.LlamaForCausalLM.from_pretrained(folder).eval()
    ids = random_ids(model.config.vocab_size)
    with torch.no_grad():
        assert_close(model(ids).logits, hf_models[GQA](ids).logits, name="logits", atol=1e-5)


def test_cast_keeps_rotary_frequencies_in_float32(llama, checkpoints):
    model = llama.LlamaForCausalLM.from_pretrained(checkpoints[GQA]).to(torch.bfloat16)
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert "model.rotary_emb.inv_freq" not in model.state_dict()
