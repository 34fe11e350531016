"""The sampling guide's figures, drawn from the course's Shakespeare GPT-2 and the solution's
decoders: a beam-search tree, and the diversity-quality trade-off of temperature and top-p.

The data of each figure is its own function (``beam_tree``, ``diversity_experiment``,
``distinct_n``), tested in ``mlab_tfs/sampling/tests/test_figures_data.py``. Regenerate the
PNGs with ``python -m mlab_tfs.figures sampling``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mlab_tfs.figures import course_model, figure
from mlab_tfs.inputs import check_int
from mlab_tfs.sampling.given import as_ids, model_device, model_n_positions, model_vocab_size

# The tree's prompt and the experiment's: openings of speeches in the style the model learned.
TREE_PROMPT = "ROMEO:\nO"
PROMPTS = ("ROMEO:\n", "JULIET:\n", "HAMLET:\n", "KING HENRY:\n", "First Citizen:\n", "PORTIA:\n",
           "MACBETH:\n", "OTHELLO:\n")
TEMPERATURES = (0.5, 1.0, 1.5)
TOP_PS = (1.0, 0.9)
NEW_TOKENS = 24


# ---------------------------------------------------------------------------------------
# A beam-search tree
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One of a step's candidates: it extends running beam ``parent`` of the step before
    (an index into that step's kept candidates) by ``token``, whose log-probability is
    ``logprob``; ``score`` is the beam's total log-probability; ``kept`` whether it is among
    the num_beams best, that is a running beam of the next step (or, at the last step, a
    returned hypothesis)."""

    parent: int
    token: int
    logprob: float
    score: float
    kept: bool


@torch.no_grad()
def beam_tree(model, prompt_ids: Sequence[int], num_beams: int = 3, steps: int = 4) -> list[list[Candidate]]:
    """Every step of beam search without eos, written out: per step the 2 * num_beams best
    (beam, token) candidates by total log-probability, best first, the num_beams best of them
    kept. The rule of ``beam_search`` with eos_token_id=None, recomputed from full forwards
    (no cache), so that the tree can be checked against it: the last step's kept candidates
    are beam_search's hypotheses, and score / steps (length_penalty 1) its sequences_scores.

    prompt_ids: one prompt's ids (a list or 1-d tensor, at least one id, each in [0, V));
    num_beams, steps: ints >= 1, prompt + steps within n_positions. Bad arguments: TypeError
    or ValueError naming them. Returns steps lists of 2 * num_beams Candidates.
    """
    num_beams = check_int("num_beams", num_beams, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    prompt = as_ids("prompt_ids", prompt_ids, model_device(model), model_vocab_size(model))
    if len(prompt) == 0:
        raise ValueError("prompt_ids must hold at least one token id, got none")
    limit = model_n_positions(model)
    if limit is not None and len(prompt) + steps > limit:
        raise ValueError(f"prompt_ids ({len(prompt)} tokens) + steps ({steps}) must fit in the model's "
                         f"n_positions={limit}")
    beams = prompt[None]  # (1, T): one beam before the first step
    scores = torch.zeros(1)
    tree = []
    for _ in range(steps):
        log_probs = F.log_softmax(model(beams).logits[:, -1].float(), dim=-1)  # (nb, V)
        V = log_probs.shape[-1]
        total = (log_probs + scores[:, None]).view(-1)
        cand_scores, idx = torch.topk(total, min(2 * num_beams, total.numel()))  # best first
        parents, tokens = idx // V, idx % V
        tree.append([Candidate(int(p), int(t), float(log_probs[p, t]), float(s), i < num_beams)
                     for i, (p, t, s) in enumerate(zip(parents, tokens, cand_scores))])
        keep = slice(0, num_beams)
        beams = torch.cat([beams[parents[keep]], tokens[keep, None]], dim=1)
        scores = cand_scores[keep]
    return tree


def decision_margin(tree: list[list[Candidate]]) -> float:
    """The smallest score gap on which the tree's outcome hangs: at every step between the last
    kept candidate and the first dropped one (which beams run on; their order among themselves
    changes nothing), and at the last step between the best two (the sequence returned first).
    With one beam it is greedy decoding's smallest top-1 / top-2 gap. Rounding that differs
    between CPUs, thread counts, or a padded batch against the prompt alone moves the scores by
    far less than 1e-4 here: above that, the search picks the same tokens everywhere.
    Needs a tree of at least one step whose steps list more candidates than they keep."""
    gaps = []
    for step in tree:
        kept = sum(c.kept for c in step)
        if not 0 < kept < len(step):
            raise ValueError(f"every step must keep some of its candidates and drop some, got {kept} of {len(step)}")
        gaps.append(step[kept - 1].score - step[kept].score)
    if not gaps:
        raise ValueError("tree must hold at least one step")
    return min(*gaps, tree[-1][0].score - tree[-1][1].score)


def tree_hypotheses(prompt_ids: Sequence[int], tree: list[list[Candidate]]) -> list[tuple[list[int], float]]:
    """The kept candidates of the tree's last step as (prompt + new tokens, score / steps),
    best first: what beam_search returns with num_return_sequences=num_beams."""
    kept = [[c for c in step if c.kept] for step in tree]
    prompt = [int(t) for t in prompt_ids]
    out = []
    for c in kept[-1]:
        tokens, node, depth = [], c, len(tree) - 1
        while True:
            tokens.append(node.token)
            if depth == 0:
                break
            depth -= 1
            node = kept[depth][node.parent]
        out.append((prompt + tokens[::-1], c.score / len(tree)))
    return out


@figure("beam_tree")
def draw_beam_tree():
    import matplotlib.pyplot as plt

    model, tok = course_model()
    prompt = tok.encode(TREE_PROMPT)
    tree = beam_tree(model, prompt, num_beams=3, steps=4)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    rows = len(tree[0])

    def y(i):
        return rows - 1 - i

    def label(token):  # a visible space: " more" and "more" are different tokens
        return repr(tok.decode([token]))[1:-1].replace(" ", "\u2423")

    ax.text(0, y(0), repr(TREE_PROMPT)[1:-1], ha="center", va="center", fontsize=8,
            bbox=dict(boxstyle="round", fc="#dde8f5", ec="#3a6ea5"))
    kept_rows = [0]  # rows of the kept candidates of the step before (the prompt: row 0)
    for s, step in enumerate(tree, start=1):
        for i, c in enumerate(step):
            ax.plot([s - 1 + 0.28, s - 0.36], [y(kept_rows[c.parent]), y(i)],
                    color="#3a6ea5" if c.kept else "#c8c8c8", lw=1.2 if c.kept else 0.8, zorder=1)
            ax.text(s, y(i), f"{label(c.token)}\n{c.score:.2f}", ha="center", va="center", fontsize=7.5,
                    color="black" if c.kept else "#8a8a8a", zorder=2,
                    bbox=dict(boxstyle="round", fc="#dde8f5" if c.kept else "white",
                              ec="#3a6ea5" if c.kept else "#c8c8c8"))
        kept_rows = [i for i, c in enumerate(step) if c.kept]
    ax.set_xlim(-0.5, len(tree) + 0.5)
    ax.set_ylim(-0.7, rows - 0.3)
    ax.set_xticks(range(len(tree) + 1), ["prompt"] + [f"step {s}" for s in range(1, len(tree) + 1)])
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title("Beam search, 3 beams, on the course model: each step's 6 best candidates (token, total "
                 "log-prob);\nblue: kept (the 3 best), grey: dropped; \u2423 is a space", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------
# Diversity against quality
# ---------------------------------------------------------------------------------------


def distinct_n(tokens: Sequence[int], n: int = 2) -> float:
    """Distinct-n of one sequence: the number of different n-grams over the number of n-grams,
    in (0, 1]; 1 when no n-gram repeats, small in a repetition loop. A per-sequence variant of
    Li et al. 2016's ("A Diversity-Promoting Objective Function for Neural Conversation
    Models"), which counts the distinct n-grams of all responses together over the number of
    generated tokens.

    tokens: ids (a list, or a 1-d tensor) or any hashable items (words); n: an int >= 1
    (TypeError or ValueError naming n). A sequence shorter than n has no n-gram, and a tensor
    that is not 1-d is no sequence of ids: ValueError naming tokens."""
    n = check_int("n", n, minimum=1)
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be a 1-d sequence, got a tensor of shape {tuple(tokens.shape)}")
        tokens = tokens.tolist()  # ints: 0-d tensors would hash by identity, not value
    tokens = list(tokens)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        raise ValueError(f"tokens must hold at least n={n} items to have an n-gram, got {len(tokens)}")
    return len(set(grams)) / len(grams)


@dataclass(frozen=True)
class DiversityPoint:
    """One decoding setting's samples, measured: distinct-2 averaged over the samples (1 = no
    repeated bigram), and the mean log-probability per new token that the model itself gives
    them at temperature 1, unfiltered (higher = more typical of the model)."""

    setting: str
    temperature: float | None  # None for greedy and beam search
    top_p: float | None
    distinct_2: float
    logprob: float
    samples: tuple[tuple[int, ...], ...]  # the new tokens of each prompt's continuation


@torch.no_grad()
def _mean_logprob(model, ids: torch.Tensor, mask: torch.Tensor, T: int) -> float:
    """Mean log P(token | before) of the tokens after column T, under the model unfiltered."""
    from mlab_tfs.sampling import position_ids_from_mask
    from mlab_tfs.sampling.given import lm_forward

    logits, _ = lm_forward(model, ids, mask, position_ids_from_mask(mask))  # (B, L, V) float32
    lp = F.log_softmax(logits[:, T - 1 : -1], dim=-1).gather(-1, ids[:, T:, None]).squeeze(-1)  # (B, n)
    return float(lp.mean())


class RowTemperatures(torch.nn.Module):
    """The model with row b's logits divided by temperatures[b]: sampling from it at
    temperature 1 with top-p is sampling from the model at temperature t_b with top-p, since
    generate applies the temperature before top-p (transformers' order). It lets one batch
    hold every temperature: one generate call per top-p instead of one per setting."""

    def __init__(self, model, temperatures: torch.Tensor):
        super().__init__()
        self.model, self.config = model, model.config
        self.register_buffer("temperatures", temperatures.float())  # (B,)

    def forward(self, input_ids, past_key_values=None, **kwargs):
        out = self.model(input_ids, past_key_values=past_key_values, **kwargs)
        return _Output(out.logits / self.temperatures[:, None, None], out.past_key_values)  # (B, T, V)


@dataclass
class _Output:
    logits: torch.Tensor
    past_key_values: object


@functools.lru_cache(maxsize=1)
def diversity_experiment() -> tuple[DiversityPoint, ...]:
    """Greedy, beam search (3 beams) and sampling at each of TEMPERATURES x TOP_PS on the course
    model: the 8 PROMPTS, NEW_TOKENS new tokens each (no eos stop). The sampled settings of one
    top-p run as one batch (RowTemperatures), from a generator seeded 0. A few seconds on one
    CPU core, and the same on one machine whatever the thread count. Greedy's and beam search's
    tokens are the same on any CPU (no decision of theirs is closer than 1e-3, see
    decision_margin; a test holds it), so their distinct-2 is exact everywhere; a sampled token
    could in principle change where rounding moves a draw across a boundary, which is why the
    tests hold the sampled settings to orderings with wide margins, not to their values."""
    from mlab_tfs.sampling import beam_search, generate, left_pad

    model, tok = course_model()
    pad = tok.eos_token_id
    ids, mask = left_pad([tok.encode(p) for p in PROMPTS], pad)
    B, T = ids.shape
    full_mask = torch.cat([mask, torch.ones(B, NEW_TOKENS, dtype=mask.dtype)], dim=1)

    def point(setting, temperature, top_p, out):
        samples = tuple(tuple(row) for row in out[:, T:].tolist())
        d2 = sum(distinct_n(row, 2) for row in samples) / len(samples)
        return DiversityPoint(setting, temperature, top_p, d2, _mean_logprob(model, out, full_mask, T), samples)

    points = [point("greedy", None, None, generate(model, ids, mask, NEW_TOKENS, pad_token_id=pad))]
    beams = beam_search(model, ids, num_beams=3, max_new_tokens=NEW_TOKENS, attention_mask=mask, pad_token_id=pad)
    points.append(point("beam search (3)", None, None, beams.sequences))
    n = len(TEMPERATURES)
    tempered = RowTemperatures(model, torch.tensor(TEMPERATURES).repeat_interleave(B))  # (n * B,)
    for top_p in TOP_PS:
        out = generate(tempered, ids.repeat(n, 1), mask.repeat(n, 1), NEW_TOKENS, do_sample=True, top_p=top_p,
                       pad_token_id=pad, generator=torch.Generator().manual_seed(0))  # (n * B, T + NEW_TOKENS)
        for i, t in enumerate(TEMPERATURES):
            points.append(point(f"T={t}, top-p={top_p}", t, top_p, out[i * B : (i + 1) * B]))
    return tuple(points)


@figure("diversity")
def draw_diversity():
    import matplotlib.pyplot as plt

    points = diversity_experiment()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.4))
    for top_p, style in zip(TOP_PS, ("o-", "s--")):
        row = [p for p in points if p.top_p == top_p]
        a.plot([p.temperature for p in row], [p.distinct_2 for p in row], style, label=f"sampling, top-p {top_p}")
        b.plot([p.temperature for p in row], [p.logprob for p in row], style, label=f"sampling, top-p {top_p}")
    for p, color in zip(points[:2], ("#b03030", "#6a3d9a")):
        a.axhline(p.distinct_2, color=color, ls=":", label=p.setting)
        b.axhline(p.logprob, color=color, ls=":", label=p.setting)
    a.set(xlabel="temperature", ylabel="distinct-2 (mean over samples)", title="diversity", ylim=(0.7, 1.02))
    b.set(xlabel="temperature", ylabel="mean log-prob per token", title="likelihood under the model (T=1)")
    a.legend(fontsize=7, loc="lower right")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{len(PROMPTS)} Shakespeare prompts x {NEW_TOKENS} new tokens per setting, course model",
                 fontsize=9)
    fig.tight_layout()
    return fig
