"""What the BERT part gives the learner: the config, the weight initialisation, the
pretrained base class (loading, saving, hook points) and the constants of the checkpoint
layout. ``solution.py`` and ``student.py`` both import them from here.

Sources: ``transformers/models/bert/configuration_bert.py`` (the config),
``transformers/models/bert/modeling_bert.py`` (``BertPreTrainedModel._init_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from mlab_tfs.attention import ATTN_IMPLEMENTATIONS, AttnImplementationMixin
from mlab_tfs.checkpoints import PretrainedMixin
from mlab_tfs.configs import (
    ConfigError, ConfigMixin, ConfigTypeError, check_choice, check_encoder_fields, check_int, check_probability,
)
from mlab_tfs.hooks import ENCODER_HOOK_ALIASES, ENCODER_HOOK_NAME_RULES, HookedRootModule
from mlab_tfs.initialization import init_normal_weights

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


@dataclass
class BertConfig(ConfigMixin):
    """The fields of transformers' BertConfig that change the computation, with its defaults.

    ``from_dict`` reads a config.json (ValueError for another model_type, a decoder, or
    relative position embeddings; ConfigError naming a field with a bad value); ``to_dict``
    writes one that transformers' BertConfig reads back to the same model.
    """

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

    model_type: ClassVar[str] = "bert"
    architectures: ClassVar[tuple[str, ...]] = ("BertModel",)
    unsupported: ClassVar[dict[str, Any]] = {
        "is_decoder": False, "add_cross_attention": False, "position_embedding_type": "absolute",
    }
    not_written: ClassVar[tuple[str, ...]] = ("attn_implementation", "num_labels")  # num_labels: len(id2label)

    def __post_init__(self) -> None:
        """Check every field: ConfigError (a ValueError) naming it, ConfigTypeError for a wrong type."""
        check_encoder_fields(self)
        for name in ("type_vocab_size", "num_labels"):
            check_int(self, name, minimum=1)
        check_probability(self, "classifier_dropout", optional=True)
        check_choice(self, "attn_implementation", ATTN_IMPLEMENTATIONS)
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
        """hs: the width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def _from_dict(cls, d: dict[str, Any], kwargs: dict[str, Any]) -> None:
        # transformers stores the number of labels as the size of id2label.
        if "num_labels" not in d and d.get("id2label"):
            kwargs["num_labels"] = len(d["id2label"])
        if "num_labels" in d and d.get("id2label") and len(d["id2label"]) != d["num_labels"]:
            kwargs.pop("id2label")  # an override of num_labels wins over the stored label names

    def _to_dict(self, d: dict[str, Any]) -> None:
        id2label = self.id2label or {i: f"LABEL_{i}" for i in range(self.num_labels)}
        d["id2label"] = {str(i): name for i, name in id2label.items()}
        d["label2id"] = {name: i for i, name in id2label.items()}


def init_bert_weights(model: nn.Module, config: BertConfig) -> None:
    """BERT's initialisation (transformers' ``BertPreTrainedModel._init_weights``), in place:
    N(0, initializer_range) linear and embedding weights, zero biases, the padding id's
    embedding row at zero. Layer norms keep their construction values (weight 1, bias 0).

    mlab_tfs.initialization.init_normal_weights: a learner's own Embedding is initialised too."""
    init_normal_weights(model, config.initializer_range)


# The checkpoint layout: a BertForMaskedLM's tied decoder and the word embedding it reads.
DECODER = "cls.predictions.decoder.weight"
WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"
# Which model a state dict belongs to; each has its own layout.
TARGETS = ("model", "mlm", "classifier")
# Keys of other heads that a checkpoint may carry and a target simply doesn't use.
UNUSED = {
    "model": ("cls.", "classifier."),  # a BertModel is the body of any BERT checkpoint
    "mlm": ("bert.pooler.", "cls.seq_relationship.", "classifier."),  # BertForMaskedLM has no pooler
    "classifier": ("cls.",),  # the pre-training heads of a checkpoint fine-tuned from
}

# Module paths -> TransformerLens's HookedEncoder names, applied in order on the path below
# the root (mlab_tfs.hooks.ENCODER_HOOK_NAME_RULES, plus BERT's own).
BERT_HOOK_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"^bert\.", ""),  # the heads' body: names as in a BertModel
    *ENCODER_HOOK_NAME_RULES,
    (r"^encoder\.layer\.(\d+)\.attention\.output\.", r"blocks.\1."),  # hook_attn_out, hook_resid_mid
    (r"^encoder\.layer\.(\d+)\.output\.", r"blocks.\1."),  # hook_mlp_out, hook_resid_post
    (r"^encoder\.layer\.(\d+)\.", r"blocks.\1."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm_head.ln."),
)


class BertPreTrainedModel(HookedRootModule, AttnImplementationMixin, PretrainedMixin):
    """What every BERT model class shares: from_pretrained / save_pretrained (see
    mlab_tfs.checkpoints), set_attn_implementation, and the hook points under
    TransformerLens's names (``run_with_cache``, ``run_with_hooks``, see mlab_tfs.hooks).

    A checkpoint without the model's head (MiniLM, a BertModel, into BertForMaskedLM or
    BertForSequenceClassification) loads with that head freshly initialised and a warning,
    as in transformers; ``new_head=True`` says you expect it. Every other key must fit.
    """

    config_class = BertConfig
    head_prefixes: tuple[str, ...] = ()  # keys a fresh head may supply
    hook_name_rules = BERT_HOOK_NAME_RULES
    hook_aliases = ENCODER_HOOK_ALIASES
    # transformers' names: the body's attribute in a head, the word embedding's in the body.
    base_model_prefix, input_embeddings_name = "bert", "embeddings.word_embeddings"
    records_cross_attentions = True  # () beside attentions in BertModel's output, as transformers'
