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


SUFFIXES_MISTAKES = ("completion_padding_attended", "suffix_positions_after_longest", "first_token_from_last_column",
                     "suffix_padding_scored")


def naive_each(model, prompt, completions, suffixes):
    """(K, N): the naive reference for every suffix."""
    return torch.stack([naive(model, prompt, completions, torch.as_tensor(s, dtype=torch.long)) for s in suffixes])


@pytest.mark.exercise("suffix_scoring")
def test_score_suffixes_equals_naive_scoring_for_every_suffix(sampling, model):
    """K = 3 suffixes of lengths 4, 1 and 6 after completions of lengths 3, 0, 9, 1, 5: each
    row equals scoring that suffix alone, one full forward per text."""
    prompt = prompts(VOCAB, [6], seed=40)[0]
    completions = prompts(VOCAB, [3, 0, 9, 1, 5], seed=41)
    suffixes = prompts(VOCAB, [4, 1, 6], seed=50)
    expected = naive_each(model, prompt, completions, suffixes)
    got = sampling.score_suffixes(model, prompt, completions, suffixes)
    assert got.dtype == torch.float32, f"score_suffixes must return float32, got {got.dtype}"
    assert_close(got, expected, name="score_suffixes (K, N)", atol=1e-5,
                 mistakes={M[n]: lambda n=n: mistaken(n).score_suffixes(model, prompt, completions, suffixes)
                           for n in SUFFIXES_MISTAKES + ("raw_logits_summed",)},
                 hint="row k of the result is suffix k (shape (K, N)); suffix token j of completion i sits at "
                      "position P + len(c_i) + j, and the mask hides completion i's padding slots")


@pytest.mark.exercise("suffix_scoring")
def test_score_suffixes_runs_prompt_completions_and_suffixes_once_each(sampling, model):
    """Three forwards whatever K: the prompt (1, P), the completions (N, longest), then every
    suffix after every completion (N * K, longest suffix). All completions empty: no
    completion forward, two in all."""
    prompt = prompts(VOCAB, [7], seed=43)[0]
    completions = prompts(VOCAB, [2, 6, 4, 3], seed=44)
    suffixes = prompts(VOCAB, [3, 4], seed=51)
    counting = CountingModel(model)
    got = sampling.score_suffixes(counting, prompt, completions, suffixes)
    assert counting.calls == [(1, 7), (4, 6), (8, 4)], (
        f"expected three forwards: the prompt (1, 7), the 4 completions padded to 6, then the 2 suffixes after "
        f"each completion, (4 * 2, 4), on the cache expanded to 8 rows; got {counting.calls}")
    assert_close(got, naive_each(model, prompt, completions, suffixes), name="score_suffixes, K = 2", atol=1e-5)
    counting.calls.clear()
    got = sampling.score_suffixes(counting, prompt, [[], []], suffixes)
    assert counting.calls == [(1, 7), (4, 4)], f"all completions empty: expected [(1, 7), (4, 4)], got {counting.calls}"
    assert_close(got, naive_each(model, prompt, [[], []], suffixes), name="score_suffixes, empty completions",
                 atol=1e-5)


@pytest.mark.exercise("suffix_scoring")
def test_score_suffixes_one_suffix_one_completion(sampling, model):
    """K = 1 is score_suffix (shape (1, N)); N = 1 and K = 1 together; a 2-d tensor of
    suffixes is its rows."""
    prompt = prompts(VOCAB, [4], seed=52)[0]
    completions = prompts(VOCAB, [5, 2, 0], seed=53)
    suffix = prompts(VOCAB, [3], seed=54)[0]
    got = sampling.score_suffixes(model, prompt, completions, [suffix])
    assert got.shape == (1, 3), f"K = 1, N = 3: expected shape (1, 3), got {tuple(got.shape)}"
    assert_close(got[0], sampling.score_suffix(model, prompt, completions, suffix), name="K = 1 vs score_suffix",
                 atol=1e-5)
    assert_close(got, naive_each(model, prompt, completions, [suffix]), name="K = 1 vs naive", atol=1e-5)
    one = sampling.score_suffixes(model, prompt, completions[:1], [suffix])
    assert one.shape == (1, 1)
    assert_close(one, naive_each(model, prompt, completions[:1], [suffix]), name="N = 1, K = 1", atol=1e-5)
    rows = torch.stack(prompts(VOCAB, [3, 3], seed=55))  # (K, S) = (2, 3)
    assert_close(sampling.score_suffixes(model, prompt.tolist(), [c.tolist() for c in completions], rows),
                 naive_each(model, prompt, completions, list(rows)), name="lists, and a (K, S) tensor", atol=1e-5)


@pytest.mark.exercise("suffix_scoring")
def test_score_suffixes_at_the_n_positions_boundary(sampling, model):
    """Completions of very different lengths (0 and n_positions - P - S_max), suffixes of
    lengths 1 and 3: the longest text fills n_positions exactly; one token more is a
    ValueError naming the completion and the suffix that make it."""
    n = model.config.n_positions
    prompt = prompts(VOCAB, [5], seed=56)[0]
    completions = prompts(VOCAB, [2, n - 5 - 3, 0], seed=57)
    suffixes = prompts(VOCAB, [1, 3], seed=58)
    assert_close(sampling.score_suffixes(model, prompt, completions, suffixes),
                 naive_each(model, prompt, completions, suffixes), name="score_suffixes filling n_positions",
                 atol=1e-5)
    longer = [suffixes[0], torch.cat([suffixes[1], torch.tensor([5])])]
    with pytest.raises(ValueError, match=r"completions\[1\].*suffixes\[1\].*n_positions=" + str(n)):
        sampling.score_suffixes(model, prompt, completions, longer)
    with pytest.raises(ValueError, match=r"prompt_ids.*completions\[1\].*n_positions"):
        sampling.score_suffixes(model, torch.cat([prompt, prompt[:1]]), completions, suffixes)


@pytest.mark.exercise("suffix_scoring")
def test_score_suffixes_is_causal(sampling, model):
    """Prefixes of one suffix as K = 3 suffixes: their scores are the running sums of the
    token log-probabilities (a token sees only the tokens before it). Changing the last
    token changes only the full suffix's score; changing suffix 1 never changes suffix 0's."""
    prompt = prompts(VOCAB, [5], seed=59)[0]
    completions = prompts(VOCAB, [4, 0, 7], seed=60)
    full = prompts(VOCAB, [3], seed=61)[0]
    before = sampling.score_suffixes(model, prompt, completions, [full[:1], full[:2], full])
    assert_close(before, naive_each(model, prompt, completions, [full[:1], full[:2], full]),
                 name="prefixes of one suffix", atol=1e-5)
    changed = full.clone()
    changed[2] = (changed[2] + 1) % VOCAB
    after = sampling.score_suffixes(model, prompt, completions, [full[:1], full[:2], changed])
    assert torch.equal(after[:2], before[:2]), (
        f"changing the third suffix token changed the scores of the first two prefixes: {before[:2]} -> {after[:2]}")
    assert not torch.equal(after[2], before[2]), "test setup: the changed token changes the full suffix's score"
    other = sampling.score_suffixes(model, prompt, completions, [full[:2], torch.tensor([9, 9])])
    other2 = sampling.score_suffixes(model, prompt, completions, [full[:2], torch.tensor([9, 10])])
    assert torch.equal(other[0], other2[0]), "suffix 1 changed the scores of suffix 0: the rows must not see each other"


@pytest.mark.exercise("suffix_scoring")
def test_score_suffixes_input_checks(sampling, model):
    prompt = torch.tensor([1, 2, 3])
    cases = [
        ([], ValueError, "suffixes must hold at least one suffix"),
        ([[4], []], ValueError, r"suffixes\[1\] must hold at least one token"),
        ([[4], [VOCAB]], ValueError, r"suffixes\[1\]"),
        ([[4], [1.5]], ValueError, r"suffixes\[1\]"),
        ([4, 5], TypeError, "flat list of ints"),
        ("ab", TypeError, "suffixes must be a list"),
        (torch.tensor([4, 5]), ValueError, "2-d tensor"),
        (None, TypeError, "suffixes must be a list"),
    ]
    for suffixes, error, match in cases:
        with pytest.raises(error, match=match):
            sampling.score_suffixes(model, prompt, [[5]], suffixes)
    with pytest.raises(ValueError, match="completions must hold at least one"):
        sampling.score_suffixes(model, prompt, [], [[4]])
    with pytest.raises(ValueError, match="prompt_ids must hold at least one token"):
        sampling.score_suffixes(model, [], [[5]], [[4]])
    with pytest.raises(ValueError, match=r"suffixes\[0\] is on meta but the model is on cpu"):
        sampling.score_suffixes(model, prompt, [[5]], [torch.empty(2, dtype=torch.long, device="meta")])


@pytest.fixture(scope="module")
def llamas(tmp_path_factory):
    """Our Llama and transformers' on the same tiny random weights (grouped-query attention)."""
    from mlab_tfs.llama.solution import LlamaForCausalLM
    from mlab_tfs.testing import tiny

    folder = tiny.llama_checkpoint(tmp_path_factory.mktemp("suffix_llama"), "llama/gqa", seed=3)
    return {"ours": LlamaForCausalLM.from_pretrained(folder).eval(), "hf": tiny.hf_llama(folder)}


@pytest.mark.exercise("suffix_scoring")
@pytest.mark.parametrize("which", ["ours", "hf"])
def test_score_suffixes_on_llama(sampling, llamas, which):
    """Rotary positions and our Llama's KVCache (transformers' Cache on theirs): the suffix's
    positions P + len(c_i) + j rotate its queries and keys as in the naive text."""
    model = llamas[which]
    prompt = prompts(VOCAB, [5], seed=62)[0]
    completions = prompts(VOCAB, [6, 0, 1, 9], seed=63)
    suffixes = prompts(VOCAB, [2, 5, 1], seed=64)
    assert_close(sampling.score_suffixes(model, prompt, completions, suffixes),
                 naive_each(model, prompt, completions, suffixes), name=f"score_suffixes on {which} Llama", atol=1e-5)


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


@pytest.mark.exercise("suffix_scoring")
def test_filtered_sample_scores_both_suffixes_in_one_pass(sampling, model):
    """After generate's forwards, three: the prompt, the completions, then both suffixes
    after every completion (2N rows); a suffix that cannot fit after max_new_tokens is a
    ValueError before anything runs."""
    prompt = prompts(VOCAB, [5], seed=46)[0]
    counting = CountingModel(model)
    result = sampling.filtered_sample(counting, prompt, 6, [7, 8, 9], [7, 8], max_new_tokens=4,
                                      generator=torch.Generator().manual_seed(0))
    longest = max(len(c) for c in result.completions)
    assert counting.calls[-3:] == [(1, 5), (6, longest), (12, 3)], (
        f"the scoring forwards should be the prompt (1, 5), the completions (6, {longest}) and both suffixes after "
        f"each, (12, 3); got {counting.calls[-3:]}")
    n = model.config.n_positions
    counting.calls.clear()
    with pytest.raises(ValueError, match=r"max_new_tokens=%d.*bad_suffix_ids.*n_positions=%d" % (n - 7, n)):
        sampling.filtered_sample(counting, prompt, 2, [7, 8, 9], [7], max_new_tokens=n - 7)
    assert counting.calls == [], f"the length check must come before sampling; the model ran {counting.calls}"
    sampling.filtered_sample(model, prompt, 2, [7, 8], [7], max_new_tokens=n - 7,
                             generator=torch.Generator().manual_seed(0))  # exactly n_positions: allowed


@pytest.mark.solution_only
def test_suffix_benchmark_checks_and_times_the_three_paths(tmp_path, monkeypatch, capsys):
    """benchmarks/sampling_suffix_scoring.py on a tiny random GPT-2 (CPU): for each N and
    each model a row with the three medians, the speed-ups computed from them, and the
    largest difference from naive scoring found by the check before timing."""
    import json
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[3] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    import sampling_suffix_scoring as script

    out = tmp_path / "suffix.json"
    monkeypatch.setattr(sys, "argv", ["sampling_suffix_scoring.py", "--model", "tiny", "-n", "2", "3",
                                      "--prompt-len", "6", "--completion-len", "4", "--suffix-len", "2",
                                      "--repeats", "1", "--threads", str(torch.get_num_threads()), "--out", str(out)])
    script.main()
    data = json.loads(out.read_text())
    assert data["complete"] and data["suffix_lens"] == [2, 3] and data["prompt_len"] == 6
    rows = {(r["n"], r["model"]): r for r in data["rows"]}
    assert sorted(rows) == [(2, "ours"), (2, "transformers"), (3, "ours"), (3, "transformers")]
    for r in rows.values():
        assert r["max_abs_diff"] <= 1e-5, r
        assert r["speedup"] == r["naive_s"] / r["one_pass_s"]
        assert r["one_pass_vs_two_calls"] == r["two_calls_s"] / r["one_pass_s"]
        assert [len(r["times_s"][p]) for p in ("naive", "two_calls", "one_pass")] == [1, 1, 1]
    assert "one pass (s)" in capsys.readouterr().out
