"""``as_transformers(model)``: one of our models as a transformers model object.

transformers' tools (``pipeline``, ``generate``, ``Trainer``, peft, sentence-transformers)
look for a ``PreTrainedModel``: a transformers config, ``save_pretrained``, transformers'
output classes, the ``cache`` argument. The adapter is that object around our model, built
once per model class (one adapter for every class: it reads only what the model offers,
``config.to_dict()``, ``config.model_type``, ``forward``, ``save_pretrained``,
``get_input_embeddings`` / ``get_output_embeddings`` / ``tie_weights`` /
``base_model_prefix`` (mlab_tfs.surface), and the class's ``ours_to_hf`` / ``hf_to_ours``):

- its submodules ARE our model's (the same objects, under the same names), so parameters
  are shared, not copied: an optimizer step on one is seen by the other, and ``.to()`` moves
  both. A tool that replaces a top-level submodule of the adapter (peft's LoRA, its
  ``modules_to_save``) replaces it in our model too;
- ``forward`` runs our model's forward (its hooks included) and returns transformers' output
  classes (``transformers/modeling_outputs.py``), the cache under transformers 5's name
  ``cache``;
- ``state_dict()`` is in transformers' checkpoint layout (names and shapes: GPT-2's Conv1D
  weights transposed, a tied head listed under its own name too, as transformers' state_dict()
  lists it), and ``load_state_dict`` takes that layout, so
  whatever a tool saves from ``state_dict()`` (accelerate's ``save_model``, Trainer's
  checkpoints) is transformers' weight file;
- ``save_pretrained`` writes a full checkpoint (config.json, model.safetensors in
  transformers' layout, generation_config.json for a language model) that our
  ``from_pretrained`` and transformers' load alike.

transformers is imported only here: ``import mlab_tfs`` and our models never need it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from typing import Any

import torch
from torch import nn

from mlab_tfs.checkpoints import STALE_WEIGHTS, StateDict, config_as_saved
from mlab_tfs.durable import atomic_folder, write_text_atomic
from mlab_tfs.surface import _check_return_dict

__all__ = ["as_transformers"]

# What generate hands the model's forward besides its inputs: the decoding method takes
# ``**generation_mode_kwargs, **model_kwargs`` and passes the leftovers to forward
# (transformers/generation/utils.py, ``_extract_generation_mode_kwargs`` and ``_sample``), where
# transformers' models swallow them in ``**kwargs``. They are generate's own (stop_strings' tokenizer,
# a streamer), never the model's: the adapter drops them, and only them.
_GENERATE_ONLY_KWARGS = frozenset({"tokenizer", "assistant_tokenizer", "assistant_model", "streamer", "synced_gpus"})

# Our output class -> transformers' output classes that can hold its fields (the first that
# holds every field that is set is used), from transformers/modeling_outputs.py.
_OUTPUT_CLASSES = {
    "BaseModelOutput": ("BaseModelOutputWithPastAndCrossAttentions", "BaseModelOutputWithPoolingAndCrossAttentions"),
    "CausalLMOutput": ("CausalLMOutputWithCrossAttentions",),
    "MaskedLMOutput": ("MaskedLMOutput",),
    "SequenceClassifierOutput": ("SequenceClassifierOutput",),
}


def _fail_not_model(model: object, missing: str) -> TypeError:
    return TypeError(f"as_transformers: model must be one of mlab_tfs's models (an nn.Module whose config has "
                     f"to_dict() and model_type, with a forward), got {type(model).__name__} ({missing})")


def as_transformers(model: nn.Module) -> Any:
    """``model`` (GPT2Model, GPT2LMHeadModel, BertModel, BertForMaskedLM,
    BertForSequenceClassification, DebertaV2Model, DebertaV2ForMaskedLM: solution, student,
    or a subclass of one) as a transformers ``PreTrainedModel`` that shares its parameters and
    runs its forward; with ``GenerationMixin`` (``generate``) when the class is a causal
    language model.

    The adapter's class is named as ours (``GPT2LMHeadModel``; a subclass's as the course class
    it extends), which is how pipelines and Trainer recognise a model; its config is transformers' config class for
    ``config.model_type`` (``AutoConfig.for_model``) built from ``config.to_dict()``, read
    when the adapter is made (change our config afterwards, make a new adapter).
    ``as_transformers`` of an adapter returns that adapter, and of a transformers model (or a
    wrapper of one whose config is transformers', such as peft's PeftModel) the model itself.

    Raises TypeError naming ``model`` for anything else.
    """
    try:
        from transformers import PretrainedConfig, PreTrainedModel
    except ImportError as e:  # transformers is optional for the course
        raise ImportError("as_transformers needs transformers: pip install transformers") from e
    if isinstance(model, PreTrainedModel):
        return model  # an adapter, or transformers' own model: already what tools look for
    if not isinstance(model, nn.Module):
        raise _fail_not_model(model, "not an nn.Module")
    config = getattr(model, "config", None)
    if isinstance(config, PretrainedConfig):
        return model  # a wrapper of a transformers model (peft's PeftModel of an adapter): made for the tools
    if not callable(getattr(config, "to_dict", None)) or not isinstance(getattr(config, "model_type", None), str):
        raise _fail_not_model(model, "its config has no to_dict() and model_type")
    if not callable(getattr(model, "save_pretrained", None)):
        raise _fail_not_model(model, "it has no save_pretrained")
    return _adapter_class(type(model), _family_name(model))(model)


def _family_name(model: nn.Module) -> str | None:
    """transformers' class name for this model's config where our class reads several families
    (``saved_architecture``: a qwen3 LlamaForCausalLM is transformers' Qwen3ForCausalLM); else None."""
    saved = getattr(model, "saved_architecture", None)
    name = saved() if callable(saved) else None
    if isinstance(name, str) and name != type(model).__name__ and _is_transformers_model_name(name):
        return name
    return None


@functools.cache
def _adapter_class(cls: type, family: str | None = None) -> type:
    """The transformers class for our model class ``cls`` (made once per class and family:
    ``family`` names transformers' class when it is not cls's own name, see _family_name)."""
    from transformers import GenerationMixin, PreTrainedModel
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    # transformers' name for the class: its own, or a base class's (a learner's subclass of our GPT2LMHeadModel).
    name = family or next((c.__name__ for c in cls.__mro__ if _is_transformers_model_name(c.__name__)), cls.__name__)
    causal = name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()
    bases = (TransformersAdapter, PreTrainedModel) + ((GenerationMixin,) if causal else ())
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"mlab_tfs's {cls.__name__} as a transformers PreTrainedModel (mlab_tfs.as_transformers).",
        "base_model_prefix": getattr(cls, "base_model_prefix", ""),  # transformers' name ("transformer", "bert")
        "accepts_loss_kwargs": bool(getattr(cls, "accepts_loss_kwargs", False)),
        "forward": _forward_with_signature(cls),
        "_hf_outputs": _hf_output_fields(),
        "_hf_tied": _hf_tied_keys(name),
    }
    return type(name, bases, attrs)


def _hf_tied_keys(name: str) -> dict[str, str]:
    """transformers' class ``name``'s tied pairs, alias -> source in its checkpoint names
    (``_tied_weights_keys``, e.g. GPT-2's {"lm_head.weight": "transformer.wte.weight"}), {} if none."""
    import transformers

    tied = getattr(getattr(transformers, name, None), "_tied_weights_keys", None)
    return dict(tied) if isinstance(tied, dict) else {}


def _is_transformers_model_name(name: str) -> bool:
    import transformers
    from transformers import PreTrainedModel

    try:
        obj = getattr(transformers, name, None)
    except Exception:  # transformers' lazy module may fail to import an optional backend
        return False
    return isinstance(obj, type) and issubclass(obj, PreTrainedModel)


def _forward_with_signature(cls: type):
    """TransformersAdapter.forward, with our forward's parameters plus transformers' extras in
    its signature: Trainer keeps the dataset columns, and generate the keywords, that it names."""
    ours = inspect.signature(cls.forward).parameters
    params = [p for p in ours.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    names = {p.name for p in params}
    extras = ["inputs_embeds", "return_dict"] + (["cache"] if "past_key_values" in names else [])
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in extras if n not in names]
    params = sorted(params, key=lambda p: p.kind)  # positional ones first, as a signature needs
    params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return TransformersAdapter.forward(self, *args, **kwargs)

    forward.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    forward.__doc__ = TransformersAdapter.forward.__doc__
    return forward


class TransformersAdapter:
    """What every adapter class adds to transformers' PreTrainedModel (see as_transformers)."""

    _mlab_model: nn.Module

    def __init__(self, model: nn.Module):
        hf_config = _hf_config(model)
        super().__init__(hf_config)
        object.__setattr__(self, "_mlab_model", model)  # not a submodule: its children are ours, below
        for name, child in model.named_children():
            self.add_module(name, child)  # the same module: shared parameters, our names
        for name, p in model.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for name, b in model.named_buffers(recurse=False):
            self.register_buffer(name, b, persistent=name not in model._non_persistent_buffers_set)
        self.register_state_dict_post_hook(_state_dict_to_hf)
        self.register_load_state_dict_pre_hook(_load_state_dict_from_hf)
        self.post_init()
        self.train(model.training)

    # -- what the adapter is -------------------------------------------------------------

    @property
    def mlab_model(self) -> nn.Module:
        """Our model, which this adapter shares its parameters with."""
        return self._mlab_model

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        model = self.__dict__.get("_mlab_model")
        # A tool replacing a shared top-level submodule (peft's LoRA, modules_to_save, merge_and_unload):
        # our model must run the new one too.
        if model is not None and isinstance(value, (nn.Module, nn.Parameter)) and (
                name in model._modules or name in model._parameters):
            setattr(model, name, value)

    def __reduce__(self):
        # The class is made at run time (no module attribute names it): pickle (torch.save of the
        # whole model, multiprocessing) and deepcopy rebuild the adapter around our model.
        return as_transformers, (self._mlab_model,)

    def train(self, mode: bool = True):
        super().train(mode)
        self._mlab_model.training = mode  # the children are shared; our root's flag too
        return self

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # generate makes no DynamicCache: our model makes its own KVCache, returned as outputs.cache,
        # which generate passes back (and beam search reorders with its reorder_cache, in place).
        return False

    def init_weights(self) -> None:
        """Nothing: the weights are our model's, already initialised or loaded."""

    def tie_weights(self, *args: Any, **kwargs: Any) -> None:
        """Our model's tie_weights (it ties its head to the embedding per its config), if it has one."""
        tie = getattr(self._mlab_model, "tie_weights", None)
        if callable(tie):
            tie()

    def get_input_embeddings(self) -> nn.Module:
        """Our model's get_input_embeddings (the word embedding module, transformers' too)."""
        return self._mlab_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        """Our model's get_output_embeddings (None for a body or a classifier, as transformers')."""
        return self._mlab_model.get_output_embeddings()

    # -- forward -----------------------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Our model's forward, called with the arguments transformers' callers pass:
        ``cache`` (transformers 5's name) or ``past_key_values``: our KVCache, a legacy tuple or
        a transformers DynamicCache (read, then updated in place with the new keys and values,
        as transformers' models update it); ``return_dict=False`` gives ``output.to_tuple()``;
        arguments that are None are left out (our defaults mean the same, except that
        use_cache=None is our False where transformers' GPT-2 reads config.use_cache; generate
        passes use_cache=True). Positional arguments go to our forward as they are, in its
        order (GPT-2: input_ids, attention_mask, position_ids, past_key_values). Returns transformers'
        output class for our output (e.g. CausalLMOutputWithCrossAttentions), the cache under
        ``cache``.

        generate's own keywords that its decoding loop passes on (``tokenizer`` for
        stop_strings, ``streamer``, ``assistant_model``...) are dropped, as transformers' models
        take them in ``**kwargs`` and leave them unused.

        Raises TypeError naming an argument that our model's forward does not take (and is not
        None) or a return_dict that is not True, False or None; ValueError for cache and
        past_key_values both given.
        """
        model = self._mlab_model
        return_dict = kwargs.pop("return_dict", None)
        _check_return_dict(return_dict)  # before running: "yes" or 0 is no silent choice
        cache, past = kwargs.pop("cache", None), kwargs.pop("past_key_values", None)
        if cache is not None and past is not None:
            raise ValueError("pass cache or past_key_values (its older name), not both")
        cache_name = "cache" if cache is not None else "past_key_values"
        past = cache if cache is not None else past
        accepted = inspect.signature(type(model).forward).parameters
        kwargs = {k: v for k, v in kwargs.items()
                  if v is not None and (k not in _GENERATE_ONLY_KWARGS or k in accepted)}
        takes_any = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
        # The caller's name of each argument -> our forward's name of it.
        names = {name: name for name in kwargs} | ({cache_name: "past_key_values"} if past is not None else {})
        for given, ours_name in names.items():
            if ours_name not in accepted and not takes_any:
                raise TypeError(f"{given}: {type(model).__name__}.forward does not take it (it takes "
                                f"{', '.join(n for n in accepted if n != 'self')})")
        hf_cache = None
        if past is not None:
            kwargs["past_key_values"], hf_cache = _from_hf_cache(past)
            if hf_cache is not None:
                kwargs["use_cache"] = True  # transformers updates a Cache it is given, use_cache or not
        out = model(*args, **kwargs)
        if hf_cache is not None:
            _update_hf_cache(hf_cache, out.past_key_values)
        out = _to_hf_output(out, hf_cache, type(self)._hf_outputs)
        return out if return_dict is None or return_dict else out.to_tuple()

    # -- saving ------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True,
                        state_dict: StateDict | None = None, push_to_hub: bool = False,
                        safe_serialization: bool = True, save_function: Any = None, **kwargs: Any) -> None:
        """Write a checkpoint that our from_pretrained and transformers' load alike: config.json
        and model.safetensors (or pytorch_model.bin with safe_serialization=False) in
        transformers' layout, as our save_pretrained writes them, plus generation_config.json
        for a language model. All-or-nothing (mlab_tfs.durable.atomic_folder).

        The keywords transformers' Trainer and accelerate pass: ``state_dict`` (in this
        adapter's state_dict() layout, transformers') is written instead of the parameters;
        ``is_main_process=False`` writes nothing; ``save_function`` (accelerate's
        ``accelerator.save``) writes the pickle of safe_serialization=False. transformers'
        other keywords (max_shard_size, variant, token...) are accepted and have no effect:
        one unsharded file is written. push_to_hub=True is a ValueError (no network here).
        """
        if push_to_hub:
            raise ValueError("push_to_hub=True: this save writes a local folder only; push it with huggingface_hub")
        if not is_main_process:
            return
        model = self._mlab_model
        if state_dict is not None:  # this adapter's layout (transformers'): our model's names for our save
            if not isinstance(state_dict, dict):
                raise TypeError(f"state_dict must be a dict of name -> tensor (as this model's state_dict()), "
                                f"got {type(state_dict).__name__}")
            state_dict = type(model).hf_to_ours(dict(state_dict), config_as_saved(model))
        with atomic_folder(save_directory, drop=(*STALE_WEIGHTS, "model.safetensors")) as staging:
            # config.json + the weights in transformers' layout, written once
            model.save_pretrained(staging, state_dict=state_dict, safe_serialization=safe_serialization,
                                  save_function=save_function)
            if getattr(self, "generation_config", None) is not None and self.can_generate():
                write_text_atomic(staging / "generation_config.json", self.generation_config.to_json_string())


# ---------------------------------------------------------------------------------------
# Config, state dicts, caches, outputs
# ---------------------------------------------------------------------------------------


def _hf_config(model: nn.Module) -> Any:
    """transformers' config for our model: its config class for model_type, from config.to_dict()."""
    from transformers import AutoConfig, PretrainedConfig

    d = dict(model.config.to_dict())
    model_type = d.pop("model_type", model.config.model_type)
    d["architectures"] = [_adapter_class(type(model), _family_name(model)).__name__]
    d["name_or_path"] = str(getattr(model, "name_or_path", "") or "")  # where it was loaded from, as transformers'
    try:
        return AutoConfig.for_model(model_type, **d)
    except ValueError:  # a model_type transformers does not know: its generic config
        return PretrainedConfig(**d)


def _own_keys(state: dict, prefix: str) -> dict:
    """Pop the entries of state under prefix, the prefix stripped."""
    return {k[len(prefix):]: state.pop(k) for k in [k for k in state if k.startswith(prefix)]}


def _convert(adapter: nn.Module, state: dict, prefix: str, direction: str) -> None:
    """Translate the adapter's entries of state in place with our class's ours_to_hf or
    hf_to_ours (a model without them keeps its own layout)."""
    model = adapter._mlab_model
    convert = getattr(type(model), direction, None)
    if convert is None:
        return
    converted = convert(_own_keys(state, prefix), config_as_saved(model))
    state.update({prefix + k: v for k, v in converted.items()})


def _state_dict_to_hf(adapter: nn.Module, state: dict, prefix: str, local_metadata: Any) -> None:
    _convert(adapter, state, prefix, "ours_to_hf")
    # transformers' state_dict() lists a tied alias too (the same tensor as its source): so does
    # ours, so that transformers' model.load_state_dict(adapter.state_dict()) (strict) loads.
    # Saving drops it again (save_pretrained; accelerate's save_model removes shared tensors).
    if adapter._mlab_model.weights_are_tied():
        for alias, source in type(adapter)._hf_tied.items():
            if prefix + alias not in state and prefix + source in state:
                state[prefix + alias] = state[prefix + source]


def _load_state_dict_from_hf(adapter: nn.Module, state: dict, prefix: str, *args: Any) -> None:
    _convert(adapter, state, prefix, "hf_to_ours")


def _from_hf_cache(past: Any) -> tuple[Any, Any]:
    """(what our model takes, the transformers Cache to update afterwards or None)."""
    from transformers import Cache, DynamicCache

    if not isinstance(past, Cache):
        return past, None  # our KVCache or a legacy tuple: our model checks it
    if type(past) is not DynamicCache:
        raise TypeError(f"cache: of transformers' caches, only a DynamicCache can be read by mlab_tfs's models, "
                        f"got {type(past).__name__} (pass our KVCache, or leave it to generate)")
    if past.get_seq_length() == 0:
        return None, past
    return tuple((layer.keys, layer.values) for layer in past.layers), past


def _update_hf_cache(hf_cache: Any, ours: Any) -> None:
    """Append to the DynamicCache the positions our forward added to its own cache."""
    done = hf_cache.get_seq_length()
    for i in range(len(ours)):
        k, v = ours[i]  # (B, nh, S, hs)
        hf_cache.update(k[:, :, done:], v[:, :, done:], i)


def _hf_output_fields() -> dict[str, tuple[tuple[type, frozenset[str]], ...]]:
    """_OUTPUT_CLASSES with each transformers class and its field names, read once when an
    adapter class is made (dataclasses.fields cannot be traced by torch.compile)."""
    import transformers.modeling_outputs as mo

    return {ours: tuple((getattr(mo, name), frozenset(f.name for f in dataclasses.fields(getattr(mo, name))))
                        for name in names)
            for ours, names in _OUTPUT_CLASSES.items()}


def _to_hf_output(out: Any, hf_cache: Any, classes: dict[str, tuple[tuple[type, frozenset[str]], ...]]) -> Any:
    """Our output as transformers' output class of the same fields (past_key_values as cache)."""
    if not hasattr(out, "keys"):
        return out  # a tuple (return_dict=False of our model): as it is
    fields = {("cache" if k == "past_key_values" else k): out[k] for k in out.keys()}
    if hf_cache is not None:
        fields["cache"] = hf_cache
    for cls, names in classes.get(type(out).__name__, ()):
        if set(fields) <= names:
            return cls(**fields)
    return out
