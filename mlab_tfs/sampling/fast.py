"""Fast decoding for our GPT-2: a static KV cache and one compiled decode step.

``generate_fast`` returns what ``generate`` returns (greedy: the same tokens; sampling:
draws from the same distributions), but is built for a GPU:

- the prompt runs once (the prefill) into a static KV cache
  (``mlab_tfs.gpt2.solution.KVCache.static``): fixed-size buffers written in place;
- every later token is one call of a decode step whose shapes never change, so
  ``torch.compile(mode="reduce-overhead")`` compiles it once and replays it as a CUDA
  graph, one launch per token instead of hundreds of kernel launches (as in PyTorch's
  gpt-fast);
- inside the step, each new token attends through ``F.scaled_dot_product_attention``, or
  with ``decode_attention=True`` through ``mlab_tfs.attention.decode_attention`` (products
  and sums that inductor fuses; the Llama cache's key/value heads read without repeating
  them; slower than sdpa on an H200 at batch 1, so not the default), and with ``linear_as_sums`` a one-row step's linear layers run as matrix-vector sums
  (``mlab_tfs.gpt2.fast.LinearAsSums``) that fuse their bias and what follows;
- the step reads nothing back to the host: token choice, per-row eos and padding all
  happen on the device; whether every row has finished is checked only every
  ``check_every`` steps, and the extra tokens are cut off at the end.

Sampling draws with the exponential race (argmax of p / E, E ~ Exp(1), a form of the
Gumbel-max trick), with the noise drawn outside the compiled step so that a
``torch.Generator`` can still seed it; the draws follow generate's distribution but not
its random stream. The options are generate's ``SamplingOptions`` (or its fields as
keywords), checked once; ``no_repeat_ngram_size`` is not supported here (use ``generate``).

Shapes: B batch, T prompt length (padded), W = T + max_new_tokens, M cache columns, V vocabulary.
"""

from __future__ import annotations

import inspect
import types
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Unpack

import torch

from mlab_tfs.gpt2.fast import LinearAsSums, _round_up, check_triton_decode, static_forward, triton_decode_logits
from mlab_tfs.gpt2.solution import KVCache
from mlab_tfs.inputs import check_bool, check_int
from mlab_tfs.sampling.given import check_generator, check_prompt, model_n_positions
from mlab_tfs.sampling.options import SamplingKeywords, SamplingOptions, resolve_options
from mlab_tfs.sampling.solution import _process, position_ids_from_mask

Tensor = torch.Tensor


@dataclass(frozen=True)
class _Options:
    """What the decode step specialises on: Python constants, baked into the compiled graph."""

    sampling: SamplingOptions  # checked once, in generate_fast
    fill: int | None
    linear_as_sums: int = 0  # rows up to which the linear layers run as sums (LinearAsSums); 0: never
    kernels: str = "torch"  # "triton": the decode step's forward in mlab_tfs.decode_kernels

    @property
    def needs_history(self) -> bool:
        o = self.sampling
        return o.repetition_penalty != 1.0 or bool(o.frequency_penalty) or bool(o.presence_penalty)


def _choose(logits: Tensor, opts: _Options, tokens: Tensor | None, key_mask: Tensor, newest: Tensor,
            first_new: Tensor, noise: Tensor | None) -> Tensor:
    """The next token of every row, (B, V) float32 -> (B,), with process_logits' processors
    (its unchecked kernels) in its order, on fixed shapes.

    tokens (B, W): the batch so far; columns after ``newest`` (1,) are not written yet, so
    the penalties see only columns <= newest (and, for frequency/presence, >= first_new).
    """
    history = generated = None
    if opts.needs_history:
        cols = torch.arange(tokens.shape[1], device=tokens.device)[None, :]  # (1, W)
        written = cols <= newest
        history = torch.where(written & key_mask[:, : tokens.shape[1]], tokens, -1)  # -1: ignored
        generated = torch.where(written & (cols >= first_new), tokens, -1)
    logits = _process(logits, history, generated, opts.sampling)
    if not opts.sampling.do_sample:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits, dim=-1)
    # argmax p_j / E_j with E_j ~ Exp(1) is a draw from p; filtered tokens have p_j = 0.
    return (probs / noise.clamp_min(torch.finfo(noise.dtype).tiny)).argmax(dim=-1)


def _finish(nxt: Tensor, unfinished: Tensor, eos: Tensor | None, fill: int | None) -> tuple[Tensor, Tensor]:
    """generate's per-row stopping rule: finished rows get fill; a row stops at eos."""
    if fill is not None:
        nxt = torch.where(unfinished, nxt, fill)
    if eos is not None:
        unfinished = unfinished & ~torch.isin(nxt, eos)
    return nxt, unfinished


def _make_step(opts: _Options) -> Callable[..., tuple[Tensor, Tensor]]:
    def decode_step(model, cache, token, position, cache_position, unfinished, eos, tokens, first_new, noise):
        """One new token per row: token, position (B, 1); cache_position (1,) its cache
        column. Returns the next tokens (B,) and the rows still running (B,)."""
        if opts.kernels == "triton":
            logits = triton_decode_logits(model, token, position, cache, cache_position).float()  # (B, V)
        elif opts.linear_as_sums:
            with LinearAsSums(opts.linear_as_sums):
                logits = static_forward(model, token, position, cache, cache_position)[:, -1].float()  # (B, V)
        else:
            logits = static_forward(model, token, position, cache, cache_position)[:, -1].float()
        nxt = _choose(logits, opts, tokens, cache.key_mask, cache_position, first_new, noise)
        return _finish(nxt, unfinished, eos, opts.fill)

    # A code object of its own: torch.compile keeps its compiled graphs on the code object, at
    # most torch._dynamo.config.recompile_limit (8) of them, and with fullgraph=True the next is a
    # hard error. Shared by every step, the 9th model (or dtype, batch, length) of a process failed.
    return types.FunctionType(decode_step.__code__.replace(), decode_step.__globals__, decode_step.__name__,
                              decode_step.__defaults__, decode_step.__closure__)


# model -> {(batch, max_len): static KVCache, (options, compile settings): step}. Reused
# across calls, so that a compiled step (guarded on the cache it was compiled with) is
# compiled once, not once per call.
_STATE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _cache_for(model: Any, batch: int, max_len: int) -> KVCache:
    state = _STATE.setdefault(model, {})
    w = model.lm_head.weight
    key = ("cache", batch, max_len, w.dtype, w.device)
    if key not in state:
        cache = KVCache.for_model(model, batch, max_len)
        for t in cache.buffers():
            torch._dynamo.mark_static_address(t)  # CUDA graphs: mutated in place at a fixed address
        state[key] = cache
    return state[key]


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a compile option (torch.compile's ``options`` is a dict)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set)):
        return tuple(_frozen(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return ("unhashable", id(value))  # the same object, the same compiled step
    return value


def compile_kwargs(on_gpu: bool, compile_options: dict | None = None) -> dict:
    """torch.compile's arguments for the decode step: fullgraph, static shapes and, on a GPU,
    CUDA graphs, updated with ``compile_options``. torch.compile refuses both ``mode`` and
    ``options``: given ``options`` (inductor settings, e.g. ``{"coordinate_descent_tuning":
    True}``) and no ``mode``, the CUDA graphs of mode="reduce-overhead" are kept as its
    ``"triton.cudagraphs": True`` entry (unless the options set it)."""
    kwargs = dict(fullgraph=True, dynamic=False, mode="reduce-overhead" if on_gpu else None)
    extra = dict(compile_options or {})
    if extra.get("options") is not None and not isinstance(extra["options"], dict):
        raise TypeError(f"compile_options['options'] must be a dict of inductor settings or None, got "
                        f"{type(extra['options']).__name__} {extra['options']!r}")
    if "options" in extra and "mode" not in extra:
        kwargs.pop("mode")
        extra["options"] = {"triton.cudagraphs": on_gpu, **(extra["options"] or {})}
    kwargs.update(extra)
    return kwargs


def _step_for(model: Any, opts: _Options, compile: bool, compile_options: dict | None,
              decode_attention: bool) -> Callable:
    state = _STATE.setdefault(model, {})
    settings = _frozen(compile_options or {})
    key = ("step", opts, compile, settings, decode_attention)
    if key not in state:
        step = _make_step(opts)
        if compile:
            step = torch.compile(step, **compile_kwargs(model.lm_head.weight.is_cuda, compile_options))
        state[key] = step
    return state[key]


@torch.no_grad()
def generate_fast(
    model: Any,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    max_new_tokens: int = 20,
    options: SamplingOptions | None = None,
    *,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
    compile: bool = True,
    compile_options: dict | None = None,
    check_every: int = 16,
    decode_attention: bool = False,
    linear_as_sums: int = 0,
    kernels: str = "torch",
    **sampling: Unpack[SamplingKeywords],
) -> Tensor:
    """``generate`` for our GPT2LMHeadModel or LlamaForCausalLM over a static KV cache, with a compiled decode step.

    Arguments and result as ``mlab_tfs.sampling.generate``: input_ids, attention_mask
    (B, T) left-padded; returns (B, T + n), each row stopping at its first eos (kept) and
    padded with pad_token_id (eos when there is no pad id) after it.

    compile: compile the decode step with torch.compile (fullgraph, static shapes; on a
    GPU mode="reduce-overhead", i.e. CUDA graphs); compile_options: extra torch.compile
    arguments (e.g. ``{"backend": "aot_eager"}``; a name torch.compile does not take is a
    TypeError naming it). The first call for a batch size and length compiles; later
    calls with the same shapes reuse it. With ``options`` and no ``mode`` in compile_options,
    the GPU's CUDA graphs are kept (``compile_kwargs``). check_every: how many
    steps between checks (one host sync each) whether every row has finished (an int >= 1).
    decode_attention: each new token attends through ``mlab_tfs.attention.decode_attention``
    (sums that inductor fuses, the cache's key/value heads read without repeating them) on
    the model's "sdpa" path; False (the default): through ``F.scaled_dot_product_attention``
    as in the prefill, which measured faster on an H200 (benchmarks/README.md, "Where a decode
    step's time goes"). The same tokens either way (tested).
    linear_as_sums: an int >= 0; when the batch is at most this many rows, the decode step's
    linear layers run as matrix-vector sums (``mlab_tfs.gpt2.fast.LinearAsSums``), which
    inductor fuses with the bias and the work after them; 0 (the default): matrix-multiply calls.
    kernels: "torch" (the default: the model's own modules, as above) or "triton": each decode
    step's forward runs as hand-written Triton kernels, six per block
    (``mlab_tfs.gpt2.fast.triton_decode_logits``, ``mlab_tfs.decode_kernels``; our GPT-2 only,
    in eval mode or without dropout, no hooks registered, the MLP's activation gelu_new, gelu,
    relu or silu, one dtype, no module replaced by an adapter's; each a ValueError / TypeError
    naming it; a kernels that is not a str is a TypeError); on a CPU the kernels
    run in Triton's interpreter (slow: for tests). It needs the ``triton`` package (CUDA
    builds of PyTorch ship it) and does not combine with decode_attention or linear_as_sums.
    Every argument is checked as generate checks it (lists placed on the model's device, a
    tensor or generator elsewhere a ValueError naming it and both devices); options and
    ``**sampling`` as generate's, except options.no_repeat_ngram_size > 0, which is
    a ValueError (not supported on the static path).
    """
    from mlab_tfs.gpt2.solution import GPT2LMHeadModel
    from mlab_tfs.llama.solution import LlamaForCausalLM

    if not isinstance(model, (GPT2LMHeadModel, LlamaForCausalLM)):
        raise TypeError(f"model must be mlab_tfs.gpt2's GPT2LMHeadModel or mlab_tfs.llama's LlamaForCausalLM "
                        f"(generate_fast runs its modules over a "
                        f"static cache), got {type(model).__name__}; use mlab_tfs.sampling.generate for other models")
    p = check_prompt(model, input_ids, attention_mask, max_new_tokens, pad_token_id, eos_token_id)
    o = resolve_options(options, **sampling)
    if o.no_repeat_ngram_size:
        raise ValueError(f"options.no_repeat_ngram_size={o.no_repeat_ngram_size}: generate_fast does not support "
                         "no-repeat n-grams (their windows change shape every step); use generate")
    o.warn_unused(stacklevel=3)
    compile = check_bool("compile", compile)
    if compile_options is not None and not isinstance(compile_options, dict):
        raise TypeError(f"compile_options must be a dict of torch.compile arguments or None, got "
                        f"{type(compile_options).__name__}")
    known = set(inspect.signature(torch.compile).parameters) - {"model"}
    unknown = sorted(set(compile_options or {}) - known, key=str)
    if unknown:
        raise TypeError(f"compile_options has {', '.join(map(repr, unknown))}, which torch.compile does not take "
                        f"(it takes {', '.join(sorted(known))})")
    compile_kwargs(False, compile_options)  # a TypeError here for options that is not a dict
    check_every = check_int("check_every", check_every, minimum=1)
    decode_attention = check_bool("decode_attention", decode_attention)
    linear_as_sums = check_int("linear_as_sums", linear_as_sums, minimum=0)
    if not isinstance(kernels, str):
        raise TypeError(f"kernels must be the string 'torch' or 'triton', got {type(kernels).__name__} {kernels!r}")
    if kernels not in ("torch", "triton"):
        raise ValueError(f"kernels must be 'torch' or 'triton', got {kernels!r}")
    if kernels == "triton":
        if decode_attention or linear_as_sums:
            raise ValueError(f"kernels='triton' replaces the decode step's forward; it does not combine with "
                             f"decode_attention={decode_attention} or linear_as_sums={linear_as_sums}")
        check_triton_decode(model)
        if compile and not model.lm_head.weight.is_cuda:
            raise ValueError("kernels='triton' on a CPU runs Triton's interpreter, which torch.compile cannot "
                             "trace: pass compile=False (or run on a CUDA GPU)")
    input_ids, attention_mask, max_new_tokens, pad_token_id, eos = p
    device = input_ids.device
    check_generator(generator, device)
    fill = pad_token_id if pad_token_id is not None else (int(eos[0]) if eos is not None else None)
    opts = _Options(o, fill, linear_as_sums if input_ids.shape[0] <= linear_as_sums else 0, kernels)
    do_sample = opts.sampling.do_sample
    B, T = input_ids.shape
    W = T + max_new_tokens
    # Rounded up so that prompts of nearby lengths share one cache (and one compiled step).
    limit = model_n_positions(model)  # None for rotary positions: no table to outgrow
    M = _round_up(W, 64) if limit is None else min(_round_up(W, 64), limit)
    cache = _cache_for(model, B, M)
    cache.reset(attention_mask)
    cache.decode_attention = decode_attention  # read by the attention layers at T == 1 (the decode steps)
    step = _step_for(model, opts, compile, compile_options, decode_attention)
    V = model.lm_head.out_features

    tokens = torch.full((B, W), fill if fill is not None else 0, dtype=torch.long, device=device)
    tokens[:, :T] = input_ids
    history = tokens if opts.needs_history else None
    first_new = torch.full((1,), T, dtype=torch.long, device=device)
    noise = (lambda: torch.empty(B, V, device=device).exponential_(generator=generator)) if do_sample else (lambda: None)

    # Prefill, eager: the prompt into cache columns 0..T-1.
    prompt_positions = position_ids_from_mask(attention_mask)
    logits = static_forward(model, input_ids, prompt_positions, cache, torch.arange(T, device=device),
                            last_only=True)[:, -1].float()
    cache_position = torch.full((1,), T - 1, dtype=torch.long, device=device)
    nxt = _choose(logits, opts, history, cache.key_mask, cache_position, first_new, noise())
    unfinished = torch.ones(B, dtype=torch.bool, device=device)
    nxt, unfinished = _finish(nxt, unfinished, eos, fill)
    tokens[:, T] = nxt

    position = prompt_positions[:, -1:].clone()  # (B, 1): each row's last real position
    computed = 1
    for s in range(max_new_tokens - 1):
        cache_position += 1  # in place on the device: the column of the token just chosen
        position += 1
        if compile and s == 0 and kernels == "triton":
            # One eager step first (it writes the same cache column the compiled step rewrites):
            # the kernels' autotuners time their tile shapes here, outside any CUDA graph's
            # capture, and the compiled step launches the tiles they chose.
            triton_decode_logits(model, nxt[:, None], position, cache, cache_position)
        if compile:
            torch.compiler.cudagraph_mark_step_begin()
        nxt, unfinished = step(model, cache, nxt[:, None], position, cache_position, unfinished, eos,
                               history, first_new, noise())
        # Clones: a CUDA graph's outputs are overwritten by its next replay.
        nxt, unfinished = nxt.clone(), unfinished.clone()
        tokens[:, T + s + 1] = nxt
        computed += 1
        if eos is not None and computed % check_every == 0 and not bool(unfinished.any()):
            break

    # Cut where generate stops: when the last row produced its eos.
    n = computed
    if eos is not None:
        is_eos = torch.isin(tokens[:, T : T + computed], eos)  # (B, computed)
        stop = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, computed)
        n = int(stop.max())
    return tokens[:, : T + n]
