"""Fixtures of the BERT tests: the implementation under test and tiny checkpoints."""

from __future__ import annotations

from pathlib import Path

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


# The files in the order their tests should run: within each exercise, the tests that explain a
# mistake best come first (with --maxfail=1, mlab-tfs check shows the first failure only).
FILE_ORDER = ["test_components.py", "test_model.py", "test_heads.py", "test_loading.py", "test_minilm.py",
              "test_config.py", "test_hooks.py"]


def pytest_collection_modifyitems(items):
    """Reorder this folder's tests by FILE_ORDER (stable within a file), leaving other tests in place."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if Path(item.path).parent == here]
    rank = {name: i for i, name in enumerate(FILE_ORDER)}
    ordered = sorted((items[i] for i in slots), key=lambda item: rank.get(Path(item.path).name, len(rank)))
    for i, item in zip(slots, ordered):
        items[i] = item
