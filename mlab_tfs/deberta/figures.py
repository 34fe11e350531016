"""The DeBERTa guide's figures, drawn from the solution's own functions (``python -m mlab_tfs.figures
deberta``). The data of each figure comes from a small function of its own, which
``tests/test_guide_figures.py`` holds to exact values."""

from __future__ import annotations

import math

import torch

from mlab_tfs.deberta import solution
from mlab_tfs.figures import figure

# DeBERTa-v3's sizes: position_buckets = 256, max_relative_positions falls back to 512.
V3_BUCKETS, V3_MAX_POSITION = 256, 512


def bucket_curve(bucket_size: int = V3_BUCKETS, max_position: int = V3_MAX_POSITION, max_distance: int = 1024):
    """Distances 0..max_distance, their log buckets (the solution's ``make_log_bucket_position``)
    and the bucket the attention finally reads once c2p's clamp keeps it in the table
    (k = bucket_size rows on each side, so at most k - 1). Returns three (max_distance + 1,) long tensors."""
    distance = torch.arange(max_distance + 1)
    bucket = solution.make_log_bucket_position(distance, bucket_size, max_position)
    read = bucket.clamp(max=bucket_size - 1)  # clamp(r + k, 0, 2k - 1) - k on the positive side
    return distance, bucket, read


def relative_matrices(T: int = 16, bucket_size: int = 8, max_position: int = 12):
    """For a sequence of T tokens: r = i - j, the same distances log-bucketed, and the row of the
    relative table that c2p reads for each (query i, key j), clamp(bucketed r + k, 0, 2k - 1) with
    k = bucket_size. Returns three (T, T) long tensors (the solution's build_relative_position)."""
    raw = solution.build_relative_position(T, T)
    bucketed = solution.build_relative_position(T, T, bucket_size, max_position)
    row = (bucketed + bucket_size).clamp(0, 2 * bucket_size - 1)
    return raw, bucketed, row


@figure("log_buckets")
def draw_log_buckets():
    import matplotlib.pyplot as plt

    distance, bucket, read = bucket_curve()
    mid = V3_BUCKETS // 2
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(distance, distance.clamp(max=V3_BUCKETS - 1), ":", color="grey", label="no buckets, same k = 256: clamped at 255")
    ax.plot(distance, bucket, color="tab:blue", lw=2, label="log bucket (make_log_bucket_position)")
    ax.plot(distance, read, "--", color="tab:red", label="bucket of the row read after the clamp")
    ax.axvline(mid, color="k", lw=0.6)
    ax.axvline(V3_MAX_POSITION - 1, color="k", lw=0.6)
    ax.text(mid + 8, 20, "exact up to\nmid = 128", fontsize=8)
    ax.text(V3_MAX_POSITION + 8, 20, "max_position - 1\n= 511", fontsize=8)
    ax.set_xlabel("distance i - j (tokens), keys before the query")
    ax.set_ylabel("bucket")
    ax.set_title("DeBERTa-v3 log buckets (position_buckets 256, max_position 512)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return fig


@figure("relative_positions")
def draw_relative_positions():
    import matplotlib.pyplot as plt

    raw, bucketed, row = relative_matrices()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    titles = ("r = i - j", "bucketed (bucket_size 8, max_position 12)", "table row, clamp(bucket + 8, 0, 15)")
    for ax, m, title in zip(axes, (raw, bucketed, row), titles):
        im = ax.imshow(m, cmap="coolwarm" if m.min() < 0 else "viridis")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key j")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    axes[0].set_ylabel("query i")
    fig.suptitle("Relative positions of a 16-token sequence", fontsize=10)
    fig.tight_layout()
    return fig


def repeated_token_terms(T: int = 12, seed: int = 0):
    """The score terms of layer 0, head 0 of a small random v3-style model (the solution's
    DebertaV2Model: c2p and p2c, shared projections, 8 buckets, no absolute positions) on one
    token repeated T times. Returns {"c2c", "c2p", "p2c", "pattern"}, each (T, T): the content
    term q @ k^T from the cached hook_q / hook_k, the relative terms from their hook points (all
    three divided by the same scale) and the softmax (hook_pattern); the test holds their sum's
    softmax to the pattern. With every token the same, c2c is one number and all the structure
    comes from the distance."""
    config = solution.DebertaV2Config(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        relative_attention=True, position_buckets=8, max_relative_positions=16, pos_att_type=["c2p", "p2c"],
        share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0,
    )
    torch.manual_seed(seed)
    model = solution.DebertaV2Model(config).eval()
    with torch.no_grad():
        # The random init is small (std 0.02): scale the relative table up so its terms show.
        model.encoder.rel_embeddings.weight.normal_(0.0, 1.0)
        model.encoder.layer[0].attention.self.query_proj.weight.normal_(0.0, 0.3)
        model.encoder.layer[0].attention.self.key_proj.weight.normal_(0.0, 0.3)
        _, cache = model.run_with_cache(torch.full((1, T), 5), names_filter=lambda n: n.startswith("blocks.0.attn.hook_"))
    pick = lambda name: cache[f"blocks.0.attn.hook_{name}"][0, 0]  # noqa: E731  (B, nh, T, T) -> (T, T)
    q, k = cache["blocks.0.attn.hook_q"][0, :, 0], cache["blocks.0.attn.hook_k"][0, :, 0]  # (T, hs), head 0
    c2c = q @ k.T / math.sqrt(q.shape[-1] * 3)  # the content term, scaled as the attention does
    return {"c2c": c2c, "c2p": pick("c2p_scores"), "p2c": pick("p2c_scores"), "pattern": pick("pattern")}


@figure("repeated_token_terms")
def draw_repeated_token_terms():
    import matplotlib.pyplot as plt

    terms = repeated_token_terms()
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.1))
    titles = {"c2c": "content to content", "c2p": "content to position", "p2c": "position to content",
              "pattern": "softmax of the sum"}
    lim = max(float(terms[n].abs().max()) for n in ("c2c", "c2p", "p2c"))  # one colour scale for the three terms
    for ax, (name, m) in zip(axes, terms.items()):
        scale = {} if name == "pattern" else {"vmin": -lim, "vmax": lim}
        im = ax.imshow(m, cmap="viridis" if name == "pattern" else "coolwarm", **scale)
        ax.set_title(titles[name], fontsize=9)
        ax.set_xlabel("key j")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    axes[0].set_ylabel("query i")
    fig.suptitle("One token repeated 12 times (random layer, head 0): only distance shapes the scores", fontsize=10)
    fig.tight_layout()
    return fig
