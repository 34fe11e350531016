"""The Llama family from scratch: the solution (Llama 2/3 and Qwen3 checkpoints).

What changes from GPT-2 (Touvron et al. 2023, "LLaMA"; Qwen Team 2025, "Qwen3"): RMSNorm
instead of LayerNorm (Zhang & Sennrich 2019), rotary position embeddings applied to queries
and keys instead of a learned position table (Su et al. 2021, "RoFormer"), a gated SwiGLU
MLP (Shazeer 2020), grouped-query attention: fewer key/value heads than query heads
(Ainslie et al. 2023), and, in Qwen3, an RMSNorm of each query and key head (QK-norm).

Module names mirror transformers' ``LlamaForCausalLM`` / ``Qwen3ForCausalLM``
(``model.layers.0.self_attn.q_proj``...), so loading a checkpoint is the identity name map.
Hook points sit at TransformerLens's places under its names (``blocks.0.attn.hook_rot_q``...).
The KV cache is GPT-2's ``KVCache`` (the learner wrote its ``update`` in the GPT-2 part): it
holds num_key_value_heads heads per layer, before repeat_kv, which is what grouped-query
attention saves. The attention plumbing (sdpa, the zero-output rule for a query that sees
no key) is ``mlab_tfs.attention``, as in GPT-2.

Reference: ``transformers/models/llama/modeling_llama.py``, ``models/qwen3/modeling_qwen3.py``,
``modeling_rope_utils.py``.

Shapes: B batch, T new tokens, P cached tokens, S = P + T keys, C = hidden_size,
nh query heads, nkv key/value heads, hd = head_dim, I = intermediate_size, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mlab_tfs.activations import get_activation
from mlab_tfs.attention import check_attn_implementation, check_bool_mask, decode_attention, sdpa, uses_decode_attention
from mlab_tfs.checkpoints import StateDict, save_tied_weights_once
from mlab_tfs.fused import HAS_RMS_NORM, FusedOps
from mlab_tfs.gpt2.solution import Embedding, KVCache, attention_pattern, causal_mask, lm_loss
from mlab_tfs.hooks import HookPoint, capture
from mlab_tfs.inputs import (
    check_attention_mask,
    check_cache_position,
    check_devices,
    check_flag,
    check_kv_cache,
    check_labels,
    check_position_ids,
    check_token_ids,
)
from mlab_tfs.llama.given import (  # noqa: F401  (re-exported)
    LLAMA_HOOK_NAME_RULES, MAX_POSITION, LlamaConfig, LlamaPreTrainedModel, RMSNormRepr, body_state_dict,
    init_llama_weights,
)
from mlab_tfs.outputs import BaseModelOutput, CausalLMOutput, PastKeyValues

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


class RMSNorm(RMSNormRepr, FusedOps, nn.Module):
    """Scale the last dimension to unit root mean square, then by a learned weight (Zhang &
    Sennrich 2019, "Root Mean Square Layer Normalization"): no mean subtracted, no bias.

    y = weight * (x / sqrt(mean(x^2) + eps)), eps inside the square root. As transformers'
    ``LlamaRMSNorm``: the statistics in float32 whatever the input's dtype, the normalised
    x cast back to the input's dtype, *then* multiplied by the weight (so with bf16 input
    and fp32 weights the result is fp32, as transformers').

    Hook points (TransformerLens's ``RMSNormPre`` names): ``hook_scale`` (..., 1) =
    sqrt(mean(x^2) + eps) and ``hook_normalized`` (..., C) = x / scale, before the weight,
    both in float32.

    Fused kernel (``mlab_tfs.fused``): by default a call with float32 input and weight and no
    hook on hook_scale or hook_normalized runs as one ``F.rms_norm`` (torch 2.4 or newer), the
    same function (equal to transformers' to float rounding, tested 1e-6); the hand-written
    lines after it are the reference, and run otherwise (half precision keeps transformers'
    two roundings) or with ``fused_ops = False``.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps
        self.hook_scale = HookPoint()  # (..., 1)
        self.hook_normalized = HookPoint()  # (..., C)

    def forward(self, x: Tensor) -> Tensor:  # (..., C) -> (..., C)
        if (HAS_RMS_NORM and x.dtype == self.weight.dtype == torch.float32
                and self.may_fuse(self.hook_scale, self.hook_normalized)):
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        x32 = x.to(torch.float32)
        mean_square = x32.pow(2).mean(-1, keepdim=True)  # (..., 1); no mean subtracted
        if self.hook_scale.has_hooks:  # a hook may read or edit the scale itself
            x_hat = x32 / self.hook_scale(torch.sqrt(mean_square + self.eps))
        else:  # x * rsqrt, as transformers computes it: the same bits
            x_hat = x32 * torch.rsqrt(mean_square + self.eps)
        return self.weight * self.hook_normalized(x_hat).to(x.dtype)


def rotate_half(x: Tensor) -> Tensor:
    """(..., hd) -> (..., hd): the rotate-half layout's 90-degree turn. Dimension i is paired
    with i + hd/2: (x1, x2) -> (-x2, x1), where x1 is the first half and x2 the second
    (transformers' ``rotate_half``). Meta's original code pairs (2j, 2j + 1) instead: the
    interleaved layout (``rotate_interleaved``)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotate_interleaved(x: Tensor) -> Tensor:
    """(..., hd) -> (..., hd): the same turn in the interleaved layout of Meta's original
    Llama code (and of RoFormer), where dimensions (2j, 2j + 1) form a pair:
    (x_2j, x_2j+1) -> (-x_2j+1, x_2j). With cos and sin repeated per pair
    (``repeat_interleave(2)``) instead of per half, q * cos + rotate_interleaved(q) * sin is
    the interleaved rotary embedding. A checkpoint trained in one layout runs in the other
    only after permuting the rows of its q and k projections (``interleaved_to_half``)."""
    pairs = rearrange(x, "... (j two) -> ... j two", two=2)
    return rearrange(torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1), "... j two -> ... (j two)")


def interleaved_to_half(w: Tensor, n_heads: int) -> Tensor:
    """The rows of a q or k projection weight (n_heads * hd, C) reordered from the
    interleaved layout to rotate-half: within each head, the even rows (first of each pair)
    then the odd rows. What transformers' ``convert_llama_weights_to_hf.py`` ``permute`` does
    to Meta's checkpoints; with it, rotate-half attention on the permuted weights gives the
    interleaved attention's scores exactly (the scores are sums over pairs, and the
    permutation moves whole pairs)."""
    return rearrange(w, "(h j two) c -> (h two j) c", h=n_heads, two=2)


def apply_rotary_pos_emb(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate queries and keys by their positions' angles (Su et al. 2021), rotate-half layout.

    q: (B, nh, T, hd), k: (B, nkv, T, hd); cos, sin: (B or 1, T, hd) from LlamaRotaryEmbedding
    (each angle repeated in both halves). Returns (q * cos + rotate_half(q) * sin, the same
    for k), shapes unchanged. Each pair (i, i + hd/2) turns by angle position * inv_freq[i], so
    q_t . k_s depends on t - s only.
    """
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hd): the same for every head
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def rope_frequencies(config: LlamaConfig) -> Tensor:
    """inv_freq (hd/2,) float32: the rotation speed, in radians per position, of each pair.

    "default": theta^(-2i/hd) for i = 0 .. hd/2 - 1 (Su et al. 2021; theta = rope_theta).
    "llama3" (Llama 3.1's long-context scaling; transformers' ``_compute_llama3_parameters``):
    with L = original_max_position_embeddings and wavelength 2 pi / inv_freq, the pairs that
    turn slowly (wavelength > L / low_freq_factor) are slowed by ``factor``, the fast ones
    (wavelength < L / high_freq_factor) are kept, and those between are interpolated
    smoothly between the two.
    """
    rope = config.rope_parameters
    hd = config.head_dim
    inv_freq = 1.0 / (rope["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))  # (hd/2,)
    if rope["rope_type"] == "default":
        return inv_freq
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old_len = rope["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)  # 0 at the slow edge, 1 at the fast edge
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
    return torch.where(medium, smoothed, scaled)


class LlamaRotaryEmbedding(nn.Module):
    """cos and sin of every position's angles (transformers' ``LlamaRotaryEmbedding``).

    ``inv_freq`` (hd/2,) is a non-persistent buffer (not in checkpoints, as transformers'),
    kept in float32 even when the model is cast (``_apply``): angles position * inv_freq in
    half precision lose the low bits of large positions.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.register_buffer("inv_freq", rope_frequencies(config), persistent=False)

    def forward(self, x: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        """x: any tensor of the dtype and device wanted; position_ids (B or 1, T) long.
        Returns cos, sin: (B or 1, T, hd) in x's dtype, computed in float32."""
        freqs = position_ids[..., None].float() * self.inv_freq.to(x.device, torch.float32)  # (B, T, hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, hd): each angle for both halves of its pair
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def _apply(self, fn, recurse: bool = True):
        inv_freq = self.inv_freq
        out = super()._apply(fn, recurse)
        # Keep the frequencies fp32 (a .half() of the model must not round them); move device only.
        self.inv_freq = inv_freq.to(device=self.inv_freq.device, dtype=torch.float32)
        return out


class LlamaMLP(nn.Module):
    """SwiGLU feed-forward (Shazeer 2020, "GLU Variants Improve Transformer"):
    down(act(gate(x)) * up(x)), act = config.hidden_act (SiLU, LlamaConfig's and Qwen3Config's default).

    Hook points (TransformerLens's gated-MLP names): ``hook_pre`` (B, T, I) the gate's
    output before the activation, ``hook_pre_linear`` (B, T, I) the up projection,
    ``hook_post`` (B, T, I) their product, the down projection's input.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        C, inner, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(C, inner, bias=bias)
        self.up_proj = nn.Linear(C, inner, bias=bias)
        self.down_proj = nn.Linear(inner, C, bias=bias)
        self.act = get_activation(config.hidden_act)
        self.hook_pre, self.hook_pre_linear, self.hook_post = HookPoint(), HookPoint(), HookPoint()  # (B, T, I)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, C)
        gate = self.act(self.hook_pre(self.gate_proj(x)))
        return self.down_proj(self.hook_post(gate * self.hook_pre_linear(self.up_proj(x))))


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """(B, nkv, S, hd) -> (B, nkv * n_rep, S, hd): each key/value head repeated n_rep times
    in a row (heads kv0, kv0, kv1, kv1 for n_rep = 2), so query head h reads kv head
    h // n_rep, as transformers' ``repeat_kv`` (torch.repeat_interleave along dim 1)."""
    if n_rep == 1:
        return x
    B, nkv, S, hd = x.shape
    return x[:, :, None].expand(B, nkv, n_rep, S, hd).reshape(B, nkv * n_rep, S, hd)


def _kernel_reads_grouped_heads(q: Tensor) -> bool:
    """Whether LlamaAttention's maskless sdpa call passes unrepeated key/value heads
    (``enable_gqa``): on the CPU, and on a GPU in half precision (the flash kernel takes
    grouped heads; a float32 grouped call could leave the memory-efficient kernel for the
    math one, so there the heads are repeated first)."""
    return q.device.type == "cpu" or q.dtype in (torch.float16, torch.bfloat16)


class LlamaAttention(nn.Module):
    """Causal grouped-query self-attention with rotary positions (transformers'
    ``LlamaAttention``; with ``model_type`` "qwen3", ``Qwen3Attention``'s q_norm / k_norm: an
    RMSNorm over each head's hd dimensions of the queries and keys, before the rotation).

    The cache holds the nkv rotated key heads and the value heads (GPT-2's KVCache); they are
    repeated to nh heads (``repeat_kv``) only for the product with the queries (and not at all
    on the sdpa path without a mask, where the kernel reads them unrepeated: ``_sdpa``).

    Hook points (TransformerLens's names): ``hook_q`` (B, T, nh, hd), ``hook_k``, ``hook_v``
    (B, T, nkv, hd), the projections of the new positions (before QK-norm, as
    TransformerLens's ``use_qk_norm`` attention: abstract_attention.py calculate_qkv_matrices);
    ``hook_rot_q`` (B, T, nh, hd), ``hook_rot_k`` (B, T, nkv, hd) after the QK-norm and the rotation; ``hook_attn_scores`` and
    ``hook_pattern`` (B, nh, T, S); ``hook_z`` (B, T, nh, hd). A hook on the scores or the
    pattern runs the hand-written path for that call.
    """

    def __init__(self, config: LlamaConfig, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                                     config.head_dim)
        C, hd, bias = config.hidden_size, config.head_dim, config.attention_bias
        self.q_proj = nn.Linear(C, self.n_head * hd, bias=bias)
        self.k_proj = nn.Linear(C, self.n_kv_head * hd, bias=bias)
        self.v_proj = nn.Linear(C, self.n_kv_head * hd, bias=bias)
        self.o_proj = nn.Linear(self.n_head * hd, C, bias=bias)
        self.qk_norm = config.model_type == "qwen3"
        if self.qk_norm:
            self.q_norm = RMSNorm(hd, eps=config.rms_norm_eps)  # over one head's hd dims, shared by the heads
            self.k_norm = RMSNorm(hd, eps=config.rms_norm_eps)
        self.attn_dropout = nn.Dropout(config.attention_dropout)
        self.scale = hd**-0.5
        self.config = config  # attn_implementation is read at every forward
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_rot_q, self.hook_rot_k = HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()  # (B, nh, T, S)
        self.hook_z = HookPoint()  # (B, T, nh, hd)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        attention_mask: Tensor | None = None,
        past_key_values: KVCache | None = None,
        cache_position: Tensor | None = None,
    ) -> Tensor:
        """x: (B, T, C); cos, sin: (B or 1, T, hd) the new positions' rotations
        (LlamaRotaryEmbedding); attention_mask: bool (B or 1, 1, T, S), True = attend (causal
        and padding combined), or None for the causal mask alone; past_key_values: the KVCache
        this layer reads and updates at ``layer_idx``; cache_position (T,) its columns (static
        mode). Returns (B, T, C). TypeError for a mask that is not bool.
        """
        check_bool_mask("LlamaAttention: attention_mask", attention_mask)
        q = rearrange(self.q_proj(x), "b t (nh hd) -> b t nh hd", hd=self.head_dim)
        k = rearrange(self.k_proj(x), "b t (nkv hd) -> b t nkv hd", hd=self.head_dim)
        v = rearrange(self.v_proj(x), "b t (nkv hd) -> b t nkv hd", hd=self.head_dim)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)  # the projections, as TransformerLens's
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)  # (B, nh|nkv, T, hd)
        q = self.hook_rot_q(q.transpose(1, 2)).transpose(1, 2)
        k = self.hook_rot_k(k.transpose(1, 2)).transpose(1, 2)
        v = v.transpose(1, 2)  # (B, nkv, T, hd)
        # Under autocast the projections are half precision but the float32 rotations (and
        # QK-norm's float32 weight) promote q and k back to float32: one dtype for the cache.
        q, k = q.to(v.dtype), k.to(v.dtype)
        if past_key_values is not None:
            k, v = past_key_values.update(self.layer_idx, k, v, cache_position)  # (B, nkv, S, hd)
        n_rep = q.shape[1] // k.shape[1]  # query heads per key/value head
        path = check_attn_implementation(self.config.attn_implementation, "config.attn_implementation")
        fused = path == "sdpa" and not (self.hook_attn_scores.has_hooks or self.hook_pattern.has_hooks)
        if fused and uses_decode_attention(past_key_values, q, attention_mask, self.training):
            # The compiled decode step: the nkv cached heads are read as they are, not repeated.
            y = decode_attention(q, k, v, attention_mask, self.scale)
        elif fused:
            y = self._sdpa(q, k, v, attention_mask)  # repeats the heads only where it must
        else:
            k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, nh, S, hd)
            if attention_mask is None:
                attention_mask = causal_mask(q.shape[2], k.shape[2], q.device)[None, None]
            pattern = attention_pattern(q, k, attention_mask, self.scale, self.hook_attn_scores)
            pattern = self.hook_pattern(pattern.to(v.dtype))
            y = torch.matmul(self.attn_dropout(pattern), v)  # (B, nh, T, hd)
        z = self.hook_z(y.transpose(1, 2))  # (B, T, nh, hd)
        return self.o_proj(rearrange(z, "b t nh hd -> b t (nh hd)"))

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """The same attention through PyTorch's fused kernels (mlab_tfs.attention.sdpa).

        q: (B, nh, T, hd); k, v: (B, nkv, S, hd), not yet repeated. Without a mask (causal
        over the whole sequence, or one new query) the kernel reads each key/value head for
        its n_rep query heads itself (``enable_gqa``, the same numbers as repeat_kv, as
        transformers' sdpa path does when it has no mask), so the repeated copy of k and v
        is never made. With a mask the heads are repeated first: the fused kernels fall back
        to the math kernel for a masked grouped call (transformers' ``use_gqa_in_sdpa``). On
        a GPU only in half precision, where the flash kernel takes grouped heads; a float32
        grouped call there could leave the memory-efficient kernel for the math one.
        """
        dropout = self.attn_dropout.p if self.training else 0.0
        T, S = q.shape[2], k.shape[2]
        n_rep = q.shape[1] // k.shape[1]
        gqa = n_rep > 1 and _kernel_reads_grouped_heads(q)
        if mask is None and (T == S or T == 1):
            if n_rep > 1 and not gqa:  # a float32 grouped call on a GPU: the heads repeated, as with a mask
                k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
            if T == S:
                return sdpa(q, k, v, None, self.scale, dropout, is_causal=True, enable_gqa=gqa)
            return sdpa(q, k, v, None, self.scale, dropout, enable_gqa=gqa)  # T == 1
        if mask is None:
            mask = causal_mask(T, S, q.device)[None, None]
        return sdpa(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), mask, self.scale, dropout)


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block: x + attn(input_layernorm(x)), then x + mlp(post_attention_layernorm(x))
    (transformers' ``LlamaDecoderLayer``).

    Hook points, each (B, T, C): ``hook_resid_pre``, ``hook_attn_out``, ``hook_resid_mid``,
    ``hook_mlp_out``, ``hook_resid_post``, as GPT-2's blocks.
    """

    def __init__(self, config: LlamaConfig, layer_idx: int = 0):
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = LlamaAttention(config, layer_idx)
        self.hook_attn_out, self.hook_resid_mid = HookPoint(), HookPoint()
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = LlamaMLP(config)
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        attention_mask: Tensor | None = None,
        past_key_values: KVCache | None = None,
        cache_position: Tensor | None = None,
    ) -> Tensor:
        """Same arguments as LlamaAttention.forward; x (B, T, C) -> (B, T, C)."""
        x = self.hook_resid_pre(x)
        attn = self.self_attn(self.input_layernorm(x), cos, sin, attention_mask, past_key_values, cache_position)
        x = self.hook_resid_mid(x + self.hook_attn_out(attn))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.post_attention_layernorm(x))))


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


class LlamaModel(LlamaPreTrainedModel, nn.Module):
    """Token embedding, num_hidden_layers decoder layers, final RMSNorm (transformers'
    ``LlamaModel`` / ``Qwen3Model``). No position table: positions enter as rotations of the
    queries and keys, and any position may be used.

    Hook points (TransformerLens's names): ``hook_embed`` (B, T, C); ``blocks.{i}.*`` (the
    layer's, ``input_layernorm`` / ``post_attention_layernorm`` named ``ln1`` / ``ln2``,
    ``self_attn`` named ``attn``); ``ln_final.*``.
    """

    hf_to_ours = staticmethod(lambda state, config: body_state_dict(from_hf_state_dict(state, config)))
    ours_to_hf = staticmethod(lambda state, config: {k: v for k, v in state.items()})

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        # The padding row gets no gradient, as transformers' nn.Embedding(padding_idx=pad_token_id).
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.hook_embed = HookPoint()  # (B, T, C)
        self.layers = nn.ModuleList([LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)
        init_llama_weights(self, config)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: PastKeyValues | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        cache_position: Tensor | None = None,
    ) -> BaseModelOutput:
        """input_ids: (B, T); attention_mask: (B, P + T), 1 = real token (static cache: (B, L),
        L <= M, combined with the cache's key_mask); position_ids: (B, T) or (1, T), any
        non-negative ints (default: P .. P + T - 1, continuing after the cache, whatever the
        mask says, as transformers); past_key_values: None, a KVCache (updated in place) or a
        legacy tuple of (k, v) pairs each (B, nkv, P, hd); use_cache: return the cache;
        cache_position: (T,) long, the cache columns of the new tokens (required by a static
        cache).

        Returns last_hidden_state (B, T, C) and, on request, past_key_values (the KVCache),
        hidden_states (num_hidden_layers + 1 of (B, T, C): each layer's input, then norm's
        output, as transformers) and attentions (num_hidden_layers of (B, nh, T, S); asking
        for them runs the hand-written attention for this call).

        ValueError / TypeError naming the argument for a tensor on another device than the
        model's, ids outside the vocabulary, a flag
        (use_cache, output_attentions, output_hidden_states) that is neither a bool nor None
        (the default, False), a cache
        that does not fit the model or the batch, masks, positions or cache positions of the
        wrong shape or values.
        """
        cfg = self.config
        # Every tensor argument must already be on the model's device.
        check_devices(self.embed_tokens.weight.device, input_ids=input_ids, attention_mask=attention_mask,
                      position_ids=position_ids, cache_position=cache_position)
        check_token_ids("input_ids", input_ids, cfg.vocab_size)
        use_cache = check_flag("use_cache", use_cache)
        output_attentions = check_flag("output_attentions", output_attentions)
        output_hidden_states = check_flag("output_hidden_states", output_hidden_states)
        B, T = input_ids.shape
        cache = KVCache.for_forward(past_key_values, use_cache, cfg.num_hidden_layers)
        P = 0
        if cache is not None:
            P = check_kv_cache("past_key_values", cache, n_layer=cfg.num_hidden_layers, batch=B,
                               n_head=cfg.num_key_value_heads, head_dim=cfg.head_dim, device=input_ids.device)
        static = cache is not None and cache.is_static
        if cache_position is not None or static:
            cache_position = check_cache_position("cache_position", cache_position, T, cache, P)
        if position_ids is None:
            if static:
                position_ids = cache_position[None]  # (1, T)
            else:
                position_ids = torch.arange(P, P + T, device=input_ids.device)[None]  # (1, T)
        else:
            position_ids = check_position_ids("position_ids", position_ids, (B, T), MAX_POSITION)
            if position_ids.dim() == 1:
                position_ids = position_ids[None]

        keep = None  # None: causal only, left to the attention layers
        if static:
            keep = cache.static_mask(cache_position, attention_mask)  # (B, 1, T, M)
        elif attention_mask is not None:
            pad = check_attention_mask("attention_mask", attention_mask, (B, P + T))
            keep = causal_mask(T, P + T, device=input_ids.device)[None, None] & pad[:, None, None, :]  # (B, 1, T, S)

        with capture([b.hook_resid_pre for b in self.layers] if output_hidden_states else []) as hidden, \
                capture([b.self_attn.hook_pattern for b in self.layers] if output_attentions else []) as patterns:
            x = self.hook_embed(self.embed_tokens(input_ids))  # (B, T, C)
            cos, sin = self.rotary_emb(x, position_ids)  # (B or 1, T, hd)
            for layer in self.layers:
                x = layer(x, cos, sin, keep, cache, cache_position)
            x = self.norm(x)
        return BaseModelOutput(
            last_hidden_state=x,
            past_key_values=cache if use_cache else None,
            hidden_states=(*hidden, x) if output_hidden_states else None,
            attentions=tuple(patterns) if output_attentions else None,
        )


# ---------------------------------------------------------------------------------------
# transformers checkpoints
# ---------------------------------------------------------------------------------------


def from_hf_state_dict(hf_state: StateDict, config: LlamaConfig) -> StateDict:
    """A transformers Llama / Qwen3 state dict (``LlamaForCausalLM``'s, or ``LlamaModel``'s
    without the ``model.`` prefix) as LlamaForCausalLM's: the same names (nn.Linear weights,
    (out, in), need no transpose), the rotary ``inv_freq`` buffer of older checkpoints dropped
    (it is computed from the config), and a tied head pointing at the embedding."""
    ours: StateDict = {}
    for key, value in hf_state.items():
        if key.endswith("rotary_emb.inv_freq"):
            continue
        if not key.startswith(("model.", "lm_head.")):
            key = "model." + key
        ours[key] = value
    if config.tie_word_embeddings and "model.embed_tokens.weight" in ours:
        ours["lm_head.weight"] = ours["model.embed_tokens.weight"]
    return ours


def to_hf_state_dict(state: StateDict, config: LlamaConfig) -> StateDict:
    """LlamaForCausalLM's state dict in the layout transformers' LlamaForCausalLM /
    Qwen3ForCausalLM saves (a tied head left out: transformers ties it back)."""
    return {k: v for k, v in state.items() if not (k == "lm_head.weight" and config.tie_word_embeddings)}


class LlamaForCausalLM(LlamaPreTrainedModel, nn.Module):
    """LlamaModel with a language-modelling head, tied to the token embedding when
    ``tie_word_embeddings`` and separate otherwise
    (transformers' ``LlamaForCausalLM`` / ``Qwen3ForCausalLM``). Hook names as LlamaModel's."""

    hf_to_ours = staticmethod(from_hf_state_dict)
    ours_to_hf = staticmethod(to_hf_state_dict)
    tied_weights = {"lm_head.weight": "model.embed_tokens.weight"}  # with tie_word_embeddings
    accepts_loss_kwargs = True  # tells transformers' Trainer to pass num_items_in_batch

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight  # one Parameter, two uses
            save_tied_weights_once(self, self.tied_weights)
        else:
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=config.initializer_range)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: PastKeyValues | None = None,
        labels: Tensor | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        num_items_in_batch: Tensor | int | None = None,
        cache_position: Tensor | None = None,
    ) -> CausalLMOutput:
        """As LlamaModel.forward, plus logits (B, T, V) and, given labels (B, T), the mean
        next-token cross-entropy (logits at t predict labels at t + 1, -100 ignored; with
        num_items_in_batch from transformers' Trainer, the sum over that count)."""
        out = self.model(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=past_key_values,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            cache_position=cache_position,
        )
        logits = self.lm_head(out.last_hidden_state)  # (B, T, V)
        loss = None
        if labels is not None:
            check_devices(logits.device, labels=labels)
            labels = check_labels("labels", labels, tuple(input_ids.shape), self.config.vocab_size)
            loss = lm_loss(logits, labels, num_items_in_batch)
        return CausalLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values,
                              hidden_states=out.hidden_states, attentions=out.attentions)
