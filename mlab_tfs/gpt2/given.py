"""What the GPT-2 part gives the learner: the config, the weight initialisation and the
bookkeeping of the KV cache. ``solution.py`` and ``student.py`` both import it, so the
learner's model and the solution share these lines exactly.

Shapes: B batch, nh heads, S cached positions, M = max_len static cache columns,
hs = n_embd // nh head size.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from mlab_tfs.activations import ACTIVATIONS
from mlab_tfs.attention import ATTN_IMPLEMENTATIONS, AttnImplementationMixin
from mlab_tfs.checkpoints import PretrainedMixin, StateDict
from mlab_tfs.configs import ConfigMixin, check_bool, check_choice, check_divisible, check_float, check_int
from mlab_tfs.configs import check_probability
from mlab_tfs.inputs import _check_values, _describe, check_attention_mask, check_cache_position, require_tensor
from mlab_tfs.hooks import HookedRootModule
from mlab_tfs.initialization import init_normal_weights
from mlab_tfs.inputs import check_int as check_int_argument
from mlab_tfs.inputs import same_device

Tensor = torch.Tensor


@dataclass
class GPT2Config(ConfigMixin):
    """The fields of transformers' GPT2Config that change the computation, with its defaults
    (``transformers/models/gpt2/configuration_gpt2.py``)."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # MLP width; None means 4 * n_embd
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    tie_word_embeddings: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    pad_token_id: int | None = None
    # Which attention path runs: "sdpa" (transformers' default) or "eager" (hand-written);
    # the same function. transformers keeps it as config._attn_implementation.
    attn_implementation: str = "sdpa"

    model_type: ClassVar[str] = "gpt2"
    architectures: ClassVar[tuple[str, ...]] = ("GPT2LMHeadModel",)
    # transformers' GPT2Config.attribute_map: the generic names it reads as GPT-2's own.
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "n_embd", "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head", "num_hidden_layers": "n_layer",
    }
    unsupported: ClassVar[dict[str, Any]] = {"add_cross_attention": False}  # no cross-attention here

    def __post_init__(self) -> None:
        """Check every field: ConfigError (a ValueError) naming it, ConfigTypeError for a wrong type."""
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            check_int(self, name, minimum=1)
        check_divisible(self, "n_embd", "n_head")
        check_int(self, "n_inner", minimum=1, optional=True)
        check_choice(self, "activation_function", ACTIVATIONS)
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            check_probability(self, name)
        check_float(self, "layer_norm_epsilon", low=0.0, low_open=True)  # inside a sqrt: > 0
        check_float(self, "initializer_range", low=0.0)
        for name in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn",
                     "tie_word_embeddings"):
            check_bool(self, name)
        # Not vocabulary-bounded: the model never reads them, and the default 50256 is
        # OpenAI's <|endoftext|>, outside small test vocabularies.
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            check_int(self, name, minimum=0, optional=True)
        check_choice(self, "attn_implementation", ATTN_IMPLEMENTATIONS)

    @property
    def head_dim(self) -> int:
        """hs: the width of one attention head."""
        return self.n_embd // self.n_head


# Module paths -> TransformerLens's hook names (``transformer.h.0.ln_1.hook_normalized`` ->
# ``blocks.0.ln1.hook_normalized``, ``transformer.ln_f.hook_normalized`` ->
# ``ln_final.hook_normalized``), whatever the root class: GPT2Model's and
# GPT2LMHeadModel's ``hook_name_rules``.
GPT2_HOOK_NAME_RULES = (
    (r"^transformer\.", ""),
    (r"^h\.(\d+)\.", r"blocks.\1."),
    (r"\.ln_(\d)\.", r".ln\1."),
    (r"^ln_f\.", "ln_final."),
)


class GPT2PreTrainedModel(AttnImplementationMixin, HookedRootModule, PretrainedMixin):
    """What GPT2Model and GPT2LMHeadModel share (transformers' base class name):
    from_pretrained / save_pretrained (see mlab_tfs.checkpoints), set_attn_implementation,
    and the hook points under TransformerLens's names (``run_with_cache``,
    ``run_with_hooks``, see mlab_tfs.hooks). Each class sets its own hf_to_ours / ours_to_hf."""

    config_class = GPT2Config
    hook_name_rules = GPT2_HOOK_NAME_RULES
    # transformers' names: the body's attribute in GPT2LMHeadModel, the word embedding's in the body.
    base_model_prefix, input_embeddings_name = "transformer", "wte"
    records_cross_attentions = True  # () beside attentions, as transformers' GPT-2 outputs


def body_state_dict(state: StateDict) -> StateDict:
    """A GPT2LMHeadModel state dict's body as GPT2Model's: the ``transformer.`` keys without
    that prefix; the head (``lm_head.*``) is left out, as transformers' GPT2Model leaves it."""
    return {k.removeprefix("transformer."): v for k, v in state.items() if k.startswith("transformer.")}


def init_gpt2_weights(model: nn.Module, config: GPT2Config) -> None:
    """GPT-2's initialisation (transformers' ``GPT2PreTrainedModel._init_weights``): N(0,
    initializer_range) weights of every Linear and Embedding, zero Linear biases, and every
    ``c_proj.weight`` (the residual projections) drawn with std initializer_range /
    sqrt(2 * n_layer): each block adds two branches to the residual stream (Radford et al.
    2019). Layer norms keep their ones and zeros. In place; returns None."""
    init_normal_weights(model, config.initializer_range)  # a learner's own Embedding too
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, mean=0.0, std=config.initializer_range / math.sqrt(2 * config.n_layer))


def cache_geometry(config: Any) -> tuple[int, int, int, int | None]:
    """What a KV cache holds for a model of this config: (layers, cached heads, head size,
    the position table's length or None). GPT2Config: n_layer, n_head, head_dim, n_positions.
    A config with transformers' names (LlamaConfig): num_hidden_layers, num_key_value_heads
    (the cache holds the shared key/value heads, before they are repeated for the queries),
    head_dim, and no table (rotary positions)."""
    if hasattr(config, "num_key_value_heads"):
        return config.num_hidden_layers, config.num_key_value_heads, config.head_dim, None
    return config.n_layer, config.n_head, config.head_dim, config.n_positions


def _positive(where: str, **values: object) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")


def _cache_names(n_layer: int, is_static: bool) -> list[str]:
    """What a cache holds, by name: k{i} then v{i} per layer (dynamic: its lists' entries), and
    a static cache's key_mask."""
    return [*(f"k{i}" for i in range(n_layer)), *(f"v{i}" for i in range(n_layer))] + (
        ["key_mask"] if is_static else [])


def _cache_tensors(cache: Any) -> tuple[list[str], list[Tensor | None]]:
    """The names and tensors of a cache (a dynamic layer that holds nothing yet: None)."""
    names = _cache_names(cache.n_layer, cache.is_static)
    if cache.is_static:
        return names, [getattr(cache, name) for name in names]
    return names, [*cache._keys, *cache._values]


def _cache_flatten(cache: Any) -> tuple[list[Tensor | None], tuple[int, bool, int | None, bool]]:
    return _cache_tensors(cache)[1], (cache.n_layer, cache.is_static, getattr(cache, "max_len", None),
                                      cache.decode_attention)


def _cache_flatten_with_keys(cache: Any) -> tuple[list[tuple[Any, Tensor | None]], Any]:
    from torch.utils._pytree import GetAttrKey

    names, tensors = _cache_tensors(cache)
    return [(GetAttrKey(n), t) for n, t in zip(names, tensors)], _cache_flatten(cache)[1]


def _cache_unflatten(cls: type, tensors: Any, context: tuple[int, bool, int | None, bool]) -> Any:
    n_layer, is_static, max_len, decode = context
    tensors = list(tensors)
    cache = cls(n_layer)
    if is_static:
        cache.is_static, cache.max_len, cache.decode_attention = True, max_len, decode
        for name, t in zip(_cache_names(n_layer, True), tensors):
            cache.register_buffer(name, t, persistent=False)
    else:
        cache._keys, cache._values = tensors[:n_layer], tensors[n_layer:]
    return cache


class KVCacheBase(nn.Module):
    """The bookkeeping of the KV cache; ``KVCache`` (the exercise) adds ``update``.

    Two modes, one object that every attention layer reads and writes by its layer index:

    - dynamic (``KVCache(n_layer)``): ``keys[i]`` / ``values[i]`` are (B, nh, S, hs), None
      until layer i first writes; each update concatenates the new positions (the eager
      decoding loop, beam search). transformers' ``DynamicCache``.
    - static (``KVCache.static(...)`` / ``KVCache.for_model(...)``): preallocated (B, nh, M,
      hs) buffers, written in place at ``cache_position``, plus ``key_mask`` (B, M), True
      where a column holds a real token (False on the prompts' left padding). Every step
      then has the same shapes, so a decode step compiles once and replays as a CUDA graph
      (PyTorch's gpt-fast; transformers' ``StaticCache``). Module buffers, not plain
      attributes: torch.compile treats buffers as static addresses, which CUDA graphs need.
      ``decode_attention`` (False unless set, as generate_fast's decode_attention=True sets
      it): True makes one new token per row attend through
      ``mlab_tfs.attention.decode_attention`` (sums inductor fuses) on the attention layers'
      "sdpa" path; False keeps ``F.scaled_dot_product_attention`` there.

    ``reorder_cache`` and ``batch_repeat_interleave`` are transformers' Cache method names
    (in place), so beam search treats this cache as it treats transformers'. ``check_update``
    is what ``update`` checks first: arguments that do not fit are refused before anything
    is written.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A pytree node, as transformers registers its Cache: a model that returns the cache
        # (use_cache=True) exports with torch.export, and the exported program returns one.
        super().__init_subclass__(**kwargs)
        from torch.utils import _pytree

        _pytree.register_pytree_node(cls, _cache_flatten, functools.partial(_cache_unflatten, cls),
                                     serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
                                     flatten_with_keys_fn=_cache_flatten_with_keys)

    def __init__(self, n_layer: int):
        super().__init__()
        _positive("KVCache", n_layer=n_layer)
        self.n_layer = n_layer
        self.is_static = False
        self.decode_attention = False  # see the class docstring
        self._keys: list[Tensor | None] = [None] * n_layer
        self._values: list[Tensor | None] = [None] * n_layer

    # -- construction ------------------------------------------------------------------

    @classmethod
    def static(cls, n_layer: int, batch_size: int, n_head: int, max_len: int, head_dim: int,
               dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Any:
        """A static cache: zeroed (batch_size, n_head, max_len, head_dim) key and value
        buffers per layer and ``key_mask`` (batch_size, max_len), all True until ``reset``.
        ValueError naming a size that is not a positive int; TypeError naming dtype for
        anything but a floating torch.dtype."""
        _positive("KVCache.static", n_layer=n_layer, batch_size=batch_size, n_head=n_head, max_len=max_len,
                  head_dim=head_dim)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"KVCache.static: dtype must be a floating torch.dtype (the keys' and values'), got "
                            f"{dtype!r}")
        cache = cls(n_layer)
        cache.is_static = True
        cache.decode_attention = False
        cache.max_len = max_len
        shape = (batch_size, n_head, max_len, head_dim)
        for i in range(n_layer):
            cache.register_buffer(f"k{i}", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
            cache.register_buffer(f"v{i}", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        cache.register_buffer("key_mask", torch.ones(batch_size, max_len, dtype=torch.bool, device=device),
                              persistent=False)
        return cache

    @classmethod
    def for_model(cls, model: nn.Module, batch_size: int, max_len: int) -> Any:
        """A static cache shaped for ``model`` (GPT-2's or the Llama family's, body or with
        its head; ``cache_geometry`` reads the config), in the dtype and on the device of its
        weights. ValueError when max_len exceeds the model's position table (GPT-2's
        n_positions; a rotary model has none)."""
        n_layer, n_head, head_dim, limit = cache_geometry(model.config)
        if limit is not None and isinstance(max_len, int) and not isinstance(max_len, bool) and max_len > limit:
            raise ValueError(f"KVCache.for_model: max_len={max_len} is more than the model's "
                             f"n_positions={limit}")
        w = next(model.parameters())
        return cls.static(n_layer, batch_size, n_head, max_len, head_dim, dtype=w.dtype, device=w.device)

    @classmethod
    def from_legacy_cache(cls, past: Sequence[tuple[Tensor, Tensor]]) -> Any:
        """A dynamic cache holding ``past``: one (k, v) pair per layer, each (B, nh, S, hs),
        as older transformers and this course's earlier models passed them. The tensors are
        taken, not copied (an update concatenates into new ones). TypeError / ValueError naming
        ``past_key_values`` for anything else."""
        if not isinstance(past, (tuple, list)) or len(past) == 0:
            raise TypeError(f"past_key_values must be a KVCache or a non-empty tuple of (key, value) pairs, "
                            f"one per layer, got {_describe(past)}")
        cache = cls(len(past))
        for i, layer in enumerate(past):
            if not isinstance(layer, (tuple, list)) or len(layer) != 2:
                raise ValueError(f"past_key_values[{i}] must be a (key, value) pair, got {_describe(layer)}")
            k, v = (require_tensor(f"past_key_values[{i}][{j}]", t) for j, t in enumerate(layer))
            if k.dim() != 4 or k.shape != v.shape:
                raise ValueError(f"past_key_values[{i}] must be a key and a value of one shape (B, nh, S, hs), "
                                 f"got {_describe(k)} and {_describe(v)}")
            if i and k.shape != cache._keys[0].shape:
                raise ValueError(f"past_key_values[{i}] has shape {tuple(k.shape)} but past_key_values[0] has "
                                 f"{tuple(cache._keys[0].shape)}: every layer caches the same rows and positions")
            cache._keys[i], cache._values[i] = k, v
        return cache

    @classmethod
    def for_forward(cls, past_key_values: object, use_cache: bool, n_layer: int) -> Any:
        """The cache a model's forward hands its layers: ``past_key_values`` itself if it is a
        KVCache (updated in place, as transformers 5's Cache), a legacy tuple wrapped in a new
        dynamic cache (the tuple is not changed), a new dynamic cache when only ``use_cache``
        is set, else None. TypeError naming past_key_values for anything else."""
        if past_key_values is None:
            return cls(n_layer) if use_cache else None
        if isinstance(past_key_values, KVCacheBase):
            return past_key_values
        if isinstance(past_key_values, (tuple, list)):
            return cls.from_legacy_cache(past_key_values)
        raise TypeError(f"past_key_values must be a KVCache, a tuple of (key, value) pairs or None, "
                        f"got {_describe(past_key_values)}")

    def static_mask(self, cache_position: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The attention mask of T new tokens over a static cache: bool (B, 1, T, M), True where
        query t (at column cache_position[t]) may see column m: m <= cache_position[t]
        (causal) and column m holds a real token (``key_mask``, and ``attention_mask`` where
        given: (B, L), L <= M, 1 = real, over the first L columns). ValueError naming
        attention_mask for another shape or values other than 0/1."""
        B, M = self.key_mask.shape
        causal = torch.arange(M, device=cache_position.device)[None, :] <= cache_position[:, None]  # (T, M)
        real = self.key_mask
        if attention_mask is not None:
            t = require_tensor("attention_mask", attention_mask)
            L = t.shape[-1] if t.dim() == 2 and t.shape[-1] <= M else M  # a bad shape fails the check below
            pad = check_attention_mask("attention_mask", t, (B, L))
            real = torch.cat([real[:, :L] & pad, real[:, L:]], dim=1)  # (B, M)
        return causal[None, None] & real[:, None, None, :]

    # -- what update is given ----------------------------------------------------------

    def check_update(self, layer_idx: int, k: Tensor, v: Tensor, cache_position: Tensor | None = None
                     ) -> Tensor | None:
        """The checks of ``update``'s arguments, which ``update`` runs first; returns
        cache_position as torch.long (or None).

        layer_idx: an int in [0, n_layer) (TypeError / ValueError naming layer_idx).
        k, v: floating tensors of one shape (B, nh, T, hs), on one device. They must fit what
        the cache holds: the batch, heads and head size of the layers written so far
        (dynamic) or of the buffers (static), on the cache's device, and its dtype (a
        concatenation would silently promote it; a static buffer casts only under
        torch.autocast, where the attention brings q, k and v to one dtype).
        cache_position: (T,) integer; required by a static cache (columns in [0, max_len),
        increasing); with a dynamic one optional and then S .. S + T - 1 for a layer holding
        S positions. ValueError / TypeError naming the argument otherwise. Value checks are
        skipped under torch.compile (mlab_tfs.inputs), shape checks are not.
        """
        layer_idx = check_int_argument("layer_idx", layer_idx, minimum=0, maximum=self.n_layer - 1)
        k, v = require_tensor("k", k), require_tensor("v", v)
        if not k.dtype.is_floating_point or k.dim() != 4:
            raise ValueError(f"k must be a floating (B, nh, T, hs) tensor of new keys, got {_describe(k)}")
        if v.shape != k.shape or v.dtype != k.dtype or v.device != k.device:
            raise ValueError(f"v must match k (a {k.dtype} tensor of shape {tuple(k.shape)} on {k.device}), "
                             f"got {_describe(v)} on {v.device}")
        if self.is_static:
            ref = self.keys[layer_idx]
        else:
            ref = self._keys[layer_idx]
            if ref is None:  # the other layers written so far fix the batch, heads and head size
                ref = next((t for t in self._keys if t is not None), None)
        if ref is not None:
            B, nh, _, hs = ref.shape
            if (k.shape[0], k.shape[1], k.shape[3]) != (B, nh, hs):
                raise ValueError(f"k must have shape (batch={B}, n_head={nh}, new positions, head_dim={hs}) "
                                 f"to fit this KVCache, got {_describe(k)}")
            if not same_device(k.device, ref.device):
                raise ValueError(f"k is on {k.device} but the KVCache is on {ref.device}")
            if k.dtype != ref.dtype and not (self.is_static and torch.is_autocast_enabled(k.device.type)):
                if not self.is_static:
                    raise ValueError(f"k is {k.dtype} but the KVCache holds {ref.dtype} keys (a concatenation "
                                     f"would promote them silently): run every step in one dtype")
                # Under autocast the attention casts q, k and v to one dtype; without it they would meet
                # there as two dtypes.
                raise ValueError(f"k is {k.dtype} but this static KVCache's buffers are {ref.dtype}: build the "
                                 f"cache in the model's dtype (KVCache.for_model(model, ...)), or run under "
                                 f"torch.autocast")
        if self.is_static or cache_position is not None:
            cached = 0 if self.is_static or self._keys[layer_idx] is None else self._keys[layer_idx].shape[2]
            cache_position = check_cache_position("cache_position", cache_position, k.shape[2], self, cached)
        return cache_position

    # -- what the attention reads ------------------------------------------------------

    @property
    def keys(self) -> list[Tensor | None]:
        """Per layer: dynamic, the cached keys (B, nh, S, hs) or None; static, the buffer (B, nh, M, hs)."""
        if self.is_static:
            return [getattr(self, f"k{i}") for i in range(self.n_layer)]
        return self._keys

    @property
    def values(self) -> list[Tensor | None]:
        """Per layer: as ``keys``, for the values."""
        if self.is_static:
            return [getattr(self, f"v{i}") for i in range(self.n_layer)]
        return self._values

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """How many positions layer ``layer_idx`` holds. Static: the columns written since the
        last reset, counted as transformers' StaticCache counts them (non-zero key rows of
        batch row 0, head 0); it reads the buffer, so call it outside compiled code.
        layer_idx: an int in [0, n_layer), else TypeError / ValueError naming it."""
        layer_idx = check_int_argument("layer_idx", layer_idx, minimum=0, maximum=self.n_layer - 1)
        k = self.keys[layer_idx]
        if k is None:
            return 0
        if self.is_static:
            return int(k[0, 0].any(dim=-1).sum())
        return k.shape[2]

    def __len__(self) -> int:
        return self.n_layer

    def __getitem__(self, layer_idx: int) -> tuple[Tensor, Tensor]:
        """Layer ``layer_idx``'s (k, v): dynamic (B, nh, S, hs), static the whole (B, nh, M, hs) buffers.
        IndexError for a layer outside [0, n_layer) or one that holds nothing yet."""
        n = self.n_layer
        if isinstance(layer_idx, bool) or not isinstance(layer_idx, int) or not -n <= layer_idx < n:
            raise IndexError(f"KVCache has {self.n_layer} layers; got layer index {layer_idx!r}")
        k, v = self.keys[layer_idx], self.values[layer_idx]
        if k is None:
            raise IndexError(f"KVCache layer {layer_idx} holds nothing yet (no forward pass has written it)")
        return k, v

    def to_legacy_cache(self) -> tuple[tuple[Tensor, Tensor], ...]:
        """One (k, v) pair per layer, each (B, nh, S, hs); static: copies of the first
        get_seq_length() columns, so that the buffers' later in-place writes and ``reset``
        leave the tuple as it was (a dynamic cache never changes its tensors in place).
        ValueError for a dynamic cache that holds nothing yet."""
        if self.is_static:
            S = self.get_seq_length()
            return tuple((k[:, :, :S].clone(), v[:, :, :S].clone()) for k, v in zip(self.keys, self.values))
        empty = [i for i, k in enumerate(self._keys) if k is None]
        if len(empty) == self.n_layer:
            raise ValueError("KVCache.to_legacy_cache: the cache holds nothing yet (run a forward pass with it)")
        if empty:
            raise ValueError(f"KVCache.to_legacy_cache: layers {empty} of {self.n_layer} hold nothing (a forward "
                             f"pass stopped half-way?): a legacy tuple needs every layer")
        return tuple(zip(self._keys, self._values))  # type: ignore[arg-type]

    # -- static mode -------------------------------------------------------------------

    def reset(self, attention_mask: Tensor | None = None) -> None:
        """Empty the cache for a new batch. Static: zero the buffers and set ``key_mask`` from
        the prompt mask (B, L), L <= max_len, 1 = real token: columns < L follow it, every
        later column is a real new token. Dynamic: drop every layer's tensors (the mask is
        then not used; passing one is a ValueError). ValueError naming attention_mask for a
        wrong shape or values other than 0/1."""
        if not self.is_static:
            if attention_mask is not None:
                raise ValueError("KVCache.reset: attention_mask is for a static cache; a dynamic cache takes "
                                 "the mask at each forward")
            self._keys = [None] * self.n_layer
            self._values = [None] * self.n_layer
            return
        for t in (*self.keys, *self.values):
            t.zero_()
        self.key_mask.fill_(True)
        if attention_mask is not None:
            B, M = self.key_mask.shape
            t = require_tensor("attention_mask", attention_mask)
            if t.dim() != 2 or t.shape[0] != B or t.shape[1] > M:
                raise ValueError(f"attention_mask must have shape (batch_size={B}, at most max_len={M}) for "
                                 f"this static cache, got {_describe(t)}")
            mask = check_attention_mask("attention_mask", t, tuple(t.shape))
            self.key_mask[:, : t.shape[1]].copy_(mask)

    # -- beam search (transformers' Cache methods, in place) ----------------------------

    def reorder_cache(self, beam_idx: Tensor) -> None:
        """Keep rows ``beam_idx`` (1-d long, on the cache's device) of every layer, in that
        order: row b becomes old row beam_idx[b]. In place. TypeError / ValueError naming
        beam_idx for a non-integer, non-1-d or out-of-range index."""
        beam_idx = require_tensor("beam_idx", beam_idx)
        if beam_idx.dtype.is_floating_point or beam_idx.dtype.is_complex or beam_idx.dtype == torch.bool:
            raise TypeError(f"beam_idx must hold integer row indices (torch.long), got {_describe(beam_idx)}")
        if beam_idx.dim() != 1:
            raise ValueError(f"beam_idx must be 1-d (one source row per new row), got {_describe(beam_idx)}")
        rows = self._rows()
        if rows is not None and _check_values() and beam_idx.numel() and (
                int(beam_idx.min()) < 0 or int(beam_idx.max()) >= rows):
            raise ValueError(f"beam_idx must be in [0, {rows}) (the cache's rows), got values "
                             f"{beam_idx.unique().tolist()[:8]}")
        self._map_rows(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Repeat every row ``repeats`` times (row b -> rows b*repeats .. b*repeats + repeats - 1),
        as for the beams of one prompt. In place; a static cache gets new, larger buffers (a
        step compiled for the old ones is compiled again)."""
        repeats = check_int_argument("repeats", repeats, minimum=1)
        self._map_rows(lambda t: t.repeat_interleave(repeats, dim=0))

    def _rows(self) -> int | None:
        k = self.keys[0]
        return None if k is None else k.shape[0]

    def _map_rows(self, fn) -> None:
        if not self.is_static:
            self._keys = [None if k is None else fn(k) for k in self._keys]
            self._values = [None if v is None else fn(v) for v in self._values]
            return
        for name in [*(f"k{i}" for i in range(self.n_layer)), *(f"v{i}" for i in range(self.n_layer)), "key_mask"]:
            old, new = getattr(self, name), fn(getattr(self, name))
            if new.shape == old.shape:
                old.copy_(new)  # same address: a CUDA graph captured on it stays valid
            else:
                self.register_buffer(name, new.contiguous(), persistent=False)

    def _apply(self, fn, recurse: bool = True):
        # nn.Module.to / .half / .cuda convert buffers only: a dynamic cache's tensors live in
        # lists, so convert them too (otherwise cache.to(...) would silently do nothing).
        self._keys = [None if t is None else fn(t) for t in self._keys]
        self._values = [None if t is None else fn(t) for t in self._values]
        return super()._apply(fn, recurse)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # parameters, buffers (the static k{i}, v{i}, key_mask)
        except AttributeError:
            if name.startswith("_"):
                raise
            # transformers' models call their own Cache's methods (get_query_offset...): say so.
            raise AttributeError(
                f"{type(self).__name__} has no attribute {name!r}: it is the cache of mlab_tfs's models; a "
                f"transformers model takes its own Cache (transformers.DynamicCache(cache.to_legacy_cache()) "
                f"holds the same keys and values)") from None

    def extra_repr(self) -> str:
        if self.is_static:
            B, nh, M, hs = self.k0.shape
            return f"static, n_layer={self.n_layer}, batch_size={B}, n_head={nh}, max_len={M}, head_dim={hs}"
        return f"dynamic, n_layer={self.n_layer}, cached={self.get_seq_length()}"
