"""Each catalogued interpretability mistake as source edits of mlab_tfs/interp/solution.py: the
edited solution runs as the learner's code, and ``mlab-tfs check`` must name the mistake
(``mlab_tfs/testing/tests/test_catalogue.py``)."""

from __future__ import annotations

_STACK = "return torch.stack(rows + [last])"
_EINSUM = "return torch.einsum(\"bthd,hdc->bthc\", z.float(), W_O.float())"
_ABLATE = "z[:, :, h] = 0.0 if how == \"zero\" else z[:, :, h].mean(dim=(0, 1))"
_LENS = "return lay.unembed(lay.final_norm(accumulated_resid(cache)))"
_CLEAN = ("    names = [f\"blocks.{i}.hook_resid_pre\" for i in range(lay.n_layer)]\n"
          "    out = torch.empty(lay.n_layer, T)\n"
          "    with evaluating(model):\n"
          "        _, cache = model.run_with_cache(clean, names_filter=names)\n")
_RUN = ("                logits = model.run_with_hooks(corrupted, fwd_hooks=[(name, patch)]).logits\n"
        "                out[layer, t] =")
_SAVE = ("        fig.suptitle(title)\n"
         "    return save_figure(fig, path)\n")

PLANTS: dict[str, list[tuple[str, str]]] = {
    # 1. residual stream
    "final_row_normed": [(_STACK, "return torch.stack(rows + [cache[\"ln_final.hook_normalized\"]])")],
    "final_row_missing": [(_STACK, "return torch.stack(rows)")],
    "rows_after_each_block": [("rows = [cache[f\"blocks.{i}.hook_resid_pre\"] for i in range(n_layer)]",
                               "rows = [cache[f\"blocks.{i}.hook_resid_post\"] for i in range(n_layer)]")],
    "pos_embed_left_out": [("    if lay.has_pos_embed:\n        parts.append(", "    if False:\n        parts.append(")],
    # 2. heads' outputs
    "bias_in_every_head": [(_EINSUM, _EINSUM + " + lay.out_proj[layer].bias")],
    "weight_not_transposed": [("lay.out_proj[layer].weight.T.reshape(", "lay.out_proj[layer].weight.reshape(")],
    "heads_interleaved": [("lay.out_proj[layer].weight.T.reshape(lay.n_head, lay.head_dim, -1)",
                           "lay.out_proj[layer].weight.T.reshape(lay.head_dim, lay.n_head, -1).transpose(0, 1)")],
    "direction_reversed": [("return (pick(correct) - pick(wrong))", "return (pick(wrong) - pick(correct))")],
    "embedding_as_unembedding": [("W_U = lay.unembed.weight  # (V, C)", "W_U = model.get_input_embeddings().weight")],
    # 3. direct logit attribution
    "scale_not_divided": [("x = x / scale.reshape(B, *([1] * (x.dim() - 1)))", "x = x * 1.0")],
    "mean_not_subtracted": [("                x = x - x.mean(-1, keepdim=True)\n", "                pass\n")],
    "norm_weight_ignored": [("along = direction * norm.weight.float()", "along = direction")],
    "norm_bias_divided": [("biases = biases + direction @ norm.bias.float()",
                           "biases = biases + (direction @ norm.bias.float()) / scale[:, 0]")],
    "pos_ignored": [("    where = _positions(pos, B, T, ids.device)\n",
                     "    where = _positions(pos, B, T, ids.device)\n    where = torch.full_like(where, T - 1)\n")],
    "summed_over_batch": [("\"heads\": heads.mean(0), \"mlps\": mlps.mean(0), \"embed\": embed.mean(0), "
                           "\"biases\": biases.mean(0)",
                           "\"heads\": heads.sum(0), \"mlps\": mlps.sum(0), \"embed\": embed.sum(0), "
                           "\"biases\": biases.sum(0)")],
    # 4. attention pictures
    "pattern_transposed": [("ax.imshow(heads[h].numpy(),", "ax.imshow(heads[h].numpy().T,")],
    "only_first_head": [("    for h in range(rows * cols):\n", "    for h in range(1):\n")],
    "figure_left_open": [(_SAVE, "        fig.suptitle(title)\n"
                                 "    import io\n"
                                 "    from mlab_tfs.durable import write_bytes_atomic\n"
                                 "    buffer = io.BytesIO()\n"
                                 "    fig.savefig(buffer, format=\"png\")\n"
                                 "    write_bytes_atomic(path, buffer.getvalue())\n"
                                 "    return Path(path)\n")],
    # 5. induction scores
    "key_at_t_minus_l": [("[:, :, t, t - L + 1].float()", "[:, :, t, t - L].float()")],
    "queries_from_l_minus_1": [("t = torch.arange(L, 2 * L, device=ids.device)",
                                "t = torch.arange(L - 1, 2 * L, device=ids.device)")],
    "summed_not_averaged": [(".float().mean(dim=(0, 2)) for name in names]", ".float().sum(2).mean(0) for name in names]")],
    "first_sequence_only": [("cache[name][:, :, t, t - L + 1].float().mean(dim=(0, 2))",
                             "cache[name][:1, :, t, t - L + 1].float().mean(dim=(0, 2))")],
    "halves_drawn_separately": [("return torch.cat([r, r], dim=1)",
                                 "return torch.cat([r, torch.randint(0, vocab_size, (batch, seq_len))], dim=1)")],
    # 6. ablation
    "targets_not_shifted": [("logp.gather(-1, ids[:, 1:, None])", "logp.gather(-1, ids[:, :-1, None])")],
    "logits_shifted_not_targets": [("logp = F.log_softmax(logits[:, :-1].float(), dim=-1)",
                                    "logp = F.log_softmax(logits[:, 1:].float(), dim=-1)")],
    "padding_not_masked": [("        loss = loss.masked_fill(~(real[:, 1:] & real[:, :-1]), 0.0)\n", "")],
    "feature_zeroed_not_head": [(_ABLATE, "z[..., h] = 0.0 if how == \"zero\" else z[:, :, h].mean(dim=(0, 1))")],
    "whole_layer_ablated": [(_ABLATE, "z[:] = 0.0 if how == \"zero\" else z[:, :, h].mean(dim=(0, 1))")],
    "mean_per_sequence": [(_ABLATE, "z[:, :, h] = 0.0 if how == \"zero\" else z[:, :, h].mean(dim=1, keepdim=True)")],
    # 7. activation patching
    "every_position_patched": [("resid[:, t] = cache[hook.name][:, t]", "resid[:] = cache[hook.name]")],
    "runs_swapped": [(_CLEAN, _CLEAN.replace("run_with_cache(clean,", "run_with_cache(corrupted,")),
                     (_RUN, _RUN.replace("run_with_hooks(corrupted,", "run_with_hooks(clean,"))],
    "every_head_patched": [("z[:, :, h] = cache[hook.name][:, :, h]", "z[:] = cache[hook.name]")],
    "head_patched_at_last_position_only": [("z[:, :, h] = cache[hook.name][:, :, h]",
                                            "z[:, -1, h] = cache[hook.name][:, -1, h]")],
    "recovery_from_clean": [("return (patched - corrupted) / (clean - corrupted)",
                             "return (patched - clean) / (corrupted - clean)")],
    # 8. logit lens
    "final_norm_skipped": [(_LENS, "return lay.unembed(accumulated_resid(cache))")],
    "scale_frozen_from_last_layer": [(_LENS, "streams = accumulated_resid(cache)  # (L + 1, B, T, C)\n"
                                             "        last = streams[-1]\n"
                                             "        if lay.centred:\n"
                                             "            streams = streams - streams.mean(-1, keepdim=True)\n"
                                             "            last = last - last.mean(-1, keepdim=True)\n"
                                             "        scale = torch.sqrt(last.pow(2).mean(-1, keepdim=True) "
                                             "+ lay.final_norm.eps)\n"
                                             "        normed = streams / scale * lay.final_norm.weight\n"
                                             "        if lay.centred:\n"
                                             "            normed = normed + lay.final_norm.bias\n"
                                             "        return lay.unembed(normed)")],
    "embeddings_row_missing": [(_LENS, "return lay.unembed(lay.final_norm(accumulated_resid(cache)[1:]))")],
}
