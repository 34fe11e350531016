"""The common mistakes of the GPT-2 exercises: what the tests recognise, the guide lists and
``mlab_tfs/testing/tests/test_catalogue.py`` plants (``mlab_tfs.testing.mistakes``)."""

from __future__ import annotations

from mlab_tfs.testing.mistakes import Catalogue, Mistake

PART = "gpt2"

MISTAKES = Catalogue(PART, [
    # ------------------------------------------------------------------ 1. layer norm
    Mistake("layer_norm", "unbiased_variance", "the unbiased variance (divide by N-1; use unbiased=False)",
            "Layer norm divides by C, not C − 1: `torch.var`'s default is larger by C/(C−1), a relative error of "
            "about 1/(2C) in the output. See [Layer norm statistics](#layer-norm-statistics)."),
    Mistake("layer_norm", "eps_outside_sqrt", "eps outside the sqrt (sqrt(var) + eps; put eps inside the sqrt)",
            "`(x - mean) / sqrt(var + eps)`, not `/ (std + eps)`: the two agree when var ≫ eps and part for "
            "inputs of small variance. See [Layer norm statistics](#layer-norm-statistics)."),
    Mistake("layer_norm", "no_eps", "no eps at all",
            "Without eps a constant input divides 0 by 0; with it the output is finite and equals PyTorch's."),
    Mistake("layer_norm", "variance_not_std", "dividing by the variance instead of the standard deviation",
            "Normalising means unit variance: divide by `sqrt(var + eps)`, the standard deviation."),
    Mistake("layer_norm", "weight_bias_swapped", "swapping weight and bias",
            "`weight` (the gain, ones at first) multiplies, `bias` (zeros at first) is added. Swapped, a fresh "
            "layer norm outputs all ones (x_hat * 0 + 1), and a checkpoint's gains are added and its shifts multiply."),
    Mistake("layer_norm", "wrong_dim", "normalising over the wrong dimension (use the last one, dim=-1)",
            "The statistics are per token, over its C features: `dim=-1` with `keepdim=True`."),
    Mistake("layer_norm", "hook_normalized_after_affine", "hook_normalized taken after weight and bias",
            "`hook_normalized` is `(x - mean) / scale`, before the weight and bias (TransformerLens's "
            "`LayerNormPre`); see [Hook points](#hook-points)."),
    # ------------------------------------------------------------------ 2. embedding
    Mistake("embedding", "weight_not_parameter", "a weight that is not an nn.Parameter",
            "A plain tensor (even with `requires_grad=True`) is not among `parameters()`: no optimiser trains "
            "it, `state_dict()` leaves it out and no checkpoint loads into it."),
    Mistake("embedding", "weight_transposed", "a weight of shape (embedding_dim, num_embeddings)",
            "Row i is the vector of id i: the weight is `(num_embeddings, embedding_dim)`, as checkpoints "
            "store `wte` `(V, C)`."),
    Mistake("embedding", "padding_row_zeroed", "zeroing the vectors of the padding id (padding_idx changes only "
                                               "the gradient)",
            "`nn.Embedding(padding_idx=...)` looks the padding row up like any other; it only keeps the "
            "gradient out of it."),
    Mistake("embedding", "padding_row_trained", "a padding row that still gets a gradient (padding_idx ignored)",
            "With `padding_idx`, the lookups of the padding id pass no gradient to its row: use the detached "
            "row there (`torch.where(ids == padding_idx, out.detach(), out)`)."),
    # ------------------------------------------------------------------ 3. attention pattern
    Mistake("attention_pattern", "blind_row_uniform",
            "leaving the row of a query that sees no key uniform over all keys, future ones included, as "
            "finfo.min alone does (zero the rows of queries that see no key)",
            "A left-padding query sees only padding; with every score `finfo.min` its softmax is uniform over "
            "all keys, later tokens included, and that reaches the loss. Zero the row: "
            "`pattern.masked_fill(~mask.any(-1, keepdim=True), 0)`. See [Masking padded rows](#masking-padded-rows)."),
    Mistake("attention_pattern", "no_scale", "forgetting the scale",
            "Multiply the scores by `scale` (1/sqrt(hs) in GPT-2): unscaled scores grow with the head size and "
            "saturate the softmax."),
    Mistake("attention_pattern", "divide_by_head_size", "dividing by the head size instead of multiplying by scale",
            "`scale` is already `1/sqrt(hs)`: multiply by it; dividing by hs (or by sqrt(scale)) is another "
            "temperature."),
    Mistake("attention_pattern", "softmax_over_queries", "a softmax over the queries (dim=-2) instead of the keys "
                                                         "(dim=-1)",
            "Each query's weights over the keys sum to 1: softmax over the last dimension. See "
            "[Softmax dimension](#softmax-dimension)."),
    Mistake("attention_pattern", "mask_inverted", "the mask inverted (True means attend)",
            "`mask` is True where a query may look: fill `~mask`, not `mask`."),
    Mistake("attention_pattern", "mask_with_inf", "masking with -inf, left unzeroed (NaN in the row of a query "
                                                  "that sees no key)",
            "A row of `-inf` scores is `exp(-inf) / 0` = NaN, and from the next layer on every query of the "
            "sequence reads it. Fill `torch.finfo(dtype).min`. See [Masking padded rows](#masking-padded-rows)."),
    Mistake("attention_pattern", "additive_inf_mask", "adding an -inf mask to the scores (the forward is right, the "
                                                      "gradient through a query that sees no key is NaN)",
            "Zeroing a NaN row afterwards fixes the forward only: the softmax's backward through it is NaN, and an "
            "*added* mask passes it on to q and k (a *filled* one does not). Fill with "
            "`masked_fill(~mask, finfo.min)`. See [Masking padded rows](#masking-padded-rows)."),
    Mistake("attention_pattern", "scores_times_mask", "masked scores set to 0 (scores * mask, or a fill of 0) instead of "
                                                      "finfo.min",
            "A score of 0 is not \"no attention\": `exp(0)` is 1, so a masked key keeps a weight like any other. "
            "Masked keys need a score of `finfo.min`: `scores.masked_fill(~mask, torch.finfo(scores.dtype).min)`."),
    Mistake("attention_pattern", "mask_after_softmax", "masking after the softmax (the weights left no longer sum to "
                                                       "1: mask the scores, then softmax)",
            "Zeroing the masked weights after the softmax leaves rows that sum to less than 1, the masked keys' "
            "share lost; mask the scores before the softmax and each row is a distribution over the allowed keys."),
    Mistake("attention_pattern", "zero_rows_by_own_key", "zeroing the rows of queries whose own key is masked (zero "
                                                         "only queries that see no key, ~mask.any(-1))",
            "A padding position that sees earlier keys keeps its row; only a query that sees no key at all is "
            "zeroed."),
    Mistake("attention_pattern", "zero_rows_by_first_key", "zeroing every query whose first key is padding (in a "
                                                           "left-padded row that is every query, real ones too)",
            "Which rows to zero is per query: `~mask.any(-1, keepdim=True)`, not the first (or any one) key."),
    # ------------------------------------------------------------------ 4. causal mask
    Mistake("causal_mask", "diagonal_left_out", "leaving the diagonal out (a token may attend to itself)",
            "Query t sees keys 0..t, itself included: `k_pos <= q_pos`, or `tril` with diagonal 0 (plus the offset)."),
    Mistake("causal_mask", "upper_triangle", "the upper triangle (True should mean allowed: keys at or before the "
                                             "query)",
            "True means allowed, and the allowed keys are the earlier ones: the lower triangle."),
    Mistake("causal_mask", "offset_ignored", "ignoring the cached keys (query i sits at position k_len - q_len + i)",
            "With a cache the q_len queries are the *last* q_len of k_len positions: every query sees all "
            "k_len - q_len cached keys. See [attention_mask with a cache](#attention_mask-with-a-cache)."),
    Mistake("causal_mask", "offset_off_by_one", "one key too many (query i also sees the key after its own: an "
                                                "off-by-one in the offset)",
            "The offset is `k_len - q_len`: `tril(k_len - q_len)`; one more lets each query see the next token."),
    # ------------------------------------------------------------------ 5. attention
    Mistake("attention", "scale_by_n_embd", "scaling the scores by 1/sqrt(n_embd) instead of 1/sqrt(head size)",
            "Each head's dot product runs over its hs = C / nh features: the scale is `hs ** -0.5` "
            "(`config.head_dim`), not `n_embd ** -0.5`, which is nh times smaller in variance."),
    Mistake("attention", "attention_unscaled", "no scale in the attention (scale 1 instead of 1/sqrt(head size))",
            "With `scale_attn_weights` (GPT-2's checkpoints) the scores are multiplied by `hs ** -0.5`; "
            "pass it to `attention_pattern`."),
    Mistake("attention", "qkv_split_wrong", "splitting the heads before q, k and v (c_attn's columns are "
                                            "[q | k | v], each then split into heads)",
            "The checkpoint fixes the order: first three C-wide blocks q, k, v; inside each, head h owns columns "
            "`h*hs:(h+1)*hs`. A reshape to `(B, T, nh, 3 hs)` before the split mixes them silently."),
    Mistake("attention", "heads_split_wrong_order", "reading each of q, k and v as (hs nh) instead of (nh hs) "
                                                    "when splitting the heads",
            "Inside each of q, k and v, head h owns the consecutive columns `h*hs:(h+1)*hs`: "
            "`b t (nh hs) -> b t nh hs`. Reading them as `(hs nh)` (a `.view(B, T, hs, nh)`) gives every head "
            "features of all heads, even when the heads are merged back the same way."),
    Mistake("attention", "heads_merged_wrong_order", "merging the heads in another order than they were split",
            "Merge `(B, nh, T, hs)` back with the head dimension next to hs: transpose to `(B, T, nh, hs)` "
            "then `b t nh hs -> b t (nh hs)`. A bare `.view(B, T, C)` of the `(B, nh, T, hs)` tensor, or "
            "`(hs nh)`, runs and scrambles the features c_proj reads."),
    Mistake("attention", "causal_mask_missing", "no causal mask when attention_mask is None (every query sees "
                                                "every key, later ones included)",
            "`attention_mask=None` means causal only: build `causal_mask(T, S)` then."),
    Mistake("attention", "hook_pattern_after_dropout", "hook_pattern taken after dropout",
            "`hook_pattern` is the softmax's output, before `attn_dropout`: its rows sum to 1 in training too. "
            "See [Hook points](#hook-points)."),
    # ------------------------------------------------------------------ 6. GELU
    Mistake("gelu", "erf_gelu", "the exact erf GELU (GPT-2 uses the tanh approximation)",
            "`x * Φ(x)` with erf differs from GPT-2's tanh formula by up to about 5e-4. See "
            "[gelu_new vs exact GELU](#gelu_new-vs-exact-gelu)."),
    Mistake("gelu", "sigmoid_gelu", "x * sigmoid(1.702 x) (the sigmoid approximation)",
            "The sigmoid approximation (CLIP's quick_gelu) is a third function, off by up to about 2e-2."),
    Mistake("gelu", "x_squared", "x^2 instead of x^3 inside the tanh",
            "`tanh(sqrt(2/π) (x + 0.044715 x³))`: the cubic term."),
    Mistake("gelu", "missing_half", "forgetting the 0.5",
            "`0.5 * x * (1 + tanh(...))`: without the 0.5 the output is twice GELU."),
    # ------------------------------------------------------------------ 7. MLP
    Mistake("mlp", "mlp_erf_gelu", "the exact erf GELU in the MLP instead of the config's gelu_new",
            "GPT-2's `activation_function` is `\"gelu_new\"`: take the activation from the config with "
            "`get_activation(config.activation_function, own={\"gelu_new\": gelu_new})`, not `F.gelu` or "
            "`\"gelu\"`. See [gelu_new vs exact GELU](#gelu_new-vs-exact-gelu)."),
    Mistake("mlp", "n_inner_ignored", "a hidden width of 4 * n_embd whatever config.n_inner says",
            "`inner = config.n_inner`, and 4C only when it is None."),
    Mistake("mlp", "no_activation", "no activation between c_fc and c_proj",
            "Without the nonlinearity the MLP is one linear map."),
    Mistake("mlp", "hook_post_before_activation", "hook_post taken before the activation",
            "`hook_pre` is c_fc's output, `hook_post` the activation's output; see [Hook points](#hook-points)."),
    # ------------------------------------------------------------------ 8. block
    Mistake("block", "post_ln", "post-LN (x = ln(x + sublayer(x)); GPT-2 normalises before each sublayer)",
            "GPT-2 is pre-LN: `x = x + attn(ln_1(x))`, then `x = x + mlp(ln_2(x))`."),
    Mistake("block", "no_attn_residual", "forgetting the residual around attention",
            "The attention branch's output is *added* to the stream: `x + attn(ln_1(x))`."),
    Mistake("block", "no_mlp_residual", "forgetting the residual around the MLP",
            "The MLP's output is *added* to the stream: `x + mlp(ln_2(x))`."),
    Mistake("block", "ln_1_twice", "ln_1 before both branches (ln_2 left unused)",
            "Each branch has its own layer norm with its own weights: `ln_1` before attention, `ln_2` before the MLP."),
    Mistake("block", "hook_attn_out_after_residual", "hook_attn_out taken after adding the residual",
            "`hook_attn_out` is what the attention branch adds, before the addition; `hook_resid_mid` is the sum."),
    # ------------------------------------------------------------------ 9. model
    Mistake("model", "tied_weights_copied", "a head copied from wte instead of shared (lm_head.weight must be "
                                            "wte's Parameter itself)",
            "A copy gives the right logits and the wrong gradients and updates: the tied weight's gradient is the "
            "sum of both uses. Tie with `self.lm_head.weight = self.transformer.wte.weight`. See "
            "[Tied weights](#tied-weights)."),
    Mistake("model", "labels_not_shifted", "labels not shifted in the loss (logits at t must predict the label at "
                                           "t + 1)",
            "The labels passed in are the input ids; `lm_loss` compares `logits[:, :-1]` with `labels[:, 1:]`. See "
            "[The loss shift](#the-loss-shift)."),
    Mistake("model", "labels_shifted_wrong_way", "shifting the labels the wrong way (logits[:, 1:] against "
                                                 "labels[:, :-1])",
            "Logits at t predict the token at t + 1, not t − 1. See [The loss shift](#the-loss-shift)."),
    Mistake("model", "no_final_ln", "no final layer norm (ln_f)",
            "Pre-LN blocks leave the stream un-normalised: `ln_f` runs after the last block, before the head."),
    Mistake("model", "position_ids_ignored", "the default positions used instead of the position_ids passed in",
            "Given `position_ids` (left-padded prompts pass `cumsum(mask) - 1`) are the positions; the default "
            "`P .. P+T-1` is only for when none are given. See "
            "[Position ids under left padding](#position-ids-under-left-padding)."),
    Mistake("model", "hidden_states_before_ln_f", "the last block's raw output as the last hidden state (it is "
                                                  "ln_f's output)",
            "`hidden_states` holds each block's input, then `ln_f`'s output: n_layer + 1 entries, transformers' "
            "convention. See [hidden_states](#hidden_states)."),
    # ------------------------------------------------------------------ 10. loading
    Mistake("loading", "conv1d_not_transposed", "Conv1D weights loaded as stored, (in, out), not transposed",
            "HF's GPT-2 stores `c_attn`, `c_proj` and `c_fc` weights `(in, out)`; `nn.Linear` wants `(out, in)`. "
            "See [Checkpoint layout](#checkpoint-layout)."),
    Mistake("loading", "transposed_by_shape", "transposing by shape, not by name (the square attn.c_proj.weight "
                                              "left as stored)",
            "`attn.c_proj.weight` is `(C, C)`: a shape test never fires and it loads silently wrong. Transpose "
            "the four Conv1D names. See [Checkpoint layout](#checkpoint-layout)."),
    Mistake("loading", "mask_buffers_kept", "the attn.bias / attn.masked_bias mask buffers kept as weights",
            "Old checkpoints store the causal mask as buffers; the model builds it on the fly, so drop keys ending "
            "in exactly `.attn.bias` and `.attn.masked_bias` (`attn.c_attn.bias` is a real parameter)."),
    Mistake("loading", "prefix_not_added", "GPT2Model keys left without the transformer. prefix",
            "A checkpoint saved from `GPT2Model` (the original `gpt2`) has keys like `h.0.ln_1.weight`: prefix "
            "every key that starts with neither `transformer.` nor `lm_head.`."),
    Mistake("loading", "to_hf_not_transposed_back", "to_hf_state_dict without transposing the Conv1D weights back",
            "Saving goes the other way: the same four weights back to `(in, out)`, or transformers reads "
            "mismatched (or, for the square c_proj, silently wrong) weights."),
    Mistake("loading", "tied_head_saved", "the tied lm_head.weight saved as well (transformers stores it once)",
            "With a tied head transformers' checkpoints hold only `transformer.wte.weight`; leave "
            "`lm_head.weight` out of `to_hf_state_dict`. See [Tied weights](#tied-weights)."),
    # ------------------------------------------------------------------ 11. KV cache
    Mistake("kv_cache", "new_keys_first", "new keys put before the cached ones",
            "`torch.cat([cached, new], dim=2)`: position order along the sequence."),
    Mistake("kv_cache", "cat_wrong_dim", "concatenating along another dim than the sequence (dim 2 of "
                                         "(B, nh, S, hs))",
            "Keys are `(B, nh, S, hs)`: new positions go on dim 2."),
    Mistake("kv_cache", "cache_not_stored", "an update that does not store what it returns (the cache must keep the "
                                            "concatenation, not only the new keys)",
            "The next step reads what this one stored: write the concatenation back into `self.keys[layer_idx]` "
            "and `self.values[layer_idx]`."),
    Mistake("kv_cache", "static_write_right", "writing one column to the right (cache_position + 1)",
            "A static cache writes the new keys into exactly the columns `cache_position`."),
    Mistake("kv_cache", "static_write_left", "writing one column to the left (cache_position - 1)",
            "A static cache writes the new keys into exactly the columns `cache_position`."),
    Mistake("kv_cache", "static_write_from_zero", "writing from column 0 (the number of new tokens, not "
                                                  "cache_position)",
            "Columns `cache_position`, not `:T`: every step would overwrite the prompt."),
    Mistake("kv_cache", "cached_padding_unmasked", "masking the padding of the new tokens only (the cached "
                                                   "tokens' padding seen again)",
            "With a cache, `attention_mask` is `(B, P + T)` and masks keys: every cached key as well as the new "
            "ones. Built from its last T columns, a decoding step reads the prompt's left padding. See "
            "[attention_mask with a cache](#attention_mask-with-a-cache)."),
    Mistake("kv_cache", "positions_restart_after_cache", "positions starting from 0 at every call instead of "
                                                         "continuing after the cache",
            "Without `position_ids`, the T new tokens sit at positions `P .. P+T-1`, P the cache's length: "
            "`torch.arange(P, P + T)`. With a cache, `attention_mask` likewise covers the P cached tokens too. See "
            "[attention_mask with a cache](#attention_mask-with-a-cache)."),
])
