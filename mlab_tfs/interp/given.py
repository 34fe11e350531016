"""What the interpretability part gives the learner: where each model keeps the weights the
exercises read, the argument checks, and the drawing code that is not an exercise.
``solution.py`` and ``student.py`` both import it.

The exercises work on the course's decoders, our ``mlab_tfs.gpt2.GPT2LMHeadModel`` and
``mlab_tfs.llama.LlamaForCausalLM`` (the learner's own, from ``student.py``, as well): both
have TransformerLens's hook points (``mlab_tfs/hooks.py``), so the exercises reach the
activations by name. The weights they need (each head's slice of the output projection, the
final norm, the unembedding) sit under transformers' module names, which differ between the
two; ``layout(model)`` hides that difference.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from mlab_tfs.durable import write_bytes_atomic, write_text_atomic

Tensor = torch.Tensor
Metric = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Layout:
    """The parts of a decoder the exercises read.

    n_layer, n_head, head_dim: the blocks, the query heads per block and their size.
    vocab_size: the head's outputs.
    out_proj: each block's attention output projection, an ``nn.Linear(n_head * head_dim, C)``
        (GPT-2's ``attn.c_proj``, Llama's ``self_attn.o_proj``); its bias (GPT-2's, a Llama
        with ``attention_bias``) is the block's, not any head's.
    final_norm: the norm before the head (GPT-2's ``ln_f``, a LayerNorm: centred, with a
        bias; Llama's ``norm``, an RMSNorm: not centred, no bias).
    centred: whether final_norm subtracts the mean (LayerNorm) or not (RMSNorm).
    unembed: the head, an ``nn.Linear(C, vocab_size, bias=False)``: its weight (V, C) is W_U,
        tied to the token embedding or not.
    has_pos_embed: GPT-2's learned positions (``hook_pos_embed``); Llama rotates q and k instead.
    """

    n_layer: int
    n_head: int
    head_dim: int
    vocab_size: int
    out_proj: tuple[nn.Linear, ...]
    final_norm: nn.Module
    centred: bool
    unembed: nn.Linear
    has_pos_embed: bool


def layout(model: object) -> Layout:
    """The Layout of our GPT2LMHeadModel or LlamaForCausalLM (the solution's or the learner's:
    read by module names, not by class). TypeError for anything else."""
    if not isinstance(model, nn.Module) or not hasattr(model, "run_with_cache") or not hasattr(model, "lm_head"):
        raise TypeError(f"model must be the course's GPT2LMHeadModel or LlamaForCausalLM (with hook points and an "
                        f"LM head), got {type(model).__name__}")
    config = model.config
    if hasattr(model, "transformer"):  # GPT-2
        body = model.transformer
        n_layer, n_head = config.n_layer, config.n_head
        head_dim = config.n_embd // n_head
        out_proj = tuple(block.attn.c_proj for block in body.h)
        norm, centred, pos = body.ln_f, True, True
    elif hasattr(model, "model") and hasattr(model.model, "layers"):  # Llama, Qwen3
        body = model.model
        n_layer, n_head, head_dim = config.num_hidden_layers, config.num_attention_heads, config.head_dim
        out_proj = tuple(layer.self_attn.o_proj for layer in body.layers)
        norm, centred, pos = body.norm, False, False
    else:
        raise TypeError(f"model must be the course's GPT2LMHeadModel or LlamaForCausalLM, got {type(model).__name__} "
                        "(neither a .transformer nor a .model.layers)")
    return Layout(n_layer, n_head, head_dim, config.vocab_size, out_proj, norm, centred, model.lm_head, pos)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model is in eval mode (no dropout) and no gradient is tracked; its
    training flags (every submodule's) are as before afterwards, also on error."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for m, flag in flags.items():
            m.training = flag


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def check_ids(name: str, ids: object, vocab_size: int, device: torch.device | None = None) -> Tensor:
    """ids as a (B, T) integer tensor of token ids in [0, vocab_size), on the model's device;
    TypeError / ValueError naming the argument otherwise."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a (batch, seq) tensor of token ids, got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} must be 2-D (batch, seq) with both sizes positive, got shape {tuple(ids.shape)}")
    if device is not None and ids.device != device:
        raise ValueError(f"{name} is on {ids.device}, the model on {device}: move it with .to(model.device)")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} must hold token ids in [0, {vocab_size}), got values from {low} to {high}")
    return ids.long()


def check_layer(name: str, layer: object, n_layer: int, what: str = "layers") -> int:
    """layer as an index in [0, n_layer) (TypeError / ValueError naming the argument; what: what
    the model has n_layer of)."""
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise TypeError(f"{name} must be an int, got {type(layer).__name__} {layer!r}")
    if not 0 <= layer < n_layer:
        raise ValueError(f"{name} must be in [0, {n_layer}) (the model has {n_layer} {what}), got {layer}")
    return layer


def check_token_choice(name: str, token: object, vocab_size: int) -> int | Tensor:
    """A token id (int) or a (B,) tensor of them, each in [0, vocab_size)."""
    if isinstance(token, bool) or not isinstance(token, (int, torch.Tensor)):
        raise TypeError(f"{name} must be a token id (int) or a (batch,) tensor of them, got {type(token).__name__}")
    if isinstance(token, torch.Tensor):
        if token.dtype.is_floating_point or token.dtype == torch.bool or token.dim() > 1:
            raise TypeError(f"{name} must be an int or a 1-D integer tensor, got dtype {token.dtype}, "
                            f"shape {tuple(token.shape)}")
        if token.numel() and (int(token.min()) < 0 or int(token.max()) >= vocab_size):
            raise ValueError(f"{name} must hold token ids in [0, {vocab_size}), got {token.tolist()}")
        return token.long().reshape(-1) if token.dim() else int(token)
    if not 0 <= token < vocab_size:
        raise ValueError(f"{name} must be a token id in [0, {vocab_size}), got {token}")
    return token


def check_metric_value(value: object) -> Tensor:
    """What a patching metric returned: a 0-d tensor (TypeError / ValueError otherwise)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"metric must return a 0-d tensor, got {type(value).__name__}")
    if value.dim() != 0:
        raise ValueError(f"metric must return a 0-d tensor (one number per run), got shape {tuple(value.shape)}")
    return value


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, also without a display
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: object, path: str | Path) -> Path:
    """Write a matplotlib figure as a PNG at path atomically (a reader never sees half a file)
    and close it; returns the path. The folder must exist (FileNotFoundError)."""
    plt = pyplot()
    path = Path(path)
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        write_bytes_atomic(path, buffer.getvalue())
    finally:
        plt.close(fig)
    return path


def check_repeated(tokens: object, vocab_size: int, device=None) -> tuple[Tensor, int]:
    """(tokens as a long tensor, L) for tokens = [r, r] of shape (B, 2L): token ids in
    [0, vocab_size), an even length and equal halves; TypeError / ValueError otherwise."""
    ids = check_ids("tokens", tokens, vocab_size, device)
    if ids.shape[1] % 2:
        raise ValueError(f"tokens must be [r, r], of even length 2L, got length {ids.shape[1]}")
    L = ids.shape[1] // 2
    if not torch.equal(ids[:, :L], ids[:, L:]):
        bad = int((ids[:, :L] != ids[:, L:]).any(0).nonzero()[0])
        raise ValueError(f"tokens must be [r, r]: the second half repeats the first, but position {L + bad} "
                         f"differs from position {bad}")
    return ids, L


def plot_patching(result: Tensor, path: str | Path, title: str | None = None,
                  labels: list[str] | None = None) -> Path:
    """A heat map of a patching result as a PNG at path (atomic); returns the path.

    result: (n_layer, T) from patch_residual, labels the T tokens on the x axis, or
    (n_layer, n_head) from patch_heads (labels None: the heads are numbered). Best given as
    recovered_fraction's values: the colours are centred on 0, 1 (fully recovered) at the
    darkest red. ValueError for another shape or labels of the wrong length.
    """
    if not isinstance(result, torch.Tensor) or result.dim() != 2:
        raise ValueError(f"result must be a 2-D tensor (n_layer, T) or (n_layer, n_head), got "
                         f"{type(result).__name__ if not isinstance(result, torch.Tensor) else tuple(result.shape)}")
    if labels is not None and len(labels) != result.shape[1]:
        raise ValueError(f"labels must give one name per column of result ({result.shape[1]}), got {len(labels)}")
    plt = pyplot()
    values = result.detach().float().cpu().numpy()
    bound = max(1.0, float(abs(values).max()))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * values.shape[1] + 2), max(2.5, 0.45 * values.shape[0] + 1.5)))
    im = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_ylabel("layer")
    ax.set_yticks(range(values.shape[0]))
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels, rotation=90)
        ax.set_xlabel("position")
    else:
        ax.set_xticks(range(values.shape[1]))
        ax.set_xlabel("head")
    fig.colorbar(im, ax=ax)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


CIRCUITSVIS_PIP = "pip install circuitsvis"


def attention_html(pattern: Tensor, tokens: list[str], path: str | Path) -> Path:
    """An interactive view of attention patterns, one HTML file at path (atomic), drawn by
    circuitsvis (Cooney and Nanda, ``circuitsvis.attention.attention_heads``); returns the path.

    pattern: (T, S) one head or (nh, T, S) several, rows the queries; tokens: the T strings
    (T == S: a prompt's self-attention). ImportError with the pip line when circuitsvis is not
    installed; ValueError for other shapes or a token count that is not T.
    """
    if not isinstance(pattern, torch.Tensor) or pattern.dim() not in (2, 3):
        raise ValueError("pattern must be a (T, S) or (n_head, T, S) tensor, got "
                         f"{tuple(pattern.shape) if isinstance(pattern, torch.Tensor) else type(pattern).__name__}")
    heads = pattern[None] if pattern.dim() == 2 else pattern
    if heads.shape[-1] != heads.shape[-2] or len(tokens) != heads.shape[-1]:
        raise ValueError(f"tokens must name the {heads.shape[-2]} positions of a square pattern, got "
                         f"{len(tokens)} tokens for a pattern of shape {tuple(pattern.shape)}")
    try:
        import circuitsvis
    except ImportError:
        raise ImportError(f"attention_html draws with circuitsvis, which is not installed: {CIRCUITSVIS_PIP}") from None
    view = circuitsvis.attention.attention_heads(attention=heads.detach().float().cpu(), tokens=list(tokens))
    path = Path(path)
    write_text_atomic(path, str(view))
    return path
