"""The common mistakes of the Llama exercises: what the tests recognise, the guide lists and
``mlab_tfs/testing/tests/test_catalogue.py`` plants (``mlab_tfs.testing.mistakes``)."""

from __future__ import annotations

from mlab_tfs.testing.mistakes import Catalogue, Mistake

PART = "llama"

MISTAKES = Catalogue(PART, [
    # ------------------------------------------------------------------ 1. RMSNorm
    Mistake("rms_norm", "mean_subtracted", "RMSNorm with a mean subtraction (that is layer norm: RMSNorm only "
                                           "divides by the root mean square)",
            "RMSNorm keeps the mean: `x / sqrt(mean(x²) + eps)`, no `x - mean`. With it, every token whose "
            "features do not average to 0 comes out different. See [RMSNorm is not layer norm]"
            "(#rmsnorm-is-not-layer-norm)."),
    Mistake("rms_norm", "eps_outside_rsqrt", "eps outside the rsqrt (sqrt(mean(x²)) + eps; put eps inside: "
                                             "rsqrt(mean(x²) + eps))",
            "transformers multiplies by `torch.rsqrt(variance + eps)`. Outside the root eps is a different number: "
            "features of size 1e-3 with eps 1e-6 come out at 0.999 instead of 0.707. See "
            "[RMSNorm is not layer norm](#rmsnorm-is-not-layer-norm)."),
    Mistake("rms_norm", "rms_without_sqrt", "dividing by the mean square instead of its square root",
            "The scale is the *root* mean square, `sqrt(mean(x²) + eps)`: divided by the mean square, the output "
            "has the wrong size whenever the features are not of size 1."),
    Mistake("rms_norm", "wrong_dim", "the statistics over the wrong dimension (use the last one, dim=-1)",
            "The mean square is per token, over its C features: `mean(-1, keepdim=True)`."),
    Mistake("rms_norm", "statistics_in_input_dtype", "the statistics in the input's dtype (compute them on "
                                                     "x.float(), then cast back)",
            "transformers' `LlamaRMSNorm` computes the mean square and the division in float32 and casts the "
            "normalised vector back before the weight multiplies it; in bfloat16 a mean of squares over C "
            "features loses its last digits."),
    Mistake("rms_norm", "weight_before_cast", "the weight applied before the cast back ((weight * x_normed)"
                                              ".to(dtype); transformers casts first: weight * x_normed.to(dtype))",
            "In float32 the order changes nothing; in bfloat16 it decides the last bit of about a quarter of the "
            "outputs (565 of 2304 on the tests' input). See [RMSNorm is not layer norm]"
            "(#rmsnorm-is-not-layer-norm)."),
    # ------------------------------------------------------------------ 2. rotary
    Mistake("rotary", "wrong_pair_layout", "rotating with the wrong pair layout (interleaved pairs (0, 1), (2, 3), "
                                           "...; transformers' checkpoints pair feature i with i + hd/2)",
            "`rotate_half` turns the pair (x[i], x[i + hd/2]): `cat(-x2, x1)` of the two halves. Neighbouring "
            "pairs are Meta's original layout, right only for weights stored that way. See "
            "[Pair layout](#pair-layout)."),
    Mistake("rotary", "rotate_half_sign", "rotate_half with the sign on the wrong half (cat(x2, -x1); it is "
                                          "cat(-x2, x1))",
            "(a, b) turns to (-b, a): the *second* half is negated and moved first. The other sign rotates by "
            "minus the angle, so every score sees the offset n − m instead of m − n."),
    Mistake("rotary", "cos_sin_swapped", "cos and sin swapped (it is q * cos + rotate_half(q) * sin)",
            "At position 0 the rotation must be the identity: cos = 1 multiplies q itself, sin = 0 the turned q."),
    Mistake("rotary", "keys_not_rotated", "rotating only the queries (the keys are rotated too)",
            "The score depends on m − n only when both q (by m) and k (by n) are rotated; with k unrotated it "
            "depends on the query's absolute position."),
    # ------------------------------------------------------------------ 3. rotary frequencies
    Mistake("rope_frequencies", "exponent_not_doubled", "exponents i / hd for i = 0 .. hd/2 − 1 (they are 2i / hd: "
                                                        "arange(0, hd, 2) / hd)",
            "The frequencies are `theta ** (-2i / hd)`, from 1 down to about 1/theta; with i / hd the slowest pair "
            "turns sqrt(theta) times too fast."),
    Mistake("rope_frequencies", "theta_ignored", "rope_theta ignored (10000 always; read "
                                                 "config.rope_parameters[\"rope_theta\"])",
            "Llama 3 uses 500000 and Qwen3 1000000: the base sets every frequency but the first."),
    Mistake("rope_frequencies", "llama3_scaling_ignored", "the llama3 rope scaling ignored (rope_type \"llama3\" "
                                                          "changes the slow frequencies)",
            "A config with `rope_type` \"llama3\" was trained with the scaled frequencies: the pairs of wavelength "
            "above original_max_position_embeddings / low_freq_factor turn `factor` times slower. See "
            "[3. Rotary frequencies](#3-rotary-frequencies)."),
    Mistake("rope_frequencies", "every_frequency_divided", "every frequency divided by factor (llama3 divides only "
                                                           "the slow pairs and blends the middle band)",
            "The fast pairs (wavelength under original_max_position_embeddings / high_freq_factor) keep their "
            "frequency: they encode local order, which the scaling must not change."),
    Mistake("rope_frequencies", "middle_band_not_blended", "the middle band of llama3 frequencies left unblended "
                                                           "(between the two wavelengths, interpolate)",
            "Between the two edge wavelengths the frequency is `(1 − s) θ / factor + s θ` with "
            "s = (L / wavelength − low_freq_factor) / (high_freq_factor − low_freq_factor)."),
    Mistake("rope_frequencies", "angles_interleaved", "cos and sin repeated per pair (repeat_interleave) instead of "
                                                      "per half (cat(angles, angles))",
            "In the rotate-half layout feature i and i + hd/2 share an angle: the angles are written twice, "
            "`cat(angles, angles)`. `repeat_interleave(2)` is the interleaved layout's. See "
            "[Pair layout](#pair-layout)."),
    Mistake("rope_frequencies", "angles_in_model_dtype", "the angles computed in the model's dtype (compute "
                                                         "position * inv_freq in float32, then cast cos and sin)",
            "bfloat16 keeps 8 significant bits: with hd 16 and rope_theta 10000 the angles of positions 0 to 63 "
            "are off by up to 0.056 radian, those up to 1023 by 2 radians. transformers computes the angles in "
            "float32 and casts only cos and sin."),
    # ------------------------------------------------------------------ 4. SwiGLU
    Mistake("swiglu", "activation_on_up", "the SiLU on the up projection instead of the gate",
            "`down(silu(gate(x)) * up(x))`: the checkpoint's `gate_proj` is the activated branch. Swapped, nothing "
            "fails and the output is another function of the same weights."),
    Mistake("swiglu", "gelu_not_silu", "GELU instead of SiLU (use get_activation(config.hidden_act))",
            "Llama's `hidden_act` is \"silu\", x · sigmoid(x); GPT-2's GELU is close but not equal."),
    Mistake("swiglu", "no_gate", "no gate (down(silu(up(x))): the gate's product is the point)",
            "SwiGLU multiplies two projections, one through the activation; without the product it is a plain "
            "MLP that ignores `gate_proj`."),
    Mistake("swiglu", "mlp_bias_ignored", "no biases when config.mlp_bias is set",
            "Every projection takes `bias=config.mlp_bias`; a checkpoint with MLP biases has `gate_proj.bias`, "
            "`up_proj.bias`, `down_proj.bias`."),
    # ------------------------------------------------------------------ 5. repeat_kv
    Mistake("repeat_kv", "heads_tiled", "repeat_kv in the wrong order (tiling the heads kv0, kv1, kv0, kv1; each kv "
                                        "head is repeated n_rep times in a row)",
            "Query head h reads kv head h // n_rep: heads (0, 0, 1, 1), `x[:, :, None].expand(B, nkv, n_rep, S, hd)` "
            "reshaped. `x.repeat(1, n_rep, 1, 1)` tiles them (0, 1, 0, 1). See "
            "[5. Repeating key/value heads](#5-repeating-keyvalue-heads)."),
    Mistake("repeat_kv", "repeated_along_positions", "repeating along the positions (dim 2) instead of the heads "
                                                     "(dim 1)",
            "The heads are dimension 1 of `(B, nkv, S, hd)`: the result is `(B, nkv · n_rep, S, hd)`."),
    # ------------------------------------------------------------------ 6. attention
    Mistake("attention", "values_rotated", "rotating the values too (rotary embeddings apply to q and k only)",
            "The rotation makes the score depend on relative position; the values are what is averaged and stay "
            "as projected."),
    Mistake("attention", "scale_by_hidden_over_heads", "scaling by (hidden_size / heads) ** -0.5 instead of "
                                                       "head_dim ** -0.5",
            "The dot product runs over hd = config.head_dim features, which need not be C / nh (Qwen3: 128 against "
            "64): the scale is `head_dim ** -0.5`."),
    Mistake("attention", "causal_mask_missing", "no causal mask when attention_mask is None (every query sees every "
                                                "key, later ones included)",
            "None means the causal mask alone: build it with your `causal_mask(T, S)`."),
    Mistake("attention", "attention_mask_ignored", "the attention_mask ignored (only the causal mask applied)",
            "A given mask is causal and padding combined (the model builds it): use it as it is, True = attend. "
            "Ignored, padding keys are attended to and the padded rows' real tokens come out different; a query "
            "that sees no key gets a zero output."),
    Mistake("attention", "cache_holds_repeated_heads", "caching the repeated keys and values (the cache holds the nkv "
                                                       "heads: repeat after update)",
            "The output is right and the cache n_rep times larger: what grouped-query attention saves is lost. "
            "Update the cache with the (B, nkv, T, hd) keys and values, then repeat what it returns. See "
            "[6. Grouped-query attention](#6-grouped-query-attention)."),
    # ------------------------------------------------------------------ 7. QK-norm
    Mistake("qk_norm", "qk_norm_after_rotary", "QK-norm after the rotation (Qwen3 normalises q and k before rotating "
                                               "them)",
            "The norm's weight scales feature i and the rotation mixes i with i + hd/2: the two do not commute. "
            "See [7. QK-norm](#7-qk-norm)."),
    Mistake("qk_norm", "qk_norm_missing", "no QK-norm in a Qwen3 (model_type \"qwen3\" normalises every head's q "
                                          "and k)",
            "With `model_type` \"qwen3\", apply `q_norm` and `k_norm` right after the projections."),
    Mistake("qk_norm", "q_norm_k_norm_swapped", "k_norm on the queries and q_norm on the keys",
            "Each has its own trained weight: `q_norm(q)`, `k_norm(k)`."),
    Mistake("qk_norm", "values_normed", "normalising the values too (QK-norm is for q and k)",
            "Only the scores' inputs are normalised; v goes to the average as projected."),
    # ------------------------------------------------------------------ 8. decoder layer
    Mistake("block", "post_norm", "post-norm (normalising after the residual addition; Llama normalises each "
                                  "branch's input)",
            "`x + attn(input_layernorm(x))`, then `x + mlp(post_attention_layernorm(x))`: the residual stream "
            "itself is never normalised inside a layer."),
    Mistake("block", "no_attn_residual", "no residual around the attention (x + attn(...))",
            "The attention's output is *added* to the stream: `x = x + self_attn(...)`."),
    Mistake("block", "no_mlp_residual", "no residual around the MLP (x + mlp(...))",
            "The MLP's output is added to the stream too: `x + mlp(post_attention_layernorm(x))`."),
    Mistake("block", "input_layernorm_twice", "input_layernorm before the MLP too (the MLP reads "
                                              "post_attention_layernorm(x))",
            "Each branch has its own norm with its own weight; despite its name `post_attention_layernorm` is "
            "the MLP's pre-norm."),
    # ------------------------------------------------------------------ 9. model
    Mistake("model", "head_always_tied", "the head tied to the embedding when the config unties it "
                                         "(tie only with tie_word_embeddings)",
            "Llama 3 8B has a separate `lm_head.weight`; tied, loading writes the head's and the embedding's "
            "weights into one tensor and one of them is lost."),
    Mistake("model", "no_final_norm", "no final norm before the head (model.norm)",
            "The last layer's output goes through `norm` before `lm_head`, as GPT-2's `ln_f`."),
    Mistake("model", "positions_restart_after_cache", "positions not continuing after the cache (the new tokens "
                                                      "start at position 0 again)",
            "Default `position_ids` are `P .. P + T − 1`, P the cached tokens: restarted, the new token is rotated "
            "as the first one and its scores see the wrong offsets. See "
            "[Positions after the cache](#positions-after-the-cache)."),
    Mistake("model", "position_ids_ignored", "position_ids ignored (use the positions the caller passes)",
            "Given `position_ids` are the positions, the default `P .. P + T − 1` only when none are given. Left "
            "padding alone does not show it (a constant shift cancels in m − n), packed documents whose positions "
            "restart do. See [Positions after the cache](#positions-after-the-cache)."),
    # ------------------------------------------------------------------ 10. loading
    Mistake("loading", "q_k_permuted", "permuting the q/k weights when loading a transformers checkpoint (its files "
                                       "are rotate-half already)",
            "The permutation converts Meta's interleaved layout; transformers' files went through it when they "
            "were converted. Applied again it scrambles each head. See [Pair layout](#pair-layout)."),
    Mistake("loading", "tied_head_saved", "saving lm_head.weight of a tied head (transformers ties it back from "
                                          "model.embed_tokens.weight)",
            "A tied checkpoint stores the tensor once; an extra `lm_head.weight` is an unexpected key."),
    Mistake("loading", "prefix_not_added", "a LlamaModel checkpoint's names left without the model. prefix",
            "A transformers `LlamaModel` (the body alone) names its weights `layers.0...`; yours live under "
            "`model.`: add the prefix to keys that have neither `model.` nor `lm_head.`."),
    Mistake("loading", "inv_freq_kept", "keeping the rotary inv_freq of older checkpoints (drop it: it is computed "
                                        "from the config)",
            "Older files store `rotary_emb.inv_freq`; it is not a weight of yours (a non-persistent buffer) and "
            "loading it is an unexpected key."),
], fewer={"repeat_kv": "a one-line exercise: the order of the copies and the dimension are the ways to get it "
                       "wrong"})
