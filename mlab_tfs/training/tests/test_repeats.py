"""Induction data: data.with_repeats' rows, the step's target count, the repeat probe and its
losses, and that runs with repeats split over micro-batches, processes or a resume still give
one process's losses."""

from __future__ import annotations

import json
from dataclasses import asdict
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp

from mlab_tfs.cli import main as cli_main
from mlab_tfs.training import data as D
from mlab_tfs.training.loop import REPEAT_CURVES, TrainConfig, loss_curves, plot_losses, repeat_losses, step_batch, train

from .conftest import with_
from .test_ddp import _worker, spawn_two

Tensor = torch.Tensor
B, T = 64, 32
# Distinct ids 1000.. per position and row: a copied span is recognisable, random ids (< 300) too.
BLOCKS = torch.arange(B * T).view(B, T) + 1000


def kinds(inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(random rows, text rows, untouched rows) of with_repeats(BLOCKS, ..., vocab_size=300, ...)."""
    same = (inputs == BLOCKS).all(1)
    return (inputs < 300).all(1), (inputs >= 1000).all(1) & ~same, same



def test_with_repeats_is_a_function_of_seed_and_step():
    a = D.with_repeats(BLOCKS, 3, 300, 0.25, 0.25, seed=0)
    b = D.with_repeats(BLOCKS.clone(), 3, 300, 0.25, 0.25, seed=0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], D.with_repeats(BLOCKS, 4, 300, 0.25, 0.25, seed=0)[0])  # another step
    assert not torch.equal(a[0], D.with_repeats(BLOCKS, 3, 300, 0.25, 0.25, seed=1)[0])  # another seed


@pytest.mark.parametrize("fractions, counts", [
    ((0.25, 0.25), (17, 22, 25)),  # seed 0, step 3: 17 + 22 of 64 rows drawn, 25 left
    ((0.5, 0.5), (39, 25, 0)),  # summing to exactly 1: no row left as it was (u < 1 always)
    ((1.0, 0.0), (64, 0, 0)),
    ((0.0, 1.0), (0, 64, 0)),
])
def test_rows_are_of_each_kind_by_the_fractions(fractions, counts):
    inputs, _ = D.with_repeats(BLOCKS, 3, 300, *fractions, seed=0)
    random_rows, text_rows, same = kinds(inputs)
    assert (int(random_rows.sum()), int(text_rows.sum()), int(same.sum())) == counts
    assert bool((random_rows | text_rows | same).all()) and not bool((random_rows & same).any())


def period_of_text_row(inputs_row: Tensor, block_row: Tensor) -> int:
    """The span length L with inputs_row == block_row[pos % L] (unique: BLOCKS' ids are distinct)."""
    found = [L for L in range(1, T + 1) if torch.equal(inputs_row, block_row[torch.arange(T) % L])]
    assert len(found) == 1, found
    return found[0]


def test_labels_and_periods_of_each_kind():
    inputs, labels = D.with_repeats(BLOCKS, 3, 300, 0.25, 0.25, seed=0)
    random_rows, text_rows, same = kinds(inputs)
    lengths = []
    for b in range(B):
        x, y = inputs[b], labels[b]
        if random_rows[b]:
            L = int((y == -100).sum()) - 1  # positions 0..L are -100: the first copy and its next target
            assert torch.equal(y[: L + 1], torch.full((L + 1,), -100)) and torch.equal(y[L + 1:], x[L + 1:])
            assert torch.equal(x[L:], x[:-L]), "a random row is its first L tokens over and over"
            assert 0 <= int(x.min()) and int(x.max()) < 300
        elif text_rows[b]:
            L = period_of_text_row(x, BLOCKS[b])  # its own first span of text, repeated
            assert torch.equal(y, x), "text keeps every label"
        else:
            assert torch.equal(x, BLOCKS[b]) and torch.equal(y, BLOCKS[b])
            continue
        assert D.REPEAT_MIN_LEN <= L <= T // 2
        lengths.append(L)
    assert min(lengths) == 4 and max(lengths) == 16  # the whole range [REPEAT_MIN_LEN, T // 2] is drawn


def test_rows_keep_the_blocks_dtype_and_device():
    inputs, labels = D.with_repeats(BLOCKS.int(), 3, 300, 0.25, 0.25, seed=0)
    assert inputs.dtype == torch.int32 and torch.equal(inputs.long(), D.with_repeats(BLOCKS, 3, 300, 0.25, 0.25, 0)[0])
    if torch.cuda.is_available():  # drawn on the CPU, so the same rows on a GPU
        on_gpu = D.with_repeats(BLOCKS.cuda(), 3, 300, 0.25, 0.25, seed=0)
        assert on_gpu[0].is_cuda and torch.equal(on_gpu[0].cpu(), D.with_repeats(BLOCKS, 3, 300, 0.25, 0.25, 0)[0])


@pytest.mark.parametrize("T_", [1, 3, 7, 32])
def test_no_fraction_gives_the_blocks_back_at_any_length(T_):
    blocks = BLOCKS[:5, :T_]
    inputs, labels = D.with_repeats(blocks, 0, 300, 0.0, 0.0, seed=0)
    assert torch.equal(inputs, blocks) and torch.equal(labels, blocks)


@pytest.mark.parametrize("args, error, message", [
    (dict(random_fraction=1.5), ValueError, r"random_fraction must be in \[0, 1\], got 1.5"),
    (dict(text_fraction=-0.1), ValueError, r"text_fraction must be in \[0, 1\], got -0.1"),
    (dict(text_fraction=float("nan")), ValueError, r"text_fraction must be a finite number, got nan"),
    (dict(random_fraction=0.6, text_fraction=0.5), ValueError, r"random_fraction \+ text_fraction must be <= 1, got 0.6 \+ 0.5"),
    (dict(blocks=BLOCKS[:, :7]), ValueError, r"blocks must be >= 8 tokens long .* got blocks of shape \(64, 7\)"),
    (dict(blocks=BLOCKS[0]), TypeError, r"blocks must be a 2-D integer tensor .* shape \(32,\)"),
    (dict(blocks=BLOCKS.float()), TypeError, r"blocks must be a 2-D integer tensor .* torch.float32"),
    (dict(blocks=BLOCKS[:0]), ValueError, r"blocks must hold at least one row"),
    (dict(vocab_size=0), ValueError, r"vocab_size must be an int in \[1, inf\], got 0"),
    (dict(step=-1), ValueError, r"step must be an int in \[0, inf\], got -1"),
    (dict(seed=1.0), TypeError, r"seed must be an int, got a float \(1.0\)"),
])
def test_bad_arguments_are_named(args, error, message):
    call = dict(blocks=BLOCKS, step=0, vocab_size=300, random_fraction=0.25, text_fraction=0.25, seed=0) | args
    with pytest.raises(error, match=message):
        D.with_repeats(**call)


def test_step_batch_counts_the_targets_the_model_trains_on():
    cfg = TrainConfig(repeat_fraction=0.25, repeat_text_fraction=0.25, seed=0)
    inputs, labels, n = step_batch(BLOCKS, 3, cfg, 300)
    random_rows = kinds(inputs)[0]
    masked = sum(int((labels[b] == -100).sum()) - 1 for b in range(B) if random_rows[b])  # L per random row
    assert n == B * (T - 1) - masked == 1984 - masked
    assert n == int((labels[:, 1:] != -100).sum())
    assert torch.equal(step_batch(BLOCKS, 3, TrainConfig(), 300)[0], BLOCKS)
    assert step_batch(BLOCKS, 3, TrainConfig(), 300)[1:] == (None, None)  # no repeats: labels are the inputs


def test_repeat_probe():
    probe, span = D.repeat_probe(300, 100, rows=3, span=40, seed=5)
    assert probe.shape == (3, 100) and span == 40
    assert torch.equal(probe[:, 40:80], probe[:, :40]) and torch.equal(probe[:, 80:], probe[:, :20])
    r = torch.randint(0, 300, (3, 40), generator=torch.Generator().manual_seed(5))
    assert torch.equal(probe[:, :40], r)
    assert D.repeat_probe(300, 9)[1] == 4 and D.repeat_probe(300, 9)[0].shape == (16, 9)  # L = block_size // 2
    with pytest.raises(ValueError, match=r"block_size must be an int in \[8, inf\], got 7"):
        D.repeat_probe(300, 7)
    with pytest.raises(ValueError, match=r"span must be an int in \[2, inf\], got 1"):
        D.repeat_probe(300, 64, span=1)


class Bigram(torch.nn.Module):
    """A 'model' whose logits are a given table's rows: logits[b, t] = table[ids[b, t]], so
    repeat_losses can be checked against the definition."""

    def __init__(self, table: Tensor):
        super().__init__()
        self.table, self.modes = table, []

    def forward(self, ids):
        self.modes.append(self.training)
        return SimpleNamespace(logits=self.table[ids])  # (B, T, V)


def test_repeat_losses_is_the_mean_loss_on_each_copy():
    L, rows, V = 5, 3, 7
    probe = D.repeat_probe(V, 12, rows=rows, span=L, seed=0)[0]  # (3, 12): r, r, r[:2]
    model = Bigram(torch.randn(V, V, generator=torch.Generator().manual_seed(1))).train()
    logp = model.table[probe].log_softmax(-1)  # (rows, 12, V)
    first, second = repeat_losses(model, probe, L)

    def nll(t):  # mean over rows of -log p(token t | tokens < t)
        return -sum(float(logp[b, t - 1, probe[b, t]]) for b in range(rows)) / rows

    assert first == pytest.approx(sum(nll(t) for t in range(1, L)) / (L - 1), abs=1e-6)  # targets 1..L-1
    assert second == pytest.approx(sum(nll(t) for t in range(L + 1, 2 * L)) / (L - 1), abs=1e-6)  # L+1..2L-1
    assert model.modes == [False] and model.training  # evaluated in eval mode, training mode restored
    chunked = repeat_losses(model, probe, L, batch_size=2)  # rows 0-1, then row 2: the same means
    assert chunked == pytest.approx((first, second), abs=1e-6) and model.modes == [False, False, False]
    with pytest.raises(ValueError, match=r"batch_size must be an int in \[1, inf\], got 0"):
        repeat_losses(model, probe, L, batch_size=0)
    with pytest.raises(ValueError, match=r"probe must be >= 2 \* span = 14 tokens long"):
        repeat_losses(model, probe, 7)
    with pytest.raises(ValueError, match=r"span must be an int in \[2, inf\], got 1"):
        repeat_losses(model, probe, 1)


def test_loss_curves_and_plot_with_repeat_records(tmp_path):
    records = [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.0},
               {"step": 2, "eval_loss": 4.5, "repeat_loss_first": 6.0, "repeat_loss_second": 2.0, "sample": "x"}]
    assert loss_curves(records) == {"train": [(1, 5.0), (2, 4.0)], "held-out": [(2, 4.5)],
                                    REPEAT_CURVES[0]: [(2, 6.0)], REPEAT_CURVES[1]: [(2, 2.0)]}
    assert loss_curves(records[:2]) == {"train": [(1, 5.0), (2, 4.0)]}  # no probe logged, no probe curve
    pytest.importorskip("matplotlib")
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert plot_losses(log, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- whole runs ---------------------------------------------------------------------------


def _log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _probe_records(out) -> list[tuple[float, float]]:
    return [(r["repeat_loss_first"], r["repeat_loss_second"]) for r in _log(out) if "eval_loss" in r]


@pytest.mark.solution_only
def test_repeats_split_over_micro_batches_and_processes_equal_one_batch(tiny_config, tmp_path):
    """With repeats, micro-batches count different numbers of targets (random rows' first copy is
    not trained on). Weighing each micro-batch's summed loss by the global count
    (num_items_in_batch) makes 1 process x 1 micro-batch of 8, 1 x 2 of 4 and 2 processes x 1
    of 4 the same sum over the same tokens: equal per-step losses up to float rounding (the sums
    are taken in another order, then AdamW carries the difference on): 1e-5 on losses of ~5,
    16 of 16 steps, as the tests without repeats. The logged probe losses agree too."""
    cfg = with_(tiny_config, dropout=0.0, max_steps=16, checkpoint_every=100, eval_every=8,
                repeat_fraction=0.25, repeat_text_fraction=0.25)
    one = train(with_(cfg, out=str(tmp_path / "one")))
    accum = train(with_(cfg, grad_accum=2, out=str(tmp_path / "accum")))
    two = spawn_two(lambda folder, port: mp.start_processes(
        _worker, args=(2, port, asdict(with_(cfg, out=str(folder)))), nprocs=2, join=True, start_method="spawn"),
        tmp_path)
    ref = torch.tensor(one["losses"])
    assert len(ref) == 16
    for other in (accum["losses"], [r["loss"] for r in _log(two) if "loss" in r]):
        torch.testing.assert_close(torch.tensor(other), ref, rtol=0, atol=1e-5)
    probe = torch.tensor(_probe_records(tmp_path / "one"))  # steps 8 and 16
    assert probe.shape == (2, 2)
    for out in (tmp_path / "accum", two):
        torch.testing.assert_close(torch.tensor(_probe_records(out)), probe, rtol=0, atol=1e-4)
    recipe = json.loads((two / "model" / "recipe.json").read_text())
    assert recipe["repeat_loss_second"] == pytest.approx(one["repeat_loss_second"], abs=1e-4)


def test_resumed_run_with_repeats_equals_the_uninterrupted_one(tiny_config, tmp_path):
    """The repeated rows are a function of (seed, step): stopped after step 13 and resumed from
    the step-8 checkpoint, every loss and probe record equals the uninterrupted run's, bit for bit."""
    cfg = with_(tiny_config, max_steps=16, repeat_fraction=0.25, repeat_text_fraction=0.25)
    full = train(with_(cfg, out=str(tmp_path / "full")))
    cut = with_(cfg, out=str(tmp_path / "cut"))
    assert train(cut, stop_after=13)["interrupted_at"] == 13
    resumed = train(cut, resume=True)
    assert resumed["losses"] == full["losses"]
    assert _probe_records(tmp_path / "cut") == _probe_records(tmp_path / "full")
    assert (resumed["repeat_loss_first"], resumed["repeat_loss_second"]) == (full["repeat_loss_first"],
                                                                             full["repeat_loss_second"])


def test_tiny_blocks_without_repeats_train_and_log_no_probe(tiny_config, tmp_path):
    """block_size 4 (< 2 * REPEAT_MIN_LEN) with both fractions 0 trains; no probe is logged."""
    out = tmp_path / "tiny"
    summary = train(with_(tiny_config, block_size=4, n_positions=4, max_steps=4, eval_every=4, out=str(out)))
    assert len(summary["losses"]) == 4 and "repeat_loss_first" not in summary
    assert not any("repeat_loss_first" in r for r in _log(out))


def test_cli_repeat_flags_reach_the_recipe(tiny_config, tmp_path):
    out = tmp_path / "cli"
    assert cli_main(["train", "--corpus", *tiny_config.corpus, "--out", str(out), "--vocab-size", "300",
                     "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-positions", "32", "--block-size", "32",
                     "--batch-size", "4", "--max-steps", "2", "--eval-every", "2", "--sample-tokens", "2",
                     "--device", "cpu", "--no-amp", "--no-compile", "--no-progress",
                     "--repeat-fraction", "0.05", "--repeat-text-fraction", "0.1"]) == 0
    recipe = json.loads((out / "model" / "recipe.json").read_text())
    assert (recipe["config"]["repeat_fraction"], recipe["config"]["repeat_text_fraction"]) == (0.05, 0.1)
    assert recipe["repeat_loss_note"].startswith("next-token loss (nats) on the first and the second copy of 16 spans of 16")
    assert [r["step"] for r in _log(out) if "repeat_loss_second" in r] == [2]


def test_compiled_model_takes_a_tensor_count_without_compiling_again():
    """The loop passes num_items_in_batch as a 0-d tensor: torch.compile traces one graph for
    every count (a Python int or float gives a second graph when the count first changes:
    measured 2 graphs for 4 counts), and the loss is the eager model's, exactly."""
    from torch._dynamo.utils import counters

    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2)).eval()
    x = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    y = x.masked_fill(torch.arange(16) < 5, -100)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="eager")  # tracing alone: what decides recompilation
    for n in (27, 20, 13, 11):
        got = compiled(x, labels=y, num_items_in_batch=torch.tensor(float(n))).loss
        assert torch.equal(got, model(x, labels=y, num_items_in_batch=n).loss)
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


@torch.no_grad()
def test_weighing_by_the_step_count_is_one_batch_and_the_mean_of_means_is_not():
    """The reason for num_items_in_batch: over 16 steps of 8 rows (a quarter random repeats, a
    quarter text repeats), two micro-batches of 4 weighed by the step's target count give the
    one batch's loss (1e-6, float rounding of two sums against one), while the mean of the two
    micro-batch means misses it by up to 7.9e-4 (a step whose micro-batches count 186 and 124
    targets, say, weighs their tokens 1/372 and 1/248 instead of 1/310 each)."""
    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=32, n_embd=32, n_layer=2, n_head=2)).eval()
    blocks = torch.randint(0, 300, (8, 32), generator=torch.Generator().manual_seed(1))
    cfg = TrainConfig(repeat_fraction=0.25, repeat_text_fraction=0.25)
    misses = []
    for step in range(16):
        x, y, n = step_batch(blocks, step, cfg, 300)
        one = model(x, labels=y).loss
        halves = [(x[i : i + 4], y[i : i + 4]) for i in (0, 4)]
        weighted = sum(model(a, labels=b, num_items_in_batch=torch.tensor(float(n))).loss for a, b in halves)
        assert float(weighted) == pytest.approx(float(one), abs=1e-6)
        misses.append(abs(float(sum(model(a, labels=b).loss for a, b in halves) / 2 - one)))
    assert max(misses) == pytest.approx(7.88e-4, abs=1e-5)
