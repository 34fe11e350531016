"""The common mistakes of the sampling exercises (see mlab_tfs/testing/mistakes.py).

The tests recognise each one by what it computes (tests/mistaken.py), the guide lists them
under each exercise, and tests/plants.py writes each into the solution to check that
``mlab-tfs check`` names it.
"""

from mlab_tfs.testing.mistakes import Catalogue, Mistake

PART = "sampling"

MISTAKES = Catalogue(PART, [
    # 1. greedy
    Mistake("greedy", "first_position_logits", "the logits of the first position (not the last)",
            "Only the last position's logits, `logits[:, -1]`, predict the next token; position 0 predicts the "
            "prompt's second token."),
    Mistake("greedy", "argmax_over_positions", "greedy argmax over the wrong dim (the positions)",
            "logits are (B, T, V): the next token is the argmax over the vocabulary, `logits[:, -1].argmax(-1)`; "
            "`argmax(dim=1)` gives, for each token, the position where its logit is largest."),
    Mistake("greedy", "stop_when_any_row_ends", "stopping when the first row ends",
            "The loop ends when *every* row has produced eos (or after max_new_tokens), not the first."),
    # 2. temperature
    Mistake("temperature", "temperature_multiplied", "multiplying by the temperature",
            "Temperature divides the logits: below 1 it sharpens the distribution, above 1 it flattens it."),
    Mistake("temperature", "argmax_not_sampled", "the argmax instead of a draw",
            "`sample_token` draws from softmax(logits) with `torch.multinomial`; the argmax is greedy decoding."),
    Mistake("temperature", "generator_ignored", "the generator not passed to torch.multinomial",
            "`generator=` must reach `torch.multinomial`, or the same seed gives other draws and runs cannot be "
            "reproduced."),
    # 3. top_k
    Mistake("top_k", "kth_value_dropped", "keeping k - 1 tokens (<= instead of < against the k-th value)",
            "Keep every logit >= the k-th largest: masking `logits <= kth` drops the k-th token itself."),
    Mistake("top_k", "ties_of_the_kth_dropped", "keeping exactly k indices (ties with the k-th dropped)",
            "transformers' TopKLogitsWarper keeps every logit equal to the k-th largest: compare with the value, "
            "do not scatter the k indices of `torch.topk`."),
    Mistake("top_k", "masked_with_zero", "filtered logits set to 0 (not -inf)",
            "A filtered token must have probability 0: its logit is -inf. A logit of 0 is an ordinary, likely token."),
    # 4. top_p
    Mistake("top_p", "crossing_token_dropped", "top-p dropping the token that crosses the threshold",
            "Keep the smallest set of most likely tokens whose mass *reaches* top_p: the token that crosses the "
            "threshold is kept (descending: drop a token when the mass *before* it is already >= top_p)."),
    Mistake("top_p", "own_probability_threshold", "keeping the tokens whose own probability is >= top_p",
            "top_p bounds the *cumulative* mass of the most likely tokens, not each token's probability."),
    Mistake("top_p", "min_p_absolute", "min-p relative to the wrong probability (an absolute threshold)",
            "Min-p drops tokens below `min_p` times the *most likely token's* probability: the threshold scales "
            "with the model's confidence (Nguyen et al. 2024)."),
    Mistake("top_p", "min_p_on_logits", "min-p on the logits (not the probabilities)",
            "The threshold is on probabilities, p < min_p * p_max; on logits it means something else entirely "
            "(and flips for negative logits)."),
    # 5. penalties
    Mistake("penalties", "negative_logits_divided", "repetition penalty dividing negative logits too",
            "Dividing a negative logit by the penalty raises it, and the repeated token gets *more* likely: "
            "positive logits are divided, negative ones multiplied (transformers' rule; CTRL's formula divides every "
            "penalised logit, which is only right for positive ones)."),
    Mistake("penalties", "penalty_inverted", "the repetition penalty inverted (positive logits multiplied)",
            "penalty > 1 discourages repeats: a positive logit is *divided* by it and a negative one multiplied, "
            "so that both move down."),
    Mistake("penalties", "penalty_per_occurrence", "the repetition penalty applied once per occurrence",
            "CTRL's penalty applies once per token that occurred, however often: a set, not counts."),
    Mistake("penalties", "padding_penalised", "padding (-1) counted as a token (the last id)",
            "-1 marks padding; indexing with it penalises the last token of the vocabulary: leave negative ids out."),
    Mistake("penalties", "temperature_after_filters", "temperature applied after top-k/top-p (the processors' order)",
            "transformers applies temperature, then top-k, then top-p, then min-p: top-p after temperature keeps "
            "another set of tokens."),
    # 6. batching
    Mistake("batching", "right_padding", "padding on the right",
            "Left padding puts every row's last real token in the last column, where the next token is read; "
            "under right padding that column is padding for all but the longest row."),
    Mistake("batching", "positions_not_from_mask", "positions 0..T-1 whatever the padding (not from the mask)",
            "Under left padding a row's first real token is not in column 0: with positions 0..T-1 padded rows "
            "are shifted and differ from the prompt alone. Positions are `cumsum(mask) - 1`."),
    Mistake("batching", "positions_from_one", "positions from 1 (cumsum(mask) without - 1)",
            "Every row's first real token is at position 0, as the prompt alone: `cumsum(mask) - 1`."),
    # 7. kv_cache_loop
    Mistake("kv_cache_loop", "finished_rows_not_padded", "generate not padding finished rows",
            "A row that produced eos is done: every later token is pad_token_id, whatever the model predicts."),
    Mistake("kv_cache_loop", "eos_ignored", "generate not stopping rows at eos",
            "Each row stops at its first eos (kept; eos_token_id may be several ids), and the loop ends once "
            "every row has stopped."),
    Mistake("kv_cache_loop", "positions_not_continued", "the new token's position from its column, not the mask",
            "With a cache each new token's position continues its own row: the last real position + 1, "
            "`cumsum(mask) - 1` of the grown mask, not the column index."),
    # 8. beam_search
    Mistake("beam_search", "cache_not_reordered", "the cache not reordered in beam search (or not to the beams' rows)",
            "Beam i's next token must see the keys and values of the beam it came from: `reorder_cache` with the "
            "chosen beams' rows, `beam_src + b * num_beams` in the (B * num_beams) cache, after every step. "
            "Without it the output looks plausible and is wrong."),
    Mistake("beam_search", "length_penalty_ignored", "finished hypotheses scored without the length penalty",
            "A finished hypothesis scores sum_logprobs / new_tokens ** length_penalty (eos counted)."),
    Mistake("beam_search", "only_num_beams_candidates", "num_beams candidates per step (not max(2, 1 + eos ids) * num_beams)",
            "Keep max(2, 1 + number of eos ids) * num_beams candidates (transformers' beams_to_keep), so that "
            "num_beams remain after taking out those that end in an eos: with two eos ids, 2 * num_beams can "
            "leave fewer."),
    # 9. two_contexts
    Mistake("two_contexts", "contrastive_without_a", "a - gamma * b (the guidance missing context a)",
            "Contrastive guidance is logits_a + gamma * (logits_a - logits_b): push away from b, starting from a."),
    Mistake("two_contexts", "contrastive_sign_flipped", "a + gamma * (b - a) (the difference the wrong way)",
            "The difference is a - b: toward context a, away from b."),
    Mistake("two_contexts", "product_of_raw_logits", "a + gamma * b on raw logits (no log_softmax)",
            "The product of experts is log p_a + gamma * log p_b: `log_softmax` each context first. The sampled "
            "distribution would be the same (softmax cancels a row's offset), but the scores are not: they differ "
            "by a per-row constant, and a repetition penalty, which treats positive and negative scores "
            "differently, then penalises other amounts."),
    # 10. suffix_scoring
    Mistake("suffix_scoring", "suffix_logits_not_shifted", "the suffix scored with its own positions' logits (no shift)",
            "The logits at position t predict token t + 1: the suffix's first token is predicted by the "
            "completion's last position (the prompt's last, for an empty completion)."),
    Mistake("suffix_scoring", "positions_restart_at_zero", "completion positions restarting at 0 after the prompt's cache",
            "The completions continue the prompt: their positions are P, P + 1, ..., not 0, 1, ..."),
    Mistake("suffix_scoring", "raw_logits_summed", "raw logits summed (no log_softmax)",
            "log P(token) is `log_softmax(logits)[token]`; a raw logit has an arbitrary offset per position."),
    Mistake("suffix_scoring", "completion_padding_attended",
            "score_suffixes: the suffix attends the padding slots after a short completion",
            "The cache holds C columns for every completion, the longest's length; a shorter one's last "
            "C - len(c_i) columns are padding. The suffix's mask must keep them 0 (repeat the completions' mask), "
            "or the suffix reads the pad token's keys and values."),
    Mistake("suffix_scoring", "suffix_positions_after_longest",
            "score_suffixes: every suffix placed after the longest completion (positions P + C + j)",
            "Suffix token j of completion i is at position P + len(c_i) + j, right after that completion, "
            "whatever the padding: the padding slots hold no position."),
    Mistake("suffix_scoring", "first_token_from_last_column",
            "score_suffixes: the suffix's first token predicted by the completions' last column",
            "Each row's last real token is at column len(c_i) - 1; the last column is padding for every "
            "completion shorter than the longest (and an empty completion's first suffix token is predicted by "
            "the prompt's last logits)."),
    Mistake("suffix_scoring", "suffix_padding_scored", "score_suffixes: a short suffix's padding summed into its score",
            "Suffixes of different lengths are right-padded to the longest: sum the log-probabilities of each "
            "suffix's own S_k tokens only."),
])
