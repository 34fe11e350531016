"""What the Llama exercises' common mistakes compute, built from transformers' own pieces: the
outputs ``assert_close(mistakes=...)`` recognises. Each function's defaults are transformers'
computation; each keyword turns one catalogued mistake on."""

from __future__ import annotations

import dataclasses
import math

import torch
from transformers.models.llama import modeling_llama as hf_llama

from mlab_tfs.llama import solution
from mlab_tfs.testing.tiny import load_submodule

Tensor = torch.Tensor


def config_of(hf_model) -> solution.LlamaConfig:
    """Our config of a transformers model, on the hand-written attention path (the learner's)."""
    config = solution.LlamaConfig.from_dict(hf_model.config.to_dict())
    return dataclasses.replace(config, attn_implementation="eager")


def load_into(module: torch.nn.Module, hf_model, prefix: str) -> torch.nn.Module:
    """Copy a transformers model's weights under prefix into one of our modules with the
    solution's name map, so that component tests don't depend on the loading exercise."""
    config = config_of(hf_model)
    return load_submodule(module, solution.from_hf_state_dict(hf_model.state_dict(), config), prefix)


def rms_norm(x: Tensor, weight: Tensor, eps: float, *, mean: bool = False, eps_outside: bool = False,
             no_sqrt: bool = False, dim: int = -1, in_dtype: bool = False, rsqrt: bool = False,
             square_in_dtype: bool = False, weight_first: bool = False) -> Tensor:
    """rsqrt: x * rsqrt(ms + eps) instead of x / sqrt(ms + eps) (the same in float32, not in bfloat16).
    square_in_dtype: only the mean square in x's dtype (then float32); weight_first: the weight
    multiplies the float32 normalised x, and the product is cast (the cast after the weight)."""
    x32 = x if in_dtype else x.float()
    if mean:
        x32 = x32 - x32.mean(dim, keepdim=True)
    ms = x.pow(2).mean(dim, keepdim=True).float() if square_in_dtype else x32.pow(2).mean(dim, keepdim=True)
    if rsqrt:
        normed = x32 * torch.rsqrt(ms + eps)
    else:
        normed = x32 / (ms + eps if no_sqrt else (ms.sqrt() + eps if eps_outside else (ms + eps).sqrt()))
    return (weight * normed).to(x.dtype) if weight_first else weight * normed.to(x.dtype)


def nearest(actual, *candidates: Tensor) -> Tensor:
    """Of the outputs of one mistake written several ways, the one nearest to actual."""
    if not isinstance(actual, Tensor):
        return candidates[0]
    a = actual.detach().double()

    def distance(c: Tensor) -> float:
        if c.shape != a.shape:
            return float("inf")
        return float((a - c.detach().double()).abs().nan_to_num(nan=float("inf")).max())

    return min(candidates, key=distance)


def rotate_interleaved(x: Tensor) -> Tensor:
    """(x_2j, x_2j+1) -> (-x_2j+1, x_2j), written by hand."""
    out = torch.empty_like(x)
    out[..., 0::2], out[..., 1::2] = -x[..., 1::2], x[..., 0::2]
    return out


def rotate(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, *, turn=hf_llama.rotate_half, swapped: bool = False,
           keys: bool = True) -> tuple[Tensor, Tensor]:
    cos, sin = cos[:, None], sin[:, None]
    if swapped:
        cos, sin = sin, cos
    q2 = q * cos + turn(q) * sin
    return q2, (k * cos + turn(k) * sin) if keys else k


def inv_freq(hd: int, theta: float, *, half_exponent: bool = False) -> Tensor:
    i = torch.arange(0, hd // 2).float() if half_exponent else torch.arange(0, hd, 2).float()
    return 1.0 / theta ** (i / hd)


def llama3_inv_freq(base: Tensor, rope: dict, *, all_divided: bool = False, blend: bool = True) -> Tensor:
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    L = rope["original_max_position_embeddings"]
    if all_divided:
        return base / factor
    wavelen = 2 * math.pi / base
    scaled = torch.where(wavelen > L / low, base / factor, base)
    if not blend:
        return scaled
    s = (L / wavelen - low) / (high - low)
    medium = (wavelen >= L / high) & (wavelen <= L / low)
    return torch.where(medium, (1 - s) * scaled / factor + s * scaled, scaled)


def cos_sin(inv: Tensor, position_ids: Tensor, dtype: torch.dtype, *, interleaved: bool = False,
            in_dtype: bool = False, positions_in_dtype: bool = False) -> tuple[Tensor, Tensor]:
    """in_dtype: the angles computed in dtype; positions_in_dtype: only the positions rounded to
    dtype (a bfloat16 position 1001 is 1000), the product in float32."""
    if in_dtype:
        angles = position_ids[..., None].to(dtype) * inv.to(dtype)
    elif positions_in_dtype:
        angles = position_ids[..., None].to(dtype).float() * inv
    else:
        angles = position_ids[..., None].float() * inv
    emb = angles.repeat_interleave(2, dim=-1) if interleaved else torch.cat([angles, angles], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def mlp(hf_mlp, x: Tensor, *, act_on_up: bool = False, gelu: bool = False, no_gate: bool = False) -> Tensor:
    act = torch.nn.functional.gelu if gelu else torch.nn.functional.silu
    gate, up = hf_mlp.gate_proj(x), hf_mlp.up_proj(x)
    if no_gate:
        return hf_mlp.down_proj(act(up))
    if act_on_up:
        return hf_mlp.down_proj(gate * act(up))
    return hf_mlp.down_proj(act(gate) * up)


def tiled(x: Tensor, n_rep: int) -> Tensor:
    return x.repeat(1, n_rep, 1, 1)


def attention(hf_attn, x: Tensor, cos: Tensor, sin: Tensor, keep: Tensor, *, rotate_v: bool = False,
              scale: float | None = None, qk_norm: str | None = "before", swap_norms: bool = False,
              norm_v: bool = False) -> Tensor:
    """transformers' attention computed by hand (keep: bool (B or 1, 1, T, S), True = attend),
    with one mistake at a time. qk_norm: "before" / "after" the rotation, or None (Qwen3 only)."""
    B, T, _ = x.shape
    hd = hf_attn.head_dim
    q = hf_attn.q_proj(x).view(B, T, -1, hd)
    k = hf_attn.k_proj(x).view(B, T, -1, hd)
    v = hf_attn.v_proj(x).view(B, T, -1, hd)
    norms = hasattr(hf_attn, "q_norm")
    qn, kn = (hf_attn.k_norm, hf_attn.q_norm) if swap_norms else (getattr(hf_attn, "q_norm", None),
                                                                  getattr(hf_attn, "k_norm", None))
    if norms and qk_norm == "before":
        q, k = qn(q), kn(k)
        if norm_v:
            v = kn(v)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    q, k = hf_llama.apply_rotary_pos_emb(q, k, cos, sin)
    if rotate_v:
        v = hf_llama.apply_rotary_pos_emb(v, v, cos, sin)[1]
    if norms and qk_norm == "after":
        q, k = qn(q), kn(k)
    n_rep = q.shape[1] // k.shape[1]
    k, v = hf_llama.repeat_kv(k, n_rep), hf_llama.repeat_kv(v, n_rep)
    scores = (q @ k.transpose(-1, -2)) * (hd**-0.5 if scale is None else scale)
    scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    pattern = scores.softmax(-1).masked_fill(~keep.any(-1, keepdim=True), 0.0)
    y = (pattern @ v).transpose(1, 2).reshape(B, T, -1)
    return hf_attn.o_proj(y)
