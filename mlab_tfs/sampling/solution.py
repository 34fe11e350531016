"""Sampling from a language model: the solution.

Everything here works with any causal LM that returns ``.logits`` and takes and returns a
KV cache: our ``mlab_tfs.gpt2.GPT2LMHeadModel`` (its ``KVCache``, or a legacy tuple of
``(k, v)`` pairs, passed as ``past_key_values=``) and transformers' causal LMs (a ``Cache``
object; transformers 5 names the argument and the output field ``cache``). Caches that a
forward updates in place (ours, transformers 5's DynamicCache) are never used again
after another forward has moved on from them.

How tokens are chosen is one ``SamplingOptions`` object (mlab_tfs/sampling/options.py):
``process_logits``, ``generate``, ``beam_search``, ``sample_two_contexts`` and
``filtered_sample`` take ``options=``, or its fields as keywords (which build it). The
decoding loops check it once, then call the processors without checking again.

Arguments, everywhere in this module:

- Devices. Token ids and masks may be lists or tuples: they are placed on the model's
  device (for the logits processors, on the logits' device). A tensor (or a
  ``torch.Generator``) on another device is a ValueError naming the argument and both
  devices: nothing is moved silently.
- Numbers. Counts (top_k, num_beams, max_new_tokens, ids...) take a Python int, a numpy
  integer or a 0-d integer tensor; bools and floats are a TypeError. Real arguments
  (temperature, top_p, penalties, gamma...) must be finite and in range: NaN, inf or a
  value out of range is a ValueError naming the argument. Flags must be bools.
- An empty batch is a ValueError naming input_ids.

Shapes: B batch, T prompt length (padded), L = T + tokens generated so far, V vocabulary,
nb beams, N completions.
"""

from __future__ import annotations

from typing import Any, Sequence, Unpack

import torch
import torch.nn.functional as F

from mlab_tfs.inputs import _check_values, _describe, as_int_tensor, check_bool, check_device, check_int, check_number
from mlab_tfs.sampling.given import (  # the givens, shared with student.py
    NEG_INF,
    TWO_CONTEXT_MODES,
    BeamSearchOutput,
    FilteredSamples,
    TokenIds,
    as_ids,
    cache_index,
    check_generator,
    check_history,
    check_logits,
    check_prompt,
    eos_set,
    is_array_like,
    lm_forward,
    model_device,
    model_n_positions,
    model_vocab_size,
    suffix_inputs,
    suffixes_inputs,
)
from mlab_tfs.sampling.options import SamplingKeywords, SamplingOptions, resolve_options

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------
# The KV cache's rows: tuples of (k, v) pairs, our KVCache, transformers' Cache
# ---------------------------------------------------------------------------------------


def expand_cache(past: Any, repeats: int) -> Any:
    """Repeat every row of a KV cache ``repeats`` times along the batch: row b becomes rows
    b * repeats .. b * repeats + repeats - 1 (``repeat_interleave``).

    Works on a tuple of (k, v) pairs (returns a new tuple) and on any cache object with
    transformers' Cache method ``batch_repeat_interleave`` (our KVCache, transformers'
    DynamicCache: changed in place, and returned). repeats: an int >= 1 (else TypeError or
    ValueError); past of another kind: TypeError.
    """
    repeats = check_int("repeats", repeats, minimum=1)
    if isinstance(past, (tuple, list)):
        return tuple((k.repeat_interleave(repeats, dim=0), v.repeat_interleave(repeats, dim=0)) for k, v in past)
    if hasattr(past, "batch_repeat_interleave"):
        past.batch_repeat_interleave(repeats)
        return past
    raise TypeError(f"past must be a tuple of (key, value) pairs or a cache with batch_repeat_interleave (a KVCache, "
                    f"a transformers Cache), got {type(past).__name__}")


def reorder_cache(past: Any, index: Tensor | Sequence[int]) -> Any:
    """Keep rows ``index`` (1-d ids, a list or a long tensor) of a KV cache, in that order:
    new row i is old row index[i]. Tuples give a new tuple; a cache object with transformers'
    Cache method ``reorder_cache`` (our KVCache, transformers' DynamicCache) changes in
    place, and is returned.

    index: a list is placed on the cache's device; a tensor on another device, a float
    index or a row outside [0, rows): ValueError naming index. past of another kind: TypeError.
    """
    if not (isinstance(past, (tuple, list)) or hasattr(past, "reorder_cache")):
        raise TypeError(f"past must be a tuple of (key, value) pairs or a cache with reorder_cache (a KVCache, a "
                        f"transformers Cache), got {type(past).__name__}")
    index = cache_index(past, index)
    if isinstance(past, (tuple, list)):
        return tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in past)
    past.reorder_cache(index)
    return past


# ---------------------------------------------------------------------------------------
# 1. Greedy decoding, the plain loop
# ---------------------------------------------------------------------------------------


@torch.no_grad()
def greedy_decode(model: Any, input_ids: Tensor, max_new_tokens: int, eos_token_id: int | None = None) -> Tensor:
    """The simplest decoder: no cache, no padding. Each step runs the whole sequence and
    appends the most likely next token. input_ids (B, T), all rows real tokens (a tensor on
    the model's device, or nested lists).

    Returns (B, T + n), 1 <= n <= max_new_tokens: each row stops at eos (kept) and is
    followed by eos after that; the loop ends when every row has stopped or after
    max_new_tokens. max_new_tokens: an int >= 1 (transformers' rule); eos_token_id: one id
    in [0, V) or None. Bad arguments: TypeError or ValueError naming them.
    """
    if eos_token_id is not None:
        eos_token_id = check_int("eos_token_id", eos_token_id)
    ids = check_prompt(model, input_ids, None, max_new_tokens, None, eos_token_id).input_ids
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



def _min_tokens(min_tokens_to_keep: object) -> int:
    return check_int("min_tokens_to_keep", min_tokens_to_keep, minimum=1)


# Each processor is its checks, then an unchecked kernel (the _name below it): a decoding
# loop checks its options once and calls the kernels at every step.


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """logits (B, V) / temperature: below 1 sharpens the distribution, above 1 flattens it
    (transformers' TemperatureLogitsWarper). temperature: finite and > 0, else ValueError."""
    check_logits(logits)
    temperature = check_number("temperature", temperature, minimum=0.0, min_inclusive=False)
    return logits / temperature


def sample_token(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One draw per row from softmax(logits): (B, V) -> (B,) long, with torch.multinomial
    (the generator's stream, or the global one). -inf logits are never drawn.

    A row with a NaN or +inf logit, or with every logit -inf, has no distribution to draw
    from: ValueError naming logits. generator: on the logits' device, else ValueError.
    """
    check_logits(logits)
    check_generator(generator, logits.device, what="logits")
    return _draw(logits, generator)


def _draw(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """sample_token after its argument checks: the values are still checked (a model can
    produce NaN), the arguments not."""
    probs = torch.softmax(logits.float(), dim=-1)
    if _check_values():
        bad = ~torch.isfinite(probs).all(dim=-1)  # NaN/+inf logits, or a row that is all -inf
        if bool(bad.any()):
            row = int(bad.nonzero()[0])
            raise ValueError(f"logits row {row} has no distribution to sample from (NaN or +inf logits, or every "
                             f"logit -inf): {logits[row, :8].tolist()}...")
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def top_k_filter(logits: Tensor, top_k: int, min_tokens_to_keep: int = 1) -> Tensor:
    """Keep the top_k largest logits of each row (ties with the k-th all kept), -inf elsewhere
    (top-k sampling, Fan et al. 2018; transformers' TopKLogitsWarper). top_k = 0 keeps everything, top_k >= V too.

    top_k: an int >= 0; min_tokens_to_keep: an int >= 1 (TypeError or ValueError otherwise).
    """
    check_logits(logits)
    return _top_k(logits, check_int("top_k", top_k, minimum=0), _min_tokens(min_tokens_to_keep))


def _top_k(logits: Tensor, top_k: int, min_tokens_to_keep: int) -> Tensor:
    if top_k == 0:
        return logits
    k = min(max(top_k, min_tokens_to_keep), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1): the k-th largest
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: Tensor, top_p: float, min_tokens_to_keep: int = 1) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2020, "The Curious Case of Neural Text
    Degeneration"): keep the smallest set of most likely tokens whose probabilities sum to
    at least top_p; -inf elsewhere. As transformers' TopPLogitsWarper, token for token: the set that sums exactly to top_p is enough, and
    top_p = 0 keeps only the most likely token (min_tokens_to_keep of them). top_p = 1
    keeps everything (transformers' generate leaves the warper out then).

    top_p: finite, in [0, 1]; min_tokens_to_keep: an int >= 1 (else TypeError or ValueError).
    """
    check_logits(logits)
    top_p = check_number("top_p", top_p, minimum=0.0, maximum=1.0)
    return _top_p(logits, top_p, _min_tokens(min_tokens_to_keep))


def _top_p(logits: Tensor, top_p: float, min_tokens_to_keep: int) -> Tensor:
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
    """Min-p filtering (Nguyen et al. 2024; transformers' MinPLogitsWarper): drop tokens
    whose probability is below min_p times the most likely token's probability (a token
    exactly at the threshold stays). min_p: finite, in [0, 1]; min_tokens_to_keep >= 1."""
    check_logits(logits)
    min_p = check_number("min_p", min_p, minimum=0.0, maximum=1.0)
    return _min_p(logits, min_p, _min_tokens(min_tokens_to_keep))


def _min_p(logits: Tensor, min_p: float, min_tokens_to_keep: int) -> Tensor:
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
    """CTRL's repetition penalty (Keskar et al. 2019) as transformers'
    RepetitionPenaltyLogitsProcessor applies it: for every token already in the row, divide a
    positive logit by penalty, multiply a negative one (CTRL's formula divides every one, which
    would raise a negative logit). logits (B, V); input_ids (B, L), negative
    ids (padding) ignored. penalty: finite and > 0, else ValueError."""
    check_logits(logits)
    input_ids = check_history("input_ids", input_ids, logits)
    penalty = check_number("repetition_penalty", penalty, minimum=0.0, min_inclusive=False)
    return _repetition_penalty(logits, input_ids, penalty)


def _repetition_penalty(logits: Tensor, input_ids: Tensor, penalty: float) -> Tensor:
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(_seen(input_ids, logits.shape[-1]), penalised, logits)


def apply_frequency_presence_penalty(
    logits: Tensor, input_ids: Tensor, frequency_penalty: float, presence_penalty: float
) -> Tensor:
    """OpenAI's penalties: logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty,
    counting token j in input_ids (B, L) (the generated tokens); negative ids are ignored.
    Both penalties: finite numbers (negative ones encourage repetition), else ValueError."""
    check_logits(logits)
    input_ids = check_history("input_ids", input_ids, logits)
    frequency_penalty = check_number("frequency_penalty", frequency_penalty)
    presence_penalty = check_number("presence_penalty", presence_penalty)
    return _frequency_presence_penalty(logits, input_ids, frequency_penalty, presence_penalty)


def _frequency_presence_penalty(logits: Tensor, input_ids: Tensor, frequency: float, presence: float) -> Tensor:
    V = logits.shape[-1]
    ids = torch.where(input_ids < 0, V, input_ids.clamp(max=V))
    counts = torch.zeros(logits.shape[0], V + 1, dtype=logits.dtype, device=logits.device)
    counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=logits.dtype))
    counts = counts[:, :V]
    return logits - counts * frequency - (counts > 0).to(logits.dtype) * presence


def no_repeat_ngram_filter(logits: Tensor, input_ids: Tensor, ngram_size: int) -> Tensor:
    """Forbid any token that would repeat an n-gram already in the row (transformers'
    NoRepeatNGramLogitsProcessor): if the last n - 1 tokens occurred before, followed by
    token x, x gets -inf. Windows with negative ids (padding) never match; with fewer than
    n tokens nothing is banned. ngram_size: an int >= 1, else TypeError or ValueError."""
    check_logits(logits)
    input_ids = check_history("input_ids", input_ids, logits)
    return _no_repeat_ngram(logits, input_ids, check_int("no_repeat_ngram_size", ngram_size, minimum=1))


def _no_repeat_ngram(logits: Tensor, input_ids: Tensor, ngram_size: int) -> Tensor:
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
    options: SamplingOptions | None = None,
    **sampling: Unpack[SamplingKeywords],
) -> Tensor:
    """All processors in the order transformers' generate applies them
    (generation/utils.py, _get_logits_processor).

    logits (B, V); history (B, L): prompt and generated tokens, -1 at padding (a tensor on
    the logits' device, or lists); the last num_generated (an int in [0, L]) columns are
    the generated ones. options: a SamplingOptions, or None to build one from
    ``**sampling``, its fields as keywords (None = not given; here do_sample defaults to
    True). A keyword that disagrees with options is a ValueError naming both; one that is
    no field, a TypeError naming it. Penalties first (they act on raw logits, and apply
    in greedy decoding too); then, when sampling only, temperature, top-k, top-p and min-p.
    Bad values: ValueError or TypeError naming the field (SamplingOptions' checks).
    """
    check_logits(logits)
    history = check_history("history", history, logits)
    num_generated = check_int("num_generated", num_generated, minimum=0, maximum=history.shape[1])
    o = resolve_options(options, dict(do_sample=True), **sampling)
    return _process(logits, history, history[:, history.shape[1] - num_generated :], o)


def _process(logits: Tensor, history: Tensor | None, generated: Tensor | None, o: SamplingOptions) -> Tensor:
    """process_logits without checks, for loops whose arguments are checked once: history
    (B, L) and generated (B, G) ids, -1 ignored (either may be None when no penalty reads it)."""
    if o.repetition_penalty != 1.0:
        logits = _repetition_penalty(logits, history, o.repetition_penalty)
    if o.frequency_penalty or o.presence_penalty:
        logits = _frequency_presence_penalty(logits, generated, o.frequency_penalty, o.presence_penalty)
    if o.no_repeat_ngram_size:
        logits = _no_repeat_ngram(logits, history, o.no_repeat_ngram_size)
    if o.do_sample:
        if o.temperature != 1.0:
            logits = logits / o.temperature
        logits = _top_k(logits, o.top_k, o.min_tokens_to_keep)
        logits = _top_p(logits, o.top_p, o.min_tokens_to_keep)
        if o.min_p is not None:
            logits = _min_p(logits, o.min_p, o.min_tokens_to_keep)
    return logits


def _choose(scores: Tensor, o: SamplingOptions, generator: torch.Generator | None) -> Tensor:
    """The next token of every row from processed scores (B, V): a draw, or the argmax."""
    return _draw(scores, generator) if o.do_sample else scores.argmax(dim=-1)


# ---------------------------------------------------------------------------------------
# 6. Batches of prompts of different lengths
# ---------------------------------------------------------------------------------------


def left_pad(
    sequences: Sequence[TokenIds], pad_token_id: int, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Prompts of different lengths as one batch, padded on the left so that every row's
    last column is its last real token. Returns input_ids and attention_mask, both (B, T) long.

    sequences: a non-empty list of non-empty 1-d id sequences (lists, tuples or tensors);
    pad_token_id: an int >= 0. The batch goes on device; by default on the device of the
    tensors among sequences (CPU for lists). A tensor on another device: ValueError naming
    it and both devices.
    """
    pad_token_id = check_int("pad_token_id", pad_token_id, minimum=0)
    if isinstance(sequences, (str, bytes, torch.Tensor)) or not isinstance(sequences, Sequence):
        if not (isinstance(sequences, torch.Tensor) and sequences.dim() == 2):
            raise TypeError(f"sequences must be a list of token id sequences, got {_describe(sequences)}")
    if device is None:
        devices = [s.device for s in sequences if isinstance(s, torch.Tensor)]
        device = devices[0] if devices else torch.device("cpu")
    device = torch.device(device)
    rows = [as_int_tensor(f"sequences[{i}]", s, device, what="the batch") for i, s in enumerate(sequences)]
    if not rows:
        raise ValueError("sequences must hold at least one sequence, got an empty list")
    for i, r in enumerate(rows):
        if r.dim() != 1 or len(r) == 0:
            raise ValueError(f"sequences[{i}] must be a non-empty 1-d sequence of token ids, got {_describe(r)}")
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), T, dtype=torch.long, device=device)
    for b, r in enumerate(rows):
        ids[b, T - len(r) :] = r
        mask[b, T - len(r) :] = 1
    return ids, mask



def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens: cumsum(mask) - 1, so every row's first real token
    is at position 0. Padding gets position 0 (any valid position would do: it is masked).

    attention_mask (B, L) of 0 and 1 (bool, integer or float; lists or numpy too): long (B, L) on
    its device. Other values: ValueError naming attention_mask.
    """
    mask = torch.as_tensor(attention_mask) if is_array_like(attention_mask) else attention_mask
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a tensor of 0 and 1, got {_describe(attention_mask)}")
    if mask.dim() < 1 or mask.dtype.is_complex:
        raise ValueError(f"attention_mask must be a (batch, length) tensor of 0 and 1, got {_describe(mask)}")
    if mask.dtype != torch.bool and _check_values() and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"attention_mask must hold only 0 and 1 (1 = real token), got {mask.unique().tolist()[:8]}")
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


# ---------------------------------------------------------------------------------------
# 7. generate: batched, left-padded, KV-cached
# ---------------------------------------------------------------------------------------


@torch.no_grad()
def generate(
    model: Any,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    max_new_tokens: int = 20,
    options: SamplingOptions | None = None,
    *,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    **sampling: Unpack[SamplingKeywords],
) -> Tensor:
    """Greedy decoding or sampling for a batch of left-padded prompts (transformers'
    GenerationMixin.generate with do_sample and the same processors, token for token).

    input_ids, attention_mask: (B, T), padding on the left (attention_mask 0 there); lists
    are placed on the model's device, a tensor on another device is a ValueError.
    Returns (B, T + n), 1 <= n <= max_new_tokens: the prompts and the new tokens. Each row
    stops at its first eos token (kept; eos_token_id may be one id or several) and holds
    pad_token_id after it (eos when there is no pad id); the loop ends when every row has
    stopped. With use_cache (the default) the prompt runs once and every later step runs
    one new token against the KV cache; use_cache=False reruns the whole sequence each
    step (the same tokens, slower).

    options: how tokens are chosen, a SamplingOptions; or None to build one from
    ``**sampling``, its fields as keywords (``do_sample=True, top_k=5``; None = not given;
    do_sample defaults to False, greedy); another name there is a TypeError naming it. A
    keyword that disagrees with options: ValueError naming both. With do_sample=False,
    sampling-only settings that are on give a UserWarning (transformers').
    Argument checks: check_prompt and SamplingOptions, once, before the loop.
    """
    p = check_prompt(model, input_ids, attention_mask, max_new_tokens, pad_token_id, eos_token_id)
    opts = resolve_options(options, **sampling)
    opts.warn_unused(stacklevel=3)  # the caller of generate, through torch.no_grad's wrapper
    use_cache = check_bool("use_cache", use_cache)
    ids, mask, eos = p.input_ids, p.attention_mask, p.eos
    check_generator(generator, ids.device)
    fill = p.pad_token_id if p.pad_token_id is not None else (int(eos[0]) if eos is not None else None)
    B, T = ids.shape
    history = ids.masked_fill(mask == 0, -1)  # what the penalties see: no padding
    unfinished = torch.ones(B, dtype=torch.bool, device=ids.device)

    logits, past = lm_forward(model, ids, mask, position_ids_from_mask(mask))
    for step in range(p.max_new_tokens):
        scores = _process(logits[:, -1], history, history[:, T:], opts)  # checked once, above
        nxt = _choose(scores, opts, generator)  # (B,)
        if fill is not None:
            nxt = torch.where(unfinished, nxt, fill)  # finished rows only get padding
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        history = torch.cat([history, nxt[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if eos is not None:
            unfinished = unfinished & ~torch.isin(nxt, eos)
        if not bool(unfinished.any()) or step == p.max_new_tokens - 1:
            break
        positions = position_ids_from_mask(mask)
        if use_cache:  # one new token per row; positions continue from each row's last real one
            logits, past = lm_forward(model, nxt[:, None], mask, positions[:, -1:], past)
        else:
            logits, _ = lm_forward(model, ids, mask, positions)
    return ids


# ---------------------------------------------------------------------------------------
# 8. Beam search
# ---------------------------------------------------------------------------------------



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
    options: SamplingOptions | None = None,
    **sampling: Unpack[SamplingKeywords],
) -> BeamSearchOutput:
    """Beam search over a KV cache, batched, with transformers' rules for finished beams.

    Keeps num_beams running hypotheses per prompt. Each step scores every (beam, token)
    continuation by its total log-probability, takes the max(2, 1 + number of eos ids) *
    num_beams best (transformers' beams_to_keep in generation/utils.py: so that num_beams remain
    that did not just end, even when every eos id is among them), moves those ending in eos (or at the length
    limit) among the top num_beams into a pool of finished hypotheses scored
    sum_logprob / new_len ** length_penalty, continues the best num_beams others and
    reorders the cache to follow them.

    num_beams=1 is greedy decoding, as in transformers' generate: the most likely token
    each step, the prompt done at its first eos, padded with pad_token_id (eos if None)
    after it; its score is still sum_logprob / new_len ** length_penalty.

    early_stopping: True stops a prompt once num_beams hypotheses are finished; False
    stops when the best running beam, at its current length, cannot beat the worst
    finished one; "never" keeps going while it could at the longest length (with
    length_penalty > 0; at the current length otherwise). The rules of transformers'
    beam search (generation/utils.py, _beam_search), token for token and score for score.

    Arguments: input_ids and attention_mask as generate's (lists are placed on the model's
    device); num_beams an int >= 1; num_return_sequences an int in [1, num_beams];
    length_penalty finite; early_stopping a bool or "never" (1, 0 or other strings:
    TypeError or ValueError).

    options (or ``**sampling``, its fields as keywords, as generate's): None, or a
    SamplingOptions whose penalties (repetition, frequency/presence,
    no-repeat n-gram) apply as in transformers' beam search: to each step's
    log-probabilities, before the beam scores are added (with num_beams=1, greedy: to the
    logits, before the log-softmax; its score is then that of the processed distribution).
    do_sample=True (beam sampling) is a ValueError; the sampling-only settings warn that
    they have no effect, as in generate.
    """
    # As in transformers, beams that end early are padded with eos when there is no pad id.
    p = check_prompt(model, input_ids, attention_mask, max_new_tokens, pad_token_id, eos_token_id, eos_pads=True)
    num_beams = check_int("num_beams", num_beams, minimum=1)
    num_return_sequences = check_int("num_return_sequences", num_return_sequences, minimum=1, maximum=num_beams)
    length_penalty = check_number("length_penalty", length_penalty)
    if isinstance(early_stopping, str):
        if early_stopping != "never":
            raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    else:
        early_stopping = check_bool("early_stopping", early_stopping)  # 1 or 0 would read as False below
    opts = resolve_options(options, **sampling)
    if opts.do_sample:
        raise ValueError("options.do_sample=True asks for beam sampling, which beam_search does not do: pass "
                         "do_sample=False (beam search), or use generate to sample")
    opts.warn_unused(stacklevel=3)
    penalised = bool(opts.repetition_penalty != 1.0 or opts.frequency_penalty or opts.presence_penalty
                     or opts.no_repeat_ngram_size)
    input_ids, attention_mask, max_new_tokens, pad_token_id, eos = p
    device = input_ids.device
    B, T = input_ids.shape
    nb = num_beams
    max_len = T + max_new_tokens
    # Candidates kept per step. One beam is greedy decoding, as transformers' generate runs
    # num_beams=1: only the best token, which ends the prompt when it is eos.
    K = 1 if nb == 1 else max(2, 1 + (len(eos) if eos is not None else 0)) * nb
    # What follows a hypothesis that ended early, as in transformers (whose beam search tests
    # `pad_token_id or eos`: a pad id of 0 falls back to eos there too; greedy tests `is None`).
    if nb == 1:
        fill = pad_token_id if pad_token_id is not None else (int(eos[0]) if eos is not None else -1)
    else:
        fill = pad_token_id if pad_token_id else (int(eos[0]) if eos is not None else -1)

    # The prompt runs once; its cache is then repeated for the beams.
    logits, past = lm_forward(model, input_ids, attention_mask, position_ids_from_mask(attention_mask))
    logits = logits[:, -1].repeat_interleave(nb, dim=0)  # (B * nb, V)
    past = expand_cache(past, nb)
    mask = attention_mask.repeat_interleave(nb, dim=0)  # (B * nb, T)
    prompt_history = input_ids.masked_fill(attention_mask == 0, -1).repeat_interleave(nb, dim=0)  # no padding
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
        if penalised:
            generated = running[:, :, T:cur].reshape(B * nb, cur - T)
            history = torch.cat([prompt_history, generated], dim=1)  # (B * nb, cur)
            if nb == 1:  # greedy: the processors see the logits, as in transformers' _sample
                logits = _process(logits, history, generated, opts)
        log_probs = F.log_softmax(logits, dim=-1)  # (B * nb, V)
        if penalised and nb > 1:  # transformers' _beam_search processes the log-probabilities
            log_probs = _process(log_probs, history, generated, opts)
        log_probs = log_probs.view(B, nb, V) + running_scores[:, :, None]
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
        logits, past = lm_forward(model, nxt, mask, position_ids_from_mask(mask)[:, -1:], past)
        logits = logits[:, -1]

    r = num_return_sequences
    width = T + int(finished_len[:, :r].max())
    return BeamSearchOutput(finished[:, :r, :width].reshape(B * r, width), finished_scores[:, :r].reshape(B * r))


# ---------------------------------------------------------------------------------------
# 9. Two contexts, one continuation
# ---------------------------------------------------------------------------------------



def combine_two_contexts(logits_a: Tensor, logits_b: Tensor, mode: str = "contrastive", gamma: float = 1.0) -> Tensor:
    """Next-token logits from two contexts' logits, each (B, V).

    contrastive: logits_a + gamma * (logits_a - logits_b), classifier-free guidance style
    (Ho & Salimans 2022; Sanchez et al. 2023 for language models): push away from what
    context b predicts. product: log_softmax(a) + gamma * log_softmax(b), the logits of a
    product of experts p_a * p_b ** gamma (Hinton 2002). gamma = 0 gives context a alone.
    gamma: any finite number (ValueError for NaN or inf); the logits: same shape and device.
    """
    check_logits(logits_a, "logits_a")
    check_logits(logits_b, "logits_b")
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"logits_a and logits_b must have one shape (batch, vocab), got {tuple(logits_a.shape)} "
                         f"and {tuple(logits_b.shape)}")
    check_device("logits_b", logits_b, logits_a.device, what="logits_a")
    gamma = check_number("gamma", gamma)
    if mode not in TWO_CONTEXT_MODES:
        raise ValueError(f"mode must be one of {TWO_CONTEXT_MODES}, got {mode!r}")
    return _combine(logits_a, logits_b, mode, gamma)


def _combine(logits_a: Tensor, logits_b: Tensor, mode: str, gamma: float) -> Tensor:
    if mode == "contrastive":
        return logits_a + gamma * (logits_a - logits_b)
    return F.log_softmax(logits_a, dim=-1) + gamma * F.log_softmax(logits_b, dim=-1)  # product


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
    options: SamplingOptions | None = None,
    *,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
    **sampling: Unpack[SamplingKeywords],
) -> Tensor:
    """One continuation per row, drawn from combine_two_contexts of context a's and b's
    next-token logits; the chosen token is appended to both contexts.

    input_ids_a (B, Ta), input_ids_b (B, Tb), left-padded with their masks. Both contexts
    run in one batch of 2B rows (padded to a common length), so each step is one forward
    over one new token per row against one KV cache. Returns (B, Ta + n): context a and
    the new tokens, with generate's eos and padding rules and argument checks (each
    context's errors name input_ids_a or input_ids_b). options or ``**sampling`` as
    generate's (do_sample defaults to True here); the penalties read context a's tokens.
    """
    if mode not in TWO_CONTEXT_MODES:
        raise ValueError(f"mode must be one of {TWO_CONTEXT_MODES}, got {mode!r}")
    gamma = check_number("gamma", gamma)
    a = check_prompt(model, input_ids_a, attention_mask_a, max_new_tokens, pad_token_id, eos_token_id,
                      name="input_ids_a", mask_name="attention_mask_a")
    b = check_prompt(model, input_ids_b, attention_mask_b, max_new_tokens, pad_token_id, eos_token_id,
                      name="input_ids_b", mask_name="attention_mask_b")
    opts = resolve_options(options, dict(do_sample=True), **sampling)
    opts.warn_unused(stacklevel=3)
    input_ids_a, input_ids_b, mask_a, mask_b = a.input_ids, b.input_ids, a.attention_mask, b.attention_mask
    check_generator(generator, input_ids_a.device)
    if input_ids_a.shape[0] != input_ids_b.shape[0]:
        raise ValueError(f"input_ids_a and input_ids_b must hold as many rows, got {input_ids_a.shape[0]} and {input_ids_b.shape[0]}")
    B, Ta = input_ids_a.shape
    Tb = input_ids_b.shape[1]
    T = max(Ta, Tb)
    # Both contexts in one left-padded batch: rows 0..B-1 are a, rows B..2B-1 are b.
    ids = torch.cat([F.pad(input_ids_a, (T - Ta, 0)), F.pad(input_ids_b, (T - Tb, 0))], dim=0)
    mask = torch.cat([F.pad(mask_a, (T - Ta, 0)), F.pad(mask_b, (T - Tb, 0))], dim=0)
    eos, max_new_tokens = a.eos, a.max_new_tokens
    fill = a.pad_token_id if a.pad_token_id is not None else (int(eos[0]) if eos is not None else None)
    out = input_ids_a
    history = input_ids_a.masked_fill(mask_a == 0, -1)  # what the penalties see: context a, no padding
    unfinished = torch.ones(B, dtype=torch.bool, device=ids.device)
    logits, past = lm_forward(model, ids, mask, position_ids_from_mask(mask))
    for step in range(max_new_tokens):
        last = logits[:, -1]
        scores = _process(_combine(last[:B], last[B:], mode, gamma), history, history[:, Ta:], opts)
        nxt = _choose(scores, opts, generator)
        if fill is not None:
            nxt = torch.where(unfinished, nxt, fill)
        out = torch.cat([out, nxt[:, None]], dim=1)
        history = torch.cat([history, nxt[:, None]], dim=1)
        if eos is not None:
            unfinished = unfinished & ~torch.isin(nxt, eos)
        if not bool(unfinished.any()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        both = torch.cat([nxt, nxt])[:, None]  # (2B, 1): the same token continues both contexts
        logits, past = lm_forward(model, both, mask, position_ids_from_mask(mask)[:, -1:], past)
    return out


# ---------------------------------------------------------------------------------------
# 10. Scoring a suffix after many completions
# ---------------------------------------------------------------------------------------



def _suffix_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """sum_j log_softmax(logits[:, j])[targets[:, j]]: (N, S, V), (N, S) -> (N,)."""
    return F.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1).sum(-1)


def score_suffix_naive(
    model: Any, prompt_ids: TokenIds, completions: Sequence[TokenIds], suffix_ids: TokenIds
) -> Tensor:
    """log P(suffix | prompt + completion) for each completion, one full forward per text.
    The reference for score_suffix: the same arguments and checks. Returns (N,) float32."""
    prompt, rows, suffix = suffix_inputs(model, prompt_ids, completions, suffix_ids)
    scores = []
    S = len(suffix)
    for r in rows:
        text = torch.cat([prompt, r, suffix])[None]
        logits = model(text).logits  # (1, L, V)
        scores.append(_suffix_log_probs(logits[:, -S - 1 : -1], text[:, -S:]))
    return torch.cat(scores)


def score_suffix(model: Any, prompt_ids: TokenIds, completions: Sequence[TokenIds], suffix_ids: TokenIds) -> Tensor:
    """log P(suffix | prompt + completion) for each of N completions, efficiently.

    The prompt runs once (batch 1) and its KV cache is repeated N times rather than
    recomputed. Completions and suffix then run as one right-padded batch of N rows,
    [completion_i, suffix, padding], with positions continuing after the prompt.
    prompt_ids, suffix_ids: 1-d ids (at least one token each); completions: N >= 1
    sequences of ids, any lengths (empty allowed). Lists are placed on the model's device;
    a tensor elsewhere, an id outside [0, V), or prompt + completion + suffix past
    n_positions: ValueError naming the argument. Returns (N,) float32.
    """
    prompt, rows, suffix = suffix_inputs(model, prompt_ids, completions, suffix_ids)
    P, S, N = len(prompt), len(suffix), len(rows)
    longest = max(len(r) for r in rows)

    prompt_logits, past = lm_forward(model, prompt[None], None, None)  # (1, P, V)
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
    logits, _ = lm_forward(model, ids, mask, positions, past)  # (N, W, V)

    # Row position t predicts the token at t + 1; the prompt's last position predicts row token 0.
    logits = torch.cat([prompt_logits[:, -1:].expand(N, 1, -1), logits], dim=1)  # (N, W + 1, V)
    at = lengths[:, None] + torch.arange(S, device=prompt.device)[None]  # (N, S): where the suffix sits
    suffix_logits = logits.gather(1, at[..., None].expand(-1, -1, logits.shape[-1]))
    return _suffix_log_probs(suffix_logits, suffix[None].expand(N, S))


@torch.no_grad()
def score_suffixes(
    model: Any, prompt_ids: TokenIds, completions: Sequence[TokenIds], suffixes: Sequence[TokenIds]
) -> Tensor:
    """log P(suffix_k | prompt + completion_i) for K suffixes and N completions, each text
    computed once: scores[k, i] equals score_suffix(model, prompt_ids, completions,
    suffixes[k])[i] (and score_suffix_naive's) to fp32 rounding.

    Three forwards in all, whatever K:
    1. the prompt (1, P), its cache expanded to N rows;
    2. the completions (N, C), C the longest, right-padded, positions P .. P + C - 1, the
       mask hiding each row's padding; the logits at each row's last real token (the
       prompt's last, for an empty completion) predict every suffix's first token;
    3. the suffixes (N * K, S), S the longest, on that cache expanded K times (row i * K + k
       is completion i with suffix k): suffix token j at position P + len(c_i) + j, the mask
       hiding completion i's padding slots P + len(c_i) .. P + C - 1 and the suffix's own
       padding. Causal attention keeps token j from seeing later suffix tokens; separate
       rows keep suffixes from seeing each other.

    prompt_ids: 1-d ids (P >= 1); completions: N >= 1 sequences of ids, any lengths (empty
    allowed); suffixes: K >= 1 sequences of ids (each S_k >= 1, lengths may differ) or a
    2-d tensor (K, S). Lists are placed on the model's device; a tensor elsewhere, an id
    outside [0, V), an empty suffix or P + longest completion + longest suffix past
    n_positions: ValueError naming the argument (``suffixes[k]``, ``completions[i]``).
    Returns (K, N) float32. Works with our GPT-2 and Llama (their KVCache) and
    transformers' causal LMs (a Cache), through lm_forward and expand_cache.
    """
    prompt, rows, sufs = suffixes_inputs(model, prompt_ids, completions, suffixes)
    P, N, K = len(prompt), len(rows), len(sufs)
    dev = prompt.device
    lengths = torch.tensor([len(r) for r in rows], device=dev)  # (N,)
    C = int(lengths.max())

    prompt_logits, past = lm_forward(model, prompt[None], None, None)  # (1, P, V)
    first = prompt_logits[:, -1].expand(N, -1)  # (N, V): predicts what follows the prompt
    past = expand_cache(past, N)
    cached = torch.ones(N, P, dtype=torch.long, device=dev)  # (N, P): the mask of the cache so far
    if C > 0:
        ids = torch.zeros(N, C, dtype=torch.long, device=dev)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        real = (torch.arange(C, device=dev)[None] < lengths[:, None]).long()  # (N, C): 1 = a completion token
        cached = torch.cat([cached, real], dim=1)  # (N, P + C)
        positions = (P + torch.arange(C, device=dev))[None].expand(N, C)
        logits, past = lm_forward(model, ids, cached, positions, past)  # (N, C, V)
        last = logits[torch.arange(N, device=dev), (lengths - 1).clamp(min=0)]  # (N, V): at each last token
        first = torch.where((lengths > 0)[:, None], last, first)

    S = max(len(s) for s in sufs)
    suffix_ids = torch.zeros(K, S, dtype=torch.long, device=dev)
    for k, s in enumerate(sufs):
        suffix_ids[k, : len(s)] = s
    in_suffix = torch.arange(S, device=dev)[None] < torch.tensor([len(s) for s in sufs], device=dev)[:, None]  # (K, S)
    past = expand_cache(past, K)  # row i * K + k: completion i, then suffix k
    ids = suffix_ids.repeat(N, 1)  # (N * K, S)
    keep = in_suffix.repeat(N, 1)  # (N * K, S)
    mask = torch.cat([cached.repeat_interleave(K, dim=0), keep.long()], dim=1)  # (N * K, P + C + S)
    positions = (P + lengths).repeat_interleave(K)[:, None] + torch.arange(S, device=dev)[None]  # (N * K, S)
    logits, _ = lm_forward(model, ids, mask, positions, past)  # (N * K, S, V)

    # Suffix token 0 is predicted by `first`, token j >= 1 by the suffix's own position j - 1.
    logits = torch.cat([first.repeat_interleave(K, dim=0)[:, None], logits[:, :-1]], dim=1)  # (N * K, S, V)
    token_log_probs = F.log_softmax(logits, dim=-1).gather(-1, ids[..., None]).squeeze(-1)  # (N * K, S)
    scores = torch.where(keep, token_log_probs, 0.0).sum(-1)  # padding adds nothing
    return scores.view(N, K).T.contiguous()  # (K, N)




def filtered_sample(
    model: Any,
    prompt_ids: TokenIds,
    num_samples: int,
    bad_suffix_ids: TokenIds,
    good_suffix_ids: TokenIds,
    max_new_tokens: int = 20,
    options: SamplingOptions | None = None,
    *,
    eos_token_id: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    **sampling: Unpack[SamplingKeywords],
) -> FilteredSamples:
    """Sample num_samples continuations of one prompt and rank them by how the model itself
    judges them: score = log P(bad suffix | text) - log P(good suffix | text), lowest first
    (the language model as its own classifier: a cheap stand-in for the trained classifier
    with which Redwood Research filtered sampled continuations, Ziegler et al. 2022).

    prompt_ids and the suffixes: 1-d ids (lists are placed on the model's device);
    num_samples: an int >= 1; eos_token_id: one id, several (each completion is cut at the
    first of them) or None; options (or ``**sampling``) and generator as generate's, the
    generator on the model's device. It samples: options.do_sample=False is a ValueError.
    Every argument is checked before anything is sampled. Both suffixes are scored in one
    pass (score_suffixes): the prompt and the completions run once, and their cache is
    shared by the two suffixes.
    """
    device, vocab = model_device(model), model_vocab_size(model)
    prompt = as_ids("prompt_ids", prompt_ids, device, vocab)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    eos = eos_set(eos_token_id, device, vocab)
    eos_ids = set() if eos is None else set(eos.tolist())
    suffix_len = {}
    for name, suffix in (("bad_suffix_ids", bad_suffix_ids), ("good_suffix_ids", good_suffix_ids)):
        suffix_len[name] = len(as_ids(name, suffix, device, vocab))
        if suffix_len[name] == 0:
            raise ValueError(f"{name} must hold at least one token")
    if len(prompt) == 0:
        raise ValueError("prompt_ids must hold at least one token")
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=1)
    longest = max(suffix_len, key=suffix_len.get)
    n_positions = model_n_positions(model)
    if n_positions is not None and len(prompt) + max_new_tokens + suffix_len[longest] > n_positions:
        # Checked before sampling: a completion of max_new_tokens tokens must leave room for the suffix.
        raise ValueError(f"prompt_ids ({len(prompt)} tokens) + max_new_tokens={max_new_tokens} + {longest} "
                         f"({suffix_len[longest]} tokens) is {len(prompt) + max_new_tokens + suffix_len[longest]} "
                         f"positions, past the model's n_positions={n_positions}")
    opts = resolve_options(options, dict(do_sample=True), **sampling)
    if not opts.do_sample:
        raise ValueError("filtered_sample samples: options.do_sample must be True (greedy decoding would give "
                         f"{num_samples} identical completions)")
    batch = prompt[None].expand(num_samples, -1)
    pad = int(eos[0]) if eos is not None else 0
    out = generate(model, batch, max_new_tokens=max_new_tokens, options=opts, eos_token_id=eos, pad_token_id=pad,
                   generator=generator)
    completions = []
    for row in out[:, len(prompt) :].tolist():
        ends = [j for j, t in enumerate(row) if t in eos_ids]
        completions.append(row[: ends[0]] if ends else row)
    bad, good = score_suffixes(model, prompt, completions, [bad_suffix_ids, good_suffix_ids])  # (N,) each
    scores = bad - good
    order = torch.argsort(scores, stable=True)
    return FilteredSamples([completions[i] for i in order.tolist()], scores[order])
