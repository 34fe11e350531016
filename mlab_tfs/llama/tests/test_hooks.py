"""Hook points with TransformerLens's names for the Llama family: run_with_cache's values
against transformers' hidden states and attentions and against computations by hand
(the rotation, RMSNorm's scale, the SwiGLU parts); an edit through run_with_hooks against the
same edit made in the weights."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.tiny import left_padded_batch

from .helpers import GQA, LLAMA3, QWEN3, pair

LAYER_HOOKS = ["hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k",
               "attn.hook_v", "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern",
               "attn.hook_z", "hook_attn_out", "hook_resid_mid", "ln2.hook_scale", "ln2.hook_normalized",
               "mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"]


@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_hook_names_in_forward_order(llama, checkpoints, hf_models, name):
    model, _ = pair(llama, checkpoints, hf_models, name)
    names = list(model.hook_dict)
    expected = ["hook_embed"]
    qk = ["attn.q_norm.hook_scale", "attn.q_norm.hook_normalized", "attn.k_norm.hook_scale",
          "attn.k_norm.hook_normalized"] if name == QWEN3 else []
    for i in range(model.config.num_hidden_layers):
        layer = LAYER_HOOKS[:3] + qk + LAYER_HOOKS[3:]
        expected += [f"blocks.{i}.{h}" for h in layer]
    expected += ["ln_final.hook_scale", "ln_final.hook_normalized"]
    assert names == expected
    assert "hook_pos_embed" not in names  # no learned positions
    assert list(model.model.hook_dict) == expected  # the body has the same names


@pytest.mark.parametrize("name", [LLAMA3, QWEN3])
def test_cached_activations_by_hand(llama, checkpoints, hf_models, name):
    model, hf = pair(llama, checkpoints, hf_models, name)
    cfg = model.config
    nh, nkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    ids, mask, pos = left_padded_batch(cfg.vocab_size, [7, 7], seed=1)
    with torch.no_grad():
        out, cache = model.run_with_cache(ids)
        e = hf(ids, output_hidden_states=True, output_attentions=True)
    assert_close(out.logits, e.logits, name="logits under run_with_cache", atol=1e-5)
    B, T = ids.shape
    for i in range(cfg.num_hidden_layers):
        b = f"blocks.{i}."
        assert_close(cache[b + "hook_resid_pre"], e.hidden_states[i], name=b + "hook_resid_pre", atol=1e-5)
        assert_close(cache[b + "attn.hook_pattern"], e.attentions[i], name=b + "attn.hook_pattern", atol=1e-6)
        q, k, v = cache[b + "attn.hook_q"], cache[b + "attn.hook_k"], cache[b + "attn.hook_v"]
        assert q.shape == (B, T, nh, hd) and k.shape == v.shape == (B, T, nkv, hd)
        # The rotation by hand: pair (j, j + hd/2) turns by angle t * inv_freq[j].
        inv = hf.model.rotary_emb.inv_freq
        angle = torch.arange(T)[:, None].float() * inv[None]  # (T, hd/2)
        cos, sin = angle.cos()[None, :, None], angle.sin()[None, :, None]
        # hook_q / hook_k are the projections (TransformerLens's places), before Qwen3's QK-norm.
        attn = hf.model.layers[i].self_attn
        x_in = hf.model.layers[i].input_layernorm(cache[b + "hook_resid_pre"])
        assert_close(q, attn.q_proj(x_in).view(B, T, nh, hd), name=b + "attn.hook_q", atol=1e-5)
        assert_close(k, attn.k_proj(x_in).view(B, T, nkv, hd), name=b + "attn.hook_k", atol=1e-5)
        if cfg.model_type == "qwen3":
            q, k = attn.q_norm(q), attn.k_norm(k)
        for x, rot in ((q, cache[b + "attn.hook_rot_q"]), (k, cache[b + "attn.hook_rot_k"])):
            x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
            by_hand = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
            assert_close(rot, by_hand, name=b + "rotated q/k", atol=1e-5)
        # RMSNorm: scale sqrt(mean(x^2) + eps) of the layer's input, normalized x / scale.
        x = cache[b + "hook_resid_pre"]
        scale = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps)
        assert_close(cache[b + "ln1.hook_scale"], scale, name=b + "ln1.hook_scale", atol=1e-6)
        assert_close(cache[b + "ln1.hook_normalized"], x / scale, name=b + "ln1.hook_normalized", atol=1e-5)
        # SwiGLU's parts, from transformers' own projections.
        mlp = hf.model.layers[i].mlp
        h = hf.model.layers[i].post_attention_layernorm(cache[b + "hook_resid_mid"])
        assert_close(cache[b + "mlp.hook_pre"], mlp.gate_proj(h), name=b + "mlp.hook_pre", atol=1e-5)
        assert_close(cache[b + "mlp.hook_pre_linear"], mlp.up_proj(h), name=b + "mlp.hook_pre_linear", atol=1e-5)
        assert_close(cache[b + "mlp.hook_post"], torch.nn.functional.silu(mlp.gate_proj(h)) * mlp.up_proj(h),
                     name=b + "mlp.hook_post", atol=1e-5)
    assert_close(cache["ln_final.hook_normalized"] * model.model.norm.weight, e.hidden_states[-1],
                 name="ln_final", atol=1e-5)


def test_ablating_a_head_through_hook_z_equals_zeroing_its_weights(llama, checkpoints, hf_models):
    model, _ = pair(llama, checkpoints, hf_models, GQA)
    hd = model.config.head_dim
    ids = torch.randint(0, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(2))

    def ablate(z, hook):
        z = z.clone()
        z[:, :, 1] = 0.0
        return z

    with torch.no_grad():
        hooked = model.run_with_hooks(ids, fwd_hooks=[("blocks.1.attn.hook_z", ablate)]).logits
        edited, _ = pair(llama, checkpoints, hf_models, GQA)
        edited.model.layers[1].self_attn.o_proj.weight[:, hd:2 * hd] = 0.0
        expected = edited(ids).logits
        assert_close(hooked, expected, name="logits with head 1 of layer 1 ablated", atol=1e-5)
        assert not model.hook_dict["blocks.1.attn.hook_z"].has_hooks  # removed afterwards
