"""generate_fast (static KV cache, compiled decode step) against generate, token for token."""

from __future__ import annotations

import time

import pytest
import torch

from mlab_tfs.gpt2.solution import GPT2LMHeadModel
from mlab_tfs.sampling import solution
from mlab_tfs.sampling.fast import _Options, _choose, generate_fast
from mlab_tfs.sampling.options import SamplingOptions

from .helpers import chi_square_p_value, padded_batch
from .test_generate import assert_tokens_equal

pytestmark = pytest.mark.solution_only


def an_eos_that_fires_at_different_steps(model, ids, mask, max_new_tokens):
    """A token that ends some rows but not all at the same step (so per-row stopping matters)."""
    out = solution.generate(model, ids, mask, max_new_tokens=max_new_tokens, pad_token_id=0)[:, ids.shape[1]:]
    for row in range(out.shape[0]):
        for col in range(out.shape[1]):
            tok = out[row, col]
            firsts = [int((r == tok).nonzero()[0]) if (r == tok).any() else None for r in out]
            if len(set(firsts)) > 1:
                return int(tok)
    raise AssertionError("no token ends the rows at different steps; pick other prompts")


@pytest.mark.parametrize("name", ["base", "deep_narrow_heads"])
@pytest.mark.parametrize("variant", [dict(), dict(decode_attention=False), dict(linear_as_sums=4)], ids=str)
def test_greedy_equals_generate(model_pairs, name, variant):
    model = model_pairs[name]["ours"]
    V = model.config.vocab_size
    ids, mask = padded_batch(V, [6, 2, 5, 4], seed=3)
    expected = solution.generate(model, ids, mask, max_new_tokens=12, pad_token_id=0)
    got = generate_fast(model, ids, mask, max_new_tokens=12, pad_token_id=0, compile=False, **variant)
    assert_tokens_equal(got, expected, f"generate_fast, greedy, left-padded, {variant}")


@pytest.mark.parametrize("check_every", [1, 4, 16])
def test_greedy_with_eos_equals_generate(model_pairs, check_every):
    model = model_pairs["deep_narrow_heads"]["ours"]
    ids, mask = padded_batch(model.config.vocab_size, [5, 3, 6], seed=5)
    eos = an_eos_that_fires_at_different_steps(model, ids, mask, 10)
    for pad in (0, None):
        expected = solution.generate(model, ids, mask, max_new_tokens=14, eos_token_id=eos,
                                     pad_token_id=0 if pad is None else pad)
        got = generate_fast(model, ids, mask, max_new_tokens=14, eos_token_id=eos, pad_token_id=0 if pad is None else pad,
                            compile=False, check_every=check_every)
        assert_tokens_equal(got, expected, f"generate_fast with eos={eos}, check_every={check_every}")
    # An eos set, and no eos among the first tokens of any row: stops at max_new_tokens.
    expected = solution.generate(model, ids, mask, max_new_tokens=7, eos_token_id=[eos, 1], pad_token_id=0)
    got = generate_fast(model, ids, mask, max_new_tokens=7, eos_token_id=[eos, 1], pad_token_id=0, compile=False)
    assert_tokens_equal(got, expected, "generate_fast with a list of eos ids")


@pytest.mark.parametrize("kwargs", [dict(repetition_penalty=1.6), dict(frequency_penalty=0.8, presence_penalty=0.4),
                                    dict(repetition_penalty=0.7, presence_penalty=-0.5)], ids=str)
def test_greedy_with_penalties_equals_generate(model_pairs, kwargs):
    model = model_pairs["base"]["ours"]
    ids, mask = padded_batch(model.config.vocab_size, [6, 3, 4], seed=7)
    expected = solution.generate(model, ids, mask, max_new_tokens=12, pad_token_id=0, **kwargs)
    got = generate_fast(model, ids, mask, max_new_tokens=12, pad_token_id=0, compile=False, **kwargs)
    assert_tokens_equal(got, expected, f"generate_fast with {kwargs}")


def test_sdpa_model_and_one_token(checkpoints):
    model = GPT2LMHeadModel.from_pretrained(checkpoints["base"], attn_implementation="sdpa").eval()
    ids, mask = padded_batch(97, [4, 7], seed=9)
    for n in (1, 9):
        expected = solution.generate(model, ids, mask, max_new_tokens=n, pad_token_id=0)
        got = generate_fast(model, ids, mask, max_new_tokens=n, pad_token_id=0, compile=False)
        assert_tokens_equal(got, expected, f"generate_fast on the sdpa model, {n} new tokens")


def test_compiled_step_without_graph_breaks(model_pairs):
    """fullgraph=True fails on any graph break or host read inside the decode step.
    aot_eager traces the step as torch.compile does and runs it without code generation,
    so this takes seconds; the inductor test below runs the real compiler."""
    model = model_pairs["deep_narrow_heads"]["ours"]
    ids, mask = padded_batch(model.config.vocab_size, [6, 2, 5], seed=11)
    eos = an_eos_that_fires_at_different_steps(model, ids, mask, 8)
    for kwargs, fast_only in ((dict(), {}), (dict(eos_token_id=eos), {}),
                              (dict(repetition_penalty=1.3, frequency_penalty=0.2), {}),
                              (dict(), dict(decode_attention=False)), (dict(), dict(linear_as_sums=3))):
        expected = solution.generate(model, ids, mask, max_new_tokens=10, pad_token_id=0, **kwargs)
        got = generate_fast(model, ids, mask, max_new_tokens=10, pad_token_id=0, compile=True,
                            compile_options={"backend": "aot_eager"}, **fast_only, **kwargs)
        assert_tokens_equal(got, expected, f"generate_fast compiled (aot_eager) with {kwargs}, {fast_only}")


def test_compiled_step_inductor_cpu(model_pairs):
    """The real compiler (inductor, C++ on CPU): the same tokens. About 20 s the first
    time on a 2-core machine; inductor's on-disk cache makes later runs faster."""
    model = model_pairs["deep_narrow_heads"]["ours"]
    ids, mask = padded_batch(model.config.vocab_size, [5, 3], seed=13)
    expected = solution.generate(model, ids, mask, max_new_tokens=8, pad_token_id=0)
    got = generate_fast(model, ids, mask, max_new_tokens=8, pad_token_id=0, compile=True)
    assert_tokens_equal(got, expected, "generate_fast compiled with inductor")
    t0 = time.perf_counter()  # the second call reuses the compiled step and the cache
    again = generate_fast(model, ids, mask, max_new_tokens=8, pad_token_id=0, compile=True)
    assert_tokens_equal(again, expected, "generate_fast compiled, second call")
    assert time.perf_counter() - t0 < 5, "the second call recompiled the decode step"


def test_sampling_follows_the_processed_distribution():
    """The exponential race draws from softmax of the processed logits."""
    g = torch.Generator().manual_seed(0)
    V, n = 12, 20000
    logits = torch.randn(1, V, generator=g).expand(n, V) * 2
    opts = _Options(SamplingOptions(do_sample=True, temperature=0.8, top_k=6), None)
    noise = torch.empty(n, V).exponential_(generator=g)
    draws = _choose(logits, opts, None, torch.ones(n, V, dtype=torch.bool), torch.zeros(1), torch.zeros(1), noise)
    probs = torch.softmax(solution.top_k_filter(logits[:1] / 0.8, 6), dim=-1)[0]
    counts = torch.bincount(draws, minlength=V).double()
    assert counts[probs == 0].sum() == 0, "a token outside the top-k was drawn"
    p = chi_square_p_value(counts, probs)
    assert p > 1e-3, f"draws do not follow the processed distribution: chi-square p-value {p:.2g}"


def test_sampling_is_seeded_and_top_k_1_is_greedy(model_pairs):
    model = model_pairs["base"]["ours"]
    ids, mask = padded_batch(97, [5, 3], seed=15)
    draw = lambda seed, **kw: generate_fast(model, ids, mask, max_new_tokens=10, pad_token_id=0, do_sample=True,  # noqa: E731
                                            compile=False, generator=torch.Generator().manual_seed(seed), **kw)
    assert torch.equal(draw(1, temperature=1.3, top_p=0.9), draw(1, temperature=1.3, top_p=0.9))
    assert not torch.equal(draw(1, temperature=2.0), draw(2, temperature=2.0))
    greedy = solution.generate(model, ids, mask, max_new_tokens=10, pad_token_id=0)
    assert_tokens_equal(draw(3, top_k=1), greedy, "generate_fast sampling with top_k=1")


def test_bad_arguments(model_pairs):
    ours, hf = model_pairs["base"]["ours"], model_pairs["base"]["hf"]
    ids, mask = padded_batch(97, [4, 2], seed=1)
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        generate_fast(hf, ids, mask, pad_token_id=0)
    with pytest.raises(ValueError, match="pad_token_id"):
        generate_fast(ours, ids, mask, compile=False)
    with pytest.raises(ValueError, match="check_every"):
        generate_fast(ours, ids, mask, pad_token_id=0, check_every=0)
    with pytest.raises(ValueError, match="n_positions"):
        generate_fast(ours, ids, mask, pad_token_id=0, max_new_tokens=40)
    with pytest.raises(ValueError, match="temperature"):
        generate_fast(ours, ids, mask, pad_token_id=0, do_sample=True, temperature=0)


@pytest.mark.parametrize("check_every", [1, 3, 16])
def test_output_keeps_the_eos_when_every_row_finishes(model_pairs, check_every):
    """Every row ends (the last one at step 2): generate_fast stops where generate does, with
    the last eos kept, whichever step the finished check runs at."""
    model = model_pairs["base"]["ours"]
    ids, mask = padded_batch(97, [5, 3, 4], seed=17)
    free = solution.generate(model, ids, mask, max_new_tokens=3, pad_token_id=0)[:, ids.shape[1]:]
    eos = [int(free[0, 0]), int(free[1, 1]), int(free[2, 0])]  # every row ends within two tokens
    expected = solution.generate(model, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=0)
    assert expected.shape[1] <= ids.shape[1] + 2 and bool(torch.isin(expected[:, -1], torch.tensor(eos + [0])).all())
    assert bool(torch.isin(expected[:, -1], torch.tensor(eos)).any()), "test setup: the last column holds an eos"
    got = generate_fast(model, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=0, compile=False,
                        check_every=check_every)
    assert_tokens_equal(got, expected, f"generate_fast when every row finishes (check_every={check_every})",
                        hint="cut after the step at which the last row produced its eos: that eos stays")


@pytest.mark.parametrize("kwargs, error, word", [
    (dict(temperature=float("nan"), do_sample=True), ValueError, "temperature"),
    (dict(top_p=float("nan"), do_sample=True), ValueError, "top_p"), (dict(top_k=-1), ValueError, "top_k"),
    (dict(min_p=1.5), ValueError, "min_p"), (dict(repetition_penalty=float("inf")), ValueError, "repetition_penalty"),
    (dict(frequency_penalty=float("nan")), ValueError, "frequency_penalty"),
    (dict(presence_penalty=float("-inf")), ValueError, "presence_penalty"),
    (dict(max_new_tokens=0), ValueError, "max_new_tokens"), (dict(max_new_tokens=2.0), TypeError, "max_new_tokens"),
    (dict(eos_token_id=97), ValueError, "eos_token_id"), (dict(check_every=1.5), TypeError, "check_every"),
    (dict(check_every=True), TypeError, "check_every"), (dict(compile=1), TypeError, "compile"),
    (dict(compile_options="aot_eager"), TypeError, "compile_options"), (dict(generator=3), TypeError, "generator"),
    (dict(decode_attention=1), TypeError, "decode_attention must be True or False"),
    (dict(linear_as_sums=-1), ValueError, "linear_as_sums"), (dict(linear_as_sums=1.0), TypeError, "linear_as_sums"),
], ids=str)
def test_bad_numbers_and_flags_are_refused_by_name(model_pairs, kwargs, error, word):
    ours = model_pairs["base"]["ours"]
    ids, mask = padded_batch(97, [4, 2], seed=1)
    with pytest.raises(error, match=word):
        generate_fast(ours, ids, mask, **{"pad_token_id": 0, "compile": False, **kwargs})


def test_lists_empty_batches_and_devices(model_pairs):
    ours = model_pairs["base"]["ours"]
    ids, mask = padded_batch(97, [4, 2], seed=1)
    expected = generate_fast(ours, ids, mask, max_new_tokens=5, pad_token_id=0, compile=False)
    got = generate_fast(ours, ids.tolist(), mask.tolist(), max_new_tokens=5, pad_token_id=0, compile=False)
    assert_tokens_equal(got, expected, "generate_fast from lists")
    with pytest.raises(ValueError, match="input_ids"):
        generate_fast(ours, torch.zeros(0, 3, dtype=torch.long), max_new_tokens=2, compile=False)
    with pytest.raises(ValueError, match="input_ids is on meta but the model is on cpu"):
        generate_fast(ours, torch.empty(2, 4, dtype=torch.long, device="meta"), mask, pad_token_id=0, compile=False)


def test_compile_options_take_torch_compile_arguments_only(model_pairs):
    """torch.compile's own ``options`` is a dict (inductor settings): it is taken (it once
    failed as an unhashable cache key); a name torch.compile does not take is a TypeError
    naming it. Checked with compile=False too, before anything runs."""
    ours = model_pairs["base"]["ours"]
    ids, mask = padded_batch(97, [4, 2], seed=1)
    expected = generate_fast(ours, ids, mask, max_new_tokens=3, pad_token_id=0, compile=False)
    got = generate_fast(ours, ids, mask, max_new_tokens=3, pad_token_id=0, compile=False,
                        compile_options={"options": {"max_autotune": False}, "backend": "inductor"})
    assert_tokens_equal(got, expected, "generate_fast with a dict-valued compile option")
    with pytest.raises(TypeError, match="compile_options has 'bogus', which torch.compile does not take"):
        generate_fast(ours, ids, mask, max_new_tokens=3, pad_token_id=0, compile=False, compile_options={"bogus": 1})
    with pytest.raises(TypeError, match=r"compile_options\['options'\] must be a dict"):
        generate_fast(ours, ids, mask, max_new_tokens=3, pad_token_id=0, compile=False, compile_options={"options": [1]})


def test_compile_kwargs_keep_cuda_graphs_with_inductor_options():
    """torch.compile takes mode or options, not both: inductor options alone keep the GPU's
    CUDA graphs (reduce-overhead's "triton.cudagraphs"), unless they set it; a mode given is kept."""
    from mlab_tfs.sampling.fast import compile_kwargs

    base = dict(fullgraph=True, dynamic=False)
    assert compile_kwargs(True) == {**base, "mode": "reduce-overhead"}
    assert compile_kwargs(False) == {**base, "mode": None}
    cdt = {"options": {"coordinate_descent_tuning": True}}
    assert compile_kwargs(True, cdt) == {**base, "options": {"triton.cudagraphs": True,
                                                             "coordinate_descent_tuning": True}}
    assert compile_kwargs(False, cdt) == {**base, "options": {"triton.cudagraphs": False,
                                                              "coordinate_descent_tuning": True}}
    assert compile_kwargs(True, {"options": {"triton.cudagraphs": False}})["options"] == {"triton.cudagraphs": False}
    assert compile_kwargs(True, {"mode": "max-autotune"}) == {**base, "mode": "max-autotune"}
    assert cdt == {"options": {"coordinate_descent_tuning": True}}, "the caller's dict is not changed"
    with pytest.raises(TypeError, match=r"compile_options\['options'\] must be a dict of inductor settings or None, got int 3"):
        compile_kwargs(False, {"options": 3})
