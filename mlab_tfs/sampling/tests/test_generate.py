"""Exercises 1, 6 and 7: greedy decoding, left-padded batches, and generate with a KV cache,
token for token against transformers' generate, on our GPT-2 and on transformers' own."""

from __future__ import annotations

import warnings

import pytest
import torch

from mlab_tfs.sampling import solution
from mlab_tfs.testing.compare import assert_close

from mlab_tfs.sampling.mistakes import MISTAKES as M

from .helpers import CountingModel, chi_square_p_value, padded_batch, prompts
from .mistaken import mistaken

VOCAB = 97  # the base checkpoint


def hf_greedy(hf_model, ids, mask=None, **kwargs):
    kwargs.setdefault("pad_token_id", 0)
    return hf_model.generate(ids, attention_mask=mask if mask is not None else torch.ones_like(ids),
                             do_sample=False, **kwargs)


def an_eos_that_fires(hf_model, ids, mask, max_new_tokens):
    """A token that greedy decoding produces in the first rows but not at the same step in
    all of them, so that rows stop at different times."""
    out = hf_greedy(hf_model, ids, mask, max_new_tokens=max_new_tokens)[:, ids.shape[1]:]
    return int(out[0, max_new_tokens // 3])


def assert_tokens_equal(actual, expected, what, hint=None, mistakes=None):
    """Equal token ids, or a failure that shows where they differ and, when the ids are what a
    catalogued mistake gives ({Mistake or name: a function computing its output}), names it."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    assert isinstance(actual, torch.Tensor), f"{what}: expected a tensor, got {type(actual).__name__}"
    if actual.shape != expected.shape or not torch.equal(actual, expected):
        lines = [f"{what}: token ids differ from the reference"]
        if actual.shape != expected.shape:
            lines.append(f"  shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
        else:
            rows, cols = (actual != expected).nonzero(as_tuple=True)
            lines.append(f"  first difference at row {int(rows[0])}, column {int(cols[0])}")
        lines.append(f"  got      {actual.tolist()}\n  expected {expected.tolist()}")
        for mistake, compute in (mistakes or {}).items():
            mistake = M[mistake] if isinstance(mistake, str) else mistake
            try:
                cand = compute()
            except Exception:  # noqa: BLE001  (a mistake that cannot run on these inputs does not match)
                continue
            if cand.shape == actual.shape and torch.equal(cand.to(actual.device), actual):
                lines.append(f"  likely cause: your output matches what {mistake.cause} gives")
                break
        if hint:
            lines.append(f"  hint: {hint}")
        raise AssertionError("\n".join(lines))


# ----------------------------------------------------------------------------- 1. greedy


@pytest.mark.exercise("greedy")
def test_greedy_decode_matches_transformers(sampling, model, hf_model):
    ids = torch.stack(prompts(VOCAB, [6, 6], seed=1))
    expected = hf_greedy(hf_model, ids, max_new_tokens=10, eos_token_id=None)
    assert_tokens_equal(sampling.greedy_decode(model, ids, 10), expected, "greedy_decode",
                        hint="at each step take argmax of logits[:, -1] (the last position) and append it",
                        mistakes={name: lambda name=name: mistaken(name).greedy_decode(model, ids, 10)
                                  for name in ("first_position_logits", "argmax_over_positions")})


@pytest.mark.exercise("greedy")
def test_greedy_decode_stops_at_eos(sampling, model, hf_model):
    ids = torch.stack(prompts(VOCAB, [5, 5, 5], seed=2))
    eos = an_eos_that_fires(hf_model, ids, None, 12)
    expected = hf_greedy(hf_model, ids, max_new_tokens=12, eos_token_id=eos, pad_token_id=eos)
    assert_tokens_equal(sampling.greedy_decode(model, ids, 12, eos_token_id=eos), expected,
                        "greedy_decode with eos_token_id",
                        hint="a row that produced eos gets eos from then on; stop when every row has",
                        mistakes={name: lambda name=name: mistaken(name).greedy_decode(model, ids, 12, eos_token_id=eos)
                                  for name in ("first_position_logits", "stop_when_any_row_ends")})


# ----------------------------------------------------------------------------- 6. batching


@pytest.mark.exercise("batching")
def test_left_pad(sampling):
    ids, mask = sampling.left_pad([[5, 6, 7], [8], torch.tensor([9, 10])], pad_token_id=0)
    assert_tokens_equal(ids, torch.tensor([[5, 6, 7], [0, 0, 8], [0, 9, 10]]), "left_pad input_ids",
                        hint="pad on the left, so that every row's last token is in the last column",
                        mistakes={"right_padding": lambda: torch.tensor([[5, 6, 7], [8, 0, 0], [9, 10, 0]])})
    assert_tokens_equal(mask, torch.tensor([[1, 1, 1], [0, 0, 1], [0, 1, 1]]), "left_pad attention_mask")


@pytest.mark.exercise("batching")
def test_position_ids_from_mask(sampling):
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
    pos = sampling.position_ids_from_mask(mask)
    real = mask.bool()
    expected = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 1], [0, 0, 0, 0]])
    assert pos.shape == mask.shape, f"position ids have the mask's shape {tuple(mask.shape)}, got {tuple(pos.shape)}"
    causes = {"positions_not_from_mask": torch.arange(4).expand(3, 4), "positions_from_one": mask.cumsum(-1)}
    named = [f"\n  likely cause: your output matches what {M[n].cause} gives" for n, c in causes.items()
             if torch.equal(pos[real], c[real])]
    assert torch.equal(pos[real], expected[real]), (
        f"every row's first real token is at position 0: expected {expected.tolist()} at real tokens, got "
        f"{pos.tolist()}. Hint: cumsum(mask) - 1" + "".join(named[:1])
    )
    assert int(pos.min()) >= 0, "padding positions must still be valid positions (>= 0): clamp them"


@pytest.mark.exercise("batching")
def test_last_logits_of_a_padded_batch_equal_each_prompt_alone(sampling, model):
    ps = prompts(VOCAB, [7, 2, 5], seed=3)
    ids, mask = sampling.left_pad(ps, pad_token_id=0)
    pos = sampling.position_ids_from_mask(mask)
    batched = model(ids, attention_mask=mask, position_ids=pos).logits[:, -1]
    alone = torch.cat([model(p[None]).logits[:, -1] for p in ps])
    assert_close(batched, alone, name="last-position logits of the padded batch", atol=1e-5,
                 hint="pass both attention_mask and position_ids; with default positions padded rows are shifted")


# ----------------------------------------------------------------------------- 7. generate


@pytest.mark.exercise("kv_cache_loop")
@pytest.mark.parametrize("name", ["base", "deep_narrow_heads"])
def test_greedy_generate_matches_transformers_on_a_padded_batch(sampling, model_pairs, kind, name):
    model, hf = model_pairs[name][kind], model_pairs[name]["hf"]
    ids, mask = padded_batch(model.config.vocab_size, [6, 2, 9, 4], seed=4)
    expected = hf_greedy(hf, ids, mask, max_new_tokens=12)
    assert_tokens_equal(sampling.generate(model, ids, mask, max_new_tokens=12, pad_token_id=0), expected,
                        "generate (greedy, left-padded)",
                        mistakes={"positions_not_continued": lambda: mistaken("positions_not_continued").generate(
                            model, ids, mask, max_new_tokens=12, pad_token_id=0)},
                        hint="carry the attention mask forward (append a 1 per step) and give each row positions "
                             "from its own mask: cumsum - 1, then the last one + 1")


@pytest.mark.exercise("kv_cache_loop")
def test_each_row_stops_at_eos_then_pads(sampling, model, hf_model):
    ids, mask = padded_batch(VOCAB, [3, 8, 5, 6], seed=5)
    eos = an_eos_that_fires(hf_model, ids, mask, 15)
    expected = hf_greedy(hf_model, ids, mask, max_new_tokens=15, eos_token_id=eos, pad_token_id=0)
    new = expected[:, ids.shape[1]:]
    assert bool((new == eos).any()) and not bool((new == eos).all()), "test setup: eos must end some rows early"
    out = sampling.generate(model, ids, mask, max_new_tokens=15, eos_token_id=eos, pad_token_id=0)
    assert_tokens_equal(out, expected, "generate with eos_token_id",
                        mistakes={name: lambda name=name: mistaken(name).generate(
                            model, ids, mask, max_new_tokens=15, eos_token_id=eos, pad_token_id=0)
                            for name in ("finished_rows_not_padded", "eos_ignored", "positions_not_continued")},
                        hint="a row is done once it produced eos (kept); after that it gets pad_token_id; stop "
                             "the loop when every row is done")


@pytest.mark.exercise("kv_cache_loop")
def test_stops_early_when_all_rows_are_done(sampling, model, hf_model):
    ids, mask = padded_batch(VOCAB, [4, 4], seed=6)
    first = hf_greedy(hf_model, ids, mask, max_new_tokens=1)[:, -1]
    out = sampling.generate(model, ids, mask, max_new_tokens=10, eos_token_id=first.tolist(), pad_token_id=0)
    assert_tokens_equal(out, torch.cat([ids, first[:, None]], 1), "generate when every row ends at once",
                        hint="eos_token_id may be a list; the loop ends as soon as every row has finished")


@pytest.mark.exercise("kv_cache_loop")
def test_batched_equals_each_prompt_alone(sampling, model):
    ps = prompts(VOCAB, [5, 1, 8], seed=7)
    ids, mask = sampling.left_pad(ps, pad_token_id=0)
    batched = sampling.generate(model, ids, mask, max_new_tokens=9, pad_token_id=0)[:, ids.shape[1]:]
    alone = torch.cat([sampling.generate(model, p[None], max_new_tokens=9)[:, len(p):] for p in ps])
    assert_tokens_equal(batched, alone, "new tokens of the batch vs each prompt alone")


@pytest.mark.exercise("kv_cache_loop")
def test_cached_equals_uncached_and_runs_one_token_per_step(sampling, model):
    ids, mask = padded_batch(VOCAB, [6, 3], seed=8)
    counting = CountingModel(model)
    cached = sampling.generate(counting, ids, mask, max_new_tokens=8, pad_token_id=0)
    calls = counting.calls
    assert calls[0] == tuple(ids.shape) and all(c == (2, 1) for c in calls[1:]) and len(calls) == 8, (
        f"with the cache, the prompt runs once and each later step runs one token per row: expected forwards "
        f"{[tuple(ids.shape)] + [(2, 1)] * 7}, got {calls}"
    )
    uncached = sampling.generate(model, ids, mask, max_new_tokens=8, pad_token_id=0, use_cache=False)
    assert_tokens_equal(cached, uncached, "generate(use_cache=True) vs use_cache=False")


@pytest.mark.exercise("kv_cache_loop")
@pytest.mark.parametrize("kw", [
    dict(temperature=0.7),
    dict(temperature=1.3, top_k=10, top_p=0.8),
    dict(min_p=0.1, repetition_penalty=1.5),
    dict(no_repeat_ngram_size=2, repetition_penalty=0.7),
], ids=["temperature", "top-k-top-p", "min-p-repetition", "ngram"])
def test_sampling_equals_transformers_under_the_same_seed(sampling, model, hf_model, kw):
    """Same processed distribution, same torch.multinomial, same global seed: the same tokens."""
    ids, mask = padded_batch(VOCAB, [5, 2, 7], seed=9)
    torch.manual_seed(5)
    expected = hf_model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=True, pad_token_id=0,
                                 **{"top_k": 0, **kw})
    torch.manual_seed(5)
    out = sampling.generate(model, ids, mask, max_new_tokens=12, do_sample=True, pad_token_id=0, **kw)
    assert_tokens_equal(out, expected, f"generate(do_sample=True, {kw})",
                        hint="process the last logits in transformers' order, then torch.multinomial(softmax, 1)")


@pytest.mark.exercise("kv_cache_loop")
def test_seeded_generator_reproduces(sampling, model):
    ids, mask = padded_batch(VOCAB, [4, 6], seed=10)
    run = lambda seed: sampling.generate(model, ids, mask, max_new_tokens=10, do_sample=True, pad_token_id=0,  # noqa: E731
                                         generator=torch.Generator().manual_seed(seed))
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b), "the same seeded torch.Generator must give the same tokens"
    assert not torch.equal(a, c), "different seeds gave identical samples: is the generator passed to multinomial?"


@pytest.mark.exercise("kv_cache_loop")
def test_first_sampled_token_follows_the_processed_distribution(sampling, model):
    """4000 rows with the same prompt, one step: the first new token fits softmax of the
    processed logits (chi-square, p > 1e-3)."""
    prompt = prompts(VOCAB, [5], seed=11)[0]
    n = 4000
    out = sampling.generate(model, prompt.expand(n, -1), max_new_tokens=1, do_sample=True, temperature=1.5,
                            top_k=8, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(out[:, -1], minlength=VOCAB)
    logits = model(prompt[None]).logits[0, -1].float()
    processed = solution.top_k_filter(logits[None] / 1.5, 8)[0]
    probs = torch.softmax(processed, -1)
    assert int(counts[probs == 0].sum()) == 0, "a token outside the top-k was sampled"
    p = chi_square_p_value(counts, probs)
    assert p > 1e-3, f"sampled first tokens don't fit the processed distribution: chi-square p-value {p:.2g}"


# ----------------------------------------------------------------------------- bad input


BAD = {
    "temperature 0 while sampling": (dict(do_sample=True, temperature=0.0), "temperature"),
    "negative temperature": (dict(do_sample=True, temperature=-1.0), "temperature"),
    "top_p below 0": (dict(do_sample=True, top_p=-0.1), "top_p"),
    "top_p NaN": (dict(do_sample=True, top_p=float("nan")), "top_p"),
    "top_p above 1": (dict(do_sample=True, top_p=1.2), "top_p"),
    "negative top_k": (dict(do_sample=True, top_k=-2), "top_k"),
    "past n_positions": (dict(max_new_tokens=35), "n_positions"),
    "padding without pad_token_id": (dict(pad_token_id=None), "pad_token_id"),
}


@pytest.mark.exercise("kv_cache_loop")
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_clear_error(sampling, model, case):
    kwargs, word = BAD[case]
    ids, mask = padded_batch(VOCAB, [6, 3], seed=12)  # 6 + 35 > n_positions = 40
    kwargs = {"max_new_tokens": 5, "pad_token_id": 0, **kwargs}
    with pytest.raises(ValueError, match=word):
        sampling.generate(model, ids, mask, **kwargs)


@pytest.mark.exercise("kv_cache_loop")
def test_greedy_ignores_sampling_settings(sampling, model):
    """temperature only matters when sampling: greedy with temperature=0 is not an error, but
    it is not silent either: a warning names what has no effect, as transformers warns."""
    ids = torch.stack(prompts(VOCAB, [4], seed=13))
    # Recorded rather than pytest.warns, so that an unwritten stub's NotImplementedError
    # surfaces as itself (the exercise is "not started"), not as a missing warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = sampling.generate(model, ids, max_new_tokens=4, temperature=0.0)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("temperature" in m for m in messages), (
        f"greedy generate with temperature=0.0 should warn that temperature has no effect; warnings: {messages}")
    assert torch.equal(a, sampling.generate(model, ids, max_new_tokens=4))


# ----------------------------------------------------------------------------- stop conditions and boundaries


@pytest.mark.exercise("kv_cache_loop")
def test_max_new_tokens_zero_is_refused_as_transformers_does(sampling, model, hf_model):
    ids, mask = padded_batch(VOCAB, [4, 2], seed=14)
    with pytest.raises(ValueError, match="max_new_tokens"):
        hf_greedy(hf_model, ids, mask, max_new_tokens=0)
    for call in (lambda: sampling.generate(model, ids, mask, max_new_tokens=0, pad_token_id=0),
                 lambda: sampling.greedy_decode(model, ids[:1], 0)):
        with pytest.raises(ValueError, match="max_new_tokens"):
            call()


@pytest.mark.exercise("kv_cache_loop")
def test_one_new_token_and_the_last_allowed_position(sampling, model, hf_model):
    """max_new_tokens = 1 gives one column; T + max_new_tokens = n_positions is allowed, one more is not."""
    ids, mask = padded_batch(VOCAB, [32, 25], seed=15)  # long prompts: few steps up to n_positions = 40
    assert_tokens_equal(sampling.generate(model, ids, mask, max_new_tokens=1, pad_token_id=0),
                        hf_greedy(hf_model, ids, mask, max_new_tokens=1), "generate(max_new_tokens=1)")
    room = model.config.n_positions - ids.shape[1]
    out = sampling.generate(model, ids, mask, max_new_tokens=room, pad_token_id=0)
    assert_tokens_equal(out, hf_greedy(hf_model, ids, mask, max_new_tokens=room), f"generate up to n_positions ({room} new)")
    with pytest.raises(ValueError, match="n_positions"):
        sampling.generate(model, ids, mask, max_new_tokens=room + 1, pad_token_id=0)


@pytest.mark.exercise("kv_cache_loop")
def test_a_list_of_eos_ids_each_ending_other_rows(sampling, model, hf_model):
    ids, mask = padded_batch(VOCAB, [3, 8, 5, 6], seed=5)
    free = hf_greedy(hf_model, ids, mask, max_new_tokens=12)[:, ids.shape[1]:]
    first = int(free[0, 0])
    second = next(int(t) for row in free[1:] for t in row if int(t) != first)
    eos = [first, second]
    expected = hf_greedy(hf_model, ids, mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    new = expected[:, ids.shape[1]:]
    ended_by = [{int(t) for t in row if int(t) in eos} for row in new]
    assert {first} in ended_by and {second} in ended_by, "test setup: some rows end at each of the two eos ids"
    out = sampling.generate(model, ids, mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    assert_tokens_equal(out, expected, f"generate with eos_token_id={eos}",
                        hint="a row stops at the first token that is any of the eos ids (torch.isin)")


@pytest.mark.exercise("greedy")
def test_greedy_decode_keeps_the_eos_when_every_row_finishes(sampling, model, hf_model):
    """Every row ends (at different steps): the output stops at the last row's eos, kept."""
    ids = torch.stack(prompts(VOCAB, [5, 5], seed=16))
    free = hf_greedy(hf_model, ids, max_new_tokens=6)[:, ids.shape[1]:]
    both = [int(t) for t in free[0] if bool((free[1] == t).any())]
    assert both, "test setup: a token both rows produce"
    eos = both[0]
    expected = hf_greedy(hf_model, ids, max_new_tokens=6, eos_token_id=eos, pad_token_id=eos)
    assert expected.shape[1] < ids.shape[1] + 6 or bool((expected[:, -1] == eos).all()), "test setup"
    assert_tokens_equal(sampling.greedy_decode(model, ids, 6, eos_token_id=eos), expected,
                        f"greedy_decode(eos_token_id={eos})", hint="the eos is kept; stop once every row has one",
                        mistakes={"stop_when_any_row_ends": lambda: mistaken("stop_when_any_row_ends").greedy_decode(
                            model, ids, 6, eos_token_id=eos)})


@pytest.mark.exercise("kv_cache_loop")
def test_top_p_zero_samples_the_greedy_token_as_transformers_does(sampling, model, hf_model):
    ids, mask = padded_batch(VOCAB, [5, 2, 7], seed=17)
    torch.manual_seed(7)
    expected = hf_model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, top_p=0.0, top_k=0,
                                 pad_token_id=0)
    assert_tokens_equal(expected, hf_greedy(hf_model, ids, mask, max_new_tokens=8), "setup: top_p=0 is greedy")
    out = sampling.generate(model, ids, mask, max_new_tokens=8, do_sample=True, top_p=0.0, pad_token_id=0,
                            generator=torch.Generator().manual_seed(7))
    assert_tokens_equal(out, expected, "generate(do_sample=True, top_p=0)",
                        hint="top_p = 0 keeps only the most likely token (min_tokens_to_keep), as transformers")


@pytest.mark.exercise("kv_cache_loop")
@pytest.mark.parametrize("kw", [dict(repetition_penalty=1.8), dict(repetition_penalty=0.6),
                                dict(no_repeat_ngram_size=1), dict(no_repeat_ngram_size=2, repetition_penalty=1.3)],
                         ids=str)
def test_greedy_with_penalties_matches_transformers(sampling, model, hf_model, kw):
    """Penalties apply in greedy decoding too (an unpadded batch: transformers penalises pad ids)."""
    ids = torch.stack(prompts(VOCAB, [6, 6], seed=18, low=1))
    expected = hf_greedy(hf_model, ids, max_new_tokens=14, **kw)
    assert_tokens_equal(sampling.generate(model, ids, max_new_tokens=14, **kw), expected, f"greedy generate with {kw}")


@pytest.mark.exercise("batching")
def test_left_pad_of_equal_lengths_and_of_one_prompt(sampling):
    ids, mask = sampling.left_pad([[3, 4], [5, 6]], pad_token_id=9)
    assert_tokens_equal(ids, torch.tensor([[3, 4], [5, 6]]), "left_pad of prompts of one length (no padding)")
    assert_tokens_equal(mask, torch.ones(2, 2, dtype=torch.long), "left_pad mask without padding")
    ids, mask = sampling.left_pad([torch.tensor([7])], pad_token_id=0)
    assert_tokens_equal(ids, torch.tensor([[7]]), "left_pad of one one-token prompt")
    assert_tokens_equal(mask, torch.tensor([[1]]), "left_pad mask of one one-token prompt")


def test_assert_tokens_equal_names_a_mistake_that_gives_the_ids():
    """The first catalogued mistake whose ids equal the output is named; one that raises or
    differs is not."""
    got, expected = torch.tensor([[1, 2, 3]]), torch.tensor([[1, 2, 4]])

    def fails():
        raise RuntimeError("cannot run here")

    with pytest.raises(AssertionError) as e:
        assert_tokens_equal(got, expected, "ids", mistakes={"right_padding": fails,
                                                            "eos_ignored": lambda: torch.tensor([[1, 2, 5]]),
                                                            M["first_position_logits"]: lambda: got.clone()})
    assert f"likely cause: your output matches what {M['first_position_logits'].cause} gives" in str(e.value)
    assert M["eos_ignored"].cause not in str(e.value) and M["right_padding"].cause not in str(e.value)
    with pytest.raises(AssertionError) as e:
        assert_tokens_equal(got, expected, "ids", mistakes={"eos_ignored": lambda: torch.tensor([[1, 2]])})
    assert "likely cause" not in str(e.value)
