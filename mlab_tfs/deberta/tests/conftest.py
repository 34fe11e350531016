"""Fixtures of the DeBERTa tests: the implementation under test and tiny checkpoints."""

from __future__ import annotations

import pytest

from mlab_tfs.testing.plugin import load_impl

from .helpers import DEBERTA_CONFIGS, deberta_checkpoint, hf_deberta


@pytest.fixture(scope="session")
def deberta(pytestconfig):
    """The module under test: mlab_tfs.deberta.solution, or .student with --impl=student."""
    return load_impl(pytestconfig, "deberta")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """name -> folder of a tiny random transformers DeBERTa-v2 checkpoint, written once per session."""
    root = tmp_path_factory.mktemp("deberta")
    return {name: deberta_checkpoint(root / name, name, seed=i) for i, name in enumerate(DEBERTA_CONFIGS)}


@pytest.fixture(scope="session")
def hf_models(checkpoints):
    """name -> transformers' DebertaV2ForMaskedLM (eager, fp32, eval), loaded once per session."""
    return {name: hf_deberta(folder) for name, folder in checkpoints.items()}
