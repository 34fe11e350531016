"""The CPU paths of the two GPU scripts of the Llama training: benchmarks/fsdp_vs_ddp.py (two
gloo processes, tiny Llama) and benchmarks/llama_vs_gpt2.py (--tiny). Each prints its table and
writes its JSON; the figures in both are the runs' own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .test_llama_training import llama_parameters

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


@pytest.mark.solution_only
def test_fsdp_vs_ddp_on_two_gloo_processes(tmp_path):
    """DDP and FSDP2 from the same weights on the same batches: the same per-step losses
    (1e-5; fp32), every process holding 16 bytes per parameter (weights, gradients, two AdamW
    moments) under DDP and exactly half of them under FSDP2 (every tensor's first dimension is
    even, so no padding): 16 x 25,120 = 401,920 bytes against 200,960."""
    out = tmp_path / "fsdp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(BENCHMARKS / "fsdp_vs_ddp.py"), "--preset", "tiny", "--device", "cpu", "--batch", "2", "--seq", "16",
           "--steps", "3", "--warmup", "1", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["complete"] and data["world"] == 2
    ddp, fsdp = data["rows"]
    assert (ddp["strategy"], fsdp["strategy"]) == ("ddp", "fsdp")
    n = llama_parameters(300, 32, 2, 2, 1, 48)
    assert ddp["parameters"] == fsdp["parameters"] == n == 25_120
    assert ddp["state_bytes_per_rank"] == [16 * n] * 2 and fsdp["state_bytes_per_rank"] == [8 * n] * 2
    assert data["state_fsdp_over_ddp"] == 0.5
    assert len(ddp["losses"]) == len(fsdp["losses"]) == 4
    assert max(abs(a - b) for a, b in zip(ddp["losses"], fsdp["losses"])) == data["max_loss_difference"] <= 1e-5
    assert ddp["peak_memory_per_rank"] is None  # no CUDA memory on the CPU
    assert data["throughput_fsdp_over_ddp"] == pytest.approx(fsdp["tokens_per_s"] / ddp["tokens_per_s"])
    table = done.stdout[done.stdout.index("\nstrategy ") + 1:].splitlines()
    assert table[1].split()[:2] == ["DDP", f"{ddp['tokens_per_s']:,.0f}"]
    assert table[2].split()[:2] == ["FSDP2", f"{fsdp['tokens_per_s']:,.0f}"]
    assert table[1].split()[3:] == ["0.4", f"{ddp['losses'][-1]:.4f}"]  # 401,920 bytes = 0.4 MiB
    assert table[2].split()[3:] == ["0.2", f"{fsdp['losses'][-1]:.4f}"]


def test_llama_vs_gpt2_tiny(tmp_path, capsys):
    """Both recipes at the tiny sizes for 4 steps: the JSON and the table hold each run's
    recipe.json figures; the parameter counts are the hand counts (GPT-2: 37,120; Llama:
    37,408); both runs trained the same tokenizer."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import llama_vs_gpt2
    finally:
        sys.path.remove(str(BENCHMARKS))
    result = llama_vs_gpt2.main(["--tiny", "--steps", "4", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    rows = {r["arch"]: r for r in saved["rows"]}
    gpt2 = 300 * 32 + 64 * 32 + 2 * (12 * 32 * 32 + 13 * 32) + 2 * 32
    assert (rows["gpt2"]["parameters"], rows["llama"]["parameters"]) == (gpt2, llama_parameters(300, 32, 2, 2, 1, 112))
    assert (gpt2, rows["llama"]["parameters"]) == (37_120, 37_408)
    for arch, row in rows.items():
        recipe = json.loads((tmp_path / arch / "model" / "recipe.json").read_text())
        assert row["final_eval_loss"] == recipe["final_eval_loss"] and row["steps"] == recipe["steps"] == 4
        assert recipe["config"]["arch"] == arch
    assert rows["gpt2"]["tokenizer_fingerprint"] == rows["llama"]["tokenizer_fingerprint"]
    assert saved["llama_minus_gpt2"] == rows["llama"]["final_eval_loss"] - rows["gpt2"]["final_eval_loss"]
    out = capsys.readouterr().out
    for arch, row in rows.items():
        assert f"{arch:<7} {row['parameters']:>11,} {row['final_eval_loss']:>14.4f}" in out
