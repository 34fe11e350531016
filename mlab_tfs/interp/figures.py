"""The interpretability guide's figures, drawn from the course's own code on the course model
(``python -m mlab_tfs.figures interp``).

The data behind each picture and every number the guide gives about the course model is a
function of its own here (``induction_tokens``, ``course_induction_scores``,
``previous_token_scores``, ``repeat_losses``, ``name_example``, ``name_patching``, ``name_head_patching``,
``lens_losses``), computed with the solution's tools and tested in
``mlab_tfs/interp/tests/test_guide_facts.py``; the ``@figure`` functions only draw it. Two of
the pictures are drawn by the part's own ``plot_attention`` and ``plot_patching``, so they are
the PNGs a learner's call makes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from mlab_tfs.figures import course_model, figure

Tensor = torch.Tensor

# The induction test of the guide: [r, r] with r 40 random tokens, 8 sequences, seed 0 (the
# course-model test's tokens).
L, BATCH, SEED = 40, 8, 0
# The attention picture: a shorter [r, r], so that its tokens can be read.
PICTURE_L = 12
# The course model's strongest induction head (course_induction_scores) and the heads scoring
# at least 0.3, the bar for "has induction heads".
INDUCTION_HEAD = (5, 2)
THRESHOLD = 0.3

# A name the model can only take from earlier in the text: Antonio is no character of Hamlet.
# The corrupted prompt names Claudio instead, one token as well.
NAME_PROMPT = "HAMLET: Good Antonio, come hither.\nHORATIO: Here, sweet lord.\nHAMLET: Good"
NAME, OTHER = " Antonio", " Claudio"


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def induction_tokens(seq_len: int = L, batch: int = BATCH, seed: int = SEED) -> Tensor:
    """[r, r] for the course model's vocabulary: (batch, 2 * seq_len) long."""
    from mlab_tfs.interp import repeated_tokens

    model, _ = course_model()
    return repeated_tokens(model.config.vocab_size, seq_len, batch=batch, seed=seed)


@functools.lru_cache(maxsize=1)
def course_induction_scores() -> Tensor:
    """(n_layer, nh): the solution's induction_scores of the course model on induction_tokens()."""
    from mlab_tfs.interp import induction_scores

    model, _ = course_model()
    return induction_scores(model, induction_tokens())


def previous_token_scores(model: torch.nn.Module, tokens: Tensor) -> Tensor:
    """(n_layer, nh) float32: each head's mean attention from query t to key t - 1, over the
    batch and the queries t = 1 .. T - 1 (a previous-token head scores near 1)."""
    T = tokens.shape[1]
    names = [n for n in model.hook_dict if n.endswith(".attn.hook_pattern")]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    t = torch.arange(1, T)
    return torch.stack([cache[name][:, :, t, t - 1].float().mean(dim=(0, 2)) for name in names])


def uniform_induction_score(seq_len: int = L) -> float:
    """What a head spreading its weight evenly over the visible keys scores: the mean of
    1 / (t + 1) over the queries t = L .. 2L - 1."""
    return sum(1 / (t + 1) for t in range(seq_len, 2 * seq_len)) / seq_len


def zero_heads_hooks(heads: dict[int, list[int]]) -> list:
    """fwd_hooks that zero the listed heads' hook_z: {layer: [head, ...]}."""
    def zero(chosen):
        def hook(z: Tensor, hook) -> Tensor:  # (B, T, nh, hs)
            z[:, :, chosen] = 0.0
            return z
        return hook
    return [(f"blocks.{layer}.attn.hook_z", zero(list(chosen))) for layer, chosen in heads.items()]


def halves(loss: Tensor, seq_len: int = L) -> tuple[float, float]:
    """Mean loss of per_token_loss's (B, 2L - 1) on the first half's predictions (entries
    0 .. L - 2) and on the repeat's that copying can make (entries L .. 2L - 2); entry L - 1
    predicts the repeat's first token, which nothing announces."""
    return float(loss[:, :seq_len - 1].mean()), float(loss[:, seq_len:].mean())


def repeat_losses(heads: dict[int, list[int]] | None = None) -> tuple[float, float]:
    """(first half, repeat) mean next-token loss in nats of the course model on
    induction_tokens(), with the listed heads zeroed ({layer: [head, ...]}; None: none)."""
    from mlab_tfs.interp import per_token_loss

    model, _ = course_model()
    tokens = induction_tokens()
    with contextlib.ExitStack() as stack:
        if heads:
            stack.enter_context(model.hooks(zero_heads_hooks(heads)))
        return halves(per_token_loss(model, tokens))


def ablated_induction_scores(heads: dict[int, list[int]]) -> Tensor:
    """(n_layer, nh) induction scores of the course model with the listed heads zeroed."""
    from mlab_tfs.interp import induction_scores

    model, _ = course_model()
    with model.hooks(zero_heads_hooks(heads)):
        return induction_scores(model, induction_tokens())


def name_example() -> dict:
    """The clean and corrupted prompts of the patching and attribution examples: {"clean",
    "corrupted": (1, T) ids, "correct", "wrong": token ids, "tokens": the T strings}."""
    _, tok = course_model()
    clean = tok.encode(NAME_PROMPT)
    corrupted = tok.encode(NAME_PROMPT.replace(NAME.strip(), OTHER.strip()))
    (correct,), (wrong,) = tok.encode(NAME), tok.encode(OTHER)
    return {"clean": torch.tensor([clean]), "corrupted": torch.tensor([corrupted]), "correct": correct,
            "wrong": wrong, "tokens": [tok.decode([i]) for i in clean]}


def _name_metric():
    """(metric, clean value, corrupted value) of name_example(): the logit difference
    Antonio − Claudio at the last position."""
    from mlab_tfs.interp import logit_diff_metric

    model, _ = course_model()
    ex = name_example()
    metric = logit_diff_metric(ex["correct"], ex["wrong"])
    with torch.no_grad():
        return metric, metric(model(ex["clean"]).logits), metric(model(ex["corrupted"]).logits)


@functools.lru_cache(maxsize=1)
def name_patching() -> dict[str, Tensor]:
    """Activation patching of the residual stream on name_example() (the figure's data):
    {"clean", "corrupted": 0-d metrics, "resid": (n_layer, T) recovered fractions from
    patch_residual}."""
    from mlab_tfs.interp import patch_residual, recovered_fraction

    model, _ = course_model()
    ex = name_example()
    metric, clean, corrupted = _name_metric()
    resid = patch_residual(model, ex["clean"], ex["corrupted"], metric)
    return {"clean": clean, "corrupted": corrupted, "resid": recovered_fraction(resid, clean, corrupted)}


def name_head_patching() -> Tensor:
    """(n_layer, nh): the recovered fractions of patch_heads on name_example()."""
    from mlab_tfs.interp import patch_heads, recovered_fraction

    model, _ = course_model()
    ex = name_example()
    metric, clean, corrupted = _name_metric()
    return recovered_fraction(patch_heads(model, ex["clean"], ex["corrupted"], metric), clean, corrupted)


def lens_loss(model: torch.nn.Module, tokens: Tensor) -> Tensor:
    """(n_layer + 1, B, T - 1): the next-token loss in nats of each row of logit_lens."""
    from mlab_tfs.interp import logit_lens

    logp = logit_lens(model, tokens)[:, :, :-1].float().log_softmax(-1)  # (n_layer + 1, B, T - 1, V)
    target = tokens[None, :, 1:, None].expand(logp.shape[0], -1, -1, 1)
    return -logp.gather(-1, target)[..., 0]


@functools.lru_cache(maxsize=1)
def lens_losses() -> dict[str, Tensor]:
    """The logit lens's mean next-token loss per row (n_layer + 1,), in nats, on 200 tokens of
    Romeo and Juliet ("text", mlab_tfs.gpt2.figures.passage) and on induction_tokens()'
    first half and repeat ("first", "repeat", split as ``halves``)."""
    from mlab_tfs.gpt2.figures import passage

    model, tok = course_model()
    text = torch.tensor([tok.encode(passage(200))])
    rep = lens_loss(model, induction_tokens())
    return {"text": lens_loss(model, text).mean(dim=(1, 2)), "first": rep[:, :, :L - 1].mean(dim=(1, 2)),
            "repeat": rep[:, :, L:].mean(dim=(1, 2))}


@contextlib.contextmanager
def _kept_figure(module) -> Iterator[None]:
    """While inside, ``module.save_figure`` returns the figure instead of writing it: the
    drawing functions of the part then hand back what they would have saved."""
    original = module.save_figure
    module.save_figure = lambda fig, path: fig
    try:
        yield
    finally:
        module.save_figure = original


def _label(token: str) -> str:
    return repr(token)[1:-1]


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------


@figure("induction_attention")
def draw_induction_attention():
    """The strongest induction head's pattern on a short [r, r], drawn by plot_attention."""
    from mlab_tfs.interp import given, solution

    model, tok = course_model()
    tokens = induction_tokens(PICTURE_L, batch=1)
    layer, head = INDUCTION_HEAD
    name = f"blocks.{layer}.attn.hook_pattern"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=name)
    labels = [_label(tok.decode([i])) for i in tokens[0].tolist()]
    with _kept_figure(solution), _kept_figure(given):
        return solution.plot_attention(cache[name][0, head], labels, "unused.png",
                                       title=f"layer {layer}, head {head} on [r, r] (r: {PICTURE_L} random tokens)")


@figure("induction_scores")
def draw_induction_scores():
    """Induction and previous-token scores of every head of the course model."""
    import matplotlib.pyplot as plt

    model, _ = course_model()
    panels = [("induction score (t → t − L + 1)", course_induction_scores()),
              ("previous-token score (t → t − 1)", previous_token_scores(model, induction_tokens()))]
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for ax, (title, grid) in zip(axes, panels):
        ax.imshow(grid.numpy(), cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in zip(torch.cartesian_prod(torch.arange(grid.shape[0]), torch.arange(grid.shape[1])).tolist(),
                             grid.flatten().tolist()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5, color="white" if v > 0.5 else "black")
        ax.set_xticks(range(grid.shape[1]))
        ax.set_yticks(range(grid.shape[0]))
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"course model on [r, r], L = {L}, {BATCH} sequences (seed {SEED})", fontsize=9)
    fig.tight_layout()
    return fig


@figure("name_patching")
def draw_name_patching():
    """Recovered fraction of the residual-stream patching on the name example, by plot_patching."""
    from mlab_tfs.interp import given

    ex = name_example()
    result = name_patching()["resid"]
    with _kept_figure(given):
        return given.plot_patching(result, "unused.png", labels=[_label(t) for t in ex["tokens"]],
                                   title="recovered fraction of logit(Antonio) − logit(Claudio), "
                                         "hook_resid_pre patched clean → corrupted")


@figure("logit_lens")
def draw_logit_lens():
    """The logit lens's loss after each block, on text and on the two halves of [r, r]."""
    import matplotlib.pyplot as plt

    losses = lens_losses()
    rows = len(losses["text"])
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    names = {"text": "Romeo and Juliet (200 tokens)", "first": "[r, r]: first half", "repeat": "[r, r]: repeat"}
    for key, style in (("text", "o-"), ("first", "s--"), ("repeat", "^-")):
        ax.plot(range(rows), losses[key].numpy(), style, ms=4, label=names[key])
    ax.axhline(torch.log(torch.tensor(4096.0)).item(), color="gray", ls=":", lw=1)
    ax.text(rows - 1, 8.6, "uniform: ln 4096", ha="right", fontsize=7, color="gray")
    ax.set_xticks(range(rows), ["embed"] + [f"after {i}" for i in range(rows - 1)], fontsize=7)
    ax.set_ylabel("next-token loss (nats)", fontsize=8)
    ax.set_ylim(0, 16)
    ax.set_xlabel("stream decoded (the last is the model's output)", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title("logit lens on the course model (the embedding row is off the scale, above 23)", fontsize=9)
    fig.tight_layout()
    return fig
