"""Your interpretability tools: fill in each function (the exercises of GUIDE.md, in order).

``mlab-tfs check interp`` runs the part's tests against this file. Every function takes our
GPT2LMHeadModel or LlamaForCausalLM; ``given.layout(model)`` gives the weights you need under
one set of names, ``given.evaluating(model)`` runs it in eval mode without gradients and puts
its training flag back, and the hook names are TransformerLens's (see GUIDE.md#hook-points).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from mlab_tfs.hooks import ActivationCache
from mlab_tfs.interp.given import (
    Metric,
    attention_html,
    check_cache,
    check_ids,
    check_layer,
    check_mask,
    check_metric_value,
    check_path,
    check_pattern,
    check_repeated,
    check_token_choice,
    check_tokens,
    evaluating,
    layout,
    model_device,
    plot_patching,
    pyplot,
    save_figure,
)

Tensor = torch.Tensor

__all__ = [
    "accumulated_resid", "residual_components", "head_outputs", "logit_diff_direction", "direct_logit_attribution",
    "plot_attention", "attention_html", "repeated_tokens", "induction_scores", "per_token_loss", "ablate_heads",
    "patch_residual", "patch_heads", "logit_diff_metric", "recovered_fraction", "plot_patching", "logit_lens",
]


def _cached(cache: ActivationCache, name: str) -> Tensor:
    if not isinstance(cache, dict):
        raise TypeError(f"cache must be what model.run_with_cache returns, got {type(cache).__name__}")
    if name not in cache:
        raise ValueError(f"cache has no {name!r}: run model.run_with_cache without a names_filter (or with one "
                         "that keeps it)")
    return cache[name]


def _cache_layers(cache: ActivationCache) -> int:
    """How many blocks the cache has a hook_resid_pre for."""
    n = 0
    while f"blocks.{n}.hook_resid_pre" in cache:
        n += 1
    return n


# ----------------------------------------------------------------------------- 1. residual stream


def accumulated_resid(cache: ActivationCache, n_layer: int | None = None) -> Tensor:
    """The residual stream before each block and after the last: (n_layer + 1, B, T, C).

    Row i is ``blocks.{i}.hook_resid_pre`` for i < n_layer, the last row
    ``blocks.{n_layer - 1}.hook_resid_post``, the stream the final norm reads (not normed:
    transformers' ``output_hidden_states`` has the same rows but its last is after the norm).
    TransformerLens's ``ActivationCache.accumulated_resid`` without ``apply_ln``.

    n_layer: how many blocks to go through (None: every block in the cache; 0 gives the
    embeddings alone, (1, B, T, C)). ValueError if the cache lacks the streams or n_layer is
    out of range.
    """
    raise NotImplementedError("Exercise 1 (The residual stream): see mlab_tfs/interp/GUIDE.md#1-the-residual-stream")


def residual_components(model: torch.nn.Module, cache: ActivationCache) -> tuple[Tensor, list[str]]:
    """What each part of the model wrote into the residual stream: (K, B, T, C) and K labels.

    In order: "embed" (the token embeddings, ``hook_embed``), "pos_embed" (GPT-2's learned
    positions, ``hook_pos_embed``; Llama has none), then "attn_{i}" and "mlp_{i}" for each
    block (``hook_attn_out``, ``hook_mlp_out``, biases included). They sum to the last block's
    ``hook_resid_post`` (Elhage et al. 2021: the stream is a sum of what each layer writes), in
    eval mode. ValueError for a cache of another model (check_cache).
    """
    raise NotImplementedError("Exercise 1 (The residual stream): see mlab_tfs/interp/GUIDE.md#1-the-residual-stream")


# ----------------------------------------------------------------------------- 2. heads' outputs


def head_outputs(model: torch.nn.Module, cache: ActivationCache, layer: int) -> Tensor:
    """Each head's write into the residual stream at block ``layer``: (B, T, nh, C).

    Head h's output is its ``hook_z`` slice z[:, :, h] (B, T, hs) times its rows of the output
    projection: the projection's input is the heads' outputs side by side, so its weight
    (C, nh * hs) splits into nh blocks W_O[h] of (hs, C). The projection's bias belongs to no
    head: ``head_outputs(...).sum(2) + bias == hook_attn_out`` (eval mode).
    """
    raise NotImplementedError("Exercise 2 (Each head's output): see mlab_tfs/interp/GUIDE.md#2-each-heads-output")


def logit_diff_direction(model: torch.nn.Module, correct: int | Tensor, wrong: int | Tensor) -> Tensor:
    """The direction in the final (normed) stream that raises the logit of ``correct`` against
    ``wrong``: W_U[correct] - W_U[wrong], (C,) for token ids, (B, C) for (B,) tensors of them.

    W_U is the head's weight (V, C), tied to the token embedding or not; the head has no bias,
    so logit[correct] - logit[wrong] = normed_stream · direction. ValueError for ids outside
    the vocabulary or batches of different sizes.
    """
    raise NotImplementedError("Exercise 2 (Each head's output): see mlab_tfs/interp/GUIDE.md#2-each-heads-output")


def _batch_direction(model, correct, wrong, batch: int) -> Tensor:
    direction = logit_diff_direction(model, correct, wrong)
    if direction.dim() == 2 and direction.shape[0] != batch:
        raise ValueError(f"correct and wrong must give one token per sequence ({batch}), got {direction.shape[0]}")
    return direction.expand(batch, -1) if direction.dim() == 1 else direction  # (B, C)


def _positions(pos: int | Tensor, batch: int, length: int, device) -> Tensor:
    """pos as (B,) indices in [0, T): an int (negative from the end) or one per sequence."""
    if isinstance(pos, bool) or not isinstance(pos, (int, Tensor)):
        raise TypeError(f"pos must be an int or a (batch,) tensor of positions, got {type(pos).__name__}")
    if isinstance(pos, Tensor):
        if pos.dtype.is_floating_point or pos.dtype.is_complex or pos.dtype == torch.bool:
            raise TypeError(f"pos as a tensor must hold integer positions, got dtype {pos.dtype}")
        if pos.dim() != 1 or pos.numel() != batch or pos.is_meta:
            raise ValueError(f"pos as a tensor must be ({batch},), one position per sequence, got shape "
                             f"{tuple(pos.shape)} on {pos.device}")
    p = torch.as_tensor(pos).to(device).long().reshape(-1)
    if bool(((p < -length) | (p >= length)).any()):
        raise ValueError(f"pos must be in [-{length}, {length}) for sequences of {length} tokens, got {pos}")
    return (p % length).expand(batch)


# ----------------------------------------------------------------------------- 3. direct logit attribution


def direct_logit_attribution(model: torch.nn.Module, input_ids: Tensor, correct: int | Tensor,
                             wrong: int | Tensor, pos: int | Tensor = -1,
                             attention_mask: Tensor | None = None) -> dict[str, Tensor]:
    """How much each head, each MLP, the embeddings and the biases add to the logit difference
    logit[correct] - logit[wrong] at position ``pos``, directly (through the final norm and the
    head, not through later layers), averaged over the batch.

    The final norm is linear once its scale is frozen: with s = ``ln_final.hook_scale``
    (B, T, 1) from this run, LN(x) = w * (x - mean(x)) / s + b for GPT-2's LayerNorm, and
    w * x / s for Llama's RMSNorm (no mean, no bias). The stream x is a sum of components
    (``residual_components``, heads split by ``head_outputs``), so each one's share is
    ((x_k - mean(x_k)) / s) · (w * d), d = ``logit_diff_direction``. Elhage et al. (2021).

    Returns {"heads": (n_layer, n_head), "mlps": (n_layer,), "embed": () (token and position
    embeddings), "biases": () (the attention output biases and the final norm's bias; 0 for a
    Llama without attention_bias), "total": () the model's own logit difference}. They add up:
    heads.sum() + mlps.sum() + embed + biases == total (fp32, 1e-4).

    correct, wrong: token ids (int) or (B,) tensors; pos: an int (negative from the end) or
    (B,) positions (e.g. each sequence's last real token under right padding; ValueError for
    a position the attention_mask marks as padding). In float16 or bfloat16 the parts are
    computed in float32 from the model's rounded activations, so they add up to the total only
    to the model's own rounding (about 1e-3 of the logits in float16, 1e-2 in bfloat16).
    """
    raise NotImplementedError("Exercise 3 (Direct logit attribution): see mlab_tfs/interp/GUIDE.md#3-direct-logit-attribution")


def _ids_column(token: int | Tensor, batch: int, device) -> Tensor:
    if isinstance(token, Tensor):
        return token.to(device).long().reshape(-1, 1).expand(batch, 1)
    return torch.full((batch, 1), token, dtype=torch.long, device=device)


# ----------------------------------------------------------------------------- 4. pictures


def plot_attention(pattern: Tensor, tokens: list[str], path: str | Path, title: str | None = None) -> Path:
    """Attention patterns as a PNG at path (matplotlib, written atomically); returns the path.

    pattern: (T, S) one head, or (nh, T, S) several, drawn as a grid of heat maps, head h
    titled "head h". Rows are queries (the token that reads, labelled on the y axis), columns
    keys (the tokens read, x axis): row t is a distribution over keys 0..t in a causal model.
    Each head is drawn with ``imshow`` of its (T, S) values, from 0 (white) to 1.
    tokens: S strings naming the keys, which are also the queries (T == S; a pattern read
    with a cache has T < S and only the last T tokens query). ValueError for another shape or
    a token count that does not fit, NaN or an empty pattern; TypeError for tokens that are not
    strings or a path that is not a str / PathLike; the figure is closed afterwards.
    """
    raise NotImplementedError("Exercise 4 (Attention patterns as pictures): see mlab_tfs/interp/GUIDE.md#4-attention-patterns-as-pictures")


# ----------------------------------------------------------------------------- 5. induction heads


def repeated_tokens(vocab_size: int, seq_len: int, batch: int = 1, seed: int = 0) -> Tensor:
    """Random tokens repeated once: (batch, 2 * seq_len) long, [r, r] with r (batch, seq_len)
    uniform in [0, vocab_size), drawn from a generator seeded with ``seed`` (the same seed, the
    same tokens). The test of Olsson et al. (2022): only a model that copies from context can
    predict the second half. ValueError for sizes that are not positive ints.
    """
    raise NotImplementedError("Exercise 5 (Induction scores): see mlab_tfs/interp/GUIDE.md#5-induction-scores")


def induction_scores(model: torch.nn.Module, tokens: Tensor) -> Tensor:
    """How strongly each head attends as an induction head on tokens = [r, r]: (n_layer, n_head)
    float32.

    At a query t in the second half (L <= t < 2L) an induction head attends to the token
    after the previous occurrence of tokens[t], which is at t - L + 1 (Olsson et al. 2022). The
    score is pattern[b, h, t, t - L + 1] averaged over the batch and those L queries, from
    each block's ``hook_pattern``: 1 for a perfect induction head, about 1/t for a uniform one.
    tokens: (B, 2L) with equal halves (ValueError otherwise; repeated_tokens makes them).
    """
    raise NotImplementedError("Exercise 5 (Induction scores): see mlab_tfs/interp/GUIDE.md#5-induction-scores")


# ----------------------------------------------------------------------------- 6. ablation


def per_token_loss(model: torch.nn.Module, tokens: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """The next-token loss at each position, in nats: (B, T - 1), entry t = -log p(tokens[t + 1]
    | tokens[:t + 1]) (cross-entropy in float32). With an attention_mask, entries whose
    target or input is padding are 0. ValueError for fewer than two tokens.
    """
    raise NotImplementedError("Exercise 6 (Ablating heads): see mlab_tfs/interp/GUIDE.md#6-ablating-heads")


def ablate_heads(model: torch.nn.Module, tokens: Tensor, heads: list[tuple[int, int]], how: str = "zero"):
    """The model's output on tokens with some heads knocked out, through ``run_with_hooks``.

    heads: (layer, head) pairs. Each one's output ``blocks.{layer}.attn.hook_z[:, :, head]``
    (B, T, hs) is replaced by zeros (how="zero") or by its mean over the batch and the
    positions of this run (how="mean", which keeps the average the later layers are used to).
    The output projection's bias stays. Returns the model's output (``.logits`` (B, T, V)).
    ValueError for a head or layer out of range, an entry that is not a pair, or another how;
    TypeError for indices that are not ints.
    """
    raise NotImplementedError("Exercise 6 (Ablating heads): see mlab_tfs/interp/GUIDE.md#6-ablating-heads")


# ----------------------------------------------------------------------------- 7. activation patching


def logit_diff_metric(correct: int | Tensor, wrong: int | Tensor, pos: int | Tensor = -1) -> Metric:
    """A patching metric: logits (B, T, V) -> the 0-d mean over the batch of
    logits[b, pos, correct] - logits[b, pos, wrong] (Wang et al. 2022's logit difference).
    correct, wrong: token ids or (B,) tensors of them; pos an int or (B,) positions."""
    raise NotImplementedError("Exercise 7 (Activation patching): see mlab_tfs/interp/GUIDE.md#7-activation-patching")


def recovered_fraction(patched: Tensor, clean: Tensor | float, corrupted: Tensor | float) -> Tensor:
    """(patched - corrupted) / (clean - corrupted): 0 where a patch leaves the corrupted run's
    metric, 1 where it restores the clean run's. patched: a tensor of metric values (any shape,
    e.g. patch_residual's); clean, corrupted: numbers or 0-d tensors. ValueError when
    clean == corrupted (nothing to recover) or a value that is not finite, TypeError when
    patched is not a real tensor or clean / corrupted not numbers."""
    raise NotImplementedError("Exercise 7 (Activation patching): see mlab_tfs/interp/GUIDE.md#7-activation-patching")


def _metric_number(name: str, value: object) -> float:
    """A metric value given as a number or a 0-d tensor, as a finite float."""
    if isinstance(value, Tensor):
        if value.dim() != 0 or value.dtype == torch.bool or value.dtype.is_complex:
            raise TypeError(f"{name} must be a number or a 0-d real tensor, got a {value.dtype} tensor of shape "
                            f"{tuple(value.shape)}")
        value = float(value.detach())
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or a 0-d real tensor, got {type(value).__name__}")
    if not torch.isfinite(torch.tensor(float(value))):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _patching_inputs(model, clean_ids, corrupted_ids, metric):
    lay = layout(model)
    device = model_device(model)
    clean = check_ids("clean_ids", clean_ids, lay.vocab_size, device)
    corrupted = check_ids("corrupted_ids", corrupted_ids, lay.vocab_size, device)
    if clean.shape != corrupted.shape:
        raise ValueError(f"clean_ids and corrupted_ids must have the same shape (position t of one is patched "
                         f"into position t of the other), got {tuple(clean.shape)} and {tuple(corrupted.shape)}")
    if not callable(metric):
        raise TypeError(f"metric must be a function logits -> 0-d tensor, got {type(metric).__name__}")
    return lay, clean, corrupted


def patch_residual(model: torch.nn.Module, clean_ids: Tensor, corrupted_ids: Tensor, metric: Metric) -> Tensor:
    """Activation patching of the residual stream: (n_layer, T), entry [l, t] the metric of the
    corrupted run with ``blocks.{l}.hook_resid_pre`` at position t (every sequence of the batch)
    replaced by the clean run's. Patching where the two runs agree leaves the corrupted
    metric; at layer 0 patching the position where the prompts differ gives the clean one.
    metric: logits (B, T, V) -> 0-d tensor (e.g. logit_diff_metric). Meng et al. (2022).
    """
    raise NotImplementedError("Exercise 7 (Activation patching): see mlab_tfs/interp/GUIDE.md#7-activation-patching")


def patch_heads(model: torch.nn.Module, clean_ids: Tensor, corrupted_ids: Tensor, metric: Metric) -> Tensor:
    """Activation patching of the heads: (n_layer, n_head), entry [l, h] the metric of the
    corrupted run with head h's output ``blocks.{l}.attn.hook_z[:, :, h]`` replaced by the clean
    run's at every position (the later layers then read the patched head). Wang et al. (2022).
    """
    raise NotImplementedError("Exercise 7 (Activation patching): see mlab_tfs/interp/GUIDE.md#7-activation-patching")


# ----------------------------------------------------------------------------- 8. logit lens


def logit_lens(model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """What the model would predict if it stopped after each block: (n_layer + 1, B, T, V).

    Row i decodes ``accumulated_resid``'s row i (the stream before block i; the last row the
    stream after the last block) through the model's own final norm, with the norm's
    statistics of that stream (not frozen from the last layer), and the head. The last row is
    the model's logits. nostalgebraist (2020), "interpreting GPT: the logit lens".
    """
    raise NotImplementedError("Exercise 8 (The logit lens): see mlab_tfs/interp/GUIDE.md#8-the-logit-lens")
