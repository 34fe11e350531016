"""What the sampling part gives the learner: talking to a model, argument checks, result types.

Both ``solution.py`` and ``student.py`` import these; none of them is an exercise.

- ``lm_forward`` runs any causal LM with the cache on: our GPT-2 (``past_key_values=``, a
  ``KVCache`` object or a legacy tuple of (k, v) pairs) and transformers' causal LMs (a
  ``Cache``; transformers 5 names the argument and the output field ``cache``).
- ``first_keys``, ``cache_rows``, ``cache_device`` and ``cache_index`` read any of those
  caches: a tuple of (k, v) pairs, an object whose ``__getitem__(i)`` gives layer i's
  (k, v) (our KVCache), or one with ``.layers[i].keys`` (transformers' Cache).
- ``check_prompt``, ``check_logits``, ``check_history``, ``check_generator``, ``eos_set``,
  ``as_ids``, ``suffix_inputs`` and ``suffixes_inputs`` check arguments: ValueError or TypeError naming the
  argument, what was expected and what came.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple, Sequence

import torch

from mlab_tfs.inputs import _check_values, _describe, as_int_tensor, check_device, check_id_range, check_int, same_device

Tensor = torch.Tensor
TokenIds = Sequence[int] | Tensor

NEG_INF = float("-inf")


def cache_argument(model: Any) -> str:
    """The name under which forward takes the cache: ``past_key_values`` (ours, older
    transformers) or ``cache`` (transformers 5, where the old name is deprecated)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    if "past_key_values" in params:
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def lm_forward(
    model: Any, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None, past: Any = None
) -> tuple[Tensor, Any]:
    """One forward pass with the cache on: (logits (B, T, V) in float32, the new cache)."""
    kwargs: dict[str, Any] = dict(attention_mask=attention_mask, position_ids=position_ids, use_cache=True)
    if past is not None:
        kwargs[cache_argument(model)] = past
    out = model(input_ids, **kwargs)
    # Read ``cache`` first: on transformers 5 outputs ``past_key_values`` is a deprecated alias.
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    return out.logits.float(), cache


def model_n_positions(model: Any) -> int | None:
    """The model's longest sequence (config.n_positions or max_position_embeddings); None if
    unknown or unbounded (a model class with ``positions_unbounded``, as our rotary Llama:
    max_position_embeddings is then what it was trained on, not a limit, as in transformers)."""
    if getattr(type(model), "positions_unbounded", False):
        return None
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def model_vocab_size(model: Any) -> int | None:
    """config.vocab_size, V; None if the model has no such config."""
    value = getattr(getattr(model, "config", None), "vocab_size", None)
    return value if isinstance(value, int) else None


def model_device(model: Any) -> torch.device | None:
    """Where the model's weights are (its first parameter, else buffer); None if it has none."""
    for tensors in ("parameters", "buffers"):
        try:
            return next(getattr(model, tensors)()).device
        except (AttributeError, StopIteration, TypeError):
            continue
    return None


def check_generator(generator: object, device: torch.device | None, what: str = "the model") -> None:
    """generator: None or a torch.Generator on device (torch draws on the generator's device)."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {_describe(generator)}")
    if device is not None and not same_device(generator.device, device):
        raise ValueError(f"generator is on {generator.device} but {what} is on {device}: create it there, "
                         f"torch.Generator(device={str(device)!r})")


def first_keys(past: Any) -> Tensor | None:
    """Layer 0's keys, (B, nh, L, hs), of any KV cache: a tuple of (k, v) pairs, an object whose
    ``past[0]`` is layer 0's (k, v) (our KVCache, older transformers' DynamicCache), or one
    with ``past.layers[0].keys`` (transformers 5's Cache). None when there is none (yet)."""
    try:
        if len(past) == 0:
            return None
        if hasattr(type(past), "__getitem__"):  # tuples, our KVCache: past[i] is layer i's (k, v)
            keys = past[0][0]
        else:
            keys = getattr(past.layers[0], "keys", None)
    except (TypeError, IndexError, KeyError, AttributeError):
        return None
    return keys if isinstance(keys, torch.Tensor) else None


def cache_device(past: Any) -> torch.device | None:
    """The device of a KV cache's tensors (None when it holds none)."""
    keys = first_keys(past)
    return None if keys is None else keys.device


def cache_rows(past: Any) -> int | None:
    """The batch rows of a KV cache (None when it holds no (B, nh, L, hs) keys)."""
    keys = first_keys(past)
    return keys.shape[0] if keys is not None and keys.dim() == 4 else None


def cache_index(past: Any, index: object) -> Tensor:
    """reorder_cache's index, checked: 1-d integer row ids in [0, rows), a list placed on the
    cache's device, a tensor already there (else ValueError naming index)."""
    index = as_int_tensor("index", index, cache_device(past), what="the cache")
    if index.dim() != 1:
        raise ValueError(f"index must be 1-d (one old row per new row), got {_describe(index)}")
    rows = cache_rows(past)
    if rows is not None:
        check_id_range("index", index, rows, what="the cache's rows", noun="row indices")
    return index


def check_logits(logits: object, name: str = "logits") -> Tensor:
    """logits: a float tensor (B, V) with V >= 1, returned as it is; else TypeError (not a
    tensor) or ValueError (shape, dtype, no vocabulary) naming it."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, vocab), got {_describe(logits)}")
    if logits.dim() != 2 or not logits.dtype.is_floating_point:
        raise ValueError(f"{name} must be a float tensor of shape (batch, vocab), got {_describe(logits)}")
    if logits.shape[-1] == 0:  # no token to keep or draw: torch would fail deep inside (amax, multinomial)
        raise ValueError(f"{name} must hold at least one token per row (vocab >= 1), got {_describe(logits)}")
    return logits


def check_history(name: str, input_ids: object, logits: Tensor) -> Tensor:
    """Token ids (B, L) for a processor: on the logits' device (lists are put there), as many
    rows as logits, every id < V; negative ids are padding, which the processors ignore."""
    ids = as_int_tensor(name, input_ids, logits.device, what="logits")
    if ids.dim() != 2 or ids.shape[0] != logits.shape[0]:
        raise ValueError(f"{name} must have shape (batch={logits.shape[0]}, length) like logits, got {_describe(ids)}")
    if _check_values() and ids.numel() and int(ids.max()) >= logits.shape[-1]:
        where = tuple((ids == ids.max()).nonzero()[0].tolist())
        raise ValueError(f"{name} must be token ids < {logits.shape[-1]} (the logits' vocabulary; negative ids are "
                         f"padding), got {int(ids.max())} at index {where}")
    return ids


def is_array_like(x: object) -> bool:
    """Lists, tuples and numpy arrays: taken as the tensor they spell (ids are, by as_int_tensor)."""
    import numpy as np

    return isinstance(x, (list, tuple, np.ndarray))


def eos_set(eos_token_id: int | Sequence[int] | None, device: torch.device | None,
             vocab_size: int | None = None) -> Tensor | None:
    """The eos ids as a 1-d long tensor on device: one id, or a list, tuple, 1-d tensor or
    numpy array of ids (each in [0, vocab_size)); None or an empty list: None (no eos)."""
    if eos_token_id is None:
        return None
    if isinstance(eos_token_id, (list, tuple)) or (hasattr(eos_token_id, "ndim") and eos_token_id.ndim == 1):
        values = list(eos_token_id)  # a 1-d tensor or numpy array gives 0-d elements, which check_int takes
        ids = [check_int(f"eos_token_id[{i}]", v) for i, v in enumerate(values)]
    else:
        ids = [check_int("eos_token_id", eos_token_id)]
    if not ids:
        return None
    for i, v in enumerate(ids):
        if v < 0 or (vocab_size is not None and v >= vocab_size):
            raise ValueError(f"eos_token_id must be token ids in [0, {vocab_size}) (the vocabulary size), got "
                             f"{eos_token_id!r}")
    return torch.tensor(ids, dtype=torch.long, device=device)


class Prompt(NamedTuple):
    """What check_prompt returns: the arguments every decoder shares, checked."""

    input_ids: Tensor  # (B, T) long, on the model's device
    attention_mask: Tensor  # (B, T) long, 1 = real token
    max_new_tokens: int
    pad_token_id: int | None
    eos: Tensor | None  # (n_eos,) long on the model's device; None without eos


def check_prompt(
    model: Any, input_ids: Tensor, attention_mask: Tensor | None, max_new_tokens: int,
    pad_token_id: int | None, eos_token_id: int | Sequence[int] | None, eos_pads: bool = False,
    name: str = "input_ids", mask_name: str = "attention_mask",
) -> Prompt:
    """Validate the arguments every decoder shares and return them normalised (a Prompt).

    input_ids (B, T), B >= 1 and T >= 1, integer ids in [0, V): a tensor on the model's
    device, or nested lists (placed there). attention_mask: None (all ones) or (B, T) of
    0 and 1 with the padding on the left. max_new_tokens: an int >= 1 with T +
    max_new_tokens <= n_positions. A padded batch needs pad_token_id (or, with eos_pads,
    an eos id to pad with). Errors name the argument (TypeError or ValueError).
    """
    device, vocab = model_device(model), model_vocab_size(model)
    ids = as_int_tensor(name, input_ids, device)
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"{name} must have shape (batch, seq) with seq >= 1, got {tuple(ids.shape)}")
    if ids.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(ids.shape)}): give at least one prompt")
    check_id_range(name, ids, vocab)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=1)
    n_positions = model_n_positions(model)
    if n_positions is not None and ids.shape[1] + max_new_tokens > n_positions:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} after a prompt of {ids.shape[1]} tokens makes "
            f"{ids.shape[1] + max_new_tokens} positions, but the model has n_positions={n_positions}"
        )
    if attention_mask is None:
        mask = torch.ones_like(ids)
    else:
        mask = torch.as_tensor(attention_mask, device=ids.device) if is_array_like(attention_mask) \
            else attention_mask
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"{mask_name} must be a tensor of 0 and 1, got {_describe(attention_mask)}")
        check_device(mask_name, mask, ids.device)
        if tuple(mask.shape) != tuple(ids.shape):
            raise ValueError(f"{mask_name} must have the shape of {name} {tuple(ids.shape)}, got {tuple(mask.shape)}")
        if mask.dtype.is_complex or (mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all())):
            raise ValueError(f"{mask_name} must hold only 0 and 1 (1 = real token), got {_describe(mask)}")
        mask = mask.long()
        if bool((mask[:, -1] == 0).any()):
            raise ValueError(f"{mask_name} has padding in the last column: pad prompts on the left, not the right")
    if pad_token_id is not None:
        pad_token_id = check_int("pad_token_id", pad_token_id)
        if pad_token_id < 0 or (vocab is not None and pad_token_id >= vocab):
            raise ValueError(f"pad_token_id must be a token id in [0, {vocab}), got {pad_token_id}")
    eos = eos_set(eos_token_id, ids.device, vocab)
    if bool((mask == 0).any()) and pad_token_id is None and not (eos_pads and eos is not None):
        raise ValueError(
            "the batch is padded (attention_mask has zeros) but pad_token_id is None: pass pad_token_id, "
            "the id that fills finished sequences"
        )
    return Prompt(ids, mask, max_new_tokens, pad_token_id, eos)


class BeamSearchOutput(NamedTuple):
    """sequences (B * num_return_sequences, T + n), best first for each prompt;
    sequences_scores (B * num_return_sequences,): sum of log-probabilities of the new
    tokens divided by (number of new tokens) ** length_penalty."""

    sequences: Tensor
    sequences_scores: Tensor

    @property
    def scores(self) -> Tensor:
        return self.sequences_scores

    def __getitem__(self, key):  # out["sequences"] too, as with transformers' outputs
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


TWO_CONTEXT_MODES = ("contrastive", "product")


def as_ids(name: str, ids: TokenIds, device: torch.device | None = None, vocab_size: int | None = None) -> Tensor:
    """1-d token ids (a list, tuple, 1-d or (1, L) tensor) as a long tensor on device, each
    id in [0, vocab_size); errors name the argument."""
    t = as_int_tensor(name, ids, device)
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 1:
        raise ValueError(f"{name} must be a 1-d sequence of token ids, got shape {tuple(t.shape)}")
    return check_id_range(name, t, vocab_size)


def _completion_rows(completions: Sequence[TokenIds], device: torch.device | None,
                     vocab: int | None) -> list[Tensor]:
    """N >= 1 completions as 1-d long tensors on device (each may be empty)."""
    if isinstance(completions, (str, bytes)) or not isinstance(completions, (Sequence, torch.Tensor)):
        raise TypeError(f"completions must be a list of token id sequences, got {_describe(completions)}")
    rows = [as_ids(f"completions[{i}]", c, device, vocab) for i, c in enumerate(completions)]
    if not rows:
        raise ValueError("completions must hold at least one completion, got none")
    return rows


def _check_fits(model: Any, prompt: Tensor, rows: list[Tensor], suffix_len: int, suffix_name: str) -> None:
    """P + longest completion + suffix_len <= n_positions (the longest text scored), else a
    ValueError naming the arguments that make it."""
    n_positions = model_n_positions(model)
    longest = max(range(len(rows)), key=lambda i: len(rows[i]))
    total = len(prompt) + len(rows[longest]) + suffix_len
    if n_positions is not None and total > n_positions:
        raise ValueError(f"prompt + longest completion + suffix is {total} tokens (prompt_ids {len(prompt)} + "
                         f"completions[{longest}] {len(rows[longest])} + {suffix_name} {suffix_len}), past "
                         f"n_positions={n_positions}")


def suffix_inputs(
    model: Any, prompt_ids: TokenIds, completions: Sequence[TokenIds], suffix_ids: TokenIds
) -> tuple[Tensor, list[Tensor], Tensor]:
    """The checked inputs of score_suffix: prompt (P,), N >= 1 completions (each (C_i,),
    possibly empty) and suffix (S,), long, on the model's device, with P >= 1, S >= 1 and
    P + longest + S <= n_positions."""
    device, vocab = model_device(model), model_vocab_size(model)
    prompt = as_ids("prompt_ids", prompt_ids, device, vocab)
    suffix = as_ids("suffix_ids", suffix_ids, device, vocab)
    if len(prompt) == 0 or len(suffix) == 0:
        raise ValueError(f"prompt_ids and suffix_ids must each hold at least one token, got {len(prompt)} and "
                         f"{len(suffix)}")
    rows = _completion_rows(completions, device, vocab)
    _check_fits(model, prompt, rows, len(suffix), "suffix_ids")
    return prompt, rows, suffix


def suffixes_inputs(
    model: Any, prompt_ids: TokenIds, completions: Sequence[TokenIds], suffixes: Sequence[TokenIds]
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The checked inputs of score_suffixes: prompt (P,), N >= 1 completions (each (C_i,),
    possibly empty) and K >= 1 suffixes (each (S_k,), S_k >= 1, lengths may differ), long,
    on the model's device, with P >= 1 and P + longest completion + longest suffix <=
    n_positions. suffixes is a list (or tuple) of id sequences, or a 2-d tensor of K rows;
    errors name the argument: ``suffixes[k]``, ``completions[i]``, ``prompt_ids``."""
    device, vocab = model_device(model), model_vocab_size(model)
    prompt = as_ids("prompt_ids", prompt_ids, device, vocab)
    if len(prompt) == 0:
        raise ValueError("prompt_ids must hold at least one token, got none")
    if isinstance(suffixes, torch.Tensor) and suffixes.dim() != 2:
        raise ValueError(f"suffixes must be a list of token id sequences or a 2-d tensor (K, S), got "
                         f"{_describe(suffixes)}")
    if isinstance(suffixes, (str, bytes)) or not isinstance(suffixes, (Sequence, torch.Tensor)):
        raise TypeError(f"suffixes must be a list of token id sequences, got {_describe(suffixes)}")
    if len(suffixes) and all(isinstance(s, int) for s in suffixes):
        raise TypeError(f"suffixes must be a list of token id sequences (one per suffix), got a flat list of ints "
                        f"{list(suffixes)[:8]}: for one suffix pass [suffix_ids]")
    sufs = [as_ids(f"suffixes[{k}]", s, device, vocab) for k, s in enumerate(suffixes)]
    if not sufs:
        raise ValueError("suffixes must hold at least one suffix, got none")
    for k, s in enumerate(sufs):
        if len(s) == 0:
            raise ValueError(f"suffixes[{k}] must hold at least one token, got none")
    rows = _completion_rows(completions, device, vocab)
    k = max(range(len(sufs)), key=lambda k: len(sufs[k]))
    _check_fits(model, prompt, rows, len(sufs[k]), f"suffixes[{k}]")
    return prompt, rows, sufs


class FilteredSamples(NamedTuple):
    """completions: N lists of new token ids (eos and padding removed), ordered by score,
    best (lowest) first; scores (N,): log P(bad suffix) - log P(good suffix), same order."""

    completions: list[list[int]]
    scores: Tensor
