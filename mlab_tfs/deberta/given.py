"""What the DeBERTa part gives: the config, the layer around the attention, the models.

Both ``solution.py`` and ``student.py`` import this module. The classes here that build an
exercise take the classes to build in a ``DebertaV2Parts`` (explicit composition): the
solution passes its own, ``student.py`` passes the learner's, so the given model runs the
learner's attention, embeddings, encoder and heads, and the learner's GPT-2 LayerNorm and
Embedding.

Module names mirror transformers' ``DebertaV2ForMaskedLM`` (``deberta.encoder.layer.0.
attention.self.query_proj``...), so loading a checkpoint is a name map with no transposes;
the hook points carry TransformerLens's names (``blocks.0.attn.hook_pattern``) through
``DebertaV2PreTrainedModel.hook_name_rules``. The reference for every computation is transformers'
``models/deberta_v2/modeling_deberta_v2.py``.

Shapes: B batch, T tokens, H = hidden_size, E = embedding_size, nh heads, hs = H // nh,
V vocabulary, k = att_span, so the relative table has 2k rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import nn

from mlab_tfs.activations import ACTIVATIONS, get_activation
from mlab_tfs.fused import FusedOps, fused_activation
from mlab_tfs.checkpoints import CheckpointError, PretrainedMixin, StateDict, tie_weights
from mlab_tfs.configs import (
    ConfigError, ConfigMixin, ConfigTypeError, check_bool, check_choice, check_encoder_fields, check_int,
)
from mlab_tfs.hooks import ENCODER_HOOK_ALIASES, ENCODER_HOOK_NAME_RULES, HookedRootModule, HookPoint, capture
from mlab_tfs.initialization import init_normal_weights
from mlab_tfs.inputs import check_attention_mask, check_position_ids, check_token_ids
from mlab_tfs.inputs import check_bool as check_flag  # (configs.check_bool checks a config field)
from mlab_tfs.losses import masked_lm_output, mlm_loss  # noqa: F401  (mlm_loss: re-exported, BERT's loss)
from mlab_tfs.outputs import BaseModelOutput, MaskedLMOutput

Tensor = torch.Tensor

POS_ATT_TYPES = ("c2p", "p2c")
REL_EMBEDDING_NORMS = ("none", "layer_norm")


@dataclass
class DebertaV2Config(ConfigMixin):
    """The fields of transformers' DebertaV2Config that change the computation, with its defaults.

    Several of them (position_buckets, share_att_key, norm_rel_ebd, conv_*, embedding_size)
    are not declared by transformers' class but read from the config with a default; the
    defaults here are those.
    """

    model_type: ClassVar[str] = "deberta-v2"
    architectures: ClassVar[tuple[str, ...]] = ("DebertaV2ForMaskedLM",)

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
    # (lm_predictions.lm_head, as microsoft/DeBERTa's masked-LM model names it).
    legacy: bool = True
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        """Check every field: ConfigError (a ValueError) naming it, ConfigTypeError for a wrong type."""
        check_encoder_fields(self)
        check_int(self, "conv_groups", minimum=1)
        check_int(self, "type_vocab_size", minimum=0)  # 0: no token-type embeddings
        check_int(self, "embedding_size", minimum=1, optional=True)
        check_int(self, "conv_kernel_size", minimum=0)  # 0: no convolution
        for name in ("max_relative_positions", "position_buckets"):  # < 1 means "unset"
            check_int(self, name)
        check_choice(self, "conv_act", ACTIVATIONS)
        for name in ("position_biased_input", "relative_attention", "share_att_key", "legacy"):
            check_bool(self, name)
        if not isinstance(self.norm_rel_ebd, str):
            raise ConfigTypeError(
                f"DebertaV2Config.norm_rel_ebd must be 'none' or 'layer_norm', got {self.norm_rel_ebd!r}"
            )
        self.pos_att_type = parse_pos_att_type(self.pos_att_type)
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
    def emb_size(self) -> int:
        """E: the width of the token embeddings."""
        return self.embedding_size if self.embedding_size is not None else self.hidden_size

    @property
    def head_dim(self) -> int:
        """hs: the width of one head."""
        return self.hidden_size // self.num_attention_heads

    @property
    def max_relative(self) -> int:
        """The largest relative distance the log buckets scale to."""
        return self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings

    @property
    def att_span(self) -> int:
        """k: relative distances are clamped to [-k, k), the table has 2k rows."""
        return self.position_buckets if self.position_buckets > 0 else self.max_relative

    @classmethod
    def _model_type_hint(cls, model_type: str) -> str:
        return " (DeBERTa v1, model_type 'deberta', has a different attention)" if model_type == "deberta" else ""

    @classmethod
    def _from_dict(cls, d: dict[str, Any], kwargs: dict[str, Any]) -> None:
        head_size = d.get("attention_head_size")
        if head_size is not None and head_size * d.get("num_attention_heads", 24) != d.get("hidden_size", 1536):
            raise ValueError(
                f"config has attention_head_size={head_size}: heads * head size must equal hidden_size "
                f"({d.get('hidden_size')})"
            )
        if kwargs.get("pos_att_type") is None:
            kwargs.pop("pos_att_type", None)

    def _to_dict(self, d: dict[str, Any]) -> None:
        if d["embedding_size"] is None:
            del d["embedding_size"]  # transformers reads a missing one as hidden_size, but not None


def parse_pos_att_type(value: object) -> list[str]:
    """"p2c|c2p", ["c2p"], None -> a list of "c2p"/"p2c". "none" entries (transformers' own
    tests write pos_att_type="None") mean nothing; anything else is a ConfigError naming
    DebertaV2Config.pos_att_type."""
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


@dataclass(frozen=True)
class DebertaV2Parts:
    """The classes a DeBERTa is built from: the exercises and the GPT-2 pieces they reuse.

    ``solution.PARTS`` holds the solution's; ``student.PARTS`` the learner's. The given classes
    below build what they need from here, so one given model runs either. (The exercise
    classes use their own file's LayerNorm and Embedding, GPT-2's, the same classes.)

    - layer_norm: ``LayerNorm(normalized_shape, eps)`` (GPT-2's), for the given residual blocks
      and the convolution;
    - embeddings: ``DebertaV2Embeddings(config)``;
    - attention: ``DisentangledSelfAttention(config)``;
    - encoder: ``DebertaV2Encoder(config, parts)``;
    - legacy_mlm_head: ``LegacyDebertaV2OnlyMLMHead(config)`` (``cls.predictions``);
    - mlm_head: ``DebertaV2OnlyMLMHead(config)`` (``lm_predictions.lm_head``).
    """

    layer_norm: type[nn.Module]
    embeddings: type[nn.Module]
    attention: type[nn.Module]
    encoder: type[nn.Module]
    legacy_mlm_head: type[nn.Module]
    mlm_head: type[nn.Module]


# ---------------------------------------------------------------------------------------
# The rest of a layer
# ---------------------------------------------------------------------------------------


class DebertaV2Output(nn.Module):
    """A post-LN residual: LayerNorm(input_tensor + dropout(dense(hidden_states))), after the
    MLP (``output``: dense intermediate_size -> H) or, as DebertaV2SelfOutput, after the
    attention (``attention.output``: dense H -> H).

    Hook points: ``hook_out`` (B, T, H), what is added to the residual (after the projection,
    its bias and dropout; named ``blocks.{i}.hook_mlp_out`` / ``hook_attn_out``); ``hook_sum``
    (B, T, H), the sum before the layer norm (``blocks.{i}.hook_resid_post`` / ``hook_resid_mid``),
    whose ``hook_normalized`` is the sum normalised, before weight and bias.
    """

    def __init__(self, config: DebertaV2Config, parts: DebertaV2Parts, in_features: int | None = None):
        """in_features: the dense layer's input width; None means intermediate_size."""
        super().__init__()
        self.dense = nn.Linear(in_features or config.intermediate_size, config.hidden_size)
        self.LayerNorm = parts.layer_norm(config.hidden_size, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.hook_out = HookPoint()  # (B, T, H)
        self.hook_sum = HookPoint()  # (B, T, H)

    def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        out = self.hook_out(self.dropout(self.dense(hidden_states)))
        return self.LayerNorm(self.hook_sum(out + input_tensor))


class DebertaV2SelfOutput(DebertaV2Output):
    """The residual around the attention: LayerNorm(x + dropout(dense(context))), dense H -> H."""

    def __init__(self, config: DebertaV2Config, parts: DebertaV2Parts):
        super().__init__(config, parts, in_features=config.hidden_size)


class DebertaV2Attention(nn.Module):
    """Disentangled self-attention (``parts.attention``) and its residual + layer norm."""

    def __init__(self, config: DebertaV2Config, parts: DebertaV2Parts):
        super().__init__()
        self.self = parts.attention(config)
        self.output = DebertaV2SelfOutput(config, parts)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor,
        relative_pos: Tensor | None = None,
        rel_embeddings: Tensor | None = None,
    ) -> Tensor:
        """(B, T, H) -> (B, T, H); the arguments as DisentangledSelfAttention.forward's."""
        context = self.self(hidden_states, attention_mask, relative_pos, rel_embeddings)
        return self.output(context, hidden_states)


class DebertaV2Intermediate(FusedOps, nn.Module):
    """The MLP's first half: H -> intermediate_size, then the activation.

    Hook points (TransformerLens's ``mlp.hook_pre`` / ``mlp.hook_post``): before and after the
    activation, (B, T, intermediate_size).

    Fused kernel (``mlab_tfs.fused``): by default, with no hook on hook_pre or hook_post, the
    exact ``gelu`` runs as one ``F.gelu`` on float32 / float64 input; ``self.act`` itself
    otherwise or with ``fused_ops = False``.
    """

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = get_activation(config.hidden_act)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, hidden_states: Tensor) -> Tensor:
        act = fused_activation(self.act) if self.may_fuse(self.hook_pre, self.hook_post) else self.act
        return self.hook_post(act(self.hook_pre(self.dense(hidden_states))))


class DebertaV2Layer(nn.Module):
    """One post-LN encoder layer: attention block, then MLP block.

    Hook points of the layer itself: ``hook_resid_pre`` (its input) and
    ``hook_normalized_resid_post`` (its output, after the second layer norm's weight and
    bias). Post-LN moves TransformerLens's meanings: ``hook_resid_mid`` and
    ``hook_resid_post`` are sums *before* a layer norm, and the next sub-block reads the
    normalised sum, not the sum (TransformerLens's BertBlock has the same points).
    """

    def __init__(self, config: DebertaV2Config, parts: DebertaV2Parts):
        super().__init__()
        self.hook_resid_pre = HookPoint()  # (B, T, H)
        self.attention = DebertaV2Attention(config, parts)
        self.intermediate = DebertaV2Intermediate(config)
        self.output = DebertaV2Output(config, parts)
        self.hook_normalized_resid_post = HookPoint()  # (B, T, H)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor,
        relative_pos: Tensor | None = None,
        rel_embeddings: Tensor | None = None,
    ) -> Tensor:
        """(B, T, H) -> (B, T, H); the arguments as DisentangledSelfAttention.forward's."""
        x = self.hook_resid_pre(hidden_states)
        a = self.attention(x, attention_mask, relative_pos, rel_embeddings)
        return self.hook_normalized_resid_post(self.output(self.intermediate(a), a))


class ConvLayer(nn.Module):
    """A 1-d convolution over the sequence, added to the first layer's output (DeBERTa-v2's
    "nGiE": n-gram induced input encoding; transformers' ConvLayer).

    Hook point ``hook_out`` (B, T, H): its output, which replaces the first layer's.
    """

    def __init__(self, config: DebertaV2Config, parts: DebertaV2Parts):
        super().__init__()
        H, k = config.hidden_size, config.conv_kernel_size
        self.conv = nn.Conv1d(H, H, k, padding=(k - 1) // 2, groups=config.conv_groups)
        self.LayerNorm = parts.layer_norm(H, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.act = get_activation(config.conv_act)
        self.hook_out = HookPoint()

    def forward(self, hidden_states: Tensor, residual_states: Tensor, input_mask: Tensor) -> Tensor:
        """hidden_states: the encoder's input (B, T, H); residual_states: the first layer's
        output (B, T, H); input_mask: (B, T) bool. Returns (B, T, H), zero at padding."""
        out = rearrange(self.conv(rearrange(hidden_states, "b t h -> b h t")), "b h t -> b t h")
        out = out.masked_fill(~input_mask[..., None], 0.0)
        out = self.act(self.dropout(out))
        return self.hook_out(self.LayerNorm(residual_states + out) * input_mask[..., None].to(out.dtype))


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


def init_deberta_weights(model: nn.Module, config: DebertaV2Config) -> None:
    """DeBERTa's initialisation, BERT's scheme (transformers' DebertaV2PreTrainedModel._init_weights):
    N(0, initializer_range) weights (the convolution's too), zero biases, the padding
    embedding at 0; layer norms keep their constructor's 1 and 0. An embedding table is any
    module with a ``padding_idx`` attribute and a ``weight`` (GPT-2's Embedding, the
    solution's or the learner's)."""
    init_normal_weights(model, config.initializer_range)


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


# Module paths -> TransformerLens-style hook names, applied in order (HookedRootModule):
# mlab_tfs.hooks.ENCODER_HOOK_NAME_RULES, plus DeBERTa's own points.
DEBERTA_HOOK_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"^deberta\.", ""),
    (r"^embeddings\.hook_full_embed$", "hook_full_embed"),
    *ENCODER_HOOK_NAME_RULES,  # embed.hook_embed, as BERT's (TransformerLens's HookedEncoder)
    (r"^encoder\.layer\.(\d+)\.attention\.output\.hook_out$", r"blocks.\1.hook_attn_out"),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.hook_sum$", r"blocks.\1.hook_resid_mid"),
    (r"^encoder\.layer\.(\d+)\.output\.hook_out$", r"blocks.\1.hook_mlp_out"),
    (r"^encoder\.layer\.(\d+)\.output\.hook_sum$", r"blocks.\1.hook_resid_post"),
    (r"^encoder\.layer\.(\d+)\.", r"blocks.\1."),
    (r"^encoder\.conv\.LayerNorm\.", "conv.ln."),
    (r"^encoder\.LayerNorm\.", "ln_rel."),
    (r"^encoder\.", ""),
    (r"^(cls\.predictions\.transform|lm_predictions\.lm_head)\.LayerNorm\.", "mlm_head.ln."),
)


# The order in which a layer's forward pass reaches its hook points (as in
# TransformerLens's BertBlock, plus DeBERTa's relative terms).
BLOCK_HOOK_ORDER = (
    "hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_c2p_scores", "attn.hook_p2c_scores",
    "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
    "ln1.hook_scale", "ln1.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
    "ln2.hook_scale", "ln2.hook_normalized", "hook_normalized_resid_post",
)
EMBED_HOOK_ORDER = ("embed.hook_embed", "embed.hook_pos_embed", "embed.hook_token_type_embed", "embed.ln.hook_scale",
                    "embed.ln.hook_normalized", "hook_full_embed")


def hook_order(name: str) -> tuple[int, int, int, int]:
    """Sort key of a hook name in forward order (``HookedRootModule.hook_order``): the
    embeddings, the relative table (its layer norm, then ``hook_rel_embeddings``), the layers
    (the convolution right after layer 0, which it follows), the MLM head. The modules keep
    transformers' layout, which builds the table and the convolution after the layers."""
    block = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
    if block:
        rest = block[2]
        rank = BLOCK_HOOK_ORDER.index(rest) if rest in BLOCK_HOOK_ORDER else len(BLOCK_HOOK_ORDER)
        return (2, int(block[1]), 0, rank)
    if name in EMBED_HOOK_ORDER:
        return (0, 0, 0, EMBED_HOOK_ORDER.index(name))
    if name.startswith("ln_rel."):
        return (1, 0, 0, 0)
    if name == "hook_rel_embeddings":
        return (1, 0, 0, 1)
    if name.startswith("conv."):
        return (2, 0, 1, 0)
    return (3, 0, 0, 0)  # the MLM head's layer norm


def _parts_of(model: nn.Module, parts: DebertaV2Parts | None) -> DebertaV2Parts:
    parts = parts if parts is not None else getattr(type(model), "parts", None)
    if not isinstance(parts, DebertaV2Parts):
        raise TypeError(f"{type(model).__name__} needs parts=DebertaV2Parts(...), got {parts!r}: build "
                        f"mlab_tfs.deberta.solution's (or student's) {type(model).__name__}, which set their own")
    return parts


def _pattern_point(attention: nn.Module) -> HookPoint:
    """The attention's hook_pattern, where output_attentions is read."""
    point = getattr(attention, "hook_pattern", None)
    if not isinstance(point, HookPoint):
        raise TypeError(f"output_attentions=True reads the attention probabilities at {type(attention).__name__}."
                        f"hook_pattern, a HookPoint; this attention has {point!r} there (see GUIDE.md, exercise 5)")
    return point


class DebertaV2PreTrainedModel(HookedRootModule, PretrainedMixin):
    """What every DeBERTa model class shares (transformers' base class name): from_pretrained /
    save_pretrained (see mlab_tfs.checkpoints) and the hook points under TransformerLens-style
    names (``run_with_cache``, ``run_with_hooks``, see mlab_tfs.hooks)."""

    config_class = DebertaV2Config
    hook_name_rules = DEBERTA_HOOK_NAME_RULES
    hook_aliases = ENCODER_HOOK_ALIASES
    hook_order = staticmethod(hook_order)
    # transformers' names: the body's attribute in a head, the word embedding's in the body.
    base_model_prefix, input_embeddings_name = "deberta", "embeddings.word_embeddings"


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


class DebertaV2Model(DebertaV2PreTrainedModel, nn.Module):
    """Embeddings and encoder: the DeBERTa-v2/v3 backbone, built from ``parts`` (a class
    attribute: ``solution.DebertaV2Model`` and ``student.DebertaV2Model`` set their own).

    Hook points (``model.hook_dict`` lists them; TransformerLens's names where the concept
    exists): ``embed.hook_embed`` (B, T, E) the word embeddings, ``embed.hook_pos_embed`` (B, T, E)
    with position_biased_input, ``embed.hook_token_type_embed`` (B, T, E) with token types,
    ``embed.ln.hook_normalized``, ``hook_full_embed`` (B, T, H) the embeddings' output;
    ``hook_rel_embeddings`` (2k, H) the relative table every layer reads (after its layer
    norm, ``ln_rel``); per layer i, ``blocks.{i}.hook_resid_pre``, ``blocks.{i}.attn.hook_q``
    / ``hook_k`` / ``hook_v`` / ``hook_z`` (B, T, nh, hs), ``blocks.{i}.attn.hook_c2p_scores``
    / ``hook_p2c_scores`` / ``hook_attn_scores`` / ``hook_pattern`` (B, nh, T, T),
    ``blocks.{i}.hook_attn_out``, ``blocks.{i}.hook_resid_mid``, ``blocks.{i}.ln1.hook_normalized``,
    ``blocks.{i}.mlp.hook_pre`` / ``hook_post``, ``blocks.{i}.hook_mlp_out``,
    ``blocks.{i}.hook_resid_post``, ``blocks.{i}.ln2.hook_normalized``,
    ``blocks.{i}.hook_normalized_resid_post``; ``conv.hook_out`` with the convolution.

    Post-LN: ``hidden_states[0]`` is ``hook_full_embed``, and ``hidden_states[i + 1]`` is
    ``blocks.{i}.hook_normalized_resid_post`` (except after the convolution, which replaces
    layer 0's output: ``hidden_states[1]`` is ``conv.hook_out``); ``attentions[i]`` is
    ``blocks.{i}.attn.hook_pattern`` (before the attention dropout; transformers' are after it,
    the same in eval mode). DeBERTa has one attention path, the hand-written one, so hooks never
    change which path runs.
    """

    parts: ClassVar[DebertaV2Parts]
    hf_to_ours = staticmethod(model_from_hf_state_dict)
    ours_to_hf = staticmethod(model_to_hf_state_dict)

    def __init__(self, config: DebertaV2Config, parts: DebertaV2Parts | None = None):
        """parts: the classes to build from; None means the class's own ``parts``."""
        super().__init__()
        self.config = config
        self.parts = _parts_of(self, parts)
        self.embeddings = self.parts.embeddings(config)
        self.encoder = self.parts.encoder(config, self.parts)
        init_deberta_weights(self, config)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None, output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """input_ids: (B, T); attention_mask: (B, T), 1 = real token; token_type_ids: (B, T);
        position_ids: (B or 1, T), only used with position_biased_input.

        Returns last_hidden_state (B, T, H) and, on request, hidden_states
        (num_hidden_layers + 1 of (B, T, H)) and attentions (num_hidden_layers of (B, nh, T, T)),
        equal to transformers' DebertaV2Model's, gathered from the hook points. ValueError or
        TypeError naming a bad argument.
        """
        token_type_ids, position_ids, mask = _check_inputs(
            self.config, input_ids, attention_mask, token_type_ids, position_ids
        )
        output_hidden_states = check_flag("output_hidden_states", output_hidden_states)
        output_attentions = check_flag("output_attentions", output_attentions)
        layers = list(self.encoder.layer)
        last = self.encoder.conv.hook_out if len(layers) == 1 and hasattr(self.encoder, "conv") else (
            layers[-1].hook_normalized_resid_post)
        hidden_points = [layer.hook_resid_pre for layer in layers] + [last] if output_hidden_states else []
        pattern_points = [_pattern_point(layer.attention.self) for layer in layers] if output_attentions else []
        with capture(hidden_points) as hidden, capture(pattern_points) as patterns:
            x = self.embeddings(input_ids, token_type_ids, position_ids, mask)  # (B, T, H)
            x = self.encoder(x, mask)
        return BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(patterns) if output_attentions else None,
        )


TIED_DECODER = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


def mlm_from_hf_state_dict(hf_state: StateDict, config: DebertaV2Config) -> StateDict:
    """A transformers DebertaV2ForMaskedLM state dict (legacy ``cls.predictions`` or the
    original ``lm_predictions`` head) as DebertaV2ForMaskedLM's."""
    has_legacy = any(k.startswith("cls.predictions.") for k in hf_state)
    has_original = any(k.startswith("lm_predictions.") for k in hf_state)
    if config.legacy and has_original and not has_legacy:
        raise CheckpointError(
            "this checkpoint has DeBERTa's original MLM head (lm_predictions.lm_head.*, as microsoft/DeBERTa's "
            "code saves it) but its config asks for the legacy head (cls.predictions.*): load it with legacy=False, "
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


class DebertaV2ForMaskedLM(DebertaV2PreTrainedModel, nn.Module):
    """DebertaV2Model with a masked-language-modelling head, built from ``parts`` (a class
    attribute, as DebertaV2Model's). Hook names are DebertaV2Model's (the ``deberta.`` prefix
    is dropped), plus ``mlm_head.ln.hook_normalized``."""

    parts: ClassVar[DebertaV2Parts]
    hf_to_ours = staticmethod(mlm_from_hf_state_dict)
    ours_to_hf = staticmethod(mlm_to_hf_state_dict)
    # A DebertaV2Model checkpoint has no MLM head: it starts fresh, with a warning, as in transformers.
    head_prefixes = ("cls.", "lm_predictions.")
    # With legacy and tie_word_embeddings (transformers' _tied_weights_keys).
    tied_weights = {
        "cls.predictions.decoder.weight": "deberta.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: DebertaV2Config, parts: DebertaV2Parts | None = None):
        """parts: the classes to build from; None means the class's own ``parts``."""
        super().__init__()
        self.config = config
        self.parts = _parts_of(self, parts)
        self.deberta = DebertaV2Model(config, self.parts)
        if config.legacy:
            self.cls = self.parts.legacy_mlm_head(config)
        else:
            self.lm_predictions = self.parts.mlm_head(config)
        init_deberta_weights(self, config)
        if config.legacy:
            nn.init.zeros_(self.cls.predictions.bias)
            if config.tie_word_embeddings:
                tie_weights(self, self.tied_weights)  # the decoder reads the word embeddings and the head's bias

    def get_output_embeddings(self) -> nn.Module:
        """As transformers' DebertaV2ForMaskedLM.get_output_embeddings
        (models/deberta_v2/modeling_deberta_v2.py): legacy, the decoder ``cls.predictions.decoder``
        (weight (V, H), tied to the word embedding); else the original head's
        ``lm_predictions.lm_head.dense`` (weight (H, H): that head multiplies by the word
        embedding itself and has no decoder)."""
        if self.config.legacy:
            return self.cls.predictions.decoder
        return self.lm_predictions.lm_head.dense

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None, labels: Tensor | None = None, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> MaskedLMOutput:
        """As DebertaV2Model.forward, plus logits (B, T, V) and, given labels (B, T) (-100 =
        not scored), mlm_loss of them."""
        out = self.deberta(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        h = out.last_hidden_state  # (B, T, H)
        if self.config.legacy:
            logits = self.cls(h)
        else:
            logits = self.lm_predictions(h, self.deberta.embeddings.word_embeddings.weight)
        return masked_lm_output(out, logits, labels)
