"""Each catalogued BERT mistake written into the solution as a learner would write it:
{mistake name: [(old, new), ...]} edits of mlab_tfs/bert/solution.py (see mlab_tfs/testing/mistakes.py)."""

# A GELU the learner writes in place of the given one (the solution imports the exact one).
_GELU = "Tensor = torch.Tensor\n"


def _gelu(body: str) -> list[tuple[str, str]]:
    return [(_GELU, _GELU + f"\n\ndef gelu(x):\n    import math\n    return {body}\n")]


PLANTS = {
    # 1. embeddings
    "no_token_type_embeddings": [("self.LayerNorm(w + t + p)", "self.LayerNorm(w + p)")],
    "no_position_embeddings": [("self.LayerNorm(w + t + p)", "self.LayerNorm(w + t)")],
    "no_embedding_layer_norm": [("return self.dropout(self.LayerNorm(w + t + p))", "return self.dropout(w + t + p)")],
    "default_layer_norm_eps": [
        ("self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)\n        self.dropout = "
         "nn.Dropout(config.hidden_dropout_prob)\n\n    def forward(self, input_ids",
         "self.LayerNorm = LayerNorm(config.hidden_size)\n        self.dropout = "
         "nn.Dropout(config.hidden_dropout_prob)\n\n    def forward(self, input_ids")],
    # 2. padding mask
    "inverted_padding_mask": [("return attention_mask.bool()[:, None, None, :]",
                               "return attention_mask[:, None, None, :] == 0")],
    "padding_mask_on_queries": [("return attention_mask.bool()[:, None, None, :]",
                                 "return attention_mask.bool()[:, None, :, None]")],
    "padding_mask_not_bool": [("return attention_mask.bool()[:, None, None, :]",
                               "return (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min")],
    # 3. attention
    "attention_scale_hidden_size": [("self.scale = self.head_dim**-0.5", "self.scale = C**-0.5")],
    "attention_heads_merged_wrongly": [('return rearrange(z, "b t nh hs -> b t (nh hs)")',
                                        'return rearrange(z, "b t nh hs -> b t (hs nh)")')],
    "attention_mask_after_softmax": [
        ("pattern = self.hook_pattern(attention_pattern(q, k, mask, self.scale, self.hook_attn_scores))",
         "pattern = torch.softmax(self.hook_attn_scores(q @ k.transpose(-1, -2) * self.scale), dim=-1)\n"
         "            pattern = self.hook_pattern(pattern if mask is None else pattern.masked_fill(~mask, 0.0))")],
    "hook_qkv_heads_first": [
        ('        q, k, v = (hook(rearrange(lin(x), "b t (nh hs) -> b t nh hs", nh=self.num_attention_heads))',
         '        q, k, v = (hook(rearrange(lin(x), "b t (nh hs) -> b nh t hs", nh=self.num_attention_heads))'),
        ('        q, k, v = (rearrange(t, "b t nh hs -> b nh t hs") for t in (q, k, v))\n', '')],
    "hook_attn_out_after_residual": [
        ("        attn_out = self.hook_attn_out(self.dropout(self.dense(y)))\n"
         "        return self.LayerNorm(self.hook_resid_mid(attn_out + x))",
         "        return self.LayerNorm(self.hook_resid_mid(self.hook_attn_out(self.dropout(self.dense(y)) + x)))")],
    "attention_pre_ln": [("        return self.output(self.self(x, mask), x)",
                          "        out = self.output\n"
                          "        return x + out.dropout(out.dense(self.self(out.LayerNorm(x), mask)))")],
    "attention_no_residual": [("return self.LayerNorm(self.hook_resid_mid(attn_out + x))",
                               "return self.LayerNorm(self.hook_resid_mid(attn_out))")],
    "attention_no_output_layer_norm": [("return self.LayerNorm(self.hook_resid_mid(attn_out + x))",
                                        "return self.hook_resid_mid(attn_out + x)")],
    # 4. MLP
    "tanh_gelu": _gelu("0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))"),
    "sigmoid_gelu": _gelu("x * torch.sigmoid(1.702 * x)"),
    "gelu_erf_over_2": _gelu("0.5 * x * (1 + torch.erf(x / 2))"),
    "gelu_no_half": _gelu("x * (1 + torch.erf(x / math.sqrt(2)))"),
    "hook_post_before_activation": [("return self.hook_post(act(self.hook_pre(self.dense(x))))",
                                     "return act(self.hook_post(self.hook_pre(self.dense(x))))")],
    "hook_mlp_out_after_residual": [
        ("        mlp_out = self.hook_mlp_out(self.dropout(self.dense(h)))\n"
         "        return self.LayerNorm(self.hook_resid_post(mlp_out + x))",
         "        return self.LayerNorm(self.hook_resid_post(self.hook_mlp_out(self.dropout(self.dense(h)) + x)))")],
    "mlp_no_residual": [("return self.LayerNorm(self.hook_resid_post(mlp_out + x))",
                         "return self.LayerNorm(self.hook_resid_post(mlp_out))")],
    "mlp_pre_ln": [("return self.LayerNorm(self.hook_resid_post(mlp_out + x))",
                    "return self.hook_resid_post(mlp_out + x)")],
    # 5. block
    "block_pre_ln": [
        ("        x = self.attention(self.hook_resid_pre(x), mask)  # ln1(resid_mid)\n"
         "        return self.hook_normalized_resid_post(self.output(self.intermediate(x), x))",
         "        x = self.hook_resid_pre(x)\n"
         "        a = self.attention\n"
         "        x = x + a.output.dropout(a.output.dense(a.self(a.output.LayerNorm(x), mask)))\n"
         "        h = self.intermediate(self.output.LayerNorm(x))\n"
         "        return self.hook_normalized_resid_post(x + self.output.dropout(self.output.dense(h)))")],
    "mlp_reads_block_input": [
        ("        x = self.attention(self.hook_resid_pre(x), mask)  # ln1(resid_mid)\n"
         "        return self.hook_normalized_resid_post(self.output(self.intermediate(x), x))",
         "        x = self.hook_resid_pre(x)\n"
         "        a = self.attention(x, mask)\n"
         "        return self.hook_normalized_resid_post(self.output(self.intermediate(x), a))")],
    "mlp_residual_block_input": [
        ("        x = self.attention(self.hook_resid_pre(x), mask)  # ln1(resid_mid)\n"
         "        return self.hook_normalized_resid_post(self.output(self.intermediate(x), x))",
         "        x = self.hook_resid_pre(x)\n"
         "        a = self.attention(x, mask)\n"
         "        return self.hook_normalized_resid_post(self.output(self.intermediate(a), x))")],
    # 6. model
    "mask_not_passed": [("            x = self.encoder(x, mask)", "            x = self.encoder(x)")],
    "token_type_ids_ignored": [("        if token_type_ids is None:\n            token_type_ids = torch.zeros",
                                "        if True:\n            token_type_ids = torch.zeros")],
    "position_ids_ignored": [("        if position_ids is None:\n            position_ids = torch.arange",
                              "        if True:\n            position_ids = torch.arange")],
    "hook_output_ignored": [('        z = self.hook_z(rearrange(y, "b nh t hs -> b t nh hs"))\n'
                             '        return rearrange(z, "b t nh hs -> b t (nh hs)")',
                             '        self.hook_z(rearrange(y, "b nh t hs -> b t nh hs"))\n'
                             '        return rearrange(y, "b nh t hs -> b t (nh hs)")')],
    # 7. pooler
    "pooler_mean": [("return torch.tanh(self.dense(x[:, 0]))", "return torch.tanh(self.dense(x.mean(dim=1)))")],
    "pooler_last_token": [("return torch.tanh(self.dense(x[:, 0]))", "return torch.tanh(self.dense(x[:, -1]))")],
    "pooler_no_tanh": [("return torch.tanh(self.dense(x[:, 0]))", "return self.dense(x[:, 0])")],
    # 8. MLM head
    "mlm_no_decoder_bias": [("return self.decoder(self.transform(x)) + self.bias", "return self.decoder(self.transform(x))")],
    "mlm_no_transform": [("return self.decoder(self.transform(x)) + self.bias", "return self.decoder(x) + self.bias")],
    "mlm_transform_no_layer_norm": [("return self.LayerNorm(self.act(self.dense(x)))", "return self.act(self.dense(x))")],
    "decoder_weight_copied": [
        ("self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight",
         "self.cls.predictions.decoder.weight = nn.Parameter(self.bert.embeddings.word_embeddings.weight.clone())")],
    "mlm_loss_shifted": [(_GELU, _GELU + "\n\ndef mlm_loss(logits, labels):\n"
                                 "    V = logits.shape[-1]\n"
                                 "    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1))\n")],
    "mlm_loss_summed": [(_GELU, _GELU + "\n\ndef mlm_loss(logits, labels):\n"
                                "    V = logits.shape[-1]\n"
                                "    return F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), reduction='sum')\n")],
    # 9. classifier
    "problem_type_config_ignored": [("    if config.problem_type is not None:\n        return config.problem_type\n", "")],
    "problem_type_dtype_first": [
        ('    if config.num_labels == 1:\n        return "regression"\n    if labels.dtype in (torch.long, torch.int):\n'
         '        return "single_label_classification"\n',
         '    if labels.dtype in (torch.long, torch.int):\n        return "single_label_classification"\n'
         '    if config.num_labels == 1:\n        return "regression"\n')],
    "problem_type_dtype_ignored": [
        ('    if labels.dtype in (torch.long, torch.int):\n        return "single_label_classification"\n'
         '    return "multi_label_classification"',
         '    return "single_label_classification"')],
    "single_label_bce": [("return F.cross_entropy(logits, labels.reshape(-1), ignore_index=-100)",
                          "return F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, logits.shape[-1]).float())")],
    "multi_label_softmax": [("return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))",
                             "return F.cross_entropy(logits, labels.to(logits.dtype))")],
    "regression_broadcast": [("return F.mse_loss(logits.squeeze(-1), labels.reshape(logits.shape[0]))",
                              "return ((logits - labels) ** 2).mean()")],
    "classifier_skips_pooler": [("logits = self.classifier(self.dropout(out.pooler_output))",
                                 "logits = self.classifier(self.dropout(out.last_hidden_state[:, 0]))")],
    # 10. loading
    "bert_prefix_mismatch": [('        ours = {k.removeprefix("bert."): v for k, v in ours.items()}\n', "        pass\n")],
    "gamma_beta_not_renamed": [
        ('        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")\n', "")],
    "position_ids_buffer_kept": [('        if key.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):\n'
                                  '            continue  # buffers of older transformers, rebuilt on the fly\n', "")],
    "tied_decoder_not_pointed": [("        full[DECODER] = full[WORD_EMBEDDINGS]", "        pass")],
    "decoder_bias_kept": [('    decoder_bias = hf_state.pop("cls.predictions.decoder.bias", None)',
                           '    decoder_bias = hf_state.get("cls.predictions.decoder.bias", None)')],
}
