"""Fixtures of the interpretability tests: the implementation under test and our GPT-2 and
Llama on tiny seeded random checkpoints, each beside transformers' model of the same weights."""

from __future__ import annotations

import pytest

from mlab_tfs.gpt2 import GPT2LMHeadModel
from mlab_tfs.llama import LlamaForCausalLM
from mlab_tfs.testing import tiny
from mlab_tfs.testing.plugin import load_impl

from .reference import MODELS


@pytest.fixture(scope="session")
def interp(pytestconfig):
    """The module under test: mlab_tfs.interp.solution, or .student with --impl=student."""
    return load_impl(pytestconfig, "interp")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """name ("gpt2/base", "llama/gqa", ...) -> folder of a tiny random transformers checkpoint."""
    root = tmp_path_factory.mktemp("interp")
    folders = {}
    for seed, name in enumerate(MODELS):
        family, config = name.split("/", 1)
        folder = root / name.replace("/", "_")
        folders[name] = (tiny.gpt2_checkpoint(folder, config, seed=seed) if family == "gpt2" else
                         tiny.llama_checkpoint(folder, name, seed=seed))
    return folders


@pytest.fixture(scope="session")
def models(checkpoints):
    """name -> (ours, transformers'), both fp32 in eval mode, ours on the hand-written attention
    path (its patterns are what transformers' eager path returns)."""
    out = {}
    for name, folder in checkpoints.items():
        if name.startswith("gpt2/"):
            ours, hf = GPT2LMHeadModel.from_pretrained(folder), tiny.hf_gpt2(folder)
        else:
            ours, hf = LlamaForCausalLM.from_pretrained(folder), tiny.hf_llama(folder)
        out[name] = (ours.eval(), hf)
    return out
