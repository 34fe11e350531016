"""Helpers shared by the benchmark scripts: environment facts, a CUDA check, JSON written as it goes."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

# The package is run from the repository: make `import mlab_tfs` work without installing it.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def require_cuda(script: str) -> None:
    if not torch.cuda.is_available():
        raise SystemExit(f"{script}: this benchmark needs a CUDA GPU, and torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}). On a CPU, run benchmarks/cpu_forward.py.")


def environment() -> dict:
    info = dict(torch=torch.__version__, python=platform.python_version(), machine=platform.machine(),
                cpu_count=os.cpu_count(), threads=torch.get_num_threads())
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        info["transformers"] = None
    if torch.cuda.is_available():
        info["card"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["gpus"] = torch.cuda.device_count()
    else:
        info["card"] = None
        info["cpu"] = platform.processor() or _cpu_model()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def describe(info: dict) -> str:
    where = info.get("card") or f"CPU {info.get('cpu')}, {info.get('threads')} threads"
    return f"{where}, torch {info['torch']}, transformers {info['transformers']}, Python {info['python']}"


class Results:
    """A JSON file rewritten after every row, so that a crash or a timeout keeps what was measured."""

    def __init__(self, path: str | None, section: str, **meta):
        self.path = path
        self.data = dict(section=section, environment=environment(), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                         **meta, rows=[], complete=False)
        self.write()

    def add(self, **row) -> dict:
        self.data["rows"].append(row)
        print(json.dumps(row, default=str), flush=True)
        self.write()
        return row

    def set(self, **kv) -> None:
        self.data.update(kv)
        self.write()

    def done(self) -> None:
        self.data["complete"] = True
        self.write()

    def write(self) -> None:
        if self.path:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f, indent=2, default=str)
            os.replace(tmp, self.path)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def copy_bandwidth_gbs(n_bytes: int = 1 << 30, reps: int = 10) -> float:
    """Device-to-device copy rate: bytes read plus bytes written per second, in GB/s."""
    a = torch.empty(n_bytes, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(2):
        b.copy_(a)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        b.copy_(a)
    torch.cuda.synchronize()
    rate = 2 * n_bytes * reps / (time.perf_counter() - t) / 1e9
    del a, b
    torch.cuda.empty_cache()
    return rate
