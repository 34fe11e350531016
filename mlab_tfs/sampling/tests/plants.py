"""Each catalogued mistake written into the solution as a learner would write it (see
mlab_tfs/testing/mistakes.py): the planting test checks that ``mlab-tfs check`` names it.
The tests also run these edited solutions to learn what a mistake outputs (tests/mistaken.py)."""

PLANTS = {
    # 1. greedy
    "first_position_logits": [("logits = model(ids).logits[:, -1].float()", "logits = model(ids).logits[:, 0].float()")],
    "argmax_over_positions": [("        nxt = logits.argmax(dim=-1)\n        if eos_token_id is not None:\n            nxt = torch.where(done",
                               "        nxt = model(ids).logits.argmax(dim=1)[:, -1]\n        if eos_token_id is not None:\n            nxt = torch.where(done")],
    "stop_when_any_row_ends": [("        if bool(done.all()):", "        if bool(done.any()):")],
    # 2. temperature
    "temperature_multiplied": [("    return logits / temperature", "    return logits * temperature")],
    "argmax_not_sampled": [("    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)",
                            "    return probs.argmax(dim=-1)")],
    "generator_ignored": [("torch.multinomial(probs, num_samples=1, generator=generator)",
                           "torch.multinomial(probs, num_samples=1)")],
    # 3. top_k
    "kth_value_dropped": [("return logits.masked_fill(logits < kth, NEG_INF)", "return logits.masked_fill(logits <= kth, NEG_INF)")],
    "ties_of_the_kth_dropped": [
        ("    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1): the k-th largest\n"
         "    return logits.masked_fill(logits < kth, NEG_INF)",
         "    idx = torch.topk(logits, k, dim=-1).indices\n"
         "    return torch.full_like(logits, NEG_INF).scatter(-1, idx, logits.gather(-1, idx))")],
    "masked_with_zero": [("return logits.masked_fill(logits < kth, NEG_INF)", "return logits.masked_fill(logits < kth, 0.0)")],
    # 4. top_p
    "crossing_token_dropped": [("sorted_logits, order = torch.sort(logits, dim=-1)  # ascending",
                                "sorted_logits, order = torch.sort(logits, dim=-1, descending=True)"),
                               ("    drop_sorted = cum <= 1 - top_p\n    drop_sorted[..., -min_tokens_to_keep:] = False",
                                "    drop_sorted = cum > top_p\n    drop_sorted[..., :min_tokens_to_keep] = False")],
    "own_probability_threshold": [("    drop_sorted = cum <= 1 - top_p", "    drop_sorted = sorted_logits.softmax(dim=-1) < top_p")],
    "min_p_absolute": [("    drop = probs < min_p * probs.amax(dim=-1, keepdim=True)", "    drop = probs < min_p")],
    "min_p_on_logits": [("    drop = probs < min_p * probs.amax(dim=-1, keepdim=True)",
                         "    drop = logits < min_p * logits.amax(dim=-1, keepdim=True)")],
    # 5. penalties
    "negative_logits_divided": [("    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)",
                                 "    penalised = logits / penalty")],
    "penalty_inverted": [("    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)",
                          "    penalised = torch.where(logits > 0, logits * penalty, logits / penalty)")],
    "penalty_per_occurrence": [
        ("    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)\n"
         "    return torch.where(_seen(input_ids, logits.shape[-1]), penalised, logits)",
         "    V = logits.shape[-1]\n"
         "    ids = torch.where(input_ids < 0, V, input_ids)\n"
         "    counts = torch.zeros(logits.shape[0], V + 1, dtype=logits.dtype).scatter_add_(\n"
         "        1, ids, torch.ones_like(ids, dtype=logits.dtype))[:, :V]\n"
         "    factor = penalty ** counts  # once per occurrence\n"
         "    return torch.where(logits < 0, logits * factor, logits / factor)")],
    "padding_penalised": [("    ids = torch.where(input_ids < 0, vocab_size, input_ids.clamp(max=vocab_size))  # spare column for ignored ids",
                           "    ids = input_ids % vocab_size  # -1 wraps around, as logits[b, -1] would")],
    "temperature_after_filters": [("        if o.temperature != 1.0:\n            logits = logits / o.temperature\n", ""),
                                  ("            logits = _min_p(logits, o.min_p, o.min_tokens_to_keep)\n    return logits",
                                   "            logits = _min_p(logits, o.min_p, o.min_tokens_to_keep)\n"
                                   "        logits = logits / o.temperature\n    return logits")],
    # 6. batching
    "right_padding": [("        ids[b, T - len(r) :] = r\n        mask[b, T - len(r) :] = 1",
                       "        ids[b, : len(r)] = r\n        mask[b, : len(r)] = 1")],
    "positions_not_from_mask": [("    return (mask.long().cumsum(-1) - 1).clamp(min=0)",
                                 "    return torch.arange(mask.shape[-1], device=mask.device).expand(mask.shape)")],
    "positions_from_one": [("    return (mask.long().cumsum(-1) - 1).clamp(min=0)", "    return mask.long().cumsum(-1)")],
    # 7. kv_cache_loop
    "finished_rows_not_padded": [("        if fill is not None:\n            nxt = torch.where(unfinished, nxt, fill)  # finished rows only get padding\n", "")],
    "eos_ignored": [("        if eos is not None:\n            unfinished = unfinished & ~torch.isin(nxt, eos)\n"
                     "        if not bool(unfinished.any()) or step == p.max_new_tokens - 1:",
                     "        if step == p.max_new_tokens - 1:")],
    "positions_not_continued": [("lm_forward(model, nxt[:, None], mask, positions[:, -1:], past)",
                                 "lm_forward(model, nxt[:, None], mask, torch.full_like(nxt[:, None], mask.shape[1] - 1), past)")],
    # 8. beam_search
    "cache_not_reordered": [("        past = reorder_cache(past, (beam_src + batch_offset).view(-1))\n", "")],
    "length_penalty_ignored": [("        done_scores = cand_scores / new_len**length_penalty", "        done_scores = cand_scores")],
    "only_num_beams_candidates": [("    K = 1 if nb == 1 else max(2, 1 + (len(eos) if eos is not None else 0)) * nb", "    K = nb")],
    # 9. two_contexts
    "contrastive_without_a": [("        return logits_a + gamma * (logits_a - logits_b)", "        return logits_a - gamma * logits_b")],
    "contrastive_sign_flipped": [("        return logits_a + gamma * (logits_a - logits_b)",
                                  "        return logits_a + gamma * (logits_b - logits_a)")],
    "product_of_raw_logits": [("    return F.log_softmax(logits_a, dim=-1) + gamma * F.log_softmax(logits_b, dim=-1)  # product",
                               "    return logits_a + gamma * logits_b  # product")],
    # 10. suffix_scoring
    "suffix_logits_not_shifted": [("    at = lengths[:, None] + torch.arange(S, device=prompt.device)[None]",
                                   "    at = lengths[:, None] + 1 + torch.arange(S, device=prompt.device)[None]")],
    "positions_restart_at_zero": [("    positions = (P + torch.arange(W, device=prompt.device))[None].expand(N, W)",
                                   "    positions = torch.arange(W, device=prompt.device)[None].expand(N, W)")],
    "raw_logits_summed": [("    return F.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1).sum(-1)",
                           "    return logits.float().gather(-1, targets[..., None]).squeeze(-1).sum(-1)")],
    "completion_padding_attended": [("        cached = torch.cat([cached, real], dim=1)  # (N, P + C)",
                                     "        cached = torch.cat([cached, torch.ones_like(real)], dim=1)  # (N, P + C)")],
    "suffix_positions_after_longest": [
        ("    positions = (P + lengths).repeat_interleave(K)[:, None] + torch.arange(S, device=dev)[None]",
         "    positions = torch.full((N * K, 1), P + C, device=dev) + torch.arange(S, device=dev)[None]")],
    "first_token_from_last_column": [
        ("        last = logits[torch.arange(N, device=dev), (lengths - 1).clamp(min=0)]", "        last = logits[:, -1]")],
    "suffix_padding_scored": [("    scores = torch.where(keep, token_log_probs, 0.0).sum(-1)",
                               "    scores = token_log_probs.sum(-1)")],
}
