"""Fixtures of the GPT-2 tests: the implementation under test and tiny checkpoints."""

from __future__ import annotations

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
