"""GPT-2 from scratch: your version.

Every function and method below that raises ``NotImplementedError`` is an exercise.
Replace the ``raise`` line with your code; the docstring above it says what goes in,
what comes out, and what usually goes wrong. The exercises, in order:

     1. LayerNorm
     2. Embedding
     3. attention_pattern
     4. causal_mask
     5. GPT2Attention
     6. gelu_new
     7. GPT2MLP
     8. GPT2Block
     9. GPT2Model, lm_loss, GPT2LMHeadModel
    10. from_hf_state_dict, to_hf_state_dict
    11. the KV cache: KVCache.update, and passing the cache through the model

Work top to bottom: later pieces are built from earlier ones (the block uses your layer
norm, attention and MLP), so a bug in an early piece shows up again in later tests.
Each exercise has a section in ``mlab_tfs/gpt2/GUIDE.md``; each stub's error message
links to it.

Check your progress with

    mlab-tfs check gpt2                                # progress table, first failure explained
    pytest --impl=student mlab_tfs/gpt2 -x             # the same tests, plain pytest
    pytest --impl=student mlab_tfs/gpt2 --exercise layer_norm  # one exercise

The tests compare each piece with Hugging Face transformers' GPT-2, outputs and
gradients, to about 1e-5.

Rules: build the layers yourself. Don't use ``nn.MultiheadAttention``, ``F.layer_norm``
(or ``nn.LayerNorm``), ``F.scaled_dot_product_attention``, ``nn.Embedding`` or ``F.gelu``.
``nn.Linear``, ``nn.Parameter``, ``nn.Dropout``, ``nn.ModuleList``, einops and plain torch
ops (matmul, softmax, tanh, indexing, ``F.cross_entropy``...) are fine.

Module names must mirror Hugging Face's (``transformer.h.0.attn.c_attn``...): the
docstrings of the ``__init__`` methods give the names. That is what makes loading a real
checkpoint (exercise 10) a short name map.

Hook points (``HookPoint``, from mlab_tfs.hooks) are identity modules that name an
activation so that ``model.run_with_cache`` / ``run_with_hooks`` can read or replace it
(TransformerLens's convention; the guide's "Hook points" section). Each ``__init__``
docstring lists the ones to create, and each ``forward`` docstring says where to call
them: ``x = self.hook_name(x)``. The model's ``output_attentions`` and
``output_hidden_states`` are read through them, so the layers return tensors only.

Shapes: B batch, T new tokens, P cached tokens, S = P + T keys, C = n_embd,
nh heads, hs = C // nh head size, V vocabulary.

The solution is in ``mlab_tfs/gpt2/solution.py``; look only after you have tried.
"""

from __future__ import annotations

import math  # noqa: F401  (imported for your code)
from typing import Callable

import torch
import torch.nn.functional as F  # noqa: F401
from einops import rearrange  # noqa: F401
from torch import nn

from mlab_tfs.activations import get_activation  # noqa: F401  (the other activations, for GPT2MLP)
from mlab_tfs.checkpoints import StateDict
# Given, not exercises: the config, the hook-name rules, the cache's bookkeeping, the init.
from mlab_tfs.gpt2.given import (  # noqa: F401  (given)
    GPT2_HOOK_NAME_RULES, GPT2Config, GPT2PreTrainedModel, KVCacheBase, body_state_dict, init_gpt2_weights,
)
from mlab_tfs.hooks import HookPoint, capture  # noqa: F401  (given: hook points)
from mlab_tfs.inputs import (  # noqa: F401  (use them in GPT2Model.forward)
    check_attention_mask,
    check_cache_position,
    check_kv_cache,
    check_labels,
    check_position_ids,
    check_token_ids,
)
from mlab_tfs.outputs import BaseModelOutput, CausalLMOutput, PastKeyValues

Tensor = torch.Tensor

__all__ = [
    "GPT2Config",
    "KVCache",
    "LayerNorm",
    "Embedding",
    "attention_pattern",
    "causal_mask",
    "GPT2Attention",
    "gelu_new",
    "GPT2MLP",
    "GPT2Block",
    "GPT2Model",
    "lm_loss",
    "from_hf_state_dict",
    "to_hf_state_dict",
    "GPT2LMHeadModel",
]

# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """Normalise the last dimension to mean 0, variance 1, then scale and shift."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5):
        """Create the learnable parameters.

        normalized_shape: the size C of the last dimension.
        eps: added to the variance for numerical safety.

        Store ``self.eps`` and two ``nn.Parameter``s of shape (C,): ``self.weight`` (the
        gain, initialised to ones) and ``self.bias`` (the shift, initialised to zeros).
        These names are the ones in Hugging Face checkpoints (``ln_1.weight``...).
        Remember ``super().__init__()`` first.

        Hook points: ``self.hook_scale = HookPoint()`` and ``self.hook_normalized = HookPoint()``.
        """
        raise NotImplementedError("Exercise 1 (layer norm): see mlab_tfs/gpt2/GUIDE.md#1-layer-norm")

    def forward(self, x: Tensor) -> Tensor:  # (..., C) -> (..., C)
        """x: (..., C), any number of leading dimensions. Returns the same shape.

            y = (x - mean) / sqrt(var + eps) * weight + bias

        with mean and var taken over the last dimension only (keepdim=True so they
        broadcast back). Call the hook points on the way, TransformerLens's meanings:

            scale = self.hook_scale(torch.sqrt(var + eps))          # (..., 1)
            x_hat = self.hook_normalized((x - mean) / scale)         # (..., C), before weight and bias
            return x_hat * weight + bias

        Pitfalls (the tests diagnose both):
        - ``var`` is the *biased* variance, the mean of squared deviations (divide by C,
          not C - 1). ``torch.var`` defaults to the unbiased one; pass
          ``unbiased=False`` / ``correction=0`` or compute it by hand.
        - ``eps`` goes *inside* the square root: ``sqrt(var + eps)``, not ``std + eps``.

        - ``hook_normalized`` is taken *before* the weight and bias (as TransformerLens's
          ``LayerNormPre``), not on the output.

        Precision: compute the statistics in float32 (``x.float()``) for float16 / bfloat16
        input, in the input's own dtype otherwise (float64 stays float64), and cast the
        result back to ``x.dtype``: half-precision models stay stable, and BERT and
        DeBERTa, which reuse this class, get one precision rule.
        """
        raise NotImplementedError("Exercise 1 (layer norm): see mlab_tfs/gpt2/GUIDE.md#1-layer-norm")


class Embedding(nn.Module):
    """A lookup table: row i of ``weight`` is the vector for id i."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        """One ``nn.Parameter`` named ``weight`` of shape (num_embeddings, embedding_dim),
        initialised from a standard normal (GPT2Model's ``init_gpt2_weights`` re-draws it
        from N(0, initializer_range)), and
        ``self.padding_idx`` stored as given.

        padding_idx: GPT-2 passes None. BERT and DeBERTa reuse this class with their pad
        token's id: that row then gets *no gradient*, as in torch's
        ``nn.Embedding(padding_idx=...)``, so training never moves the padding vector.
        """
        raise NotImplementedError("Exercise 2 (embedding): see mlab_tfs/gpt2/GUIDE.md#2-embedding")

    def forward(self, ids: Tensor) -> Tensor:  # (...) -> (..., D)
        """ids: integer tensor of any shape (...). Returns (..., embedding_dim): the rows
        of ``weight`` picked by ``ids``.

        Hint: this is one line of indexing, and autograd handles the gradient (rows that
        appear twice accumulate). No one-hot matmul needed.

        With ``padding_idx`` set, positions holding that id must pass no gradient back to
        ``weight``: same values, but ``torch.where(is_pad[..., None], out.detach(), out)``.
        """
        raise NotImplementedError("Exercise 2 (embedding): see mlab_tfs/gpt2/GUIDE.md#2-embedding")


def attention_pattern(q: Tensor, k: Tensor, mask: Tensor | None, scale: float,
                      scores_hook: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Softmax attention probabilities (Vaswani et al. 2017, eq. 1).

    q: (B, nh, T, hs) queries. k: (B, nh, S, hs) keys.
    mask: None, or bool broadcastable to (B, nh, T, S); True where query t may look at
    key s. scale: multiplies the scores (1 / sqrt(hs) for GPT-2).
    scores_hook: None, or a function (an attention layer passes its ``hook_attn_scores``)
    called on the scaled, masked scores just before the softmax; use what it returns,
    masked again (an edit of the scores must not unmask a later key or padding).
    Returns (B, nh, T, S): every row (over s) sums to 1, except the row of a query that
    may see no key at all, which is all 0.

        scores  = q @ k^T * scale                              (B, nh, T, S)
        scores  = scores.masked_fill(~mask, finfo(dtype).min)   where a mask is given
        scores  = scores_hook(scores)                           where a hook is given
        scores  = scores.masked_fill(~mask, finfo(dtype).min)   again, where both are given
                  (then also zero the pattern's masked entries: an edit may leave a query
                  no finite score, which softmax would spread over the masked keys)
        pattern = softmax(scores over s)
        pattern = pattern.masked_fill(~mask.any(-1, keepdim=True), 0)

    Pitfalls (the tests diagnose them):
    - softmax over the *key* dimension, the last one (dim=-1): each query distributes
      its attention over the keys.
    - mask with ``torch.finfo(scores.dtype).min``, not ``-inf``: a query that may see no
      key (a left-padding position) gets a row of all -inf, whose softmax is NaN. The NaN
      does not stay there: from the next layer on that position's key and value are NaN,
      every query reads them (a weight of 0 times NaN is NaN in ``pattern @ v``), and the
      whole sequence's logits and loss are NaN.
    - *fill* masked scores (``masked_fill``), don't add finfo.min: in float16 a score
      of -16 or less plus finfo.min rounds to -inf, which is -inf masking again.
    - finfo.min alone leaves that padding query's row *uniform over all keys*, the
      later tokens included: its output then depends on the future, and in GPT-2 the
      last padding position's logits predict the first real token, so the future leaks
      into the loss. Zero the rows of queries that see no key (the last line above),
      as transformers' default (sdpa) path does; with ``masked_fill`` no gradient
      flows through them either.
    """
    raise NotImplementedError("Exercise 3 (attention pattern): see mlab_tfs/gpt2/GUIDE.md#3-attention-pattern")


def causal_mask(q_len: int, k_len: int, device: torch.device | str | None = None) -> Tensor:
    """The causal mask: (q_len, k_len) bool, True where query i may attend to key j.

    The q_len queries are the *last* q_len of the k_len positions; the first
    k_len - q_len keys come from a cache (exercise 11). So query i sits at position
    i + (k_len - q_len) and may see keys 0 .. that position, inclusive.

    Without a cache (q_len == k_len) this is the lower triangle, diagonal included:

        causal_mask(3, 3)        causal_mask(2, 4)
        [[T, F, F],              [[T, T, T, F],
         [T, T, F],               [T, T, T, T]]
         [T, T, T]]

    Hint: compare a column of query positions with a row of key positions
    (``torch.arange`` and broadcasting), or use ``torch.tril`` with a ``diagonal``
    offset. Create it on ``device``.
    """
    raise NotImplementedError("Exercise 4 (causal mask): see mlab_tfs/gpt2/GUIDE.md#4-causal-mask")


class KVCache(KVCacheBase):
    """The keys and values of every layer, kept between forward passes (exercise 11).

    Given (in ``mlab_tfs.gpt2.given.KVCacheBase``): ``KVCache(n_layer)`` makes a dynamic
    cache, whose ``self.keys[i]`` / ``self.values[i]`` are None until layer i first writes;
    ``KVCache.static(...)`` / ``KVCache.for_model(model, batch_size, max_len)`` make a static
    one (``self.is_static``), whose ``self.keys[i]`` / ``self.values[i]`` are preallocated
    (B, nh, M, hs) buffers and ``self.key_mask`` (B, M) says which columns are real tokens;
    ``get_seq_length``, ``reset``, ``reorder_cache``, ``batch_repeat_interleave``,
    ``for_forward``, ``static_mask`` and the legacy-tuple conversions. You write ``update``,
    which every attention layer calls.
    """

    def update(self, layer_idx: int, k: Tensor, v: Tensor, cache_position: Tensor | None = None
               ) -> tuple[Tensor, Tensor]:
        """Add layer ``layer_idx``'s new keys and values and return all of that layer's (k, v).

        k, v: (B, nh, T, hs), the T new positions. cache_position: (T,) long, the columns
        they go to (static mode only; the dynamic mode appends).

        Start with the given checks, ``cache_position = self.check_update(layer_idx, k, v,
        cache_position)``: arguments that do not fit the cache are then an error naming them,
        before anything is written.

        Dynamic (``not self.is_static``): if the layer holds nothing yet (``self.keys[layer_idx]
        is None``) store k and v; else concatenate the cached ones *in front of* the new ones
        along the sequence dimension (dim 2) and store the result. In both cases write it to
        ``self.keys[layer_idx]`` / ``self.values[layer_idx]`` (lists) and return it: (B, nh, S, hs).

        Static: write k and v in place into the layer's buffers at those columns,
        ``buf[:, :, cache_position] = k.to(buf.dtype)``, and return the whole buffers
        (B, nh, M, hs). In place, not a new tensor: a compiled decode step (a CUDA graph)
        reads the buffers at a fixed address. The model's mask hides the columns not yet
        written.

        Pitfall: ``torch.cat([new, cached])`` runs and gives wrong logits: the cached keys
        are the earlier positions and come first.
        """
        raise NotImplementedError("Exercise 11 (kv cache): see mlab_tfs/gpt2/GUIDE.md#11-kv-cache")


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention, reading and writing a KVCache."""

    def __init__(self, config: GPT2Config, layer_idx: int = 0):
        """Layers and constants of one attention layer.

        Create (the names matter for loading checkpoints):
        - ``self.c_attn = nn.Linear(C, 3 * C)``: q, k and v for all heads in one matmul;
        - ``self.c_proj = nn.Linear(C, C)``: the output projection;
        - ``self.attn_dropout`` (p = config.attn_pdrop, on the pattern) and
          ``self.resid_dropout`` (p = config.resid_pdrop, on the output): ``nn.Dropout``;
        - ``self.n_head``, ``self.head_dim`` (``config.head_dim`` = C // nh) and
          ``self.layer_idx = layer_idx`` (which of the cache's layers is this one's);
        - the score scale: ``head_dim ** -0.5`` if ``config.scale_attn_weights`` else 1.0,
          further divided by ``layer_idx + 1`` if ``config.scale_attn_by_inverse_layer_idx``;
        - hook points, each ``HookPoint()``: ``self.hook_q``, ``self.hook_k``, ``self.hook_v``,
          ``self.hook_attn_scores``, ``self.hook_pattern``, ``self.hook_z``.

        ``config.reorder_and_upcast_attn`` (compute the pattern in float32) only matters
        in half precision. ``config.attn_implementation`` says "sdpa" by default (the
        solution's path through ``F.scaled_dot_product_attention``): your version may
        ignore it and always run the hand-written path, which computes the same function.
        """
        raise NotImplementedError("Exercise 5 (attention): see mlab_tfs/gpt2/GUIDE.md#5-attention")

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        past_key_values: KVCache | None = None,
        cache_position: Tensor | None = None,
    ) -> Tensor:
        """Attention of T new tokens over themselves (and over the cached ones).

        x: (B, T, C), the (layer-normed) residual stream.
        attention_mask: bool (B or 1, 1, T, S), True = may attend. GPT2Model builds it,
            causal and padding combined; pass it straight to ``attention_pattern``.
            None means the causal mask alone: build it with ``causal_mask(T, S)``
            (this layer is always causal).
        past_key_values, cache_position: exercise 11. When a KVCache is given, after
            computing this call's k and v (B, nh, T, hs), replace them by
            ``past_key_values.update(self.layer_idx, k, v, cache_position)``: the keys and
            values of every position so far, (B, nh, S, hs).

        Returns the output (B, T, C): one tensor.

        Steps, with the hook points in their places (TransformerLens's shapes):
        c_attn -> split into q, k, v (each (B, T, C)) -> split heads (B, T, nh, hs) ->
        ``q = self.hook_q(q)`` (and k, v) -> move heads forward (B, nh, T, hs) -> the cache ->
        ``attention_pattern(q, k, mask, scale, self.hook_attn_scores)`` ->
        ``self.hook_pattern(pattern)`` -> attn_dropout -> pattern @ v (B, nh, T, hs) ->
        back to (B, T, nh, hs) -> ``self.hook_z(z)`` -> merge heads (B, T, C) -> c_proj ->
        resid_dropout.

        Pitfalls (the tests diagnose them):
        - c_attn's output is [q | k | v] along the last dim, each C wide; *within* each,
          head h owns columns h*hs .. (h+1)*hs. Split q/k/v first, then heads:
          ``rearrange(t, "b t (nh hs) -> b t nh hs", nh=...)``. Splitting in another
          order runs fine and gives wrong numbers.
        - merge heads with the inverse rearrange, not a bare ``.view`` of a
          (B, nh, T, hs) tensor (that interleaves tokens and heads).
        - ``hook_pattern`` sees the pattern after the softmax and *before* dropout;
          ``hook_q/k/v`` see this call's new positions only, before the cache update.

        KV cache (exercise 11): you may leave it for later, e.g. begin with
        ``if past_key_values is not None: raise NotImplementedError(
        "Exercise 11 (kv cache): see mlab_tfs/gpt2/GUIDE.md#11-kv-cache")``.
        """
        raise NotImplementedError("Exercise 5 (attention): see mlab_tfs/gpt2/GUIDE.md#5-attention")


def gelu_new(x: Tensor) -> Tensor:
    """GELU with the tanh approximation (Hendrycks & Gimpel 2016), as GPT-2 uses.

    x: any shape. Returns the same shape:

        0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))

    Pitfall: the exact GELU, x * Phi(x) with erf (what ``F.gelu`` computes by default),
    differs from this by up to about 5e-4 (4.7e-4, near |x| = 2.7), far outside the test's
    1e-6. ``F.gelu(x, approximate="tanh")`` is this same function, but the exercise is to
    write it (the test refuses ``F.gelu``).
    """
    raise NotImplementedError("Exercise 6 (gelu): see mlab_tfs/gpt2/GUIDE.md#6-gelu")


class GPT2MLP(nn.Module):
    """Position-wise feed-forward: C -> n_inner -> C."""

    def __init__(self, config: GPT2Config):
        """Create ``self.c_fc = nn.Linear(C, inner)``, ``self.c_proj = nn.Linear(inner, C)``,
        ``self.dropout = nn.Dropout(config.resid_pdrop)`` and the hook points
        ``self.hook_pre = HookPoint()`` and ``self.hook_post = HookPoint()``.

        inner = ``config.n_inner``, or 4 * C when that is None.

        The activation is named by ``config.activation_function``; GPT-2 checkpoints
        say "gelu_new" (some say "gelu_pytorch_tanh", the same function). Take it from the
        given table with your own GELU in it:
        ``self.act = get_activation(config.activation_function, own={"gelu_new": gelu_new})``
        (every alias of gelu_new then runs yours; the other names get the table's function).
        """
        raise NotImplementedError("Exercise 7 (mlp): see mlab_tfs/gpt2/GUIDE.md#7-mlp")

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, C)
        """x: (B, T, C). Returns (B, T, C): c_fc, ``hook_pre``, activation, ``hook_post``,
        c_proj, dropout. (``hook_pre`` is the input of the activation, (B, T, inner);
        ``hook_post`` its output.)"""
        raise NotImplementedError("Exercise 7 (mlp): see mlab_tfs/gpt2/GUIDE.md#7-mlp")


class GPT2Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config, layer_idx: int = 0):
        """Create ``ln_1``, ``attn`` (GPT2Attention, given layer_idx), ``ln_2`` and ``mlp``
        (GPT2MLP). Both layer norms use ``eps=config.layer_norm_epsilon``.

        Hook points, each ``HookPoint()``: ``hook_resid_pre``, ``hook_attn_out``,
        ``hook_resid_mid``, ``hook_mlp_out``, ``hook_resid_post``. Create them in the order
        the forward uses them (hook_resid_pre, ln_1, attn, hook_attn_out, hook_resid_mid,
        ln_2, mlp, hook_mlp_out, hook_resid_post): ``model.hook_dict`` lists them in that order.
        """
        raise NotImplementedError("Exercise 8 (block): see mlab_tfs/gpt2/GUIDE.md#8-block")

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        past_key_values: KVCache | None = None,
        cache_position: Tensor | None = None,
    ) -> Tensor:
        """Same arguments as GPT2Attention.forward (pass the mask and the cache on to it);
        x is the residual stream (B, T, C). Returns x after the block, (B, T, C):

            x = self.hook_resid_pre(x)
            x = self.hook_resid_mid(x + self.hook_attn_out(attn(ln_1(x), ...)))
            x = self.hook_resid_post(x + self.hook_mlp_out(mlp(ln_2(x))))

        ``hook_attn_out`` / ``hook_mlp_out`` are what each branch adds to the residual stream.

        Pitfall: GPT-2 is *pre*-LN. The layer norm is applied to the input of each
        branch, and the un-normed x is what the branch output is added to:
        ``x = x + attn(ln_1(x))``, not ``x = ln_1(x + attn(x))`` (the original
        Transformer's post-LN).
        """
        raise NotImplementedError("Exercise 8 (block): see mlab_tfs/gpt2/GUIDE.md#8-block")


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------

class GPT2Model(GPT2PreTrainedModel, nn.Module):
    """Token + position embeddings, n_layer blocks, final layer norm."""

    # Given (from GPT2PreTrainedModel: hook names, run_with_cache, run_with_hooks, hook_dict).
    # A GPT2Model checkpoint, or a GPT2LMHeadModel's body (its head left out), as transformers.
    hf_to_ours = staticmethod(lambda state, config: body_state_dict(from_hf_state_dict(state, config)))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config))

    def __init__(self, config: GPT2Config):
        """Store ``self.config`` and create:
        - ``wte``: Embedding(vocab_size, C), the token embedding;
        - ``wpe``: Embedding(n_positions, C), the learned position embedding;
        - ``hook_embed`` and ``hook_pos_embed``: HookPoint()s, for the two embeddings;
        - ``drop``: nn.Dropout(config.embd_pdrop);
        - ``h``: nn.ModuleList of n_layer GPT2Blocks (block i gets layer_idx=i);
        - ``ln_f``: the final LayerNorm (eps=config.layer_norm_epsilon).

        Last, initialise as GPT-2 does with the given ``init_gpt2_weights(self, config)``:
        N(0, initializer_range) weights, zero biases, and every ``c_proj.weight`` drawn
        with std initializer_range / sqrt(2 * n_layer): each block adds two branches to
        the residual stream, and at initialisation this keeps the variance of their sum
        from growing with depth (Radford et al. 2019, section 2.3).
        """
        raise NotImplementedError("Exercise 9 (model): see mlab_tfs/gpt2/GUIDE.md#9-model")

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
        """The transformer without its head.

        input_ids: (B, T) token ids.
        attention_mask: None or (B, P + T), 1 = real token, 0 = padding; it covers the
            cached tokens and the new ones.
        position_ids: None or (B, T) / (1, T) / (T,): which row of wpe each new token gets.
        past_key_values, use_cache, cache_position: exercise 11 (KV cache).
        output_attentions, output_hidden_states: collect those too (below).

        Returns ``BaseModelOutput(last_hidden_state=..., past_key_values=...,
        hidden_states=..., attentions=...)`` (from mlab_tfs.outputs) with
        - last_hidden_state: (B, T, C), after ln_f;
        - past_key_values: the KVCache if use_cache, else None;
        - hidden_states: if asked, n_layer + 1 tensors (B, T, C): the input of each block
          (its ``hook_resid_pre``), then the output of ln_f (not of the last block), as
          transformers returns them;
        - attentions: if asked, n_layer patterns (B, nh, T, S): each block's ``attn.hook_pattern``.

        Gather the last two through the hook points with the given ``capture``: inside
        ``with capture(points) as values:`` the list ``values`` receives what passes through
        each point (pass ``[]`` when not asked), e.g.

            with capture([b.attn.hook_pattern for b in self.h] if output_attentions else []) as patterns:
                ... embeddings, blocks, ln_f ...

        Start with the given input checks, so bad input fails with a clear message:

            cfg = self.config
            check_token_ids("input_ids", input_ids, cfg.vocab_size)
            B, T = input_ids.shape
            P = 0  # exercise 11 replaces this line
            # when position_ids is given (returns it as (B or 1, T)):
            position_ids = check_position_ids("position_ids", position_ids, (B, T), cfg.n_positions)
            # when attention_mask is given (returns it as bool (B, P + T)):
            pad = check_attention_mask("attention_mask", attention_mask, (B, P + T))

        When position_ids is None, use positions P .. P + T - 1 for every row, as
        transformers does; if P + T > n_positions raise a ValueError whose message names
        n_positions. The mask does not change these positions: left-padded callers pass
        their own position_ids (see the guide's Pitfalls).

        Then: combine ``causal_mask(T, P + T)`` with the padding mask into one bool mask
        (B or 1, 1, T, S) (padding masks *keys*: index it as ``pad[:, None, None, :]``),
        embed (``hook_embed(wte(ids)) + hook_pos_embed(wpe(positions))``, then drop; both
        hook points see (B, T, C): ``.expand_as`` the (1, T, C) lookup of shared positions), run
        the blocks, apply ln_f.

        KV cache (exercise 11): you may leave it for later, e.g. with
        ``if past_key_values is not None or use_cache: raise NotImplementedError(
        "Exercise 11 (kv cache): see mlab_tfs/gpt2/GUIDE.md#11-kv-cache")``. When you get
        there (the guide's section 11 walks through it):

            cache = KVCache.for_forward(past_key_values, use_cache, cfg.n_layer)  # or None
            if cache is not None:
                P = check_kv_cache("past_key_values", cache, n_layer=cfg.n_layer, batch=B,
                                   n_head=cfg.n_head, head_dim=cfg.head_dim, device=input_ids.device)
            if cache_position is not None or (cache is not None and cache.is_static):
                cache_position = check_cache_position("cache_position", cache_position, T, cache, P)

        pass ``cache`` and ``cache_position`` to every block, and return ``cache`` as
        past_key_values when use_cache. A *static* cache (``cache.is_static``) brings its
        own mask and positions: the mask is ``cache.static_mask(cache_position,
        attention_mask)`` (B, 1, T, M) and, when position_ids is None, the positions are
        ``cache_position[None]``.
        """
        raise NotImplementedError("Exercise 9 (model): see mlab_tfs/gpt2/GUIDE.md#9-model")


def lm_loss(logits: Tensor, labels: Tensor, num_items_in_batch: Tensor | int | None = None) -> Tensor:
    """Mean next-token cross-entropy.

    logits: (B, T, V). labels: (B, T) token ids, -100 where no loss is wanted.
    Returns a scalar: the mean over counted positions of -log p(labels[t + 1] | logits[t]).
    num_items_in_batch: when given (transformers' Trainer does), return the *sum* over
    counted positions divided by it instead (``reduction="sum"``).

    The logits at position t predict the token at t + 1, so drop the last logit and
    the first label before ``F.cross_entropy`` (flatten to (N, V) and (N,);
    ``ignore_index=-100``). The labels are the input ids themselves (plus -100s), not
    pre-shifted.

    Pitfalls: forgetting the shift (the loss then scores each position on its own
    token, which it can see); averaging over all positions instead of the counted ones. Computing it on
    ``logits.float()`` keeps half-precision training sane.
    """
    raise NotImplementedError("Exercise 9 (model): see mlab_tfs/gpt2/GUIDE.md#9-model")


# ---------------------------------------------------------------------------------------
# Hugging Face checkpoints
# ---------------------------------------------------------------------------------------


def from_hf_state_dict(hf_state: StateDict, config: GPT2Config) -> StateDict:
    """A Hugging Face GPT-2 state dict as GPT2LMHeadModel's state dict.

    hf_state: name -> tensor, as read from a checkpoint: GPT2LMHeadModel's
    (``transformer.wte.weight``, ...) or GPT2Model's (the same without ``transformer.``).
    Returns name -> tensor ready for ``GPT2LMHeadModel.load_state_dict(strict=True)``.

    Your module names already mirror Hugging Face's, so this is mostly a pass-through.
    What is different:
    - HF's GPT-2 uses ``Conv1D`` layers whose weight is (in, out), the transpose of
      nn.Linear's (out, in): transpose every ``attn.c_attn.weight``,
      ``attn.c_proj.weight``, ``mlp.c_fc.weight`` and ``mlp.c_proj.weight``
      (not the biases, not the embeddings).
    - Old checkpoints carry the causal mask as buffers ``h.<i>.attn.bias`` and
      ``h.<i>.attn.masked_bias``: drop them (careful: ``attn.c_attn.bias`` is a real
      parameter; match the key's end exactly).
    - Keys without ``transformer.`` or ``lm_head.`` need the ``transformer.`` prefix.
    - Tied head: with ``config.tie_word_embeddings``, checkpoints may store the
      embedding once; set ``lm_head.weight`` to the ``transformer.wte.weight`` tensor.

    Pitfall: transposing by shape (``if w.shape[0] != w.shape[1]``) misses square
    weights such as ``attn.c_proj.weight`` (C, C); go by name.
    """
    raise NotImplementedError("Exercise 10 (loading): see mlab_tfs/gpt2/GUIDE.md#10-loading-weights")


def to_hf_state_dict(state: StateDict, config: GPT2Config) -> StateDict:
    """GPT2LMHeadModel's state dict in the layout transformers' GPT2LMHeadModel saves.

    state: your model's ``state_dict()``. Returns name -> tensor with the Conv1D
    weights transposed back to (in, out), and, when ``config.tie_word_embeddings``,
    without ``lm_head.weight`` (transformers rebuilds it from ``transformer.wte.weight``).

    The inverse of ``from_hf_state_dict``. ``save_pretrained`` writes its result, and
    transformers' ``GPT2LMHeadModel.from_pretrained`` must be able to read it.
    """
    raise NotImplementedError("Exercise 10 (loading): see mlab_tfs/gpt2/GUIDE.md#10-loading-weights")


class GPT2LMHeadModel(GPT2PreTrainedModel, nn.Module):
    """GPT2Model with a language-modelling head tied to the token embedding."""

    # Given: GPT2PreTrainedModel's from_pretrained / save_pretrained call these two.
    hf_to_ours = staticmethod(from_hf_state_dict)
    ours_to_hf = staticmethod(to_hf_state_dict)
    tied_weights = {"lm_head.weight": "transformer.wte.weight"}  # with tie_word_embeddings
    accepts_loss_kwargs = True  # tells transformers' Trainer to pass num_items_in_batch

    def __init__(self, config: GPT2Config):
        """Store ``self.config`` and create ``self.transformer`` (GPT2Model) and
        ``self.lm_head = nn.Linear(C, V, bias=False)``.

        Then, if ``config.tie_word_embeddings``, tie the head:
        ``self.lm_head.weight = self.transformer.wte.weight``. One Parameter, used twice:
        its gradient is the sum of both uses, and optimisers see it once. (An untied head
        is drawn from N(0, initializer_range).)
        """
        raise NotImplementedError("Exercise 9 (model): see mlab_tfs/gpt2/GUIDE.md#9-model")

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
        """As GPT2Model.forward, plus the head and the loss.

        labels: None or (B, T), the input ids with -100 where no loss is wanted
            (check them with ``check_labels("labels", labels, tuple(input_ids.shape),
            self.config.vocab_size)``).

        num_items_in_batch: passed by transformers' Trainer (the number of counted labels
            in the whole accumulated batch); pass it on to ``lm_loss``.

        Returns ``CausalLMOutput(loss=..., logits=..., past_key_values=...,
        hidden_states=..., attentions=...)`` with logits (B, T, V) = lm_head of the last
        hidden state, loss = ``lm_loss(logits, labels, num_items_in_batch)`` when labels are given (else
        None), and the other fields passed through from the transformer (pass it every
        argument it takes, cache_position included).
        """
        raise NotImplementedError("Exercise 9 (model): see mlab_tfs/gpt2/GUIDE.md#9-model")
