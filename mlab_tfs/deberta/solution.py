"""DeBERTa-v2/v3 from scratch: the solution.

DeBERTa (He et al. 2021) keeps BERT's post-LN encoder but changes attention: each token is
a content vector, and its position is *relative*, kept apart in a small table of
relative-distance embeddings that every layer shares. The attention score of query i and
key j adds three terms,

    content->content   Q_i . K_j
    content->position  Q_i . Kr[r(i, j)]        ("c2p")
    position->content  K_j . Qr[r(i, j)]        ("p2c")

where r(i, j) is the (bucketed, clamped) distance i - j and Kr, Qr are the relative
table projected by the layer's key and query projections. DeBERTa-v3 has the same
architecture (it differs in pre-training), so this file loads both.

Module names mirror Hugging Face's ``DebertaV2ForMaskedLM`` (``deberta.encoder.layer.0.
attention.self.query_proj``...), so loading a checkpoint is a name map with no transposes.

Shapes: B batch, T tokens, H = hidden_size, E = embedding_size, nh heads, hs = H // nh
head size, V vocabulary, k = att_span (the number of relative distances on each side),
so the relative table has 2k rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mlab_tfs.checkpoints import CheckpointError, PretrainedMixin, StateDict, read_config, save_tied_weights_once
from mlab_tfs.configs import (
    ConfigError,
    ConfigTypeError,
    check_bool,
    check_choice,
    check_divisible,
    check_float,
    check_int,
    check_probability,
    check_token_id,
    config_dict,
)
from mlab_tfs.inputs import check_attention_mask, check_labels, check_position_ids, check_token_ids
from mlab_tfs.outputs import BaseModelOutput, MaskedLMOutput

Tensor = torch.Tensor

ACTIVATIONS = ("gelu", "gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "relu",
               "silu", "swish", "tanh")
POS_ATT_TYPES = ("c2p", "p2c")
REL_EMBEDDING_NORMS = ("none", "layer_norm")


@dataclass
class DebertaV2Config:
    """The fields of transformers' DebertaV2Config that change the computation, with its defaults.

    Several of them (position_buckets, share_att_key, norm_rel_ebd, conv_*, embedding_size)
    are not declared by transformers' class but read from the config with a default; the
    defaults here are those.
    """

    vocab_size: int = 128100
    hidden_size: int = 1536
    num_hidden_layers: int = 24
    num_attention_heads: int = 24
    intermediate_size: int = 6144
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-7
    pad_token_id: int | None = 0
    # Absolute positions added to the input (BERT-style); v3 turns them off.
    position_biased_input: bool = True
    embedding_size: int | None = None  # None means hidden_size; otherwise embed_proj maps E -> H
    # Relative attention.
    relative_attention: bool = False
    max_relative_positions: int = -1  # < 1 means max_position_embeddings
    position_buckets: int = -1  # > 0: log-bucket distances into this many buckets per side
    pos_att_type: list[str] = field(default_factory=list)  # any of "c2p", "p2c"; "p2c|c2p" accepted
    share_att_key: bool = False  # project the relative table with query_proj/key_proj themselves
    norm_rel_ebd: str = "none"  # "layer_norm": normalise the relative table once per forward
    # A convolution branch added to the first layer's output (DeBERTa-v2 xlarge and up).
    conv_kernel_size: int = 0
    conv_groups: int = 1
    conv_act: str = "tanh"
    # The MLM head: legacy (cls.predictions, transformers' default) or the original layout
    # (lm_predictions.lm_head, which microsoft/deberta-v3-* checkpoints ship).
    legacy: bool = True
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        """Check every field: ConfigError (a ValueError) naming it, ConfigTypeError for a wrong type."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "conv_groups"):
            check_int(self, name, minimum=1)
        check_divisible(self, "hidden_size", "num_attention_heads")
        check_int(self, "type_vocab_size", minimum=0)  # 0: no token-type embeddings
        check_int(self, "embedding_size", minimum=1, optional=True)
        check_int(self, "conv_kernel_size", minimum=0)  # 0: no convolution
        for name in ("max_relative_positions", "position_buckets"):  # < 1 means "unset"
            check_int(self, name)
        for name in ("hidden_act", "conv_act"):
            check_choice(self, name, ACTIVATIONS)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            check_probability(self, name)
        check_float(self, "layer_norm_eps", low=0.0, low_open=True)  # inside a sqrt: > 0
        check_float(self, "initializer_range", low=0.0)
        check_token_id(self, "pad_token_id", self.vocab_size)  # the embedding's padding row
        for name in ("position_biased_input", "relative_attention", "share_att_key", "legacy",
                     "tie_word_embeddings"):
            check_bool(self, name)
        if not isinstance(self.norm_rel_ebd, str):
            raise ConfigTypeError(
                f"DebertaV2Config.norm_rel_ebd must be 'none' or 'layer_norm', got {self.norm_rel_ebd!r}"
            )
        self.pos_att_type = _parse_pos_att_type(self.pos_att_type)
        norms = [x.strip() for x in str(self.norm_rel_ebd).lower().split("|")]
        if any(x not in REL_EMBEDDING_NORMS for x in norms):
            raise ValueError(f"DebertaV2Config.norm_rel_ebd must be 'none' or 'layer_norm', got {self.norm_rel_ebd!r}")
        # Settings that contradict each other.
        if self.position_buckets > 0 and not self.relative_attention:
            raise ValueError(
                f"DebertaV2Config.position_buckets={self.position_buckets} buckets relative positions, but "
                f"relative_attention is False: there are none. Set relative_attention=True or position_buckets=-1"
            )
        if self.relative_attention and self.position_buckets > 0:
            mid = self.position_buckets // 2
            if self.max_relative - 1 <= mid:
                raise ValueError(
                    f"DebertaV2Config: log buckets need max_relative_positions - 1 > position_buckets // 2 "
                    f"(the log scale runs from position_buckets // 2 to max_relative_positions), got "
                    f"max_relative_positions={self.max_relative} (from max_relative_positions="
                    f"{self.max_relative_positions}, max_position_embeddings={self.max_position_embeddings}) and "
                    f"position_buckets={self.position_buckets}"
                )
        if self.conv_kernel_size > 0:
            if self.conv_kernel_size % 2 == 0:
                raise ValueError(
                    f"DebertaV2Config.conv_kernel_size must be odd (the convolution keeps the length with padding "
                    f"(k - 1) // 2), got {self.conv_kernel_size}"
                )
            if self.hidden_size % self.conv_groups != 0:
                raise ValueError(
                    f"DebertaV2Config.conv_groups ({self.conv_groups}) must divide hidden_size ({self.hidden_size})"
                )
        if not self.legacy and self.embedding_size not in (None, self.hidden_size):
            raise ValueError(
                f"DebertaV2Config: legacy=False multiplies hidden states (H={self.hidden_size}) by the word "
                f"embeddings (E={self.embedding_size}), so it needs embedding_size == hidden_size"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def emb_size(self) -> int:
        """E: the width of the token embeddings."""
        return self.embedding_size if self.embedding_size is not None else self.hidden_size

    @property
    def max_relative(self) -> int:
        """The largest relative distance the log buckets scale to."""
        return self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings

    @property
    def att_span(self) -> int:
        """k: relative distances are clamped to [-k, k), the table has 2k rows."""
        return self.position_buckets if self.position_buckets > 0 else self.max_relative

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DebertaV2Config":
        """Read a Hugging Face config.json's contents; fields we don't use are ignored."""
        d = config_dict(cls.__name__, d)
        model_type = d.get("model_type", "deberta-v2")
        if model_type != "deberta-v2":
            extra = " (DeBERTa v1, model_type 'deberta', has a different attention)" if model_type == "deberta" else ""
            raise ValueError(
                f"config has model_type {model_type!r}; this DeBERTa loads checkpoints with model_type "
                f"'deberta-v2'{extra}"
            )
        head_size = d.get("attention_head_size")
        if head_size is not None and head_size * d.get("num_attention_heads", 24) != d.get("hidden_size", 1536):
            raise ValueError(
                f"config has attention_head_size={head_size}: heads * head size must equal hidden_size "
                f"({d.get('hidden_size')})"
            )
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        if kwargs.get("pos_att_type") is None:
            kwargs.pop("pos_att_type", None)
        return cls(**kwargs)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "DebertaV2Config":
        """The config of a checkpoint folder. CheckpointError naming config.json if it is
        missing or not a JSON object; ConfigError naming the field for a bad value."""
        return cls.from_dict(read_config(Path(folder)))

    def to_dict(self) -> dict[str, Any]:
        """A config.json that transformers' DebertaV2Config reads back to the same model."""
        d = asdict(self)
        if d["embedding_size"] is None:
            del d["embedding_size"]  # transformers reads a missing one as hidden_size, but not None
        d["model_type"] = "deberta-v2"
        return d


def _parse_pos_att_type(value: object) -> list[str]:
    """"p2c|c2p", ["c2p"], None -> a list of "c2p"/"p2c". "none" entries (transformers' own
    tests write pos_att_type="None") mean nothing; anything else is a ValueError."""
    if value is None:
        return []
    if not isinstance(value, (str, list, tuple)):
        raise ConfigTypeError(f"DebertaV2Config.pos_att_type must be a list of 'c2p'/'p2c' or a string such as "
                              f"'p2c|c2p', got {value!r}")
    items = value.lower().split("|") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigTypeError(f"DebertaV2Config.pos_att_type entries must be strings, got {item!r}")
        item = item.strip().lower()
        if item in ("", "none"):
            continue
        if item not in POS_ATT_TYPES:
            raise ConfigError(
                f"DebertaV2Config.pos_att_type must hold only {POS_ATT_TYPES} (as a list or 'p2c|c2p'), "
                f"got {value!r}"
            )
        if item not in out:
            out.append(item)
    return out


# ---------------------------------------------------------------------------------------
# Building blocks (given in the exercises)
# ---------------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """Normalise the last dimension to mean 0, variance 1, then scale and shift."""

    def __init__(self, normalized_shape: int, eps: float = 1e-7):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x: Tensor) -> Tensor:  # (..., C) -> (..., C)
        x32 = x.float()
        mean = x32.mean(dim=-1, keepdim=True)
        var = (x32 - mean).pow(2).mean(dim=-1, keepdim=True)  # biased
        return ((x32 - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias).to(x.dtype)


class Embedding(nn.Module):
    """A lookup table; the row of ``padding_idx`` (if any) gets no gradient from lookups,
    as with ``nn.Embedding(padding_idx=...)``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.padding_idx = padding_idx
        self.weight = nn.Parameter(torch.randn(num_embeddings, embedding_dim))

    def forward(self, ids: Tensor) -> Tensor:  # (...) -> (..., D)
        out = self.weight[ids]
        if self.padding_idx is None:
            return out
        # Same values, but the padding row is not trained through its lookups.
        return torch.where((ids == self.padding_idx)[..., None], out.detach(), out)


def _activation(name: str):
    if name in ("gelu", "gelu_python"):  # exact GELU, with erf
        return lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
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
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


class DebertaV2Embeddings(nn.Module):
    """Token (+ absolute position) (+ token type) embeddings, projected to H, layer-normed,
    and zeroed at padding."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        E, H = config.emb_size, config.hidden_size
        self.word_embeddings = Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_biased_input = config.position_biased_input
        if config.position_biased_input:
            self.position_embeddings = Embedding(config.max_position_embeddings, E)
        if config.type_vocab_size > 0:
            self.token_type_embeddings = Embedding(config.type_vocab_size, E)
        if E != H:
            self.embed_proj = nn.Linear(E, H, bias=False)
        self.LayerNorm = LayerNorm(H, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None, position_ids: Tensor, mask: Tensor) -> Tensor:
        """input_ids, position_ids (B or 1, T), mask (B, T) bool. Returns (B, T, H)."""
        x = self.word_embeddings(input_ids)  # (B, T, E)
        if self.position_biased_input:
            x = x + self.position_embeddings(position_ids)
        if hasattr(self, "token_type_embeddings"):
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(token_type_ids)
        if hasattr(self, "embed_proj"):
            x = self.embed_proj(x)  # (B, T, H)
        x = self.LayerNorm(x)
        x = x * mask[..., None].to(x.dtype)  # padding positions start at exactly 0
        return self.dropout(x)


# ---------------------------------------------------------------------------------------
# Relative positions (exercises 1-2)
# ---------------------------------------------------------------------------------------


def make_log_bucket_position(relative_pos: Tensor, bucket_size: int, max_position: int) -> Tensor:
    """Log buckets: distances within bucket_size // 2 are kept as they are, longer ones are
    squeezed logarithmically so that max_position lands near bucket_size.

    relative_pos: integer tensor, any shape. Returns the same shape, integer, with the sign of
    relative_pos and |value| <= bucket_size (up to rounding at max_position).
    """
    mid = bucket_size // 2
    sign = torch.sign(relative_pos)
    # Near distances are returned as they are; mid - 1 stands in for them so the log is defined.
    near = (relative_pos < mid) & (relative_pos > -mid)
    abs_pos = torch.where(near, torch.full_like(relative_pos, mid - 1), relative_pos.abs())
    # mid + (mid - 1) * log(|r| / mid) / log((max_position - 1) / mid), rounded up.
    # (float32 logs, as in the reference: ceil is sensitive to the last bit)
    log_ratio = torch.log(torch.tensor((max_position - 1) / mid, device=relative_pos.device))
    log_pos = torch.ceil(torch.log(abs_pos / mid) / log_ratio * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, relative_pos, (log_pos * sign).to(relative_pos.dtype))


def build_relative_position(
    query_size: int,
    key_size: int,
    bucket_size: int = -1,
    max_position: int = -1,
    device: torch.device | str | None = None,
) -> Tensor:
    """r[i, j] = i - j, log-bucketed when bucket_size > 0 and max_position > 0.

    Returns a (query_size, key_size) torch.long tensor on device.
    """
    q_ids = torch.arange(query_size, dtype=torch.long, device=device)
    k_ids = torch.arange(key_size, dtype=torch.long, device=device)
    rel = q_ids[:, None] - k_ids[None, :]  # (Tq, Tk)
    if bucket_size > 0 and max_position > 0:
        rel = make_log_bucket_position(rel, bucket_size, max_position)
    return rel.to(torch.long)


# ---------------------------------------------------------------------------------------
# Disentangled attention (exercises 3-5)
# ---------------------------------------------------------------------------------------


def c2p_scores(query: Tensor, pos_key: Tensor, relative_pos: Tensor, att_span: int) -> Tensor:
    """Content-to-position: out[b, h, i, j] = query[b, h, i] . pos_key[h, r[i, j] + k],
    with r + k clamped to the table, [0, 2k - 1].

    query: (B, nh, T, hs); pos_key: (nh, 2k, hs), the relative table through the key
    projection; relative_pos: (T, T) long. Returns (B, nh, T, T), unscaled.
    """
    B, nh, T, _ = query.shape
    all_pos = torch.matmul(query, pos_key.transpose(-1, -2))  # (B, nh, T, 2k): query i against every distance
    index = torch.clamp(relative_pos + att_span, 0, 2 * att_span - 1)  # (T, T): the distance of (i, j)
    return torch.gather(all_pos, dim=-1, index=index.expand(B, nh, T, T))


def p2c_scores(key: Tensor, pos_query: Tensor, relative_pos: Tensor, att_span: int) -> Tensor:
    """Position-to-content: out[b, h, i, j] = key[b, h, j] . pos_query[h, r[i, j] + k], with
    r + k clamped to [0, 2k - 1]. Computed key-major (each key against every distance) and
    gathered at -r[j, i] + k, then transposed, as the reference implementation does.

    key: (B, nh, T, hs); pos_query: (nh, 2k, hs), the relative table through the query
    projection; relative_pos: (T, T) long. Returns (B, nh, T, T), unscaled.
    """
    B, nh, T, _ = key.shape
    all_pos = torch.matmul(key, pos_query.transpose(-1, -2))  # (B, nh, T_key, 2k)
    # Row j (a key) reads the distance of the query i from the key's side: -r[j, i].
    index = torch.clamp(-relative_pos + att_span, 0, 2 * att_span - 1)  # (T_key, T_query)
    by_key = torch.gather(all_pos, dim=-1, index=index.expand(B, nh, T, T))  # (B, nh, j, i)
    return by_key.transpose(-1, -2)  # (B, nh, i, j)


class DisentangledSelfAttention(nn.Module):
    """Multi-head self-attention whose scores add c2p and p2c relative terms."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        H = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query_proj = nn.Linear(H, H)
        self.key_proj = nn.Linear(H, H)
        self.value_proj = nn.Linear(H, H)
        self.pos_att_type = list(config.pos_att_type)
        self.relative_attention = config.relative_attention
        self.share_att_key = config.share_att_key
        # Each of content, c2p and p2c adds a dot product of hs terms: scale by their count.
        self.scale_factor = 1 + len(self.pos_att_type)
        if self.relative_attention:
            self.att_span = config.att_span
            self.pos_dropout = nn.Dropout(config.hidden_dropout_prob)
            if not self.share_att_key:
                if "c2p" in self.pos_att_type:
                    self.pos_key_proj = nn.Linear(H, H)
                if "p2c" in self.pos_att_type:
                    self.pos_query_proj = nn.Linear(H, H)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor,
        relative_pos: Tensor | None = None,
        rel_embeddings: Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """hidden_states: (B, T, H); attention_mask: bool (B, 1, T, T), True = may attend;
        relative_pos: (T, T) long; rel_embeddings: (2k, H), the (normed) relative table.

        Returns (context (B, T, H), attention probabilities (B, nh, T, T) if output_attentions).
        """
        heads = lambda t: rearrange(t, "b t (nh hs) -> b nh t hs", nh=self.num_attention_heads)  # noqa: E731
        q = heads(self.query_proj(hidden_states))  # (B, nh, T, hs)
        k = heads(self.key_proj(hidden_states))
        v = heads(self.value_proj(hidden_states))

        scale = math.sqrt(self.head_dim * self.scale_factor)
        scores = torch.matmul(q, k.transpose(-1, -2)) / scale  # (B, nh, T, T) content->content
        if self.relative_attention:
            scores = scores + self.disentangled_attention_bias(q, k, relative_pos, self.pos_dropout(rel_embeddings))

        # masked_fill (not an added mask), as transformers does: a padding query's row is all
        # finfo.min, a uniform softmax, and masked scores get exactly zero gradient.
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1)
        context = torch.matmul(self.dropout(probs), v)  # (B, nh, T, hs)
        context = rearrange(context, "b nh t hs -> b t (nh hs)")
        return context, probs if output_attentions else None

    def disentangled_attention_bias(
        self, query: Tensor, key: Tensor, relative_pos: Tensor, rel_embeddings: Tensor
    ) -> Tensor:
        """The c2p and p2c terms, each divided by the same scale as the content term.

        query, key: (B, nh, T, hs); relative_pos: (T, T) long; rel_embeddings: (2k, H).
        Returns (B, nh, T, T).
        """
        per_head = lambda t: rearrange(t, "r (nh hs) -> nh r hs", nh=self.num_attention_heads)  # noqa: E731
        scale = math.sqrt(self.head_dim * self.scale_factor)
        rel_embeddings = rel_embeddings[: 2 * self.att_span]
        score = torch.zeros((), dtype=query.dtype, device=query.device)
        if "c2p" in self.pos_att_type:
            proj = self.key_proj if self.share_att_key else self.pos_key_proj
            pos_key = per_head(proj(rel_embeddings))  # (nh, 2k, hs)
            score = score + c2p_scores(query, pos_key, relative_pos, self.att_span) / scale
        if "p2c" in self.pos_att_type:
            proj = self.query_proj if self.share_att_key else self.pos_query_proj
            pos_query = per_head(proj(rel_embeddings))  # (nh, 2k, hs)
            score = score + p2c_scores(key, pos_query, relative_pos, self.att_span) / scale
        return score


# ---------------------------------------------------------------------------------------
# The rest of a layer (given)
# ---------------------------------------------------------------------------------------


class DebertaV2SelfOutput(nn.Module):
    """Post-LN residual around attention: LayerNorm(x + dense(context))."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class DebertaV2Attention(nn.Module):
    """Disentangled self-attention and its residual + layer norm."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.self = DisentangledSelfAttention(config)
        self.output = DebertaV2SelfOutput(config)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor,
        relative_pos: Tensor | None = None,
        rel_embeddings: Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        context, probs = self.self(hidden_states, attention_mask, relative_pos, rel_embeddings, output_attentions)
        return self.output(context, hidden_states), probs


class DebertaV2Intermediate(nn.Module):
    """The MLP's first half: H -> intermediate_size, then the activation."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = _activation(config.hidden_act)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.act(self.dense(hidden_states))


class DebertaV2Output(nn.Module):
    """The MLP's second half and its residual: LayerNorm(x + dense(h))."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class DebertaV2Layer(nn.Module):
    """One post-LN encoder layer: attention block, then MLP block."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.attention = DebertaV2Attention(config)
        self.intermediate = DebertaV2Intermediate(config)
        self.output = DebertaV2Output(config)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor,
        relative_pos: Tensor | None = None,
        rel_embeddings: Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """(B, T, H) -> ((B, T, H), probabilities (B, nh, T, T) or None)."""
        a, probs = self.attention(hidden_states, attention_mask, relative_pos, rel_embeddings, output_attentions)
        return self.output(self.intermediate(a), a), probs


class ConvLayer(nn.Module):
    """A 1-d convolution over the sequence, added to the first layer's output (DeBERTa-v2's
    "nGiE": n-gram induced input encoding)."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        H, k = config.hidden_size, config.conv_kernel_size
        self.conv = nn.Conv1d(H, H, k, padding=(k - 1) // 2, groups=config.conv_groups)
        self.LayerNorm = LayerNorm(H, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.act = _activation(config.conv_act)

    def forward(self, hidden_states: Tensor, residual_states: Tensor, input_mask: Tensor) -> Tensor:
        """hidden_states: the encoder's input (B, T, H); residual_states: the first layer's
        output (B, T, H); input_mask: (B, T) bool. Returns (B, T, H), zero at padding."""
        out = rearrange(self.conv(rearrange(hidden_states, "b t h -> b h t")), "b h t -> b t h")
        out = out.masked_fill(~input_mask[..., None], 0.0)
        out = self.act(self.dropout(out))
        return self.LayerNorm(residual_states + out) * input_mask[..., None].to(out.dtype)


# ---------------------------------------------------------------------------------------
# The encoder (exercise 6)
# ---------------------------------------------------------------------------------------


class DebertaV2Encoder(nn.Module):
    """The layers, plus what they share: the relative-position table (optionally
    layer-normed), the relative positions and the 2-d attention mask."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.layer = nn.ModuleList([DebertaV2Layer(config) for _ in range(config.num_hidden_layers)])
        self.relative_attention = config.relative_attention
        if self.relative_attention:
            self.position_buckets = config.position_buckets
            self.max_relative_positions = config.max_relative
            self.rel_embeddings = Embedding(2 * config.att_span, config.hidden_size)  # (2k, H)
        self.norm_rel_ebd = "layer_norm" in config.norm_rel_ebd.lower()
        if self.norm_rel_ebd:
            self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        if config.conv_kernel_size > 0:
            self.conv = ConvLayer(config)

    def get_rel_embedding(self) -> Tensor | None:
        """The relative table (2k, H), layer-normed if norm_rel_ebd; None without relative attention."""
        if not self.relative_attention:
            return None
        rel = self.rel_embeddings.weight
        return self.LayerNorm(rel) if self.norm_rel_ebd else rel

    def forward(
        self,
        hidden_states: Tensor,
        input_mask: Tensor,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutput:
        """hidden_states: the embeddings (B, T, H); input_mask: (B, T) bool, True = real token.

        Returns last_hidden_state (B, T, H) and, on request, hidden_states (the input, then each
        layer's output: num_hidden_layers + 1 of (B, T, H)) and attentions (B, nh, T, T) each.
        """
        T = hidden_states.shape[1]
        # Query i may attend to key j when both are real tokens: padding rows are masked too.
        keep = input_mask[:, None, :, None] & input_mask[:, None, None, :]  # (B, 1, T, T)
        relative_pos = rel_embeddings = None
        if self.relative_attention:
            relative_pos = build_relative_position(
                T, T, self.position_buckets, self.max_relative_positions, device=hidden_states.device
            )  # (T, T)
            rel_embeddings = self.get_rel_embedding()  # (2k, H), once for every layer
        all_hidden = [hidden_states]
        all_attentions = []
        x = hidden_states
        for i, layer in enumerate(self.layer):
            x, probs = layer(x, keep, relative_pos, rel_embeddings, output_attentions)
            if i == 0 and hasattr(self, "conv"):
                x = self.conv(hidden_states, x, input_mask)
            all_hidden.append(x)
            all_attentions.append(probs)
        return BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )


# ---------------------------------------------------------------------------------------
# Models and heads (given)
# ---------------------------------------------------------------------------------------


def _init_weights(model: nn.Module, config: DebertaV2Config) -> None:
    """BERT's initialisation: N(0, initializer_range) weights (the convolution's too, as
    transformers' PreTrainedModel._init_weights), zero biases, layer norms at 1 and 0, the
    padding embedding at 0."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=config.initializer_range)
        if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


def _check_inputs(
    config: DebertaV2Config,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    token_type_ids: Tensor | None,
    position_ids: Tensor | None,
) -> tuple[Tensor | None, Tensor | None, Tensor]:
    """ValueErrors that name the bad argument. Returns (token_type_ids, position_ids, mask bool (B, T))."""
    check_token_ids("input_ids", input_ids, config.vocab_size)
    B, T = input_ids.shape
    if token_type_ids is not None:
        check_token_ids("token_type_ids", token_type_ids, max(config.type_vocab_size, 1))
        if tuple(token_type_ids.shape) != (B, T):
            raise ValueError(f"token_type_ids must have the shape of input_ids {(B, T)}, got {tuple(token_type_ids.shape)}")
    if config.position_biased_input:
        if position_ids is None:
            if T > config.max_position_embeddings:
                raise ValueError(
                    f"input_ids has {T} tokens, but the model has max_position_embeddings="
                    f"{config.max_position_embeddings} absolute positions"
                )
            position_ids = torch.arange(T, device=input_ids.device)[None]  # (1, T)
        else:
            position_ids = check_position_ids("position_ids", position_ids, (B, T), config.max_position_embeddings)
    if attention_mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
    else:
        mask = check_attention_mask("attention_mask", attention_mask, (B, T))
    return token_type_ids, position_ids, mask


class _PreTrained(PretrainedMixin):
    config_class = DebertaV2Config


# Keys a base-model checkpoint may carry from a head we don't build.
HEAD_PREFIXES = ("cls.", "lm_predictions.", "mask_predictions.", "pooler.", "classifier.", "qa_outputs.")


def _drop_unused(state: StateDict, config: DebertaV2Config, prefix: str) -> StateDict:
    """Some checkpoints keep absolute positions they don't use (transformers ignores them too)."""
    if not config.position_biased_input:
        state = {k: v for k, v in state.items() if k != f"{prefix}embeddings.position_embeddings.weight"}
    return state


def model_from_hf_state_dict(hf_state: StateDict, config: DebertaV2Config) -> StateDict:
    """A transformers DebertaV2Model (or DebertaV2For*) state dict as DebertaV2Model's."""
    out = {}
    for key, value in hf_state.items():
        key = key.removeprefix("deberta.")
        if key.startswith(HEAD_PREFIXES):
            continue  # a head: the base model doesn't use it, as in transformers
        out[key] = value
    return _drop_unused(out, config, "")


def model_to_hf_state_dict(state: StateDict, config: DebertaV2Config) -> StateDict:
    """DebertaV2Model's state dict in the layout transformers' DebertaV2Model saves (the same)."""
    return dict(state)


class DebertaV2Model(_PreTrained, nn.Module):
    """Embeddings and encoder: the DeBERTa-v2/v3 backbone."""

    hf_to_ours = staticmethod(model_from_hf_state_dict)
    ours_to_hf = staticmethod(model_to_hf_state_dict)

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.config = config
        self.embeddings = DebertaV2Embeddings(config)
        self.encoder = DebertaV2Encoder(config)
        _init_weights(self, config)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutput:
        """input_ids: (B, T); attention_mask: (B, T), 1 = real token; token_type_ids: (B, T);
        position_ids: (B or 1, T), only used with position_biased_input.

        Returns last_hidden_state (B, T, H) and, on request, hidden_states
        (num_hidden_layers + 1 of (B, T, H)) and attentions (num_hidden_layers of (B, nh, T, T)).
        labels: accepted for the common signature; the model has no head to score them.
        """
        if labels is not None:
            raise ValueError("labels: DebertaV2Model has no head to compute a loss; use DebertaV2ForMaskedLM")
        token_type_ids, position_ids, mask = _check_inputs(
            self.config, input_ids, attention_mask, token_type_ids, position_ids
        )
        x = self.embeddings(input_ids, token_type_ids, position_ids, mask)  # (B, T, H)
        return self.encoder(x, mask, output_hidden_states, output_attentions)


class LegacyDebertaV2PredictionHeadTransform(nn.Module):
    """dense H -> E, activation, layer norm."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.emb_size)
        self.act = _activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.emb_size, config.layer_norm_eps)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.LayerNorm(self.act(self.dense(hidden_states)))


class LegacyDebertaV2LMPredictionHead(nn.Module):
    """transformers' default MLM head: transform, then a decoder tied to the word embeddings.

    ``bias`` is the decoder's bias when tied; untied, the decoder has its own bias and this
    one is unused (kept so checkpoints round-trip).
    """

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.transform = LegacyDebertaV2PredictionHeadTransform(config)
        self.decoder = nn.Linear(config.emb_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.decoder(self.transform(hidden_states))  # (B, T, V)


class LegacyDebertaV2OnlyMLMHead(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.predictions = LegacyDebertaV2LMPredictionHead(config)

    def forward(self, sequence_output: Tensor) -> Tensor:
        return self.predictions(sequence_output)


class DebertaV2LMPredictionHead(nn.Module):
    """DeBERTa's original MLM head: dense, activation, layer norm, then the word embeddings
    (always shared) and a bias."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = _activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: Tensor, word_embeddings: Tensor) -> Tensor:
        h = self.LayerNorm(self.act(self.dense(hidden_states)))
        return torch.matmul(h, word_embeddings.t()) + self.bias  # (B, T, V)


class DebertaV2OnlyMLMHead(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.lm_head = DebertaV2LMPredictionHead(config)

    def forward(self, sequence_output: Tensor, word_embeddings: Tensor) -> Tensor:
        return self.lm_head(sequence_output, word_embeddings)


TIED_DECODER = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


def mlm_from_hf_state_dict(hf_state: StateDict, config: DebertaV2Config) -> StateDict:
    """A transformers DebertaV2ForMaskedLM state dict (legacy ``cls.predictions`` or the
    original ``lm_predictions`` head) as DebertaV2ForMaskedLM's."""
    has_legacy = any(k.startswith("cls.predictions.") for k in hf_state)
    has_original = any(k.startswith("lm_predictions.") for k in hf_state)
    if config.legacy and has_original and not has_legacy:
        raise CheckpointError(
            "this checkpoint has DeBERTa's original MLM head (lm_predictions.lm_head.*, as microsoft/deberta-v3-* "
            "ship it) but its config asks for the legacy head (cls.predictions.*): load it with legacy=False, "
            "e.g. DebertaV2ForMaskedLM.from_pretrained(path, legacy=False)"
        )
    if not config.legacy and has_legacy and not has_original:
        raise CheckpointError(
            "this checkpoint has the legacy MLM head (cls.predictions.*) but its config says legacy=False: "
            "load it with legacy=True"
        )
    out = {}
    for key, value in hf_state.items():
        if key.startswith("mask_predictions."):
            continue  # DeBERTa-v3's replaced-token-detection head, unused for MLM (transformers drops it too)
        if key.startswith(("embeddings.", "encoder.")):
            key = "deberta." + key  # a DebertaV2Model checkpoint: the head starts fresh, with a warning
        out[key] = value
    out = _drop_unused(out, config, "deberta.")
    if config.legacy and config.tie_word_embeddings:
        # One tensor, two names: the decoder reads the word embeddings and the head's bias.
        for key in TIED_DECODER:
            out.pop(key, None)
        if "deberta.embeddings.word_embeddings.weight" in out:
            out["cls.predictions.decoder.weight"] = out["deberta.embeddings.word_embeddings.weight"]
        if "cls.predictions.bias" in out:
            out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"]
    return out


def mlm_to_hf_state_dict(state: StateDict, config: DebertaV2Config) -> StateDict:
    """DebertaV2ForMaskedLM's state dict in the layout transformers' DebertaV2ForMaskedLM saves."""
    tied = config.legacy and config.tie_word_embeddings
    return {k: v for k, v in state.items() if not (tied and k in TIED_DECODER)}


class DebertaV2ForMaskedLM(_PreTrained, nn.Module):
    """DebertaV2Model with a masked-language-modelling head."""

    hf_to_ours = staticmethod(mlm_from_hf_state_dict)
    ours_to_hf = staticmethod(mlm_to_hf_state_dict)
    # A DebertaV2Model checkpoint has no MLM head: it starts fresh, with a warning, as in transformers.
    head_prefixes = ("cls.", "lm_predictions.")
    # With legacy and tie_word_embeddings (transformers' _tied_weights_keys).
    tied_weights = {
        "cls.predictions.decoder.weight": "deberta.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.config = config
        self.deberta = DebertaV2Model(config)
        if config.legacy:
            self.cls = LegacyDebertaV2OnlyMLMHead(config)
        else:
            self.lm_predictions = DebertaV2OnlyMLMHead(config)
        _init_weights(self, config)
        if config.legacy:
            head = self.cls.predictions
            nn.init.zeros_(head.bias)
            if config.tie_word_embeddings:
                head.decoder.weight = self.deberta.embeddings.word_embeddings.weight  # one Parameter, two uses
                head.decoder.bias = head.bias
                # ...each saved once, so that safetensors (and transformers' Trainer) can write them.
                save_tied_weights_once(self, self.tied_weights)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> MaskedLMOutput:
        """As DebertaV2Model.forward, plus logits (B, T, V) and, given labels (B, T) (-100 =
        not scored), the mean cross-entropy over the scored tokens (no shift: MLM predicts
        the token at its own position)."""
        out = self.deberta(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions,
        )
        h = out.last_hidden_state  # (B, T, H)
        if self.config.legacy:
            logits = self.cls(h)
        else:
            logits = self.lm_predictions(h, self.deberta.embeddings.word_embeddings.weight)
        loss = None
        if labels is not None:
            labels = check_labels("labels", labels, tuple(input_ids.shape), self.config.vocab_size)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
