"""Exercise 10 of the Llama part: transformers' Llama / Qwen3 state dicts in and out, and a
save_pretrained folder that transformers loads with no missing or unexpected key and the
same logits. A failure names the catalogued mistake it matches."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.llama import solution
from mlab_tfs.llama.mistakes import MISTAKES as M
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.mistakes import likely
from mlab_tfs.testing.tiny import hf_llama

from . import reference as ref
from .helpers import NAMES, QWEN3, QWEN3_TIED, TIED


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("name", NAMES)
def test_from_hf_state_dict(llama, hf_models, name):
    """transformers' names are ours: every tensor as it is (no transpose, no q/k permutation)."""
    hf = hf_models[name]
    config = ref.config_of(hf)
    state = hf.state_dict()
    ours = llama.from_hf_state_dict(state, config)
    assert set(ours) == set(state), (f"{name}: the keys should be transformers' own; missing "
                                     f"{sorted(set(state) - set(ours))[:5]}, extra {sorted(set(ours) - set(state))[:5]}")
    heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
    for key, value in state.items():
        kind = key.split(".")[-2]
        mistakes = ({M["q_k_permuted"]: solution.interleaved_to_half(value, heads[kind])}
                    if kind in heads and key.endswith("weight") else None)
        assert_close(ours[key], value, name=f"{name} {key}", atol=0, mistakes=mistakes,
                     hint="transformers' nn.Linear weights are (out, in), as yours: copy them as they are")


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("name", [TIED, QWEN3_TIED])
def test_tied_head_points_at_the_embedding(llama, hf_models, name):
    """A tied checkpoint's file has no lm_head.weight: the head is the embedding's tensor."""
    hf = hf_models[name]
    state = {k: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    ours = llama.from_hf_state_dict(state, ref.config_of(hf))
    assert "lm_head.weight" in ours and ours["lm_head.weight"] is ours["model.embed_tokens.weight"], (
        "with tie_word_embeddings, lm_head.weight should be model.embed_tokens.weight (the same tensor)")


@pytest.mark.exercise("loading")
def test_body_checkpoint_gets_the_prefix(llama, hf_models):
    hf = hf_models[QWEN3]
    body = hf.model.state_dict()  # a transformers Qwen3Model's names: layers.0..., norm.weight
    ours = llama.from_hf_state_dict(body, ref.config_of(hf))
    unprefixed = sorted(k for k in ours if not k.startswith(("model.", "lm_head.")))
    assert not unprefixed, (f"a body checkpoint's keys should get the model. prefix, got {unprefixed[:4]}\n  "
                            f"{likely(M['prefix_not_added'])}")
    assert set(ours) == {f"model.{k}" for k in body}


@pytest.mark.exercise("loading")
def test_old_rotary_buffers_are_dropped(llama, hf_models):
    hf = hf_models[TIED]
    state = dict(hf.state_dict())
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # what older files store
    state["model.rotary_emb.inv_freq"] = torch.ones(4)
    ours = llama.from_hf_state_dict(state, ref.config_of(hf))
    kept = sorted(k for k in ours if k.endswith("inv_freq"))
    assert not kept, f"the rotary inv_freq is computed, not loaded; got {kept}\n  {likely(M['inv_freq_kept'])}"


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("name", NAMES)
def test_to_hf_state_dict(llama, hf_models, name):
    hf = hf_models[name]
    config = ref.config_of(hf)
    state = solution.from_hf_state_dict(hf.state_dict(), config)
    theirs = llama.to_hf_state_dict(state, config)
    expected = set(state) - ({"lm_head.weight"} if config.tie_word_embeddings else set())
    extra = sorted(set(theirs) - expected)
    assert set(theirs) == expected, (f"{name}: to_hf_state_dict should give {len(expected)} keys; extra {extra}, "
                                     f"missing {sorted(expected - set(theirs))}"
                                     + (f"\n  {likely(M['tied_head_saved'])}" if extra == ["lm_head.weight"] else ""))
    for key in expected:
        assert theirs[key] is state[key] or torch.equal(theirs[key], state[key]), f"{name}: {key} changed"


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("name", [TIED, QWEN3])
def test_save_pretrained_loads_in_transformers(llama, checkpoints, hf_models, name, tmp_path):
    ours = llama.LlamaForCausalLM.from_pretrained(checkpoints[name]).eval()
    ours.save_pretrained(tmp_path)
    hf, info = type(hf_models[name]).from_pretrained(tmp_path, dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    assert not problems, f"{name}: transformers loads your save_pretrained folder with {problems}"
    ids = torch.randint(0, ours.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close(ours(ids).logits, hf_llama(tmp_path)(ids).logits, name=f"{name} logits after the round trip",
                     atol=1e-5)
