"""The training guide's figures: the repeat probe's second-copy loss over training for some of the
course-model variants of ``induction_runs.json`` (the section "Induction data").

The data is its own function (``induction_runs``, ``probe_curves``), tested in
``mlab_tfs/training/tests/test_figures_data.py``. Regenerate the PNG with
``python -m mlab_tfs.figures training``.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from mlab_tfs.figures import figure

RUNS = Path(__file__).resolve().parent / "induction_runs.json"
# Variants drawn: random repeats alone (a little, a lot), text repeats alone (a little, a lot),
# both (the shipped mix and a larger one).
SHOWN = ("v05", "r5", "t1d1", "t3", "r05t1d1", "r2t2d1")
UNIFORM = math.log(4096)  # nats: a uniform guess over the course model's vocabulary


@functools.lru_cache(maxsize=1)
def induction_runs() -> dict[str, Any]:
    """induction_runs.json: {"note", "variants": [one dict per run: name, repeat_fraction,
    repeat_text_fraction, dropout, held_out, first, second, best, best_head, heads_over_0_3,
    curve], "baseline"}. Curves are lists of log records (step, eval_loss, repeat_loss_first,
    repeat_loss_second); empty for runs whose logs were not kept."""
    return json.loads(RUNS.read_text(encoding="utf-8"))


def probe_curves(names: tuple[str, ...] = SHOWN) -> dict[str, list[tuple[int, float]]]:
    """{variant name: [(step, repeat_loss_second in nats), ...]} from induction_runs.json, in the
    order of ``names``. Raises ValueError for a name the file does not hold or a variant whose
    curve was not kept (v10, v20, v10d1)."""
    variants = {v["name"]: v for v in induction_runs()["variants"]}
    out = {}
    for name in names:
        if name not in variants:
            raise ValueError(f"no variant {name!r} in {RUNS.name}; it holds {sorted(variants)}")
        if not variants[name]["curve"]:
            raise ValueError(f"variant {name!r} has no curve in {RUNS.name} (its log was not kept)")
        out[name] = [(r["step"], r["repeat_loss_second"]) for r in variants[name]["curve"]]
    return out


def variant_label(name: str) -> str:
    """'random 5% + text 10%, dropout 0.1' for a variant of induction_runs.json."""
    v = next(v for v in induction_runs()["variants"] if v["name"] == name)
    parts = [f"{what} {round(100 * v[key])}%" for what, key in (("random", "repeat_fraction"),
                                                              ("text", "repeat_text_fraction")) if v[key]]
    return f"{' + '.join(parts)}, dropout {v['dropout']:g} (best head {v['best']:.2f})"


@figure("induction_probe")
def draw_induction_probe():
    import matplotlib.pyplot as plt

    variants = {v["name"]: v for v in induction_runs()["variants"]}
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for name, points in probe_curves().items():
        style = "o-" if variants[name]["repeat_text_fraction"] else "s--"  # dashed: random repeats alone
        ax.plot(*zip(*points), style, ms=3, lw=1, label=variant_label(name))
    ax.axhline(UNIFORM, color="gray", ls=":", lw=1, label=f"uniform guess, ln 4096 = {UNIFORM:.2f}")
    ax.set(xlabel="training step (64 x 256 tokens each)", ylabel="loss on the 2nd copy (nats/token)",
           title="repeat probe: 16 spans of 40 random tokens, repeated", ylim=(0, 14))
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
