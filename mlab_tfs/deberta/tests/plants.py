"""Each catalogued DeBERTa mistake written into the solution as a learner would write it:
{mistake name: [(old, new), ...]} edits of mlab_tfs/deberta/solution.py (see mlab_tfs/testing/mistakes.py)."""

_LOG = "    log_pos = torch.ceil(torch.log(abs_pos / mid) / log_ratio * (mid - 1)) + mid\n"
_C2P_INDEX = "    index = torch.clamp(relative_pos + att_span, 0, 2 * att_span - 1)  # (T, T): the distance of (i, j)\n"
_P2C_INDEX = "    index = torch.clamp(-relative_pos + att_span, 0, 2 * att_span - 1)  # (T_key, T_query)\n"
_SCALE = "        self.scale_factor = 1 + len(self.pos_att_type)\n"
_FORWARD_SCALE = "        scale = math.sqrt(self.head_dim * self.scale_factor)\n        scores = torch.matmul"

PLANTS = {
    # 1. log buckets
    "bucket_floor": [(_LOG, _LOG.replace("torch.ceil", "torch.floor"))],
    "bucket_round": [(_LOG, _LOG.replace("torch.ceil", "torch.round"))],
    "bucket_sign_lost": [("(log_pos * sign).to(relative_pos.dtype)", "log_pos.to(relative_pos.dtype)")],
    "bucket_log_max_position": [("torch.tensor((max_position - 1) / mid,", "torch.tensor(max_position / mid,")],
    "bucket_no_mid": [(_LOG, _LOG.replace(" + mid\n", "\n"))],
    "bucket_mid_true_division": [("    mid = bucket_size // 2\n    sign", "    mid = bucket_size / 2\n    sign")],
    "bucket_log_scale_mid": [(_LOG, _LOG.replace("* (mid - 1))", "* mid)"))],
    # 2. relative position matrix
    "relative_sign_flipped": [("rel = q_ids[:, None] - k_ids[None, :]", "rel = k_ids[None, :] - q_ids[:, None]")],
    "relative_not_bucketed": [("    if bucket_size > 0 and max_position > 0:\n        rel = make_log_bucket_position(",
                               "    if False:\n        rel = make_log_bucket_position(")],
    "relative_square": [("k_ids = torch.arange(key_size,", "k_ids = torch.arange(query_size,")],
    # 3. c2p
    "c2p_sign_flipped": [(_C2P_INDEX, _C2P_INDEX.replace("relative_pos + att_span", "relative_pos.T + att_span"))],
    "c2p_clamp_without_k": [(_C2P_INDEX, _C2P_INDEX.replace("relative_pos + att_span", "relative_pos"))],
    "c2p_not_clamped": [(_C2P_INDEX, "    index = relative_pos + att_span\n")],
    "c2p_gather_wrong_dim": [("    return torch.gather(all_pos, dim=-1, index=index.expand(B, nh, T, T))\n",
                              "    return torch.gather(all_pos, dim=-1, index=index.expand(B, nh, T, T)).transpose(-1, -2)\n")],
    "c2p_scaled": [("    return torch.gather(all_pos, dim=-1, index=index.expand(B, nh, T, T))\n",
                    "    return torch.gather(all_pos, dim=-1, index=index.expand(B, nh, T, T)) / math.sqrt(3 * query.shape[-1])\n")],
    # 4. p2c
    "p2c_sign_flipped": [(_P2C_INDEX, _P2C_INDEX.replace("-relative_pos", "relative_pos"))],
    "p2c_no_transpose": [("    return by_key.transpose(-1, -2)  # (B, nh, i, j)", "    return by_key")],
    "p2c_as_c2p": [(_P2C_INDEX, _P2C_INDEX.replace("-relative_pos", "relative_pos")),
                   ("    return by_key.transpose(-1, -2)  # (B, nh, i, j)", "    return by_key")],
    "p2c_not_clamped": [(_P2C_INDEX, "    index = -relative_pos + att_span\n")],
    # 5. attention
    "scale_no_factor": [(_SCALE, "        self.scale_factor = 1\n")],
    "scale_factor_outside_sqrt": [(_FORWARD_SCALE, "        scale = math.sqrt(self.head_dim) * self.scale_factor\n"
                                                   "        scores = torch.matmul"),
                                  ("        scale = math.sqrt(self.head_dim * self.scale_factor)\n        rel_embeddings",
                                   "        scale = math.sqrt(self.head_dim) * self.scale_factor\n        rel_embeddings")],
    "scale_factor_fixed_3": [(_SCALE, "        self.scale_factor = 3\n")],
    "no_scale": [(_FORWARD_SCALE, "        scale = 1.0\n        scores = torch.matmul"),
                 ("        scale = math.sqrt(self.head_dim * self.scale_factor)\n        rel_embeddings",
                  "        scale = 1.0\n        rel_embeddings")],
    "relative_terms_unscaled": [("c2p_scores(query, pos_key / scale, relative_pos, self.att_span)",
                                 "c2p_scores(query, pos_key, relative_pos, self.att_span)"),
                                ("p2c_scores(key, pos_query / scale, relative_pos, self.att_span)",
                                 "p2c_scores(key, pos_query, relative_pos, self.att_span)")],
    "share_att_key_ignored": [
        ("            proj = self.key_proj if self.share_att_key else self.pos_key_proj\n",
         "            proj = self.key_proj\n"),
        ("            proj = self.query_proj if self.share_att_key else self.pos_query_proj\n",
         "            proj = self.query_proj\n")],
    # 6. embeddings
    "embeddings_no_mask": [("        if mask is not None:\n            x = x * mask[..., None].to(x.dtype)", "        if False:\n            pass")],
    "embeddings_mask_before_norm": [
        ("        x = self.LayerNorm(x)\n        if mask is not None:\n            x = x * mask[..., None].to(x.dtype)",
         "        if mask is not None:\n            x = x * mask[..., None].to(x.dtype)\n        x = self.LayerNorm(x)")],
    "embeddings_token_types_ignored": [("            if token_type_ids is None:\n                token_type_ids = torch.zeros_like",
                                        "            if True:\n                token_type_ids = torch.zeros_like")],
    "embeddings_position_ids_ignored": [("            if position_ids is None:\n                position_ids = torch.arange",
                                         "            if True:\n                position_ids = torch.arange")],
    # 7. encoder
    "encoder_keys_only_mask": [("keep = attention_mask[:, None, :, None] & attention_mask[:, None, None, :]",
                                "keep = attention_mask[:, None, None, :].expand(-1, 1, T, T)")],
    "encoder_table_not_normed": [("return self.LayerNorm(rel) if self.norm_rel_ebd else rel", "return rel")],
    "encoder_no_buckets": [("T, T, self.position_buckets, self.max_relative_positions, device=",
                            "T, T, device=")],
    # 8. MLM heads
    "head_norm_before_act": [("        return self.LayerNorm(self.act(self.dense(hidden_states)))",
                              "        return self.act(self.LayerNorm(self.dense(hidden_states)))")],
    "original_head_no_bias": [("return torch.matmul(h, word_embeddings.t()) + self.bias", "return torch.matmul(h, word_embeddings.t())")],
    "legacy_bias_twice": [("        return self.decoder(self.transform(hidden_states))",
                           "        return self.decoder(self.transform(hidden_states)) + self.bias")],
}
