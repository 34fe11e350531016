"""Fast paths for the GPT-2 solution, each an opt-in beside the hand-written code and
tested equal to it (mlab_tfs/gpt2/tests/test_fast_paths.py).

1. A static KV cache (as in PyTorch's gpt-fast): one preallocated (B, nh, max_len, hs)
   key and value buffer per layer, written in place at the current positions. Every
   decode step then has the same shapes, so it can be compiled once and captured as a
   CUDA graph (``torch.compile(mode="reduce-overhead")``). ``static_forward`` runs our
   GPT2LMHeadModel's own modules over such a cache; ``mlab_tfs.sampling.fast`` decodes
   with it.
2. Fused kernels for eager mode: ``use_fused_ops(model)`` (or ``with fused_ops(model):``)
   runs the hand-written layer norms as ``F.layer_norm`` and the hand-written GELUs as
   ``F.gelu``: one kernel each instead of several, same module names and weights.

Shapes: B batch, T new tokens, M = max_len cache columns, C = n_embd, nh heads,
hs = C // nh head size, V vocabulary.
"""

from __future__ import annotations

import contextlib
import functools
import types
from typing import Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mlab_tfs.attention import check_attn_implementation, sdpa
from mlab_tfs.gpt2.solution import GPT2Attention, GPT2LMHeadModel, attention_pattern

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------
# 1. Static KV cache
# ---------------------------------------------------------------------------------------


class StaticKVCache(nn.Module):
    """Keys and values of every layer in fixed-size buffers, (B, nh, max_len, hs) each.

    Column c of the cache holds the token in column c of the (left-padded) batch, so all
    rows share one cache position per step; ``key_mask`` (B, max_len) says which columns
    are real tokens (False on the prompts' left padding). Buffers, not plain attributes:
    torch.compile treats module buffers as static addresses, which CUDA graphs need.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        for name, value in (("n_layer", n_layer), ("batch_size", batch_size), ("n_head", n_head),
                            ("max_len", max_len), ("head_dim", head_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"StaticKVCache: {name} must be a positive int, got {value!r}")
        self.n_layer, self.batch_size, self.max_len = n_layer, batch_size, max_len
        shape = (batch_size, n_head, max_len, head_dim)
        for i in range(n_layer):
            self.register_buffer(f"k{i}", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
            self.register_buffer(f"v{i}", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("key_mask", torch.zeros(batch_size, max_len, dtype=torch.bool, device=device),
                             persistent=False)

    @classmethod
    def for_model(cls, model: GPT2LMHeadModel, batch_size: int, max_len: int) -> "StaticKVCache":
        """A cache shaped for ``model``, in the dtype and on the device of its weights."""
        cfg = model.config
        if max_len > cfg.n_positions:
            raise ValueError(f"max_len={max_len} is more than the model's n_positions={cfg.n_positions}")
        w = model.lm_head.weight
        return cls(cfg.n_layer, batch_size, cfg.n_head, max_len, cfg.head_dim, dtype=w.dtype, device=w.device)

    def layer(self, i: int) -> tuple[Tensor, Tensor]:
        return getattr(self, f"k{i}"), getattr(self, f"v{i}")

    def reset(self, attention_mask: Tensor | None = None) -> None:
        """Empty the cache for a new batch whose prompt mask (B, T) is ``attention_mask``:
        its columns are real where the mask is 1; every later column is a real new token."""
        for i in range(self.n_layer):
            for t in self.layer(i):
                t.zero_()
        self.key_mask.fill_(True)
        if attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape[0] != self.batch_size or attention_mask.shape[1] > self.max_len:
                raise ValueError(f"attention_mask must have shape ({self.batch_size}, <= {self.max_len}), "
                                 f"got {tuple(attention_mask.shape)}")
            self.key_mask[:, : attention_mask.shape[1]].copy_(attention_mask.bool())

    def as_tuple(self, length: int) -> tuple[tuple[Tensor, Tensor], ...]:
        """The first ``length`` columns as the solution's tuple cache (views, not copies)."""
        return tuple((k[:, :, :length], v[:, :, :length]) for k, v in map(self.layer, range(self.n_layer)))


def _static_attention(attn: GPT2Attention, x: Tensor, k_cache: Tensor, v_cache: Tensor,
                      cache_position: Tensor, keep: Tensor) -> Tensor:
    """GPT2Attention.forward over a static cache: x (B, T, C), keep (B, 1, T, M) bool."""
    C = x.shape[-1]
    q, k, v = attn.c_attn(x).split(C, dim=-1)
    q, k, v = (rearrange(t, "b t (nh hs) -> b nh t hs", nh=attn.n_head) for t in (q, k, v))
    k_cache[:, :, cache_position] = k.to(k_cache.dtype)  # in place: (B, nh, M, hs)
    v_cache[:, :, cache_position] = v.to(v_cache.dtype)
    k, v = k_cache, v_cache
    if check_attn_implementation(attn.config.attn_implementation, "config.attn_implementation") == "sdpa":
        # Queries that see no key (the prompts' left padding) output zeros, as in the full pass.
        y = sdpa(q, k, v, keep, attn.scale, attn.attn_dropout.p if attn.training else 0.0)
    else:
        if attn.upcast:
            pattern = attention_pattern(q.float(), k.float(), keep, attn.scale).to(v.dtype)
        else:
            pattern = attention_pattern(q, k, keep, attn.scale)
        y = torch.matmul(attn.attn_dropout(pattern), v)  # (B, nh, T, hs)
    y = rearrange(y, "b nh t hs -> b t (nh hs)")
    return attn.resid_dropout(attn.c_proj(y))


def static_forward(model: GPT2LMHeadModel, input_ids: Tensor, position_ids: Tensor, cache: StaticKVCache,
                   cache_position: Tensor, last_only: bool = False) -> Tensor:
    """Our GPT-2's forward pass over a static KV cache; returns logits (B, T, V), or
    (B, 1, V) for the last column only with ``last_only`` (a prefill needs no more).

    input_ids, position_ids: (B, T) (position_ids may be (1, T)); cache_position: (T,)
    long, the cache columns the T tokens go to (the same for every row). Each new token
    attends to the cache columns up to its own that ``cache.key_mask`` marks real.
    Nothing here reads a value back to the host, so the function compiles to one graph.
    The same modules as GPT2LMHeadModel.forward, in the same order; the tests check the
    logits equal to it.
    """
    tr = model.transformer
    M = cache.max_len
    allowed = torch.arange(M, device=input_ids.device)[None, :] <= cache_position[:, None]  # (T, M): causal
    keep = allowed[None, None] & cache.key_mask[:, None, None, :]  # (B, 1, T, M)
    x = tr.drop(tr.wte(input_ids) + tr.wpe(position_ids))  # (B, T, C)
    for i, block in enumerate(tr.h):
        k_cache, v_cache = cache.layer(i)
        x = x + _static_attention(block.attn, block.ln_1(x), k_cache, v_cache, cache_position, keep)
        x = x + block.mlp(block.ln_2(x))
    if last_only:
        x = x[:, -1:]
    return model.lm_head(tr.ln_f(x))


# ---------------------------------------------------------------------------------------
# 2. Fused layer norm and GELU for eager mode
# ---------------------------------------------------------------------------------------


def _fused_layer_norm_forward(self: nn.Module, x: Tensor) -> Tensor:
    # F.layer_norm wants input and weights in one dtype; otherwise the hand-written path
    # (half-precision input with fp32 weights, or float64 input) keeps its exact semantics.
    if x.dtype != self.weight.dtype:
        return type(self).forward(self, x)
    return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


def _hand_written_activations() -> dict:
    """hand-written activation -> the fused PyTorch op computing the same function."""
    from mlab_tfs.gpt2 import solution as gpt2

    table = {gpt2.gelu_new: functools.partial(F.gelu, approximate="tanh")}
    try:
        from mlab_tfs.bert import solution as bert

        table[bert.gelu] = F.gelu  # the exact (erf) GELU
    except ImportError:  # pragma: no cover - the BERT part is optional here
        pass
    return table


def _is_hand_written_layer_norm(module: nn.Module) -> bool:
    return (type(module).__name__ == "LayerNorm" and type(module).forward is not nn.LayerNorm.forward
            and all(hasattr(module, a) for a in ("weight", "bias", "eps")))


def use_fused_ops(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Run ``model``'s hand-written layer norms and GELUs as single PyTorch kernels
    (``F.layer_norm``, ``F.gelu``), or back as written with ``enabled=False``.

    Changes the modules in place (module names, parameters and state dict stay as they
    are) and returns the model. Covers every module named ``LayerNorm`` with weight, bias
    and eps (GPT-2's and BERT's) and the activations ``gelu_new`` (GPT-2) and ``gelu``
    (BERT); other activations stay hand-written. Same outputs and gradients up to float
    rounding: the tests check 1e-5.
    """
    table = _hand_written_activations()
    for module in model.modules():
        if _is_hand_written_layer_norm(module):
            if enabled:
                module.forward = types.MethodType(_fused_layer_norm_forward, module)
            else:
                module.__dict__.pop("forward", None)
        act = module.__dict__.get("act")
        if enabled and act in table:
            module._hand_written_act = act
            module.act = table[act]
        elif not enabled and "_hand_written_act" in module.__dict__:
            module.act = module.__dict__.pop("_hand_written_act")
    return model


@contextlib.contextmanager
def fused_ops(model: nn.Module) -> Iterator[nn.Module]:
    """``with fused_ops(model):`` runs use_fused_ops(model) inside the block only."""
    use_fused_ops(model, True)
    try:
        yield model
    finally:
        use_fused_ops(model, False)
