"""Reading and writing Hugging Face checkpoints, shared by every model.

A model file only has to say how its parameter names relate to Hugging Face's (a pure
function of the state dict each way); finding the files, reading safetensors or pickles,
checking that every tensor fits and writing a checkpoint transformers can load is done
here once, by ``PretrainedMixin``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

Tensor = torch.Tensor
StateDict = dict[str, Tensor]

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model it is loaded into."""


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A local folder as it is, or a hub id downloaded to the local cache (needs network)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists() or str(name_or_path).startswith((".", "/")):
        raise FileNotFoundError(f"name_or_path must be a checkpoint folder or a hub id, got {str(name_or_path)!r}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    folder = Path(hf_hub_download(str(name_or_path), "config.json")).parent
    for name in WEIGHT_FILES:
        try:
            hf_hub_download(str(name_or_path), name)
        except EntryNotFoundError:
            continue
        if name.endswith(".index.json"):
            index = json.loads((folder / name).read_text())
            for shard in sorted(set(index["weight_map"].values())):
                hf_hub_download(str(name_or_path), shard)
        return folder
    raise FileNotFoundError(f"hub repo {name_or_path!r} has none of {WEIGHT_FILES}")


def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}")
    return json.loads(path.read_text())


def read_state_dict(folder: Path) -> StateDict:
    """Every tensor of a checkpoint folder: safetensors (single or sharded) or a torch pickle."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    if (folder / "model.safetensors.index.json").is_file():
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        state: StateDict = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_file(folder / shard))
        return state
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no weights in {folder}: looked for {', '.join(WEIGHT_FILES)}")


def check_fits(model: torch.nn.Module, state_dict: StateDict, source: str) -> None:
    """Raise one CheckpointError listing every missing key, unexpected key and shape mismatch."""
    # Every name load_state_dict accepts: a tied parameter under both of its names too.
    expected = {**dict(model.named_parameters(remove_duplicate=False)), **model.state_dict()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if state_dict[k].shape != expected[k].shape
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

    def is_tied(alias: str, source: str) -> bool:
        return model.get_parameter(alias) is model.get_parameter(source)

    def drop_aliases(module, state_dict, prefix, local_metadata) -> None:
        for alias, source in tied.items():
            if is_tied(alias, source) and prefix + source in state_dict:
                state_dict.pop(prefix + alias, None)

    def fill_aliases(module, state_dict, prefix, *args) -> None:
        for alias, source in tied.items():
            if is_tied(alias, source) and prefix + alias not in state_dict and prefix + source in state_dict:
                state_dict[prefix + alias] = state_dict[prefix + source]

    model.register_state_dict_post_hook(drop_aliases)
    model.register_load_state_dict_pre_hook(fill_aliases)


def save_safetensors(state_dict: StateDict, path: Path) -> None:
    from safetensors.torch import save_file

    # safetensors refuses views and shared storage: give every tensor its own contiguous copy.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


class PretrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for a model class that defines:

    - ``config_class`` with ``from_dict(dict)`` and ``to_dict()``;
    - ``hf_to_ours`` and ``ours_to_hf``: static methods (state_dict, config) -> state_dict
      that translate names (and transposes) between Hugging Face's layout and the model's;
    - optionally ``head_prefixes``: parameters a checkpoint may lack because it was saved
      from a model without this head (a BertModel loaded into BertForMaskedLM); they keep
      their fresh initialisation, with a warning, as in transformers.
    """

    config_class: type
    hf_to_ours: Callable[[StateDict, Any], StateDict]
    ours_to_hf: Callable[[StateDict, Any], StateDict]
    head_prefixes: tuple[str, ...] = ()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        new_head: bool = False,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        **config_overrides: Any,
    ):
        """Load a Hugging Face checkpoint: a local folder or a hub id (downloaded when online).

        new_head=True says you expect the checkpoint to lack this class's head (you are about
        to fine-tune a fresh one) and silences the warning about it.
        Keyword arguments that are config fields override config.json (e.g. num_labels=3).
        """
        folder = resolve_checkpoint(name_or_path)
        config = cls.config_class.from_dict({**read_config(folder), **config_overrides})
        model = cls(config)
        converted = cls.hf_to_ours(read_state_dict(folder), config)
        fresh = model.state_dict()
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
        if dtype is not None or device is not None:
            model.to(device=device, dtype=dtype)
        return model

    def save_pretrained(self, folder: str | Path) -> None:
        """Write config.json and model.safetensors in the layout transformers loads."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict()  # type: ignore[attr-defined]
        # The architecture tells transformers' Auto classes which class to build.
        config["architectures"] = [type(self).__name__]
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_safetensors(self.ours_to_hf(self.state_dict(), self.config), folder / "model.safetensors")  # type: ignore[attr-defined]
