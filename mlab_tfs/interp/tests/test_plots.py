"""Exercise 4: attention patterns drawn as PNGs; what each heat map is drawn from is read by
recording matplotlib's imshow calls. Also the given drawings (patching heat maps, HTML)."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.interp.mistakes import MISTAKES
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.mistakes import likely

from .reference import GPT2, random_ids

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch):
    """The arrays passed to Axes.imshow (matshow calls it too) while the test runs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    arrays = []
    original = Axes.imshow

    def imshow(self, X, *args, **kwargs):
        arrays.append(torch.as_tensor(X.__array__() if hasattr(X, "__array__") else X, dtype=torch.float32))
        return original(self, X, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", imshow)
    return arrays


def _pattern(models):
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size, (1, 6), seed=11)
    _, cache = ours.run_with_cache(ids)
    return cache["blocks.1.attn.hook_pattern"][0], [f"t{i}" for i in ids[0].tolist()]  # (nh, T, T)


@pytest.mark.exercise("attention_plots")
def test_one_head_is_drawn_as_its_pattern(interp, models, drawn, tmp_path):
    import matplotlib.pyplot as plt

    pattern, tokens = _pattern(models)
    open_before = set(plt.get_fignums())
    path = interp.plot_attention(pattern[2], tokens, tmp_path / "head.png", title="layer 1, head 2")
    assert str(path) == str(tmp_path / "head.png") and (tmp_path / "head.png").read_bytes()[:8] == PNG
    assert len(drawn) == 1, f"one head should be one imshow, got {len(drawn)}"
    assert_close(drawn[0], pattern[2], name="the drawn (T, S) array",
                 mistakes={MISTAKES["pattern_transposed"]: pattern[2].T})
    assert set(plt.get_fignums()) == open_before, likely(MISTAKES["figure_left_open"])
    assert [p.name for p in tmp_path.iterdir()] == ["head.png"]  # no partial file left beside it


@pytest.mark.exercise("attention_plots")
def test_every_head_is_drawn_in_a_grid(interp, models, drawn, tmp_path):
    pattern, tokens = _pattern(models)
    interp.plot_attention(pattern, tokens, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:8] == PNG
    assert len(drawn) == pattern.shape[0], (f"a (4, T, S) pattern should be four heat maps, got {len(drawn)}"
                                            + ("\n" + likely(MISTAKES["only_first_head"]) if len(drawn) == 1 else ""))
    for h, array in enumerate(drawn):
        assert_close(array, pattern[h], name=f"the drawn array of head {h}",
                     mistakes={MISTAKES["pattern_transposed"]: pattern[h].T})


@pytest.mark.exercise("attention_plots")
def test_plot_attention_refuses_what_it_cannot_draw(interp, models, tmp_path):
    pattern, tokens = _pattern(models)
    with pytest.raises(ValueError, match="tokens"):
        interp.plot_attention(pattern, tokens[:-1], tmp_path / "a.png")
    with pytest.raises(ValueError, match="pattern"):
        interp.plot_attention(pattern[None], tokens, tmp_path / "a.png")
    with pytest.raises(ValueError, match="pattern"):
        interp.plot_attention(pattern[0, 0], tokens, tmp_path / "a.png")
    with pytest.raises(FileNotFoundError):
        interp.plot_attention(pattern, tokens, tmp_path / "missing" / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_patching_writes_a_heat_map(interp, drawn, tmp_path):
    result = torch.tensor([[0.0, 0.25, 1.0], [0.5, -0.5, 0.0]])
    path = interp.plot_patching(result, tmp_path / "patch.png", title="recovered", labels=["a", "b", "c"])
    assert path.read_bytes()[:8] == PNG
    assert len(drawn) == 1 and torch.equal(drawn[0], result)
    with pytest.raises(ValueError, match="labels"):
        interp.plot_patching(result, tmp_path / "p.png", labels=["a"])
    with pytest.raises(ValueError, match="result"):
        interp.plot_patching(result[0], tmp_path / "p.png")


def test_attention_html_names_every_token(interp, models, tmp_path):
    pytest.importorskip("circuitsvis")
    pattern, tokens = _pattern(models)
    path = interp.attention_html(pattern, tokens, tmp_path / "a.html")
    text = path.read_text(encoding="utf-8")
    assert all(t in text for t in tokens) and "<" in text
    with pytest.raises(ValueError, match="tokens"):
        interp.attention_html(pattern, tokens[:2], tmp_path / "b.html")


