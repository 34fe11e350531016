"""What the Llama part gives the learner: the config, the weight initialisation and the
hook-name rules. ``solution.py`` and ``student.py`` both import it, so the learner's model
and the solution share these lines exactly.

One config class reads both families of this part: transformers' ``LlamaConfig``
(``model_type`` "llama") and ``Qwen3Config`` ("qwen3", which adds a per-head RMSNorm of
the queries and keys). Their fields have transformers' names and meanings
(``transformers/models/llama/configuration_llama.py``, ``models/qwen3/configuration_qwen3.py``).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from mlab_tfs.activations import ACTIVATIONS
from mlab_tfs.attention import ATTN_IMPLEMENTATIONS, AttnImplementationMixin
from mlab_tfs.checkpoints import PretrainedMixin
from mlab_tfs.configs import (
    ConfigError,
    ConfigMixin,
    ConfigTypeError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_probability,
    config_dict,
)
from mlab_tfs.hooks import HookedRootModule
from mlab_tfs.initialization import init_normal_weights

MODEL_TYPES = ("llama", "qwen3")
# Positions are computed, not looked up: the only bound on a position id is what a long holds.
MAX_POSITION = 2**62
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
# The rotary types this part computes (transformers' ROPE_INIT_FUNCTIONS has more).
ROPE_TYPES = ("default", "llama3")
LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
DEFAULT_ROPE_THETA = 10_000.0  # transformers' RotaryEmbeddingConfigMixin.default_theta
# Where transformers' Qwen3Config has other defaults than LlamaConfig (read when a
# config.json leaves the field out).
QWEN3_DEFAULTS = {"head_dim": 128, "num_key_value_heads": 32, "bos_token_id": None, "eos_token_id": None}


@dataclass
class LlamaConfig(ConfigMixin):
    """The fields of transformers' LlamaConfig / Qwen3Config that change the computation,
    with LlamaConfig's defaults.

    ``num_key_value_heads`` None means num_attention_heads (no sharing); ``head_dim`` None
    means hidden_size // num_attention_heads (both resolved when the config is built, as
    transformers does). ``rope_parameters``: {"rope_type": "default" | "llama3",
    "rope_theta": base, and for "llama3" "factor", "low_freq_factor", "high_freq_factor",
    "original_max_position_embeddings"}, what transformers 5 writes; the older top-level
    ``rope_theta`` and ``rope_scaling`` are read into it when rope_parameters is None, and then
    set to None (rope_parameters is the one place the model reads; transformers 5 keeps no
    top-level rope_theta either).
    ``model_type`` "qwen3" adds the per-head QK-norm; Qwen3's sliding-window attention
    (``use_sliding_window=True``) is not implemented and is a ConfigError.
    """

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    rope_parameters: dict[str, Any] | None = None
    attention_bias: bool = False
    mlp_bias: bool = False
    attention_dropout: float = 0.0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    model_type: str = "llama"  # type: ignore[misc]  (a field here: one class reads both families)
    use_sliding_window: bool = False  # Qwen3's; only False is implemented
    # Legacy spellings (config.json files before transformers 5): folded into rope_parameters.
    rope_theta: float | None = None
    rope_scaling: dict[str, Any] | None = field(default=None)
    # Which attention path runs: "sdpa" (transformers' default) or "eager" (hand-written).
    attn_implementation: str = "sdpa"

    architectures: ClassVar[tuple[str, ...]] = ("LlamaForCausalLM",)
    not_written: ClassVar[tuple[str, ...]] = ("attn_implementation", "rope_theta", "rope_scaling")

    def __post_init__(self) -> None:
        """Resolve the None defaults, fold the legacy rope fields in, and check every field:
        ConfigError (a ValueError) naming it, ConfigTypeError for a wrong type."""
        check_choice(self, "model_type", MODEL_TYPES)
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "max_position_embeddings"):
            check_int(self, name, minimum=1)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        check_int(self, "num_key_value_heads", minimum=1)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"LlamaConfig.num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                              f"num_key_value_heads ({self.num_key_value_heads}): each key/value head serves "
                              f"a whole group of query heads")
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        check_int(self, "head_dim", minimum=2)
        if self.head_dim % 2:
            raise ConfigError(f"LlamaConfig.head_dim must be even (rotary embeddings rotate pairs of dimensions), "
                              f"got {self.head_dim}")
        check_choice(self, "hidden_act", ACTIVATIONS)
        check_float(self, "rms_norm_eps", low=0.0, low_open=True)  # inside an rsqrt: > 0
        check_float(self, "initializer_range", low=0.0)
        check_probability(self, "attention_dropout")
        for name in ("tie_word_embeddings", "attention_bias", "mlp_bias", "use_sliding_window"):
            check_bool(self, name)
        if self.use_sliding_window:
            raise ConfigError("LlamaConfig.use_sliding_window=True: Qwen3's sliding-window attention is not "
                              "implemented here (every layer attends to every earlier token)")
        for name in ("bos_token_id", "pad_token_id"):
            check_int(self, name, minimum=0, optional=True)
        eos = self.eos_token_id
        if isinstance(eos, (list, tuple)):
            if not eos or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in eos):
                raise ConfigTypeError(f"LlamaConfig.eos_token_id must be an id, a non-empty list of ids or None, "
                                      f"got {eos!r}")
            self.eos_token_id = list(eos)
        else:
            check_int(self, "eos_token_id", minimum=0, optional=True)
        check_choice(self, "attn_implementation", ATTN_IMPLEMENTATIONS)
        self.rope_parameters = _rope_parameters(self)
        self.rope_theta, self.rope_scaling = None, None  # folded in
        if "architectures" not in self.__dict__ and "_architectures" not in self.__dict__:
            self.architectures = [ARCHITECTURES[self.model_type]]

    @property
    def num_key_value_groups(self) -> int:
        """Query heads per key/value head (num_attention_heads // num_key_value_heads)."""
        return self.num_attention_heads // self.num_key_value_heads

    # -- config.json -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LlamaConfig":
        """A config from a transformers config.json's contents (model_type "llama" or
        "qwen3"; a missing model_type is "llama"). Keys that are not fields are ignored.
        ValueError for another model_type; ConfigError naming a field with a bad value."""
        d = config_dict(cls.__name__, d)
        model_type = d.get("model_type", "llama")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"config has model_type {model_type!r}; LlamaConfig reads checkpoints with "
                             f"model_type one of {MODEL_TYPES}")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: copy.deepcopy(v) for k, v in d.items() if k in known}
        if model_type == "qwen3":
            for name, value in QWEN3_DEFAULTS.items():
                kwargs.setdefault(name, value)
        if "attn_implementation" not in d and d.get("_attn_implementation") in ATTN_IMPLEMENTATIONS:
            kwargs["attn_implementation"] = d["_attn_implementation"]  # transformers' private name
        return cls(**kwargs)

    def _to_dict(self, d: dict[str, Any]) -> None:
        if self.model_type == "qwen3":
            # Qwen3Config's own fields, as transformers writes them with the sliding window off.
            d.update(sliding_window=None, max_window_layers=self.num_hidden_layers,
                     layer_types=["full_attention"] * self.num_hidden_layers)
        else:
            d.pop("use_sliding_window")  # not a LlamaConfig field


def _rope_parameters(config: LlamaConfig) -> dict[str, Any]:
    """config.rope_parameters checked, or built from the legacy rope_theta / rope_scaling as
    transformers' ``convert_rope_params_to_dict`` builds it."""
    where = "LlamaConfig.rope_parameters"
    rope = config.rope_parameters
    if rope is None:
        rope = config.rope_scaling
        where = "LlamaConfig.rope_scaling" if rope is not None else where
    if rope is None:
        rope = {}
    if not isinstance(rope, dict):
        raise ConfigTypeError(f"{where} must be a dict (rope_type, rope_theta, ...) or None, got {rope!r}")
    rope = dict(rope)
    rope_type = rope.pop("type", None)
    rope.setdefault("rope_type", rope_type or "default")
    theta = config.rope_theta if config.rope_theta is not None else DEFAULT_ROPE_THETA
    rope.setdefault("rope_theta", theta)
    if rope["rope_type"] not in ROPE_TYPES:
        raise ConfigError(f"{where}['rope_type'] must be one of {ROPE_TYPES} (the rotary types implemented here), "
                          f"got {rope['rope_type']!r}")
    _check_number(where, rope, "rope_theta", low=0.0)
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ConfigError(f"{where}['partial_rotary_factor'] = {rope['partial_rotary_factor']!r}: only 1.0 (every "
                          f"dimension rotated) is implemented here")
    if rope["rope_type"] == "llama3":
        missing = [k for k in LLAMA3_KEYS if k not in rope]
        if missing:
            raise ConfigError(f"{where}: rope_type 'llama3' needs {', '.join(missing)} (as transformers' "
                              f"_compute_llama3_parameters reads them)")
        for k in ("factor", "low_freq_factor", "high_freq_factor"):
            _check_number(where, rope, k, low=0.0)
        if not rope["high_freq_factor"] > rope["low_freq_factor"]:
            raise ConfigError(f"{where}: high_freq_factor ({rope['high_freq_factor']}) must exceed low_freq_factor "
                              f"({rope['low_freq_factor']}): the smoothing divides by their difference")
        omp = rope["original_max_position_embeddings"]
        if not isinstance(omp, int) or isinstance(omp, bool) or omp < 1:
            raise ConfigError(f"{where}['original_max_position_embeddings'] must be an int >= 1, got {omp!r}")
    return rope


def _check_number(where: str, rope: dict[str, Any], key: str, *, low: float) -> None:
    value = rope[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > low) or value != value \
            or value == float("inf"):
        raise ConfigError(f"{where}[{key!r}] must be a finite number > {low:g}, got {value!r}")


# Module paths -> TransformerLens's hook names (``model.layers.0.input_layernorm.hook_scale``
# -> ``blocks.0.ln1.hook_scale``, ``model.norm.hook_normalized`` -> ``ln_final.hook_normalized``),
# whatever the root class: LlamaModel's and LlamaForCausalLM's ``hook_name_rules``.
LLAMA_HOOK_NAME_RULES = (
    (r"^model\.", ""),
    (r"^layers\.(\d+)\.", r"blocks.\1."),
    (r"\.input_layernorm\.", ".ln1."),
    (r"\.post_attention_layernorm\.", ".ln2."),
    (r"\.self_attn\.", ".attn."),
    (r"^norm\.", "ln_final."),
)


class LlamaPreTrainedModel(AttnImplementationMixin, HookedRootModule, PretrainedMixin):
    """What LlamaModel and LlamaForCausalLM share (transformers' base class name):
    from_pretrained / save_pretrained (mlab_tfs.checkpoints), set_attn_implementation, and
    the hook points under TransformerLens's names (``run_with_cache``, ``run_with_hooks``,
    mlab_tfs.hooks). Each class sets its own hf_to_ours / ours_to_hf."""

    config_class = LlamaConfig
    hook_name_rules = LLAMA_HOOK_NAME_RULES
    # transformers' names: the body's attribute in LlamaForCausalLM, the word embedding's in the body.
    base_model_prefix, input_embeddings_name = "model", "embed_tokens"
    # Rotary positions have no table: any position is computed, as in transformers, so the
    # samplers put no limit on the length (mlab_tfs.sampling.given.model_n_positions).
    positions_unbounded: ClassVar[bool] = True

    def saved_architecture(self) -> str:
        """config.json's architectures: transformers' class of this config's family
        (``Qwen3ForCausalLM`` for a qwen3 LlamaForCausalLM), so that its Auto classes build it."""
        name = type(self).__name__
        if self.config.model_type == "qwen3" and name.startswith("Llama"):
            return "Qwen3" + name.removeprefix("Llama")
        return name


class RMSNormRepr:
    """Given: what ``print(model)`` shows inside ``RMSNorm(...)``, as transformers'
    ``LlamaRMSNorm`` prints it: the weight's shape and eps (``RMSNorm((64,), eps=1e-06)``).
    A base of RMSNorm in solution.py and student.py alike, so that printing a model needs no
    exercise beyond RMSNorm's ``__init__``; it reads ``self.weight`` and ``self.eps`` when they
    exist and prints nothing of a part not yet created."""

    def extra_repr(self) -> str:
        weight, parts = getattr(self, "weight", None), []
        if weight is not None:
            parts.append(f"{tuple(weight.shape)}")
        if getattr(self, "eps", None) is not None:
            parts.append(f"eps={self.eps}")
        return ", ".join(parts)


def body_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """A LlamaForCausalLM state dict's body as LlamaModel's: the ``model.`` keys without that
    prefix; the head (``lm_head.*``) is left out, as transformers' LlamaModel leaves it."""
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def init_llama_weights(model: nn.Module, config: LlamaConfig) -> None:
    """Llama's initialisation (transformers' ``LlamaPreTrainedModel._init_weights``, through
    ``PreTrainedModel._init_weights``): N(0, initializer_range) weights of every Linear and
    Embedding, zero Linear biases; RMSNorm weights keep their ones. In place; returns None."""
    init_normal_weights(model, config.initializer_range)
