"""The common mistakes of the interpretability exercises: what the tests recognise, the guide
lists and ``mlab_tfs/testing/tests/test_catalogue.py`` plants (``mlab_tfs.testing.mistakes``)."""

from __future__ import annotations

from mlab_tfs.testing.mistakes import Catalogue, Mistake

PART = "interp"

MISTAKES = Catalogue(PART, [
    # ------------------------------------------------------------------ 1. residual stream
    Mistake("residual_stream", "final_row_normed", "the last row taken after the final norm (ln_final.hook_normalized; "
                                                   "the last row is the stream the norm reads)",
            "The accumulated stream ends with the last block's `hook_resid_post`, what the final norm *reads*. "
            "transformers' `hidden_states[-1]` and `ln_final.hook_normalized` are after it: centred (GPT-2) and "
            "divided by the scale, so each position's vector has a root mean square of about 1."),
    Mistake("residual_stream", "final_row_missing", "no last row (only each block's input: add the last block's "
                                                    "hook_resid_post)",
            "n_layer blocks have n_layer inputs, and the stream after the last block is one more: "
            "(n_layer + 1, B, T, C)."),
    Mistake("residual_stream", "rows_after_each_block", "each block's output (hook_resid_post) as its row (row i is "
                                                        "block i's input, hook_resid_pre: the first row is the "
                                                        "embeddings)",
            "The rows are the stream *before* each block, then the stream after the last: row 0 is the embeddings, "
            "what no block has touched yet. Taking each block's output shifts every row by one block."),
    Mistake("residual_stream", "pos_embed_left_out", "GPT-2's position embeddings left out of the components "
                                                     "(hook_pos_embed is a component too)",
            "The stream starts as token plus position embedding: without `hook_pos_embed` the components no longer "
            "sum to the final stream."),
    # ------------------------------------------------------------------ 2. heads' outputs
    Mistake("head_outputs", "bias_in_every_head", "the output projection's bias added to every head's output "
                                                  "(it belongs to no head: add it once, outside)",
            "The projection is `z_all @ W_O.T + b`: split over heads, the bias appears once, not nh times; with it "
            "in every head the heads sum to `hook_attn_out` plus (nh − 1) biases."),
    Mistake("head_outputs", "weight_not_transposed", "the output projection's weight reshaped without a "
                                                     "transpose (nn.Linear stores it (C, nh * hs): W.T.reshape(nh, "
                                                     "hs, C))",
            "`nn.Linear(nh * hs, C).weight` is (out, in) = (C, nh * hs): the heads split its *columns*. "
            "Reshaped as it is, each \"head\" gets rows that mix all heads' inputs."),
    Mistake("head_outputs", "heads_interleaved", "the projection's input split as (hs, nh) instead of (nh, hs) "
                                                 "(the heads sit side by side: features h * hs .. (h + 1) * hs "
                                                 "are head h's)",
            "hook_z (B, T, nh, hs) is flattened head by head into the projection's nh * hs inputs, so head h owns "
            "a contiguous block of hs columns: `W.T.reshape(nh, hs, C)`. Reshaped as (hs, nh, C), each \"head\" "
            "gets every nh-th feature, a mix of all heads."),
    Mistake("head_outputs", "direction_reversed", "the logit difference direction reversed (it is W_U[correct] − "
                                                  "W_U[wrong])",
            "The direction raises the correct token's logit against the wrong one's; reversed, every attribution "
            "flips its sign."),
    Mistake("head_outputs", "embedding_as_unembedding", "the token embedding used as the unembedding (the head's "
                                                        "weight is W_U; they differ when the model is untied)",
            "Tied models share one matrix, so the mistake hides there; an untied head (`tie_word_embeddings` "
            "False, as Llama 3 8B) has its own `lm_head.weight`."),
    # ------------------------------------------------------------------ 3. direct logit attribution
    Mistake("direct_logit_attribution", "scale_not_divided", "the components not divided by the final norm's "
                                                             "scale (ln_final.hook_scale)",
            "The final norm divides the whole stream by one number per position, s = `ln_final.hook_scale`. "
            "Frozen, it divides every component by that same s. See [Freezing the scale](#freezing-the-scale) and "
            "[Direct is not total](#direct-is-not-total)."),
    Mistake("direct_logit_attribution", "mean_not_subtracted", "no mean subtracted from each component before the "
                                                               "LayerNorm's scale (GPT-2's final norm centres "
                                                               "its input)",
            "LayerNorm maps x to w · (x − mean(x)) / s + b; the mean is linear too, so each component is centred "
            "on its own. RMSNorm (Llama) does not centre. See [Freezing the scale](#freezing-the-scale)."),
    Mistake("direct_logit_attribution", "norm_weight_ignored", "the final norm's weight left out (fold it into "
                                                               "the direction: w * d)",
            "The head reads w · x̂: the direction in the unnormed stream is w * (W_U[correct] − W_U[wrong])."),
    Mistake("direct_logit_attribution", "norm_bias_divided", "the final norm's bias divided by the scale (it is "
                                                             "added after the division: b · d, undivided)",
            "LN(x) = w * (x − mean(x)) / s + b: the scale divides the stream, not the bias, so the bias's share "
            "of the logit difference is b · (W_U[correct] − W_U[wrong]) as it is."),
    Mistake("direct_logit_attribution", "pos_ignored", "the attribution taken at the last position whatever pos "
                                                       "says (index the components and the scale at pos)",
            "pos picks the query position whose logits are explained: every component, the frozen scale and the "
            "total are read at `[rows, pos]`, not at `[:, -1]`."),
    Mistake("direct_logit_attribution", "summed_over_batch", "the attributions summed over the batch (they are "
                                                             "averaged, as the total is)",
            "Every entry, the total included, is the mean over the B sequences."),
    # ------------------------------------------------------------------ 4. attention pictures
    Mistake("attention_plots", "pattern_transposed", "the pattern drawn transposed (rows must be the queries, "
                                                     "columns the keys)",
            "Row t of `hook_pattern[b, h]` is query t's distribution over the keys: draw (T, S) as it is, queries "
            "down the y axis. Transposed, a causal pattern is upper-triangular."),
    Mistake("attention_plots", "only_first_head", "only the first head drawn from a (n_head, T, S) pattern (draw "
                                                  "one map per head)",
            "A 3-D pattern is a grid: one `imshow` per head, titled with its index."),
    Mistake("attention_plots", "figure_left_open", "the figure left open after saving (plt.close it: every call "
                                                   "would keep one in memory)",
            "pyplot keeps every figure it made until it is closed: a loop over layers and prompts leaks them. "
            "`given.save_figure` writes the PNG atomically and closes the figure."),
    # ------------------------------------------------------------------ 5. induction scores
    Mistake("induction_scores", "key_at_t_minus_l", "the key at t − L (that is the earlier copy of the same token: "
                                                    "a duplicate-token head; induction reads t − L + 1)",
            "The induction head attends to the token *after* the previous occurrence of the current one, which "
            "is at t − L + 1. See [5. Induction scores](#5-induction-scores)."),
    Mistake("induction_scores", "queries_from_l_minus_1", "the queries counted from L − 1 (they are t in [L, 2L), "
                                                          "the L positions of the repeat)",
            "At t = L − 1 the current token has not occurred before: its key t − L + 1 = 0 is no induction. "
            "The queries are the second half, L of them."),
    Mistake("induction_scores", "summed_not_averaged", "the pattern summed over the queries (average it: a score "
                                                       "is at most 1)",
            "The score is a mean over the batch and the L queries, in [0, 1]; summed, it grows with L. See "
            "[A score needs its baseline](#a-score-needs-its-baseline)."),
    Mistake("induction_scores", "first_sequence_only", "only the first sequence of the batch scored (average over "
                                                       "the batch too)",
            "The score is a mean over every sequence b and query t: `pattern[:, :, t, t - L + 1].mean((0, 2))`; "
            "`pattern[0]` keeps one random sequence and its noise."),
    Mistake("induction_scores", "halves_drawn_separately", "two random halves instead of one half repeated",
            "[r, r] repeats one random sequence: draw r once and concatenate it with itself."),
    # ------------------------------------------------------------------ 6. ablation
    Mistake("ablation", "targets_not_shifted", "the loss of each token against itself (the target at position t "
                                               "is token t + 1)",
            "Position t predicts the next token: log-probabilities at 0 .. T − 2, targets tokens[1:]."),
    Mistake("ablation", "logits_shifted_not_targets", "the logits taken from position 1 (logits[:, 1:]) instead "
                                                      "of the targets (the logits at 0 .. T − 2 predict tokens "
                                                      "1 .. T − 1)",
            "Position t's logits predict token t + 1: keep the logits `[:, :-1]` and shift the *targets*, "
            "`tokens[:, 1:]`. With the logits shifted instead, position t + 1's prediction is scored against "
            "the token it has already seen."),
    Mistake("ablation", "padding_not_masked", "the padded entries' losses kept (with an attention_mask, entries "
                                              "whose input or target is padding are 0)",
            "A padded position predicts nothing real, and the real token after the padding is predicted from a "
            "pad: multiply by `mask[:, 1:] & mask[:, :-1]` (or masked_fill) so that only real pairs count."),
    Mistake("ablation", "feature_zeroed_not_head", "one feature of every head zeroed (z[..., h]) instead of head h "
                                                   "(z[:, :, h])",
            "`hook_z` is (B, T, nh, hs): the heads are dimension 2. `z[..., h]` indexes the last one, a feature of "
            "each head. See [6. Ablating heads](#6-ablating-heads)."),
    Mistake("ablation", "whole_layer_ablated", "every head of the layer ablated (only the listed heads are)",
            "Each (layer, head) pair knocks out one head; the others of its layer run as before."),
    Mistake("ablation", "mean_per_sequence", "the mean ablation taken per sequence (average over the batch and "
                                             "the positions: z[:, :, h].mean((0, 1)))",
            "The mean is the head's average output over the whole run, one (hs,) vector; averaged per sequence it "
            "still carries each sequence's content. See [Ablation is an intervention](#ablation-is-an-intervention)."),
    # ------------------------------------------------------------------ 7. activation patching
    Mistake("activation_patching", "every_position_patched", "every position patched at once (patch one position t "
                                                             "per run)",
            "Entry [l, t] says what the stream at (l, t) alone carries: the clean value at position t only, the "
            "other positions from the corrupted run."),
    Mistake("activation_patching", "runs_swapped", "the corrupted activations patched into the clean run (the "
                                                   "clean run's go into the corrupted one)",
            "Patching asks which clean activation restores the clean behaviour in the corrupted run; the other "
            "way round (denoising against noising) answers another question. See "
            "[7. Activation patching](#7-activation-patching)."),
    Mistake("activation_patching", "every_head_patched", "every head of the layer patched at once (patch head h "
                                                         "alone: z[:, :, h])",
            "Entry [l, h] is what head h alone carries: only its slice `z[:, :, h]` comes from the clean run, "
            "the other heads of the layer keep the corrupted run's values."),
    Mistake("activation_patching", "head_patched_at_last_position_only", "the head patched at the last position "
                                                                         "only (patch its output at every "
                                                                         "position: z[:, :, h])",
            "A head's output at earlier positions reaches the last one through the later layers' attention: "
            "patch `z[:, :, h]` at every position, not `z[:, -1, h]`."),
    Mistake("activation_patching", "recovery_from_clean", "the recovered fraction measured from the clean metric "
                                                          "((patched − clean) / (corrupted − clean) is 1 minus it)",
            "0 means the corrupted run's metric, 1 the clean run's: (patched − corrupted) / (clean − corrupted). "
            "See [Reading a recovered fraction](#reading-a-recovered-fraction)."),
    # ------------------------------------------------------------------ 8. logit lens
    Mistake("logit_lens", "final_norm_skipped", "the streams decoded without the final norm (the head reads "
                                                "ln_final's output)",
            "The head was trained on normed vectors: apply the model's final norm to each stream first."),
    Mistake("logit_lens", "scale_frozen_from_last_layer", "the last layer's norm statistics used for every layer "
                                                          "(each stream is normed with its own)",
            "Direct logit attribution freezes the scale to split one stream into parts; the lens decodes whole "
            "streams, each as if it were the last, so each gets its own mean and scale. See "
            "[The lens in early layers](#the-lens-in-early-layers)."),
    Mistake("logit_lens", "embeddings_row_missing", "no row for the embeddings (the first row decodes the stream "
                                                    "before block 0)",
            "The lens has n_layer + 1 rows, as accumulated_resid: the embeddings, then after each block."),
])
