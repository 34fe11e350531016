"""The Llama guide's figures, drawn from the course's own code (``python -m mlab_tfs.figures llama``).

The data behind each picture is a function of its own (``rotary_scores``, ``llama3_wavelengths``),
tested in ``mlab_tfs/llama/tests/test_guide_facts.py``; the ``@figure`` functions only draw it.
"""

from __future__ import annotations

import math

import torch

from mlab_tfs.figures import figure

Tensor = torch.Tensor

# Llama 3.1 8B's rotary settings (its config.json): head_dim 128, rope_theta 500000, "llama3"
# scaling from 8192 trained positions by a factor of 8.
LLAMA31_ROPE = dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                    high_freq_factor=4.0, original_max_position_embeddings=8192)


def _config(head_dim: int, rope_parameters: dict):
    from mlab_tfs.llama import LlamaConfig

    return LlamaConfig(vocab_size=8, hidden_size=head_dim, intermediate_size=8, num_hidden_layers=1,
                       num_attention_heads=1, num_key_value_heads=1, head_dim=head_dim,
                       rope_parameters=dict(rope_parameters))


def rotary_scores(T: int = 48, head_dim: int = 16, theta: float = 10000.0, seed: int = 0) -> Tensor:
    """(T, T) float: score[m, n] = rot(q, m) . rot(k, n) for one random q and k, rotated by the
    solution's LlamaRotaryEmbedding and apply_rotary_pos_emb. Each diagonal (a fixed m - n) is
    constant: the score depends on the offset only."""
    from mlab_tfs.llama import solution

    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(1, 1, 1, head_dim, generator=g), torch.randn(1, 1, 1, head_dim, generator=g)
    rotary = solution.LlamaRotaryEmbedding(_config(head_dim, dict(rope_type="default", rope_theta=theta)))
    cos, sin = rotary(q, torch.arange(T)[None])  # (1, T, hd)
    rq, rk = solution.apply_rotary_pos_emb(q.expand(1, 1, T, head_dim), k.expand(1, 1, T, head_dim), cos, sin)
    return (rq[0, 0] @ rk[0, 0].T).detach()  # (T, T)


def llama3_wavelengths(head_dim: int = 128, rope: dict | None = None) -> tuple[Tensor, Tensor]:
    """The wavelengths 2 pi / inv_freq, in tokens, of the head_dim / 2 pairs before and after the
    "llama3" scaling (the solution's rope_frequencies), Llama 3.1 8B's settings by default."""
    from mlab_tfs.llama import solution

    rope = dict(LLAMA31_ROPE if rope is None else rope)
    before = solution.rope_frequencies(_config(head_dim, dict(rope_type="default", rope_theta=rope["rope_theta"])))
    after = solution.rope_frequencies(_config(head_dim, rope))
    return 2 * math.pi / before, 2 * math.pi / after


def llama3_bands(head_dim: int = 128, rope: dict | None = None) -> dict[str, int]:
    """How many frequencies the llama3 scaling keeps, divides by its factor, and blends."""
    before, after = llama3_wavelengths(head_dim, rope)
    factor = (LLAMA31_ROPE if rope is None else rope)["factor"]
    kept = int(torch.isclose(after, before, rtol=1e-6).sum())
    divided = int(torch.isclose(after, before * factor, rtol=1e-6).sum())
    return {"kept": kept, "divided": divided, "blended": len(before) - kept - divided}


@figure("rotary_scores")
def draw_rotary_scores():
    import matplotlib.pyplot as plt

    scores = rotary_scores()
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(scores.numpy(), cmap="RdBu_r", vmin=-scores.abs().max(), vmax=scores.abs().max())
    ax.set_xlabel("key position n")
    ax.set_ylabel("query position m")
    ax.set_title("rot(q, m) · rot(k, n): constant along each diagonal m − n\n(one random q, k; hd = 16, θ = 10000)",
                 fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


@figure("llama3_wavelengths")
def draw_llama3_wavelengths():
    import matplotlib.pyplot as plt

    before, after = llama3_wavelengths()
    L = LLAMA31_ROPE["original_max_position_embeddings"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    pairs = range(len(before))
    ax.semilogy(pairs, before.numpy(), "o", ms=3, label="default (rope_theta 500000)")
    ax.semilogy(pairs, after.numpy(), "x", ms=4, label="llama3 scaling (factor 8)")
    ax.axhline(L / LLAMA31_ROPE["high_freq_factor"], color="gray", ls=":", lw=1)
    ax.axhline(L / LLAMA31_ROPE["low_freq_factor"], color="gray", ls="--", lw=1)
    ax.text(1, L / 4 * 1.3, "2048: below, kept", fontsize=8, color="gray")
    ax.text(1, L * 1.3, "8192: above, × 8", fontsize=8, color="gray")
    ax.set_xlabel("pair j (head_dim 128)")
    ax.set_ylabel("wavelength 2π / θ_j (tokens)")
    ax.set_title("Llama 3.1's rotary wavelengths before and after llama3 scaling", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, 0.9))
    return fig
