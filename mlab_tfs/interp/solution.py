"""Temporary stand-in for the interpretability part's solution: only ``plot_attention`` and
``attention_html``, with the part's signatures, so that ``mlab-tfs interp attention`` and its
tests run on this branch. The part's full solution.py replaces this file."""

from __future__ import annotations

from pathlib import Path

import torch

from mlab_tfs.durable import atomic_file, write_text_atomic

Tensor = torch.Tensor


def _pattern_and_tokens(pattern: Tensor, tokens: list[str]) -> Tensor:
    if not isinstance(pattern, torch.Tensor):
        raise TypeError(f"pattern must be a tensor (T, S) or (n_head, T, S), got {type(pattern).__name__}")
    if pattern.dim() not in (2, 3):
        raise ValueError(f"pattern must be (T, S) or (n_head, T, S), got shape {tuple(pattern.shape)}")
    if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str) for t in tokens):
        raise TypeError("tokens must be a list of str, one per position")
    if len(tokens) != pattern.shape[-1] or pattern.shape[-2] != pattern.shape[-1]:
        raise ValueError(f"tokens has {len(tokens)} entries; pattern of shape {tuple(pattern.shape)} needs "
                         f"T = S = {len(tokens)}")
    return pattern.detach().float().cpu()


def plot_attention(pattern: Tensor, tokens: list[str], path: str | Path, title: str | None = None) -> Path:
    """Write ``pattern`` (T, S) or (n_head, T, S) as a PNG heat map (query rows, key columns) to
    ``path``, atomically; returns the path."""
    from mlab_tfs.figures import use_agg

    use_agg()
    import matplotlib.pyplot as plt

    p = _pattern_and_tokens(pattern, tokens)
    heads = p[None] if p.dim() == 2 else p
    n = heads.shape[0]
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(heads[i].numpy(), vmin=0, vmax=1, cmap="Blues")
        ax.set_title(f"head {i}" if n > 1 else (title or ""))
    if n > 1 and title:
        fig.suptitle(title)
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def attention_html(pattern: Tensor, tokens: list[str], path: str | Path) -> Path:
    """Write an interactive view of ``pattern`` with circuitsvis to ``path``, atomically."""
    try:
        import circuitsvis.attention as cv
    except ImportError:
        raise ImportError("attention_html needs circuitsvis: pip install -e '.[interp]'") from None
    p = _pattern_and_tokens(pattern, tokens)
    heads = p[None] if p.dim() == 2 else p
    write_text_atomic(path, str(cv.attention_heads(heads, list(tokens))))
    return Path(path)
