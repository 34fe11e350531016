"""`mlab-tfs interp attention`: the files it writes hold the pattern of the layer and head asked
for, on the course model or a GPT-2 or Llama folder; bad input is one line and exit status 2,
and leaves nothing written."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from mlab_tfs.assets import course_model_path
from mlab_tfs.cli import main
from mlab_tfs.interp import attention_html, plot_attention
from mlab_tfs.testing import tiny
from mlab_tfs.tests.test_cli import one_line_error
from mlab_tfs.training.commands import load_model_folder

TEXT = "ROMEO: But soft, what light"
PROG = "mlab-tfs interp attention"


def run(capsys, *argv: str) -> list[str]:
    """The command's printed lines; it must succeed."""
    capsys.readouterr()
    assert main(["interp", "attention", *argv]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out.splitlines()


def pattern_of(folder: Path | None, text: str, layer: int) -> tuple[torch.Tensor, list[str]]:
    """(layer's pattern (nh, T, T), the tokens as strings), computed here from run_with_cache."""
    model, tok = load_model_folder(folder)
    ids = tok.encode(text)
    name = f"blocks.{layer}.attn.hook_pattern"
    with torch.no_grad():
        _, cache = model.eval().run_with_cache(torch.tensor([ids]), names_filter=name)
    return cache[name][0], [tok.decode([i]) for i in ids]


def png(path: Path):
    import matplotlib.image

    return matplotlib.image.imread(str(path))  # (height, width, RGBA) floats


def without_ids(html: str) -> str:
    return re.sub(r"circuits-vis-[0-9a-f-]+", "circuits-vis-ID", html)  # each view gets a random element id


@pytest.mark.parametrize("head", [None, 4])
def test_attention_writes_the_layers_pattern(capsys, tmp_path, head):
    """The PNG is plot_attention's picture of the pattern read here from run_with_cache, pixel
    for pixel (every head in a grid, or the one head); the HTML is attention_html's view of
    the same pattern and holds every token."""
    out = tmp_path / "pictures" / "made"
    argv = [TEXT, "--layer", "1", "--out", str(out)] + (["--head", str(head)] if head is not None else [])
    lines = run(capsys, *argv)
    assert lines == [str(out / "attention_L1.png"), str(out / "attention_L1.html")]

    pattern, tokens = pattern_of(None, TEXT, 1)
    assert tokens[:6] == ["RO", "M", "E", "O", ":", " But"] and len(tokens) == 10
    title = "attention, layer 1, " + ("heads 0-7" if head is None else f"head {head}")
    drawn = pattern if head is None else pattern[head]
    expected = plot_attention(drawn, tokens, tmp_path / "expected.png", title=title)
    picture, reference = png(out / "attention_L1.png"), png(expected)
    assert picture.shape == reference.shape and picture.shape[0] >= 100 and picture.shape[2] in (3, 4)
    assert bool((picture == reference).all())
    other_layer = plot_attention(pattern_of(None, TEXT, 0)[0] if head is None else pattern_of(None, TEXT, 0)[0][head],
                                 tokens, tmp_path / "layer0.png", title=title)
    assert png(other_layer).shape != picture.shape or not bool((png(other_layer) == picture).all())

    html = (out / "attention_L1.html").read_text(encoding="utf-8")
    for token in tokens:
        assert json.dumps(token) in html, token
    reference_html = attention_html(drawn, tokens, tmp_path / "expected.html").read_text(encoding="utf-8")
    assert without_ids(html) == without_ids(reference_html)


def test_the_single_head_and_the_grid_differ(capsys, tmp_path):
    run(capsys, TEXT, "--layer", "2", "--out", str(tmp_path / "all"))
    run(capsys, TEXT, "--layer", "2", "--head", "0", "--out", str(tmp_path / "one"))
    grid, one = png(tmp_path / "all" / "attention_L2.png"), png(tmp_path / "one" / "attention_L2.png")
    assert grid.shape != one.shape or not bool((grid == one).all())


def _with_course_vocabulary(folder: Path) -> Path:
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(course_model_path() / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """A tiny random GPT-2 and Llama with the course model's 4,096-token vocabulary."""
    root = tmp_path_factory.mktemp("interp-cli")
    gpt2 = tiny.gpt2_checkpoint(root / "gpt2", "base", vocab_size=4096, n_positions=32, bos_token_id=4095,
                                eos_token_id=4095)
    llama = tiny.llama_checkpoint(root / "llama", "llama/gqa", vocab_size=4096, pad_token_id=None)
    return {"gpt2": _with_course_vocabulary(gpt2), "llama": _with_course_vocabulary(llama)}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_attention_reads_a_model_folder(capsys, tmp_path, model_folders, arch):
    """--model: a GPT-2 or a Llama folder (by its model_type), with its own tokenizer."""
    folder = model_folders[arch]
    lines = run(capsys, TEXT, "--layer", "1", "--head", "3", "--model", str(folder), "--out", str(tmp_path))
    assert lines[0] == str(tmp_path / "attention_L1.png")
    pattern, tokens = pattern_of(folder, TEXT, 1)
    assert pattern.shape == (4, 10, 10)
    expected = plot_attention(pattern[3], tokens, tmp_path / "expected.png", title="attention, layer 1, head 3")
    assert bool((png(tmp_path / "attention_L1.png") == png(expected)).all())


def test_without_circuitsvis_only_the_png(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "circuitsvis", None)  # find_spec and import both see it missing
    lines = run(capsys, TEXT, "--layer", "0", "--out", str(tmp_path))
    assert lines == ["no HTML view: circuitsvis is not installed (pip install -e '.[interp]')",
                     str(tmp_path / "attention_L0.png")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention_L0.png"]


def test_the_default_folder_is_interp_out(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = run(capsys, "To be", "--layer", "5", "--head", "7")
    assert lines[0] == str(Path("interp_out") / "attention_L5.png")
    assert (tmp_path / "interp_out" / "attention_L5.png").is_file()


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("argv, message", [
    ([TEXT, "--layer", "6"], "--layer 6 is out of range: the model has 6 layers (0 to 5)"),
    ([TEXT, "--layer", "60"], "--layer 60 is out of range: the model has 6 layers (0 to 5)"),
    ([TEXT, "--layer=-1"], "argument --layer: expected an integer in [0, inf), got '-1'"),
    ([TEXT, "--layer", "1.5"], "argument --layer: expected an integer in [0, inf), got '1.5'"),
    ([TEXT], "the following arguments are required: --layer"),
    ([TEXT, "--layer", "0", "--head", "8"], "--head 8 is out of range: layer 0 has 8 heads (0 to 7)"),
    ([TEXT, "--layer", "0", "--head=-1"], "argument --head: expected an integer in [0, inf), got '-1'"),
    (["", "--layer", "0"], "the text must not be empty: the attention pattern is over its tokens"),
    (["--layer", "0"], "the following arguments are required: text"),
])
def test_bad_input_is_one_line(capsys, tmp_path, argv, message):
    out = tmp_path / "out"
    line = one_line_error(capsys, ["interp", "attention", *argv, "--out", str(out)])
    assert line.startswith(f"{PROG}: error: {message}"), line
    assert not out.exists()  # refused before anything was written


def test_a_text_longer_than_the_context_is_named(capsys, tmp_path):
    line = one_line_error(capsys, ["interp", "attention", "a" * 1200, "--layer", "0", "--out", str(tmp_path / "o")])
    tokens = len(load_model_folder(None)[1].encode("a" * 1200))
    assert tokens > 256
    assert line == f"{PROG}: error: the text is {tokens} tokens; the model reads at most 256: give a shorter text"


def test_bad_folders_are_one_line(capsys, tmp_path):
    missing = tmp_path / "none"
    line = one_line_error(capsys, ["interp", "attention", TEXT, "--layer", "0", "--model", str(missing)])
    assert line == f"{PROG}: error: --model: no folder {missing}"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    line = one_line_error(capsys, ["interp", "attention", TEXT, "--layer", "0", "--model", str(tmp_path / "m")])
    assert line.startswith(f"{PROG}: error: --model: {tmp_path / 'm'} lacks model.safetensors, vocab.json, merges.txt")
    (tmp_path / "file").write_text("")
    line = one_line_error(capsys, ["interp", "attention", TEXT, "--layer", "0", "--out", str(tmp_path / "file")])
    assert line == f"{PROG}: error: --out {tmp_path / 'file'} is a file; it must name a folder (made if missing)"


def test_interp_needs_a_command(capsys):
    line = one_line_error(capsys, ["interp"])
    assert line == "mlab-tfs interp: error: the following arguments are required: COMMAND"


def test_an_out_folder_that_cannot_be_made_is_named(capsys, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    line = one_line_error(capsys, ["interp", "attention", TEXT, "--layer", "0", "--out",
                                   str(tmp_path / "file" / "sub")])
    assert "--out" in line and "cannot make the folder" in line and "sub" in line, line
