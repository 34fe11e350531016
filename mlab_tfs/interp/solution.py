"""Looking inside the models you built: the residual stream, direct logit attribution,
attention pictures, induction heads, ablation, activation patching and the logit lens.

Every function takes our GPT2LMHeadModel or LlamaForCausalLM (``given.layout`` reads either)
and reaches its activations through the hook points of ``mlab_tfs/hooks.py``, whose names
are TransformerLens's (``blocks.{i}.hook_resid_pre``, ``blocks.{i}.attn.hook_z`` (B, T, nh, hs),
``blocks.{i}.attn.hook_pattern`` (B, nh, T, S), ``ln_final.hook_scale`` (B, T, 1)...). Each
runs the model in eval mode without gradients and leaves its training flag as it was.

The methods are those of Elhage et al. (2021), "A Mathematical Framework for Transformer
Circuits" (the residual stream as a sum, direct attribution, induction heads), Olsson et al.
(2022), "In-context Learning and Induction Heads" (the repeated-random-tokens test), Meng et
al. (2022), "Locating and Editing Factual Associations in GPT" and Wang et al. (2022),
"Interpretability in the Wild" (activation patching, the logit difference), and nostalgebraist
(2020), "interpreting GPT: the logit lens".
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
    if not isinstance(cache, dict):
        raise TypeError(f"cache must be what model.run_with_cache returns, got {type(cache).__name__}")
    available = _cache_layers(cache)
    if available == 0:
        _cached(cache, "blocks.0.hook_resid_pre")
    n_layer = available if n_layer is None else check_layer("n_layer", n_layer, available + 1, "layers in the cache, plus one")
    if n_layer == 0:
        return cache["blocks.0.hook_resid_pre"][None]  # (1, B, T, C)
    after = f"blocks.{n_layer - 1}.hook_resid_post"
    if after not in cache and f"blocks.{n_layer}.hook_resid_pre" in cache:
        after = f"blocks.{n_layer}.hook_resid_pre"  # the same tensor: one block's output is the next one's input
    last = _cached(cache, after)
    rows = [cache[f"blocks.{i}.hook_resid_pre"] for i in range(n_layer)]
    return torch.stack(rows + [last])  # (n_layer + 1, B, T, C)


def residual_components(model: torch.nn.Module, cache: ActivationCache) -> tuple[Tensor, list[str]]:
    """What each part of the model wrote into the residual stream: (K, B, T, C) and K labels.

    In order: "embed" (the token embeddings, ``hook_embed``), "pos_embed" (GPT-2's learned
    positions, ``hook_pos_embed``; Llama has none), then "attn_{i}" and "mlp_{i}" for each
    block (``hook_attn_out``, ``hook_mlp_out``, biases included). They sum to the last block's
    ``hook_resid_post`` (Elhage et al. 2021: the stream is a sum of what each layer writes), in
    eval mode. ValueError for a cache of another model (check_cache).
    """
    lay = layout(model)
    check_cache(model, cache, lay.unembed.weight.shape[1])
    parts, labels = [_cached(cache, "hook_embed")], ["embed"]
    if lay.has_pos_embed:
        parts.append(_cached(cache, "hook_pos_embed"))
        labels.append("pos_embed")
    for i in range(lay.n_layer):
        parts += [_cached(cache, f"blocks.{i}.hook_attn_out"), _cached(cache, f"blocks.{i}.hook_mlp_out")]
        labels += [f"attn_{i}", f"mlp_{i}"]
    return torch.stack(torch.broadcast_tensors(*parts)), labels  # (K, B, T, C)


# ----------------------------------------------------------------------------- 2. heads' outputs


def head_outputs(model: torch.nn.Module, cache: ActivationCache, layer: int) -> Tensor:
    """Each head's write into the residual stream at block ``layer``: (B, T, nh, C).

    Head h's output is its ``hook_z`` slice z[:, :, h] (B, T, hs) times its rows of the output
    projection: the projection's input is the heads' outputs side by side, so its weight
    (C, nh * hs) splits into nh blocks W_O[h] of (hs, C). The projection's bias belongs to no
    head: ``head_outputs(...).sum(2) + bias == hook_attn_out`` (eval mode). Computed in float32
    whatever the model's dtype (a float16 checkpoint's heads are summed without its rounding).
    """
    lay = layout(model)
    layer = check_layer("layer", layer, lay.n_layer)
    check_cache(model, cache, lay.unembed.weight.shape[1])
    z = _cached(cache, f"blocks.{layer}.attn.hook_z")  # (B, T, nh, hs)
    if tuple(z.shape[-2:]) != (lay.n_head, lay.head_dim):
        raise ValueError(f"cache's blocks.{layer}.attn.hook_z has {tuple(z.shape[-2:])} (heads, head size), the "
                         f"model ({lay.n_head}, {lay.head_dim}): it is another model's cache")
    with torch.no_grad():
        W_O = lay.out_proj[layer].weight.T.reshape(lay.n_head, lay.head_dim, -1)  # (nh, hs, C)
        return torch.einsum("bthd,hdc->bthc", z.float(), W_O.float())  # (B, T, nh, C)


def logit_diff_direction(model: torch.nn.Module, correct: int | Tensor, wrong: int | Tensor) -> Tensor:
    """The direction in the final (normed) stream that raises the logit of ``correct`` against
    ``wrong``: W_U[correct] - W_U[wrong], (C,) for token ids, (B, C) for (B,) tensors of them.

    W_U is the head's weight (V, C), tied to the token embedding or not; the head has no bias,
    so logit[correct] - logit[wrong] = normed_stream · direction. ValueError for ids outside
    the vocabulary or batches of different sizes.
    """
    lay = layout(model)
    correct = check_token_choice("correct", correct, lay.vocab_size)
    wrong = check_token_choice("wrong", wrong, lay.vocab_size)
    if isinstance(correct, Tensor) and isinstance(wrong, Tensor) and correct.shape != wrong.shape:
        raise ValueError(f"correct and wrong must have the same length, got {tuple(correct.shape)} and "
                         f"{tuple(wrong.shape)}")
    W_U = lay.unembed.weight  # (V, C)
    device = W_U.device
    pick = lambda t: W_U[t.to(device)] if isinstance(t, Tensor) else W_U[t]  # noqa: E731
    return (pick(correct) - pick(wrong)).detach()  # (C,) or (B, C)


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
    lay = layout(model)
    ids = check_ids("input_ids", input_ids, lay.vocab_size, model_device(model))
    B, T = ids.shape
    attention_mask = check_mask(attention_mask, ids)
    direction = _batch_direction(model, correct, wrong, B)  # (B, C)
    where = _positions(pos, B, T, ids.device)
    rows = torch.arange(B, device=ids.device)
    if attention_mask is not None and not bool(attention_mask[rows, where].bool().all()):
        b = int((~attention_mask[rows, where].bool()).nonzero()[0])
        raise ValueError(f"pos {int(where[b])} of sequence {b} is padding (attention_mask 0): give each sequence's "
                         "last real token, e.g. pos=attention_mask.sum(1) - 1 under right padding")
    with evaluating(model):
        out, cache = model.run_with_cache(ids, attention_mask=attention_mask)
        # In float32 whatever the model's dtype: the parts must add up to the total.
        scale = cache["ln_final.hook_scale"][rows, where].float()  # (B, 1)
        norm = lay.final_norm
        direction = direction.float()
        along = direction * norm.weight.float()  # (B, C): the norm's weight folded into d

        def share(x: Tensor) -> Tensor:  # (B, ..., C) at pos -> (B, ...) logit difference it adds
            x = x.float()
            if lay.centred:
                x = x - x.mean(-1, keepdim=True)
            x = x / scale.reshape(B, *([1] * (x.dim() - 1)))
            return torch.einsum("b...c,bc->b...", x, along)

        heads = torch.stack([share(head_outputs(model, cache, i)[rows, where]) for i in range(lay.n_layer)], 1)
        mlps = torch.stack([share(cache[f"blocks.{i}.hook_mlp_out"][rows, where]) for i in range(lay.n_layer)], 1)
        embed = share(cache["hook_embed"][rows, where])
        if lay.has_pos_embed:
            embed = embed + share(cache["hook_pos_embed"][rows, where])
        biases = torch.zeros(B, device=ids.device)
        for proj in lay.out_proj:
            if proj.bias is not None:
                biases = biases + share(proj.bias.expand(B, -1))
        if getattr(norm, "bias", None) is not None:
            biases = biases + direction @ norm.bias.float()  # added after the scale: not divided
        logits = out.logits[rows, where].float()  # (B, V)
        total = (logits.gather(1, _ids_column(correct, B, ids.device)) -
                 logits.gather(1, _ids_column(wrong, B, ids.device)))[:, 0]
    return {"heads": heads.mean(0), "mlps": mlps.mean(0), "embed": embed.mean(0), "biases": biases.mean(0),
            "total": total.float().mean(0)}


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
    pattern = check_pattern(pattern)
    heads = (pattern[None] if pattern.dim() == 2 else pattern).detach().float().cpu()  # (nh, T, S)
    nh, T, S = heads.shape
    if T > S:
        raise ValueError(f"pattern must have no more queries than keys (T <= S), got shape {tuple(pattern.shape)}")
    tokens = check_tokens(tokens, S, f"key positions of a pattern of shape {tuple(pattern.shape)}")
    path = check_path(path)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    plt = pyplot()
    cols = min(nh, 4)
    rows = -(-nh // cols)
    side = max(2.5, 0.3 * S + 1)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows), squeeze=False)
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= nh:
            ax.axis("off")
            continue
        ax.imshow(heads[h].numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(S), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(T), tokens[S - T:], fontsize=7)
        ax.set_title(f"head {h}" if pattern.dim() == 3 else (title or "attention"), fontsize=9)
    if title and pattern.dim() == 3:
        fig.suptitle(title)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- 5. induction heads


def repeated_tokens(vocab_size: int, seq_len: int, batch: int = 1, seed: int = 0) -> Tensor:
    """Random tokens repeated once: (batch, 2 * seq_len) long, [r, r] with r (batch, seq_len)
    uniform in [0, vocab_size), drawn from a generator seeded with ``seed`` (the same seed, the
    same tokens). The test of Olsson et al. (2022): only a model that copies from context can
    predict the second half. ValueError for sizes that are not positive ints.
    """
    for name, value in (("vocab_size", vocab_size), ("seq_len", seq_len), ("batch", batch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63) (torch.Generator.manual_seed), got {seed}")
    r = torch.randint(0, vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(seed))
    return torch.cat([r, r], dim=1)  # (batch, 2 * seq_len)


def induction_scores(model: torch.nn.Module, tokens: Tensor) -> Tensor:
    """How strongly each head attends as an induction head on tokens = [r, r]: (n_layer, n_head)
    float32.

    At a query t in the second half (L <= t < 2L) an induction head attends to the token
    after the previous occurrence of tokens[t], which is at t - L + 1 (Olsson et al. 2022). The
    score is pattern[b, h, t, t - L + 1] averaged over the batch and those L queries, from
    each block's ``hook_pattern``: 1 for a perfect induction head, about 1/t for a uniform one.
    tokens: (B, 2L) with equal halves (ValueError otherwise; repeated_tokens makes them).
    """
    lay = layout(model)
    ids, L = check_repeated(tokens, lay.vocab_size, model_device(model))
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(lay.n_layer)]
    with evaluating(model):
        _, cache = model.run_with_cache(ids, names_filter=names)
    t = torch.arange(L, 2 * L, device=ids.device)  # the queries of the second half
    scores = [cache[name][:, :, t, t - L + 1].float().mean(dim=(0, 2)) for name in names]  # each (nh,)
    return torch.stack(scores)  # (n_layer, n_head)


# ----------------------------------------------------------------------------- 6. ablation


def per_token_loss(model: torch.nn.Module, tokens: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """The next-token loss at each position, in nats: (B, T - 1), entry t = -log p(tokens[t + 1]
    | tokens[:t + 1]) (cross-entropy in float32). With an attention_mask, entries whose
    target or input is padding are 0. ValueError for fewer than two tokens.
    """
    lay = layout(model)
    ids = check_ids("tokens", tokens, lay.vocab_size, model_device(model))
    if ids.shape[1] < 2:
        raise ValueError(f"tokens must have at least 2 positions (one to predict from, one to predict), got "
                         f"{ids.shape[1]}")
    attention_mask = check_mask(attention_mask, ids)
    with evaluating(model):
        logits = model(ids, attention_mask=attention_mask).logits  # (B, T, V)
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    loss = -logp.gather(-1, ids[:, 1:, None])[..., 0]  # (B, T - 1)
    if attention_mask is not None:
        real = attention_mask.to(loss.device).bool()
        loss = loss.masked_fill(~(real[:, 1:] & real[:, :-1]), 0.0)
    return loss


def ablate_heads(model: torch.nn.Module, tokens: Tensor, heads: list[tuple[int, int]], how: str = "zero"):
    """The model's output on tokens with some heads knocked out, through ``run_with_hooks``.

    heads: (layer, head) pairs. Each one's output ``blocks.{layer}.attn.hook_z[:, :, head]``
    (B, T, hs) is replaced by zeros (how="zero") or by its mean over the batch and the
    positions of this run (how="mean", which keeps the average the later layers are used to).
    The output projection's bias stays. Returns the model's output (``.logits`` (B, T, V)).
    ValueError for a head or layer out of range, an entry that is not a pair, or another how;
    TypeError for indices that are not ints.
    """
    lay = layout(model)
    ids = check_ids("tokens", tokens, lay.vocab_size, model_device(model))
    if how not in ("zero", "mean"):
        raise ValueError(f"how must be 'zero' or 'mean', got {how!r}")
    if isinstance(heads, (str, bytes)) or not isinstance(heads, (list, tuple)):
        raise TypeError(f"heads must be a list of (layer, head) pairs, got {type(heads).__name__}")
    by_layer: dict[int, list[int]] = {}
    for pair in heads:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"heads must hold (layer, head) pairs, got {pair!r}")
        layer = check_layer("a head's layer", pair[0], lay.n_layer)
        head = check_layer("a head's index", pair[1], lay.n_head, "heads per layer")
        by_layer.setdefault(layer, []).append(head)

    def knock_out(chosen: list[int]):
        def ablate(z: Tensor, hook) -> Tensor:  # (B, T, nh, hs)
            for h in chosen:
                z[:, :, h] = 0.0 if how == "zero" else z[:, :, h].mean(dim=(0, 1))  # mean: (hs,), broadcast
            return z
        return ablate

    hooks = [(f"blocks.{layer}.attn.hook_z", knock_out(chosen)) for layer, chosen in by_layer.items()]
    with evaluating(model):
        return model.run_with_hooks(ids, fwd_hooks=hooks)


# ----------------------------------------------------------------------------- 7. activation patching


def logit_diff_metric(correct: int | Tensor, wrong: int | Tensor, pos: int | Tensor = -1) -> Metric:
    """A patching metric: logits (B, T, V) -> the 0-d mean over the batch of
    logits[b, pos, correct] - logits[b, pos, wrong] (Wang et al. 2022's logit difference).
    correct, wrong: token ids or (B,) tensors of them; pos an int or (B,) positions."""
    for name, token in (("correct", correct), ("wrong", wrong)):
        check_token_choice(name, token, 2**62)
    if isinstance(pos, bool) or not isinstance(pos, (int, Tensor)):
        raise TypeError(f"pos must be an int or a (batch,) tensor of positions, got {type(pos).__name__}")

    def metric(logits: Tensor) -> Tensor:
        if not isinstance(logits, Tensor) or logits.dim() != 3:
            raise ValueError("the metric takes logits (batch, seq, vocab), got "
                             f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}")
        B, T, V = logits.shape
        for name, token in (("correct", correct), ("wrong", wrong)):
            check_token_choice(name, token, V)
            if isinstance(token, Tensor) and token.dim() == 1 and token.numel() != B:
                raise ValueError(f"{name} must give one token per sequence ({B}), got {token.numel()}")
        rows = torch.arange(B, device=logits.device)
        at = logits[rows, _positions(pos, B, T, logits.device)]  # (B, V)
        c, w = _ids_column(correct, B, logits.device), _ids_column(wrong, B, logits.device)
        return (at.gather(1, c) - at.gather(1, w)).float().mean()

    return metric


def recovered_fraction(patched: Tensor, clean: Tensor | float, corrupted: Tensor | float) -> Tensor:
    """(patched - corrupted) / (clean - corrupted): 0 where a patch leaves the corrupted run's
    metric, 1 where it restores the clean run's. patched: a tensor of metric values (any shape,
    e.g. patch_residual's); clean, corrupted: numbers or 0-d tensors. ValueError when
    clean == corrupted (nothing to recover) or a value that is not finite, TypeError when
    patched is not a real tensor or clean / corrupted not numbers."""
    clean, corrupted = _metric_number("clean", clean), _metric_number("corrupted", corrupted)
    if not isinstance(patched, Tensor):
        raise TypeError(f"patched must be a tensor of metric values, got {type(patched).__name__}")
    if patched.dtype == torch.bool or patched.dtype.is_complex:
        raise TypeError(f"patched must hold real metric values, got dtype {patched.dtype}")
    if not bool(torch.isfinite(patched).all()):
        raise ValueError("patched holds NaN or infinite values: a patching metric must be finite")
    if clean == corrupted:
        raise ValueError(f"clean and corrupted metrics are equal ({clean}): there is no difference to recover")
    return (patched - corrupted) / (clean - corrupted)


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
    lay, clean, corrupted = _patching_inputs(model, clean_ids, corrupted_ids, metric)
    T = clean.shape[1]
    names = [f"blocks.{i}.hook_resid_pre" for i in range(lay.n_layer)]
    out = torch.empty(lay.n_layer, T)
    with evaluating(model):
        _, cache = model.run_with_cache(clean, names_filter=names)
        for layer, name in enumerate(names):
            for t in range(T):
                def patch(resid: Tensor, hook, t=t) -> Tensor:  # (B, T, C)
                    resid[:, t] = cache[hook.name][:, t]
                    return resid
                logits = model.run_with_hooks(corrupted, fwd_hooks=[(name, patch)]).logits
                out[layer, t] = check_metric_value(metric(logits)).float().cpu()
    return out


def patch_heads(model: torch.nn.Module, clean_ids: Tensor, corrupted_ids: Tensor, metric: Metric) -> Tensor:
    """Activation patching of the heads: (n_layer, n_head), entry [l, h] the metric of the
    corrupted run with head h's output ``blocks.{l}.attn.hook_z[:, :, h]`` replaced by the clean
    run's at every position (the later layers then read the patched head). Wang et al. (2022).
    """
    lay, clean, corrupted = _patching_inputs(model, clean_ids, corrupted_ids, metric)
    names = [f"blocks.{i}.attn.hook_z" for i in range(lay.n_layer)]
    out = torch.empty(lay.n_layer, lay.n_head)
    with evaluating(model):
        _, cache = model.run_with_cache(clean, names_filter=names)
        for layer, name in enumerate(names):
            for h in range(lay.n_head):
                def patch(z: Tensor, hook, h=h) -> Tensor:  # (B, T, nh, hs)
                    z[:, :, h] = cache[hook.name][:, :, h]
                    return z
                logits = model.run_with_hooks(corrupted, fwd_hooks=[(name, patch)]).logits
                out[layer, h] = check_metric_value(metric(logits)).float().cpu()
    return out


# ----------------------------------------------------------------------------- 8. logit lens


def logit_lens(model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """What the model would predict if it stopped after each block: (n_layer + 1, B, T, V).

    Row i decodes ``accumulated_resid``'s row i (the stream before block i; the last row the
    stream after the last block) through the model's own final norm, with the norm's
    statistics of that stream (not frozen from the last layer), and the head. The last row is
    the model's logits. nostalgebraist (2020), "interpreting GPT: the logit lens".
    """
    lay = layout(model)
    ids = check_ids("input_ids", input_ids, lay.vocab_size, model_device(model))
    attention_mask = check_mask(attention_mask, ids)
    names = [f"blocks.{i}.hook_resid_pre" for i in range(lay.n_layer)] + [f"blocks.{lay.n_layer - 1}.hook_resid_post"]
    with evaluating(model):
        _, cache = model.run_with_cache(ids, names_filter=names, attention_mask=attention_mask)
        return lay.unembed(lay.final_norm(accumulated_resid(cache)))  # (n_layer + 1, B, T, V)
