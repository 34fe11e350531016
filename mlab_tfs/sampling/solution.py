"""Sampling from a language model: the solution.

Everything here works with any causal LM that returns ``.logits`` and takes and returns a
KV cache: our ``mlab_tfs.gpt2.GPT2LMHeadModel`` (a tuple of ``(k, v)`` pairs, passed as
``past_key_values=``) and transformers' causal LMs (a ``Cache`` object; transformers 5 names
the argument and the output field ``cache``, older versions ``past_key_values``).

Shapes: B batch, T prompt length (padded), L = T + tokens generated so far, V vocabulary,
nb beams, N completions.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
TokenIds = Sequence[int] | Tensor

NEG_INF = float("-inf")

# ---------------------------------------------------------------------------------------
# Talking to a model: our GPT-2 or any transformers causal LM
# ---------------------------------------------------------------------------------------


def _cache_argument(model: Any) -> str:
    """The name under which forward takes the cache: ``past_key_values`` (ours, older
    transformers) or ``cache`` (transformers 5, where the old name is deprecated)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    if "past_key_values" in params:
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _forward(
    model: Any, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None, past: Any = None
) -> tuple[Tensor, Any]:
    """One forward pass with the cache on: (logits (B, T, V) in float32, the new cache)."""
    kwargs: dict[str, Any] = dict(attention_mask=attention_mask, position_ids=position_ids, use_cache=True)
    if past is not None:
        kwargs[_cache_argument(model)] = past
    out = model(input_ids, **kwargs)
    # Read ``cache`` first: on transformers 5 outputs ``past_key_values`` is a deprecated alias.
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    return out.logits.float(), cache


def _n_positions(model: Any) -> int | None:
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def _vocab_size(model: Any) -> int | None:
    value = getattr(getattr(model, "config", None), "vocab_size", None)
    return value if isinstance(value, int) else None


def expand_cache(past: Any, repeats: int) -> Any:
    """Repeat every row of a KV cache ``repeats`` times along the batch: row b becomes rows
    b * repeats .. b * repeats + repeats - 1 (``repeat_interleave``).

    Works on our tuple of (k, v) pairs (returns a new tuple) and on transformers' Cache
    objects (changed in place, and returned).
    """
    if isinstance(past, (tuple, list)):
        return tuple((k.repeat_interleave(repeats, dim=0), v.repeat_interleave(repeats, dim=0)) for k, v in past)
    if hasattr(past, "batch_repeat_interleave"):
        past.batch_repeat_interleave(repeats)
        return past
    raise TypeError(f"past must be a tuple of (key, value) pairs or a transformers Cache, got {type(past).__name__}")


def reorder_cache(past: Any, index: Tensor) -> Any:
    """Keep rows ``index`` (1-d, long) of a KV cache, in that order: new row i is old row
    index[i]. Tuples give a new tuple; transformers' Cache objects change in place."""
    if isinstance(past, (tuple, list)):
        return tuple((k.index_select(0, index.to(k.device)), v.index_select(0, index.to(v.device))) for k, v in past)
    if hasattr(past, "reorder_cache"):
        past.reorder_cache(index)
        return past
    raise TypeError(f"past must be a tuple of (key, value) pairs or a transformers Cache, got {type(past).__name__}")


# ---------------------------------------------------------------------------------------
# 1. Greedy decoding, the plain loop
# ---------------------------------------------------------------------------------------


@torch.no_grad()
def greedy_decode(model: Any, input_ids: Tensor, max_new_tokens: int, eos_token_id: int | None = None) -> Tensor:
    """The simplest decoder: no cache, no padding. Each step runs the whole sequence and
    appends the most likely next token. input_ids (B, T), all rows real tokens.

    Returns (B, T + n): each row stops at eos (kept) and is followed by eos after that; the
    loop ends when every row has stopped or after max_new_tokens.
    """
    ids = input_ids
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        logits = model(ids).logits[:, -1].float()  # (B, V): only the last position predicts the next token
        nxt = logits.argmax(dim=-1)
        if eos_token_id is not None:
            nxt = torch.where(done, eos_token_id, nxt)
            done = done | (nxt == eos_token_id)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        if bool(done.all()):
            break
    return ids


# ---------------------------------------------------------------------------------------
# 2-5. Logits processors: small pieces, each (B, V) -> (B, V)
# ---------------------------------------------------------------------------------------


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """logits / temperature: below 1 sharpens the distribution, above 1 flattens it."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling (use do_sample=False for greedy), got {temperature}")
    return logits / temperature


def sample_token(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One draw per row from softmax(logits): (B, V) -> (B,). -inf logits are never drawn."""
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def top_k_filter(logits: Tensor, top_k: int, min_tokens_to_keep: int = 1) -> Tensor:
    """Keep the top_k largest logits of each row (ties with the k-th all kept), -inf elsewhere.
    top_k = 0 keeps everything."""
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = no top-k filtering), got {top_k}")
    if top_k == 0:
        return logits
    k = min(max(top_k, min_tokens_to_keep), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1): the k-th largest
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: Tensor, top_p: float, min_tokens_to_keep: int = 1) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2019): keep the smallest set of most likely tokens
    whose probabilities sum to at least top_p; -inf elsewhere. top_p = 1 keeps everything."""
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_p == 1:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1)  # ascending
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    # In ascending order, drop a token when everything up to and including it holds at most
    # 1 - top_p of the mass: what remains then holds at least top_p.
    drop_sorted = cum <= 1 - top_p
    drop_sorted[..., -min_tokens_to_keep:] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, NEG_INF)


def min_p_filter(logits: Tensor, min_p: float, min_tokens_to_keep: int = 1) -> Tensor:
    """Min-p filtering (Nguyen et al. 2024): drop tokens whose probability is below
    min_p times the most likely token's probability."""
    if not 0 <= min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    probs = torch.softmax(logits, dim=-1)
    drop = probs < min_p * probs.amax(dim=-1, keepdim=True)
    keep = torch.topk(probs, min(min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
    drop = drop.scatter(-1, keep, False)
    return logits.masked_fill(drop, NEG_INF)


def _seen(input_ids: Tensor, vocab_size: int) -> Tensor:
    """(B, V) bool: which tokens occur in each row; negative ids (padding) are ignored."""
    seen = torch.zeros(input_ids.shape[0], vocab_size + 1, dtype=torch.bool, device=input_ids.device)
    ids = torch.where(input_ids < 0, vocab_size, input_ids.clamp(max=vocab_size))  # spare column for ignored ids
    return seen.scatter_(1, ids, True)[:, :vocab_size]


def apply_repetition_penalty(logits: Tensor, input_ids: Tensor, penalty: float) -> Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019): for every token already in the row,
    divide a positive logit by penalty, multiply a negative one. Negative ids are ignored."""
    if not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(_seen(input_ids, logits.shape[-1]), penalised, logits)


def apply_frequency_presence_penalty(
    logits: Tensor, input_ids: Tensor, frequency_penalty: float, presence_penalty: float
) -> Tensor:
    """OpenAI's penalties: logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty,
    counting token j in input_ids (B, L) (the generated tokens); negative ids are ignored."""
    V = logits.shape[-1]
    ids = torch.where(input_ids < 0, V, input_ids.clamp(max=V))
    counts = torch.zeros(logits.shape[0], V + 1, dtype=logits.dtype, device=logits.device)
    counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=logits.dtype))
    counts = counts[:, :V]
    return logits - counts * frequency_penalty - (counts > 0).to(logits.dtype) * presence_penalty


def no_repeat_ngram_filter(logits: Tensor, input_ids: Tensor, ngram_size: int) -> Tensor:
    """Forbid any token that would repeat an n-gram already in the row: if the last n - 1
    tokens occurred before, followed by token x, x gets -inf. Windows with negative ids
    (padding) never match."""
    if ngram_size <= 0:
        raise ValueError(f"no_repeat_ngram_size must be a positive int, got {ngram_size}")
    B, L = input_ids.shape
    if L < ngram_size:
        return logits
    V = logits.shape[-1]
    prefix = input_ids[:, L - ngram_size + 1 :]  # (B, n - 1): the n-gram the next token would finish
    windows = input_ids.unfold(1, ngram_size, 1)  # (B, L - n + 1, n): every n-gram so far
    match = (windows[..., :-1] == prefix[:, None]).all(-1) & (windows >= 0).all(-1)  # (B, L - n + 1)
    banned = torch.zeros(B, V + 1, dtype=torch.bool, device=logits.device)
    banned.scatter_(1, torch.where(match, windows[..., -1].clamp(max=V), V), True)
    return logits.masked_fill(banned[:, :V], NEG_INF)


def process_logits(
    logits: Tensor,
    history: Tensor,
    num_generated: int,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float | None = None,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    no_repeat_ngram_size: int = 0,
) -> Tensor:
    """All processors in the order transformers' generate applies them.

    logits (B, V); history (B, L): prompt and generated tokens, -1 at padding; the last
    num_generated columns are the generated ones. Penalties first (they act on raw logits,
    and apply in greedy decoding too); then, when sampling only, temperature, top-k,
    top-p and min-p.
    """
    if repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits, history, repetition_penalty)
    if frequency_penalty or presence_penalty:
        generated = history[:, history.shape[1] - num_generated :]
        logits = apply_frequency_presence_penalty(logits, generated, frequency_penalty, presence_penalty)
    if no_repeat_ngram_size:
        logits = no_repeat_ngram_filter(logits, history, no_repeat_ngram_size)
    if do_sample:
        if temperature != 1.0:
            logits = apply_temperature(logits, temperature)
        if top_k:
            logits = top_k_filter(logits, top_k)
        if top_p < 1.0:
            logits = top_p_filter(logits, top_p)
        if min_p is not None:
            logits = min_p_filter(logits, min_p)
    return logits


# ---------------------------------------------------------------------------------------
# 6. Batches of prompts of different lengths
# ---------------------------------------------------------------------------------------


def left_pad(sequences: Sequence[TokenIds], pad_token_id: int) -> tuple[Tensor, Tensor]:
    """Prompts of different lengths as one batch, padded on the left so that every row's
    last column is its last real token. Returns input_ids and attention_mask, both (B, T) long."""
    rows = [torch.as_tensor(s, dtype=torch.long).reshape(-1) for s in sequences]
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("sequences must be a non-empty list of non-empty token id sequences")
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, T - len(r) :] = r
        mask[b, T - len(r) :] = 1
    return ids, mask


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens: cumsum(mask) - 1, so every row's first real token
    is at position 0. Padding gets position 0 (any valid position would do: it is masked)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


# ---------------------------------------------------------------------------------------
# 7. generate: batched, left-padded, KV-cached
# ---------------------------------------------------------------------------------------


def _eos_set(eos_token_id: int | Sequence[int] | None, device: torch.device) -> Tensor | None:
    if eos_token_id is None:
        return None
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if not ids:
        return None
    return torch.tensor(ids, dtype=torch.long, device=device)


def _check_prompt(
    model: Any, input_ids: Tensor, attention_mask: Tensor | None, max_new_tokens: int,
    pad_token_id: int | None, eos_token_id: int | Sequence[int] | None, eos_pads: bool = False,
) -> Tensor:
    """Validate the arguments every decoder shares; return the attention mask (B, T) long.

    A padded batch needs pad_token_id (or, with eos_pads, an eos id to pad with)."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor of shape (batch, seq), got {type(input_ids).__name__}")
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must have shape (batch, seq) with seq >= 1, got {tuple(input_ids.shape)}")
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    n_positions = _n_positions(model)
    if n_positions is not None and input_ids.shape[1] + max_new_tokens > n_positions:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} after a prompt of {input_ids.shape[1]} tokens makes "
            f"{input_ids.shape[1] + max_new_tokens} positions, but the model has n_positions={n_positions}"
        )
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}"
        )
    attention_mask = attention_mask.long()
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("attention_mask has padding in the last column: pad prompts on the left, not the right")
    if bool((attention_mask == 0).any()) and pad_token_id is None and not (eos_pads and eos_token_id is not None):
        raise ValueError(
            "the batch is padded (attention_mask has zeros) but pad_token_id is None: pass pad_token_id, "
            "the id that fills finished sequences"
        )
    for name, value in (("pad_token_id", pad_token_id), ("eos_token_id", eos_token_id)):
        values = [] if value is None else [value] if isinstance(value, int) else list(value)
        vocab = _vocab_size(model)
        if any(not isinstance(v, int) or v < 0 or (vocab is not None and v >= vocab) for v in values):
            raise ValueError(f"{name} must be a token id in [0, {vocab}), got {value!r}")
    return attention_mask


def _check_sampling(do_sample: bool, temperature: float, top_k: int, top_p: float, min_p: float | None) -> None:
    if do_sample and not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ValueError(f"temperature must be > 0 when sampling (for greedy decoding pass do_sample=False), got {temperature}")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0 (0 = no top-k filtering), got {top_k!r}")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] (1 = no nucleus filtering), got {top_p!r}")
    if min_p is not None and not 0 <= min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {min_p!r}")


@torch.no_grad()
def generate(
    model: Any,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float | None = None,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    no_repeat_ngram_size: int = 0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Greedy decoding or sampling for a batch of left-padded prompts.

    input_ids, attention_mask: (B, T), padding on the left (attention_mask 0 there).
    Returns (B, T + n): the prompts and n <= max_new_tokens new tokens. Each row stops at
    its first eos token (kept) and holds pad_token_id after it (eos when there is no pad
    id); the loop ends when every row has stopped. With use_cache (the default) the
    prompt runs once and every later step runs one new token against the KV cache;
    use_cache=False reruns the whole sequence each step (the same tokens, slower).
    """
    attention_mask = _check_prompt(model, input_ids, attention_mask, max_new_tokens, pad_token_id, eos_token_id)
    _check_sampling(do_sample, temperature, top_k, top_p, min_p)
    eos = _eos_set(eos_token_id, input_ids.device)
    fill = pad_token_id if pad_token_id is not None else (int(eos[0]) if eos is not None else None)
    B, T = input_ids.shape
    ids, mask = input_ids, attention_mask
    history = input_ids.masked_fill(attention_mask == 0, -1)  # what the penalties see: no padding
    unfinished = torch.ones(B, dtype=torch.bool, device=input_ids.device)

    logits, past = _forward(model, ids, mask, position_ids_from_mask(mask))
    for step in range(max_new_tokens):
        scores = process_logits(
            logits[:, -1], history, step, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
            min_p=min_p, repetition_penalty=repetition_penalty, frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
        )
        nxt = sample_token(scores, generator) if do_sample else scores.argmax(dim=-1)  # (B,)
        if fill is not None:
            nxt = torch.where(unfinished, nxt, fill)  # finished rows only get padding
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        history = torch.cat([history, nxt[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if eos is not None:
            unfinished = unfinished & ~torch.isin(nxt, eos)
        if not bool(unfinished.any()) or step == max_new_tokens - 1:
            break
        positions = position_ids_from_mask(mask)
        if use_cache:  # one new token per row; positions continue from each row's last real one
            logits, past = _forward(model, nxt[:, None], mask, positions[:, -1:], past)
        else:
            logits, _ = _forward(model, ids, mask, positions)
    return ids


# ---------------------------------------------------------------------------------------
# 8. Beam search
# ---------------------------------------------------------------------------------------


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


@torch.no_grad()
def beam_search(
    model: Any,
    input_ids: Tensor,
    num_beams: int = 4,
    max_new_tokens: int = 20,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    eos_token_id: int | Sequence[int] | None = None,
    attention_mask: Tensor | None = None,
    pad_token_id: int | None = None,
    num_return_sequences: int = 1,
) -> BeamSearchOutput:
    """Beam search over a KV cache, batched, with transformers' rules for finished beams.

    Keeps num_beams running hypotheses per prompt. Each step scores every (beam, token)
    continuation by its total log-probability, takes the 2 * num_beams best (so that
    num_beams remain that did not just end), moves those ending in eos (or at the length
    limit) among the top num_beams into a pool of finished hypotheses scored
    sum_logprob / new_len ** length_penalty, continues the best num_beams others and
    reorders the cache to follow them.

    early_stopping: True stops a prompt once num_beams hypotheses are finished; False
    stops when the best running beam, at its current length, cannot beat the worst
    finished one; "never" keeps going while it could at the longest length.
    """
    # As in transformers, beams that end early are padded with eos when there is no pad id.
    attention_mask = _check_prompt(model, input_ids, attention_mask, max_new_tokens, pad_token_id, eos_token_id,
                                   eos_pads=True)
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be a positive int, got {num_beams!r}")
    if not 1 <= num_return_sequences <= num_beams:
        raise ValueError(f"num_return_sequences must be in [1, num_beams={num_beams}], got {num_return_sequences}")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    device = input_ids.device
    eos = _eos_set(eos_token_id, device)
    B, T = input_ids.shape
    nb = num_beams
    max_len = T + max_new_tokens
    K = max(2, 1 + (len(eos) if eos is not None else 0)) * nb  # candidates kept per step
    # What follows a hypothesis that ended early, as in transformers (whose test is
    # `pad_token_id or eos`: a pad id of 0 falls back to eos there too).
    fill = pad_token_id if pad_token_id else (int(eos[0]) if eos is not None else -1)

    # The prompt runs once; its cache is then repeated for the beams.
    logits, past = _forward(model, input_ids, attention_mask, position_ids_from_mask(attention_mask))
    logits = logits[:, -1].repeat_interleave(nb, dim=0)  # (B * nb, V)
    past = expand_cache(past, nb)
    mask = attention_mask.repeat_interleave(nb, dim=0)  # (B * nb, T)
    V = logits.shape[-1]

    running = torch.full((B, nb, max_len), fill, dtype=torch.long, device=device)
    running[:, :, :T] = input_ids[:, None]
    running_scores = torch.zeros(B, nb, device=device)
    running_scores[:, 1:] = -1e9  # the beams start identical: only beam 0 may expand at first
    finished = running.clone()
    finished_scores = torch.full((B, nb), -1e9, device=device)
    finished_len = torch.zeros(B, nb, dtype=torch.long, device=device)  # new tokens of each finished hypothesis
    is_finished = torch.zeros(B, nb, dtype=torch.bool, device=device)
    can_improve = torch.ones(B, 1, dtype=torch.bool, device=device)
    top_nb = torch.arange(K, device=device) < nb  # only the top num_beams candidates may finish
    batch_offset = torch.arange(B, device=device)[:, None] * nb

    cur = T
    while True:
        log_probs = F.log_softmax(logits, dim=-1).view(B, nb, V) + running_scores[:, :, None]
        cand_scores, flat_idx = torch.topk(log_probs.view(B, nb * V), K)  # (B, K)
        src, tok = flat_idx // V, flat_idx % V
        cand = running.gather(1, src[:, :, None].expand(-1, -1, max_len)).clone()  # (B, K, max_len)
        cand[:, :, cur] = tok
        ends = torch.zeros_like(tok, dtype=torch.bool) if eos is None else torch.isin(tok, eos)
        ends = ends | (cur + 1 >= max_len)

        # Continue the best num_beams candidates that did not just end.
        alive_scores = cand_scores + ends.float() * -1e9
        keep = torch.topk(alive_scores, nb).indices  # (B, nb)
        running = cand.gather(1, keep[:, :, None].expand(-1, -1, max_len))
        running_scores = alive_scores.gather(1, keep)
        beam_src = src.gather(1, keep)

        # Candidates that ended join the finished pool if they beat its worst member.
        new_len = cur + 1 - T
        done_scores = cand_scores / new_len**length_penalty
        full = is_finished.all(-1, keepdim=True) & (early_stopping is True)
        just_done = ends & top_nb[None]
        done_scores = done_scores + full.float() * -1e9 + (~can_improve).float() * -1e9 + (~just_done).float() * -1e9
        merged_scores = torch.cat([finished_scores, done_scores], dim=1)  # (B, nb + K)
        best = torch.topk(merged_scores, nb).indices
        finished = torch.cat([finished, cand], dim=1).gather(1, best[:, :, None].expand(-1, -1, max_len))
        finished_scores = merged_scores.gather(1, best)
        finished_len = torch.cat([finished_len, torch.full_like(tok, new_len)], dim=1).gather(1, best)
        is_finished = torch.cat([is_finished, just_done], dim=1).gather(1, best)

        cur += 1
        # Could a running beam still beat the worst finished hypothesis?
        best_len = (max_len - T) if (early_stopping == "never" and length_penalty > 0) else (cur - T)
        best_running = running_scores[:, :1] / best_len**length_penalty
        worst_done = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, -1e9)
        can_improve = can_improve & (best_running > worst_done).any(-1, keepdim=True)
        all_full = bool(is_finished.all()) and early_stopping is True
        if not bool(can_improve.any()) or all_full or bool(ends.all()):
            break

        # Next step: the chosen beams' caches, their new tokens.
        past = reorder_cache(past, (beam_src + batch_offset).view(-1))
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        nxt = running[:, :, cur - 1].reshape(-1, 1)  # (B * nb, 1)
        logits, past = _forward(model, nxt, mask, position_ids_from_mask(mask)[:, -1:], past)
        logits = logits[:, -1]

    r = num_return_sequences
    width = T + int(finished_len[:, :r].max())
    return BeamSearchOutput(finished[:, :r, :width].reshape(B * r, width), finished_scores[:, :r].reshape(B * r))


# ---------------------------------------------------------------------------------------
# 9. Two contexts, one continuation
# ---------------------------------------------------------------------------------------

TWO_CONTEXT_MODES = ("contrastive", "product")


def combine_two_contexts(logits_a: Tensor, logits_b: Tensor, mode: str = "contrastive", gamma: float = 1.0) -> Tensor:
    """Next-token logits from two contexts' logits, each (B, V).

    contrastive: logits_a + gamma * (logits_a - logits_b), classifier-free guidance style
    (Ho & Salimans 2022; Sanchez et al. 2023 for language models): push away from what
    context b predicts. product: log_softmax(a) + gamma * log_softmax(b), the logits of a
    product of experts p_a * p_b ** gamma (Hinton 2002). gamma = 0 gives context a alone.
    """
    if mode == "contrastive":
        return logits_a + gamma * (logits_a - logits_b)
    if mode == "product":
        return F.log_softmax(logits_a, dim=-1) + gamma * F.log_softmax(logits_b, dim=-1)
    raise ValueError(f"mode must be one of {TWO_CONTEXT_MODES}, got {mode!r}")


@torch.no_grad()
def sample_two_contexts(
    model: Any,
    input_ids_a: Tensor,
    input_ids_b: Tensor,
    attention_mask_a: Tensor | None = None,
    attention_mask_b: Tensor | None = None,
    mode: str = "contrastive",
    gamma: float = 1.0,
    max_new_tokens: int = 20,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One continuation per row, drawn from combine_two_contexts of context a's and b's
    next-token logits; the chosen token is appended to both contexts.

    input_ids_a (B, Ta), input_ids_b (B, Tb), left-padded with their masks. Both contexts
    run in one batch of 2B rows (padded to a common length), so each step is one forward
    over one new token per row against one KV cache. Returns (B, Ta + n): context a and
    the new tokens, with generate's eos and padding rules.
    """
    if mode not in TWO_CONTEXT_MODES:
        raise ValueError(f"mode must be one of {TWO_CONTEXT_MODES}, got {mode!r}")
    mask_a = _check_prompt(model, input_ids_a, attention_mask_a, max_new_tokens, pad_token_id, eos_token_id)
    mask_b = _check_prompt(model, input_ids_b, attention_mask_b, max_new_tokens, pad_token_id, eos_token_id)
    _check_sampling(do_sample, temperature, top_k, top_p, None)
    if input_ids_a.shape[0] != input_ids_b.shape[0]:
        raise ValueError(f"input_ids_a and input_ids_b must hold as many rows, got {input_ids_a.shape[0]} and {input_ids_b.shape[0]}")
    B, Ta = input_ids_a.shape
    Tb = input_ids_b.shape[1]
    T = max(Ta, Tb)
    # Both contexts in one left-padded batch: rows 0..B-1 are a, rows B..2B-1 are b.
    ids = torch.cat([F.pad(input_ids_a, (T - Ta, 0)), F.pad(input_ids_b, (T - Tb, 0))], dim=0)
    mask = torch.cat([F.pad(mask_a, (T - Ta, 0)), F.pad(mask_b, (T - Tb, 0))], dim=0)
    n_positions = _n_positions(model)
    if n_positions is not None and T + max_new_tokens > n_positions:
        raise ValueError(f"max_new_tokens={max_new_tokens} after {T} context tokens passes n_positions={n_positions}")
    eos = _eos_set(eos_token_id, ids.device)
    fill = pad_token_id if pad_token_id is not None else (int(eos[0]) if eos is not None else None)
    out = input_ids_a
    unfinished = torch.ones(B, dtype=torch.bool, device=ids.device)
    logits, past = _forward(model, ids, mask, position_ids_from_mask(mask))
    for step in range(max_new_tokens):
        last = logits[:, -1]
        scores = process_logits(combine_two_contexts(last[:B], last[B:], mode, gamma), out, step,
                                do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p)
        nxt = sample_token(scores, generator) if do_sample else scores.argmax(dim=-1)
        if fill is not None:
            nxt = torch.where(unfinished, nxt, fill)
        out = torch.cat([out, nxt[:, None]], dim=1)
        if eos is not None:
            unfinished = unfinished & ~torch.isin(nxt, eos)
        if not bool(unfinished.any()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        both = torch.cat([nxt, nxt])[:, None]  # (2B, 1): the same token continues both contexts
        logits, past = _forward(model, both, mask, position_ids_from_mask(mask)[:, -1:], past)
    return out


# ---------------------------------------------------------------------------------------
# 10. Scoring a suffix after many completions
# ---------------------------------------------------------------------------------------


def _as_ids(name: str, ids: TokenIds) -> Tensor:
    t = torch.as_tensor(ids, dtype=torch.long) if not isinstance(ids, torch.Tensor) else ids.long()
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 1:
        raise ValueError(f"{name} must be a 1-d sequence of token ids, got shape {tuple(t.shape)}")
    return t


def _suffix_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """sum_j log_softmax(logits[:, j])[targets[:, j]]: (N, S, V), (N, S) -> (N,)."""
    return F.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1).sum(-1)


def score_suffix_naive(
    model: Any, prompt_ids: TokenIds, completions: Sequence[TokenIds], suffix_ids: TokenIds
) -> Tensor:
    """log P(suffix | prompt + completion) for each completion, one full forward per text.
    The reference for score_suffix. Returns (N,) float32."""
    prompt, suffix = _as_ids("prompt_ids", prompt_ids), _as_ids("suffix_ids", suffix_ids)
    scores = []
    for c in completions:
        text = torch.cat([prompt, _as_ids("completions[i]", c).to(prompt.device), suffix.to(prompt.device)])[None]
        logits = model(text).logits  # (1, L, V)
        S = len(suffix)
        scores.append(_suffix_log_probs(logits[:, -S - 1 : -1], text[:, -S:]))
    return torch.cat(scores)


def score_suffix(model: Any, prompt_ids: TokenIds, completions: Sequence[TokenIds], suffix_ids: TokenIds) -> Tensor:
    """log P(suffix | prompt + completion) for each of N completions, efficiently.

    The prompt runs once (batch 1) and its KV cache is repeated N times rather than
    recomputed. Completions and suffix then run as one right-padded batch of N rows,
    [completion_i, suffix, padding], with positions continuing after the prompt.
    prompt_ids, suffix_ids: 1-d ids (at least one token each); completions: N sequences of
    ids, any lengths (empty allowed). Returns (N,) float32.
    """
    prompt, suffix = _as_ids("prompt_ids", prompt_ids), _as_ids("suffix_ids", suffix_ids)
    if len(prompt) == 0 or len(suffix) == 0:
        raise ValueError("prompt_ids and suffix_ids must each hold at least one token")
    rows = [_as_ids(f"completions[{i}]", c).to(prompt.device) for i, c in enumerate(completions)]
    if not rows:
        raise ValueError("completions must hold at least one completion")
    P, S, N = len(prompt), len(suffix), len(rows)
    n_positions = _n_positions(model)
    longest = max(len(r) for r in rows)
    if n_positions is not None and P + longest + S > n_positions:
        raise ValueError(f"prompt + longest completion + suffix is {P + longest + S} tokens, past n_positions={n_positions}")

    prompt_logits, past = _forward(model, prompt[None], None, None)  # (1, P, V)
    past = expand_cache(past, N)

    W = longest + S
    ids = torch.zeros(N, W, dtype=torch.long, device=prompt.device)
    mask = torch.zeros(N, P + W, dtype=torch.long, device=prompt.device)
    mask[:, :P] = 1
    lengths = torch.tensor([len(r) for r in rows], device=prompt.device)
    for i, r in enumerate(rows):
        ids[i, : len(r) + S] = torch.cat([r, suffix])
        mask[i, P : P + len(r) + S] = 1
    positions = (P + torch.arange(W, device=prompt.device))[None].expand(N, W)
    logits, _ = _forward(model, ids, mask, positions, past)  # (N, W, V)

    # Row position t predicts the token at t + 1; the prompt's last position predicts row token 0.
    logits = torch.cat([prompt_logits[:, -1:].expand(N, 1, -1), logits], dim=1)  # (N, W + 1, V)
    at = lengths[:, None] + torch.arange(S, device=prompt.device)[None]  # (N, S): where the suffix sits
    suffix_logits = logits.gather(1, at[..., None].expand(-1, -1, logits.shape[-1]))
    return _suffix_log_probs(suffix_logits, suffix[None].expand(N, S))


class FilteredSamples(NamedTuple):
    """completions: N lists of new token ids (eos and padding removed), ordered by score,
    best (lowest) first; scores (N,): log P(bad suffix) - log P(good suffix), same order."""

    completions: list[list[int]]
    scores: Tensor


def filtered_sample(
    model: Any,
    prompt_ids: TokenIds,
    num_samples: int,
    bad_suffix_ids: TokenIds,
    good_suffix_ids: TokenIds,
    max_new_tokens: int = 20,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> FilteredSamples:
    """Sample num_samples continuations of one prompt and rank them by how the model itself
    judges them: score = log P(bad suffix | text) - log P(good suffix | text), lowest first
    (the language model as its own classifier, as in Redwood Research's filtering work)."""
    prompt = _as_ids("prompt_ids", prompt_ids)
    if num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples}")
    batch = prompt[None].expand(num_samples, -1)
    pad = eos_token_id if eos_token_id is not None else 0
    out = generate(model, batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                   top_k=top_k, top_p=top_p, eos_token_id=eos_token_id, pad_token_id=pad, generator=generator)
    completions = []
    for row in out[:, len(prompt) :].tolist():
        if eos_token_id is not None and eos_token_id in row:
            row = row[: row.index(eos_token_id)]
        completions.append(row)
    scores = score_suffix(model, prompt, completions, bad_suffix_ids) - score_suffix(
        model, prompt, completions, good_suffix_ids
    )
    order = torch.argsort(scores, stable=True)
    return FilteredSamples([completions[i] for i in order.tolist()], scores[order])
