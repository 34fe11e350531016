"""The common mistakes of the BERT exercises: what the tests recognise, what GUIDE.md lists
under each exercise, what mlab_tfs/testing/tests/test_catalogue.py plants (see
mlab_tfs/testing/mistakes.py)."""

from mlab_tfs.testing.mistakes import Catalogue, Mistake

PART = "bert"

MISTAKES = Catalogue(PART, [
    # 1. embeddings
    Mistake("embeddings", "no_token_type_embeddings", "leaving out the token type embeddings",
            "BERT sums three tables: word + token type + position. Without the token types the two "
            "sentences of a pair look alike, and even single sentences are off by type 0's row."),
    Mistake("embeddings", "no_position_embeddings", "leaving out the position embeddings",
            "Attention by itself is blind to order: BERT's only position signal is the learned "
            "position table added at the bottom."),
    Mistake("embeddings", "no_embedding_layer_norm", "no layer norm after the embedding sum",
            "transformers' BertEmbeddings normalises the sum (`LayerNorm`, then dropout) before block 0; "
            "a post-LN model has no other norm before the first attention."),
    Mistake("embeddings", "default_layer_norm_eps", "the layer norm's default eps instead of config.layer_norm_eps",
            "BERT's eps is 1e-12, not the class default 1e-5: pass `eps=config.layer_norm_eps` to every "
            "LayerNorm. See [eps 1e-12](#eps-1e-12)."),
    # 2. padding mask
    Mistake("padding_mask", "inverted_padding_mask", "an inverted mask (True where the token is padding)",
            "The mask says where a query *may* attend: True at real tokens (attention_mask 1). Inverted, "
            "every real token reads only padding."),
    Mistake("padding_mask", "padding_mask_on_queries", "a mask of shape (B, 1, S, 1), on queries instead of keys",
            "The scores are (B, nh, T, S): the mask hides keys, the last dimension, and broadcasts over "
            "queries. See [Where the mask goes](#where-the-mask-goes)."),
    Mistake("padding_mask", "padding_mask_not_bool", "a mask that is not bool (0/1 integers or an additive float mask)",
            "`attention_pattern` takes a bool mask (True = may attend); transformers' additive 0 / finfo.min float "
            "masks and 0/1 integer masks are refused by the layers."),
    # 3. attention
    Mistake("attention", "attention_scale_hidden_size", "scaling by 1/sqrt(hidden_size) instead of 1/sqrt(head size)",
            "Each head's score is a dot product over hs = C // nh dimensions, so its variance is ~hs: divide "
            "by sqrt(hs) (`head_dim`), not sqrt(C). The patterns come out too flat."),
    Mistake("attention", "attention_heads_merged_wrongly", "merging the heads in the wrong order ((hs nh) instead of (nh hs))",
            "Merge back with the pattern the heads were split with, `b t nh hs -> b t (nh hs)`; "
            "`(hs nh)` interleaves them, and the output projection reads scrambled features."),
    Mistake("attention", "attention_mask_after_softmax", "masking after the softmax (masked entries zeroed, rows not renormalised)",
            "The mask must act on the scores, before the softmax (masked scores at finfo.min); zeroing the "
            "probabilities afterwards leaves rows that no longer sum to 1. See [Where the mask goes](#where-the-mask-goes)."),
    Mistake("attention", "hook_qkv_heads_first", "hook_q/k/v taken after moving the heads forward ((B, nh, T, hs))",
            "TransformerLens's hook_q, hook_k, hook_v (and hook_z) are (B, T, nh, hs): pass the projection through "
            "its hook right after the split, before `b t nh hs -> b nh t hs`."),
    Mistake("attention", "hook_attn_out_after_residual", "hook_attn_out taken after adding the residual",
            "`hook_attn_out` is what the attention *adds* to the residual, `dropout(dense(y))`; the sum is "
            "`hook_resid_mid`."),
    Mistake("attention", "attention_pre_ln", "pre-LN attention (x + dense(attn(LN(x))))",
            "BERT is post-LN: `LayerNorm(x + dense(attn(x)))`, the norm after the residual add. "
            "See [Post-LN vs pre-LN](#post-ln-vs-pre-ln)."),
    Mistake("attention", "attention_no_residual", "forgetting the attention's residual (LayerNorm(dense(y)))",
            "`BertSelfOutput` adds its input back before the norm: `LayerNorm(dense(y) + x)`."),
    Mistake("attention", "attention_no_output_layer_norm", "forgetting the attention's output layer norm",
            "In a post-LN block the norm comes after each residual add; without it the residual stream "
            "grows block after block."),
    # 4. MLP
    Mistake("mlp", "tanh_gelu", "the tanh GELU approximation (gelu_new) instead of the erf one",
            "`hidden_act: \"gelu\"` is the exact `0.5 x (1 + erf(x / sqrt(2)))`; GPT-2's tanh approximation "
            "differs by up to ~5e-4. See [erf GELU vs gelu_new](#erf-gelu-vs-gelu_new)."),
    Mistake("mlp", "sigmoid_gelu", "the sigmoid GELU approximation x * sigmoid(1.702 x)",
            "The sigmoid approximation (CLIP's quick_gelu) is further from the erf GELU than the tanh one."),
    Mistake("mlp", "gelu_erf_over_2", "erf(x / 2) instead of erf(x / sqrt(2))",
            "GELU is x times the standard normal CDF, Phi(x) = (1 + erf(x / sqrt(2))) / 2."),
    Mistake("mlp", "gelu_no_half", "a GELU without the factor 0.5",
            "Phi(x) = 0.5 (1 + erf(x / sqrt(2))): without the 0.5 the activation is twice too large."),
    Mistake("mlp", "hook_post_before_activation", "hook_post taken before the activation",
            "`mlp.hook_pre` is dense(x) before the activation, `mlp.hook_post` the activation's output."),
    Mistake("mlp", "hook_mlp_out_after_residual", "hook_mlp_out taken after adding the residual",
            "`hook_mlp_out` is what the MLP adds to the residual, `dropout(dense(h))`; the sum is `hook_resid_post`."),
    Mistake("mlp", "mlp_no_residual", "forgetting the MLP's residual (LayerNorm(dense(h)))",
            "`BertOutput` adds the MLP's input back before its norm: `LayerNorm(dense(h) + x)`."),
    Mistake("mlp", "mlp_pre_ln", "a pre-LN MLP output (x + dense(h), no norm after the add)",
            "BERT normalises after the addition: `LayerNorm(dropout(dense(h)) + x)`. "
            "See [Post-LN vs pre-LN](#post-ln-vs-pre-ln)."),
    # 5. block
    Mistake("block", "block_pre_ln", "a pre-LN block (x = x + f(LN(x)))",
            "GPT-2's block normalises before each sublayer; BERT's after the residual add, "
            "`x = LN(x + f(x))`. See [Post-LN vs pre-LN](#post-ln-vs-pre-ln)."),
    Mistake("block", "mlp_reads_block_input", "the MLP reading the block input instead of the attention output",
            "The MLP reads `ln1(resid_mid)`, what `BertAttention` returns, not the block's input."),
    Mistake("block", "mlp_residual_block_input", "the MLP's residual adding the block input instead of the attention output",
            "`BertOutput(h, x)` adds back the MLP's own input, the attention's (normalised) output: the block "
            "input was already added inside the attention."),
    # 6. model
    Mistake("model", "mask_not_passed", "the padding mask not reaching the layers",
            "`BertModel` turns `attention_mask` into `padding_mask(...)` and passes it to every layer; "
            "without it real tokens attend to padding."),
    Mistake("model", "token_type_ids_ignored", "ignoring token_type_ids (every token type 0)",
            "Token types default to 0 only when none are given; given ones select the segment rows."),
    Mistake("model", "position_ids_ignored", "ignoring position_ids (always 0..T-1)",
            "Positions default to `arange(T)` only when `position_ids` is None; given ones are used as they are."),
    Mistake("model", "hook_output_ignored", "a hook point's return value ignored",
            "A hook may replace its activation: use what the hook point returns (`z = self.hook_z(z)`), or an "
            "edit through `run_with_hooks` (an ablated head) changes nothing."),
    # 7. pooler
    Mistake("pooler", "pooler_mean", "pooling the mean over tokens instead of the first token ([CLS])",
            "BERT's pooler reads the final hidden state of the first token only; mean pooling is "
            "sentence-transformers', a different thing."),
    Mistake("pooler", "pooler_last_token", "pooling the last token instead of the first ([CLS])",
            "`[CLS]` is the first token, `x[:, 0]`; with right padding the last slot is often padding."),
    Mistake("pooler", "pooler_no_tanh", "a pooler without its tanh",
            "The pooler is `tanh(dense(x[:, 0]))`, trained so for next-sentence prediction."),
    # 8. MLM head
    Mistake("mlm_head", "mlm_no_decoder_bias", "leaving out the decoder's own bias (cls.predictions.bias)",
            "The decoder shares its weight with the word embeddings but has a bias of its own; without "
            "it every logit is off by a per-token constant. See [The tied decoder's own bias](#the-tied-decoders-own-bias)."),
    Mistake("mlm_head", "mlm_no_transform", "skipping the transform (dense, GELU, LayerNorm) before the decoder",
            "The head first maps the hidden state through `transform` = LayerNorm(gelu(dense(x))), then decodes."),
    Mistake("mlm_head", "mlm_transform_no_layer_norm", "the MLM transform without its LayerNorm",
            "`BertPredictionHeadTransform` ends with a LayerNorm (eps = config.layer_norm_eps)."),
    Mistake("mlm_head", "decoder_weight_copied", "the decoder's weight copied from the word embeddings instead of tied",
            "`decoder.weight = word_embeddings.weight` makes one Parameter with two uses; a copy runs the same "
            "forward but the embedding's gradient lacks the decoder's share, and the two drift apart in "
            "training. See [The tied decoder's own bias](#the-tied-decoders-own-bias)."),
    Mistake("mlm_head", "mlm_loss_shifted", "labels shifted by one position, as in a causal LM's loss",
            "A masked LM predicts each position's own token: no shift, unlike GPT-2's next-token loss."),
    Mistake("mlm_head", "mlm_loss_summed", "summing the MLM loss instead of averaging over labelled positions",
            "The loss is the mean cross-entropy over positions whose label is not -100."),
    # 9. classifier
    Mistake("classifier", "problem_type_config_ignored", "ignoring config.problem_type when it is set",
            "transformers uses the config's problem_type when there is one, and infers it from "
            "num_labels and the labels' dtype only when it is None."),
    Mistake("classifier", "problem_type_dtype_first", "the labels' dtype checked before num_labels == 1",
            "One label is always regression (the labels are made float): transformers checks num_labels "
            "before the labels' dtype."),
    Mistake("classifier", "problem_type_dtype_ignored", "the problem type chosen without the labels' dtype",
            "With more than one label and no config.problem_type, integer labels are class ids (single-label "
            "cross-entropy) and float labels 0/1 targets (multi-label BCE)."),
    Mistake("classifier", "single_label_bce", "a BCE on one-hot labels for single-label classification",
            "Single-label classification is a softmax over the classes: `F.cross_entropy(logits, labels)`."),
    Mistake("classifier", "multi_label_softmax", "a softmax cross-entropy for multi-label classification",
            "In multi-label classification each label is independent: sigmoid and BCE per label "
            "(`F.binary_cross_entropy_with_logits`)."),
    Mistake("classifier", "regression_broadcast", "broadcasting (B, 1) logits against (B,) labels to (B, B)",
            "With one label, squeeze the logits to (B,) before `F.mse_loss`: (B, 1) - (B,) broadcasts to "
            "a (B, B) matrix of every pair."),
    Mistake("classifier", "classifier_skips_pooler", "classifying the [CLS] hidden state without the pooler",
            "transformers' classifier reads `pooler_output`, tanh(dense(x[:, 0])), not the raw hidden state."),
    # 10. loading
    Mistake("loading", "bert_prefix_mismatch", "the bert. prefix not matched to the target model",
            "BertModel's keys have no `bert.` prefix, the models with a head have it, and checkpoints come "
            "both ways. See [Key names when loading](#key-names-when-loading)."),
    Mistake("loading", "gamma_beta_not_renamed", "keeping TF's LayerNorm.gamma / LayerNorm.beta names",
            "TF-converted checkpoints name a layer norm's weight and bias gamma and beta: rename them. "
            "See [Key names when loading](#key-names-when-loading)."),
    Mistake("loading", "position_ids_buffer_kept", "keeping the embeddings.position_ids buffer as a weight",
            "Older checkpoints (MiniLM's) store the `position_ids` / `token_type_ids` buffers; they are not "
            "parameters: drop them."),
    Mistake("loading", "tied_decoder_not_pointed", "no cls.predictions.decoder.weight for a tied MLM head",
            "A tied checkpoint need not store the decoder weight: point `cls.predictions.decoder.weight` at "
            "the word embedding tensor."),
    Mistake("loading", "decoder_bias_kept", "keeping cls.predictions.decoder.bias as a key of its own",
            "The decoder's bias is `cls.predictions.bias`; `cls.predictions.decoder.bias` is a second copy of it "
            "(tied) or the bias itself (untied), never a parameter of ours. See "
            "[The tied decoder's own bias](#the-tied-decoders-own-bias)."),
])
