"""Each catalogued GPT-2 mistake written into the solution as a learner would write it:
{mistake name: [(old text of solution.py, new text), ...]} (``mlab_tfs.testing.mistakes``)."""

from __future__ import annotations

_GELU_IMPORT = "from mlab_tfs.activations import gelu_new, get_activation  # noqa: F401  (gelu_new: re-exported)"


def _kv(template: str, new: str, **both: str) -> list[tuple[str, str]]:
    """The same edit of the keys' line and the values' line."""
    return [(template.format(t=t, **{k: v[i] for k, v in both.items()}),
             new.format(t=t, **{k: v[i] for k, v in both.items()})) for i, t in enumerate("kv")]


def _gelu(body: str) -> list[tuple[str, str]]:
    """The learner's own gelu_new, in place of the imported one."""
    return [(_GELU_IMPORT, "import math\n\nfrom mlab_tfs.activations import get_activation\n\n\n"
                           f"def gelu_new(x):\n    return {body}\n")]


_VAR = "var = (x32 - mean).pow(2).mean(dim=-1, keepdim=True)  # biased, as in the paper"
_SCALE = "scale = self.hook_scale(torch.sqrt(var + self.eps))  # eps inside the sqrt"
_FILL = "scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)"
_SOFTMAX = "pattern = torch.softmax(scores, dim=-1)\n    if seen is None:"
_ZERO = "return pattern.masked_fill(~seen, 0.0)  # zero rows: no future leak, no gradient"
_SPLIT = ("q, k, v = self.c_attn(x).split(C, dim=-1)\n"
          "        q, k, v = (rearrange(t, \"b t (nh hs) -> b t nh hs\", nh=self.n_head) for t in (q, k, v))")
_MERGE = "rearrange(z, \"b t nh hs -> b t (nh hs)\")"
_SDPA = "if path == \"sdpa\" and not"  # the learner's attention has no fused path
_CAT = "{t} = torch.cat([self._{cached}[layer_idx], {t}], dim=2)"
_WRITE = "{t}_buf[:, :, cache_position] = {t}.to"
_RESID_MID = "x = self.hook_resid_mid(x + self.hook_attn_out("
_RESID_POST = "return self.hook_resid_post(x + self.hook_mlp_out("
_DEFAULT_POS = "position_ids = torch.arange(P, P + T, device=input_ids.device)[None]  # (1, T)"

PLANTS: dict[str, list[tuple[str, str]]] = {
    # 1. layer norm
    "unbiased_variance": [(_VAR, "var = x32.var(dim=-1, keepdim=True)")],
    "eps_outside_sqrt": [(_SCALE, "scale = self.hook_scale(torch.sqrt(var) + self.eps)")],
    "no_eps": [(_SCALE, "scale = self.hook_scale(torch.sqrt(var))")],
    "variance_not_std": [(_SCALE, "scale = self.hook_scale(var + self.eps)")],
    "weight_bias_swapped": [("(x_hat * self.weight + self.bias)", "(x_hat * self.bias + self.weight)")],
    "wrong_dim": [("mean = x32.mean(dim=-1, keepdim=True)", "mean = x32.mean(dim=-2, keepdim=True)"),
                  (_VAR, "var = (x32 - mean).pow(2).mean(dim=-2, keepdim=True)")],
    "hook_normalized_after_affine": [
        ("x_hat = self.hook_normalized((x32 - mean) / scale)\n        return (x_hat * self.weight + self.bias)",
         "x_hat = (x32 - mean) / scale\n        return self.hook_normalized(x_hat * self.weight + self.bias)")],
    # 2. embedding
    "weight_not_parameter": [("self.weight = nn.Parameter(torch.randn(num_embeddings, embedding_dim))",
                              "self.weight = torch.randn(num_embeddings, embedding_dim, requires_grad=True)")],
    "weight_transposed": [("self.weight = nn.Parameter(torch.randn(num_embeddings, embedding_dim))",
                           "self.weight = nn.Parameter(torch.randn(embedding_dim, num_embeddings))"),
                          ("out = self.weight[ids]", "out = self.weight.T[ids]")],
    "padding_row_zeroed": [("out = torch.where((ids == self.padding_idx)[..., None], out.detach(), out)",
                            "out = out.masked_fill((ids == self.padding_idx)[..., None], 0.0)")],
    "padding_row_trained": [("out = torch.where((ids == self.padding_idx)[..., None], out.detach(), out)",
                             "pass")],
    # 3. attention pattern
    "blind_row_uniform": [(_ZERO, "return pattern")],
    "no_scale": [("torch.matmul(q, k.transpose(-1, -2)) * scale", "torch.matmul(q, k.transpose(-1, -2))")],
    "divide_by_head_size": [("torch.matmul(q, k.transpose(-1, -2)) * scale",
                             "torch.matmul(q, k.transpose(-1, -2)) / q.shape[-1]")],
    "softmax_over_queries": [(_SOFTMAX, "pattern = torch.softmax(scores, dim=-2)\n    if seen is None:")],
    "mask_inverted": [(_FILL, "scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)"),
                      ("seen = sees_any_key(mask)", "seen = sees_any_key(~mask)")],
    "mask_with_inf": [(_FILL, "scores = scores.masked_fill(~mask, float(\"-inf\"))"), (_ZERO, "return pattern")],
    "additive_inf_mask": [(_FILL, "scores = scores + torch.zeros_like(scores).masked_fill(~mask, float(\"-inf\"))")],
    "scores_times_mask": [(_FILL, "scores = scores * mask")],
    "mask_after_softmax": [(_FILL, "pass"), (_SOFTMAX, "pattern = torch.softmax(scores, dim=-1)\n"
                                                       "    if mask is not None:\n"
                                                       "        pattern = pattern.masked_fill(~mask, 0.0)\n"
                                                       "    if seen is None:")],
    "zero_rows_by_own_key": [(_ZERO, "T, S = pattern.shape[-2:]\n"
                                     "    own = mask.expand(pattern.shape).diagonal(offset=S - T, dim1=-2, dim2=-1)\n"
                                     "    return pattern.masked_fill(~own[..., None], 0.0)")],
    "zero_rows_by_first_key": [(_ZERO, "return pattern.masked_fill(~mask[..., :1], 0.0)")],
    # 4. causal mask
    "diagonal_left_out": [("return k_pos <= q_pos", "return k_pos < q_pos")],
    "upper_triangle": [("return k_pos <= q_pos", "return k_pos >= q_pos")],
    "offset_ignored": [("offset = k_len - q_len", "offset = 0")],
    "offset_off_by_one": [("offset = k_len - q_len", "offset = k_len - q_len + 1")],
    # 5. attention
    "scale_by_n_embd": [("self.scale = self.head_dim**-0.5 if", "self.scale = config.n_embd**-0.5 if"),
                        (_SDPA, "if False and not")],
    "attention_unscaled": [("self.scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0",
                            "self.scale = 1.0"), (_SDPA, "if False and not")],
    "qkv_split_wrong": [(_SPLIT, "q, k, v = rearrange(self.c_attn(x), \"b t (nh three hs) -> three b t nh hs\",\n"
                                 "                           three=3, nh=self.n_head)")],
    "heads_split_wrong_order": [("rearrange(t, \"b t (nh hs) -> b t nh hs\", nh=self.n_head)",
                                 "rearrange(t, \"b t (hs nh) -> b t nh hs\", nh=self.n_head)"),
                                (_MERGE, "rearrange(z, \"b t nh hs -> b t (hs nh)\")")],
    "heads_merged_wrong_order": [(_MERGE, "y.reshape(x.shape)")],
    "causal_mask_missing": [("if attention_mask is None:\n                attention_mask = causal_mask(",
                             "if False:\n                attention_mask = causal_mask("), (_SDPA, "if False and not")],
    "hook_pattern_after_dropout": [("pattern = self.hook_pattern(pattern)\n"
                                    "            y = torch.matmul(self.attn_dropout(pattern), v)",
                                    "pattern = self.hook_pattern(self.attn_dropout(pattern))\n"
                                    "            y = torch.matmul(pattern, v)"), (_SDPA, "if False and not")],
    # 6. GELU
    "erf_gelu": _gelu("0.5 * x * (1 + torch.erf(x / math.sqrt(2)))"),
    "sigmoid_gelu": _gelu("x * torch.sigmoid(1.702 * x)"),
    "x_squared": _gelu("0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**2)))"),
    "missing_half": _gelu("x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))"),
    # 7. MLP
    "mlp_erf_gelu": [("self.act = get_activation(config.activation_function)", "self.act = F.gelu")],
    "n_inner_ignored": [("inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd",
                         "inner = 4 * config.n_embd")],
    "no_activation": [("act(self.hook_pre(self.c_fc(x)))", "self.hook_pre(self.c_fc(x))")],
    "hook_post_before_activation": [("h = self.hook_post(act(self.hook_pre(self.c_fc(x))))",
                                     "h = act(self.hook_post(self.hook_pre(self.c_fc(x))))")],
    # 8. block
    "post_ln": [("x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln_1(x), attention_mask, "
                 "past_key_values,\n                                                                 cache_position)))\n"
                 "        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln_2(x))))",
                 "x = self.ln_1(x + self.attn(x, attention_mask, past_key_values, cache_position))\n"
                 "        return self.ln_2(x + self.mlp(x))")],
    "no_attn_residual": [(_RESID_MID, _RESID_MID.replace("x + ", ""))],
    "no_mlp_residual": [(_RESID_POST, _RESID_POST.replace("x + ", ""))],
    "ln_1_twice": [("self.hook_mlp_out(self.mlp(self.ln_2(x)))", "self.hook_mlp_out(self.mlp(self.ln_1(x)))")],
    "hook_attn_out_after_residual": [
        ("x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln_1(x), attention_mask, past_key_values,\n"
         "                                                                 cache_position)))",
         "x = self.hook_resid_mid(self.hook_attn_out(x + self.attn(self.ln_1(x), attention_mask, past_key_values,\n"
         "                                                                 cache_position)))")],
    # 9. model
    "tied_weights_copied": [("self.lm_head.weight = self.transformer.wte.weight  # one Parameter, two uses",
                             "self.lm_head.weight = nn.Parameter(self.transformer.wte.weight.detach().clone())"),
                            ("save_tied_weights_once(self, self.tied_weights)", "pass")],
    "labels_not_shifted": [("shift_logits = logits[:, :-1].float()", "shift_logits = logits.float()"),
                           ("shift_labels = labels[:, 1:]", "shift_labels = labels")],
    "labels_shifted_wrong_way": [("shift_logits = logits[:, :-1].float()", "shift_logits = logits[:, 1:].float()"),
                                 ("shift_labels = labels[:, 1:]", "shift_labels = labels[:, :-1]")],
    "no_final_ln": [("            x = self.ln_f(x)\n        return BaseModelOutput(",
                     "        return BaseModelOutput(")],
    "position_ids_ignored": [
        ("position_ids = check_position_ids(\"position_ids\", position_ids, (B, T), cfg.n_positions)",
         "position_ids = torch.arange(P, P + T, device=input_ids.device)[None]")],
    "hidden_states_before_ln_f": [("            x = self.ln_f(x)\n", "            raw = x\n            x = self.ln_f(x)\n"),
                                  ("hidden_states=(*hidden, x)", "hidden_states=(*hidden, raw)")],
    # 10. loading
    "conv1d_not_transposed": [("        if key.endswith(TRANSPOSED):\n            value = value.t()\n        ours[key]",
                               "        ours[key]")],
    "transposed_by_shape": [("        if key.endswith(TRANSPOSED):\n            value = value.t()\n        ours[key]",
                             "        if key.endswith(TRANSPOSED) and value.shape[0] != value.shape[1]:\n"
                             "            value = value.t()\n        ours[key]")],
    "mask_buffers_kept": [("        if key.endswith(IGNORED):\n            continue\n", "")],
    "prefix_not_added": [("        if not key.startswith((\"transformer.\", \"lm_head.\")):\n"
                          "            key = \"transformer.\" + key\n", "")],
    "to_hf_not_transposed_back": [("hf[key] = value.t() if key.endswith(TRANSPOSED) else value", "hf[key] = value")],
    "tied_head_saved": [("        if key == \"lm_head.weight\" and config.tie_word_embeddings:\n"
                         "            continue  # tied: transformers recreates it from transformer.wte.weight\n", "")],
    # 11. KV cache
    "new_keys_first": _kv(_CAT, "{t} = torch.cat([{t}, self._{cached}[layer_idx]], dim=2)", cached=("keys", "values")),
    "cat_wrong_dim": _kv(_CAT, "{t} = torch.cat([self._{cached}[layer_idx], {t}], dim=1)", cached=("keys", "values")),
    "cache_not_stored": [("        self._keys[layer_idx], self._values[layer_idx] = k, v\n        return k, v",
                          "        if self._keys[layer_idx] is None:\n"
                          "            self._keys[layer_idx], self._values[layer_idx] = k, v\n        return k, v")],
    "static_write_right": _kv(_WRITE, "{t}_buf[:, :, cache_position + 1] = {t}.to"),
    "static_write_left": _kv(_WRITE, "{t}_buf[:, :, cache_position - 1] = {t}.to"),
    "static_write_from_zero": _kv(_WRITE, "{t}_buf[:, :, : {t}.shape[2]] = {t}.to"),
    "cached_padding_unmasked": [("& pad[:, None, None, :]  # (B, 1, T, S)", "& pad[:, None, None, P:]  # (B, 1, T, S)")],
    "positions_restart_after_cache": [(_DEFAULT_POS, "position_ids = torch.arange(T, device=input_ids.device)[None]")],
}
