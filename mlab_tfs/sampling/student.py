"""Sampling from a language model: your version.

Every function below that raises ``NotImplementedError`` is an exercise. Replace the
``raise`` line with your code; the docstring says what goes in, what comes out and what
usually goes wrong. The exercises, in order:

     1. greedy_decode
     2. apply_temperature, sample_token
     3. top_k_filter
     4. top_p_filter, min_p_filter
     5. apply_repetition_penalty, apply_frequency_presence_penalty, no_repeat_ngram_filter,
        process_logits
     6. left_pad, position_ids_from_mask
     7. generate (the KV cache loop), expand_cache, reorder_cache
     8. beam_search                                      (optional)
     9. combine_two_contexts, sample_two_contexts        (optional)
    10. score_suffix_naive, score_suffix, score_suffixes, filtered_sample

Exercises 8 and 9 are optional: ``mlab-tfs check`` shows them, but an optional exercise
you have not started does not count against completing the part.

Each exercise has a section in ``mlab_tfs/sampling/GUIDE.md``; each stub's error message
links to it. Check your progress with

    mlab-tfs check sampling
    pytest --impl=student mlab_tfs/sampling --exercise top_p

The samplers must work with any causal LM that returns ``.logits`` and takes and returns a
KV cache: the tests run them on our GPT-2 (``mlab_tfs.gpt2``) and on transformers'
GPT2LMHeadModel (a ``DynamicCache``). Call models through the given ``lm_forward`` helper
and it handles the difference for you.

How tokens are chosen is one ``SamplingOptions`` (``mlab_tfs/sampling/options.py``, given):
a frozen dataclass whose fields are checked when it is made. The decoders take
``options=`` or its fields as keywords (``**sampling``: ``generate(model, ids, do_sample=True,
top_k=5)``); the given ``resolve_options`` turns either into one checked SamplingOptions (and
refuses a keyword that disagrees with options, or one that is no field).

Arguments are checked with the given helpers (``check_prompt``, ``resolve_options``,
``check_number``, ``check_int``...): lists of ids go on the model's device, a tensor on
another device is a ValueError naming it, NaN or out-of-range numbers are a ValueError
naming the argument, and bools or floats where an int belongs are a TypeError. Each stub
says which helper to call; the checks are given, not part of the exercise.

Shapes: B batch, T prompt length (padded), L = T + tokens generated so far, V vocabulary,
nb beams, N completions.

The solution is in ``mlab_tfs/sampling/solution.py``; look only after you have tried.
"""

from __future__ import annotations

from typing import Any, Sequence, Unpack

import torch
import torch.nn.functional as F  # noqa: F401  (for your code)

from mlab_tfs.inputs import as_int_tensor, check_bool, check_device, check_int, check_number  # given  # noqa: F401
from mlab_tfs.sampling.given import (  # given, not exercises  # noqa: F401
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
    lm_forward,
    model_device,
    model_n_positions,
    suffix_inputs,
    suffixes_inputs,
)
from mlab_tfs.sampling.options import SamplingKeywords, SamplingOptions, resolve_options  # given  # noqa: F401

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------
# 1. Greedy decoding
# ---------------------------------------------------------------------------------------


def greedy_decode(model: Any, input_ids: Tensor, max_new_tokens: int, eos_token_id: int | None = None) -> Tensor:
    """The simplest decoder: no cache, no padding.

    input_ids: (B, T), every entry a real token. Each step: run the *whole* sequence
    through ``model(ids)``, take ``.logits[:, -1]`` (B, V) (the last position predicts the
    next token), append its argmax. Returns (B, T + n), n <= max_new_tokens.

    eos_token_id: a row that produced it is done; it keeps getting eos_token_id from then
    on. Stop early when every row is done.

    Checks (given): ``eos_token_id = check_int("eos_token_id", eos_token_id)`` when it is not
    None, then ``ids = check_prompt(model, input_ids, None, max_new_tokens, None,
    eos_token_id).input_ids``: lists become a tensor on the model's device, and a bad
    prompt, max_new_tokens < 1 or an eos outside the vocabulary is a clear error.

    Pitfall: ``logits[:, 0]`` or ``logits.argmax()`` without ``dim=-1`` run fine and give
    nonsense. Run under ``torch.no_grad()`` in your own experiments.
    """
    raise NotImplementedError("Exercise 1 (greedy decoding): see mlab_tfs/sampling/GUIDE.md#1-greedy-decoding")


# ---------------------------------------------------------------------------------------
# 2-5. Logits processors: (B, V) -> (B, V)
# ---------------------------------------------------------------------------------------


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """logits (B, V) divided by temperature.

    Check first: ``temperature = check_number("temperature", temperature, minimum=0.0,
    min_inclusive=False)`` raises the ValueError for temperature <= 0, NaN or inf (greedy
    decoding is do_sample=False, not temperature 0)."""
    raise NotImplementedError(
        "Exercise 2 (temperature and sampling): see mlab_tfs/sampling/GUIDE.md#2-temperature-and-sampling"
    )


def sample_token(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One draw per row from softmax(logits): (B, V) -> (B,) long.

    Use ``torch.multinomial(probs, 1, generator=generator)``: the same seeded generator must
    give the same draws, and with generator=None the global seed decides (which is how the
    tests compare with transformers' sampling). A -inf logit has probability 0 and is
    never drawn. Softmax in float32.

    Checks: ``check_generator(generator, logits.device, what="logits")``; a row whose
    softmax is not finite (a NaN or +inf logit, or every logit -inf) is a ValueError naming
    logits (torch.multinomial would fail with a bare error).
    """
    raise NotImplementedError(
        "Exercise 2 (temperature and sampling): see mlab_tfs/sampling/GUIDE.md#2-temperature-and-sampling"
    )


def top_k_filter(logits: Tensor, top_k: int, min_tokens_to_keep: int = 1) -> Tensor:
    """Keep each row's top_k largest logits, set the rest to -inf. (B, V) -> (B, V).

    - Ties with the k-th largest value are all kept (compare with it, as transformers does).
    - top_k = 0 means no filtering; top_k > V keeps everything; keep at least
      min_tokens_to_keep.
    - Check both with ``check_int`` (top_k >= 0, min_tokens_to_keep >= 1): top_k < 0 is a
      ValueError, top_k = 2.0 or True a TypeError, each naming the argument.
    Hint: ``torch.topk(logits, k).values[..., -1:]`` is the k-th largest, shaped to broadcast.
    """
    raise NotImplementedError("Exercise 3 (top-k): see mlab_tfs/sampling/GUIDE.md#3-top-k")


def top_p_filter(logits: Tensor, top_p: float, min_tokens_to_keep: int = 1) -> Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability
    reaches top_p; -inf for the others. (B, V) -> (B, V).

    - The token that crosses top_p is kept (the kept mass must be >= top_p), and so is the
      most likely token whatever top_p is (at least min_tokens_to_keep). A set summing
      exactly to top_p is enough: four tokens of probability 1/4 and top_p = 0.5 keep two.
    - top_p = 1 keeps everything; top_p = 0 keeps only the most likely token (as
      transformers); check with ``check_number("top_p", top_p, minimum=0.0, maximum=1.0)``
      (NaN or outside [0, 1]: ValueError) and min_tokens_to_keep with ``check_int`` (>= 1).
    Hint: sort, softmax, cumsum; decide in sorted order; ``scatter`` the decision back to
    vocabulary order. Sorting ascending and dropping tokens while the cumulative mass is
    <= 1 - top_p is transformers' formulation and gives exactly its result.
    """
    raise NotImplementedError("Exercise 4 (top-p and min-p): see mlab_tfs/sampling/GUIDE.md#4-top-p-and-min-p")


def min_p_filter(logits: Tensor, min_p: float, min_tokens_to_keep: int = 1) -> Tensor:
    """Drop (-inf) tokens whose probability is below min_p * (the row's largest
    probability); a token exactly at the threshold stays. Check min_p with ``check_number``
    (NaN or outside [0, 1]: ValueError mentioning "min_p"), min_tokens_to_keep with
    ``check_int`` (>= 1)."""
    raise NotImplementedError("Exercise 4 (top-p and min-p): see mlab_tfs/sampling/GUIDE.md#4-top-p-and-min-p")


def apply_repetition_penalty(logits: Tensor, input_ids: Tensor, penalty: float) -> Tensor:
    """CTRL's repetition penalty. logits (B, V); input_ids (B, L), with -1 at padding.

    For every token that occurs in the row (once or more: no counting), a positive logit is
    divided by penalty and a negative one multiplied by it, so penalty > 1 always makes it
    less likely (transformers' rule; CTRL's formula divides every one, which would raise a
    negative logit). Ids < 0 are padding: ignore them.
    Hint: a (B, V + 1) bool "seen" mask filled with ``scatter_``, padding sent to the spare
    last column, which you then drop.
    Checks: ``input_ids = check_history("input_ids", input_ids, logits)`` (lists go on the
    logits' device; ids >= V are an error) and ``check_number("repetition_penalty", penalty,
    minimum=0.0, min_inclusive=False)``.
    """
    raise NotImplementedError(
        "Exercise 5 (penalties and the order): see mlab_tfs/sampling/GUIDE.md#5-penalties-and-the-order"
    )


def apply_frequency_presence_penalty(
    logits: Tensor, input_ids: Tensor, frequency_penalty: float, presence_penalty: float
) -> Tensor:
    """OpenAI's penalties: logit[j] - count[j] * frequency_penalty - (count[j] > 0) * presence_penalty,
    where count[j] is how often token j occurs in the row of input_ids (B, L); ids < 0 are
    ignored. generate passes only the generated tokens here. Checks:
    ``check_history("input_ids", ...)`` and ``check_number`` on each penalty (any finite
    value; NaN or inf: ValueError)."""
    raise NotImplementedError(
        "Exercise 5 (penalties and the order): see mlab_tfs/sampling/GUIDE.md#5-penalties-and-the-order"
    )


def no_repeat_ngram_filter(logits: Tensor, input_ids: Tensor, ngram_size: int) -> Tensor:
    """Forbid (-inf) every token that would complete an n-gram already in the row.

    input_ids (B, L). The next token completes the n-gram (last n - 1 tokens, next token).
    For every earlier window of n tokens whose first n - 1 equal those last n - 1 tokens,
    ban the window's last token. Windows containing ids < 0 (padding) never match. With
    L < n nothing is banned; with L == n the whole row is the one earlier window.
    Checks: ``check_history("input_ids", ...)``, ``check_int("no_repeat_ngram_size",
    ngram_size, minimum=1)``.
    Hint: ``input_ids.unfold(1, n, 1)`` gives every window, (B, L - n + 1, n).
    """
    raise NotImplementedError(
        "Exercise 5 (penalties and the order): see mlab_tfs/sampling/GUIDE.md#5-penalties-and-the-order"
    )


def process_logits(
    logits: Tensor,
    history: Tensor,
    num_generated: int,
    options: SamplingOptions | None = None,
    **sampling: Unpack[SamplingKeywords],
) -> Tensor:
    """All processors, in transformers' order. logits (B, V) -> (B, V).

    history (B, L): prompt and generated tokens, -1 at padding; its last num_generated
    columns are the generated tokens (those are what frequency/presence count).

    1. repetition penalty (if != 1), 2. frequency/presence (if either is set),
    3. no-repeat n-gram (if > 0); then only when do_sample: 4. temperature (if != 1),
    5. top-k (if > 0), 6. top-p (if < 1), 7. min-p (if not None); top-k, top-p and min-p
    keep at least ``o.min_tokens_to_keep`` tokens. Skip the ones that are switched off.

    The settings come as ``options`` (a SamplingOptions) or as its fields in ``**sampling``
    (None = not given; do_sample defaults to True here). Check everything first, switched off or not
    (a NaN top_p must not pass silently): ``history = check_history("history", history,
    logits)``, ``num_generated = check_int("num_generated", num_generated, minimum=0,
    maximum=history.shape[1])`` and ``o = resolve_options(options, dict(do_sample=True),
    **sampling)``, a checked SamplingOptions: read ``o.top_k``, ``o.temperature``... (Python ints and floats).
    """
    raise NotImplementedError(
        "Exercise 5 (penalties and the order): see mlab_tfs/sampling/GUIDE.md#5-penalties-and-the-order"
    )


# ---------------------------------------------------------------------------------------
# 6. Batches of prompts of different lengths
# ---------------------------------------------------------------------------------------


def left_pad(
    sequences: Sequence[TokenIds], pad_token_id: int, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Prompts of different lengths (lists or 1-d tensors of ids) as one batch.

    Returns (input_ids, attention_mask), both (B, T) long with T the longest prompt:
    padding (pad_token_id, mask 0) on the *left*, so that every row's last real token is in
    the last column, where the next-token logits are read.

    Both go on device; by default the device of the tensors among sequences (CPU for
    lists). Checks: ``check_int("pad_token_id", pad_token_id, minimum=0)``; each row through
    ``as_int_tensor(f"sequences[{i}]", s, device, what="the batch")`` (from mlab_tfs.inputs:
    floats refused, a tensor on another device a ValueError); no rows, or an empty row:
    ValueError naming sequences.
    """
    raise NotImplementedError(
        "Exercise 6 (batching with left padding): see mlab_tfs/sampling/GUIDE.md#6-batching-with-left-padding"
    )


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """(B, L) positions counted over real tokens: cumsum(mask) - 1, so each row's first
    real token is at 0. Padding positions are masked anyway but must be valid (>= 0):
    clamp them. A list or numpy array is turned into a tensor; values other than 0 and 1: ValueError
    naming attention_mask."""
    raise NotImplementedError(
        "Exercise 6 (batching with left padding): see mlab_tfs/sampling/GUIDE.md#6-batching-with-left-padding"
    )


# ---------------------------------------------------------------------------------------
# 7. generate
# ---------------------------------------------------------------------------------------


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
    """Greedy decoding or sampling for a batch of left-padded prompts, on the KV cache.

    input_ids, attention_mask: (B, T), left padding (mask 0). Returns (B, T + n).

    1. Check the arguments with the given helpers: ``p = check_prompt(model, input_ids,
       attention_mask, max_new_tokens, pad_token_id, eos_token_id)`` returns
       ``p.input_ids`` (lists put on the model's device), ``p.attention_mask`` (long, all
       ones when None), ``p.max_new_tokens``, ``p.pad_token_id`` and ``p.eos`` (the eos ids
       as a tensor, or None); ``opts = resolve_options(options, **sampling)`` (do_sample
       defaults to False, greedy) gives one checked SamplingOptions, then ``opts.warn_unused(3)`` warns
       about sampling settings that greedy decoding ignores; ``check_bool("use_cache",
       use_cache)``; ``check_generator(generator, device)``. Check once, before the loop.
    2. Run the prompt once: ``logits, past = lm_forward(model, ids, mask, positions)`` with
       ``positions = position_ids_from_mask(mask)``.
    3. Each step: ``process_logits(logits[:, -1], history, step, opts)`` (history = the
       ids with -1 at padding; options already checked are not checked again), then
       argmax or ``sample_token`` (``opts.do_sample``); finished rows get the fill
       token (pad_token_id, or the first eos when there is no pad id); append; extend the
       mask by a column of ones; update which rows are finished (``torch.isin`` with
       ``p.eos``); stop when all are finished or after max_new_tokens tokens; otherwise run
       ``lm_forward(model, nxt[:, None], mask, positions[:, -1:], past)``: one new token per
       row against the cache.
    use_cache=False: run the whole sequence each step instead (the same tokens).

    Pitfalls: positions of the new token must continue each row's own count (the last
    column of position_ids_from_mask of the extended mask), not the padded width; the mask
    must cover cached and new tokens, (B, L).
    """
    raise NotImplementedError(
        "Exercise 7 (the kv cache loop: generate): see mlab_tfs/sampling/GUIDE.md#7-the-kv-cache-loop-generate"
    )


def expand_cache(past: Any, repeats: int) -> Any:
    """Repeat every row of a KV cache ``repeats`` times along the batch: rows b, b, ..., b + 1, ...

    past is either a tuple of (k, v) pairs, each (B, nh, P, hs) (return a new tuple, with
    ``repeat_interleave(repeats, dim=0)``), or a cache object with transformers' Cache
    method ``batch_repeat_interleave`` (our GPT-2's KVCache, transformers' DynamicCache:
    call ``past.batch_repeat_interleave(repeats)``, which changes it in place, and return
    it). Test for the method, not the class. Anything else: TypeError. Check ``repeats =
    check_int("repeats", repeats, minimum=1)``.

    score_suffix (exercise 10) and beam_search (exercise 8) use it.
    """
    raise NotImplementedError(
        "Exercise 7 (the kv cache loop: generate): see mlab_tfs/sampling/GUIDE.md#7-the-kv-cache-loop-generate"
    )


def reorder_cache(past: Any, index: Tensor | Sequence[int]) -> Any:
    """Keep rows ``index`` of a KV cache, in that order: new row i = old row index[i].

    Tuples: ``index_select(0, index)`` on every k and v, a new tuple. A cache object with
    transformers' Cache method ``reorder_cache`` (our KVCache, transformers' DynamicCache):
    ``past.reorder_cache(index)`` (in place), then return it. Anything else: TypeError.
    First ``index = cache_index(past, index)``: a list becomes a long tensor on the
    cache's device; a float index, a row out of range or a tensor on another device is a
    ValueError naming index.
    """
    raise NotImplementedError(
        "Exercise 7 (the kv cache loop: generate): see mlab_tfs/sampling/GUIDE.md#7-the-kv-cache-loop-generate"
    )


# ---------------------------------------------------------------------------------------
# 8. Beam search
# ---------------------------------------------------------------------------------------


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
    """Beam search over the KV cache, batched, equal to transformers' beam search.

    Returns ``BeamSearchOutput(sequences, sequences_scores)``: sequences
    (B * num_return_sequences, T + n) best first per prompt, padded after a hypothesis's end
    with pad_token_id (eos when pad_token_id is None or 0, as transformers does);
    sequences_scores: sum of the new tokens' log-probabilities / n_new ** length_penalty.

    The algorithm, per step (the guide walks through it):
    - log_softmax the logits (B * nb, V), add each beam's running score, view (B, nb * V);
      take the K = max(2, 1 + number of eos ids) * nb best (2 * nb with one eos id, so that nb
      remain after those ending in eos): beam = idx // V, token = idx % V.
    - A candidate *ends* if its token is eos or the sequence reached T + max_new_tokens.
    - The next running beams: the nb best candidates that did not end.
    - Ended candidates among the first nb join the finished pool (nb best kept) with score
      candidate_score / new_len ** length_penalty, unless the pool is closed (early_stopping
      True and full, or no running beam can beat the worst finished one).
    - Reorder the cache by (beam + b * nb) and feed each beam's new token.
    Start from the prompt run once, its last logits and cache repeated nb times, running
    scores [0, -1e9, -1e9, ...] so the first step only expands beam 0.
    num_beams=1 is greedy decoding, as transformers' generate runs it: K = 1 (the best token
    alone, which ends the prompt when it is eos), padding with pad_token_id (eos when None).

    Checks (given): ``p = check_prompt(..., eos_pads=True)`` (see generate);
    ``check_int`` for num_beams (>= 1) and num_return_sequences (in [1, num_beams]),
    ``check_number`` for length_penalty (finite); early_stopping must be "never" or a bool
    (``check_bool``: 1 and 0 are refused, since ``1 is True`` is False).

    options (the penalties, as transformers): ``opts = resolve_options(options, **sampling)``;
    ``opts.do_sample`` is a ValueError (no beam sampling here); when a penalty is on, apply
    ``process_logits(log_probs, history, new_len, opts)`` to each step's log-probabilities
    (B * nb, V) before adding the running scores, history being each beam's tokens with -1
    at the prompt's padding (num_beams=1: to the logits, before the log-softmax, as greedy
    decoding does).

    Optional: skip this exercise if you like; the rest of the part does not need it.
    """
    raise NotImplementedError("Exercise 8 (beam search): see mlab_tfs/sampling/GUIDE.md#8-beam-search")


# ---------------------------------------------------------------------------------------
# 9. Two contexts
# ---------------------------------------------------------------------------------------


def combine_two_contexts(logits_a: Tensor, logits_b: Tensor, mode: str = "contrastive", gamma: float = 1.0) -> Tensor:
    """Combine two contexts' next-token logits, each (B, V).

    mode "contrastive": logits_a + gamma * (logits_a - logits_b).
    mode "product": log_softmax(logits_a) + gamma * log_softmax(logits_b), so that
    softmax of the result is p_a * p_b ** gamma, normalised.
    Any other mode: ValueError mentioning "mode". gamma = 0 must give back context a.
    Checks: ``check_logits`` on both, same shape (ValueError naming logits_b) and device
    (``check_device("logits_b", logits_b, logits_a.device, what="logits_a")``),
    ``gamma = check_number("gamma", gamma)`` (any finite number).
    """
    raise NotImplementedError("Exercise 9 (two contexts): see mlab_tfs/sampling/GUIDE.md#9-two-contexts")


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
    """One continuation per row from the combination of two contexts; the chosen token is
    appended to both.

    input_ids_a (B, Ta), input_ids_b (B, Tb), each left-padded with its mask. Left-pad both
    to T = max(Ta, Tb) and stack them into one batch of 2B rows (a first), so every step is
    *one* forward: the prompts once, then (2B, 1) against one cache. Each step: combine
    ``last[:B]`` and ``last[B:]``, ``process_logits`` (history = the a rows, -1 at their
    padding; ``num_generated`` = tokens appended so far), pick, append
    the same token to both halves. Returns (B, Ta + n): context a and the new tokens, with
    generate's eos/pad rules. With gamma = 0 it must give generate's tokens on context a
    for the same seeded generator.

    Checks: the mode, ``check_number("gamma", gamma)``, ``check_prompt`` on each context
    with ``name="input_ids_a", mask_name="attention_mask_a"`` (and _b), ``opts =
    resolve_options(options, dict(do_sample=True), **sampling)``, ``check_generator``.

    Optional: skip this exercise if you like; the rest of the part does not need it.
    """
    raise NotImplementedError("Exercise 9 (two contexts): see mlab_tfs/sampling/GUIDE.md#9-two-contexts")


# ---------------------------------------------------------------------------------------
# 10. Scoring a suffix
# ---------------------------------------------------------------------------------------


def score_suffix_naive(
    model: Any, prompt_ids: TokenIds, completions: Sequence[TokenIds], suffix_ids: TokenIds
) -> Tensor:
    """log P(suffix | prompt + completion) for each completion, each full text in its own
    forward. Returns (N,) float32: the sum over suffix tokens of log_softmax(logits) at the
    position before each one. The reference for score_suffix. Start with ``prompt, rows,
    suffix = suffix_inputs(model, prompt_ids, completions, suffix_ids)``: 1-d long tensors
    on the model's device, checked (the errors score_suffix documents)."""
    raise NotImplementedError("Exercise 10 (suffix scoring): see mlab_tfs/sampling/GUIDE.md#10-suffix-scoring")


def score_suffix(model: Any, prompt_ids: TokenIds, completions: Sequence[TokenIds], suffix_ids: TokenIds) -> Tensor:
    """The same scores with two forwards in all.

    1. The prompt alone (batch 1): keep its last logits (they predict the first token after
       it) and its cache; ``expand_cache`` it to N rows.
    2. One batch of N rows [completion_i, suffix, right padding], width W = longest + S,
       attention mask (N, P + W) (ones for the prompt and the real tokens), positions
       P .. P + W - 1, on the expanded cache.
    3. Logits at row position t predict row token t + 1; the prompt's last logits predict
       row token 0. Prepend them, gather the S positions starting at len(completion_i),
       sum the suffix tokens' log-probabilities.
    Start with ``prompt, rows, suffix = suffix_inputs(model, prompt_ids, completions,
    suffix_ids)``: it places lists on the model's device and raises the ValueErrors
    (prompt_ids or suffix_ids empty, no completions, ids outside the vocabulary, tensors on
    another device, P + longest + S > n_positions).
    """
    raise NotImplementedError("Exercise 10 (suffix scoring): see mlab_tfs/sampling/GUIDE.md#10-suffix-scoring")


@torch.no_grad()
def score_suffixes(
    model: Any, prompt_ids: TokenIds, completions: Sequence[TokenIds], suffixes: Sequence[TokenIds]
) -> Tensor:
    """K suffixes after the same N completions, each text computed once: scores (K, N)
    float32, scores[k, i] = score_suffix(model, prompt_ids, completions, suffixes[k])[i].
    Three forwards, whatever K (score_suffix run K times would make 2K, each recomputing
    every completion):

    1. The prompt (1, P); keep its last logits (N, V after ``expand``) and ``expand_cache``
       its cache to N rows.
    2. If any completion is non-empty: the completions (N, C), C the longest, right-padded,
       positions P .. P + C - 1, mask (N, P + C) (ones for the prompt and the real tokens,
       zeros for the padding). Each row's logits at its last real token ``len(c_i) - 1``
       replace the prompt's last (not for an empty completion): they predict the suffix's
       first token.
    3. ``expand_cache(past, K)``: row i * K + k is completion i with suffix k. The suffixes
       (N * K, S), S the longest, right-padded: suffix token j sits at position
       P + len(c_i) + j (not P + C: the padding slots hold no position), and the mask
       (N * K, P + C + S) repeats step 2's (``repeat_interleave(K)``), so that the padding
       slots between a short completion and its suffix stay hidden, then marks the suffix's
       real tokens.
    4. Token 0 is predicted by step 2's logits, token j >= 1 by the suffix's position j - 1;
       sum the log-probabilities of the real tokens only, reshape (N, K) and transpose.

    Start with ``prompt, rows, sufs = suffixes_inputs(model, prompt_ids, completions,
    suffixes)``: 1-d long tensors on the model's device, checked (an empty suffix, no
    suffixes, P + longest completion + longest suffix > n_positions: ValueError naming
    the argument).
    """
    raise NotImplementedError("Exercise 10 (suffix scoring): see mlab_tfs/sampling/GUIDE.md#10-suffix-scoring")


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
    """Sample num_samples continuations of one prompt with ``generate`` (the prompt
    repeated; pad with the (first) eos, or 0 without one), cut each at its first eos (the
    first of any eos id, when eos_token_id is a list), then rank them:
    score = log P(bad) - log P(good), both from one ``score_suffixes(model, prompt,
    completions, [bad_suffix_ids, good_suffix_ids])`` (one pass, not two score_suffix
    calls). Return ``FilteredSamples(completions,
    scores)`` sorted by score, lowest (least "bad") first (``torch.argsort(..., stable=True)``).

    Check everything before sampling: ``as_ids(name, ids, model_device(model))`` for the
    prompt and both suffixes (each non-empty: ValueError naming it), ``check_int`` for
    num_samples and max_new_tokens (>= 1), P + max_new_tokens + the longer suffix <=
    ``model_n_positions(model)`` when it is not None (else ValueError naming max_new_tokens
    and the suffix), ``eos_set(eos_token_id, device, vocab)`` for the eos ids (one id or
    several; None without), ``opts = resolve_options(options, dict(do_sample=True),
    **sampling)`` (``opts.do_sample`` False is a
    ValueError: this samples), then ``generate(..., options=opts, ...)``; generate checks
    the rest."""
    raise NotImplementedError("Exercise 10 (suffix scoring): see mlab_tfs/sampling/GUIDE.md#10-suffix-scoring")
