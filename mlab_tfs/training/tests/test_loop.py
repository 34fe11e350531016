"""Our own loop: its pieces, exact resumption, gradient accumulation, the exported model and
`mlab-tfs sample`, and the clear errors for bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mlab_tfs.checkpoints import CheckpointError
from mlab_tfs.cli import main as cli_main
from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel
from mlab_tfs.training import data as D
from mlab_tfs.training.loop import (
    TrainConfig,
    WarmupCosine,
    check_config,
    decayed_parameter_names,
    evaluate,
    load_config,
    lr_at,
    prepare_data,
    select_eval_blocks,
    train,
)

from .conftest import with_


def losses(out) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]


# --- pieces -------------------------------------------------------------------------------


def test_weight_decay_groups_exclude_biases_layer_norms_and_embeddings():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=2, n_head=2))
    decayed = set(decayed_parameter_names(model))
    expected = {f"transformer.h.{i}.{m}.weight" for i in range(2)
                for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    assert decayed == expected  # no wte/wpe (nor the head tied to wte), no ln_*, no bias


def test_warmup_then_cosine():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=4, max_steps=14)
    lrs = [lr_at(s, cfg) for s in range(14)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # linear warmup reaches the peak at step 3
    assert lrs[4] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)  # cosine from peak down to min_lr
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 9)))
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert WarmupCosine(0, 10, 0.0)(0) == 1.0  # no warmup: start at the peak


def test_held_out_split_is_deterministic_and_at_line_breaks():
    text = "".join(f"line {i}\n" for i in range(100))
    train_part, held = D.split_document(text, 0.05)
    assert train_part + held == text and held.startswith("line ") and train_part.endswith("\n")
    assert len(held) == pytest.approx(0.05 * len(text), abs=10)


def test_block_order_covers_each_epoch_once():
    order = D.BlockOrder(n_blocks=10, batch_size=3, seed=1)
    epoch0 = torch.cat([order.batch(s) for s in range(3)])  # 3 steps per epoch; block 10's leftover skipped
    assert len(set(epoch0.tolist())) == 9
    assert order.position(4) == (1, 3)
    assert not torch.equal(order.permutation(0), order.permutation(1))


def test_select_eval_blocks_spreads_over_the_stream():
    blocks = torch.arange(100)[:, None]
    assert select_eval_blocks(blocks, 5)[:, 0].tolist() == [0, 25, 50, 74, 99]
    assert len(select_eval_blocks(blocks, 0)) == 100


# --- whole runs ---------------------------------------------------------------------------


def test_interrupted_run_resumes_to_the_same_losses(tiny_config, tmp_path):
    """Interrupt after step 13 (last checkpoint: step 8), resume: every step's loss, the final
    held-out loss and the final weights equal an uninterrupted run's, bit for bit (same
    process, same kernels, and dropout is on, so the RNG state is restored too)."""
    full = with_(tiny_config, out=str(tmp_path / "full"))
    ref = train(full)
    cut = with_(tiny_config, out=str(tmp_path / "cut"))
    stopped = train(cut, stop_after=13)
    assert stopped["interrupted_at"] == 13
    with pytest.raises(FileExistsError, match="--resume"):
        train(cut)  # a new run must not silently overwrite the interrupted one
    resumed = train(cut, resume=True)
    assert losses(tmp_path / "cut") == ref["losses"]  # steps 9..13 were redone, the log keeps one copy
    assert resumed["final_eval_loss"] == ref["final_eval_loss"]
    a = GPT2LMHeadModel.from_pretrained(tmp_path / "full" / "model").state_dict()
    b = GPT2LMHeadModel.from_pretrained(tmp_path / "cut" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_accumulation_equals_one_big_batch(tiny_config, tmp_path):
    """batch 8 as 4 micro-batches of 2 gives the losses of one batch of 8. Not bit-equal: the
    gradient is summed in another order; 1e-5 on losses of ~5 over 12 steps (dropout off)."""
    one = train(with_(tiny_config, dropout=0.0, max_steps=12, out=str(tmp_path / "one")))
    four = train(with_(tiny_config, dropout=0.0, max_steps=12, grad_accum=4, out=str(tmp_path / "four")))
    assert torch.allclose(torch.tensor(four["losses"]), torch.tensor(one["losses"]), rtol=0, atol=1e-5)
    assert one["losses"][-1] < one["losses"][0] - 0.3  # and it learns


def test_export_sample_and_recorded_eval_loss(tiny_config, tmp_path, capsys):
    """The exported folder holds what `mlab-tfs sample` needs; the recipe's held-out loss is
    reproduced from the folder alone (fp16 weights, fp32 on CPU); transformers loads it too."""
    summary = train(tiny_config)
    folder = tmp_path / "run" / "model"
    recipe = json.loads((folder / "recipe.json").read_text())
    assert recipe["final_eval_loss"] == summary["final_eval_loss"] and recipe["steps"] == 24
    assert json.loads((folder / "config.json").read_text())["model_type"] == "gpt2"

    from mlab_tfs.tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer.from_pretrained(folder)
    cfg = TrainConfig(**recipe["config"])
    _, _, held_out = prepare_data(cfg, tok)
    blocks = select_eval_blocks(held_out, cfg.eval_blocks)
    ours = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32)
    assert evaluate(ours, blocks, 4) == pytest.approx(recipe["final_eval_loss"], abs=1e-5)

    import transformers
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float16 for v in load_file(folder / "model.safetensors").values())
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
    x = blocks[:2]
    torch.testing.assert_close(hf(x).logits, ours(x).logits, rtol=0, atol=1e-5)

    capsys.readouterr()
    assert cli_main(["sample", "ROMEO:", "--model", str(folder), "--max-new-tokens", "12", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    gen = torch.Generator().manual_seed(3)
    from mlab_tfs.sampling import generate

    prompt = tok.encode("ROMEO:")
    eot = tok.encoder["<|endoftext|>"]
    ids = generate(ours, torch.tensor([prompt]), max_new_tokens=12, do_sample=True, temperature=0.8, top_k=40,
                   eos_token_id=eot, pad_token_id=eot, generator=gen)[0].tolist()
    if eot in ids[len(prompt):]:
        ids = ids[: len(prompt) + ids[len(prompt):].index(eot)]
    assert text == tok.decode(ids) + "\n" and text.startswith("ROMEO:")


def test_loss_curve_png(tiny_config, tmp_path):
    pytest.importorskip("matplotlib", reason="loss.png needs matplotlib (an optional dependency)")
    train(with_(tiny_config, max_steps=8))
    png = tmp_path / "run" / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_train_from_toml_with_flag_overrides(tiny_config, tmp_path):
    toml = tmp_path / "run.toml"
    lines = [f"{k} = {json.dumps(v)}" for k, v in vars(tiny_config).items() if v is not None and k != "out"]
    toml.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cli"
    assert cli_main(["train", "--config", str(toml), "--out", str(out), "--max-steps", "3", "--warmup-steps", "1", "--no-progress"]) == 0
    recipe = json.loads((out / "model" / "recipe.json").read_text())
    assert recipe["steps"] == 3 and recipe["config"]["n_embd"] == 32
    assert recipe["command"].startswith("mlab-tfs ")
    assert len(losses(out)) == 3


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    (dict(block_size=128), r"block_size \(128\) must not exceed n_positions \(64\)"),
    (dict(batch_size=10, grad_accum=4), r"batch_size \(10\) must be divisible by grad_accum \(4\)"),
    (dict(n_embd=30, n_head=4), r"n_embd \(30\) must be divisible by n_head \(4\)"),
    (dict(min_lr=1.0, lr=0.1), r"min_lr <= lr"),
    (dict(warmup_steps=100, max_steps=10), r"warmup_steps \(100\)"),
    (dict(eval_fraction=0.0), r"eval_fraction must be in \(0, 1\)"),
])
def test_contradictory_config_is_refused_before_training(tiny_config, changes, message):
    cfg = with_(tiny_config, **changes)
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert not (tiny_config.out and __import__("pathlib").Path(cfg.out).exists())  # nothing was written


def test_batch_must_divide_over_processes(tiny_config):
    with pytest.raises(ValueError, match=r"x processes \(3\) = 3"):
        check_config(with_(tiny_config, batch_size=8), world_size=3)


def test_unknown_and_mistyped_keys(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('n_layers = 4\nlearning_rate = 0.1\n')
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate', 'n_layers'\]"):
        load_config(bad)
    bad.write_text('n_layer = "four"\n')
    with pytest.raises(TypeError, match="n_layer must be int, got str"):
        load_config(bad)
    bad = tmp_path / "bad.yaml"
    bad.write_text("")
    with pytest.raises(ValueError, match=r"\.toml or \.json"):
        load_config(bad)


def test_corpus_too_small_for_one_batch(tmp_path, tiny_config):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "tiny.txt").write_text("To be, or not to be, that is the question.\n" * 4)
    cfg = with_(tiny_config, corpus=[str(tmp_path / "c")], vocab_size=260)
    with pytest.raises(ValueError, match=r"too small for one batch: .* batch_size=8 blocks"):
        train(cfg)
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_missing_corpus_path(tiny_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        train(with_(tiny_config, corpus=[str(tmp_path / "nope")]))


def test_resume_with_another_model_is_refused(tiny_config, tmp_path):
    train(with_(tiny_config, max_steps=8))
    with pytest.raises(CheckpointError, match=r"other settings, which --resume cannot change: n_embd: 32 -> 64 "):
        train(with_(tiny_config, max_steps=16, n_embd=64), resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(with_(tiny_config, out=str(tmp_path / "empty")), resume=True)


def test_init_from_a_model_of_another_vocabulary_is_refused(tiny_config, tmp_path):
    from mlab_tfs.testing import tiny

    folder = tiny.gpt2_checkpoint(tmp_path / "other", "base")  # vocabulary 97, not 300
    with pytest.raises(CheckpointError, match=r"vocab_size=97.*300 tokens"):
        train(with_(tiny_config, init_from=str(folder)))
    bert = tiny.bert_checkpoint(tmp_path / "bert", "base")
    with pytest.raises(ValueError, match="model_type 'bert'"):
        train(with_(tiny_config, init_from=str(bert)))
