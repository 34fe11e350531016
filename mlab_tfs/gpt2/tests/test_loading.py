"""Exercise 10: loading Hugging Face checkpoints and saving ones transformers loads."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers.pytorch_utils import Conv1D

from mlab_tfs.checkpoints import CheckpointError
from mlab_tfs.gpt2 import solution
from mlab_tfs.gpt2.mistakes import MISTAKES as M
from mlab_tfs.testing.compare import assert_close, assert_same_checkpoint
from mlab_tfs.testing.mistakes import likely
from mlab_tfs.testing.tiny import GPT2_CONFIGS, assert_load_lists, edited_checkpoint, hf_gpt2

from .test_model import CONFIGS


def _ids(vocab_size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, 7), generator=torch.Generator().manual_seed(seed))


@pytest.mark.exercise("loading")
def test_from_hf_state_dict_names_and_transposes(gpt2, hf_base, base_config):
    hf_state = hf_base.state_dict()
    actual = gpt2.from_hf_state_dict(hf_state, base_config)
    # Independent of the solution: transformers' names, its Conv1D weights (in, out) transposed
    # to nn.Linear's (out, in), and the tied head equal to the token embedding.
    conv1d = {f"{name}.weight" for name, m in hf_base.named_modules() if isinstance(m, Conv1D)}
    assert len(conv1d) == 4 * base_config.n_layer
    expected = {k: v.t() if k in conv1d else v for k, v in hf_state.items()}
    assert torch.equal(expected["lm_head.weight"], expected["transformer.wte.weight"])
    assert isinstance(actual, dict), f"from_hf_state_dict should return a dict, got {type(actual).__name__}"
    missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    assert not missing and not extra, f"keys differ from GPT2LMHeadModel's: missing {missing[:6]}, unexpected {extra[:6]}"
    for key in expected:
        stored = hf_state[key]
        # The square attn.c_proj.weight is the one a transpose chosen by shape misses.
        untransposed = M["transposed_by_shape"] if stored.shape[0] == stored.shape[-1] else M["conv1d_not_transposed"]
        assert_close(actual[key], expected[key], name=key, atol=0,
                     mistakes={untransposed: stored} if key in conv1d else None,
                     hint="Conv1D weights (c_attn, c_proj, c_fc) are stored (in, out): transpose them for nn.Linear")


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("name", CONFIGS)
def test_from_pretrained_matches_transformers(gpt2, checkpoints, name):
    model = gpt2.GPT2LMHeadModel.from_pretrained(checkpoints[name])
    hf = hf_gpt2(checkpoints[name])
    ids = _ids(model.config.vocab_size)
    with torch.no_grad():
        assert_close(model(ids).logits, hf(ids).logits, name=f"logits after from_pretrained ({name})", atol=1e-5)
    assert not model.training, "from_pretrained returns the model in eval mode, as transformers does"


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("name", CONFIGS)
def test_save_pretrained_loads_in_transformers(gpt2, checkpoints, name, tmp_path):
    model = gpt2.GPT2LMHeadModel.from_pretrained(checkpoints[name])
    original = load_file(checkpoints[name] / "model.safetensors")  # transformers' own layout
    state = dict(model.state_dict())
    state.setdefault("lm_head.weight", model.lm_head.weight.detach())  # as transformers' state_dict lists a tied head
    ours = gpt2.to_hf_state_dict(state, model.config)
    extra, missing = sorted(set(ours) - set(original)), sorted(set(original) - set(ours))
    assert not extra and not missing, (
        f"to_hf_state_dict's keys differ from transformers' checkpoint: extra {extra[:6]}, missing {missing[:6]}"
        + (f"\n  {likely(M['tied_head_saved'])}" if extra == ["lm_head.weight"] else ""))
    for key, value in original.items():
        assert_close(ours[key], value, name=f"to_hf_state_dict(...)[{key!r}]", atol=0,
                     mistakes={M["to_hf_not_transposed_back"]: value.t()} if key.endswith(solution.TRANSPOSED) else None)
    model.save_pretrained(tmp_path)
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(
        tmp_path, output_loading_info=True, attn_implementation="eager"
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], (
        f"transformers reports {info}: save HF's names, with Conv1D weights transposed back, and leave out the "
        f"tied lm_head.weight"
    )
    assert_same_checkpoint(tmp_path / "model.safetensors", checkpoints[name] / "model.safetensors")
    ids = _ids(model.config.vocab_size, 1)
    with torch.no_grad():
        assert_close(hf.eval()(ids).logits, model(ids).logits, name="transformers' logits from our checkpoint",
                     atol=1e-5)


@pytest.mark.exercise("loading")
def test_loads_gpt2model_checkpoint_with_mask_buffers(gpt2, hf_base, tmp_path):
    """The real 'gpt2' checkpoint has no 'transformer.' prefix, no lm_head and old mask buffers."""
    state = {k.removeprefix("transformer."): v.clone() for k, v in hf_base.state_dict().items() if k != "lm_head.weight"}
    for i in range(hf_base.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.ones(1, 1, 40, 40).tril()
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    keys = set(gpt2.from_hf_state_dict(state, solution.GPT2Config.from_dict(hf_base.config.to_dict())))
    buffers = sorted(k for k in keys if k.endswith((".attn.bias", ".attn.masked_bias")))
    assert not buffers, f"from_hf_state_dict kept the mask buffers {buffers[:4]}\n  {likely(M['mask_buffers_kept'])}"
    bare = sorted(k for k in keys if not k.startswith(("transformer.", "lm_head.")))
    assert not bare, f"from_hf_state_dict gives keys without our names' prefix: {bare[:4]}\n  {likely(M['prefix_not_added'])}"
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(hf_base.config.to_dict()))
    model = gpt2.GPT2LMHeadModel.from_pretrained(tmp_path)
    ids = _ids(97, 2)
    with torch.no_grad():
        assert_close(model(ids).logits, hf_base(ids).logits, name="logits from a GPT2Model-style checkpoint",
                     atol=1e-5, hint="add the 'transformer.' prefix where it is missing; skip attn.bias/masked_bias")


def test_missing_and_mismatched_keys_are_listed(checkpoints, tmp_path):
    def edit(state):
        del state["transformer.h.1.mlp.c_fc.bias"]
        state["transformer.ln_f.weight"] = torch.ones(5)
        state["transformer.h.0.attn.q_proj.weight"] = torch.ones(2)

    folder = edited_checkpoint(checkpoints["base"], tmp_path / "broken", edit)
    assert_load_lists(solution.GPT2LMHeadModel, folder, "transformer.h.1.mlp.c_fc.bias",
                      "transformer.h.0.attn.q_proj.weight", "transformer.ln_f.weight: checkpoint (5,), model (32,)")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32)
    transformers.BertModel(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type 'bert'"):
        solution.GPT2LMHeadModel.from_pretrained(tmp_path)


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 8, "n_head": 2}))
    with pytest.raises(CheckpointError, match="no weights"):
        solution.GPT2LMHeadModel.from_pretrained(tmp_path)


def test_config_contradictions_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        solution.GPT2Config(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="activation_function"):
        solution.GPT2Config(activation_function="gelu_nope")
    with pytest.raises(ValueError, match="n_layer"):
        solution.GPT2Config(n_layer=0)


def test_config_round_trips_through_transformers():
    for overrides in GPT2_CONFIGS.values():
        ours = solution.GPT2Config(**overrides)
        theirs = transformers.GPT2Config(**ours.to_dict())
        assert solution.GPT2Config.from_dict(theirs.to_dict()) == ours


@pytest.mark.solution_only
def test_tied_head_is_saved_once(checkpoints, tmp_path):
    """safetensors refuses two names for one tensor, and transformers' Trainer saves a plain
    state_dict with it: the tied head must appear once and load back tied."""
    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"])
    state = model.state_dict()
    assert "lm_head.weight" not in state and "transformer.wte.weight" in state
    save_file(state, tmp_path / "plain.safetensors")
    fresh = solution.GPT2LMHeadModel(model.config)
    fresh.load_state_dict(load_file(tmp_path / "plain.safetensors"), strict=True)
    assert fresh.lm_head.weight is fresh.transformer.wte.weight
    assert torch.equal(fresh.lm_head.weight, model.lm_head.weight)
    untied = solution.GPT2LMHeadModel.from_pretrained(checkpoints["untied_erf_gelu_inverse_layer_scale"])
    assert "lm_head.weight" in untied.state_dict()
