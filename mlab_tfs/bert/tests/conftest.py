"""Fixtures of the BERT tests: the implementation under test and tiny checkpoints."""

from __future__ import annotations

import pytest

from mlab_tfs.testing import tiny
from mlab_tfs.testing.plugin import load_impl


@pytest.fixture(scope="session")
def bert(pytestconfig):
    """The module under test: mlab_tfs.bert.solution, or .student with --impl=student."""
    return load_impl(pytestconfig, "bert")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """checkpoint(name, head) -> folder of a tiny random transformers BERT, written once per session.

    head: "model", "mlm", "pretraining" or "classifier" (see tiny.bert_checkpoint).
    """
    root = tmp_path_factory.mktemp("bert")
    written: dict[tuple[str, str], object] = {}
    names = list(tiny.BERT_CONFIGS)

    def get(name: str = "base", head: str = "model"):
        if (name, head) not in written:
            written[name, head] = tiny.bert_checkpoint(root / f"{name}-{head}", name, seed=names.index(name), head=head)
        return written[name, head]

    return get


@pytest.fixture(scope="session")
def hf(checkpoint):
    """hf(name, head) -> transformers' model of that checkpoint (eager attention, eval mode), cached."""
    loaded: dict[tuple[str, str], object] = {}

    def get(name: str = "base", head: str = "model"):
        if (name, head) not in loaded:
            loaded[name, head] = tiny.hf_bert(checkpoint(name, head), head)
        return loaded[name, head]

    return get
