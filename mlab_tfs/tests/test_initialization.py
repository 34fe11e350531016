"""init_normal_weights: transformers' _init_weights scheme, drawn in modules() order."""

from __future__ import annotations

import torch
from torch import nn

from mlab_tfs.initialization import init_normal_weights


class Embedding(nn.Module):  # a learner's own table: recognised by its class name
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4, 3))


def _toy():
    m = nn.Module()
    m.lin = nn.Linear(3, 2)
    m.conv = nn.Conv1d(2, 2, 3)
    m.table = nn.Embedding(5, 3, padding_idx=1)
    m.own = Embedding()
    m.ln = nn.LayerNorm(3)
    with torch.no_grad():
        m.ln.weight.fill_(2.0)
        m.ln.bias.fill_(0.5)
    return m


def test_init_normal_weights_equals_the_draws_by_hand():
    m = _toy()
    torch.manual_seed(3)
    init_normal_weights(m, std=0.2)
    torch.manual_seed(3)
    expected = [torch.empty_like(p).normal_(0.0, 0.2) for p in (m.lin.weight, m.conv.weight, m.table.weight,
                                                                 m.own.weight)]
    expected[2][1] = 0.0  # the padding row
    for got, want in zip((m.lin.weight, m.conv.weight, m.table.weight, m.own.weight), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not m.lin.bias.any() and not m.conv.bias.any()
    assert torch.equal(m.ln.weight, torch.full((3,), 2.0)) and torch.equal(m.ln.bias, torch.full((3,), 0.5))
