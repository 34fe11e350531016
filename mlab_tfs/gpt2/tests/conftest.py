"""Fixtures of the GPT-2 tests: the implementation under test and tiny checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlab_tfs.checkpoints import read_config
from mlab_tfs.gpt2 import solution
from mlab_tfs.testing import tiny
from mlab_tfs.testing.plugin import load_impl


@pytest.fixture(scope="session")
def gpt2(pytestconfig):
    """The module under test: mlab_tfs.gpt2.solution, or .student with --impl=student."""
    return load_impl(pytestconfig, "gpt2")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """name -> folder of a tiny random transformers GPT-2 checkpoint, written once per session."""
    root = tmp_path_factory.mktemp("gpt2")
    return {name: tiny.gpt2_checkpoint(root / name, name, seed=i) for i, name in enumerate(tiny.GPT2_CONFIGS)}


@pytest.fixture(scope="session")
def base_ckpt(checkpoints):
    return checkpoints["base"]


@pytest.fixture(scope="session")
def hf_base(base_ckpt):
    return tiny.hf_gpt2(base_ckpt)


@pytest.fixture(scope="session")
def base_config(base_ckpt):
    return solution.GPT2Config.from_dict(read_config(base_ckpt))



@pytest.fixture(scope="session")
def hf_default_base(base_ckpt):
    """transformers' GPT-2 on its default attention path (sdpa), as from_pretrained gives it."""
    from .helpers import hf_default

    return hf_default(base_ckpt)


# The files of one exercise before the files that test several: check shows the first failing
# test of an exercise, which should be the one whose comparison names the mistake.
FILE_ORDER = ("test_components.py", "test_model.py", "test_loading.py", "test_kv_cache.py")
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slots = [i for i, item in enumerate(items) if Path(item.path).parent == HERE]
    def rank(item: pytest.Item) -> int:
        name = Path(item.path).name
        return FILE_ORDER.index(name) if name in FILE_ORDER else len(FILE_ORDER)

    for i, item in zip(slots, sorted((items[i] for i in slots), key=rank)):  # stable: file order kept within
        items[i] = item
