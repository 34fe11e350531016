"""What the part gives: the models' layout, eval mode without gradients that puts the
training flags back, and the argument checks, each error naming its argument."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.interp import given

from .reference import GPT2, GPT2_UNTIED, LLAMA, LLAMA_BIAS, QWEN3, random_ids

# name -> (n_layer, n_head, head_dim, centred final norm, learned positions), from tiny.py's configs
SHAPES = {GPT2: (2, 4, 8, True, True), GPT2_UNTIED: (2, 1, 24, True, True), LLAMA: (2, 4, 8, False, False),
          LLAMA_BIAS: (3, 3, 8, False, False), QWEN3: (2, 4, 12, False, False)}


@pytest.mark.parametrize("name", list(SHAPES))
def test_layout_reads_both_families(models, name):
    ours, hf = models[name]
    lay = given.layout(ours)
    assert (lay.n_layer, lay.n_head, lay.head_dim, lay.centred, lay.has_pos_embed) == SHAPES[name]
    assert lay.vocab_size == hf.config.vocab_size and len(lay.out_proj) == lay.n_layer
    assert lay.unembed is ours.lm_head
    assert tuple(lay.out_proj[0].weight.shape) == (hf.config.hidden_size, lay.n_head * lay.head_dim)


def test_layout_refuses_other_modules():
    with pytest.raises(TypeError, match="model must be"):
        given.layout(torch.nn.Linear(3, 3))
    with pytest.raises(TypeError, match="model must be"):
        given.layout("gpt2")


def test_evaluating_puts_every_flag_back(models):
    ours, _ = models[GPT2]
    ours.train()
    ours.transformer.h[0].eval()  # a mixed state comes back as it was
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with given.evaluating(ours):
                assert not any(m.training for m in ours.modules()) and not torch.is_grad_enabled()
                raise RuntimeError("inside")
        assert ours.training and not ours.transformer.h[0].training and ours.transformer.h[1].training
        assert torch.is_grad_enabled()
    finally:
        ours.eval()


def test_argument_checks_name_the_argument():
    ids = random_ids(10, (2, 3))
    assert given.check_ids("ids", ids.int(), 10).dtype == torch.long
    for bad, error, match in ((ids.tolist(), TypeError, "ids must be"), (ids.float(), TypeError, "integer"),
                              (ids[0], ValueError, "2-D"), (ids[:, :0], ValueError, "2-D"),
                              (ids + 10, ValueError, r"\[0, 10\)"), (ids - 10, ValueError, r"\[0, 10\)")):
        with pytest.raises(error, match=match):
            given.check_ids("ids", bad, 10)
    assert given.check_layer("layer", 2, 3) == 2
    for bad, error in ((3, ValueError), (-1, ValueError), (True, TypeError), ("0", TypeError)):
        with pytest.raises(error, match="layer"):
            given.check_layer("layer", bad, 3)
    assert given.check_token_choice("correct", torch.tensor(4), 10) == 4
    for bad, error in ((10, ValueError), (torch.tensor([1.0]), TypeError), (None, TypeError), (False, TypeError)):
        with pytest.raises(error, match="correct"):
            given.check_token_choice("correct", bad, 10)
    with pytest.raises(ValueError, match="0-d"):
        given.check_metric_value(torch.zeros(2))
    with pytest.raises(TypeError, match="0-d"):
        given.check_metric_value(1.0)


def test_check_repeated_finds_the_first_difference():
    ids = torch.tensor([[1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6]])
    checked, L = given.check_repeated(ids, 10)
    assert L == 3 and torch.equal(checked, ids)
    ids[1, 4] = 9
    with pytest.raises(ValueError, match="position 4 differs from position 1"):
        given.check_repeated(ids, 10)
