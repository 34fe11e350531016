"""Fast paths for the GPT-2 solution beside the hand-written code, each tested equal to it
(mlab_tfs/gpt2/tests/test_fast_paths.py, mlab_tfs/tests/test_fused.py).

1. Decoding over a static KV cache (as in PyTorch's gpt-fast): ``KVCache.static`` /
   ``KVCache.for_model`` (mlab_tfs.gpt2.solution) preallocates (B, nh, max_len, hs) key and
   value buffers per layer, which the model's own attention writes in place at the current
   positions. Every decode step then has the same shapes, so it can be compiled once and
   captured as a CUDA graph (``torch.compile(mode="reduce-overhead")``).
   ``static_forward`` is the model's forward over such a cache, returning logits;
   ``mlab_tfs.sampling.fast`` decodes with it. No second attention or model loop: the same
   modules, the same code as ``GPT2LMHeadModel.forward``. ``LinearAsSums`` runs the linear
   layers of a one-row step as matrix-vector sums that inductor fuses with their neighbours.
2. Fused kernels in eager mode, on by default: the solutions' layer norms run as one
   ``F.layer_norm``, Llama's RMSNorms as one ``F.rms_norm`` and the MLPs' GELUs as one
   ``F.gelu`` wherever that computes the same function (``mlab_tfs.fused`` says where);
   the hand-written code runs for hooked calls, for the dtypes where the kernel would differ,
   and after ``use_fused_ops(model, False)`` (or inside ``with fused_ops(model, False):``).
   Same module names and weights either way.
3. A padded vocabulary for training: ``pad_vocab(model, multiple=64)`` gives the token
   embedding and the head a multiple of 64 rows (50257 -> 50304, as nanoGPT), the extra rows
   zero. The head masks the padded columns (-inf) and the loss runs over the full padded
   width, as nanoGPT and llm.c (the same loss and gradients; one contiguous logits tensor
   and gradient); logits stay (B, T, vocab_size), a view (``PaddedLMHead``), and the state
   saved for transformers holds vocab_size rows. ``logits_for_loss`` gives the full width
   to a loss of one's own.
4. ``chunked_lm_loss``: lm_loss a few sequences at a time, without (B, T, V) float32 copies;
   it takes a padded model's full-width logits too.

Shapes: B batch, T new tokens, M = max_len cache columns, C = n_embd, nh heads,
hs = C // nh head size, V vocabulary.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from mlab_tfs.fused import FusedOps
from mlab_tfs.inputs import check_int, check_labels
from mlab_tfs.gpt2.solution import GPT2LMHeadModel, KVCache

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------
# 1. Static KV cache
# ---------------------------------------------------------------------------------------


def static_forward(model: nn.Module, input_ids: Tensor, position_ids: Tensor, cache: KVCache,
                   cache_position: Tensor, last_only: bool = False) -> Tensor:
    """Our GPT-2's (or Llama's: any of our causal LMs with a body at ``base_model_prefix`` and
    an ``lm_head``) forward pass over a static KVCache; returns logits (B, T, V), or
    (B, 1, V) for the last column only with ``last_only`` (a prefill needs no more).

    input_ids, position_ids: (B, T) (position_ids may be (1, T)); cache: a static KVCache
    (``KVCache.for_model(model, B, max_len)``, then ``cache.reset(prompt_mask)``);
    cache_position: (T,) long, the cache columns the T tokens go to (the same for every
    row). Each new token attends to the cache columns up to its own that ``cache.key_mask``
    marks real. The model's input checks that read values are skipped under torch.compile,
    so the function compiles to one graph. Errors: as GPT2Model.forward's, and a
    TypeError naming cache for anything but a static KVCache (a dynamic one, or None, would
    give other shapes every step).
    """
    if not (isinstance(cache, KVCache) and cache.is_static):
        kind = "a dynamic KVCache" if isinstance(cache, KVCache) else f"a {type(cache).__name__}"
        raise TypeError(f"cache must be a static KVCache (KVCache.for_model(model, batch_size, max_len)), got {kind}")
    body = getattr(model, type(model).base_model_prefix)  # GPT-2's transformer, Llama's model
    out = body(input_ids, position_ids=position_ids, past_key_values=cache,
                            cache_position=cache_position)
    x = out.last_hidden_state  # (B, T, C)
    if last_only:
        x = x[:, -1:]
    return model.lm_head(x)


class LinearAsSums(TorchFunctionMode):
    """Inside ``with LinearAsSums(max_rows):``, ``F.linear`` (every nn.Linear) on an input of
    at most ``max_rows`` rows (the product of its leading dims) runs as a broadcast product and
    a sum over the input features, in float32, bias added before the one rounding to the
    input's dtype (as a matrix-multiply kernel accumulates). The same function as F.linear
    (tested equal); under torch.compile, inductor makes it one reduction kernel (a
    matrix-vector product) that fuses the bias and the pointwise work after it, where a
    matrix-multiply call is a kernel of its own and its bias and activation further kernels.
    For the decode step (``mlab_tfs.sampling.fast``, ``linear_as_sums``); larger inputs, and
    every other function, run unchanged. max_rows: an int >= 1 (TypeError for another type, a
    bool or float included; ValueError below 1), as generate_fast's linear_as_sums."""

    def __init__(self, max_rows: int):
        super().__init__()
        self.max_rows = check_int("LinearAsSums: max_rows", max_rows, minimum=1)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if x.numel() // max(x.shape[-1], 1) <= self.max_rows:
                y = (x.unsqueeze(-2).float() * weight.float()).sum(-1)  # (..., out_features)
                if bias is not None:
                    y = y + bias.float()
                return y.to(torch.promote_types(x.dtype, weight.dtype))
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------------------
# 2. The fused kernels of the default eager path, switched per model
# ---------------------------------------------------------------------------------------

_UNSET = object()


def _fused_modules(model: nn.Module, where: str) -> list[FusedOps]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    modules = [m for m in model.modules() if isinstance(m, FusedOps)]
    if not modules:
        raise ValueError(f"{where}: model ({type(model).__name__}) has no module with a fused path (a "
                         f"mlab_tfs.fused.FusedOps: the solutions' LayerNorm, RMSNorm and MLPs); a model of "
                         f"other modules runs as written")
    return modules


def _check_enabled(where: str, enabled: object) -> bool:
    if not isinstance(enabled, bool):
        raise TypeError(f"{where}: enabled must be True or False, got {type(enabled).__name__} {enabled!r}")
    return enabled


def use_fused_ops(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Choose, for every module of ``model`` that has a fused path (``mlab_tfs.fused.FusedOps``:
    the layer norms, RMSNorms and MLPs of the GPT-2, BERT, DeBERTa and Llama solutions), the
    single PyTorch kernels (``enabled=True``: ``F.layer_norm``, ``F.rms_norm``, ``F.gelu``, where
    they compute the same function; the default of a new model) or the hand-written code
    (``enabled=False``).

    Sets each module's ``fused_ops`` attribute, in place; module names, parameters and the
    state dict stay as they are. Returns the model. The setting is the model's own: it holds
    inside ``mlab_tfs.fused.hand_written()`` too. Either way a call with a hook on a layer
    norm's ``hook_scale`` / ``hook_normalized`` or an MLP's ``hook_pre`` / ``hook_post`` runs
    that module's hand-written code. Same outputs and gradients up to float rounding (tested
    1e-5, ``mlab_tfs/tests/test_fused.py``).

    Errors: TypeError for a model that is not an nn.Module or an enabled that is not a bool;
    ValueError for a model without any such module (a learner's own modules have no fused path).
    """
    _check_enabled("use_fused_ops", enabled)
    for module in _fused_modules(model, "use_fused_ops"):
        module.fused_ops = enabled
    return model


@contextlib.contextmanager
def fused_ops(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """``with fused_ops(model):`` (or ``fused_ops(model, False)`` for the hand-written code)
    runs ``use_fused_ops(model, enabled)`` inside the block and yields the model; afterwards
    every module's setting is what it was before (its own value, or none: the default), even
    on an error. Errors as use_fused_ops's."""
    _check_enabled("fused_ops", enabled)
    modules = _fused_modules(model, "fused_ops")
    before = [m.__dict__.get("fused_ops", _UNSET) for m in modules]
    for module in modules:
        module.fused_ops = enabled
    try:
        yield model
    finally:
        for module, value in zip(modules, before):
            if value is _UNSET:
                module.__dict__.pop("fused_ops", None)
            else:
                module.fused_ops = value


# ---------------------------------------------------------------------------------------
# 3. Vocabulary padded to a multiple (training speed)
# ---------------------------------------------------------------------------------------


class PaddedLMHead(nn.Linear):
    """The language-modelling head of a model whose vocabulary pad_vocab padded: its weight
    has ``padded_vocab_size`` rows (a multiple of 64 or 128, which the matrix units tile
    well: nanoGPT's 50304 for GPT-2's 50257), the rows past ``vocab_size`` zero.

    The matmul adds ``padding_mask`` (padded_vocab_size,) as its bias: 0 for the vocabulary's
    columns (their logits unchanged), -inf for the padding's. Two outputs of that one matmul:

    - ``head(x)``: (..., C) -> (..., vocab_size), a view of its first vocab_size columns (no
      copy), what samplers and transformers-compatible code see;
    - ``head.logits_for_loss(x)``: (..., C) -> (..., padded_vocab_size), all of it, the padded
      columns -inf. GPT2LMHeadModel's loss reads these (nanoGPT's and llm.c's practice): the
      loss and every gradient are the unpadded model's (exp(-inf) = 0 adds nothing to the
      log-sum-exp, and a -inf column's softmax, so its gradient, is exactly 0), and the
      cross-entropy runs over one contiguous (B, T, padded) tensor whose gradient the
      backward writes whole, where a loss over the view would scatter a (B, T, vocab_size)
      gradient back into the padded width (and, compiled, reduce over a strided view).

    Both go through the module's call (forward hooks, accelerate's device hooks), the second
    as ``forward(x, full_width=True)``. ``out_features`` is vocab_size, what ``head(x)``
    returns (the samplers size their noise by it); ``weight.shape[0]`` is padded_vocab_size.
    Its state dict holds the first vocab_size rows only (what transformers' GPT-2 has; the
    mask is not saved), and a state dict of vocab_size rows loads into it (the padding rows
    set to zero); one of padded_vocab_size rows loads as it is.

    Built by pad_vocab; ``PaddedLMHead(weight, vocab_size)``: weight (padded_vocab_size, C),
    vocab_size an int in [1, padded_vocab_size] (ValueError for another weight shape or a
    vocab_size past its rows, TypeError for a vocab_size that is not an int).
    """

    def __init__(self, weight: nn.Parameter, vocab_size: int):
        if not isinstance(weight, Tensor) or weight.dim() != 2:
            got = f"shape {tuple(weight.shape)}" if isinstance(weight, Tensor) else f"a {type(weight).__name__}"
            raise ValueError(f"PaddedLMHead: weight must be a 2-D (padded_vocab_size, C) tensor, got {got}")
        vocab_size = check_int("PaddedLMHead: vocab_size", vocab_size, minimum=1, maximum=weight.shape[0])
        nn.Module.__init__(self)
        self.in_features = weight.shape[1]
        self.out_features = vocab_size
        self.padded_vocab_size = weight.shape[0]
        self.vocab_size = vocab_size
        self.weight = weight
        self.register_parameter("bias", None)
        self.register_buffer("padding_mask", torch.empty(self.padded_vocab_size, dtype=weight.dtype,
                                                         device=weight.device), persistent=False)
        self.reset_padding_mask()

    @torch.no_grad()
    def reset_padding_mask(self) -> None:
        """Fill ``padding_mask`` in place: 0 for the vocabulary's columns, -inf for the padding's.
        load_state_dict calls it (the mask is not saved): a model built on the meta device and
        materialised with ``to_empty`` has an uninitialised mask until then."""
        self.padding_mask.zero_()
        self.padding_mask[self.vocab_size :] = float("-inf")

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.reset_padding_mask()

    def forward(self, x: Tensor, full_width: bool = False) -> Tensor:
        """(..., C) -> (..., vocab_size), a view; with full_width, (..., padded_vocab_size), padding -inf."""
        logits = F.linear(x, self.weight, self.padding_mask)  # (..., padded_vocab_size)
        return logits if full_width else logits[..., : self.vocab_size]

    def logits_for_loss(self, x: Tensor) -> Tensor:  # (..., C) -> (..., padded_vocab_size)
        """The logits a loss should read: every column, the padded ones -inf (see the class)."""
        return self(x, full_width=True)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"padded_vocab_size={self.padded_vocab_size}, bias=False")


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _trim_rows(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict, *, rows: int) -> None:
    """state_dict post-hook: the module's weight saved with its first ``rows`` rows only."""
    key = prefix + "weight"
    if key in state_dict and state_dict[key].shape[0] > rows:
        state_dict[key] = state_dict[key][:rows]


def _pad_rows(module: nn.Module, state_dict: dict, prefix: str, *args, rows: int) -> None:
    """load_state_dict pre-hook: a weight of vocab_size rows padded with zero rows to ``rows``."""
    key = prefix + "weight"
    value = state_dict.get(key)
    if isinstance(value, Tensor) and value.dim() == 2 and value.shape[0] < rows \
            and value.shape[0] == getattr(module, "vocab_size", None):
        state_dict[key] = torch.cat([value, value.new_zeros(rows - value.shape[0], value.shape[1])])


def _padded_weight(weight: Tensor, rows: int) -> nn.Parameter:
    with torch.no_grad():
        padded = weight.new_zeros(rows, weight.shape[1])
        padded[: weight.shape[0]] = weight
    return nn.Parameter(padded, requires_grad=weight.requires_grad)


def padded_vocab_size(model: nn.Module) -> int:
    """The number of rows of ``model``'s token embedding and head: config.vocab_size, or
    what pad_vocab padded them to. TypeError for anything but a model with a config
    (an nn.Module whose ``config`` has ``vocab_size``)."""
    if not isinstance(model, nn.Module) or not hasattr(getattr(model, "config", None), "vocab_size"):
        raise TypeError(f"padded_vocab_size: model must be one of our models (an nn.Module with a config holding "
                        f"vocab_size), got {type(model).__module__}.{type(model).__qualname__}")
    head = getattr(model, "lm_head", None)
    return head.padded_vocab_size if isinstance(head, PaddedLMHead) else model.config.vocab_size


def pad_vocab(model: nn.Module, multiple: int = 64) -> nn.Module:
    """Pad our GPT2LMHeadModel's token embedding and LM head to a multiple of ``multiple``
    rows (50257 -> 50304 for 64), the new rows zero: the head's matmul gets a width that the
    GPU's matrix units tile without a ragged edge (nanoGPT; Karpathy measured about 25%
    faster training from this alone). In place; returns the model.

    What the model computes does not change. The head's matmul masks the padded columns
    (their logits -inf, ``PaddedLMHead``), and the model's loss (``lm_loss``) reads its whole
    (B, T, padded) output: the same loss and gradients as the unpadded model's (a -inf
    column adds exp(-inf) = 0 to the log-sum-exp and gets a zero gradient), one contiguous
    tensor and gradient, which compiled code reduces without a strided copy (for a loss of
    one's own, ``logits_for_loss(model, ids)`` gives the same tensor). The logits returned
    stay (B, T, config.vocab_size), a view of its first columns, so every sampler sees the
    vocabulary only and never produces a padded id. config.vocab_size is unchanged, so ids
    >= vocab_size are still refused (input_ids and labels). A tied head stays tied (one
    (padded, C) Parameter); an untied one is padded likewise. The padded rows get no
    gradient (no id looks them up, their logits' gradient is exactly 0), so AdamW keeps
    them at zero.

    State for transformers is trimmed to vocab_size: ``model.state_dict()`` (and so
    save_pretrained, to_hf_state_dict, transformers' Trainer's checkpoints) holds
    (vocab_size, C) embedding and head weights, which transformers' GPT2LMHeadModel loads
    with no mismatched key; load_state_dict takes such a state dict back (padding again).
    Pad before building the optimizer and before torch.compile (the Parameters are new).

    multiple: a positive int (64 or 128 in practice; 1 leaves the sizes as they are).
    Calling it again with a multiple that gives the same size does nothing; one that would
    give another size is a ValueError (the model is padded already). Errors: TypeError for a
    model that is not our GPT2LMHeadModel or a multiple that is not an int; ValueError for
    multiple < 1.
    """
    if not isinstance(model, GPT2LMHeadModel):
        raise TypeError(f"pad_vocab: model must be mlab_tfs.gpt2.solution.GPT2LMHeadModel, got "
                        f"{type(model).__module__}.{type(model).__qualname__}")
    if isinstance(multiple, bool) or not isinstance(multiple, int):
        raise TypeError(f"pad_vocab: multiple must be a positive int (e.g. 64 or 128), got {multiple!r}")
    if multiple < 1:
        raise ValueError(f"pad_vocab: multiple must be a positive int (e.g. 64 or 128), got {multiple}")
    V = model.config.vocab_size
    rows = _round_up(V, multiple)
    if isinstance(model.lm_head, PaddedLMHead):
        have = model.lm_head.padded_vocab_size
        if have == rows:
            return model
        raise ValueError(f"pad_vocab: the model's vocabulary is padded already, to {have} rows; multiple={multiple} "
                         f"would need {rows} (pad a fresh model, or call pad_vocab with the multiple used before)")
    wte = model.transformer.wte
    tied = model.lm_head.weight is wte.weight
    if wte.weight.shape[0] != V or model.lm_head.weight.shape[0] != V:
        raise ValueError(f"pad_vocab: the token embedding has {wte.weight.shape[0]} rows and the head "
                         f"{model.lm_head.weight.shape[0]}, expected config.vocab_size={V} for both")
    if model.lm_head.bias is not None:  # pragma: no cover - GPT-2's head has none
        raise ValueError("pad_vocab: the LM head has a bias; GPT-2's has none")
    wte.weight = _padded_weight(wte.weight, rows)
    wte.vocab_size = V
    head_weight = wte.weight if tied else _padded_weight(model.lm_head.weight, rows)
    head = PaddedLMHead(head_weight, V)
    model.lm_head = head  # tied: the same Parameter as wte's, so the tied-weight hooks see one tensor
    for module in (wte, head):
        module.register_state_dict_post_hook(functools.partial(_trim_rows, rows=V))
        module.register_load_state_dict_pre_hook(functools.partial(_pad_rows, rows=rows))
    return model


def logits_for_loss(model: nn.Module, input_ids: Tensor, **kwargs) -> Tensor:
    """The logits our causal LM's own loss reads, for a loss taken outside the model
    (chunked_lm_loss): ``model(input_ids, **kwargs).logits`` (B, T, V), except that a padded
    vocabulary (pad_vocab) gives all its padded_vocab_size columns, the padded ones -inf
    (``PaddedLMHead.logits_for_loss``; pass ``vocab_size=model.config.vocab_size`` to
    chunked_lm_loss, so that labels are still checked against the vocabulary).

    model: our GPT-2 (or Llama: a body at ``base_model_prefix`` and an ``lm_head``); kwargs:
    the body's forward's (attention_mask, position_ids...). TypeError for another model."""
    body = getattr(model, getattr(type(model), "base_model_prefix", ""), None)
    head = getattr(model, "lm_head", None)
    if not (isinstance(body, nn.Module) and isinstance(head, nn.Module)):
        raise TypeError(f"logits_for_loss: model must be one of our causal LMs (a body at base_model_prefix and an "
                        f"lm_head), got {type(model).__module__}.{type(model).__qualname__}")
    hidden = body(input_ids, **kwargs).last_hidden_state  # (B, T, C)
    return head.logits_for_loss(hidden) if isinstance(head, PaddedLMHead) else head(hidden)


# ---------------------------------------------------------------------------------------
# 4. Cross-entropy in chunks (a training-speed lever, measured by benchmarks/gpt2_train.py)
# ---------------------------------------------------------------------------------------


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Summed next-token cross-entropy of logits (B, T, V) against targets (B, T) (-100:
    not counted), a few sequences at a time: the float32 copy of the logits and of their
    gradient exist one chunk at a time, never whole (the plain loss makes both, (B, T, V)
    float32 each). Saves the logits (they are kept for the head's backward anyway) and the
    log-sum-exp (B, T) float32; the backward recomputes the softmax chunk by chunk."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, rows: int) -> Tensor:
        B = logits.shape[0]
        counted = targets != -100
        safe = targets.clamp(min=0)
        lse = logits.new_empty(targets.shape, dtype=torch.float32)
        total = logits.new_zeros((), dtype=torch.float32)
        for i in range(0, B, rows):
            x = logits[i : i + rows].float()  # (rows, T, V)
            lse[i : i + rows] = torch.logsumexp(x, dim=-1)
            picked = x.gather(-1, safe[i : i + rows, :, None])[..., 0]
            total = total + ((lse[i : i + rows] - picked) * counted[i : i + rows]).sum()
        ctx.save_for_backward(logits, safe, counted, lse)
        ctx.rows = rows
        return total

    @staticmethod
    def backward(ctx, grad_total: Tensor):
        logits, safe, counted, lse = ctx.saved_tensors
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        for i in range(0, logits.shape[0], ctx.rows):
            sl = slice(i, i + ctx.rows)
            p = torch.exp(logits[sl].float() - lse[sl, :, None])  # softmax, (rows, T, V)
            p.scatter_add_(-1, safe[sl, :, None], -torch.ones_like(p[..., :1]))  # minus the one-hot target
            grad[sl] = (p * (counted[sl, :, None] * grad_total)).to(grad.dtype)
        return grad, None, None


def chunked_lm_loss(logits: Tensor, labels: Tensor, num_items_in_batch: Tensor | int | None = None,
                    positions_per_chunk: int = 8192, vocab_size: int | None = None) -> Tensor:
    """``lm_loss`` (mlab_tfs.gpt2.solution) computed a few sequences at a time: the same
    value and gradient (float32 arithmetic either way; the tests check 1e-5), without the
    (B, T, V) float32 copies of the logits and of their gradient that the plain loss makes.

    logits: (B, T, V) of any float dtype, a view included; a padded model's full width
    (``logits_for_loss(model, ids)``: padded_vocab_size columns, the padded ones -inf, which
    add nothing to the loss and get a zero gradient) is the fast input. labels: (B, T) long,
    -100 not counted; logits at t predict labels at t + 1. Returns the mean over counted
    labels, or with num_items_in_batch (transformers' Trainer) the sum over that count.
    positions_per_chunk: about how many (sequence, position) rows one chunk holds (an int >=
    1; at least one sequence per chunk). vocab_size: the labels' bound, an int in [1, V]
    (default V; config.vocab_size for a padded model's full-width logits, so that a label
    in the padding is refused, not counted as an infinite loss).

    Errors: TypeError for logits that are not a floating-point tensor or a
    positions_per_chunk that is not an int; ValueError naming logits or labels for shapes
    that do not fit, for labels that are not integer ids, and (outside torch.compile, as
    lm_loss's own check in the model's forward) for a label outside [0, vocab_size) other than -100
    (the loss would otherwise count it as id 0): on the CPU a ValueError naming it, on an
    accelerator a device-side assertion (``torch._assert_async``, no host sync, so it is
    reported at a later synchronisation); ValueError for positions_per_chunk < 1 or a
    vocab_size outside [1, V], TypeError for either of another type.
    """
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point:
        what = f"a {logits.dtype} tensor" if isinstance(logits, Tensor) else f"a {type(logits).__name__}"
        raise TypeError(f"chunked_lm_loss: logits must be a floating-point tensor (B, T, V), got {what}")
    if not isinstance(labels, Tensor) or logits.dim() != 3 or labels.shape != logits.shape[:2]:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"chunked_lm_loss: logits must be (B, T, V) and labels (B, T), got logits "
                         f"{tuple(logits.shape)} and labels {got}")
    V = logits.shape[-1] if vocab_size is None else \
        check_int("chunked_lm_loss: vocab_size", vocab_size, minimum=1, maximum=logits.shape[-1])
    if labels.device.type == "cpu":
        labels = check_labels("chunked_lm_loss: labels", labels, tuple(logits.shape[:2]), V)
    else:  # on an accelerator, no host sync (it would wait for the forward): an asynchronous device assert
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(f"chunked_lm_loss: labels must hold integer ids, got a {labels.dtype} tensor")
        if not (torch.compiler.is_compiling() or torch.compiler.is_exporting()):
            torch._assert_async(((labels == -100) | ((labels >= 0) & (labels < V))).all())
    positions_per_chunk = check_int("chunked_lm_loss: positions_per_chunk", positions_per_chunk, minimum=1)
    targets = torch.cat([labels[:, 1:], labels.new_full((labels.shape[0], 1), -100)], dim=1)  # (B, T)
    rows = max(1, positions_per_chunk // max(1, logits.shape[1]))
    total = _ChunkedCrossEntropy.apply(logits, targets, rows)
    if num_items_in_batch is not None:
        return total / num_items_in_batch
    return total / (targets != -100).sum()


# ---------------------------------------------------------------------------------------
# 5. A decode step in hand-written Triton kernels (mlab_tfs.decode_kernels)
# ---------------------------------------------------------------------------------------


def check_triton_decode(model: nn.Module) -> None:
    """A ValueError naming what stands in the way of ``triton_decode_logits`` for ``model``
    (our GPT2LMHeadModel, or a TypeError): a hook on any hook point or any PyTorch forward
    (pre-)hook on a module (the kernels form no activations to hand it), a module the kernels
    read replaced by another class (peft's LoRA layers, a parametrized Linear: its forward would
    be skipped), a non-contiguous weight, dropout in training mode (the kernels apply none), an
    activation the kernels do not compute (``decode_kernels.ACT_CODES``: gelu_new, gelu,
    relu, silu; a learner's own function is not one), a model not in one dtype, or a bfloat16
    model on the CPU (Triton's interpreter has no bfloat16)."""
    from mlab_tfs.hooks import HookPoint
    from mlab_tfs.surface import _return_inputs_embeds

    try:
        from mlab_tfs.decode_kernels import ACT_CODES
    except ImportError as e:  # CUDA builds of PyTorch ship triton; CPU builds do not
        raise ImportError(f"kernels='triton' needs the triton package (pip install triton): {e}") from e
    if not isinstance(model, GPT2LMHeadModel):
        raise TypeError(f"kernels='triton' runs mlab_tfs.gpt2's GPT2LMHeadModel, got "
                        f"{type(model).__module__}.{type(model).__qualname__}")
    hooked = [name for name, m in model.named_modules() if isinstance(m, HookPoint) and m.has_hooks]
    # PyTorch's forward hooks on any module too, but the word embedding's own inputs_embeds hook
    # (mlab_tfs.surface, registered when the model is built; it returns None outside such a call)
    hooked += [name or type(model).__name__ for name, m in model.named_modules() if not isinstance(m, HookPoint)
               and (m._forward_pre_hooks or any(f is not _return_inputs_embeds for f in m._forward_hooks.values()))]
    if hooked or nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        where = ", ".join(hooked[:3]) + (" ..." if len(hooked) > 3 else "") if hooked else "every module (global)"
        raise ValueError(f"kernels='triton': hooks are registered on {where}; the fused kernels form no "
                         f"activations for hooks to see (remove them, or use kernels='torch')")
    from mlab_tfs.gpt2.solution import Embedding, GPT2Attention, GPT2Block, GPT2MLP, GPT2Model, LayerNorm

    # The kernels read these modules' weights and skip their forwards: a module replaced by
    # another class (peft's LoRA layers, a parametrization, a learner's own) would be ignored.
    body = model.transformer
    expected = [("transformer", body, (GPT2Model,)), ("transformer.wte", body.wte, (Embedding,)),
                ("transformer.wpe", body.wpe, (Embedding,)), ("transformer.ln_f", body.ln_f, (LayerNorm,)),
                ("lm_head", model.lm_head, (nn.Linear, PaddedLMHead))]
    for i, block in enumerate(body.h):
        at = f"transformer.h.{i}"
        expected += [(at, block, (GPT2Block,)), (f"{at}.ln_1", block.ln_1, (LayerNorm,)),
                     (f"{at}.ln_2", block.ln_2, (LayerNorm,)), (f"{at}.attn", block.attn, (GPT2Attention,)),
                     (f"{at}.mlp", block.mlp, (GPT2MLP,))]
        expected += [(f"{at}.{part}", block.get_submodule(part), (nn.Linear,))
                     for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    replaced = [(name, m) for name, m, kinds in expected if type(m) not in kinds]
    if replaced:
        name, m = replaced[0]
        raise ValueError(f"kernels='triton': {name} is a {type(m).__module__}.{type(m).__qualname__}, not the "
                         f"module the kernels stand in for (they read its weights and skip its forward: an "
                         f"adapter such as peft's LoRA or a parametrization would be ignored); use kernels='torch'")
    # Per module: model.eval() then block.train() leaves that block's dropout on (the attention
    # reads its own training flag for the attention dropout)
    dropping = [(name, m.p) for name, m in model.named_modules() if m.training and isinstance(m, nn.Dropout) and m.p > 0]
    dropping += [(f"{name}.attn_dropout", m.attn_dropout.p) for name, m in model.named_modules()
                 if m.training and isinstance(m, GPT2Attention) and m.attn_dropout.p > 0]
    if dropping:
        raise ValueError(f"kernels='triton': the model is in training mode with dropout ({dropping[0][0]}: "
                         f"p={dropping[0][1]}), which the kernels do not apply; call model.eval()")
    acts = {type(b.mlp.act).__name__ if b.mlp.act not in ACT_CODES else None for b in model.transformer.h}
    acts.discard(None)
    if acts:
        raise ValueError(f"kernels='triton': the MLP's activation ({model.config.activation_function!r}, "
                         f"{', '.join(sorted(acts))}) is not one the kernels compute (gelu_new, gelu, relu, silu)")
    dtypes = {p.dtype for p in model.parameters()}
    if len(dtypes) != 1:
        raise ValueError(f"kernels='triton': the model's parameters must share one dtype, got "
                         f"{sorted(map(str, dtypes))}")
    strided = [name for name, p in model.named_parameters() if not p.is_contiguous()]
    if strided:  # the kernels index each row's elements at unit stride
        raise ValueError(f"kernels='triton': the kernels read contiguous weights; {strided[0]} has strides "
                         f"{model.get_parameter(strided[0]).stride()} (e.g. a transposed view loaded with "
                         f"assign=True): make it contiguous (p.data = p.data.contiguous())")
    if dtypes == {torch.bfloat16} and not model.lm_head.weight.is_cuda:
        raise ValueError("kernels='triton': a bfloat16 model on the CPU runs in Triton's interpreter, which "
                         "computes bfloat16 wrongly (NumPy has no bfloat16); use float32 or float16 there")


def triton_decode_logits(model: GPT2LMHeadModel, input_ids: Tensor, position_ids: Tensor, cache: KVCache,
                         cache_position: Tensor) -> Tensor:
    """The decode step of ``static_forward`` (one new token per row) in six Triton kernels
    per block (``mlab_tfs.decode_kernels``): logits (B, V) in the model's dtype, the keys and
    values written into ``cache`` at ``cache_position`` as the attention layers write them.

    input_ids, position_ids: (B, 1); cache: a static KVCache for the model, reset with the
    prompt's mask; cache_position: (1,) long. The model as ``check_triton_decode`` allows
    (call it once first; this function checks nothing, so that it compiles to one graph).
    Equal to ``static_forward(...)[:, -1]`` to float rounding (tested at 1e-5 in float32).
    """
    from mlab_tfs.decode_kernels import ACT_CODES, combine_splits, flash_decode, norm_linear

    body = model.transformer
    x = body.wte.weight[input_ids[:, 0]] + body.wpe.weight[position_ids[:, 0]]  # (B, C)
    B, C = x.shape
    for i, block in enumerate(body.h):
        attn, mlp, ln_1, ln_2 = block.attn, block.mlp, block.ln_1, block.ln_2
        q = torch.empty(B, C, dtype=x.dtype, device=x.device)
        norm_linear(x, attn.c_attn.weight, attn.c_attn.bias, norm=(ln_1.weight, ln_1.bias, ln_1.eps),
                    qkv=(q, cache.keys[i], cache.values[i], cache_position))
        acc, ml = flash_decode(q, cache.keys[i], cache.values[i], cache.key_mask, cache_position, attn.scale)
        z = combine_splits(acc, ml, x.dtype)  # (B, C), the heads side by side
        x = norm_linear(z, attn.c_proj.weight, attn.c_proj.bias, residual=x)  # x + attention
        h = norm_linear(x, mlp.c_fc.weight, mlp.c_fc.bias, norm=(ln_2.weight, ln_2.bias, ln_2.eps),
                        act=ACT_CODES[mlp.act])
        x = norm_linear(h, mlp.c_proj.weight, mlp.c_proj.bias, residual=x)  # x + MLP
    ln_f, head = body.ln_f, model.lm_head
    logits = torch.empty(B, head.out_features, dtype=x.dtype, device=x.device)
    return norm_linear(x, head.weight, None, norm=(ln_f.weight, ln_f.bias, ln_f.eps), out=logits)
