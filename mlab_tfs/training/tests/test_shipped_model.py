"""The model the course ships (mlab_tfs/training/model/, made by course_model.toml): its
held-out loss is the one its recipe recorded, and `mlab-tfs sample` runs on it offline."""

from __future__ import annotations

import json

import pytest
import torch

from mlab_tfs.training.commands import SHIPPED_MODEL

pytestmark = pytest.mark.skipif(
    not SHIPPED_MODEL.is_dir(),
    reason="the course model is not in mlab_tfs/training/model/ yet: train it with "
           "`mlab-tfs train --config mlab_tfs/training/course_model.toml` and copy runs/shakespeare/model there",
)


@pytest.fixture(scope="module")
def recipe():
    return json.loads((SHIPPED_MODEL / "recipe.json").read_text())


def test_shipped_files_are_small_fp16(recipe):
    from safetensors.torch import load_file

    weights = SHIPPED_MODEL / "model.safetensors"
    assert weights.stat().st_size <= 15 * 2**20
    assert {v.dtype for v in load_file(weights).values()} == {torch.float16}
    assert recipe["command"].startswith("mlab-tfs train") and recipe["config"]["corpus"] == []


def test_shipped_model_eval_loss_is_the_recorded_one(recipe):
    """Recomputed here from the folder alone: the held-out blocks of the Shakespeare assets
    (same split, same tokenizer, same evenly spread blocks), fp16 weights in fp32 on the CPU,
    as the recipe recorded it at the end of training. 1e-4: the same fp32 computation, but
    on another CPU with other thread counts, so summation order may differ (seen: ~1e-6)."""
    from mlab_tfs.gpt2 import GPT2LMHeadModel
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer
    from mlab_tfs.training.data import tokenizer_fingerprint
    from mlab_tfs.training.loop import TrainConfig, evaluate, prepare_data, select_eval_blocks

    tok = ByteLevelBPETokenizer.from_pretrained(SHIPPED_MODEL)
    assert tokenizer_fingerprint(tok) == recipe["tokenizer_fingerprint"]
    cfg = TrainConfig(**recipe["config"])
    _, _, held_out = prepare_data(cfg, tok)
    blocks = select_eval_blocks(held_out, cfg.eval_blocks)
    assert len(blocks) == recipe["eval_blocks"]
    model = GPT2LMHeadModel.from_pretrained(SHIPPED_MODEL, dtype=torch.float32)
    loss = evaluate(model, blocks, 16)
    assert loss == pytest.approx(recipe["final_eval_loss"], abs=1e-4)
    assert loss < 4.0  # far below a uniform guess over 4096 tokens (8.3): it has learnt Shakespeare


def test_sample_defaults_to_the_shipped_model(capsys):
    from mlab_tfs.cli import main

    assert main(["sample", "ROMEO:", "--max-new-tokens", "40"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:") + 40
