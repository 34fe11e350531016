"""GPT-2 from scratch: the solution.

Module names mirror Hugging Face's ``GPT2LMHeadModel`` (``transformer.h.0.attn.c_attn``...)
so that loading a checkpoint is a name map plus a list of weights to transpose. Hook points
(``mlab_tfs.hooks``) sit at TransformerLens's places under its names (``blocks.0.attn.hook_pattern``...):
the layers return tensors only, and ``output_attentions`` / ``output_hidden_states`` are read
through the hook points. One ``KVCache`` (dynamic or static) is what every attention layer
reads and writes, on every cached path (eager decoding, beam search, the compiled static step).

LayerNorm, Embedding, attention_pattern and causal_mask are the building blocks BERT and
DeBERTa reuse. What is given rather than an exercise (the config, the init, the cache's
bookkeeping) is in ``mlab_tfs.gpt2.given``.

Shapes: B batch, T new tokens, P cached tokens, S = P + T keys, C = n_embd,
nh heads, hs = C // nh head size, V vocabulary.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mlab_tfs.activations import gelu_new, get_activation  # noqa: F401  (gelu_new: re-exported)
from mlab_tfs.attention import (  # noqa: F401  (ATTN_IMPLEMENTATIONS, additive_mask: re-exported)
    ATTN_IMPLEMENTATIONS,
    additive_mask,
    check_attn_implementation,
    check_bool_mask,
    decode_attention,
    sdpa,
    sees_any_key,
    uses_decode_attention,
)
from mlab_tfs.checkpoints import StateDict, save_tied_weights_once
from mlab_tfs.fused import FusedOps, fused_activation
from mlab_tfs.gpt2.given import (  # noqa: F401  (re-exported)
    GPT2_HOOK_NAME_RULES, GPT2Config, GPT2PreTrainedModel, KVCacheBase, body_state_dict, init_gpt2_weights,
)
from mlab_tfs.hooks import HookPoint, capture
from mlab_tfs.inputs import (
    check_attention_mask,
    check_cache_position,
    check_kv_cache,
    check_labels,
    check_position_ids,
    check_token_ids,
)
from mlab_tfs.outputs import BaseModelOutput, CausalLMOutput, PastKeyValues

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


class LayerNorm(FusedOps, nn.LayerNorm):
    """Normalise the last dimension to mean 0, variance 1, then scale and shift (Ba et al.
    2016; transformers' GPT-2, BERT and DeBERTa use ``nn.LayerNorm``).

    nn.LayerNorm is the base only so that tools which find layer norms by type find this
    one (transformers' Trainer keeps them out of weight decay); its constructor makes
    ``weight`` (ones), ``bias`` (zeros) and ``eps``, and the forward is ours alone.

    Precision: statistics in float32 for float16 / bfloat16 input, in the input's dtype
    otherwise (float64 stays float64); the result is cast back to the input's dtype.

    Hook points (TransformerLens's ``LayerNormPre`` names): ``hook_scale`` (..., 1) =
    sqrt(var + eps), and ``hook_normalized`` (..., C) = (x - mean) / scale, *before* the
    weight and bias (TransformerLens's unfolded ``LayerNorm`` hooks after them). Both in
    the statistics' dtype.

    Fused kernel (``mlab_tfs.fused``): by default a call whose input has the weights' dtype,
    with no hook on hook_scale or hook_normalized, runs as one ``F.layer_norm`` (what
    transformers' ``nn.LayerNorm`` runs), the same function; the hand-written lines after it
    are the reference, and run otherwise or with ``fused_ops = False``.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5):
        super().__init__(normalized_shape, eps=eps)
        self.hook_scale = HookPoint()  # (..., 1)
        self.hook_normalized = HookPoint()  # (..., C)

    def forward(self, x: Tensor) -> Tensor:  # (..., C) -> (..., C)
        if x.dtype == self.weight.dtype and self.may_fuse(self.hook_scale, self.hook_normalized):
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mean = x32.mean(dim=-1, keepdim=True)
        var = (x32 - mean).pow(2).mean(dim=-1, keepdim=True)  # biased, as in the paper
        scale = self.hook_scale(torch.sqrt(var + self.eps))  # eps inside the sqrt
        x_hat = self.hook_normalized((x32 - mean) / scale)
        return (x_hat * self.weight + self.bias).to(x.dtype)


class Embedding(nn.Module):
    """A lookup table: row i of ``weight`` is the vector for id i.

    With ``padding_idx``, the row of the padding id gets no gradient (as torch's
    nn.Embedding(padding_idx=...), which transformers' BERT and DeBERTa use for their word
    embeddings).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.padding_idx = padding_idx
        self.weight = nn.Parameter(torch.randn(num_embeddings, embedding_dim))

    def forward(self, ids: Tensor) -> Tensor:  # (...) -> (..., D)
        out = self.weight[ids]
        if self.padding_idx is not None:
            # Same values, but no gradient flows back into the padding row.
            out = torch.where((ids == self.padding_idx)[..., None], out.detach(), out)
        return out


def attention_pattern(q: Tensor, k: Tensor, mask: Tensor | None, scale: float,
                      scores_hook: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Softmax attention probabilities (Vaswani et al. 2017, eq. 1).

    q: (B, nh, T, hs), k: (B, nh, S, hs), mask: bool broadcastable to (B, nh, T, S),
    True where query t may look at key s. Returns (B, nh, T, S): each row sums to 1,
    except the rows of queries that may see no key (left padding), which are all 0.
    scores_hook: called on the scaled, masked scores (B, nh, T, S) before the softmax and
    its result used instead (an attention layer passes its ``hook_attn_scores``), masked
    again: an edit of the scores cannot unmask a key (a later token, padding).

    Masked scores are filled with finfo.min, not -inf (a row of -inf is NaN) and not
    added to it (in float16 a score plus finfo.min may round to -inf). A row with no
    visible key would then be uniform over *all* keys, future ones included (transformers'
    eager path returns that row): it is zeroed instead, as transformers' default sdpa
    path does, so no output depends on a later token.
    """
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, nh, T, S)
    seen = None
    if mask is not None:
        seen = sees_any_key(mask)  # (B, 1, T, 1); checks that mask is bool
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    if scores_hook is not None:
        hooked = scores_hook(scores)
        if hooked is not scores and mask is not None:
            # Edited by a hook: what was masked stays masked, and stays at 0 in the pattern
            # even if the edit left a query no finite score (all -inf, below the masked finfo.min).
            hooked = hooked.masked_fill(~mask, torch.finfo(hooked.dtype).min)
            return torch.softmax(hooked, dim=-1).masked_fill(~mask, 0.0)
        scores = hooked
    pattern = torch.softmax(scores, dim=-1)
    if seen is None:
        return pattern
    return pattern.masked_fill(~seen, 0.0)  # zero rows: no future leak, no gradient


def causal_mask(q_len: int, k_len: int, device: torch.device | str | None = None) -> Tensor:
    """(q_len, k_len) bool, True where allowed.

    The q_len queries are the last q_len of the k_len positions (the first
    k_len - q_len are cached), so query i sits at position i + k_len - q_len and
    sees keys 0..that position.
    """
    if q_len > k_len:
        raise ValueError(f"causal_mask: q_len ({q_len}) must not exceed k_len ({k_len}); queries are the last keys")
    offset = k_len - q_len
    q_pos = torch.arange(q_len, device=device)[:, None] + offset
    k_pos = torch.arange(k_len, device=device)[None, :]
    return k_pos <= q_pos


class KVCache(KVCacheBase):
    """The keys and values of every layer, kept between forward passes, so that a new token
    attends to the earlier ones without recomputing them (transformers' ``DynamicCache``
    and ``StaticCache`` in one class; ``transformers/cache_utils.py``).

    ``KVCache(n_layer)`` is dynamic; ``KVCache.static(...)`` / ``KVCache.for_model(model,
    batch_size, max_len)`` static. The rest of the interface (``get_seq_length``,
    ``reorder_cache``, ``batch_repeat_interleave``, ``reset``, legacy tuples) is given in
    ``mlab_tfs.gpt2.given.KVCacheBase``.
    """

    def update(self, layer_idx: int, k: Tensor, v: Tensor, cache_position: Tensor | None = None
               ) -> tuple[Tensor, Tensor]:
        """Add layer ``layer_idx``'s new keys and values, each (B, nh, T, hs), and return
        all of that layer's (k, v) to attend to.

        Dynamic: appended after the cached ones along the sequence (dim 2); returns
        (B, nh, S + T, hs). Static: written in place into columns ``cache_position`` (T,)
        long of the buffers (cast to their dtype, under autocast); returns the whole (B, nh, M, hs)
        buffers (the mask hides unwritten columns).

        Arguments that do not fit the cache: ValueError / TypeError naming them
        (``check_update``, given).
        """
        cache_position = self.check_update(layer_idx, k, v, cache_position)
        if self.is_static:
            k_buf, v_buf = self.keys[layer_idx], self.values[layer_idx]
            k_buf[:, :, cache_position] = k.to(k_buf.dtype)  # in place: same address every step
            v_buf[:, :, cache_position] = v.to(v_buf.dtype)
            return k_buf, v_buf
        if self._keys[layer_idx] is not None:
            k = torch.cat([self._keys[layer_idx], k], dim=2)  # (B, nh, S + T, hs)
            v = torch.cat([self._values[layer_idx], v], dim=2)
        self._keys[layer_idx], self._values[layer_idx] = k, v
        return k, v


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention (Radford et al. 2019; transformers'
    ``models/gpt2/modeling_gpt2.py`` ``GPT2Attention``), reading and writing a KVCache.

    Hook points (TransformerLens's names and shapes): ``hook_q``, ``hook_k``, ``hook_v``
    (B, T, nh, hs), the new positions only (before the cache is updated);
    ``hook_attn_scores`` (B, nh, T, S) scaled and masked (masked entries finfo.min, where
    TransformerLens has -inf); ``hook_pattern`` (B, nh, T, S) after the softmax, before
    dropout (S: the P + T cached and new positions; over a static cache its M columns, the
    unwritten ones at 0); ``hook_z`` (B, T, nh, hs), the heads' outputs before they are
    merged. A hook on ``hook_attn_scores`` or ``hook_pattern`` runs the hand-written path for
    that call: the fused sdpa kernel never forms the pattern.
    """

    def __init__(self, config: GPT2Config, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx  # which of the cache's layers this one reads and writes
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_idx + 1)
        self.upcast = config.reorder_and_upcast_attn
        # The model's config object itself: attn_implementation is read at every forward,
        # so set_attn_implementation (or config.attn_implementation = ...) takes effect.
        self.config = config
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # (B, T, nh, hs)
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()  # (B, nh, T, S)
        self.hook_z = HookPoint()  # (B, T, nh, hs)

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        past_key_values: KVCache | None = None,
        cache_position: Tensor | None = None,
    ) -> Tensor:
        """x: (B, T, C); attention_mask: bool (B or 1, 1, T, S), True = attend (causal and
        padding combined), or None for the causal mask alone; past_key_values: the KVCache
        this layer reads and updates at ``layer_idx``, cache_position (T,) long its columns
        (static mode). Returns (B, T, C). TypeError for a mask that is not bool.
        """
        check_bool_mask("GPT2Attention: attention_mask", attention_mask)
        C = x.shape[-1]
        q, k, v = self.c_attn(x).split(C, dim=-1)
        q, k, v = (rearrange(t, "b t (nh hs) -> b t nh hs", nh=self.n_head) for t in (q, k, v))
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if past_key_values is not None:
            k, v = past_key_values.update(self.layer_idx, k, v, cache_position)  # (B, nh, S, hs)

        path = check_attn_implementation(self.config.attn_implementation, "config.attn_implementation")
        if path == "sdpa" and not (self.hook_attn_scores.has_hooks or self.hook_pattern.has_hooks):
            if uses_decode_attention(past_key_values, q, attention_mask, self.training):  # the compiled decode step
                y = decode_attention(q, k, v, attention_mask, self.scale)
            else:
                y = self._sdpa(q, k, v, attention_mask)
        else:
            if attention_mask is None:
                attention_mask = causal_mask(q.shape[2], k.shape[2], q.device)[None, None]
            if self.upcast:  # fp32 scores and softmax, for half-precision stability
                q, k = q.float(), k.float()
            pattern = attention_pattern(q, k, attention_mask, self.scale, self.hook_attn_scores).to(v.dtype)
            pattern = self.hook_pattern(pattern)
            y = torch.matmul(self.attn_dropout(pattern), v)  # (B, nh, T, hs)
        z = self.hook_z(y.transpose(1, 2))  # (B, T, nh, hs)
        return self.resid_dropout(self.c_proj(rearrange(z, "b t nh hs -> b t (nh hs)")))

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """The same attention through PyTorch's fused kernels (flash / memory-efficient /
        math), queries that see no key zeroed as in attention_pattern (mlab_tfs.attention.sdpa)."""
        dropout = self.attn_dropout.p if self.training else 0.0
        T, S = q.shape[2], k.shape[2]
        if mask is None:  # causal only
            if T == S:  # no cache: the fused kernels' own causal masking
                return sdpa(q, k, v, None, self.scale, dropout, is_causal=True)
            if T == 1:  # one new token sees the whole cache
                return sdpa(q, k, v, None, self.scale, dropout)
            mask = causal_mask(T, S, q.device)[None, None]
        return sdpa(q, k, v, mask, self.scale, dropout)


class GPT2MLP(FusedOps, nn.Module):
    """Position-wise feed-forward: C -> n_inner -> C, the activation named by
    ``config.activation_function`` (``mlab_tfs.activations``).

    Hook points: ``hook_pre`` (B, T, n_inner) before the activation, ``hook_post`` after it.

    Fused kernel (``mlab_tfs.fused``): by default, with no hook on hook_pre or hook_post,
    ``gelu_new`` runs as one ``F.gelu(approximate="tanh")`` on float32 / float64 input
    (``fused_activation``); ``self.act`` itself otherwise or with ``fused_ops = False``.
    """

    def __init__(self, config: GPT2Config):
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, inner)
        self.c_proj = nn.Linear(inner, config.n_embd)
        self.act = get_activation(config.activation_function)
        self.dropout = nn.Dropout(config.resid_pdrop)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # (B, T, n_inner)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, C)
        act = fused_activation(self.act) if self.may_fuse(self.hook_pre, self.hook_post) else self.act
        h = self.hook_post(act(self.hook_pre(self.c_fc(x))))
        return self.dropout(self.c_proj(h))


class GPT2Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).

    Hook points, each (B, T, C): ``hook_resid_pre`` (the input), ``hook_attn_out`` and
    ``hook_mlp_out`` (what each branch adds to the residual stream: after its output
    projection, bias and dropout), ``hook_resid_mid`` (between the branches) and
    ``hook_resid_post`` (the output).
    """

    def __init__(self, config: GPT2Config, layer_idx: int = 0):
        super().__init__()
        # Built in the order the forward reaches them, which is hook_dict's order.
        self.hook_resid_pre = HookPoint()
        self.ln_1 = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.hook_attn_out, self.hook_resid_mid = HookPoint(), HookPoint()
        self.ln_2 = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        past_key_values: KVCache | None = None,
        cache_position: Tensor | None = None,
    ) -> Tensor:
        """Same arguments as GPT2Attention.forward; x (B, T, C) -> (B, T, C)."""
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln_1(x), attention_mask, past_key_values,
                                                                 cache_position)))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln_2(x))))


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------

class GPT2Model(GPT2PreTrainedModel, nn.Module):
    """Token + position embeddings, n_layer blocks, final layer norm (transformers'
    ``GPT2Model``).

    Hook points (TransformerLens's names): ``hook_embed`` and ``hook_pos_embed`` (B, T, C),
    the token and position embeddings; ``blocks.{i}.*`` (GPT2Block, GPT2Attention, GPT2MLP,
    LayerNorm list theirs, ``ln_1`` / ``ln_2`` named ``ln1`` / ``ln2``); ``ln_final.*``.
    ``run_with_cache`` / ``run_with_hooks`` (mlab_tfs.hooks) reach them by those names.
    """

    # A GPT2Model checkpoint, or a GPT2LMHeadModel's body (its head left out), as transformers.
    hf_to_ours = staticmethod(lambda state, config: body_state_dict(from_hf_state_dict(state, config)))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config))

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.wte = Embedding(config.vocab_size, config.n_embd)
        self.wpe = Embedding(config.n_positions, config.n_embd)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()  # (B, T, C)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([GPT2Block(config, i) for i in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        init_gpt2_weights(self, config)

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
        L <= M, combined with the cache's key_mask); position_ids: (B, T) or (1, T);
        past_key_values: None, a KVCache (updated in place) or a legacy tuple of (k, v) pairs;
        use_cache: return the cache (a KVCache passed in is updated either way, as transformers'
        GPT-2 updates a Cache it is given with use_cache=False); cache_position: (T,) long, the cache columns of the new
        tokens (required by a static cache; for a dynamic one P .. P + T - 1).

        Returns last_hidden_state (B, T, C) and, on request, past_key_values (the KVCache),
        hidden_states (n_layer + 1 of (B, T, C): each block's input, then ln_f's output, as
        transformers) and attentions (n_layer of (B, nh, T, S), each block's hook_pattern;
        asking for them runs the hand-written attention for this call).

        ValueError / TypeError naming the argument for ids outside the vocabulary, a cache
        that does not fit the model or the batch, masks, positions or cache positions of the
        wrong shape, and more than n_positions positions.
        """
        cfg = self.config
        check_token_ids("input_ids", input_ids, cfg.vocab_size)
        B, T = input_ids.shape
        cache = KVCache.for_forward(past_key_values, use_cache, cfg.n_layer)
        P = 0
        if cache is not None:
            P = check_kv_cache("past_key_values", cache, n_layer=cfg.n_layer, batch=B, n_head=cfg.n_head,
                               head_dim=cfg.head_dim, device=input_ids.device)
        static = cache is not None and cache.is_static
        if static and P > cfg.n_positions:  # check_kv_cache returns a static cache's max_len
            raise ValueError(f"past_key_values is a static KVCache of max_len={P} columns, but the model has "
                             f"n_positions={cfg.n_positions}: build it with KVCache.for_model")
        if cache_position is not None or static:
            cache_position = check_cache_position("cache_position", cache_position, T, cache, P)
        if position_ids is None:
            if static:
                position_ids = cache_position[None]  # (1, T); < M <= n_positions
            else:
                if P + T > cfg.n_positions:
                    raise ValueError(
                        f"input_ids has {T} tokens after {P} cached ones: {P + T} positions, "
                        f"but the model has n_positions={cfg.n_positions}"
                    )
                # As in transformers: positions continue from the cache, whatever the mask says.
                position_ids = torch.arange(P, P + T, device=input_ids.device)[None]  # (1, T)
        else:
            position_ids = check_position_ids("position_ids", position_ids, (B, T), cfg.n_positions)

        # keep[b, 0, t, s]: may query t attend to key s? Causal, and not padding.
        # Without padding or a static cache, None: the attention layers apply the causal
        # mask themselves (and the fused kernels can use their built-in causal masking).
        keep = None
        if static:
            keep = cache.static_mask(cache_position, attention_mask)  # (B, 1, T, M)
        elif attention_mask is not None:
            pad = check_attention_mask("attention_mask", attention_mask, (B, P + T))
            keep = causal_mask(T, P + T, device=input_ids.device)[None, None] & pad[:, None, None, :]  # (B, 1, T, S)

        with capture([b.hook_resid_pre for b in self.h] if output_hidden_states else []) as hidden, \
                capture([b.attn.hook_pattern for b in self.h] if output_attentions else []) as patterns:
            tok = self.hook_embed(self.wte(input_ids))  # (B, T, C)
            # Positions shared by the batch, (1, T), made (B, T, C) as TransformerLens's hook sees them (a view).
            x = self.drop(tok + self.hook_pos_embed(self.wpe(position_ids).expand_as(tok)))
            for block in self.h:
                x = block(x, keep, cache, cache_position)  # (B, T, C)
            x = self.ln_f(x)
        return BaseModelOutput(
            last_hidden_state=x,
            past_key_values=cache if use_cache else None,
            # As in transformers, the last entry is after ln_f.
            hidden_states=(*hidden, x) if output_hidden_states else None,
            attentions=tuple(patterns) if output_attentions else None,
        )


def lm_loss(logits: Tensor, labels: Tensor, num_items_in_batch: Tensor | int | None = None) -> Tensor:
    """Mean next-token cross-entropy: logits at t predict labels at t + 1; -100 is ignored.

    logits: (B, T, V), labels: (B, T). Returns a scalar. With num_items_in_batch (from
    transformers' Trainer), the sum over this batch divided by that count instead.
    """
    shift_logits = logits[:, :-1].float()  # fp32 loss even for half-precision logits
    shift_labels = labels[:, 1:]
    flat = (shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1))
    if num_items_in_batch is None:
        return F.cross_entropy(*flat, ignore_index=-100)
    return F.cross_entropy(*flat, ignore_index=-100, reduction="sum") / num_items_in_batch


# ---------------------------------------------------------------------------------------
# Hugging Face checkpoints
# ---------------------------------------------------------------------------------------

# HF's GPT-2 uses Conv1D, whose weight is stored (in, out): the transpose of nn.Linear's.
TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Old checkpoints carry the causal mask as buffers; we build the mask on the fly.
IGNORED = (".attn.bias", ".attn.masked_bias")


def from_hf_state_dict(hf_state: StateDict, config: GPT2Config) -> StateDict:
    """A Hugging Face GPT-2 state dict (GPT2LMHeadModel's, or GPT2Model's without the
    ``transformer.`` prefix) as GPT2LMHeadModel's state dict."""
    ours: StateDict = {}
    for key, value in hf_state.items():
        if key.endswith(IGNORED):
            continue
        if not key.startswith(("transformer.", "lm_head.")):
            key = "transformer." + key
        if key.endswith(TRANSPOSED):
            value = value.t()
        ours[key] = value
    if config.tie_word_embeddings:
        # One tensor, two names: the head reads the token embedding.
        if "transformer.wte.weight" in ours:
            ours["lm_head.weight"] = ours["transformer.wte.weight"]
    return ours


def to_hf_state_dict(state: StateDict, config: GPT2Config) -> StateDict:
    """GPT2LMHeadModel's state dict in the layout transformers' GPT2LMHeadModel saves."""
    hf: StateDict = {}
    for key, value in state.items():
        if key == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: transformers recreates it from transformer.wte.weight
        hf[key] = value.t() if key.endswith(TRANSPOSED) else value
    return hf


class GPT2LMHeadModel(GPT2PreTrainedModel, nn.Module):
    """GPT2Model with a language-modelling head tied to the token embedding (transformers'
    ``GPT2LMHeadModel``). Hook names as GPT2Model's (the ``transformer.`` prefix dropped)."""

    hf_to_ours = staticmethod(from_hf_state_dict)
    ours_to_hf = staticmethod(to_hf_state_dict)
    tied_weights = {"lm_head.weight": "transformer.wte.weight"}  # with tie_word_embeddings
    accepts_loss_kwargs = True  # tells transformers' Trainer to pass num_items_in_batch

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # one Parameter, two uses
            # ...saved once, so that safetensors (and transformers' Trainer) can write it.
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
        """As GPT2Model.forward, plus logits (B, T, V) and, given labels (B, T), the loss.

        num_items_in_batch: transformers' Trainer passes the number of counted labels in the
        whole accumulated batch; the loss is then this micro-batch's sum over that number,
        so that gradient accumulation averages over tokens, not micro-batches.
        """
        out = self.transformer(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=past_key_values,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            cache_position=cache_position,
        )
        hidden = out.last_hidden_state  # (B, T, C)
        if hasattr(self.lm_head, "logits_for_loss"):  # a padded vocabulary (mlab_tfs.gpt2.fast.pad_vocab)
            # The loss reads the head's whole width, the padded columns -inf (they change nothing);
            # the logits returned are the vocabulary's columns only.
            loss_logits = self.lm_head.logits_for_loss(hidden)  # (B, T, padded V)
            logits = loss_logits[..., : self.config.vocab_size]  # (B, T, V), a view
        else:
            logits = loss_logits = self.lm_head(hidden)  # (B, T, V)
        loss = None
        if labels is not None:
            labels = check_labels("labels", labels, tuple(input_ids.shape), self.config.vocab_size)
            loss = lm_loss(loss_logits, labels, num_items_in_batch)
        return CausalLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
