"""The common mistakes of the DeBERTa exercises: what the tests recognise, what GUIDE.md lists
under each exercise, what mlab_tfs/testing/tests/test_catalogue.py plants (see
mlab_tfs/testing/mistakes.py)."""

from mlab_tfs.testing.mistakes import Catalogue, Mistake

PART = "deberta"

MISTAKES = Catalogue(PART, [
    # 1. log buckets
    Mistake("log_buckets", "bucket_floor", "floor instead of ceil in the log part",
            "The reference rounds the log part up (`torch.ceil`): floor puts far distances one bucket nearer."),
    Mistake("log_buckets", "bucket_round", "round instead of ceil in the log part",
            "The reference rounds the log part up (`torch.ceil`); rounding to the nearest differs on about "
            "half of the far distances."),
    Mistake("log_buckets", "bucket_sign_lost", "a far bucket without the sign of r",
            "Far distances are `sign(r) * (mid + log part)`: without the sign, keys before and after a query "
            "at the same distance share a bucket."),
    Mistake("log_buckets", "bucket_log_max_position", "log(max_position / mid) instead of log((max_position - 1) / mid)",
            "The largest distance is max_position - 1, and the reference divides by log((max_position - 1) / mid); "
            "the buckets move by one near the boundaries."),
    Mistake("log_buckets", "bucket_no_mid", "forgetting to add mid to the log part",
            "The log part counts buckets *beyond* mid: `mid + ceil(...)`, so that bucket mid + 1 follows the "
            "last exact distance mid."),
    Mistake("log_buckets", "bucket_mid_true_division", "mid = bucket_size / 2 instead of bucket_size // 2",
            "mid is an integer, `bucket_size // 2`: with an odd bucket size a float mid moves the boundary "
            "between exact and log buckets by half a step and every far bucket with it."),
    Mistake("log_buckets", "bucket_log_scale_mid", "the log part scaled by mid instead of mid - 1",
            "The log part is `ceil(log(|r| / mid) / log((max_position - 1) / mid) * (mid - 1))`: mid - 1 buckets "
            "beyond the exact ones, so |bucket| <= bucket_size - 1. Scaling by mid goes one bucket past the table."),
    # 2. relative position matrix
    Mistake("relative_position", "relative_sign_flipped", "the distance j - i instead of i - j",
            "r[i, j] is the query's position minus the key's: positive entries are keys before the query."),
    Mistake("relative_position", "relative_not_bucketed", "no bucketing when bucket_size and max_position are set",
            "With bucket_size > 0 and max_position > 0 the distances go through `make_log_bucket_position`."),
    Mistake("relative_position", "relative_square", "a square matrix of the query size for the keys too",
            "r is (query_size, key_size): the keys' positions are `arange(key_size)`, which need not equal the "
            "queries'."),
    # 3. c2p
    Mistake("c2p", "c2p_sign_flipped", "the c2p index at j - i (relative_pos negated or transposed)",
            "c2p reads the table at r(i, j) + k for query i and key j, `relative_pos` as given; r is "
            "antisymmetric, so its transpose is its negative."),
    Mistake("c2p", "c2p_clamp_without_k", "clamping r without adding k first",
            "The table's rows run over distances -k..k-1: add k, *then* clamp to [0, 2k - 1]. See "
            "[The clamp](#the-clamp)."),
    Mistake("c2p", "c2p_not_clamped", "a c2p gather index outside the table (r + k not clamped to [0, 2k - 1])",
            "Distances run from -(T-1) to T-1 but the table has 2k rows: for any T > k (with buckets, T > "
            "max_position), r + k must be clamped to [0, 2k - 1] or gather fails. See [The clamp](#the-clamp)."),
    Mistake("c2p", "c2p_gather_wrong_dim", "gathering c2p along the wrong dim",
            "`query @ pos_key^T` is (B, nh, T, 2k): the distance is the last dim, so gather dim=-1."),
    Mistake("c2p", "c2p_scaled", "dividing c2p by the scale inside c2p_scores",
            "`c2p_scores` is unscaled; the attention divides every term by the same scale."),
    # 4. p2c
    Mistake("p2c", "p2c_sign_flipped", "the p2c gather at +r instead of -r",
            "Row j of `key @ pos_query^T` belongs to key j, and it must read the query's distance "
            "i - j, which is -r[j, i]: index -r[j, i] + k (the paper's delta(j, i) read literally gives +r). See "
            "[p2c's sign and transpose](#p2cs-sign-and-transpose)."),
    Mistake("p2c", "p2c_no_transpose", "forgetting p2c's final transpose",
            "The gather gives (B, nh, key j, query i); the scores are (query, key): transpose the last two dims. See "
            "[p2c's sign and transpose](#p2cs-sign-and-transpose)."),
    Mistake("p2c", "p2c_as_c2p", "c2p's formula with the key in place of the query",
            "p2c is not c2p with `key` for `query`: it gathers key-major at -r and transposes."),
    Mistake("p2c", "p2c_not_clamped", "a p2c gather index outside the table (-r + k not clamped to [0, 2k - 1])",
            "As in c2p, the index -r + k must be clamped to the table's 2k rows. See [The clamp](#the-clamp)."),
    # 5. attention
    Mistake("attention", "scale_no_factor", "the scale sqrt(head size), without the (1 + number of position types) factor",
            "The score sums 1 + n dot products (content, c2p, p2c), each of variance ~hs: divide by "
            "sqrt(hs * (1 + n)), not BERT's sqrt(hs). See [The scale factor](#the-scale-factor)."),
    Mistake("attention", "scale_factor_outside_sqrt", "the scale sqrt(head size) * (1 + number of position types)",
            "The factor goes inside the square root: sqrt(hs * (1 + n)); with both types and hs = 64 that is "
            "sqrt(192) ~ 13.9, not 24. See [The scale factor](#the-scale-factor)."),
    Mistake("attention", "scale_factor_fixed_3", "the scale sqrt(3 * head size) whatever pos_att_type holds",
            "The paper's 1/sqrt(3d) is for c2p and p2c together; the factor counts the configured types, so a "
            "config with only c2p (or only p2c) divides by sqrt(2 hs)."),
    Mistake("attention", "no_scale", "no scale at all",
            "Unscaled scores of hs-dimensional dot products make a near one-hot softmax."),
    Mistake("attention", "relative_terms_unscaled", "the relative terms (c2p, p2c) added without dividing by the scale",
            "Each of c2p and p2c is divided by the same sqrt(hs * (1 + n)) as the content term."),
    Mistake("attention", "share_att_key_ignored", "share_att_key ignored (the wrong projections for the relative table)",
            "With `share_att_key` the table goes through `key_proj` (c2p) and `query_proj` (p2c) and there are no "
            "`pos_key_proj` / `pos_query_proj`; without it, through those separate projections."),
    # 6. embeddings
    Mistake("embeddings", "embeddings_no_mask", "no mask multiply after the layer norm",
            "transformers zeroes the padding rows: `LayerNorm(x) * mask[..., None]`; the encoder's convolution "
            "reads them."),
    Mistake("embeddings", "embeddings_mask_before_norm", "multiplying by the mask before the LayerNorm instead of after",
            "The norm of a zero row is its bias, not zero: multiply after the norm."),
    Mistake("embeddings", "embeddings_token_types_ignored", "ignoring token_type_ids",
            "With a token type table (type_vocab_size > 0) add `token_type_embeddings(token_type_ids)`; "
            "None means type 0."),
    Mistake("embeddings", "embeddings_position_ids_ignored", "ignoring position_ids (using 0..T-1)",
            "With absolute positions, look them up at the `position_ids` given; 0..T-1 only when None."),
    # 7. encoder
    Mistake("encoder", "encoder_keys_only_mask", "masking padded keys only (padded queries must be masked too)",
            "DeBERTa's mask is 2-d, `keep = m_i & m_j`: outputs at real positions don't notice, hidden states "
            "at padded ones do. See [Padding queries are masked](#padding-queries-are-masked)."),
    Mistake("encoder", "encoder_table_not_normed", "the relative table without its LayerNorm",
            "With norm_rel_ebd = 'layer_norm' (v2, v3) `get_rel_embedding` passes the table through the "
            "encoder's LayerNorm."),
    Mistake("encoder", "encoder_no_buckets", "relative positions built without the config's buckets",
            "The encoder builds r with `position_buckets` and `max_relative_positions`: v3's buckets change "
            "every distance beyond bucket_size // 2."),
    # 8. MLM heads
    Mistake("mlm_heads", "head_norm_before_act", "LayerNorm before the activation in the MLM head",
            "Both heads transform as BERT's: dense, activation, then LayerNorm."),
    Mistake("mlm_heads", "original_head_no_bias", "forgetting the original head's bias",
            "The original head is `LayerNorm(act(dense(h))) @ word_embeddings^T + bias`."),
    Mistake("mlm_heads", "legacy_bias_twice", "adding the legacy head's bias on top of its decoder's",
            "The legacy decoder is an `nn.Linear` with its own bias (tied to `bias` by the model): adding `bias` "
            "again counts it twice."),
], fewer={
    "model": "nothing to write: the given models run the pieces of exercises 1-8, whose mistakes their own "
             "tests name",
})
