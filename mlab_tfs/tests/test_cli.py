"""`mlab-tfs`: a user error is one line on stderr and exit status 2 for every command; a bug
keeps its traceback; --debug / MLAB_TFS_DEBUG=1 show the traceback of user errors too."""

from __future__ import annotations

import pytest

from mlab_tfs.cli import main


def one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["nope"], "mlab-tfs: error: argument command: invalid choice: 'nope'"),
    (["check", "nopart"], "mlab-tfs check: error: unknown part nopart; the parts are "),
    (["sample", "-n", "0"], "mlab-tfs sample: error: argument -n: expected an integer in [1, inf), got '0'"),
    (["sample", "--max-new-tokens", "x"], "mlab-tfs sample: error: argument --max-new-tokens: expected an integer"),
    (["sample", "--temperature", "nan"], "mlab-tfs sample: error: argument --temperature: expected a finite number in (0, inf), got 'nan'"),
    (["sample", "--temperature=-1"], "mlab-tfs sample: error: argument --temperature: expected a finite number in (0, inf), got '-1'"),
    (["sample", "--top-p", "1.5"], "mlab-tfs sample: error: argument --top-p: expected a finite number in (0, 1], got '1.5'"),
    (["sample", "--top-k=-1"], "mlab-tfs sample: error: argument --top-k: expected an integer in [0, inf), got '-1'"),
    (["sample", "--seed=-1"], "mlab-tfs sample: error: argument --seed: expected an integer in [0, "),
    (["filter-sample", "-n", "0"], "mlab-tfs filter-sample: error: argument -n: expected an integer in [1, inf), got '0'"),
    (["filter-sample", "--top-p", "0"], "mlab-tfs filter-sample: error: argument --top-p: expected a finite number in (0, 1], got '0'"),
    (["filter-sample", "--temperature", "inf"], "mlab-tfs filter-sample: error: argument --temperature: expected a finite number"),
    (["filter-sample", "--prompt", ""], "mlab-tfs filter-sample: error: --prompt must not be empty"),
    (["filter-sample", "--bad", ""], "mlab-tfs filter-sample: error: --bad must not be empty"),
    (["demo", "bert", "-k", "0", "query"], "mlab-tfs demo bert: error: argument -k: expected an integer in [1, inf), got '0'"),
    (["demo", "bert"], "mlab-tfs demo bert: error: the following arguments are required: QUERY"),
    (["train", "--lr", "nan"], "mlab-tfs train: error: bad settings: lr must be a finite number, got nan"),
    (["train", "--lr", "abc"], "mlab-tfs train: error: argument --lr: invalid float value: 'abc'"),
    (["train", "--config", "missing.toml"], "mlab-tfs train: error: config file missing.toml does not exist"),
    (["train", "--config", ""], "mlab-tfs train: error: config file must be a path to a .toml or .json file, got ''"),
    (["train", "--corpus", ""], "mlab-tfs train: error: bad settings: corpus paths must not be empty strings, got ['']"),
    (["train", "--learning-rate", "3"], "mlab-tfs train: error: unrecognized arguments: --learning-rate 3"),
    (["sample", "a", "b"], "mlab-tfs sample: error: unrecognized arguments: b"),
    (["check", "--bogus"], "mlab-tfs check: error: unrecognized arguments: --bogus"),
])
def test_a_user_error_is_one_line_and_status_2(capsys, argv, expected):
    assert one_line_error(capsys, argv).startswith(expected)


def test_errors_raised_while_a_command_runs(capsys, tmp_path):
    line = one_line_error(capsys, ["sample", "--model", str(tmp_path / "none")])
    assert line == f"mlab-tfs sample: error: --model: no folder {tmp_path / 'none'}"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    line = one_line_error(capsys, ["sample", "--model", str(tmp_path / "m")])
    assert line.endswith("lacks model.safetensors, vocab.json, merges.txt (an `mlab-tfs train` run writes them to <out>/model)")
    line = one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), "--resume"])
    assert line == f"mlab-tfs train: error: --resume: no checkpoint in {tmp_path / 'run'} (no {tmp_path / 'run' / 'checkpoint' / 'state.pt'})"
    assert not (tmp_path / "run").exists()  # refused without creating the folder
    line = one_line_error(capsys, ["train", "--config", str(tmp_path)])
    assert line == f"mlab-tfs train: error: config file {tmp_path} is a folder, not a .toml or .json file"
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = [")
    assert one_line_error(capsys, ["train", "--config", str(bad)]).startswith(
        f"mlab-tfs train: error: config file {bad} is not valid TOML: ")


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_debug_shows_the_traceback(tmp_path, monkeypatch, where):
    argv = ["sample", "--model", str(tmp_path / "none")]
    if where == "before":
        argv = ["--debug", *argv]
    elif where == "after":
        argv = [*argv, "--debug"]
    else:
        monkeypatch.setenv("MLAB_TFS_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="--model: no folder"):
        main(argv)


@pytest.mark.parametrize("value, shows", [("1", True), ("true", True), ("YES", True), ("on", True),
                                          ("0", False), ("false", False), ("no", False), ("off", False), ("", False)])
def test_debug_variable_reads_its_value(tmp_path, monkeypatch, capsys, value, shows):
    """MLAB_TFS_DEBUG=false means off, not "set, so on"."""
    monkeypatch.setenv("MLAB_TFS_DEBUG", value)
    argv = ["sample", "--model", str(tmp_path / "none")]
    if shows:
        with pytest.raises(FileNotFoundError, match="--model: no folder"):
            main(argv)
    else:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_a_bug_keeps_its_traceback_and_ctrl_c_is_one_line(monkeypatch, capsys):
    import mlab_tfs.training.commands as commands

    def broken(args):
        raise RuntimeError("an internal mistake")

    monkeypatch.setattr(commands, "_sample", broken)
    with pytest.raises(RuntimeError, match="an internal mistake"):
        main(["sample"])

    def too_big(args):
        raise MemoryError

    monkeypatch.setattr(commands, "_sample", too_big)
    assert one_line_error(capsys, ["sample"]) == "mlab-tfs sample: error: out of memory (MemoryError); ask for less"

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "_sample", interrupted)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["sample"])
    assert e.value.code == 130 and capsys.readouterr().err == "mlab-tfs sample: interrupted\n"


def test_sample_refuses_a_tokenizer_that_does_not_fit_the_model(capsys, tmp_path):
    """A vocab.json lacking a byte's token would fail on the first text with that byte (a
    KeyError deep in encode); one from another run gives ids the embedding has no row for."""
    import json

    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer().train(["to be or not to be"], 260, special_tokens=["<|endoftext|>"])
    for name, vocab_size in (("small", 100), ("fits", 260)):
        GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=16, n_embd=8, n_layer=1, n_head=2)) \
            .save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    line = one_line_error(capsys, ["sample", "--model", str(tmp_path / "small")])
    assert line == (f"mlab-tfs sample: error: --model: the tokenizer in {tmp_path / 'small'} has ids up to 259, but "
                    "the model has vocab_size=100: they are not from the same run")
    vocab_file = tmp_path / "fits" / "vocab.json"
    vocab = json.loads(vocab_file.read_text())
    vocab["R?"] = vocab.pop("R")  # byte 0x52's token renamed: the ids stay 0..n-1
    vocab_file.write_text(json.dumps(vocab))
    line = one_line_error(capsys, ["sample", "--model", str(tmp_path / "fits")])
    assert line == (f"mlab-tfs sample: error: --model: {vocab_file} lacks the tokens of 1 of the 256 bytes (first 'R'), "
                    "so it cannot encode every text; it is not a byte-level BPE vocabulary")


def test_filter_sample_names_a_model_folder_it_cannot_use(capsys, tmp_path):
    """A path that is no folder is named as such (not transformers' message about hub ids); a
    model smaller than GPT-2's vocabulary, which filter-sample encodes with, is refused before
    its ids would index past the embedding."""
    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel

    line = one_line_error(capsys, ["filter-sample", "--transformers", "--model", str(tmp_path / "none")])
    assert line == f"mlab-tfs filter-sample: error: --model: no folder {tmp_path / 'none'}"
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=16, n_embd=8, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    line = one_line_error(capsys, ["filter-sample", "--model", str(tmp_path), "-n", "2"])
    assert line == (f"mlab-tfs filter-sample: error: --model {tmp_path} has vocab_size=300, fewer than the 50257 tokens "
                    "of GPT-2's vocabulary, which filter-sample encodes with; pass --transformers to use the folder's "
                    "own tokenizer")


def test_filter_sample_names_a_transformers_folder_without_its_tokenizer(capsys, tmp_path):
    """transformers builds an empty tokenizer for a folder without tokenizer files; every text
    then encodes to nothing, which is not an empty --prompt: the folder is named instead."""
    from mlab_tfs.testing import tiny

    folder = tiny.gpt2_checkpoint(tmp_path / "m", "base", seed=0)
    line = one_line_error(capsys, ["filter-sample", "--transformers", "--model", str(folder), "-n", "1"])
    assert line == (f"mlab-tfs filter-sample: error: --model {folder}: the folder holds no tokenizer (transformers "
                    f"built one of 1 token); save the tokenizer with the model (tokenizer.save_pretrained)")
    # A tokenizer of GPT-2's 50257 tokens beside a model of 97: ids past the embedding.
    from mlab_tfs.sampling.commands import gpt2_tokenizer

    gpt2_tokenizer().save_pretrained(folder)
    line = one_line_error(capsys, ["filter-sample", "--transformers", "--model", str(folder), "-n", "1"])
    assert line == (f"mlab-tfs filter-sample: error: --model {folder}: its tokenizer has 50257 tokens but the model "
                    f"has vocab_size=97: they are not from the same model")
