"""Exercises 2-5: logits processors against transformers' own, and sampling statistics."""

from __future__ import annotations

import pytest
import torch
from transformers.generation import logits_process as lp

from mlab_tfs.testing.compare import assert_close

from mlab_tfs.sampling.mistakes import MISTAKES as M
from mlab_tfs.testing.mistakes import likely

from .helpers import chi_square_p_value
from .mistaken import mistaken

V = 50


def random_logits(seed: int, B: int = 6, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(B, V, generator=torch.Generator().manual_seed(seed)) * scale


def random_ids(seed: int, B: int = 6, L: int = 12, vocab: int = V) -> torch.Tensor:
    # A small vocabulary of ids so that repeats (and repeated n-grams) are common.
    return torch.randint(0, vocab, (B, L), generator=torch.Generator().manual_seed(seed))


def assert_masking_equal(actual, expected, name, hint=None, mistakes=None):
    """Masking processors must agree exactly: same -inf positions, same kept values. mistakes:
    {Mistake or its name: its output, or a function computing it}; one that keeps the same
    tokens as actual, and puts the same values where the reference removes a token (so that
    "set to 0" is not said of a -1e9 or of no filtering at all), is named."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    assert isinstance(actual, torch.Tensor) and actual.shape == expected.shape, (
        f"{name}: expected a tensor of shape {tuple(expected.shape)}, got "
        f"{tuple(actual.shape) if isinstance(actual, torch.Tensor) else type(actual).__name__}"
    )
    kept_a, kept_e = torch.isfinite(actual), torch.isfinite(expected)
    if not torch.equal(kept_a, kept_e):
        lines = [f"{name}: a different set of tokens is kept ({int(kept_a.sum())} kept, reference keeps {int(kept_e.sum())})"]
        for what, cand in (mistakes or {}).items():
            try:
                cand = cand() if callable(cand) else cand
            except Exception:  # noqa: BLE001  (a mistake that cannot run on these inputs does not match)
                continue
            if (cand.shape == actual.shape and torch.equal(kept_a, torch.isfinite(cand))
                    and torch.equal(actual[~kept_e], cand[~kept_e])):
                lines.append(f"  likely cause: your output matches what {M[what] if isinstance(what, str) else what} gives")
                break
        removed = actual[~kept_e & kept_a]
        if len(removed) and bool((removed == removed[0]).all()) and torch.equal(actual[kept_e], expected[kept_e]):
            lines.append(f"  the tokens to remove hold {float(removed[0])} in yours: a removed token's logit is -inf, "
                         "so that its probability is exactly 0")
        if hint:
            lines.append(f"  hint: {hint}")
        raise AssertionError("\n".join(lines))
    assert bool((actual[~kept_a] == float("-inf")).all()), f"{name}: removed tokens must be set to -inf"
    assert torch.equal(actual[kept_a], expected[kept_e]), f"{name}: kept logits must be left unchanged"


def exactly_k_of(actual, expected, k):
    """What keeping exactly k indices gives, as far as it shows in actual: actual itself when
    every row keeps min(k, V) tokens, all of them kept by the reference (ties broken any way);
    otherwise the solution-free form of that mistake (the k indices of torch.topk)."""
    kept_a, kept_e = torch.isfinite(actual), torch.isfinite(expected)
    if bool((kept_a.sum(-1) == min(k, expected.shape[-1])).all()) and not bool((kept_a & ~kept_e).any()):
        return actual
    top = torch.topk(expected.nan_to_num(neginf=-1e30), min(k, expected.shape[-1]), dim=-1).indices
    return expected.masked_fill(~torch.zeros_like(kept_e).scatter(-1, top, True), float("-inf"))


# ----------------------------------------------------------------------------- 2. temperature


@pytest.mark.exercise("temperature")
@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_temperature_matches_transformers(sampling, t):
    logits = random_logits(0)
    expected = lp.TemperatureLogitsWarper(float(t))(None, logits.clone())
    assert_close(sampling.apply_temperature(logits, t), expected, name="apply_temperature", atol=0,
                 mistakes={M["temperature_multiplied"]: logits * t},
                 hint="divide the logits by the temperature, as transformers does (logits / temperature: multiplying by 1 / temperature rounds differently, and the samplers must match it token for token)")


@pytest.mark.exercise("temperature")
@pytest.mark.parametrize("t", [0.0, -1.0])
def test_temperature_must_be_positive(sampling, t):
    with pytest.raises(ValueError, match="temperature"):
        sampling.apply_temperature(random_logits(0), t)


@pytest.mark.exercise("temperature")
def test_sample_token_follows_softmax(sampling):
    """20000 draws from one row: the counts fit softmax(logits) (chi-square, p > 1e-3)."""
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, float("-inf"), -3.0, 1.5])
    n = 20_000
    draws = sampling.sample_token(logits.expand(n, -1), torch.Generator().manual_seed(0))
    assert draws.shape == (n,), f"sample_token returns one id per row: expected shape ({n},), got {tuple(draws.shape)}"
    counts = torch.bincount(draws, minlength=len(logits))
    probs = torch.softmax(logits, -1)
    argmax = f"\n  {likely(M['argmax_not_sampled'])}" if bool((draws == logits.argmax()).all()) else ""
    assert counts[5] == 0, "a token with logit -inf was drawn"
    p = chi_square_p_value(counts, probs)
    # A correct sampler fails this one time in a thousand (but the seed is fixed, so never).
    assert p > 1e-3, (
        f"the draws do not follow softmax(logits): chi-square p-value {p:.2g} (counts {counts.tolist()}, "
        f"expected {(n * probs).round().tolist()}). Sample with torch.multinomial(softmax(logits), 1)" + argmax
    )


@pytest.mark.exercise("temperature")
def test_sample_token_is_reproducible_with_a_generator(sampling):
    logits = random_logits(1, B=64)
    a = sampling.sample_token(logits, torch.Generator().manual_seed(3))
    b = sampling.sample_token(logits, torch.Generator().manual_seed(3))
    assert torch.equal(a, b), ("the same seeded generator must give the same draws: pass generator= to multinomial"
                               f"\n  {likely(M['generator_ignored'])}")


# ----------------------------------------------------------------------------- 3. top-k


@pytest.mark.exercise("top_k")
@pytest.mark.parametrize("k", [1, 5, 49, 50, 80])
def test_top_k_matches_transformers(sampling, k):
    logits = random_logits(2)
    logits[0, :10] = 1.25  # ties at the k-th value: all kept
    expected = lp.TopKLogitsWarper(top_k=k)(None, logits.clone())
    kth = torch.sort(logits, descending=True).values[:, min(k, V) - 1 : min(k, V)]
    out = sampling.top_k_filter(logits, k)
    mistakes = {M["kth_value_dropped"]: logits.masked_fill(logits <= kth, float("-inf")),
                M["ties_of_the_kth_dropped"]: lambda: exactly_k_of(out, expected, k),
                M["masked_with_zero"]: logits.masked_fill(logits < kth, 0.0)}
    assert_masking_equal(out, expected, "top_k_filter", mistakes=mistakes,
                         hint="keep logits >= the k-th largest (torch.topk(...).values[..., -1:]); k > V keeps all")


@pytest.mark.exercise("top_k")
def test_top_k_zero_keeps_everything_and_negative_is_refused(sampling):
    logits = random_logits(3)
    assert torch.equal(sampling.top_k_filter(logits, 0), logits), "top_k = 0 means no top-k filtering"
    with pytest.raises(ValueError, match="top_k"):
        sampling.top_k_filter(logits, -1)


# ----------------------------------------------------------------------------- 4. top-p, min-p


@pytest.mark.exercise("top_p")
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.999, 1.0])
@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_top_p_matches_transformers(sampling, p, scale):
    logits = random_logits(4, scale=scale)
    expected = lp.TopPLogitsWarper(top_p=p)(None, logits.clone())
    probs = logits.softmax(-1)
    s, order = probs.sort(descending=True, dim=-1)
    drop_exclusive = (s.cumsum(-1) > p).scatter(-1, order, s.cumsum(-1) > p)
    drop_inclusive = (s.cumsum(-1) >= p).scatter(-1, order, s.cumsum(-1) >= p)  # written with >=
    drop_exclusive[..., :] &= ~torch.zeros_like(drop_exclusive).scatter(-1, order[:, :1], True)  # the top one stays
    drop_inclusive[..., :] &= ~torch.zeros_like(drop_inclusive).scatter(-1, order[:, :1], True)
    mistakes = {M["crossing_token_dropped"]: logits.masked_fill(drop_exclusive, float("-inf")),
                "crossing_token_dropped": logits.masked_fill(drop_inclusive, float("-inf")),
                M["own_probability_threshold"]: logits.masked_fill(probs < p, float("-inf")),
                "own_probability_threshold": logits.masked_fill((probs < p) & (probs < probs.amax(-1, keepdim=True)),
                                                                float("-inf"))}  # the top token kept
    assert_masking_equal(sampling.top_p_filter(logits, p), expected, "top_p_filter", mistakes=mistakes,
                         hint="sort, cumulate softmax probabilities, keep the smallest prefix whose mass reaches "
                              "top_p (and always the most likely token), scatter the mask back to vocabulary order")


@pytest.mark.exercise("top_p")
@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), float("inf")])
def test_top_p_outside_0_1_is_refused(sampling, p):
    with pytest.raises(ValueError, match="top_p"):
        sampling.top_p_filter(random_logits(0), p)


@pytest.mark.exercise("top_p")
@pytest.mark.parametrize("min_p", [0.0, 0.05, 0.2, 0.9, 1.0])
def test_min_p_matches_transformers(sampling, min_p):
    logits = random_logits(5)
    expected = lp.MinPLogitsWarper(min_p=min_p)(None, logits.clone())
    probs = logits.softmax(-1)
    absolute = logits.masked_fill(probs < min_p, float("-inf"))
    absolute = torch.where(probs >= probs.amax(-1, keepdim=True), logits, absolute)  # the top one kept
    assert_masking_equal(sampling.min_p_filter(logits, min_p), expected, "min_p_filter",
                         mistakes={M["min_p_absolute"]: logits.masked_fill(probs < min_p, float("-inf")),
                                   "min_p_absolute": absolute,
                                   "min_p_on_logits": torch.where(logits >= logits.amax(-1, keepdim=True), logits,
                                                                  logits.masked_fill(logits < min_p * logits.amax(
                                                                      -1, keepdim=True), float("-inf")))},
                         hint="drop tokens with probability < min_p * (the largest probability in the row)")


@pytest.mark.exercise("top_p")
def test_filtered_sampling_statistics(sampling):
    """Temperature, then top-k, then top-p: 20000 draws fit the processed distribution."""
    logits = torch.tensor([[3.0, 2.5, 2.0, 1.0, 0.5, 0.0, -0.5, -2.0, 1.8, 0.2]])
    processed = sampling.top_p_filter(sampling.top_k_filter(sampling.apply_temperature(logits, 0.7), 6), 0.9)
    expected = lp.TopPLogitsWarper(0.9)(None, lp.TopKLogitsWarper(6)(None, lp.TemperatureLogitsWarper(0.7)(None, logits)))
    assert_masking_equal(processed, expected, "top_p(top_k(temperature(logits)))")
    n = 20_000
    draws = sampling.sample_token(processed.expand(n, -1), torch.Generator().manual_seed(1))
    counts = torch.bincount(draws, minlength=logits.shape[1])
    probs = torch.softmax(expected[0], -1)
    assert int(counts[probs == 0].sum()) == 0, "a filtered-out token was drawn"
    p = chi_square_p_value(counts, probs)
    assert p > 1e-3, f"draws do not fit the processed distribution: chi-square p-value {p:.2g}"


# ----------------------------------------------------------------------------- 5. penalties


@pytest.mark.exercise("penalties")
@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 3.0])
def test_repetition_penalty_matches_transformers(sampling, penalty):
    logits, ids = random_logits(6), random_ids(6)
    expected = lp.RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone())
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter(1, ids, True)
    counts = torch.zeros_like(logits).scatter_add(1, ids, torch.ones_like(ids, dtype=logits.dtype))
    mistakes = {M["negative_logits_divided"]: torch.where(seen, logits / penalty, logits),
                M["penalty_inverted"]: torch.where(seen, torch.where(logits > 0, logits * penalty, logits / penalty),
                                                   logits),
                M["penalty_per_occurrence"]: torch.where(logits < 0, logits * penalty**counts, logits / penalty**counts)}
    assert_close(sampling.apply_repetition_penalty(logits, ids, penalty), expected, name="apply_repetition_penalty",
                 atol=0, mistakes=mistakes, hint="for tokens in input_ids: positive logit / penalty, negative * penalty")


@pytest.mark.exercise("penalties")
def test_repetition_penalty_ignores_padding(sampling):
    logits, ids = random_logits(7, B=2), random_ids(7, B=2)
    ids[0, :5] = -1  # -1 marks left padding
    expected = lp.RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=torch.tensor([5, 0]))(
        ids.clamp(min=0), logits.clone())
    assert_close(sampling.apply_repetition_penalty(logits, ids, 1.5), expected, name="penalty with -1 padding", atol=0,
                 mistakes={M["padding_penalised"]: lp.RepetitionPenaltyLogitsProcessor(1.5)(ids % V, logits.clone())},
                 hint="ids < 0 are padding: leave them out (e.g. scatter them into a spare column past V)")


@pytest.mark.exercise("penalties")
def test_frequency_and_presence_penalties(sampling):
    logits = random_logits(8, B=2)
    ids = torch.tensor([[3, 3, 3, 7, -1], [7, 1, 2, 2, 9]])
    expected = logits.clone()
    # OpenAI's definition: logit[j] - count[j] * frequency - (count[j] > 0) * presence.
    expected[0, 3] -= 3 * 0.4 + 1.1
    expected[0, 7] -= 1 * 0.4 + 1.1
    for j, c in ((7, 1), (1, 1), (2, 2), (9, 1)):
        expected[1, j] -= c * 0.4 + 1.1
    assert_close(sampling.apply_frequency_presence_penalty(logits, ids, 0.4, 1.1), expected,
                 name="apply_frequency_presence_penalty", atol=1e-6,
                 hint="count each token (torch.bincount or scatter_add_), ignoring ids < 0")


@pytest.mark.exercise("penalties")
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram_matches_transformers(sampling, n):
    logits, ids = random_logits(9), random_ids(9, L=30, vocab=4)  # 4 distinct ids: many repeated n-grams
    expected = lp.NoRepeatNGramLogitsProcessor(n)(ids, logits.clone())
    assert_masking_equal(sampling.no_repeat_ngram_filter(logits, ids, n), expected, "no_repeat_ngram_filter",
                         hint="the last n - 1 tokens are the prefix; every earlier window of n tokens starting with "
                              "that prefix bans its last token")


@pytest.mark.exercise("penalties")
def test_process_logits_order_matches_transformers(sampling):
    """Penalties first, then temperature, top-k, top-p, min-p: transformers' LogitsProcessorList."""
    logits, ids = random_logits(10), random_ids(10, L=15, vocab=10)
    hf = lp.LogitsProcessorList([
        lp.RepetitionPenaltyLogitsProcessor(1.4), lp.NoRepeatNGramLogitsProcessor(2),
        lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(20), lp.TopPLogitsWarper(0.9), lp.MinPLogitsWarper(0.05),
    ])
    kw = dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.05, repetition_penalty=1.4, no_repeat_ngram_size=2)
    expected = hf(ids, logits.clone())
    late = lp.LogitsProcessorList([*hf[:2], *hf[3:], hf[2]])  # temperature last
    assert_masking_equal(sampling.process_logits(logits, ids, 0, do_sample=True, **kw), expected, "process_logits",
                         mistakes={M["temperature_after_filters"]: lambda: late(ids, logits.clone())},
                         hint="order: repetition penalty, frequency/presence, no-repeat n-gram, then (sampling "
                              "only) temperature, top-k, top-p, min-p")
    greedy = lp.LogitsProcessorList(hf[:2])(ids, logits.clone())
    assert_masking_equal(sampling.process_logits(logits, ids, 0, do_sample=False, **kw), greedy,
                         "process_logits(do_sample=False)",
                         hint="without sampling only the penalties apply: the warpers don't change the argmax")


# ----------------------------------------------------------------------------- boundaries and ties


def kept(logits):
    return torch.isfinite(logits)


@pytest.mark.exercise("top_p")
@pytest.mark.parametrize("p, n_kept", [(0.25, 1), (0.5, 2), (0.75, 3), (0.7500001, 4), (0.4999999, 2)])
def test_top_p_keeps_a_set_that_sums_exactly_to_top_p(sampling, p, n_kept):
    """Four equal logits: probabilities exactly 1/4, cumulative sums exactly 1/4, 1/2, 3/4, 1.
    A set summing exactly to top_p is enough (transformers drops while cum <= 1 - top_p);
    dropping only while cum < 1 - top_p keeps one token too many."""
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, float("-inf"), float("-inf")]])
    expected = lp.TopPLogitsWarper(p)(None, logits.clone())
    assert int(kept(expected).sum()) == n_kept, "test setup: transformers' count"
    got = sampling.top_p_filter(logits, p)
    assert int(kept(got).sum()) == n_kept, (
        f"top_p_filter(top_p={p}) on four tokens of probability 1/4 keeps {int(kept(got).sum())}, transformers "
        f"keeps {n_kept}: the kept set may sum exactly to top_p (drop while cum <= 1 - top_p, ascending)")
    assert torch.equal(got[kept(got)], logits[kept(got)]) and not bool(kept(got)[0, 4:].any())


@pytest.mark.exercise("top_p")
def test_top_p_at_exact_cumulative_boundaries_matches_transformers(sampling):
    """Distinct logits, top_p set to exactly 1 - (cumulative probability of the j smallest),
    as float32 computes it: at each such boundary the j-th smallest token goes."""
    logits = random_logits(11, B=1, scale=1.5)
    cum = torch.sort(logits, dim=-1).values.softmax(-1).cumsum(-1)[0]  # ascending, as transformers
    for j in (V - 2, V - 4, V - 10, V // 2):
        p = 1.0 - float(cum[j])  # exact: cum[j] is a float32, 1 - cum[j] is exact in float64
        expected = lp.TopPLogitsWarper(p)(None, logits.clone())
        got = sampling.top_p_filter(logits, p)
        assert int(kept(expected).sum()) == V - 1 - j, "test setup: the boundary token is dropped"
        assert_masking_equal(got, expected, f"top_p_filter at the exact boundary top_p = 1 - cum[{j}]",
                             hint="drop tokens while the ascending cumulative probability is <= 1 - top_p")


@pytest.mark.exercise("top_p")
@pytest.mark.parametrize("min_tokens_to_keep", [1, 3])
def test_top_p_zero_keeps_only_the_most_likely_token(sampling, min_tokens_to_keep):
    """top_p = 0 is allowed, as in transformers: it keeps min_tokens_to_keep tokens, the best."""
    logits = random_logits(12)
    expected = lp.TopPLogitsWarper(0.0, min_tokens_to_keep=min_tokens_to_keep)(None, logits.clone())
    got = sampling.top_p_filter(logits, 0.0, min_tokens_to_keep)
    assert_masking_equal(got, expected, f"top_p_filter(top_p=0, min_tokens_to_keep={min_tokens_to_keep})")
    assert bool((kept(got).sum(-1) == min_tokens_to_keep).all())
    assert bool(kept(got).gather(1, logits.argmax(-1, keepdim=True)).all()), "the most likely token must stay"


@pytest.mark.exercise("top_p")
@pytest.mark.parametrize("p", [0.3, 0.9])
def test_top_p_min_tokens_to_keep_matches_transformers(sampling, p):
    logits = random_logits(13, scale=6.0)  # peaked: few tokens reach p
    for m in (1, 2, 5):
        expected = lp.TopPLogitsWarper(p, min_tokens_to_keep=m)(None, logits.clone())
        assert_masking_equal(sampling.top_p_filter(logits, p, m), expected, f"top_p_filter(min_tokens_to_keep={m})")


@pytest.mark.exercise("top_k")
def test_top_k_keeps_every_tie_of_the_kth_value(sampling):
    logits = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    for k, expected_kept in ((1, [[1, 0, 0, 0, 0, 0], [1] * 6]), (2, [[1, 1, 1, 1, 0, 0], [1] * 6]),
                             (4, [[1, 1, 1, 1, 0, 0], [1] * 6]), (5, [[1, 1, 1, 1, 1, 0], [1] * 6])):
        hf = lp.TopKLogitsWarper(k)(None, logits.clone())
        assert kept(hf).int().tolist() == expected_kept, "test setup: transformers keeps ties"
        out = sampling.top_k_filter(logits, k)
        assert_masking_equal(out, hf, f"top_k_filter(k={k}) with ties at the k-th",
                             mistakes={"ties_of_the_kth_dropped": lambda: exactly_k_of(out, hf, k)},
                             hint="mask only logits strictly below the k-th largest: ties with it stay")


@pytest.mark.exercise("top_k")
def test_top_k_min_tokens_to_keep_matches_transformers(sampling):
    logits = random_logits(14)
    for k, m in ((2, 5), (5, 2), (3, 3)):
        expected = lp.TopKLogitsWarper(k, min_tokens_to_keep=m)(None, logits.clone())
        assert_masking_equal(sampling.top_k_filter(logits, k, m), expected, f"top_k_filter(k={k}, min_tokens_to_keep={m})")


@pytest.mark.exercise("top_p")
def test_min_p_keeps_a_token_exactly_at_the_threshold(sampling):
    """Two tied best tokens: with min_p = 1 the threshold is exactly their probability, and a
    token at the threshold stays (transformers drops probs < min_p * top)."""
    logits = torch.tensor([[1.0, 1.0, 0.0, -1.0], [2.0, 0.0, 0.0, 0.0]])
    expected = lp.MinPLogitsWarper(1.0)(None, logits.clone())
    assert kept(expected).int().tolist() == [[1, 1, 0, 0], [1, 0, 0, 0]], "test setup"
    assert_masking_equal(sampling.min_p_filter(logits, 1.0), expected, "min_p_filter(min_p=1) with a tie at the top",
                         hint="drop tokens whose probability is strictly below min_p * top probability")
    for m in (2, 3):
        expected = lp.MinPLogitsWarper(0.9, min_tokens_to_keep=m)(None, logits.clone())
        assert_masking_equal(sampling.min_p_filter(logits, 0.9, m), expected, f"min_p_filter(min_tokens_to_keep={m})")


@pytest.mark.exercise("penalties")
def test_repetition_penalty_on_negative_zero_and_positive_logits(sampling):
    """Hand values: seen tokens 0 (-2.0), 1 (0.0), 2 (3.0); token 3 unseen."""
    logits = torch.tensor([[-2.0, 0.0, 3.0, 1.0]])
    ids = torch.tensor([[2, 0, 1, 0]])
    expected = torch.tensor([[-4.0, 0.0, 1.5, 1.0]])
    assert_close(lp.RepetitionPenaltyLogitsProcessor(2.0)(ids, logits.clone()), expected, name="setup", atol=0)
    assert_close(sampling.apply_repetition_penalty(logits, ids, 2.0), expected, name="apply_repetition_penalty(2.0)",
                 atol=0, hint="negative logits are multiplied by the penalty, positive ones divided; once per token")
    assert_close(sampling.apply_repetition_penalty(logits, ids, 0.5), torch.tensor([[-1.0, 0.0, 6.0, 1.0]]),
                 name="apply_repetition_penalty(0.5)", atol=0)


@pytest.mark.exercise("penalties")
@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_at_the_length_boundary(sampling, n):
    """Rows of n - 1, n and n + 1 tokens that repeat one id: bans exactly as transformers'."""
    logits = torch.zeros(1, 6)
    for L in (n - 1, n, n + 1):
        if L == 0:
            continue
        ids = torch.full((1, L), 4)
        expected = lp.NoRepeatNGramLogitsProcessor(n)(ids, logits.clone())
        # A row of L >= n copies of token 4 has already ended with the n-gram (4, ..., 4): 4 is banned.
        assert kept(expected)[0, 4].item() == (L < n), "test setup"
        assert_masking_equal(sampling.no_repeat_ngram_filter(logits, ids, n), expected,
                             f"no_repeat_ngram_filter(n={n}) on {L} copies of one token",
                             hint="with L >= n tokens the last window (the whole row when L == n) counts too")
    ids = torch.tensor([[1, 2, 3, 1, 2]])  # the n-gram starting at the last n - 1 tokens occurred at the start
    expected = lp.NoRepeatNGramLogitsProcessor(n)(ids, logits.clone())
    assert_masking_equal(sampling.no_repeat_ngram_filter(logits, ids, n), expected, f"no_repeat_ngram_filter(n={n})")


@pytest.mark.exercise("penalties")
def test_frequency_presence_count_only_the_generated_tokens(sampling):
    """process_logits passes only the last num_generated columns of history to the
    frequency/presence penalties (OpenAI counts the completion, not the prompt)."""
    logits = torch.zeros(1, 6)
    history = torch.tensor([[-1, 3, 3, 2, 3, 5, 5]])  # prompt [pad, 3, 3, 2], generated [3, 5, 5]
    got = sampling.process_logits(logits, history, 3, do_sample=False, frequency_penalty=0.5, presence_penalty=1.0)
    expected = torch.tensor([[0.0, 0.0, 0.0, -1.5, 0.0, -2.0]])  # 3: 1 * 0.5 + 1; 5: 2 * 0.5 + 1; 2: prompt only
    assert_close(got, expected, name="process_logits frequency/presence penalties", atol=0,
                 hint="count only history[:, L - num_generated:], the generated tokens")
    assert_close(sampling.process_logits(logits, history, 0, do_sample=False, frequency_penalty=0.5), logits,
                 name="no generated tokens yet: nothing to penalise", atol=0)


# ----------------------------------------------------------------------------- the diagnoses


@pytest.mark.solution_only
def test_masking_diagnosis_names_a_mistake_only_for_its_values():
    """A filter that keeps the wrong tokens is named only by a mistake that gives the same
    values where the reference removes tokens: -1e9 (or no filtering) is not "set to 0"."""
    logits = random_logits(2)
    expected = lp.TopKLogitsWarper(top_k=5)(None, logits.clone())
    kth = torch.topk(logits, 5).values[:, -1:]
    zero = {M["masked_with_zero"]: logits.masked_fill(logits < kth, 0.0)}
    for wrong, named in ((logits.masked_fill(logits < kth, -1e9), False), (logits.clone(), False),
                         (logits.masked_fill(logits < kth, 0.0), True), (logits * (logits >= kth), True)):
        with pytest.raises(AssertionError) as e:
            assert_masking_equal(wrong, expected, "top_k_filter", mistakes=zero)
        assert (f"likely cause: your output matches what {M['masked_with_zero'].cause} gives" in str(e.value)) == named
    with pytest.raises(AssertionError, match=r"the tokens to remove hold -1000000000.0 in yours: a removed token's "
                                             r"logit is -inf"):
        assert_masking_equal(logits.masked_fill(logits < kth, -1e9), expected, "top_k_filter", mistakes=zero)


@pytest.mark.solution_only
@pytest.mark.parametrize("exercise, edit", [
    # transformers' generate gives padding position 1 (masked_fill(attention_mask == 0, 1))
    ("batching", ("    return (mask.long().cumsum(-1) - 1).clamp(min=0)",
                  "    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)")),
    # a descending cumulative sum, dropping a token once the mass before it reaches top_p
    ("top_p", ("    drop_sorted = cum <= 1 - top_p\n    drop_sorted[..., -min_tokens_to_keep:] = False\n"
               "    drop = drop_sorted.scatter(-1, order, drop_sorted)",
               "    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)\n"
               "    drop_sorted = probs.cumsum(-1) - probs >= top_p\n    drop_sorted[..., :min_tokens_to_keep] = False\n"
               "    drop = drop_sorted.scatter(-1, order, drop_sorted)")),
])
def test_correct_variants_pass_with_no_diagnosis(exercise, edit):
    from mlab_tfs.testing.mistakes import check_report, likely_causes, planted_source

    report = check_report("sampling", exercise, planted_source("sampling", [edit]))
    assert "This exercise passes" in report and not likely_causes(report), report
