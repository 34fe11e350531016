"""The Llama family from scratch (Llama 2/3, Qwen3): your version.

Every function and method below that raises ``NotImplementedError`` is an exercise.
Replace the ``raise`` line with your code; the docstring above it says what goes in,
what comes out, and what usually goes wrong. The exercises, in order:

     1. RMSNorm
     2. rotate_half, apply_rotary_pos_emb (and the layout lesson: rotate_interleaved,
        interleaved_to_half)
     3. rope_frequencies, LlamaRotaryEmbedding
     4. LlamaMLP (SwiGLU)
     5. repeat_kv
     6. LlamaAttention (grouped-query attention, with the cache)
     7. QK-norm: the q_norm / k_norm lines of LlamaAttention (model_type "qwen3")
     8. LlamaDecoderLayer
     9. LlamaModel, LlamaForCausalLM
    10. from_hf_state_dict, to_hf_state_dict

Finish the GPT-2 part first: this file imports your GPT-2 ``Embedding``,
``attention_pattern``, ``causal_mask``, ``lm_loss`` and ``KVCache`` from
``mlab_tfs/gpt2/student.py``, so a bug there shows up here too.

Check your progress with

    mlab-tfs check llama                                 # progress table, first failure explained
    pytest --impl=student mlab_tfs/llama -x              # the same tests, plain pytest
    pytest --impl=student mlab_tfs/llama --exercise rotary   # one exercise

The tests compare each piece with transformers' Llama and Qwen3, outputs and gradients.

Rules: don't use ``nn.RMSNorm`` / ``F.rms_norm`` or ``F.scaled_dot_product_attention``; write
repeat_kv with ``expand`` and ``reshape``. ``nn.Linear``, ``nn.Parameter``, ``nn.ModuleList``,
einops, ``F.silu`` and plain torch ops are fine.

Module names must mirror transformers' (``model.layers.0.self_attn.q_proj``...): the
``__init__`` docstrings give them. That makes loading a checkpoint (exercise 10) a short
name map.

Shapes: B batch, T new tokens, P cached tokens, S = P + T keys, C = hidden_size,
nh = num_attention_heads, nkv = num_key_value_heads, n_rep = nh // nkv, hd = head_dim,
I = intermediate_size, V vocabulary.

The solution is in ``mlab_tfs/llama/solution.py``; look only after you have tried.
"""

from __future__ import annotations

import math  # noqa: F401  (imported for your code)

import torch
import torch.nn.functional as F  # noqa: F401
from einops import rearrange  # noqa: F401
from torch import nn

from mlab_tfs.activations import get_activation  # noqa: F401  (config.hidden_act -> the function)
from mlab_tfs.attention import check_attn_implementation, check_bool_mask  # noqa: F401  (given)
from mlab_tfs.checkpoints import StateDict, save_tied_weights_once  # noqa: F401  (given)
from mlab_tfs.gpt2.student import Embedding, KVCache, attention_pattern, causal_mask, lm_loss  # noqa: F401  (yours, GPT-2)
from mlab_tfs.hooks import HookPoint, capture  # noqa: F401  (given: hook points)
from mlab_tfs.inputs import (  # noqa: F401  (use them in LlamaModel.forward)
    check_attention_mask,
    check_cache_position,
    check_kv_cache,
    check_labels,
    check_position_ids,
    check_token_ids,
)
# Given, not exercises: the config, the hook-name rules, the init, the body of a checkpoint.
from mlab_tfs.llama.given import (  # noqa: F401  (given)
    LLAMA_HOOK_NAME_RULES, MAX_POSITION, LlamaConfig, LlamaPreTrainedModel, RMSNormRepr, body_state_dict,
    init_llama_weights,
)
from mlab_tfs.outputs import BaseModelOutput, CausalLMOutput, PastKeyValues  # noqa: F401

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


class RMSNorm(RMSNormRepr, nn.Module):
    """Scale the last dimension to unit root mean square, then by a learned weight. (Given:
    ``RMSNormRepr`` prints it as ``RMSNorm((C,), eps=...)`` from your ``weight`` and ``eps``.)"""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        """Create ``self.weight``, an ``nn.Parameter`` of ones, shape (hidden_size,) (no bias:
        RMSNorm has none), and store ``self.eps``. Remember ``super().__init__()`` first.

        Hook points: ``self.hook_scale = HookPoint()`` and ``self.hook_normalized = HookPoint()``.
        """
        raise NotImplementedError("Exercise 1 (RMSNorm): see mlab_tfs/llama/GUIDE.md#1-rmsnorm")

    def forward(self, x: Tensor) -> Tensor:  # (..., C) -> (..., C)
        """x: (..., C). Returns the same shape, as transformers' ``LlamaRMSNorm``:

            x32   = x.to(torch.float32)                                        # statistics in fp32
            scale = self.hook_scale(torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + eps))   # (..., 1)
            x_hat = self.hook_normalized(x32 / scale)                          # (..., C)
            return self.weight * x_hat.to(x.dtype)                             # cast back, then weight

        Pitfalls (the tests diagnose them): no mean is subtracted (that is layer norm); eps
        goes inside the square root, not added to it; the statistics are over the last
        dimension only; the cast back comes before the weight multiplies.
        """
        raise NotImplementedError("Exercise 1 (RMSNorm): see mlab_tfs/llama/GUIDE.md#1-rmsnorm")


def rotate_half(x: Tensor) -> Tensor:
    """(..., hd) -> (..., hd): split the last dimension in two halves x1 = x[..., :hd/2],
    x2 = x[..., hd/2:] and return cat(-x2, x1). Feature i is paired with i + hd/2 (the
    rotate-half layout of transformers' checkpoints); this is the pair's 90-degree turn.
    Not cat(x2, -x1): that turns the other way."""
    raise NotImplementedError("Exercise 2 (rotary embeddings): see mlab_tfs/llama/GUIDE.md#2-rotary-embeddings")


def rotate_interleaved(x: Tensor) -> Tensor:
    """(..., hd) -> (..., hd): the same turn in Meta's interleaved layout, where features
    (2j, 2j + 1) form a pair: (x_2j, x_2j+1) -> (-x_2j+1, x_2j). Not used by the model; it is
    the guide's layout lesson (with cos and sin repeated per pair, ``repeat_interleave(2)``,
    ``q * cos + rotate_interleaved(q) * sin`` is Meta's rotation)."""
    raise NotImplementedError("Exercise 2 (rotary embeddings): see mlab_tfs/llama/GUIDE.md#2-rotary-embeddings")


def interleaved_to_half(w: Tensor, n_heads: int) -> Tensor:
    """A q or k projection weight (n_heads * hd, C) in Meta's interleaved layout, its rows
    reordered for rotate-half: within each head, row 2j goes to j and row 2j + 1 to
    j + hd/2 (each head's rows (hd/2, 2) -> (2, hd/2): einops
    ``"(h j two) c -> (h two j) c"``). transformers' convert_llama_weights_to_hf.py
    ``permute`` does this to Meta's checkpoints. Returns the same shape."""
    raise NotImplementedError("Exercise 2 (rotary embeddings): see mlab_tfs/llama/GUIDE.md#2-rotary-embeddings")


def apply_rotary_pos_emb(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate queries and keys by their positions' angles, rotate-half layout.

    q: (B, nh, T, hd), k: (B, nkv, T, hd); cos, sin: (B or 1, T, hd) (LlamaRotaryEmbedding's,
    each angle in both halves). Add the head dimension to cos and sin (``cos[:, None]``) so
    they broadcast over the heads, and return

        (q * cos + rotate_half(q) * sin,  k * cos + rotate_half(k) * sin)

    shapes unchanged. Only q and k: the values are never rotated.
    """
    raise NotImplementedError("Exercise 2 (rotary embeddings): see mlab_tfs/llama/GUIDE.md#2-rotary-embeddings")


def rope_frequencies(config: LlamaConfig) -> Tensor:
    """inv_freq (hd/2,) float32, the angle in radians each pair turns per position.

    config.rope_parameters holds "rope_type" and "rope_theta" (and, for "llama3",
    "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings");
    hd is config.head_dim.

    "default": ``1 / theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd)``.
    "llama3": from those, with L = original_max_position_embeddings and wavelength
    2 pi / inv_freq: wavelength > L / low_freq_factor -> inv_freq / factor; wavelength <
    L / high_freq_factor -> unchanged; in between, (1 - s) * inv_freq / factor + s * inv_freq
    with s = (L / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor).
    """
    raise NotImplementedError("Exercise 3 (rotary frequencies): see mlab_tfs/llama/GUIDE.md#3-rotary-frequencies")


class LlamaRotaryEmbedding(nn.Module):
    """cos and sin of every position's angles (transformers' ``LlamaRotaryEmbedding``)."""

    def __init__(self, config: LlamaConfig):
        """``self.register_buffer("inv_freq", rope_frequencies(config), persistent=False)``:
        computed from the config, never saved or loaded. Remember ``super().__init__()``."""
        raise NotImplementedError("Exercise 3 (rotary frequencies): see mlab_tfs/llama/GUIDE.md#3-rotary-frequencies")

    def forward(self, x: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        """x: any tensor of the dtype and device wanted; position_ids (B or 1, T) long.
        Returns cos, sin: (B or 1, T, hd) in x's dtype.

        The angles ``position_ids[..., None].float() * inv_freq`` (B, T, hd/2), in float32
        whatever x's dtype, each written twice, ``cat(angles, angles)`` (the rotate-half
        layout: pair j is (j, j + hd/2)), then cos and sin cast to x.dtype.
        """
        raise NotImplementedError("Exercise 3 (rotary frequencies): see mlab_tfs/llama/GUIDE.md#3-rotary-frequencies")

    def _apply(self, fn, recurse: bool = True):
        # Given: keep the frequencies fp32 when the model is cast (.half(), .to(bf16)); move device only.
        inv_freq = self.inv_freq
        out = super()._apply(fn, recurse)
        self.inv_freq = inv_freq.to(device=self.inv_freq.device, dtype=torch.float32)
        return out


class LlamaMLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: LlamaConfig):
        """Create ``gate_proj`` and ``up_proj``, ``nn.Linear(C, I)``, and ``down_proj``,
        ``nn.Linear(I, C)``, each with ``bias=config.mlp_bias``; ``self.act =
        get_activation(config.hidden_act)`` ("silu").

        Hook points: ``hook_pre`` (the gate's output), ``hook_pre_linear`` (the up
        projection's), ``hook_post`` (their product after the activation), each (B, T, I).
        """
        raise NotImplementedError("Exercise 4 (SwiGLU MLP): see mlab_tfs/llama/GUIDE.md#4-swiglu-mlp")

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, C)
        """down_proj(hook_post(act(hook_pre(gate_proj(x))) * hook_pre_linear(up_proj(x)))).
        The activation is on the gate, not on the up projection."""
        raise NotImplementedError("Exercise 4 (SwiGLU MLP): see mlab_tfs/llama/GUIDE.md#4-swiglu-mlp")


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """(B, nkv, S, hd) -> (B, nkv * n_rep, S, hd): each key/value head repeated n_rep times
    in a row (kv0, kv0, kv1, kv1 for n_rep = 2), so that query head h reads kv head
    h // n_rep. With ``expand`` and ``reshape``: ``x[:, :, None].expand(B, nkv, n_rep, S,
    hd)``, then reshape. ``x.repeat(1, n_rep, 1, 1)`` tiles (kv0, kv1, kv0, kv1): wrong.
    n_rep == 1: return x itself."""
    raise NotImplementedError("Exercise 5 (repeating key/value heads): see "
                              "mlab_tfs/llama/GUIDE.md#5-repeating-keyvalue-heads")


class LlamaAttention(nn.Module):
    """Causal grouped-query self-attention with rotary positions (and Qwen3's QK-norm)."""

    def __init__(self, config: LlamaConfig, layer_idx: int = 0):
        """Store ``self.layer_idx``, ``self.n_head`` (nh), ``self.n_kv_head`` (nkv),
        ``self.head_dim`` (config.head_dim: it need not be C // nh), ``self.scale =
        head_dim ** -0.5`` and ``self.config``. Create, with ``bias=config.attention_bias``:
        ``q_proj`` nn.Linear(C, nh * hd), ``k_proj`` and ``v_proj`` nn.Linear(C, nkv * hd),
        ``o_proj`` nn.Linear(nh * hd, C); ``self.attn_dropout = nn.Dropout(config.attention_dropout)``.

        Exercise 7 (QK-norm): when ``config.model_type == "qwen3"``, also ``self.q_norm`` and
        ``self.k_norm``, each ``RMSNorm(hd, eps=config.rms_norm_eps)``. A Llama has neither.

        Hook points: ``hook_q``, ``hook_k``, ``hook_v``, ``hook_rot_q``, ``hook_rot_k``,
        ``hook_attn_scores``, ``hook_pattern``, ``hook_z``.
        """
        raise NotImplementedError("Exercise 6 (grouped-query attention): see "
                                  "mlab_tfs/llama/GUIDE.md#6-grouped-query-attention")

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        attention_mask: Tensor | None = None,
        past_key_values: KVCache | None = None,
        cache_position: Tensor | None = None,
    ) -> Tensor:
        """x: (B, T, C); cos, sin: (B or 1, T, hd) the new positions' rotations; attention_mask:
        bool (B or 1, 1, T, S), True = attend, or None for the causal mask alone (build it with
        your ``causal_mask``); past_key_values: the KVCache to read and update at
        ``self.layer_idx``; cache_position: (T,) its columns (static mode). Returns (B, T, C).

        1. ``check_bool_mask("LlamaAttention: attention_mask", attention_mask)`` (given);
        2. q (B, T, nh, hd), k and v (B, T, nkv, hd) from the projections; with QK-norm,
           ``q, k = self.q_norm(q), self.k_norm(k)`` here, before the rotation;
        3. ``hook_q``, ``hook_k``, ``hook_v``; rotate q and k (``apply_rotary_pos_emb``, heads
           first: (B, nh, T, hd)), never v; ``hook_rot_q``, ``hook_rot_k`` on (B, T, heads, hd);
        4. with a cache: ``k, v = past_key_values.update(self.layer_idx, k, v, cache_position)``
           (the rotated keys, nkv heads);
        5. ``repeat_kv`` k and v by n_rep = nh // nkv, then ``attention_pattern(q, k, mask,
           self.scale, self.hook_attn_scores)``, cast to v's dtype, ``hook_pattern``,
           ``attn_dropout``, times v;
        6. ``hook_z`` on (B, T, nh, hd), merge the heads (``"b t nh hd -> b t (nh hd)"``), ``o_proj``.
        """
        raise NotImplementedError("Exercise 6 (grouped-query attention): see "
                                  "mlab_tfs/llama/GUIDE.md#6-grouped-query-attention")


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block: x + attn(input_layernorm(x)), then x + mlp(post_attention_layernorm(x))."""

    def __init__(self, config: LlamaConfig, layer_idx: int = 0):
        """Create ``input_layernorm`` and ``post_attention_layernorm`` (RMSNorm(C,
        eps=config.rms_norm_eps)), ``self_attn = LlamaAttention(config, layer_idx)``,
        ``mlp = LlamaMLP(config)``, and the hook points ``hook_resid_pre``, ``hook_attn_out``,
        ``hook_resid_mid``, ``hook_mlp_out``, ``hook_resid_post``."""
        raise NotImplementedError("Exercise 8 (decoder layer): see mlab_tfs/llama/GUIDE.md#8-decoder-layer")

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        attention_mask: Tensor | None = None,
        past_key_values: KVCache | None = None,
        cache_position: Tensor | None = None,
    ) -> Tensor:
        """Same arguments as LlamaAttention.forward; x (B, T, C) -> (B, T, C):

            x = hook_resid_pre(x)
            x = hook_resid_mid(x + hook_attn_out(self_attn(input_layernorm(x), cos, sin, ...)))
            return hook_resid_post(x + hook_mlp_out(mlp(post_attention_layernorm(x))))
        """
        raise NotImplementedError("Exercise 8 (decoder layer): see mlab_tfs/llama/GUIDE.md#8-decoder-layer")


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


class LlamaModel(LlamaPreTrainedModel, nn.Module):
    """Token embedding, num_hidden_layers decoder layers, final RMSNorm."""

    # Given (from LlamaPreTrainedModel: hook names, run_with_cache, from_pretrained...).
    hf_to_ours = staticmethod(lambda state, config: body_state_dict(from_hf_state_dict(state, config)))
    ours_to_hf = staticmethod(lambda state, config: {k: v for k, v in state.items()})

    def __init__(self, config: LlamaConfig):
        """Store ``self.config`` and create:
        - ``embed_tokens``: your GPT-2 Embedding(vocab_size, C, padding_idx=config.pad_token_id);
        - ``hook_embed``: HookPoint();
        - ``layers``: nn.ModuleList of num_hidden_layers LlamaDecoderLayers (layer i gets layer_idx=i);
        - ``norm``: RMSNorm(C, eps=config.rms_norm_eps);
        - ``rotary_emb``: one LlamaRotaryEmbedding(config), shared by the layers.
        Last, ``init_llama_weights(self, config)`` (given).
        """
        raise NotImplementedError("Exercise 9 (model): see mlab_tfs/llama/GUIDE.md#9-model")

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
        """As your GPT2Model.forward, with Llama's pieces:

        - checks (given in mlab_tfs.inputs): ``check_token_ids("input_ids", ...)``;
          ``cache = KVCache.for_forward(past_key_values, use_cache, L)``; with a cache,
          ``P = check_kv_cache("past_key_values", cache, n_layer=L, batch=B,
          n_head=config.num_key_value_heads, head_dim=config.head_dim, device=...)``; a
          static cache or a given cache_position: ``check_cache_position(...)``;
        - position_ids default to ``P .. P + T - 1`` (1, T): they continue after the cache
          (a static cache: ``cache_position[None]``); given ones go through
          ``check_position_ids("position_ids", position_ids, (B, T), MAX_POSITION)``;
        - the mask: None (causal only) without attention_mask; with it, your
          ``causal_mask(T, P + T)`` and the checked padding mask, (B, 1, T, S); a static cache:
          ``cache.static_mask(cache_position, attention_mask)``;
        - ``x = hook_embed(embed_tokens(input_ids))``; ``cos, sin = rotary_emb(x, position_ids)``
          once; every layer ``x = layer(x, cos, sin, mask, cache, cache_position)``; ``norm``;
        - hidden_states (each layer's input, then norm's output) and attentions read with
          ``capture`` on the layers' ``hook_resid_pre`` / ``self_attn.hook_pattern``, as GPT-2.

        Returns BaseModelOutput(last_hidden_state (B, T, C), past_key_values (the cache if
        use_cache), hidden_states, attentions).
        """
        raise NotImplementedError("Exercise 9 (model): see mlab_tfs/llama/GUIDE.md#9-model")


def from_hf_state_dict(hf_state: StateDict, config: LlamaConfig) -> StateDict:
    """A transformers Llama / Qwen3 state dict (LlamaForCausalLM's, or LlamaModel's without the
    ``model.`` prefix) as your LlamaForCausalLM's: the same names (add ``model.`` to keys that
    start with neither ``model.`` nor ``lm_head.``), no transpose (nn.Linear weights), no q/k
    permutation (the files are rotate-half already); drop any ``rotary_emb.inv_freq`` (older
    checkpoints store it); a tied head (config.tie_word_embeddings) gets
    ``lm_head.weight`` = the embedding's tensor."""
    raise NotImplementedError("Exercise 10 (loading weights): see mlab_tfs/llama/GUIDE.md#10-loading-weights")


def to_hf_state_dict(state: StateDict, config: LlamaConfig) -> StateDict:
    """Your LlamaForCausalLM's state dict as transformers saves it: the same names, and
    ``lm_head.weight`` left out when the head is tied (transformers ties it back)."""
    raise NotImplementedError("Exercise 10 (loading weights): see mlab_tfs/llama/GUIDE.md#10-loading-weights")


class LlamaForCausalLM(LlamaPreTrainedModel, nn.Module):
    """LlamaModel with a language-modelling head, tied to the embedding when the config says so."""

    # Given: LlamaPreTrainedModel's from_pretrained / save_pretrained call these two.
    hf_to_ours = staticmethod(from_hf_state_dict)
    ours_to_hf = staticmethod(to_hf_state_dict)
    tied_weights = {"lm_head.weight": "model.embed_tokens.weight"}  # with tie_word_embeddings
    accepts_loss_kwargs = True  # tells transformers' Trainer to pass num_items_in_batch

    def __init__(self, config: LlamaConfig):
        """Store ``self.config``; ``self.model = LlamaModel(config)``; ``self.lm_head =
        nn.Linear(C, V, bias=False)``. Tied (config.tie_word_embeddings): ``self.lm_head.weight
        = self.model.embed_tokens.weight`` (one Parameter) and ``save_tied_weights_once(self,
        self.tied_weights)`` (given); untied: ``nn.init.normal_(self.lm_head.weight, 0.0,
        config.initializer_range)``."""
        raise NotImplementedError("Exercise 9 (model): see mlab_tfs/llama/GUIDE.md#9-model")

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
        """As LlamaModel.forward, plus logits = lm_head(last_hidden_state) (B, T, V) and, given
        labels (B, T) (``check_labels("labels", labels, (B, T), V)``), the loss of your GPT-2
        ``lm_loss(logits, labels, num_items_in_batch)``. Returns CausalLMOutput(loss, logits,
        past_key_values, hidden_states, attentions)."""
        raise NotImplementedError("Exercise 9 (model): see mlab_tfs/llama/GUIDE.md#9-model")
