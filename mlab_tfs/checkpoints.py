"""Reading and writing Hugging Face checkpoints, shared by every model.

A model file only has to say how its parameter names relate to Hugging Face's (a pure
function of the state dict each way); finding the files, reading safetensors or pickles,
checking that every tensor fits and writing a checkpoint transformers can load is done
here once, by ``PretrainedMixin``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from mlab_tfs.configs import ConfigError
from mlab_tfs.durable import atomic_folder
from mlab_tfs.surface import ModelSurfaceMixin

Tensor = torch.Tensor
StateDict = dict[str, Tensor]

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# What an older save may have left that this save's model.safetensors replaces: dropped on
# save, so a folder never holds two sets of weights.
STALE_WEIGHTS = ("model.safetensors.index.json", "model-*-of-*.safetensors", "pytorch_model.bin",
                 "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin")

# A hub repo id: "name" or "namespace/name", letters, digits, "-", "_", "." (huggingface_hub's
# validate_repo_id), at most 96 characters each.
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.\-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"^(?:{_HUB_PART}/)?{_HUB_PART}$")

# transformers' from_pretrained keywords this loader passes to the hub download.
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download")
# ...and those it cannot honour: refused by name rather than silently dropped.
UNSUPPORTED_KWARGS = {
    "state_dict": "load the folder's weights, or call load_state_dict yourself",
    "ignore_mismatched_sizes": "a checkpoint that does not fit is an error here",
    "output_loading_info": "loading fails with a CheckpointError listing every key that does not fit",
    "use_safetensors": "the folder's own weight file is read (model.safetensors first)",
    "weights_only": "pickles are always read with weights_only=True",
    "subfolder": "pass the subfolder's own path",
    "variant": "weight variants are not supported",
    "proxies": "configure the hub client instead",
    "quantization_config": "quantisation is not supported",
    "low_cpu_mem_usage": "not needed: the model is built once and loaded in place",
    "max_memory": "device maps are not supported; pass device=",
    "offload_folder": "offloading is not supported",
    "offload_buffers": "offloading is not supported",
    "offload_state_dict": "offloading is not supported",
    "trust_remote_code": "no remote code is ever run",
    "gguf_file": "GGUF files are not supported",
    "from_tf": "TensorFlow checkpoints are not supported",
    "from_flax": "Flax checkpoints are not supported",
    "adapter_kwargs": "adapters are not supported",
    "adapter_name": "adapters are not supported",
    "generation_config": "generation settings are arguments of generate()",
    "key_mapping": "the model's own name map is used",
    "tp_plan": "tensor parallelism is not supported",
    "tp_size": "tensor parallelism is not supported",
    "device_mesh": "tensor parallelism is not supported",
    "distributed_config": "tensor parallelism is not supported",
    "use_kernels": "hub kernels are not supported",
    "kernel_config": "hub kernels are not supported",
    "experts_implementation": "these models have no experts",
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (a missing, truncated or corrupted file) or does not
    fit the model it is loaded into. The message names the file or the keys."""


def _local_only(name: str | os.PathLike) -> str | None:
    """Why name can only mean a local path (None if it may be a hub id): a Path object,
    anything that is not a hub id ("./x", "/x", "~/x", "a/b/c", "x/"), or "a/b" where the
    folder a exists here."""
    if not isinstance(name, str):
        return "a path object"
    if name.startswith((".", "/", "~")) or "\\" in name or not _HUB_ID.match(name) or "--" in name or ".." in name:
        return f"{name!r} is not a hub id of the form 'name' or 'namespace/name'"
    if "/" in name and Path(name.split("/", 1)[0]).is_dir():
        return f"the folder {name.split('/', 1)[0]!r} exists here, so {name!r} names a local path"
    return None


def resolve_checkpoint(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> Path:
    """The folder of a checkpoint: a local folder as it is, or a hub id ("gpt2",
    "namespace/name") downloaded to the local cache (needs network; hub_kwargs go to
    huggingface_hub's hf_hub_download: revision, cache_dir, token, local_files_only,
    force_download).

    Raises TypeError if name_or_path is not a str or path, NotADirectoryError if it is a
    file, and FileNotFoundError at once (without asking the hub) for a local-looking path
    that does not exist; FileNotFoundError too when the hub cannot provide the id.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or isinstance(name_or_path, bytes):
        raise TypeError(f"name_or_path must be a str or os.PathLike (a folder or a hub id), "
                        f"got {type(name_or_path).__name__}")
    if isinstance(name_or_path, str) and not name_or_path.strip():
        raise ValueError("name_or_path must be a checkpoint folder or a hub id, got an empty string")
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"name_or_path must be a checkpoint folder (config.json + weights) or a hub id, "
                                 f"got the file {str(path)!r}")
    aside = sorted(path.parent.glob(f".{path.name}.*.old.partial")) if path.name and path.parent.is_dir() else []
    if aside:  # mlab_tfs.durable's two-rename swap, killed between its renames
        raise FileNotFoundError(f"name_or_path: no checkpoint folder at {str(path.absolute())!r}: a save into it was "
                                f"interrupted; its previous contents are in {str(aside[0])!r} (the next save into "
                                f"the folder puts them back)")
    reason = _local_only(name_or_path)
    if reason is not None:
        raise FileNotFoundError(f"name_or_path: no checkpoint folder at {str(path.absolute())!r} ({reason})")
    return _download(str(name_or_path), hub_kwargs)


def _download(repo_id: str, hub_kwargs: dict[str, Any]) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    if os.environ.get("TRANSFORMERS_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        hub_kwargs = {**hub_kwargs, "local_files_only": True}  # as transformers: the cache only

    def get(filename: str) -> str:
        return hf_hub_download(repo_id, filename, **hub_kwargs)

    try:
        folder = Path(get("config.json")).parent
        for name in WEIGHT_FILES:
            try:
                get(name)
            except EntryNotFoundError:
                continue
            if name.endswith(".index.json"):
                for shard in _shards(folder / name):
                    get(shard)
            return folder
    except (OSError, ValueError) as e:  # no network, unknown repo, gated repo...
        if isinstance(e, CheckpointError):
            raise
        raise FileNotFoundError(
            f"name_or_path: {repo_id!r} is not a local folder, and the hub could not provide it ({_first_line(e)})"
        ) from e
    raise FileNotFoundError(f"hub repo {repo_id!r} has none of {WEIGHT_FILES}")


def _first_line(e: BaseException) -> str:
    lines = str(e).splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from path; a CheckpointError naming the file otherwise."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}): the file is corrupted or truncated") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got a {type(data).__name__}")
    return data


def read_config(folder: Path) -> dict[str, Any]:
    """The contents of folder/config.json. CheckpointError if it is missing, not JSON or not an object."""
    return _read_json(Path(folder) / "config.json", "a checkpoint folder needs a config.json next to its weights")


def _shards(index_path: Path) -> list[str]:
    index = _read_json(index_path, "the index of a sharded checkpoint")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index_path} must hold a 'weight_map' object of tensor name -> shard file")
    return sorted(set(weight_map.values()))


def _load_safetensors(path: Path) -> StateDict:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: missing (named by the checkpoint's index)")
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error type for a bad header or a short file
        raise CheckpointError(
            f"{path} cannot be read as safetensors ({type(e).__name__}: {e}): the file is truncated or corrupted"
        ) from e


def _load_pickle(path: Path) -> StateDict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, a foreign pickle, an object weights_only refuses...
        raise CheckpointError(
            f"{path} cannot be read as a torch state dict ({_first_line(e)}): "
            f"the file is truncated, corrupted or not a state dict"
        ) from e
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path} must hold a dict of name -> tensor, got {type(state).__name__}")
    return state


def read_state_dict(folder: Path) -> StateDict:
    """Every tensor of a checkpoint folder: safetensors (single or sharded) or a torch pickle.

    Raises CheckpointError naming the file if there are no weights or a file cannot be read.
    """
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return _load_safetensors(folder / "model.safetensors")
    if (folder / "model.safetensors.index.json").is_file():
        state: StateDict = {}
        for shard in _shards(folder / "model.safetensors.index.json"):
            state.update(_load_safetensors(folder / shard))
        return state
    if (folder / "pytorch_model.bin").is_file():
        return _load_pickle(folder / "pytorch_model.bin")
    raise CheckpointError(f"no weights in {folder}: looked for {', '.join(WEIGHT_FILES)}")


def check_fits(model: torch.nn.Module, state_dict: StateDict, source: str) -> None:
    """Raise one CheckpointError listing every missing key, unexpected key and shape (or
    integer/float) mismatch."""
    # Every name load_state_dict accepts: a tied parameter under both of its names too.
    saved = model.state_dict()
    expected = {**dict(model.named_parameters(remove_duplicate=False)), **saved}
    for alias, source in getattr(model, "tied_weights", {}).items():
        # A tied alias that state_dict() leaves out has its source's saved shape (a padded
        # vocabulary, mlab_tfs.gpt2.fast.pad_vocab, saves fewer rows than the Parameter has).
        if alias not in saved and source in saved and alias in expected:
            expected[alias] = saved[source]
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if state_dict[k].shape != expected[k].shape
    ]
    # load_state_dict would cast integers into a float parameter without a word.
    mismatched += [
        f"{k}: checkpoint dtype {state_dict[k].dtype}, model {expected[k].dtype}"
        for k in sorted(set(expected) & set(state_dict))
        if state_dict[k].is_floating_point() != expected[k].is_floating_point()
    ]
    if missing or unexpected or mismatched:
        lines = [f"the checkpoint {source} does not fit {type(model).__name__}:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
            if items:
                shown = items[:20] + ([f"... and {len(items) - 20} more"] if len(items) > 20 else [])
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {item}" for item in shown)
        raise CheckpointError("\n".join(lines))


def save_tied_weights_once(model: torch.nn.Module, tied: dict[str, str]) -> None:
    """Make ``model.state_dict()`` hold each tied parameter once.

    tied maps an alias to its source, e.g. {"lm_head.weight": "transformer.wte.weight"}.
    While the alias *is* the source (one Parameter), state_dict() leaves the alias out, as
    safetensors refuses two names for one tensor (and so does transformers' Trainer when it
    saves a checkpoint), and load_state_dict() takes the alias from the source, so a saved
    state dict loads back into a tied model.
    """
    registered = model.__dict__.setdefault("_tied_saved_once", [])
    if dict(tied) in registered:  # tie_weights() called again: the hooks are there already
        return
    registered.append(dict(tied))
    # Module-level functions bound with partial (not closures), so the model still pickles.
    model.register_state_dict_post_hook(functools.partial(_drop_tied_aliases, tied=dict(tied)))
    model.register_load_state_dict_pre_hook(functools.partial(_fill_tied_aliases, tied=dict(tied)))



def tie_weights(model: torch.nn.Module, tied: dict[str, str]) -> None:
    """Tie each alias to its source (``{"lm_head.weight": "transformer.wte.weight"}``): the
    alias becomes the source Parameter itself (one tensor, two uses: its gradient is the sum
    of both uses), saved once (save_tied_weights_once). In place. A path that is not a
    parameter of the model (the source) or not under one of its modules (the alias) is
    torch's AttributeError naming it."""
    for alias, source in tied.items():
        owner, _, name = alias.rpartition(".")
        module, param = model.get_submodule(owner), model.get_parameter(source)
        if name in module._parameters:
            # Not through setattr: accelerate's init_empty_weights patches register_parameter
            # to make a new Parameter of each one registered, which would cut the tie again.
            module._parameters[name] = param
        else:
            setattr(module, name, param)
    save_tied_weights_once(model, tied)

def _is_tied(model: torch.nn.Module, alias: str, source: str) -> bool:
    return model.get_parameter(alias) is model.get_parameter(source)


def _drop_tied_aliases(module, state_dict, prefix, local_metadata, *, tied: dict[str, str]) -> None:
    for alias, source in tied.items():
        if _is_tied(module, alias, source) and prefix + source in state_dict:
            state_dict.pop(prefix + alias, None)


def _fill_tied_aliases(module, state_dict, prefix, *args, tied: dict[str, str]) -> None:
    for alias, source in tied.items():
        if _is_tied(module, alias, source) and prefix + alias not in state_dict and prefix + source in state_dict:
            state_dict[prefix + alias] = state_dict[prefix + source]


def save_safetensors(state_dict: StateDict, path: Path) -> None:
    """Write state_dict to path as a .safetensors file with transformers' ``{"format": "pt"}``
    metadata. Not atomic by itself: call it inside durable.atomic_folder (as save_pretrained)."""
    from safetensors.torch import save_file

    # safetensors refuses views and shared storage: give every tensor its own contiguous copy.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


# The dtypes a model computes in. torch's float8 types are floating too, but have no matmul
# (transformers' from_pretrained fails on them, in torch's storage code): a model cast to one could not run.
MODEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _parse_dtype(name: str, value: object) -> torch.dtype | str | None:
    """None, "auto", one of MODEL_DTYPES, or its name ("float16", "half", "bfloat16", "float32", "float", "float64")."""
    if value is None or isinstance(value, str) and value == "auto":
        return value
    if isinstance(value, str) and isinstance(getattr(torch, value, None), torch.dtype):
        value = getattr(torch, value)
    if isinstance(value, torch.dtype) and value in MODEL_DTYPES:
        return value
    raise ValueError(f"{name} must be None, 'auto', one of {[str(d) for d in MODEL_DTYPES]} or its name "
                     f"('float16', 'bfloat16', 'float32'), got {value!r}")


def _auto_dtype(config: dict[str, Any], state: StateDict) -> torch.dtype:
    """dtype="auto", as transformers: config.json's dtype (or torch_dtype), else the first
    floating tensor's (modeling_utils._get_dtype)."""
    for key in ("dtype", "torch_dtype"):
        stored = config.get(key)
        if stored is not None:
            parsed = _parse_dtype(f"config.json's {key}", stored)
            if isinstance(parsed, torch.dtype):
                return parsed
    for tensor in state.values():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def _parse_device(device: object, device_map: object) -> torch.device | None:
    """device= or transformers' device_map= for one device ("cpu", "cuda:0", 0, {"": "cuda"})."""
    if device_map is not None:
        if device is not None:
            raise ValueError(f"pass device or device_map, not both (got device={device!r}, device_map={device_map!r})")
        if isinstance(device_map, dict) and len({repr(v) for v in device_map.values()}) == 1:
            device_map = next(iter(device_map.values()))  # {"": "cuda:0"}, or every module on one device
        if device_map == "auto" or isinstance(device_map, dict):
            raise ValueError(f"device_map must name one device (e.g. 'cuda:0'); spreading a model over devices "
                             f"is not supported, got {device_map!r}")
        device = device_map
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(f"device must be a str, int or torch.device, got {type(device).__name__}")
    try:
        parsed = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device must name an available torch device (e.g. 'cpu', 'cuda:0'), got {device!r} "
                         f"({_first_line(e)})") from e
    if parsed.type == "meta":
        raise ValueError("device='meta' holds no values: the checkpoint's weights would be dropped")
    try:  # before reading any weights: a missing GPU fails here, naming the argument
        torch.empty(0, device=parsed)
    except (RuntimeError, AssertionError) as e:  # torch says "not compiled with CUDA" with an AssertionError
        raise ValueError(f"device {device!r} is not available here ({_first_line(e)})") from e
    return parsed


def _unknown_keyword(cls: type, key: str, known: list[str]) -> TypeError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return TypeError(
        f"{cls.__name__}.from_pretrained() got an unexpected keyword argument {key!r}{hint} "
        f"(keywords: new_head, dtype, torch_dtype, device, device_map, config, {', '.join(HUB_KWARGS)}, "
        f"or a field of {cls.config_class.__name__})"
    )


def _differing_tied_weights(tied: dict[str, str], state: StateDict) -> list[tuple[str, str]]:
    """The (alias, source) pairs that a checkpoint holds both of, with different values.

    Tying them would silently keep one and drop the other; transformers' tie_weights leaves
    such a pair untied. Pickled checkpoints often hold both names for one tensor: equal, tied."""
    return [(alias, source) for alias, source in tied.items()
            if alias in state and source in state and not (state[alias].shape == state[source].shape
                                                           and torch.equal(state[alias], state[source]))]


def _given_config(cls: type, config: Any, overrides: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """from_pretrained's config=: a copy of ours (with the keyword overrides), or a transformers
    config read through to_dict(); and the dict whose dtype "auto" reads (transformers' config
    carries one, ours does not)."""
    config_class = cls.config_class
    if isinstance(config, config_class):
        try:
            ours = dataclasses.replace(config, **overrides)
        except ValueError as e:
            raise type(e)(f"{e} (config= with the keywords {sorted(overrides)})") from e
        ours.architectures = config.architectures  # not a field: replace() would reset it
        return ours, {}
    if isinstance(config, (dict, str, os.PathLike)) or not callable(getattr(config, "to_dict", None)):
        raise TypeError(f"config must be a {config_class.__name__} (or a transformers config of model_type "
                        f"{config_class.model_type!r}), got {type(config).__name__}")
    d = config.to_dict()
    d.setdefault("model_type", getattr(config, "model_type", None))  # a config class keeps it on the class
    try:
        ours = config_class.from_dict({**d, **overrides})
    except ValueError as e:
        raise type(e)(f"config: {e} (reading the {type(config).__name__} passed as config=)") from e
    if isinstance(d.get("architectures"), list):
        ours.architectures = d["architectures"]
    return ours, d


def _weights_only_error(cls: type, folder: Path) -> CheckpointError:
    weights = next(n for n in WEIGHT_FILES if (folder / n).is_file())
    return CheckpointError(
        f"{folder} holds weights ({weights}) but no config.json: a weights-only folder, as torch.save("
        f"model.state_dict()), transformers' Trainer.save_model or accelerator.save_model write for a raw model. "
        f"Load it with {cls.__name__}.from_pretrained(folder, config=...) passing the model's "
        f"{cls.config_class.__name__}, or save a full checkpoint instead: model.save_pretrained(folder), or "
        f"save through mlab_tfs.as_transformers(model) (its save_pretrained, Trainer and accelerator write "
        f"config.json too)")


def _fits(model: torch.nn.Module, state: StateDict, source: str) -> bool:
    try:
        check_fits(model, state, source)
    except CheckpointError:
        return False
    return True


def _with_tied_pair(model: Any, state: StateDict, config: Any) -> StateDict:
    """state with a tied pair saved once (under either name) filled in under both names."""
    ours = dict(state)
    if getattr(config, "tie_word_embeddings", False):
        for alias, source_name in model.tied_weights.items():
            if alias not in ours and source_name in ours:
                ours[alias] = ours[source_name]
            elif source_name not in ours and alias in ours:  # saved under the other name: tying is symmetric
                ours[source_name] = ours[alias]
    return ours


def _same_values(a: StateDict, b: StateDict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def _own_layout(model: Any, state: StateDict, config: Any, source: str) -> StateDict:
    """A weights-only folder's state dict as the model's: its own names (a tied pair saved
    once, under either name, filled in), or transformers' layout converted. The layout is
    decided once for the whole state dict, never per tensor: a square weight (GPT-2's
    c_proj, (C, C)) fits both layouts, the non-square ones tell them apart. A state dict that
    fits both layouts with different values (every transposed weight square) is a
    CheckpointError: which one it is cannot be told from the file."""
    ours = _with_tied_pair(model, state, config)
    ours_fits = _fits(model, ours, source)
    try:
        converted = type(model).hf_to_ours(dict(state), config)
    except (CheckpointError, KeyError, ValueError):
        return ours  # not transformers' layout: ours, whose errors name the file's keys
    except NotImplementedError:  # a learner's conversion not written yet
        if ours_fits:
            return ours
        raise
    if not _fits(model, converted, source):
        return ours
    if ours_fits and not _same_values(ours, _with_tied_pair(model, converted, config)):
        raise CheckpointError(
            f"the weights-only checkpoint {source} fits {type(model).__name__} both in its own layout and in "
            f"transformers' (every weight that the conversion transposes is square), with different values: "
            f"which it is cannot be told from the file. Save a full checkpoint (save_pretrained, or through "
            f"mlab_tfs.as_transformers), or load the state dict yourself: model.load_state_dict(torch.load(...)) "
            f"for our layout, model.load_state_dict({type(model).__name__}.hf_to_ours(state, config)) for "
            f"transformers'")
    return converted


def _raw_layout_error(model: Any, folder: Path, state: StateDict, config: Any) -> CheckpointError | None:
    """The error for a folder whose config.json sits beside weights in the model's OWN layout
    (``torch.save(model.state_dict())`` next to a config), or None if that is not what it holds."""
    if not _fits(model, _with_tied_pair(model, state, config), str(folder)):
        return None
    weights = next((n for n in WEIGHT_FILES if (folder / n).is_file()), "the weights")
    return CheckpointError(
        f"{folder / weights} holds {type(model).__name__}'s own state_dict() (our parameter layout, e.g. GPT-2's "
        f"Linear weights not transposed to transformers' Conv1D), but beside a config.json a checkpoint's weights "
        f"must be in transformers' layout, as save_pretrained writes them. Re-save with model.save_pretrained("
        f"folder) (or mlab_tfs.as_transformers(model).save_pretrained), or load this one as a weights-only file: "
        f"{type(model).__name__}.from_pretrained(a folder holding only {weights}, config=...)")


class PretrainedMixin(ModelSurfaceMixin):
    """``from_pretrained`` / ``save_pretrained`` for a model class that defines:

    - ``config_class``: a dataclass with ``from_dict(dict)`` and ``to_dict()``;
    - ``hf_to_ours`` and ``ours_to_hf``: static methods (state_dict, config) -> state_dict
      that translate names (and transposes) between Hugging Face's layout and the model's;
    - optionally ``head_prefixes``: parameters a checkpoint may lack because it was saved
      from a model without this head (a BertModel loaded into BertForMaskedLM); they keep
      their fresh initialisation, with a warning, as in transformers;
    - optionally ``tied_weights``: alias -> source parameter names that the config's
      ``tie_word_embeddings`` makes one Parameter (transformers' ``_tied_weights_keys``).
    """

    config_class: type
    hf_to_ours: Callable[[StateDict, Any], StateDict]
    ours_to_hf: Callable[[StateDict, Any], StateDict]
    head_prefixes: tuple[str, ...] = ()
    tied_weights: dict[str, str] = {}
    # What from_pretrained was given (a folder or a hub id), as transformers' model.name_or_path;
    # "" for a model built from a config.
    name_or_path: str = ""

    def __new__(cls, *args: Any, **kwargs: Any):
        # A config checks its fields when built; one changed since (config.n_head = 5) is
        # checked again here, where the model is built from it, naming the field.
        config = args[0] if args else kwargs.get("config")
        if dataclasses.is_dataclass(config) and hasattr(config, "__post_init__"):
            config.__post_init__()
        return super().__new__(cls)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        new_head: bool = False,
        dtype: torch.dtype | str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        device: str | int | torch.device | None = None,
        device_map: str | int | torch.device | dict | None = None,
        config: Any = None,
        **kwargs: Any,
    ):
        """Load a Hugging Face checkpoint: a local folder or a hub id (downloaded when online).

        new_head=True says you expect the checkpoint to lack this class's head (you are about
        to fine-tune a fresh one) and silences the warning about it.
        dtype (or transformers' older name torch_dtype): None or "auto" (transformers 5's
        default, modeling_utils._get_dtype) loads in config.json's dtype, else the weights'
        (a checkpoint stored in fp16 loads in fp16); torch.float16, bfloat16, float32 or
        float64, or its name ("float16", "half", "bfloat16", "float32", "float64") casts every
        parameter. float8 types are refused with a ValueError (they have no matmul; transformers'
        loader fails on them too, with a TypeError from torch's storage).
        config: the model's config instead of config.json's (it wins over the folder's, as in
        transformers): a ``config_class`` instance (copied, not changed), or a transformers
        config of this model_type (read through its to_dict()). A folder without config.json
        is a weights-only folder (what ``torch.save(model.state_dict())``, transformers'
        Trainer.save_model or accelerator.save_model write for a raw model): model.safetensors
        or pytorch_model.bin holding this model's own parameter names (a state dict in
        transformers' layout is read too); it needs config=, and without one the
        CheckpointError says so and how to save a full checkpoint instead.
        device (or device_map naming one device): where the parameters go; checked before
        any weight is read (a missing GPU is a ValueError naming it; "meta" is refused).
        revision, cache_dir, token, local_files_only, force_download: passed to the hub download.
        A config that ties the head to the embedding while the file holds the head with other
        values loads untied, with a warning (transformers' tie_weights does the same).
        Other keywords must be fields of ``config_class`` and override config.json
        (e.g. num_labels=3, attn_implementation="sdpa").
        The model's ``name_or_path`` is name_or_path as given (transformers' attribute, which
        peft writes as an adapter's base_model_name_or_path).

        Raises TypeError for an unknown keyword (with the closest name), one of
        transformers' that this loader cannot honour, or a config= of another type; ValueError for a bad dtype or an unknown or
        unavailable device;
        FileNotFoundError for a local path that does not exist (at once, without the hub);
        CheckpointError naming the file for a missing, truncated or corrupted config.json or
        weight file, and listing every key that does not fit the model.
        """
        if not isinstance(new_head, bool):
            raise TypeError(f"new_head must be a bool, got {new_head!r}")
        if new_head and not cls.head_prefixes:
            raise ValueError(f"new_head=True: {cls.__name__} has no head that may start fresh; every weight must "
                             f"come from the checkpoint")
        dtype = _parse_dtype("dtype", dtype)
        torch_dtype = _parse_dtype("torch_dtype", torch_dtype)
        if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
            raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass one (dtype)")
        dtype = dtype if dtype is not None else torch_dtype
        target_device = _parse_device(device, device_map)

        # Fields, and transformers' generic names of them (GPT-2's hidden_size for n_embd).
        field_names = [f.name for f in dataclasses.fields(cls.config_class)]
        field_names += list(getattr(cls.config_class, "attribute_map", {}))
        hub_kwargs = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
        overrides: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in UNSUPPORTED_KWARGS:
                raise TypeError(f"{cls.__name__}.from_pretrained() does not support transformers' {key}= "
                                f"({UNSUPPORTED_KWARGS[key]})")
            if key == "attn_implementation" and value is None:  # transformers' "the default"
                continue
            if key == "attn_implementation" and key not in field_names:
                if value != "eager":
                    raise ValueError(f"attn_implementation: {cls.__name__} has only the eager attention, got {value!r}")
                continue
            if key not in field_names:
                raise _unknown_keyword(cls, key, field_names + ["new_head", "dtype", "torch_dtype", "device", "config",
                                                                "device_map", "attn_implementation", *HUB_KWARGS])
            overrides[key] = value

        folder = resolve_checkpoint(name_or_path, **hub_kwargs)
        weights_only = not (folder / "config.json").exists() and any((folder / n).is_file() for n in WEIGHT_FILES)
        if config is not None:
            config, stored = _given_config(cls, config, overrides)
        else:
            if weights_only:
                raise _weights_only_error(cls, folder)
            stored = read_config(folder)
            try:
                config = cls.config_class.from_dict({**stored, **overrides})
            except ValueError as e:  # a bad field or a model_type of another model: say where it came from
                if not isinstance(e, ConfigError) and type(e) is not ValueError:
                    raise
                source = f"{folder / 'config.json'}" + (f" with the keywords {sorted(overrides)}" if overrides else "")
                raise type(e)(f"{e} (reading {source})") from e
            if isinstance(stored.get("architectures"), list):  # as transformers keeps them
                config.architectures = stored["architectures"]
        state = read_state_dict(folder)
        if dtype is None or dtype == "auto":
            dtype = _auto_dtype(stored, state)
        # Read in the checkpoint's own names: the conversion of a tied config makes the head
        # the embedding. (These models name their tied pair as transformers does.)
        differing = _differing_tied_weights(cls.tied_weights, state) if getattr(
            config, "tie_word_embeddings", False) else []
        if differing:  # the config is wrong about this checkpoint: load it untied, as transformers does
            warnings.warn(
                f"{folder / 'config.json'} says tie_word_embeddings=True, but the checkpoint holds "
                f"{', '.join(f'{a} and {s}' for a, s in differing)} with different values: they are loaded "
                f"untied (as transformers does); set tie_word_embeddings=False in the config to silence this",
                stacklevel=2,
            )
            config = dataclasses.replace(config, tie_word_embeddings=False)
            for alias, source in cls.tied_weights.items():
                if alias not in state and source in state:  # a pair held once (DeBERTa's bias): equal, as tied
                    state[alias] = state[source]
        model = cls(config)
        if weights_only:
            converted = _own_layout(model, state, config, str(folder))
        else:
            try:
                converted = cls.hf_to_ours(state, config)
            except (KeyError, ValueError) as e:
                raw = _raw_layout_error(model, folder, state, config)
                if raw is not None and not isinstance(e, CheckpointError):
                    raise raw from e
                raise
            if not _fits(model, converted, str(folder)):
                raw = _raw_layout_error(model, folder, state, config)
                if raw is not None:
                    raise raw
        # Every name a fresh head answers to: a tied alias (DeBERTa's decoder.bias) too.
        fresh = {**{k: p.detach() for k, p in model.named_parameters(remove_duplicate=False)}, **model.state_dict()}
        missing_head = sorted(k for k in fresh if cls.head_prefixes and k.startswith(cls.head_prefixes)
                              and k not in converted)
        if missing_head and not new_head:
            warnings.warn(
                f"the checkpoint {folder} has no weights for {cls.__name__}'s head "
                f"({', '.join(missing_head)}): they start from a fresh random initialisation; "
                f"train them before use (pass new_head=True to silence this)",
                stacklevel=2,
            )
        for key in missing_head:
            converted[key] = fresh[key]
        check_fits(model, converted, str(folder))
        model.load_state_dict(converted, strict=True)
        model.eval()  # as transformers does: dropout off until you call .train()
        model.name_or_path = os.fspath(name_or_path)  # as transformers records it (peft's base_model_name_or_path)
        if dtype is not None or target_device is not None:
            model.to(device=target_device, dtype=dtype)
        return model

    def weights_are_tied(self) -> bool | None:
        """Whether every pair of ``tied_weights`` is one tensor right now (None if the model
        has none of them). Decided from the parameters, not the config: a head untied by
        hand (``model.lm_head.weight = nn.Parameter(...)``) is untied, as transformers sees it."""
        # Only the pairs this variant has both ends of (DeBERTa's legacy=False has no decoder).
        pairs = [(self.get_parameter(a), self.get_parameter(s)) for a, s in self._tied_pairs()]  # type: ignore[attr-defined]
        if not pairs:
            return None
        return all(a is s or (a.data_ptr() == s.data_ptr() and a.shape == s.shape) for a, s in pairs)

    def save_pretrained(self, folder: str | os.PathLike, *, state_dict: StateDict | None = None,
                        safe_serialization: bool = True, save_function: Callable[[Any, Any], None] | None = None) -> None:
        """Write config.json and model.safetensors in the layout transformers loads.

        All-or-nothing (mlab_tfs.durable.atomic_folder): a failure, full disk or kill at any
        moment leaves the folder's previous checkpoint whole. Weight files of an older save
        (shards, pytorch_model.bin) are dropped; other files in the folder (a tokenizer) are kept.
        config.json's tie_word_embeddings says whether the head is tied *now*
        (``config_as_saved``), and its ``architectures`` is ``[self.saved_architecture()]`` (the
        class name): a config built from scratch carries its class's default (BertConfig: ["BertModel"]) until the model is
        saved, when, as in transformers, ``self.config.architectures`` becomes the saved class.

        As transformers' ``PreTrainedModel.save_pretrained`` (modeling_utils.py):
        state_dict: written instead of ``self.state_dict()``, in this model's own names (those
        of its state_dict(); a tied head may be left out); it must hold every parameter of the
        model with its shape, else a ValueError naming state_dict lists what does not fit.
        safe_serialization=False writes pytorch_model.bin (a torch pickle) instead of
        model.safetensors, with save_function (default torch.save; accelerate passes its own).
        """
        if not isinstance(safe_serialization, bool):
            raise TypeError(f"safe_serialization must be a bool, got {safe_serialization!r}")
        if save_function is not None and not callable(save_function):
            raise TypeError(f"save_function must be callable (like torch.save), got {type(save_function).__name__}")
        config = config_as_saved(self)
        hf_config = config.to_dict()
        # The architecture tells transformers' Auto classes which class to build.
        hf_config["architectures"] = [self.saved_architecture()]
        tied = self.weights_are_tied()
        if state_dict is None:
            state = self.state_dict()  # type: ignore[attr-defined]
            if tied is False:  # each alias under its own name, even one whose source it still is
                for alias in self.tied_weights:
                    if alias not in state:
                        with contextlib.suppress(AttributeError):
                            state[alias] = self.get_parameter(alias).detach()  # type: ignore[attr-defined]
        else:
            state = self._given_state_dict(state_dict, tied)
        floats = [t for t in state.values() if t.is_floating_point()]
        if floats:  # as transformers writes it; dtype="auto" reads it back
            hf_config["dtype"] = str(floats[0].dtype).removeprefix("torch.")
        state = self.ours_to_hf(state, config)
        with atomic_folder(folder, drop=(*STALE_WEIGHTS, "model.safetensors")) as staging:
            (staging / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
            if safe_serialization:
                save_safetensors(state, staging / "model.safetensors")
            else:
                (save_function or torch.save)({k: v.detach().cpu().contiguous() for k, v in state.items()},
                                              staging / "pytorch_model.bin")
        # As transformers (modeling_utils.save_pretrained): the saved class is the config's architecture now.
        with contextlib.suppress(AttributeError):
            self.config.architectures = list(hf_config["architectures"])  # type: ignore[attr-defined]

    def saved_architecture(self) -> str:
        """The class name save_pretrained writes as config.json's ``architectures``: this class's
        (a class that reads several transformers families names the one of its config)."""
        return type(self).__name__

    def _given_state_dict(self, state_dict: object, tied: bool | None) -> StateDict:
        """save_pretrained's state_dict=, checked against the model (a tied alias filled in)."""
        if not isinstance(state_dict, dict) or not all(
                isinstance(k, str) and isinstance(v, Tensor) for k, v in state_dict.items()):
            raise TypeError(f"state_dict must be a dict of parameter name -> tensor (as {type(self).__name__}"
                            f".state_dict()), got {type(state_dict).__name__}")
        state = dict(state_dict)
        for alias, source in self.tied_weights.items():
            if tied and alias not in state and source in state:
                state[alias] = state[source]
        try:
            check_fits(self, state, "passed as state_dict")  # type: ignore[arg-type]
        except CheckpointError as e:
            raise ValueError(f"state_dict: {e} (pass {type(self).__name__}.state_dict()'s names and shapes; a "
                             f"transformers-layout state dict goes through mlab_tfs.as_transformers(model)"
                             f".save_pretrained)") from e
        return state


def config_as_saved(model: Any) -> Any:
    """model.config as save_pretrained writes it: tie_word_embeddings as the weights are *now*
    (``weights_are_tied()``, decided from the parameters: a head untied by hand is untied), a
    copy when that differs from the config's, else the config itself."""
    config = model.config
    tied = model.weights_are_tied() if callable(getattr(model, "weights_are_tied", None)) else None
    if tied is not None and getattr(config, "tie_word_embeddings", tied) != tied and dataclasses.is_dataclass(config):
        architectures = getattr(config, "architectures", None)
        config = dataclasses.replace(config, tie_word_embeddings=tied)
        with contextlib.suppress(AttributeError):
            config.architectures = architectures  # not a field: replace() would reset it
    return config
