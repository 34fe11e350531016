"""Exercise 5: repeated random tokens, and the induction score by its definition: on patterns
built by hand (placed in the cache through a hook) and on each model's own patterns."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.interp.mistakes import MISTAKES
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.mistakes import likely

from .reference import GPT2, LLAMA, MODELS, hf_run, n_heads, n_layers

pytestmark = pytest.mark.exercise("induction_scores")


def test_repeated_tokens_repeat_one_seeded_random_half(interp):
    tokens = interp.repeated_tokens(50, 7, batch=3, seed=4)
    assert tokens.shape == (3, 14) and tokens.dtype == torch.long
    assert torch.equal(tokens[:, :7], tokens[:, 7:]), likely(MISTAKES["halves_drawn_separately"])
    expected = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(4))
    assert torch.equal(tokens[:, :7], expected), "r should be torch.randint(0, vocab_size, (batch, seq_len)) " \
                                                 "drawn from torch.Generator().manual_seed(seed)"
    assert torch.equal(interp.repeated_tokens(50, 7, batch=3, seed=4), tokens)
    assert not torch.equal(interp.repeated_tokens(50, 7, batch=3, seed=5), tokens)
    many = interp.repeated_tokens(5, 400, seed=0)
    assert int(many.min()) == 0 and int(many.max()) == 4  # the whole range [0, vocab_size), no more
    for bad in ((0, 7), (50, 0), (50, -1)):
        with pytest.raises(ValueError):
            interp.repeated_tokens(*bad)
    with pytest.raises(ValueError, match="batch"):
        interp.repeated_tokens(50, 3, batch=0)


def by_definition(pattern: torch.Tensor, L: int, first_query: int | None = None, offset: int = 1,
                  reduce: str = "mean") -> torch.Tensor:
    """mean over b and t in [L, 2L) of pattern[b, h, t, t - L + offset]: (nh,) (variants: the mistakes)."""
    first = L if first_query is None else first_query
    rows = [pattern[:, :, t, t - L + offset] for t in range(first, 2 * L)]  # each (B, nh)
    stacked = torch.stack(rows, 0)  # (queries, B, nh)
    return stacked.mean((0, 1)) if reduce == "mean" else stacked.sum(0).mean(0)


def _handmade(B: int, nh: int, L: int) -> torch.Tensor:
    """Head 0 a perfect induction head, 1 a duplicate-token head (key t - L), 2 uniform over the
    keys it may see, 3 a previous-token head; rows sum to 1 and respect the causal mask."""
    T = 2 * L
    p = torch.zeros(B, nh, T, T)
    for t in range(T):
        p[:, 0, t, t - L + 1 if t >= L else 0] = 1.0
        p[:, 1, t, t - L if t >= L else t] = 1.0
        p[:, 2, t, :t + 1] = 1.0 / (t + 1)
        p[:, 3, t, max(t - 1, 0)] = 1.0
    return p


@pytest.mark.parametrize("name", [GPT2, LLAMA])
def test_scores_of_handmade_patterns(interp, models, name):
    ours, _ = models[name]
    L, B, nh = 5, 2, n_heads(ours)
    tokens = interp.repeated_tokens(ours.config.vocab_size, L, batch=B, seed=1)
    made = _handmade(B, nh, L)
    with ours.hooks([("blocks.1.attn.hook_pattern", lambda pattern, hook: made)]):
        scores = interp.induction_scores(ours, tokens)
    assert scores.shape == (n_layers(ours), nh) and scores.dtype == torch.float32
    uniform = sum(1.0 / (t + 1) for t in range(L, 2 * L)) / L
    expected = torch.tensor([1.0, 0.0, uniform, 0.0])
    mistakes = {MISTAKES["key_at_t_minus_l"]: by_definition(made, L, offset=0),
                MISTAKES["queries_from_l_minus_1"]: by_definition(made, L, first_query=L - 1),
                MISTAKES["summed_not_averaged"]: by_definition(made, L, reduce="sum")}
    assert_close(scores[1], expected, name=f"{name} induction scores of hand-built heads (layer 1)", atol=1e-6,
                 mistakes=mistakes)


@pytest.mark.parametrize("name", MODELS)
def test_scores_by_the_definition_on_transformers_patterns(interp, models, name):
    ours, hf = models[name]
    L = 6
    tokens = interp.repeated_tokens(ours.config.vocab_size, L, batch=3, seed=2)
    out = hf_run(hf, tokens)
    expected = torch.stack([by_definition(p, L) for p in out.attentions])  # (n_layer, nh)
    mistakes = {MISTAKES["key_at_t_minus_l"]: torch.stack([by_definition(p, L, offset=0) for p in out.attentions]),
                MISTAKES["queries_from_l_minus_1"]: torch.stack([by_definition(p, L, first_query=L - 1)
                                                                 for p in out.attentions]),
                MISTAKES["summed_not_averaged"]: torch.stack([by_definition(p, L, reduce="sum")
                                                              for p in out.attentions]),
                MISTAKES["first_sequence_only"]: torch.stack([by_definition(p[:1], L) for p in out.attentions])}
    assert_close(interp.induction_scores(ours, tokens), expected, name=f"{name} induction_scores", atol=1e-6,
                 mistakes=mistakes)


def test_the_shortest_repeat(interp, models):
    """L = 1: the one query t = 1 reads key 1, itself."""
    ours, hf = models[GPT2]
    tokens = torch.tensor([[4, 4], [9, 9]])
    expected = torch.stack([p[:, :, 1, 1].mean(0) for p in hf_run(hf, tokens).attentions])
    assert_close(interp.induction_scores(ours, tokens), expected, name="induction_scores of [[4, 4], [9, 9]]")


def test_induction_scores_refuse_what_is_not_a_repeat(interp, models):
    ours, _ = models[GPT2]
    good = interp.repeated_tokens(ours.config.vocab_size, 4, batch=2)
    changed = good.clone()
    changed[1, 6] = (changed[1, 6] + 1) % ours.config.vocab_size
    for bad, match in ((changed, "position 6"), (good[:, :-1], "even"), (good[0], "2-D"),
                       (good.float(), "integer"), (good + ours.config.vocab_size, r"\[0, ")):
        with pytest.raises((ValueError, TypeError), match=match):
            interp.induction_scores(ours, bad)
