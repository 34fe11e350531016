"""Fixtures of the Llama tests: the implementation under test and tiny Llama / Qwen3 checkpoints."""

from __future__ import annotations

import pytest

from mlab_tfs.testing import tiny
from mlab_tfs.testing.plugin import load_impl


@pytest.fixture(scope="session")
def llama(pytestconfig):
    """The module under test: mlab_tfs.llama.solution, or .student with --impl=student."""
    return load_impl(pytestconfig, "llama")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """name ("llama/gqa", "qwen3/qk_norm", ...) -> folder of a tiny random transformers checkpoint."""
    root = tmp_path_factory.mktemp("llama")
    return {name: tiny.llama_checkpoint(root / name.replace("/", "_"), name, seed=i)
            for i, name in enumerate(tiny.LLAMA_FAMILY)}


@pytest.fixture(scope="session")
def hf_models(checkpoints):
    """name -> transformers' model of that checkpoint (eager attention, fp32, eval)."""
    return {name: tiny.hf_llama(folder) for name, folder in checkpoints.items()}


@pytest.fixture(scope="session")
def hf_sdpa_models(checkpoints):
    """name -> transformers' model on its default attention path ("sdpa"), whose padding queries
    (no visible key) output zeros, as ours on every path. fp32, eval."""
    return {name: tiny.hf_llama(folder, attn_implementation="sdpa") for name, folder in checkpoints.items()}
