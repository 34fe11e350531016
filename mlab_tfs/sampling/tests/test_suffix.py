"""Exercise 10: log P(suffix | prompt + completion) with the prompt's cache shared, and
filtered sampling on top of it."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.testing.compare import assert_close

from mlab_tfs.sampling.mistakes import MISTAKES as M

from .helpers import CountingModel, prompts
from .mistaken import mistaken

VOCAB = 97


def naive(model, prompt, completions, suffix):
    """Reference: each full text alone, sum of log-probabilities of the suffix tokens."""
    out = []
    for c in completions:
        text = torch.cat([prompt, torch.as_tensor(c, dtype=torch.long), suffix])[None]
        logp = torch.log_softmax(model(text).logits.float(), -1)[0]
        L, S = text.shape[1], len(suffix)
        out.append(sum(logp[t - 1, text[0, t]] for t in range(L - S, L)))
    return torch.stack(out)


@pytest.mark.exercise("suffix_scoring")
def test_score_suffix_equals_naive_scoring(sampling, model):
    prompt = prompts(VOCAB, [6], seed=40)[0]
    completions = prompts(VOCAB, [3, 0, 9, 1, 5], seed=41)  # an empty completion too
    suffix = prompts(VOCAB, [4], seed=42)[0]
    expected = naive(model, prompt, completions, suffix)
    assert_close(sampling.score_suffix(model, prompt, completions, suffix), expected, name="score_suffix", atol=1e-5,
                 mistakes={M[n]: lambda n=n: mistaken(n).score_suffix(model, prompt, completions, suffix)
                           for n in ("suffix_logits_not_shifted", "positions_restart_at_zero", "raw_logits_summed")},
                 hint="the logits at position t predict token t + 1: the suffix's first token is predicted by the "
                      "completion's last position (or the prompt's last, for an empty completion)")
    assert_close(sampling.score_suffix_naive(model, prompt, completions, suffix), expected, name="score_suffix_naive",
                 atol=1e-5)


@pytest.mark.exercise("suffix_scoring")
def test_prompt_runs_once_and_completions_in_one_batch(sampling, model):
    prompt = prompts(VOCAB, [7], seed=43)[0]
    completions = prompts(VOCAB, [2, 6, 4, 3], seed=44)
    suffix = prompts(VOCAB, [3], seed=45)[0]
    counting = CountingModel(model)
    sampling.score_suffix(counting, prompt, completions, suffix)
    assert counting.calls == [(1, 7), (4, 9)], (
        f"expected two forwards: the prompt once (1, 7), then every completion + suffix in one padded batch "
        f"(4, 6 + 3) on the prompt's cache expanded to 4 rows; got {counting.calls}"
    )


@pytest.mark.exercise("suffix_scoring")
def test_score_suffix_input_checks(sampling, model):
    prompt, suffix = torch.tensor([1, 2, 3]), torch.tensor([4])
    with pytest.raises(ValueError, match="suffix"):
        sampling.score_suffix(model, prompt, [[5]], torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="n_positions"):
        sampling.score_suffix(model, prompt, [list(range(1, 40))], suffix)


@pytest.mark.exercise("suffix_scoring")
def test_filtered_sample_ranks_by_bad_minus_good(sampling, model):
    prompt = prompts(VOCAB, [5], seed=46)[0]
    bad, good = torch.tensor([7, 8, 9]), torch.tensor([7, 8, 10])
    result = sampling.filtered_sample(model, prompt, 6, bad, good, max_new_tokens=5,
                                      generator=torch.Generator().manual_seed(0))
    assert len(result.completions) == 6 and result.scores.shape == (6,)
    expected = naive(model, prompt, result.completions, bad) - naive(model, prompt, result.completions, good)
    assert_close(result.scores, expected, name="filtered_sample scores", atol=1e-5,
                 hint="score = log P(bad suffix) - log P(good suffix)")
    assert bool((result.scores[1:] >= result.scores[:-1]).all()), "completions must be ordered lowest score first"
    again = sampling.filtered_sample(model, prompt, 6, bad, good, max_new_tokens=5,
                                     generator=torch.Generator().manual_seed(0))
    assert again.completions == result.completions, "a seeded generator must reproduce the samples"


@pytest.mark.solution_only
def test_filter_sample_command(capsys):
    from mlab_tfs.cli import main

    assert main(["filter-sample", "-n", "3", "--max-new-tokens", "4", "--prompt", "The soup"]) == 0
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines() if line.strip()[:1] in ("+", "-") and line.strip()[1:2].isdigit()]
    assert "log P(' -- and that was bad')" in out and len(lines) == 3, out
    scores = [float(line.split()[0]) for line in lines]
    assert scores == sorted(scores), "the command prints the lowest score first"


@pytest.mark.exercise("suffix_scoring")
def test_filtered_sample_cuts_each_completion_before_its_eos(sampling, model):
    """The completions are generate's rows (same seed), each cut before its first eos (eos
    and the padding after it removed), then scored and sorted."""
    prompt = prompts(VOCAB, [5], seed=47)[0]
    kw = dict(max_new_tokens=6, temperature=1.5)
    rows = sampling.generate(model, prompt.expand(8, -1), do_sample=True, pad_token_id=0,
                             generator=torch.Generator().manual_seed(3), **kw)[:, 5:]
    eos = int(rows[0, 2])  # fires in row 0 at least, after two tokens
    rows = sampling.generate(model, prompt.expand(8, -1), do_sample=True, eos_token_id=eos, pad_token_id=eos,
                             generator=torch.Generator().manual_seed(3), **kw)[:, 5:].tolist()
    expected = sorted((r[: r.index(eos)] if eos in r else r) for r in rows)
    assert any(eos in r for r in rows) and any(len(c) < 6 for c in expected), "test setup: eos fires"
    result = sampling.filtered_sample(model, prompt, 8, [7, 8], [7, 9], eos_token_id=eos,
                                      generator=torch.Generator().manual_seed(3), **kw)
    assert sorted(result.completions) == expected, (
        f"completions must be the sampled rows cut before their first eos: got {result.completions}, "
        f"expected (in some order) {expected}")
    assert all(eos not in c for c in result.completions)
    scores = naive(model, prompt, result.completions, torch.tensor([7, 8])) - naive(
        model, prompt, result.completions, torch.tensor([7, 9]))
    assert_close(result.scores, scores, name="filtered_sample scores with eos", atol=1e-5)


@pytest.mark.exercise("suffix_scoring")
def test_filtered_sample_cuts_at_the_first_of_several_eos_ids(sampling, model):
    """eos_token_id as a list, as generate takes it: each completion ends before the first of
    them; the rows are generate's with the same list (padded with the first id)."""
    prompt = prompts(VOCAB, [5], seed=47)[0]
    kw = dict(max_new_tokens=6, temperature=1.5)
    rows = sampling.generate(model, prompt.expand(8, -1), do_sample=True, pad_token_id=0,
                             generator=torch.Generator().manual_seed(3), **kw)[:, 5:]
    eos = [int(rows[0, 3]), int(rows[1, 1])]  # two ids, each firing in some row
    rows = sampling.generate(model, prompt.expand(8, -1), do_sample=True, eos_token_id=eos, pad_token_id=eos[0],
                             generator=torch.Generator().manual_seed(3), **kw)[:, 5:].tolist()
    cut = lambda r: r[: min([r.index(e) for e in eos if e in r], default=len(r))]  # noqa: E731
    expected = sorted(cut(r) for r in rows)
    assert eos[0] != eos[1] and all(any(e in r for r in rows) for e in eos), "test setup: two eos ids, both fire"
    result = sampling.filtered_sample(model, prompt, 8, [7, 8], [7, 9], eos_token_id=eos,
                                      generator=torch.Generator().manual_seed(3), **kw)
    assert sorted(result.completions) == expected, (
        f"completions must be cut before the first of the eos ids {eos}: got {result.completions}, "
        f"expected (in some order) {expected}")
    assert not any(e in c for c in result.completions for e in eos)


@pytest.mark.exercise("suffix_scoring")
def test_one_token_suffix_and_the_n_positions_boundary(sampling, model):
    """S = 1 (only the last completion position predicts it); prompt + completion + suffix
    filling n_positions exactly is allowed, one token more is not."""
    n = model.config.n_positions
    prompt = prompts(VOCAB, [5], seed=48)[0]
    completions = prompts(VOCAB, [n - 5 - 1, 0, 3], seed=49)  # the longest fills n_positions with S = 1
    suffix = torch.tensor([11])
    expected = naive(model, prompt, completions, suffix)
    assert_close(sampling.score_suffix(model, prompt, completions, suffix), expected, name="score_suffix, S = 1, full",
                 atol=1e-5)
    assert_close(sampling.score_suffix_naive(model, prompt, completions, suffix), expected,
                 name="score_suffix_naive, S = 1, full", atol=1e-5)
    for fn in (sampling.score_suffix, sampling.score_suffix_naive):
        with pytest.raises(ValueError, match="n_positions"):
            fn(model, prompt, completions, torch.tensor([11, 12]))
