"""Checks on what users pass to a model's forward, shared by every model.

Each check raises an error that names the argument, says what was expected and what
came, instead of letting a bad value surface as an index error deep inside a layer
(or, worse, as a silently wrong result).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _check_values() -> bool:
    """Range checks read values back from the device; under torch.compile they would break
    the graph, so compiled and exported code (torch.export, ONNX) skips them (shapes and dtypes are still
    checked)."""
    return not (torch.compiler.is_compiling() or torch.compiler.is_exporting())


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"


# Indexing a table with these selects rows as a mask instead of looking ids up (torch reads
# uint8 as a legacy bool mask), so a matching shape would give a silently wrong result.
MASK_DTYPES = (torch.bool, torch.uint8)


def _mask_note(ids: Tensor) -> str:
    return ": a uint8 tensor indexes as a mask, not as ids; convert with .long()" if ids.dtype == torch.uint8 else ""


def require_tensor(name: str, x: object) -> Tensor:
    """x itself if it is a torch.Tensor; otherwise a TypeError naming the argument ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(x)}")
    return x


def check_token_ids(name: str, ids: object, vocab_size: int) -> Tensor:
    """ids: an integer (batch, seq) tensor, batch and seq >= 1, with every value in [0, vocab_size).

    Raises TypeError if ids is not a tensor, ValueError naming ``name`` otherwise.
    """
    ids = require_tensor(name, ids)
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype in MASK_DTYPES:
        raise ValueError(f"{name} must hold integer token ids (torch.long), got {_describe(ids)}{_mask_note(ids)}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, seq), got {_describe(ids)}")
    if ids.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sequence (batch size >= 1), got {_describe(ids)}")
    if ids.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one token per row, got {_describe(ids)}")
    if not _check_values():
        return ids
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        where = (ids == bad).nonzero()[0].tolist()
        raise ValueError(
            f"{name} must be in [0, {vocab_size}) (the vocabulary size), "
            f"got {bad} at index {tuple(where)}"
        )
    return ids


def check_attention_mask(name: str, mask: object, shape: tuple[int, int]) -> Tensor:
    """mask: 1 for tokens to attend to, 0 for padding; bool, integer or 0./1. floats."""
    mask = require_tensor(name, mask)
    if mask.dtype.is_complex:
        raise ValueError(f"{name} must be bool, integer or float 0/1, got {_describe(mask)}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have shape (batch, cached + new tokens) = {tuple(shape)}, got {_describe(mask)}"
        )
    if mask.dtype != torch.bool and _check_values() and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name} must hold only 0 and 1 (1 = attend), got values {mask.unique().tolist()[:8]}")
    return mask.bool()


def _check_broadcast_ids(name: str, ids: object, shape: tuple[int, int], upper: int, table: str) -> Tensor:
    """Integers in [0, upper), shaped (batch, seq), (1, seq) or (seq,); returned as 2-d."""
    ids = require_tensor(name, ids)
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype in MASK_DTYPES:
        raise ValueError(f"{name} must hold integers (torch.long), got {_describe(ids)}{_mask_note(ids)}")
    if ids.dim() == 1:
        ids = ids[None]
    batch, seq = shape
    if ids.dim() != 2 or ids.shape[1] != seq or ids.shape[0] not in (1, batch):
        raise ValueError(f"{name} must have shape ({batch}, {seq}) or (1, {seq}), got {_describe(ids)}")
    if not _check_values():
        return ids
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= upper:
        bad = lo if lo < 0 else hi
        where = tuple((ids == bad).nonzero()[0].tolist())
        raise ValueError(f"{name} must be in [0, {upper}) ({table}), got {bad} at index {where}")
    return ids


def check_position_ids(name: str, position_ids: object, shape: tuple[int, int], max_positions: int) -> Tensor:
    """position_ids: integers in [0, max_positions), shaped (batch, seq), (1, seq) or (seq,)."""
    return _check_broadcast_ids(name, position_ids, shape, max_positions, "the model's position table")


def check_labels(name: str, labels: object, shape: tuple[int, ...], num_classes: int) -> Tensor:
    """labels: class ids in [0, num_classes) or -100 (ignored), shaped like the inputs.

    Any integer dtype is taken and returned as torch.long: cross_entropy accepts only long
    targets and would fail on int32 deep inside the loss."""
    labels = require_tensor(name, labels)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer ids, got {_describe(labels)}")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {_describe(labels)}")
    if not _check_values():
        return labels
    bad = (labels != -100) & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        where = tuple(bad.nonzero()[0].tolist())
        raise ValueError(
            f"{name} must be in [0, {num_classes}) or -100 (ignored), got {int(labels[where])} at index {where}"
        )
    return labels.long()


def check_kv_cache(
    name: str, past: object, *, n_layer: int, batch: int, n_head: int, head_dim: int,
    device: torch.device | None = None,
) -> int:
    """past: a KV cache for a model of n_layer layers, n_head heads of head_dim, run on a batch
    of ``batch`` rows: a tuple of one (key, value) pair per layer, each (batch, n_head,
    cached, head_dim), or a cache object (``mlab_tfs.gpt2.solution.KVCache``, dynamic or
    static). With ``device``, every tensor must be there.

    Returns the number of cached positions: 0 for an empty cache, max_len for a static one
    (whose written columns cache_position names). TypeError / ValueError naming
    ``name``, the entry and what was expected otherwise.
    """
    if hasattr(past, "is_static") and hasattr(past, "keys") and hasattr(past, "n_layer"):
        if past.n_layer != n_layer:
            raise ValueError(f"{name} is a KVCache of {past.n_layer} layers; the model has {n_layer}")
        layers = [(k, v) for k, v in zip(past.keys, past.values) if k is not None]
        if not layers:
            return 0
        if len(layers) != n_layer:
            raise ValueError(f"{name}: only {len(layers)} of the KVCache's {n_layer} layers hold keys "
                             f"(a forward pass stopped half-way?); reset it or start a new one")
        past = layers
    elif not isinstance(past, (tuple, list)):
        raise TypeError(f"{name} must be a KVCache or a tuple of (key, value) pairs, one per layer, "
                        f"got {_describe(past)}")
    elif len(past) != n_layer:
        raise ValueError(f"{name} must hold {n_layer} layers (one per block), got {len(past)}")
    cached = None
    for i, layer in enumerate(past):
        if not isinstance(layer, (tuple, list)) or len(layer) != 2:
            raise ValueError(f"{name}[{i}] must be a (key, value) pair, got {_describe(layer)}")
        for j, t in enumerate(layer):
            t = require_tensor(f"{name}[{i}][{j}]", t)
            if t.dim() != 4 or t.shape[0] != batch or t.shape[1] != n_head or t.shape[3] != head_dim:
                raise ValueError(
                    f"{name}[{i}][{j}] must have shape (batch={batch}, n_head={n_head}, cached, "
                    f"head_dim={head_dim}), got {_describe(t)}"
                )
            if device is not None and not same_device(t.device, device):
                raise ValueError(f"{name}[{i}][{j}] is on {t.device} but input_ids is on {device}")
            if cached is None:
                cached = t.shape[2]
            elif t.shape[2] != cached:
                raise ValueError(
                    f"{name}[{i}][{j}] caches {t.shape[2]} positions but earlier entries cache {cached}"
                )
    return int(cached)


def _is_static(past: object) -> bool:
    return bool(getattr(past, "is_static", False))


def check_cache_position(name: str, cache_position: object, length: int, cache: object, cached: int) -> Tensor:
    """The cache columns of ``length`` new tokens: a 1-d integer tensor of that length.

    With a static cache (``cache.is_static``) it is required and its values must lie in
    [0, max_len) and increase; with a dynamic one (or none) it must be cached .. cached +
    length - 1, where the new keys go. The values are not read under torch.compile. Returns
    it as torch.long. TypeError / ValueError naming ``name`` otherwise.
    """
    static = _is_static(cache)
    if cache_position is None:
        raise ValueError(f"{name} is required with a static KVCache: the ({length},) cache columns the new "
                         f"tokens are written to, e.g. torch.arange(start, start + {length})")
    t = require_tensor(name, cache_position)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype in MASK_DTYPES:
        raise TypeError(f"{name} must hold integer cache columns (torch.long), got {_describe(t)}")
    if tuple(t.shape) != (length,):
        raise ValueError(f"{name} must have shape ({length},), one cache column per new token, got {_describe(t)}")
    t = t.long()
    if not _check_values() or length == 0:
        return t
    if static:
        M = cache.key_mask.shape[1]
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= M:
            raise ValueError(f"{name} must be in [0, max_len={M}) (the static cache's columns), got "
                             f"{lo if lo < 0 else hi}")
        if length > 1 and not bool((t[1:] > t[:-1]).all()):
            raise ValueError(f"{name} must increase (new tokens go to later columns), got {t.tolist()[:8]}")
    else:
        expected = torch.arange(cached, cached + length, device=t.device)
        if not torch.equal(t, expected):
            raise ValueError(f"{name} must be {cached} .. {cached + length - 1} for a dynamic cache holding "
                             f"{cached} positions (the new keys are appended), got {t.tolist()[:8]}")
    return t


def check_token_type_ids(name: str, token_type_ids: object, shape: tuple[int, int], type_vocab_size: int) -> Tensor:
    """token_type_ids (segment ids): integers in [0, type_vocab_size), shaped (batch, seq), (1, seq) or (seq,).

    Returns them as (batch or 1, seq).
    """
    return _check_broadcast_ids(name, token_type_ids, shape, type_vocab_size, "the model's type_vocab_size")


def check_classification_labels(name: str, labels: object, batch: int, num_labels: int, problem_type: str) -> Tensor:
    """Sequence-classification labels, as transformers' problem types expect them.

    - "single_label_classification": integer class ids in [0, num_labels) or -100, shape (batch,),
      returned as torch.long;
    - "regression": numbers, shape (batch,) or (batch, 1) for one label, (batch, num_labels) otherwise;
    - "multi_label_classification": targets in [0, 1], shape (batch, num_labels).
    """
    labels = require_tensor(name, labels)
    if labels.dtype.is_complex:
        raise ValueError(f"{name} must be real numbers, got {_describe(labels)}")
    if problem_type == "single_label_classification":
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(
                f"{name} must hold integer class ids for single-label classification, got {_describe(labels)}"
            )
        if labels.dim() == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if tuple(labels.shape) != (batch,):
            raise ValueError(f"{name} must have shape ({batch},) (one class id per sequence), got {_describe(labels)}")
        bad = (labels != -100) & ((labels < 0) | (labels >= num_labels))
        if bool(bad.any()):
            where = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"{name} must be in [0, {num_labels}) (num_labels) or -100 (ignored), got {int(labels[where])} "
                f"at index {where}"
            )
        return labels.long()  # any integer dtype: cross_entropy takes only long targets
    if problem_type == "regression":
        shapes = [(batch,), (batch, 1)] if num_labels == 1 else [(batch, num_labels)]
        if tuple(labels.shape) not in shapes:
            raise ValueError(f"{name} must have shape {' or '.join(map(str, shapes))} for regression, "
                             f"got {_describe(labels)}")
        return labels
    if problem_type == "multi_label_classification":
        if tuple(labels.shape) != (batch, num_labels):
            raise ValueError(
                f"{name} must have shape ({batch}, {num_labels}) (one 0/1 target per label) for multi-label "
                f"classification, got {_describe(labels)}"
            )
        if bool(((labels < 0) | (labels > 1)).any()):
            raise ValueError(f"{name} must be in [0, 1] for multi-label classification, got values outside")
        return labels
    raise ValueError(f"problem_type must be regression, single_label_classification or multi_label_classification, "
                     f"got {problem_type!r}")


# ---------------------------------------------------------------------------------------
# Plain arguments: counts, numbers, devices, id sequences
# ---------------------------------------------------------------------------------------


def _is_bool(x: object) -> bool:
    import numpy as np

    return isinstance(x, (bool, np.bool_)) or (isinstance(x, torch.Tensor) and x.dtype == torch.bool)


def _is_scalar(x: object) -> bool:
    return isinstance(x, (int, float, complex, str)) or (hasattr(x, "ndim") and getattr(x, "ndim") == 0)


def _check_readable(name: str, value: object) -> None:
    """A 0-d tensor whose value can be read: not a meta tensor (shape only, no data)."""
    if isinstance(value, torch.Tensor) and value.is_meta:
        raise ValueError(f"{name} is a tensor on the meta device, which holds no value: pass a number")


def check_int(name: str, value: object, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer argument, returned as a Python int.

    Accepted: a Python int, a numpy integer, a 0-d integer tensor (or numpy array).
    TypeError for anything else, bools included (True is not a count) and floats
    (2.0 is refused rather than truncated); ValueError outside [minimum, maximum].
    """
    import numpy as np

    ok = not _is_bool(value) and (
        isinstance(value, (int, np.integer))
        or (isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0
            and not (value.dtype.is_floating_point or value.dtype.is_complex
                     if isinstance(value, torch.Tensor) else value.dtype.kind not in "iu"))
    )
    if not ok:
        raise TypeError(f"{name} must be an int, got {_describe(value)}" + (f" ({value!r})" if _is_scalar(value) else ""))
    _check_readable(name, value)
    out = int(value)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {out}")
    return out


def check_number(
    name: str, value: object, *, minimum: float | None = None, maximum: float | None = None,
    min_inclusive: bool = True, max_inclusive: bool = True,
) -> float:
    """A finite real argument, returned as a Python float.

    Accepted: a Python int or float, a numpy number, a 0-d real tensor (or numpy array).
    TypeError for anything else (bools included); ValueError for NaN, +-inf, or a value
    outside the range (each end inclusive unless told otherwise).
    """
    import math

    import numpy as np

    ok = not _is_bool(value) and (
        isinstance(value, (int, float, np.integer, np.floating))
        or (isinstance(value, torch.Tensor) and value.ndim == 0 and not value.dtype.is_complex)
        or (isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf")
    )
    if not ok:
        raise TypeError(f"{name} must be a real number, got {_describe(value)}" + (f" ({value!r})" if _is_scalar(value) else ""))
    _check_readable(name, value)
    try:
        out = float(value)
    except OverflowError:  # an int past float's range: as infinite as inf
        raise ValueError(f"{name} must be a finite number, got an int of {len(str(abs(int(value))))} digits "
                         "(too large for a float)") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number, got {out}")
    below = minimum is not None and (out < minimum if min_inclusive else out <= minimum)
    above = maximum is not None and (out > maximum if max_inclusive else out >= maximum)
    if below or above:
        lo = "(-inf" if minimum is None else ("[" if min_inclusive else "(") + f"{minimum:g}"
        hi = "inf)" if maximum is None else f"{maximum:g}" + ("]" if max_inclusive else ")")
        raise ValueError(f"{name} must be in {lo}, {hi}, got {out:g}")
    return out


def check_bool(name: str, value: object) -> bool:
    """A flag: a Python bool or numpy bool (1, "yes" and None are refused: TypeError)."""
    import numpy as np

    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_describe(value)} ({value!r})")
    return bool(value)


def check_flag(name: str, value: object) -> bool:
    """A forward's Optional[bool] flag (use_cache, output_attentions, ...): None is the
    default, False, as transformers' flags; anything else must be a bool (check_bool)."""
    return False if value is None else check_bool(name, value)


def same_device(a: torch.device | str, b: torch.device | str) -> bool:
    """Equal devices, "cuda" meaning the current CUDA device."""
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        # Only then ask which device is current: compiled code never gets here (tensors know their index).
        current = torch.cuda.current_device() if a.type == "cuda" and torch.cuda.is_available() else None
        return current is None or (a.index if a.index is not None else current) == (
            b.index if b.index is not None else current)
    return a.index == b.index


def check_device(name: str, x: Tensor, device: torch.device | None, what: str = "the model") -> Tensor:
    """x must already be on device (nothing is moved silently): ValueError naming both devices."""
    if device is not None and not same_device(x.device, device):
        raise ValueError(f"{name} is on {x.device} but {what} is on {torch.device(device)}: move it there first "
                         f"(e.g. {name}.to({str(torch.device(device))!r}))")
    return x


def check_devices(device: torch.device | None, what: str = "the model", **tensors: object) -> None:
    """check_device for each tensor among ``tensors`` (name=value); other values (None, lists)
    are left to the argument's own check."""
    for name, x in tensors.items():
        if isinstance(x, Tensor):
            check_device(name, x, device, what)


def as_int_tensor(name: str, ids: object, device: torch.device | None, what: str = "the model") -> Tensor:
    """Integer ids as a long tensor on device.

    Lists and tuples (nested for 2-d) become a tensor on device; so does a list of
    equal-length tensors (the rows, stacked; each must already be on device). A tensor (or
    numpy array) must hold integers, and a tensor must already be on device (check_device).
    Bools, floats and ragged lists are refused with a ValueError naming the argument.
    """
    import numpy as np

    if isinstance(ids, torch.Tensor):
        t = check_device(name, ids, device, what)
    elif isinstance(ids, (list, tuple)) and ids and all(isinstance(r, torch.Tensor) for r in ids):
        for i, r in enumerate(ids):
            check_device(f"{name}[{i}]", r, device, what)
        shapes = {tuple(r.shape) for r in ids}
        if len(shapes) > 1:
            raise ValueError(f"{name} must be a rectangular sequence of integer ids, got rows of shapes "
                             f"{sorted(shapes)}")
        t = torch.stack(list(ids))
        t = t.to(device) if device is not None else t
    elif isinstance(ids, (list, tuple, np.ndarray, range)):
        try:
            t = torch.as_tensor(ids if not isinstance(ids, range) else list(ids))
        except (ValueError, TypeError, RuntimeError) as e:
            raise ValueError(f"{name} must be a rectangular sequence of integer ids, got a {type(ids).__name__} "
                             f"that is not ({e})") from None
        if t.numel() == 0:
            t = t.long()  # [] has no values to infer a dtype from
        t = t.to(device) if device is not None else t
    else:
        raise TypeError(f"{name} must be a list, tuple or tensor of integer ids, got {_describe(ids)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got {_describe(t)}")
    return t.long()


def check_id_range(
    name: str, ids: Tensor, upper: int | None, *, allow: int | None = None, what: str = "the vocabulary size",
    noun: str = "token ids",
) -> Tensor:
    """Every id in [0, upper) (or equal to allow, e.g. -1 for ignored padding): ValueError
    naming the first bad id and where it is. Skipped under torch.compile."""
    if ids.numel() == 0 or not _check_values():
        return ids
    bad = ids < 0
    if upper is not None:
        bad |= ids >= upper
    if allow is not None:
        bad &= ids != allow
    if bool(bad.any()):
        where = tuple(bad.nonzero()[0].tolist())
        rule = f"[0, {upper}) ({what})" if upper is not None else ">= 0"
        extra = f" or {allow}" if allow is not None else ""
        raise ValueError(f"{name} must be {noun} in {rule}{extra}, got {int(ids[where])} at index {where}")
    return ids
