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
import os
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
    if model.lm_head.weight.is_meta:
        raise ValueError("model's weights are on the meta device (shapes without values): load them first "
                         "(from_pretrained, or to_empty() and load_state_dict)")
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


def check_cache(model: nn.Module, cache: object, width: int) -> dict:
    """cache as what ``model.run_with_cache`` returned: a dict whose names are all hook points of
    this model and whose streams are ``width`` wide (TypeError / ValueError otherwise: a cache
    of another model would be read with this model's weights and give numbers that mean
    nothing)."""
    if not isinstance(cache, dict):
        raise TypeError(f"cache must be what model.run_with_cache returns, got {type(cache).__name__}")
    points = getattr(model, "hook_dict", None)
    if points is not None:
        foreign = [name for name in cache if name not in points]
        if foreign:
            raise ValueError(f"cache holds {foreign[0]!r}, which this {type(model).__name__} has no hook point for: "
                             f"it is another model's cache (run model.run_with_cache with this model)")
    for name in ("hook_embed", "blocks.0.hook_resid_pre"):
        if name in cache and cache[name].shape[-1] != width:
            raise ValueError(f"cache's {name} is {cache[name].shape[-1]} wide, the model's stream {width}: it is "
                             "another model's cache")
    return cache


def check_mask(mask: object, ids: Tensor) -> Tensor | None:
    """attention_mask as None or a (B, T) tensor on ids' device (the model checks its values:
    0 and 1); TypeError / ValueError naming it otherwise."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a (batch, seq) tensor of 0 and 1 or None, got {type(mask).__name__}")
    if mask.device != ids.device:
        raise ValueError(f"attention_mask is on {mask.device}, the ids on {ids.device}: move it with "
                         ".to(model.device)")
    if tuple(mask.shape) != tuple(ids.shape):
        raise ValueError(f"attention_mask must have the ids' shape {tuple(ids.shape)}, got {tuple(mask.shape)}")
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("attention_mask must hold only 0 and 1 (1 = a real token)")
    if not bool(mask.bool().any(1).all()):
        row = int((~mask.bool().any(1)).nonzero()[0])
        raise ValueError(f"attention_mask row {row} is all padding: every sequence needs at least one real token")
    return mask


def check_tokens(tokens: object, count: int, what: str = "positions") -> list[str]:
    """tokens as a list (or tuple) of ``count`` strings; TypeError / ValueError naming it."""
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, (list, tuple)):
        raise TypeError(f"tokens must be a list of strings, one per position, got {type(tokens).__name__}")
    if not all(isinstance(t, str) for t in tokens):
        bad = next(t for t in tokens if not isinstance(t, str))
        raise TypeError(f"tokens must be a list of strings, one per position, got a {type(bad).__name__} {bad!r}")
    if len(tokens) != count:
        raise ValueError(f"tokens must name the {count} {what}, got {len(tokens)}")
    return list(tokens)


def check_path(path: object) -> Path:
    """path as a Path to a file (str or os.PathLike; not an existing folder)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming the file to write, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a folder; it must name the file to write")
    return path


def check_pattern(pattern: object) -> Tensor:
    """pattern as a (T, S) or (n_head, T, S) real tensor with at least one head and position,
    without NaN or infinity; TypeError / ValueError naming it otherwise."""
    if not isinstance(pattern, torch.Tensor):
        raise TypeError(f"pattern must be a (T, S) or (n_head, T, S) tensor, got {type(pattern).__name__}")
    if pattern.dim() not in (2, 3):
        raise ValueError(f"pattern must be a (T, S) or (n_head, T, S) tensor, got shape {tuple(pattern.shape)}")
    if pattern.numel() == 0:
        raise ValueError(f"pattern must have at least one head, query and key, got shape {tuple(pattern.shape)}")
    if pattern.dtype == torch.bool or pattern.dtype.is_complex or pattern.is_meta:
        raise TypeError(f"pattern must hold real numbers, got a {pattern.dtype} tensor on {pattern.device}")
    if not bool(torch.isfinite(pattern).all()):
        raise ValueError("pattern holds NaN or infinite values: it is no attention pattern")
    return pattern


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
        if token.dtype.is_floating_point or token.dtype.is_complex or token.dtype == torch.bool or token.dim() > 1:
            raise TypeError(f"{name} must be an int or a 1-D integer tensor, got dtype {token.dtype}, "
                            f"shape {tuple(token.shape)}")
        if token.is_meta:
            raise ValueError(f"{name} is on the meta device: it holds no token ids")
        if token.dim() == 1 and token.numel() == 0:
            raise ValueError(f"{name} must hold at least one token id, got an empty tensor")
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
    if value.dtype == torch.bool or value.dtype.is_complex:
        raise TypeError(f"metric must return a real number, got a {value.dtype} tensor")
    if not bool(torch.isfinite(value)):
        raise ValueError(f"metric returned {float(value)}: a patching metric must be finite")
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
    if result.numel() == 0 or result.dtype == torch.bool or result.dtype.is_complex:
        raise ValueError(f"result must be a non-empty real tensor, got a {result.dtype} tensor of shape "
                         f"{tuple(result.shape)}")
    if not bool(torch.isfinite(result).all()):
        raise ValueError("result holds NaN or infinite values (a metric that was not finite?)")
    if labels is not None:
        if isinstance(labels, (str, bytes)) or not isinstance(labels, (list, tuple)):
            raise TypeError(f"labels must be a list of strings, one per column, got {type(labels).__name__}")
        if len(labels) != result.shape[1]:
            raise ValueError(f"labels must give one name per column of result ({result.shape[1]}), got {len(labels)}")
        labels = [str(label) for label in labels]
    path = check_path(path)
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
    pattern = check_pattern(pattern)
    heads = pattern[None] if pattern.dim() == 2 else pattern
    if heads.shape[-1] != heads.shape[-2]:
        raise ValueError(f"pattern must be square (T == S: a prompt's self-attention), got shape {tuple(pattern.shape)}")
    tokens = check_tokens(tokens, heads.shape[-1], f"positions of a pattern of shape {tuple(pattern.shape)}")
    path = check_path(path)
    try:
        import circuitsvis
    except ImportError:
        raise ImportError(f"attention_html draws with circuitsvis, which is not installed: {CIRCUITSVIS_PIP}") from None
    view = circuitsvis.attention.attention_heads(attention=heads.detach().float().cpu(), tokens=list(tokens))
    write_text_atomic(path, str(view))
    return path
