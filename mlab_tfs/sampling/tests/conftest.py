"""Fixtures of the sampling tests: the implementation under test and tiny models.

Every sampler is run on two models with the same weights: our GPT-2 (the gpt2 part's
solution, its KVCache) and transformers' GPT2LMHeadModel (a DynamicCache).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlab_tfs.gpt2.solution import GPT2LMHeadModel
from mlab_tfs.testing import tiny
from mlab_tfs.testing.plugin import load_impl
from mlab_tfs.testing.ordering import reorder_first

MODEL_KINDS = ("ours", "hf")


@pytest.fixture(scope="session")
def sampling(pytestconfig):
    """The module under test: mlab_tfs.sampling.solution, or .student with --impl=student."""
    return load_impl(pytestconfig, "sampling")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    return {name: tiny.gpt2_checkpoint(root / name, name, seed=10 + i)
            for i, name in enumerate(("base", "deep_narrow_heads"))}


@pytest.fixture(scope="session")
def model_pairs(checkpoints):
    """checkpoint name -> {"ours": our GPT-2, "hf": transformers' GPT-2}, same weights, eval mode."""
    return {name: {"ours": GPT2LMHeadModel.from_pretrained(folder), "hf": tiny.hf_gpt2(folder)}
            for name, folder in checkpoints.items()}


@pytest.fixture(params=MODEL_KINDS)
def kind(request):
    return request.param


@pytest.fixture
def model(model_pairs, kind):
    """The base checkpoint as our model and as transformers' (parametrized)."""
    return model_pairs["base"][kind]


@pytest.fixture
def hf_model(model_pairs):
    return model_pairs["base"]["hf"]


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


# The tests of what each exercise computes run before the argument checks, so that the first
# failure of an exercise (what `mlab-tfs check` shows) is one that can name the mistake.
_FIRST = ("test_generate.py", "test_processors.py", "test_beam_search.py", "test_two_contexts.py", "test_suffix.py")


def pytest_collection_modifyitems(items):
    reorder_first(items, Path(__file__).parent, _FIRST)
