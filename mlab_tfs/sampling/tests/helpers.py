"""Helpers of the sampling tests."""

from __future__ import annotations

import torch

from mlab_tfs.sampling import given, solution


def prompts(vocab_size: int, lengths: list[int], seed: int = 0, low: int = 1) -> list[torch.Tensor]:
    """Random prompts of the given lengths, ids in [low, vocab_size) (0 is kept for eos/pad)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(low, vocab_size, (n,), generator=g) for n in lengths]


def padded_batch(vocab_size: int, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (pad id 0) prompts with their attention mask, built by the solution's left_pad."""
    return solution.left_pad(prompts(vocab_size, lengths, seed), pad_token_id=0)


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square goodness of fit: the p-value of the observed counts under probs.

    Categories with probability 0 are left out of the statistic (the caller checks that they
    were never drawn); df = (categories with p > 0) - 1. The p-value is the upper tail of the
    chi-square distribution, Gamma(df / 2, rate 1/2), through torch.special.gammaincc.
    """
    support = probs > 0
    n = counts.sum()
    expected = n * probs[support].double()
    stat = ((counts[support].double() - expected) ** 2 / expected).sum()
    df = int(support.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), stat / 2))


class CountingModel(torch.nn.Module):
    """Wraps a model and records the shape of input_ids of every forward call."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config
        self.calls: list[tuple[int, ...]] = []

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False):
        self.calls.append(tuple(input_ids.shape))
        kwargs = dict(attention_mask=attention_mask, position_ids=position_ids, use_cache=use_cache)
        if past_key_values is not None:
            kwargs[given.cache_argument(self.model)] = past_key_values
        out = self.model(input_ids, **kwargs)
        cache = getattr(out, "cache", None)
        if cache is None:
            cache = getattr(out, "past_key_values", None)
        return _Out(out.logits, cache)


class _Out:
    def __init__(self, logits, past_key_values):
        self.logits = logits
        self.past_key_values = past_key_values
