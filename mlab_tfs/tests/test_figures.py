"""The guides' figures: every embedded PNG is drawn by a registered figure of the course's own
code (``mlab_tfs/<part>/figures.py``), every registered figure is embedded, and the stored PNG is
the picture the code draws today (same size; regenerate with ``python -m mlab_tfs.figures``)."""

from __future__ import annotations

import io
import re

import pytest

from mlab_tfs import figures as figs

# ![alt](figures/name.png), or another part's: ![alt](../gpt2/figures/name.png)
EMBED = re.compile(r"!\[[^\]]*\]\((?:\.\./(\w+)/)?(figures/[^)\s]+\.png)\)")


def _embeds(part: str) -> set[tuple[str, str]]:
    """{(owning part, 'figures/name.png')} embedded in part's guide."""
    return {(owner or part, ref) for owner, ref in EMBED.findall(_guide(part))}


def _guide(part: str) -> str:
    path = figs.PACKAGE / part / "GUIDE.md"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _all():
    return [f for part in figs.PARTS for f in figs.figures(part)]


def _size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


@pytest.mark.parametrize("part", figs.PARTS)
def test_every_embedded_figure_is_registered_and_written(part):
    for owner, ref in _embeds(part):
        registered = {f"figures/{f.name}.png" for f in figs.figures(owner)}
        assert ref in registered, (f"mlab_tfs/{part}/GUIDE.md embeds {owner}/{ref}, which no @figure in "
                                   f"mlab_tfs/{owner}/figures.py draws")
        assert (figs.PACKAGE / owner / ref).is_file(), f"{owner}/{ref} is missing: run python -m mlab_tfs.figures {owner}"


@pytest.mark.parametrize("part", figs.PARTS)
def test_every_registered_figure_is_embedded(part):
    embedded = set().union(*(_embeds(p) for p in figs.PARTS))
    for f in figs.figures(part):
        assert (part, f"figures/{f.name}.png") in embedded, f"{part} figure {f.name!r} is drawn but GUIDE.md never shows it"


@pytest.mark.parametrize("fig", _all(), ids=lambda f: f"{f.part}-{f.name}")
def test_stored_figure_is_what_the_code_draws(fig):
    stored = fig.path.read_bytes()
    drawn = figs.render(fig)
    assert _size(drawn) == _size(stored), (
        f"{fig.part}/figures/{fig.name}.png is stale ({_size(stored)} stored, {_size(drawn)} drawn now): "
        f"run python -m mlab_tfs.figures {fig.part} --only {fig.name}")


def test_names_and_parts_are_checked():
    with pytest.raises(ValueError, match="part must be one of"):
        figs.figures("gpt3")
    with pytest.raises(ValueError, match="figure name"):
        figs.figure("a b")
    with pytest.raises(SystemExit) as exit_:
        figs.main(["gpt3"])
    assert exit_.value.code == 2
