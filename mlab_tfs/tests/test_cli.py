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
    assert line.endswith("lacks model.safetensors, vocab.json, merges.txt (an `mlab-tfs train` run writes them to "
                         "<out>/model; tokenizer.save_pretrained(folder) writes a tokenizer's)")
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
    """A path that is no folder is named as such (not transformers' message about hub ids),
    a typo under an existing folder too; a model folder without its tokenizer files is named
    with the files it lacks (filter-sample reads a folder's own tokenizer, never GPT-2's)."""
    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel

    line = one_line_error(capsys, ["filter-sample", "--transformers", "--model", str(tmp_path / "none")])
    assert line == f"mlab-tfs filter-sample: error: --model: no folder {tmp_path / 'none'}"
    line = one_line_error(capsys, ["filter-sample", "--model", str(tmp_path / "none")])
    assert line == f"mlab-tfs filter-sample: error: --model: no folder {tmp_path / 'none'}"
    line = one_line_error(capsys, ["filter-sample", "--model", "mlab_tfs/training/modle"])
    assert line == "mlab-tfs filter-sample: error: --model: no folder mlab_tfs/training/modle"
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=16, n_embd=8, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    line = one_line_error(capsys, ["filter-sample", "--model", str(tmp_path), "-n", "2"])
    assert line == (f"mlab-tfs filter-sample: error: --model: {tmp_path} lacks vocab.json, merges.txt (an `mlab-tfs "
                    "train` run writes them to <out>/model; tokenizer.save_pretrained(folder) writes a tokenizer's)")


def _filter_sample_output(model, tok, prompt, n, max_new_tokens, seed=0):
    """What filter-sample prints after its model line, computed here through filtered_sample."""
    import torch

    from mlab_tfs.sampling.commands import BAD, GOOD
    from mlab_tfs.sampling.solution import filtered_sample

    with torch.no_grad():
        result = filtered_sample(model, tok.encode(prompt), n, tok.encode(BAD), tok.encode(GOOD),
                                 max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0,
                                 eos_token_id=tok.eos_token_id, generator=torch.Generator().manual_seed(seed))
    lines = [f"prompt: {prompt!r}", f"score = log P({BAD!r}) - log P({GOOD!r}); lowest first", ""]
    lines += [f"{s:+8.3f}  {tok.decode(c)!r}" for c, s in zip(result.completions, result.scores.tolist())]
    return lines, result


def test_filter_sample_reads_a_model_folder_with_its_own_tokenizer(capsys):
    """The course model has its own 4,096-token BPE: its text goes through that tokenizer (GPT-2's
    would give ids past its embedding), and the output is filtered_sample's on that pair."""
    from mlab_tfs.assets import course_model_path
    from mlab_tfs.training.commands import load_model_folder

    folder = course_model_path()
    model, tok = load_model_folder(folder)
    assert tok.vocab_size == model.config.vocab_size == 4096
    expected, result = _filter_sample_output(model.eval(), tok, "ROMEO:", 3, 6)
    assert tok.encode("ROMEO:") == [578, 77, 69, 79, 58]  # the course BPE's ids, not GPT-2's (49, 2662, 46, 25)
    capsys.readouterr()
    assert main(["filter-sample", "--model", str(folder), "--prompt", "ROMEO:", "-n", "3", "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"model: {folder} (its own tokenizer)"
    assert out[1:] == expected
    assert len(result.completions) == 3 and result.scores.tolist() == sorted(result.scores.tolist())


def test_filter_sample_without_a_model_says_it_samples_random_weights(capsys):
    from mlab_tfs.sampling.commands import gpt2_tokenizer, tiny_random_gpt2

    expected, _ = _filter_sample_output(tiny_random_gpt2(0), gpt2_tokenizer(), "The food at the restaurant", 2, 4)
    capsys.readouterr()
    assert main(["filter-sample", "-n", "2", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("model: a tiny random GPT-2 (2 layers, random weights: the text is noise; pass --model <folder> "
                      "for a trained one)")
    assert out[1:] == expected


def _help_of(parser, action) -> str:
    return parser._get_formatter()._expand_help(action)


def test_every_flag_has_a_description_and_shows_its_default():
    """`--help` of every command: each option (but --help, and the --debug each command accepts
    silently, which `mlab-tfs --help` describes) says what it does, and each that takes a value
    shows its default; a default given to argparse appears as argparse would print it."""
    import argparse

    from mlab_tfs.cli import _leaf_parsers, build_parser

    parser = build_parser()
    seen = 0
    for leaf in [parser, *_leaf_parsers(parser)]:
        for action in leaf._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            if action.help == argparse.SUPPRESS and action.dest == "debug" and leaf is not parser:
                continue
            where = f"{leaf.prog} {'/'.join(action.option_strings)}"
            assert action.help and action.help != argparse.SUPPRESS, f"{where} has no description"
            text = _help_of(leaf, action)
            seen += 1
            if action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction):
                continue  # an on/off switch: off unless given
            assert "(default: " in text, f"{where} does not show its default: {text!r}"
            if action.default not in (None, argparse.SUPPRESS):
                assert str(action.default) in text, f"{where}: default {action.default!r} not in {text!r}"
    assert seen >= 50  # train's settings (34), sample's, filter-sample's, demo bert's, check's


def test_train_help_shows_trainconfig_defaults():
    """train's settings default to None (so a config file's value stands), so their help carries
    TrainConfig's default, stated once in loop.py."""
    from dataclasses import fields

    from mlab_tfs.cli import build_parser
    from mlab_tfs.training.commands import SETTINGS
    from mlab_tfs.training.loop import TrainConfig

    names = [f.name for f in fields(TrainConfig)]
    assert sorted(SETTINGS) == sorted(names)
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    by_dest = {a.dest: a for a in train._actions}
    helps = {name: _help_of(train, by_dest[name]) for name in names}
    assert helps["max_steps"].endswith("(default: 2000)")
    assert helps["lr"].endswith("(default: 0.001)")
    assert helps["tokenizer"].endswith("(default: 'bpe')")
    assert helps["compile"].endswith("(default: on where there is a GPU)")
    assert helps["progress"].endswith("(default: on)")
    assert helps["warmup_steps"].endswith("(default: min(100, max_steps // 10))")


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


def test_every_command_describes_itself_and_every_switch_says_it_is_off_by_default():
    """`mlab-tfs <command> --help` starts with what the command does (the line `mlab-tfs --help`
    lists it with, where it has no longer description), and an on/off switch says "(default: off)"."""
    import argparse

    from mlab_tfs.cli import _leaf_parsers, build_parser

    parser = build_parser()
    leaves = list(_leaf_parsers(parser))
    names = {leaf.prog for leaf in leaves}
    assert {"mlab-tfs check", "mlab-tfs filter-sample", "mlab-tfs train", "mlab-tfs sample",
            "mlab-tfs demo bert"} <= names
    for leaf in leaves:
        assert leaf.description, f"{leaf.prog} --help has no description"
    sample = next(leaf for leaf in leaves if leaf.prog == "mlab-tfs sample")
    assert sample.description == "Write text with the course's Shakespeare GPT-2 (offline, CPU)."
    switches = 0
    for leaf in [parser, *leaves]:
        for action in leaf._actions:
            if isinstance(action, argparse._StoreTrueAction) and action.help != argparse.SUPPRESS:
                switches += 1
                assert _help_of(leaf, action).endswith("(default: off)"), f"{leaf.prog} {action.option_strings}"
    assert switches >= 6  # --debug, check's three, --transformers, --resume
    prompt = next(a for a in sample._actions if a.dest == "prompt")
    assert _help_of(sample, prompt).endswith('(default: "ROMEO:")')


@pytest.mark.parametrize("omp, threads", [(None, 1), ("2", 2)])
def test_sample_runs_on_one_torch_thread_unless_omp_num_threads_says(omp, threads, monkeypatch, capsys):
    import torch

    before = torch.get_num_threads()
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    try:
        torch.set_num_threads(2)
        assert main(["sample", "--max-new-tokens", "2"]) == 0
        assert capsys.readouterr().out.startswith("ROMEO:")
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
