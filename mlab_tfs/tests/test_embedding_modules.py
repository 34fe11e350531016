"""get_input_embeddings() and get_output_embeddings() name the modules transformers' own
classes name, on our models and through as_transformers alike (the adapter asks our model):
the same path in the model, the same weights. transformers' DebertaV2ForMaskedLM without
legacy answers ``lm_predictions.lm_head.dense``, not None."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.bridge import as_transformers
from mlab_tfs.testing.plugin import load_impl
from mlab_tfs.tests.bridge_cases import CASES, ours, theirs, write_checkpoints


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_checkpoints(tmp_path_factory.mktemp("embeddings"))


def _path(model: torch.nn.Module, module: torch.nn.Module | None) -> str | None:
    """The name of module within model (None for None)."""
    if module is None:
        return None
    names = [name for name, m in model.named_modules(remove_duplicate=False) if m is module]
    assert names, f"{type(module).__name__} is not a submodule of {type(model).__name__}"
    return names[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_embedding_modules_are_transformers(case, folders, pytestconfig):
    folder = folders[case.checkpoint]
    model = ours(load_impl(pytestconfig, case.part), case, folder)
    hf = theirs(case, folder)
    adapter = as_transformers(model)
    for method in ("get_input_embeddings", "get_output_embeddings"):
        expected = getattr(hf, method)()
        got = getattr(model, method)()
        assert getattr(adapter, method)() is got, f"{case.id}: the adapter's {method} is not our model's"
        assert _path(model, got) == _path(hf, expected), f"{case.id} {method}"
        if expected is not None:
            assert torch.equal(got.weight, expected.weight), f"{case.id} {method}: weights differ"
    if case.checkpoint == "deberta_v3":  # the case whose answer is not the tied head
        assert _path(model, model.get_output_embeddings()) == "lm_predictions.lm_head.dense"
