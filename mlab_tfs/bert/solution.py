"""BERT from scratch: the solution.

Module names mirror Hugging Face's ``BertModel`` (``embeddings.word_embeddings``,
``encoder.layer.0.attention.self.query``...), so loading a checkpoint is a name map:
no transposes (BERT uses plain linear layers), only prefixes and the tied MLM decoder.

Shapes: B batch, T tokens (queries), S = T keys, C = hidden_size, nh heads,
hs = C // nh head size, I = intermediate_size, V vocabulary, L = num_labels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mlab_tfs.attention import (  # noqa: F401  (additive_mask: exercise 3's reference, re-exported)
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
from mlab_tfs.inputs import (
    check_attention_mask,
    check_classification_labels,
    check_labels,
    check_position_ids,
    check_token_ids,
    check_token_type_ids,
)
from mlab_tfs.outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

Tensor = torch.Tensor

ACTIVATIONS = ("gelu", "gelu_python", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


@dataclass
class BertConfig:
    """The fields of transformers' BertConfig that change the computation, with its defaults."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"  # the exact, erf GELU
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    classifier_dropout: float | None = None  # None: hidden_dropout_prob
    tie_word_embeddings: bool = True
    # Sequence classification (fields of transformers' PreTrainedConfig).
    num_labels: int = 2
    id2label: dict[int, str] | None = None  # None: LABEL_0, LABEL_1, ...
    problem_type: str | None = None  # None: chosen from num_labels and the labels' dtype
    # Which attention path runs: "sdpa" (transformers' default) or "eager" (hand-written);
    # the same function. transformers keeps it as config._attn_implementation.
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        """Check every field: ConfigError (a ValueError) naming it, ConfigTypeError for a wrong type."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "num_labels"):
            check_int(self, name, minimum=1)
        check_divisible(self, "hidden_size", "num_attention_heads")
        check_choice(self, "hidden_act", ACTIVATIONS)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            check_probability(self, name)
        check_probability(self, "classifier_dropout", optional=True)
        check_float(self, "layer_norm_eps", low=0.0, low_open=True)  # inside a sqrt: > 0
        check_float(self, "initializer_range", low=0.0)
        check_token_id(self, "pad_token_id", self.vocab_size)  # the embedding's padding row
        check_bool(self, "tie_word_embeddings")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"BertConfig.attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {self.attn_implementation!r}"
            )
        check_choice(self, "problem_type", PROBLEM_TYPES, optional=True)
        if self.id2label is not None:
            if not isinstance(self.id2label, dict):
                raise ConfigTypeError(f"BertConfig.id2label must be a dict of class id -> name or None, "
                                      f"got {type(self.id2label).__name__}")
            try:
                self.id2label = {int(k): v for k, v in self.id2label.items()}  # JSON keys are strings
            except (TypeError, ValueError) as e:
                raise ConfigError(f"BertConfig.id2label keys must be class ids 0..num_labels-1, "
                                  f"got {list(self.id2label)}") from e
            if sorted(self.id2label) != list(range(self.num_labels)):
                raise ConfigError(f"BertConfig.id2label must name the classes 0..{self.num_labels - 1} "
                                  f"(num_labels={self.num_labels}), got ids {sorted(self.id2label)}")
            if not all(isinstance(v, str) for v in self.id2label.values()):
                raise ConfigTypeError(f"BertConfig.id2label names must be strings, got {list(self.id2label.values())}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BertConfig":
        """Read a Hugging Face config.json's contents; fields we don't use are ignored."""
        d = config_dict(cls.__name__, d)
        if d.get("model_type", "bert") != "bert":
            raise ValueError(
                f"config has model_type {d['model_type']!r}; BERT loads checkpoints with model_type 'bert'"
            )
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise ValueError("config has is_decoder or add_cross_attention set; this BERT is an encoder only")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"config has position_embedding_type {d['position_embedding_type']!r}; "
                "this BERT has absolute position embeddings only"
            )
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        # transformers stores the number of labels as the size of id2label.
        if "num_labels" not in d and d.get("id2label"):
            kwargs["num_labels"] = len(d["id2label"])
        if "num_labels" in d and d.get("id2label") and len(d["id2label"]) != d["num_labels"]:
            kwargs.pop("id2label")  # an override of num_labels wins over the stored label names
        if "_attn_implementation" in d and "attn_implementation" not in d and d["_attn_implementation"]:
            kwargs["attn_implementation"] = d["_attn_implementation"]
        return cls(**kwargs)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "BertConfig":
        """The config of a checkpoint folder. CheckpointError naming config.json if it is
        missing or not a JSON object; ConfigError naming the field for a bad value."""
        return cls.from_dict(read_config(Path(folder)))

    def to_dict(self) -> dict[str, Any]:
        """A config.json that transformers' BertConfig reads back to the same model."""
        d = asdict(self)
        d.pop("attn_implementation")
        d.pop("num_labels")  # transformers derives it from id2label
        id2label = self.id2label or {i: f"LABEL_{i}" for i in range(self.num_labels)}
        d["id2label"] = {str(i): name for i, name in id2label.items()}
        d["label2id"] = {name: i for i, name in id2label.items()}
        d.update(model_type="bert", architectures=["BertModel"], is_decoder=False, add_cross_attention=False,
                 position_embedding_type="absolute")
        return d


# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """Normalise the last dimension to mean 0, variance 1, then scale and shift."""

    def __init__(self, normalized_shape: int, eps: float = 1e-12):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x: Tensor) -> Tensor:  # (..., C) -> (..., C)
        x32 = x.float()  # statistics in fp32 even when the model runs in half precision
        mean = x32.mean(dim=-1, keepdim=True)
        var = (x32 - mean).pow(2).mean(dim=-1, keepdim=True)  # biased, as in the paper
        x_hat = (x32 - mean) / torch.sqrt(var + self.eps)  # eps inside the sqrt
        return (x_hat * self.weight + self.bias).to(x.dtype)


class Embedding(nn.Module):
    """A lookup table: row i of ``weight`` is the vector for id i.

    With ``padding_idx``, the row of the padding id gets no gradient (as torch's
    nn.Embedding(padding_idx=...), which transformers' BERT uses for its word embeddings).
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


class BertEmbeddings(nn.Module):
    """word + position + token type embeddings, then layer norm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        """input_ids (B, T); token_type_ids and position_ids (B or 1, T). Returns (B, T, C)."""
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


def padding_mask(attention_mask: Tensor) -> Tensor:
    """attention_mask (B, S), 1 = real token -> bool (B, 1, 1, S), True where a key may be seen.

    BERT attends in both directions, so the only mask is on keys: no query looks at padding.
    Padding *queries* still attend to the real tokens; their outputs are ignored downstream.
    """
    return attention_mask.bool()[:, None, None, :]


def attention_pattern(q: Tensor, k: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """Softmax attention probabilities.

    q: (B, nh, T, hs), k: (B, nh, S, hs), mask: bool broadcastable to (B, nh, T, S),
    True where query t may look at key s. Returns (B, nh, T, S); the row of a query that
    sees no key (an all-padding sequence) is uniform, as on transformers' eager path.

    The masked scores are *filled* with finfo.min: in float32 that equals adding
    additive_mask(mask) (transformers' eager path), but in float16 a score of -16 or less
    plus finfo.min (-65504) rounds to -inf, and a row of -inf is NaN, in the forward and,
    even after BertSelfAttention zeroes the row, in the backward. A mask that is not bool is a
    TypeError naming it.
    """
    check_bool_mask("attention_pattern: mask", mask)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, nh, T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


class BertSelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: separate query, key and value projections."""

    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim**-0.5
        self.query = nn.Linear(C, C)
        self.key = nn.Linear(C, C)
        self.value = nn.Linear(C, C)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.config = config  # the model's own: attn_implementation is read at every forward

    def forward(
        self, x: Tensor, mask: Tensor | None = None, output_attentions: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, C); mask: bool (B, 1, 1, S), True = attend.

        Returns (heads merged (B, T, C), before the output projection; pattern (B, nh, T, S)
        if output_attentions else None). A query that sees no key (all of an all-padding
        sequence) outputs 0 and has a pattern row of 0 on both paths, as transformers'
        default sdpa path (its eager path gives the row a uniform pattern instead). A mask
        that is not bool (transformers' additive float mask, a 0/1 integer one) is a
        TypeError naming it.
        """
        check_bool_mask("BertSelfAttention: mask", mask)
        q, k, v = (rearrange(lin(x), "b t (nh hs) -> b nh t hs", nh=self.num_attention_heads)
                   for lin in (self.query, self.key, self.value))
        pattern = None
        path = check_attn_implementation(self.config.attn_implementation, "config.attn_implementation")
        if path == "sdpa" and not output_attentions:
            y = sdpa(q, k, v, mask, self.scale, self.dropout.p if self.training else 0.0)
        else:
            pattern = attention_pattern(q, k, mask, self.scale)
            if mask is not None:
                # A query that sees no key (every position of an all-padding sequence) outputs
                # zero, as on transformers' default sdpa path, instead of a uniform average.
                pattern = pattern.masked_fill(~sees_any_key(mask), 0.0)
            y = torch.matmul(self.dropout(pattern), v)  # (B, nh, T, hs)
        return rearrange(y, "b nh t hs -> b t (nh hs)"), pattern if output_attentions else None


class BertSelfOutput(nn.Module):
    """Output projection, dropout, then the post-LN residual: LayerNorm(x + dense(y))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, y: Tensor, x: Tensor) -> Tensor:  # y: attention heads (B, T, C), x: block input (B, T, C)
        return self.LayerNorm(self.dropout(self.dense(y)) + x)


class BertAttention(nn.Module):
    """Self-attention with its output projection and residual layer norm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, output_attentions: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, C). Returns (LayerNorm(x + attention(x)) (B, T, C), pattern or None)."""
        y, pattern = self.self(x, mask, output_attentions)
        return self.output(y, x), pattern


def gelu(x: Tensor) -> Tensor:
    """The exact GELU, x * Phi(x) with Phi the standard normal CDF (Hendrycks & Gimpel 2016)."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _activation(name: str):
    """The activation a config's hidden_act names; BERT checkpoints say "gelu" (erf)."""
    if name in ("gelu", "gelu_python"):
        return gelu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "relu":
        return torch.relu
    if name in ("silu", "swish"):
        return lambda x: x * torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh
    raise ValueError(f"unknown hidden_act {name!r}; expected one of {ACTIVATIONS}")


class BertIntermediate(nn.Module):
    """First half of the MLP: C -> I, then the activation."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = _activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, I)
        return self.act(self.dense(x))


class BertOutput(nn.Module):
    """Second half of the MLP: I -> C, dropout, then the post-LN residual."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:  # h: (B, T, I), x: the MLP's input (B, T, C)
        return self.LayerNorm(self.dropout(self.dense(h)) + x)


class BertLayer(nn.Module):
    """Post-LN transformer block: x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, output_attentions: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, C). Returns (block output (B, T, C), pattern or None)."""
        x, pattern = self.attention(x, mask, output_attentions)
        return self.output(self.intermediate(x), x), pattern


class BertEncoder(nn.Module):
    """num_hidden_layers BertLayers in a row."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(
        self, x: Tensor, mask: Tensor | None = None, output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, ...] | None, tuple[Tensor, ...] | None]:
        """x: (B, T, C), the embeddings. Returns (last layer's output (B, T, C),
        hidden_states: the embeddings then every layer's output (num_hidden_layers + 1) or None,
        attentions: one (B, nh, T, S) per layer or None)."""
        hidden_states = [x]
        attentions = []
        for layer in self.layer:
            x, pattern = layer(x, mask, output_attentions)
            hidden_states.append(x)
            attentions.append(pattern)
        return (x, tuple(hidden_states) if output_hidden_states else None,
                tuple(attentions) if output_attentions else None)


class BertPooler(nn.Module):
    """tanh(dense(hidden state of the first token, [CLS]))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, C)
        return torch.tanh(self.dense(x[:, 0]))


# ---------------------------------------------------------------------------------------
# Hugging Face checkpoints
# ---------------------------------------------------------------------------------------

# Which model a state dict belongs to; each has its own layout.
TARGETS = ("model", "mlm", "classifier")
# Keys of other heads that a checkpoint may carry and a target simply doesn't use.
UNUSED = {
    "model": ("cls.", "classifier."),  # a BertModel is the body of any BERT checkpoint
    "mlm": ("bert.pooler.", "cls.seq_relationship.", "classifier."),  # BertForMaskedLM has no pooler
    "classifier": ("cls.",),  # the pre-training heads of a checkpoint fine-tuned from
}
DECODER = "cls.predictions.decoder.weight"
WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"


def from_hf_state_dict(hf_state: StateDict, config: BertConfig, target: str = "model") -> StateDict:
    """A Hugging Face BERT state dict (BertModel, BertForMaskedLM, BertForPreTraining or
    BertForSequenceClassification, with or without the ``bert.`` prefix) as the state
    dict of our BertModel (target "model"), BertForMaskedLM ("mlm") or
    BertForSequenceClassification ("classifier"). Keys that don't fit are left for
    the loader to report."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    hf_state = dict(hf_state)
    decoder_bias = hf_state.pop("cls.predictions.decoder.bias", None)
    if decoder_bias is not None and config.tie_word_embeddings:
        # Tied, it is a second copy of predictions.bias (older checkpoints store both).
        hf_state.setdefault("cls.predictions.bias", decoder_bias)
    elif decoder_bias is not None:
        # Untied, transformers' decoder adds its own bias; predictions.bias is then unused.
        hf_state["cls.predictions.bias"] = decoder_bias
    full: StateDict = {}  # every key in the layout of the models with a head: bert.* / cls.* / classifier.*
    for key, value in hf_state.items():
        if key.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):
            continue  # buffers of older transformers, rebuilt on the fly
        # TF-converted checkpoints name layer-norm parameters gamma and beta.
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if not key.startswith(("bert.", "cls.", "classifier.")):
            key = "bert." + key
        full[key] = value
    if target == "mlm" and config.tie_word_embeddings and WORD_EMBEDDINGS in full:
        full[DECODER] = full[WORD_EMBEDDINGS]  # one tensor, two names: the decoder reads the embedding
    ours = {k: v for k, v in full.items() if not k.startswith(UNUSED[target])}
    if target == "model":  # HF's BertModel has no prefix
        ours = {k.removeprefix("bert."): v for k, v in ours.items()}
    return ours


def to_hf_state_dict(state: StateDict, config: BertConfig, target: str = "model") -> StateDict:
    """Our state dict in the layout transformers' matching class saves."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    hf = dict(state)
    if target == "mlm" and config.tie_word_embeddings:
        hf.pop(DECODER, None)  # transformers rebuilds it from the word embeddings
    elif target == "mlm":
        # Untied, transformers also ties decoder.bias to predictions.bias only once loaded: store both.
        hf["cls.predictions.decoder.bias"] = hf["cls.predictions.bias"]
    return hf


def _init_bert_weights(model: nn.Module, config: BertConfig) -> None:
    """BERT's initialisation: N(0, initializer_range) weights, zero biases, layer norms
    at 1 and 0, the padding id's embedding at zero."""
    for module in model.modules():
        # Embeddings recognised by class name, so this also initialises student.py's.
        is_embedding = type(module).__name__ == "Embedding"
        if isinstance(module, nn.Linear) or is_embedding:
            nn.init.normal_(module.weight, mean=0.0, std=config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if is_embedding and getattr(module, "padding_idx", None) is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


class BertPreTrainedModel(AttnImplementationMixin, PretrainedMixin):
    """from_pretrained / save_pretrained for the BERT models (see mlab_tfs.checkpoints).

    A checkpoint without the model's head (MiniLM, a BertModel, into BertForMaskedLM or
    BertForSequenceClassification) loads with that head freshly initialised and a warning,
    as in transformers; ``new_head=True`` says you expect it. Every other key must fit.
    """

    config_class = BertConfig
    head_prefixes: tuple[str, ...] = ()  # keys a fresh head may supply


# ---------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------


class BertModel(BertPreTrainedModel, nn.Module):
    """Embeddings, num_hidden_layers post-LN blocks and (optionally) the pooler."""

    target = "model"
    head_prefixes = ("pooler.",)
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "model"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "model"))

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        _init_bert_weights(self, config)

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
        """input_ids (B, T); attention_mask (B, T), 1 = real token; token_type_ids and
        position_ids (B, T), (1, T) or (T,).

        Returns last_hidden_state (B, T, C), pooler_output (B, C) (with a pooler) and, on
        request, hidden_states (num_hidden_layers + 1 of (B, T, C)) and attentions
        (num_hidden_layers of (B, nh, T, T)).
        """
        if labels is not None:
            raise ValueError(
                "labels: BertModel has no head to compute a loss; use BertForMaskedLM or BertForSequenceClassification"
            )
        cfg = self.config
        check_token_ids("input_ids", input_ids, cfg.vocab_size)
        B, T = input_ids.shape
        if T > cfg.max_position_embeddings:
            raise ValueError(
                f"input_ids has {T} tokens, but the model has max_position_embeddings="
                f"{cfg.max_position_embeddings}: split or truncate the input"
            )
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device)[None]  # (1, T)
        else:
            position_ids = check_position_ids("position_ids", position_ids, (B, T), cfg.max_position_embeddings)
        if token_type_ids is None:
            token_type_ids = torch.zeros(1, T, dtype=torch.long, device=input_ids.device)  # all sentence A
        else:
            token_type_ids = check_token_type_ids("token_type_ids", token_type_ids, (B, T), cfg.type_vocab_size)
        mask = None
        if attention_mask is not None:
            mask = padding_mask(check_attention_mask("attention_mask", attention_mask, (B, T)))  # (B, 1, 1, T)

        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, C)
        x, hidden_states, attentions = self.encoder(x, mask, output_hidden_states, output_attentions)
        return BaseModelOutput(
            last_hidden_state=x,
            pooler_output=self.pooler(x) if self.pooler is not None else None,
            hidden_states=hidden_states,
            attentions=attentions,
        )


class BertPredictionHeadTransform(nn.Module):
    """The MLM head's first step: dense -> activation -> layer norm, (B, T, C) -> (B, T, C)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = _activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """transform, then the decoder to the vocabulary plus its own bias."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)  # tied to word embeddings
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))  # the decoder's own bias, never tied

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, V)
        return self.decoder(self.transform(x)) + self.bias


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the labelled positions (labels -100 are ignored). No shift:
    position t predicts its own (masked) token. logits (B, T, V), labels (B, T)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


class BertForMaskedLM(BertPreTrainedModel, nn.Module):
    """BertModel (no pooler) with the masked-language-modelling head."""

    target = "mlm"
    head_prefixes = ("cls.",)
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "mlm"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "mlm"))
    tied_weights = {DECODER: WORD_EMBEDDINGS}  # with tie_word_embeddings

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        # HF's head sits at cls.predictions; a ModuleDict gives that name without another class.
        self.cls = nn.ModuleDict(dict(predictions=BertLMPredictionHead(config)))
        _init_bert_weights(self.cls, config)
        if config.tie_word_embeddings:
            # One Parameter, two uses: its gradient is the sum of the lookup's and the decoder's.
            self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
            # ...saved once, so that safetensors (and transformers' Trainer) can write it.
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
        """As BertModel.forward, plus logits (B, T, V) and, given labels (B, T), the loss."""
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions,
        )
        logits = self.cls.predictions(out.last_hidden_state)  # (B, T, V)
        loss = None
        if labels is not None:
            loss = mlm_loss(logits, check_labels("labels", labels, tuple(input_ids.shape), self.config.vocab_size))
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


def problem_type_of(config: BertConfig, labels: Tensor) -> str:
    """The loss transformers picks: the config's problem_type, else regression for one
    label, single-label classification for integer labels, multi-label for float labels."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def classification_loss(logits: Tensor, labels: Tensor, problem_type: str) -> Tensor:
    """logits (B, L); labels (B,) class ids (single label), (B,) or (B, L) targets (regression),
    (B, L) 0/1 targets (multi-label). Returns a scalar."""
    if problem_type == "regression":
        labels = labels.to(logits.dtype)
        if logits.shape[-1] == 1:
            return F.mse_loss(logits.squeeze(-1), labels.reshape(logits.shape[0]))
        return F.mse_loss(logits, labels)
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits, labels.reshape(-1), ignore_index=-100)
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}")


class BertForSequenceClassification(BertPreTrainedModel, nn.Module):
    """BertModel, then dropout and a linear classifier on the pooled [CLS] vector."""

    target = "classifier"
    # transformers' BertForMaskedLM has no pooler: fine-tuning from one starts it fresh too.
    head_prefixes = ("classifier.", "bert.pooler.")
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "classifier"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "classifier"))

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        _init_bert_weights(self.classifier, config)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> SequenceClassifierOutput:
        """As BertModel.forward, plus logits (B, L) and, given labels, the loss."""
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions,
        )
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, L)
        loss = None
        if labels is not None:
            problem_type = problem_type_of(self.config, labels)
            labels = check_classification_labels("labels", labels, input_ids.shape[0], self.num_labels, problem_type)
            loss = classification_loss(logits, labels, problem_type)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        attentions=out.attentions)
