"""GPT-2 from scratch: the solution.

Module names mirror Hugging Face's ``GPT2LMHeadModel`` (``transformer.h.0.attn.c_attn``...)
so that loading a checkpoint is a name map plus a list of weights to transpose.

Shapes: B batch, T new tokens, P cached tokens, S = P + T keys, C = n_embd,
nh heads, hs = C // nh head size, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mlab_tfs.attention import (  # noqa: F401  (ATTN_IMPLEMENTATIONS, additive_mask: re-exported)
    ATTN_IMPLEMENTATIONS,
    AttnImplementationMixin,
    additive_mask,
    check_attn_implementation,
    check_bool_mask,
    sdpa,
    sees_any_key,
)
from mlab_tfs.checkpoints import PretrainedMixin, StateDict, read_config, save_tied_weights_once
from mlab_tfs.configs import (
    check_bool,
    check_choice,
    check_divisible,
    check_float,
    check_int,
    check_probability,
    config_dict,
)
from mlab_tfs.inputs import (
    check_attention_mask,
    check_kv_cache,
    check_labels,
    check_position_ids,
    check_token_ids,
)
from mlab_tfs.outputs import BaseModelOutput, CausalLMOutput, KVCache

Tensor = torch.Tensor

ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu", "gelu_python", "gelu_fast",
               "quick_gelu", "relu", "silu", "swish", "tanh")


@dataclass
class GPT2Config:
    """The fields of transformers' GPT2Config that change the computation, with its defaults."""

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
    # transformers' GPT2Config.attribute_map: the generic names it reads as GPT-2's own.
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "n_embd", "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head", "num_hidden_layers": "n_layer",
    }

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
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"GPT2Config.attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, "
                f"got {self.attn_implementation!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPT2Config":
        """Read a Hugging Face config.json's contents; fields we don't use are ignored."""
        d = config_dict(cls.__name__, d)
        if d.get("model_type", "gpt2") != "gpt2":
            raise ValueError(
                f"config has model_type {d['model_type']!r}; GPT-2 loads checkpoints with model_type 'gpt2'"
            )
        if d.get("add_cross_attention"):
            raise ValueError("config has add_cross_attention=True; this GPT-2 has no cross-attention")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        for alias, name in cls.attribute_map.items():  # the generic name wins, as in transformers
            if alias in d:
                kwargs[name] = d[alias]
        if "_attn_implementation" in d and "attn_implementation" not in d and d["_attn_implementation"]:
            kwargs["attn_implementation"] = d["_attn_implementation"]
        return cls(**kwargs)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "GPT2Config":
        """The config of a checkpoint folder. CheckpointError naming config.json if it is
        missing or not a JSON object; ConfigError naming the field for a bad value."""
        return cls.from_dict(read_config(Path(folder)))

    def to_dict(self) -> dict[str, Any]:
        """A config.json that transformers' GPT2Config reads back to the same model."""
        d = asdict(self)
        d.pop("attn_implementation")
        d.update(model_type="gpt2", architectures=["GPT2LMHeadModel"], add_cross_attention=False)
        return d


# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


class LayerNorm(nn.LayerNorm):
    """Normalise the last dimension to mean 0, variance 1, then scale and shift.

    nn.LayerNorm is the base only so that tools which find layer norms by type find this
    one (transformers' Trainer keeps them out of weight decay); its constructor makes
    ``weight`` (ones), ``bias`` (zeros) and ``eps``, and the forward is ours alone.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5):
        super().__init__(normalized_shape, eps=eps)

    def forward(self, x: Tensor) -> Tensor:  # (..., C) -> (..., C)
        # Statistics in fp32 even when the model runs in half precision.
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mean = x32.mean(dim=-1, keepdim=True)
        var = (x32 - mean).pow(2).mean(dim=-1, keepdim=True)  # biased, as in the paper
        x_hat = (x32 - mean) / torch.sqrt(var + self.eps)  # eps inside the sqrt
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


def attention_pattern(q: Tensor, k: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """Softmax attention probabilities.

    q: (B, nh, T, hs), k: (B, nh, S, hs), mask: bool broadcastable to (B, nh, T, S),
    True where query t may look at key s. Returns (B, nh, T, S): each row sums to 1,
    except the rows of queries that may see no key (left padding), which are all 0.

    Masked scores are filled with finfo.min, not -inf (a row of -inf is NaN) and not
    added to it (in float16 a score plus finfo.min may round to -inf). A row with no
    visible key would then be uniform over *all* keys, future ones included (transformers'
    eager path returns that row): it is zeroed instead, as transformers' default sdpa
    path does, so no output depends on a later token.
    """
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, nh, T, S)
    if mask is None:
        return torch.softmax(scores, dim=-1)
    seen = sees_any_key(mask)  # (B, 1, T, 1); checks that mask is bool
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    pattern = torch.softmax(scores, dim=-1)
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


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention, with an optional KV cache."""

    def __init__(self, config: GPT2Config, layer_idx: int = 0):
        super().__init__()
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

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        layer_past: tuple[Tensor, Tensor] | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None, Tensor | None]:
        """x: (B, T, C); attention_mask: bool (B, 1, T, S), True = attend (causal and
        padding combined), or None for the causal mask alone; layer_past: cached (k, v),
        each (B, nh, P, hs).

        Returns (output (B, T, C), present (k, v) if use_cache, pattern (B, nh, T, S) if
        output_attentions).
        """
        check_bool_mask("GPT2Attention: attention_mask", attention_mask)
        C = x.shape[-1]
        q, k, v = self.c_attn(x).split(C, dim=-1)
        q, k, v = (rearrange(t, "b t (nh hs) -> b nh t hs", nh=self.n_head) for t in (q, k, v))
        if layer_past is not None:
            k = torch.cat([layer_past[0], k], dim=2)  # (B, nh, S, hs)
            v = torch.cat([layer_past[1], v], dim=2)
        present = (k, v) if use_cache else None

        pattern = None
        path = check_attn_implementation(self.config.attn_implementation, "config.attn_implementation")
        if path == "sdpa" and not output_attentions:
            y = self._sdpa(q, k, v, attention_mask)
        else:
            if attention_mask is None:
                attention_mask = causal_mask(q.shape[2], k.shape[2], q.device)[None, None]
            if self.upcast:  # fp32 scores and softmax, for half-precision stability
                pattern = attention_pattern(q.float(), k.float(), attention_mask, self.scale).to(v.dtype)
            else:
                pattern = attention_pattern(q, k, attention_mask, self.scale)
            y = torch.matmul(self.attn_dropout(pattern), v)  # (B, nh, T, hs)
        y = rearrange(y, "b nh t hs -> b t (nh hs)")
        return self.resid_dropout(self.c_proj(y)), present, pattern if output_attentions else None

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


def gelu_new(x: Tensor) -> Tensor:
    """GELU, tanh approximation (Hendrycks & Gimpel 2016), as in OpenAI's GPT-2."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def _activation(name: str):
    """The other activations a transformers GPT-2 config may name."""
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh"):
        return gelu_new
    if name in ("gelu", "gelu_python"):  # exact GELU, with erf
        return lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == "gelu_fast":
        return lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "relu":
        return torch.relu
    if name in ("silu", "swish"):
        return lambda x: x * torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh
    raise ValueError(f"unknown activation_function {name!r}; expected one of {ACTIVATIONS}")


class GPT2MLP(nn.Module):
    """Position-wise feed-forward: C -> n_inner -> C."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, inner)
        self.c_proj = nn.Linear(inner, config.n_embd)
        self.act = _activation(config.activation_function)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, C)
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config, layer_idx: int = 0):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        layer_past: tuple[Tensor, Tensor] | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None, Tensor | None]:
        """Same arguments and returns as GPT2Attention.forward, output (B, T, C)."""
        a, present, pattern = self.attn(self.ln_1(x), attention_mask, layer_past, use_cache, output_attentions)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, present, pattern


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


def _init_gpt2_weights(model: nn.Module, config: GPT2Config) -> None:
    """GPT-2's initialisation: N(0, initializer_range) weights, zero biases, layer norms at
    1 and 0, and the residual projections scaled down by sqrt(2 * n_layer)."""
    for module in model.modules():
        # By name, so that a learner's own Embedding class is initialised too.
        if isinstance(module, nn.Linear) or type(module).__name__ == "Embedding":
            nn.init.normal_(module.weight, mean=0.0, std=config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            # 2 residual branches per block add up over depth (Radford et al. 2019).
            nn.init.normal_(p, mean=0.0, std=config.initializer_range / math.sqrt(2 * config.n_layer))


class GPT2Model(AttnImplementationMixin, nn.Module):
    """Token + position embeddings, n_layer blocks, final layer norm."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.wte = Embedding(config.vocab_size, config.n_embd)
        self.wpe = Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([GPT2Block(config, i) for i in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        _init_gpt2_weights(self, config)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutput:
        """input_ids: (B, T); attention_mask: (B, P + T), 1 = real token; position_ids: (B, T).

        Returns last_hidden_state (B, T, C) and, on request, past_key_values,
        hidden_states (n_layer + 1 of (B, T, C)) and attentions (n_layer of (B, nh, T, S)).
        """
        cfg = self.config
        check_token_ids("input_ids", input_ids, cfg.vocab_size)
        B, T = input_ids.shape
        P = 0
        if past_key_values is not None:
            P = check_kv_cache(
                "past_key_values", past_key_values, n_layer=cfg.n_layer, batch=B, n_head=cfg.n_head,
                head_dim=cfg.head_dim,
            )
        if position_ids is None:
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
        # Without padding, None: the attention layers apply the causal mask themselves
        # (and the fused kernels can use their built-in causal masking).
        keep = None
        if attention_mask is not None:
            pad = check_attention_mask("attention_mask", attention_mask, (B, P + T))
            keep = causal_mask(T, P + T, device=input_ids.device)[None, None] & pad[:, None, None, :]  # (B, 1, T, S)

        x = self.drop(self.wte(input_ids) + self.wpe(position_ids))  # (B, T, C)
        hidden_states: list[Tensor] = []
        attentions: list[Tensor] = []
        presents: list[tuple[Tensor, Tensor]] = []
        for i, block in enumerate(self.h):
            if output_hidden_states:
                hidden_states.append(x)
            layer_past = past_key_values[i] if past_key_values is not None else None
            x, present, pattern = block(x, keep, layer_past, use_cache, output_attentions)
            if use_cache:
                presents.append(present)
            if output_attentions:
                attentions.append(pattern)
        x = self.ln_f(x)
        if output_hidden_states:
            hidden_states.append(x)  # as in transformers, the last entry is after ln_f
        return BaseModelOutput(
            last_hidden_state=x,
            past_key_values=tuple(presents) if use_cache else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
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


class GPT2LMHeadModel(AttnImplementationMixin, PretrainedMixin, nn.Module):
    """GPT2Model with a language-modelling head tied to the token embedding."""

    config_class = GPT2Config
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
        past_key_values: KVCache | None = None,
        labels: Tensor | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> CausalLMOutput:
        """As GPT2Model.forward, plus logits (B, T, V) and, given labels (B, T), the loss.

        num_items_in_batch: transformers' Trainer passes the number of counted labels in the
        whole accumulated batch; the loss is then this micro-batch's sum over that number,
        so that gradient accumulation averages over tokens, not micro-batches.
        """
        out = self.transformer(
            input_ids, attention_mask, position_ids, past_key_values, use_cache,
            output_hidden_states, output_attentions,
        )
        logits = self.lm_head(out.last_hidden_state)  # (B, T, V)
        loss = None
        if labels is not None:
            labels = check_labels("labels", labels, tuple(input_ids.shape), self.config.vocab_size)
            loss = lm_loss(logits, labels, num_items_in_batch)
        return CausalLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
