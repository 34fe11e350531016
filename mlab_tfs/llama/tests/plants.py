"""Each catalogued Llama mistake as source edits of mlab_tfs/llama/solution.py: the edited
solution runs as the learner's code, and ``mlab-tfs check`` must name the mistake
(``mlab_tfs/testing/tests/test_catalogue.py``)."""

from __future__ import annotations

_NORM = ("        if self.hook_scale.has_hooks:  # a hook may read or edit the scale itself\n"
         "            x_hat = x32 / self.hook_scale(torch.sqrt(mean_square + self.eps))\n"
         "        else:  # x * rsqrt, as transformers computes it: the same bits\n"
         "            x_hat = x32 * torch.rsqrt(mean_square + self.eps)\n")
_ROT = "return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin"
_HALF = "x1, x2 = x.chunk(2, dim=-1)\n    return torch.cat((-x2, x1), dim=-1)"
_BASE = "inv_freq = 1.0 / (rope[\"rope_theta\"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))"
_ANGLES = "freqs = position_ids[..., None].float() * self.inv_freq.to(x.device, torch.float32)"
_GATE = "return self.down_proj(self.hook_post(gate * self.hook_pre_linear(self.up_proj(x))))"
_REPEAT = "return x[:, :, None].expand(B, nkv, n_rep, S, hd).reshape(B, nkv * n_rep, S, hd)"
_V = "v = v.transpose(1, 2)  # (B, nkv, T, hd)"
_QK = "q, k = self.q_norm(q), self.k_norm(k)"
_CACHE = ("        if past_key_values is not None:\n"
          "            k, v = past_key_values.update(self.layer_idx, k, v, cache_position)  # (B, nkv, S, hd)\n"
          "        n_rep = self.n_head // self.n_kv_head\n")
_ATTN = ("attn = self.self_attn(self.input_layernorm(x), cos, sin, attention_mask, past_key_values, cache_position)\n"
         "        x = self.hook_resid_mid(x + self.hook_attn_out(attn))\n"
         "        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.post_attention_layernorm(x))))")
_PREFIX = "        if not key.startswith((\"model.\", \"lm_head.\")):\n            key = \"model.\" + key\n"

PLANTS: dict[str, list[tuple[str, str]]] = {
    # 1. RMSNorm
    "mean_subtracted": [("x32 = x.to(torch.float32)", "x32 = x.to(torch.float32)\n        "
                                                      "x32 = x32 - x32.mean(-1, keepdim=True)")],
    "eps_outside_rsqrt": [(_NORM, "        x_hat = x32 / self.hook_scale(torch.sqrt(mean_square) + self.eps)\n")],
    "rms_without_sqrt": [(_NORM, "        x_hat = x32 / self.hook_scale(mean_square + self.eps)\n")],
    "wrong_dim": [("mean_square = x32.pow(2).mean(-1, keepdim=True)", "mean_square = x32.pow(2).mean(-2, keepdim=True)")],
    "statistics_in_input_dtype": [("x32 = x.to(torch.float32)", "x32 = x")],
    "weight_before_cast": [("return self.weight * self.hook_normalized(x_hat).to(x.dtype)",
                            "return (self.weight * self.hook_normalized(x_hat)).to(x.dtype)")],
    # 2. rotary embeddings
    "wrong_pair_layout": [(_HALF, "return rotate_interleaved(x)")],
    "rotate_half_sign": [("return torch.cat((-x2, x1), dim=-1)", "return torch.cat((x2, -x1), dim=-1)")],
    "cos_sin_swapped": [(_ROT, "return q * sin + rotate_half(q) * cos, k * sin + rotate_half(k) * cos")],
    "keys_not_rotated": [(_ROT, "return q * cos + rotate_half(q) * sin, k")],
    # 3. rotary frequencies
    "exponent_not_doubled": [(_BASE, _BASE.replace("torch.arange(0, hd, 2, dtype=torch.int64)",
                                                   "torch.arange(0, hd // 2, dtype=torch.int64)"))],
    "theta_ignored": [(_BASE, _BASE.replace("rope[\"rope_theta\"]", "10000.0"))],
    "llama3_scaling_ignored": [("if rope[\"rope_type\"] == \"default\":", "if True:")],
    "every_frequency_divided": [("scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)",
                                 "return inv_freq / factor")],
    "middle_band_not_blended": [("return torch.where(medium, smoothed, scaled)", "return scaled")],
    "angles_interleaved": [("emb = torch.cat((freqs, freqs), dim=-1)", "emb = freqs.repeat_interleave(2, dim=-1)")],
    "angles_in_model_dtype": [(_ANGLES, "freqs = position_ids[..., None].to(x.dtype) * self.inv_freq.to(x.device, "
                                        "x.dtype)")],
    # 4. SwiGLU
    "activation_on_up": [("gate = self.act(self.hook_pre(self.gate_proj(x)))", "gate = self.hook_pre(self.gate_proj(x))"),
                         (_GATE, "return self.down_proj(self.hook_post(gate * self.act(self.hook_pre_linear("
                                 "self.up_proj(x)))))")],
    "gelu_not_silu": [("self.act = get_activation(config.hidden_act)", "self.act = F.gelu")],
    "no_gate": [(_GATE, "return self.down_proj(self.hook_post(self.act(self.hook_pre_linear(self.up_proj(x)))))")],
    "mlp_bias_ignored": [("C, inner, bias = config.hidden_size, config.intermediate_size, config.mlp_bias",
                          "C, inner, bias = config.hidden_size, config.intermediate_size, False")],
    # 5. repeat_kv
    "heads_tiled": [(_REPEAT, "return x.repeat(1, n_rep, 1, 1)")],
    "repeated_along_positions": [(_REPEAT, "return x[:, :, :, None].expand(B, nkv, S, n_rep, hd)"
                                           ".reshape(B, nkv, S * n_rep, hd)")],
    # 6. attention
    "values_rotated": [(_V, "v = apply_rotary_pos_emb(v.transpose(1, 2), v.transpose(1, 2), cos, sin)[1]")],
    "scale_by_hidden_over_heads": [("self.scale = hd**-0.5", "self.scale = (C // self.n_head) ** -0.5")],
    "causal_mask_missing": [("if attention_mask is None:\n                attention_mask = causal_mask(",
                             "if False:\n                attention_mask = causal_mask(")],
    "attention_mask_ignored": [("check_bool_mask(\"LlamaAttention: attention_mask\", attention_mask)\n",
                                "check_bool_mask(\"LlamaAttention: attention_mask\", attention_mask)\n"
                                "        attention_mask = None\n")],
    "cache_holds_repeated_heads": [(_CACHE, "        n_rep = self.n_head // self.n_kv_head\n"
                                            "        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, nh, S, hd)\n"
                                            "        if past_key_values is not None:\n"
                                            "            k, v = past_key_values.update(self.layer_idx, k, v, "
                                            "cache_position)\n"
                                            "        n_rep = 1  # the heads are repeated already\n")],
    # 7. QK-norm
    "qk_norm_after_rotary": [("        if self.qk_norm:\n            " + _QK + "\n", ""),
                             (_V, _V + "\n        if self.qk_norm:\n            " + _QK)],
    "qk_norm_missing": [(_QK, "pass")],
    "q_norm_k_norm_swapped": [(_QK, "q, k = self.k_norm(q), self.q_norm(k)")],
    "values_normed": [(_QK, "q, k, v = self.q_norm(q), self.k_norm(k), self.k_norm(v)")],
    # 8. decoder layer
    "post_norm": [(_ATTN, "x = self.input_layernorm(x + self.self_attn(x, cos, sin, attention_mask, past_key_values, "
                          "cache_position))\n        return self.post_attention_layernorm(x + self.mlp(x))")],
    "no_attn_residual": [("x = self.hook_resid_mid(x + self.hook_attn_out(attn))",
                          "x = self.hook_resid_mid(self.hook_attn_out(attn))")],
    "no_mlp_residual": [("return self.hook_resid_post(x + self.hook_mlp_out(",
                         "return self.hook_resid_post(self.hook_mlp_out(")],
    "input_layernorm_twice": [("self.mlp(self.post_attention_layernorm(x))", "self.mlp(self.input_layernorm(x))")],
    # 9. model
    "head_always_tied": [("        if config.tie_word_embeddings:\n            self.lm_head.weight",
                          "        if True:\n            self.lm_head.weight")],
    "no_final_norm": [("            x = self.norm(x)\n", "")],
    "positions_restart_after_cache": [("position_ids = torch.arange(P, P + T, device=input_ids.device)[None]  # (1, T)",
                                       "position_ids = torch.arange(T, device=input_ids.device)[None]  # (1, T)")],
    "position_ids_ignored": [("position_ids = check_position_ids(\"position_ids\", position_ids, (B, T), MAX_POSITION)",
                              "position_ids = torch.arange(P, P + T, device=input_ids.device)[None]")],
    # 10. loading
    "q_k_permuted": [("        ours[key] = value\n",
                      "        if key.endswith((\"q_proj.weight\", \"k_proj.weight\")):\n"
                      "            value = interleaved_to_half(value, value.shape[0] // config.head_dim)\n"
                      "        ours[key] = value\n")],
    "tied_head_saved": [("return {k: v for k, v in state.items() if not (k == \"lm_head.weight\" and "
                         "config.tie_word_embeddings)}", "return dict(state)")],
    "prefix_not_added": [(_PREFIX, "")],
    "inv_freq_kept": [("        if key.endswith(\"rotary_emb.inv_freq\"):\n            continue\n", "")],
}
