"""Bad arguments are a clear error, good ones in any ordinary form are accepted, and ids
on the wrong device are refused by name, for every public function of the sampling part.

Numbers: NaN, inf and out-of-range values are a ValueError naming the argument; bools,
floats where an int is expected and other types a TypeError. Python ints, numpy ints and
0-d tensors are the same int. Devices: lists are placed on the model's device; a tensor
on another device is a ValueError naming the argument and both devices. On CPU the other
device is PyTorch's "meta" device; test_cuda.py repeats the device checks on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import padded_batch, prompts
from .test_generate import assert_tokens_equal

VOCAB = 97
NAN, INF = float("nan"), float("inf")


@pytest.fixture
def ours(model_pairs):
    return model_pairs["base"]["ours"]


def of(exercise: str, *values, id: str):
    """A parameter of a test that belongs to one exercise: its failure is that exercise's
    (so that a test over several decoders does not hold an earlier exercise back on a later,
    or optional, one)."""
    return pytest.param(*values, marks=pytest.mark.exercise(exercise), id=id)


def logits_and_ids(B=2, V=VOCAB, L=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, V, generator=g), torch.randint(0, V, (B, L), generator=g)


# ----------------------------------------------------------------------------- numbers of the decoders

# (argument, bad value, error, what the message must name); each is tried on generate
# with every other argument valid. top_p = 0 is valid (it keeps the single best token).
GENERATE_BAD = [
    ("temperature", NAN, ValueError), ("temperature", INF, ValueError), ("temperature", -1.0, ValueError),
    ("temperature", 0.0, ValueError), ("temperature", "hot", TypeError), ("temperature", True, TypeError),
    ("top_k", -1, ValueError), ("top_k", 2.0, TypeError), ("top_k", True, TypeError), ("top_k", NAN, TypeError),
    ("top_k", torch.tensor([3]), TypeError),
    ("top_p", NAN, ValueError), ("top_p", -0.1, ValueError), ("top_p", 1.5, ValueError), ("top_p", INF, ValueError),
    ("min_p", NAN, ValueError), ("min_p", -0.1, ValueError), ("min_p", 1.01, ValueError),
    ("repetition_penalty", NAN, ValueError), ("repetition_penalty", 0.0, ValueError),
    ("repetition_penalty", -1.5, ValueError), ("repetition_penalty", INF, ValueError),
    ("frequency_penalty", NAN, ValueError), ("frequency_penalty", -INF, ValueError),
    ("presence_penalty", NAN, ValueError), ("presence_penalty", INF, ValueError),
    ("no_repeat_ngram_size", -1, ValueError), ("no_repeat_ngram_size", 2.0, TypeError),
    ("no_repeat_ngram_size", True, TypeError),
    ("max_new_tokens", 0, ValueError), ("max_new_tokens", -1, ValueError), ("max_new_tokens", 3.0, TypeError),
    ("max_new_tokens", None, TypeError), ("max_new_tokens", True, TypeError),
    ("eos_token_id", -1, ValueError), ("eos_token_id", VOCAB, ValueError), ("eos_token_id", 1.0, TypeError),
    ("eos_token_id", [5, -1], ValueError), ("eos_token_id", [5, 2.5], TypeError), ("eos_token_id", True, TypeError),
    ("pad_token_id", -1, ValueError), ("pad_token_id", VOCAB, ValueError), ("pad_token_id", 0.0, TypeError),
    ("do_sample", "yes", TypeError), ("do_sample", 1, TypeError), ("use_cache", 1, TypeError),
    ("generator", 5, TypeError),
]


@pytest.mark.exercise("kv_cache_loop")
@pytest.mark.parametrize("arg, value, error", GENERATE_BAD, ids=[f"{a}={v!r}" for a, v, _ in GENERATE_BAD])
def test_generate_refuses_bad_numbers_by_name(sampling, ours, arg, value, error):
    ids, mask = padded_batch(VOCAB, [5, 3], seed=1)
    kwargs = {"max_new_tokens": 3, "do_sample": True, "pad_token_id": 0, arg: value}
    with pytest.raises(error, match=arg):
        sampling.generate(ours, ids, mask, **kwargs)


@pytest.mark.exercise("kv_cache_loop")
def test_generate_accepts_numpy_and_0d_tensor_numbers(sampling, ours):
    """The same tokens whatever the form of each number (a seeded generator per call)."""
    ids, mask = padded_batch(VOCAB, [5, 3], seed=2)
    plain = dict(max_new_tokens=6, top_k=7, top_p=0.9, temperature=0.8, repetition_penalty=1.2, eos_token_id=5,
                 pad_token_id=0, no_repeat_ngram_size=2)
    forms = [
        {k: (np.int64(v) if isinstance(v, int) else np.float32(v)) for k, v in plain.items()},
        {k: torch.tensor(v) for k, v in plain.items()},
        {**plain, "eos_token_id": torch.tensor([5])},
    ]
    draw = lambda kw: sampling.generate(ours, ids, mask, do_sample=True,  # noqa: E731
                                        generator=torch.Generator().manual_seed(3), **kw)
    expected = draw(plain)
    for kw in forms:
        assert_tokens_equal(draw(kw), expected, f"generate with {({k: type(v).__name__ for k, v in kw.items()})}")


@pytest.mark.exercise("kv_cache_loop")
def test_numbers_without_a_float_value_are_refused_by_name(sampling, ours):
    """float(10**400) raises OverflowError (such an int is as infinite as inf), and a meta tensor
    has no value to read: ValueErrors naming the argument."""
    for arg in ("temperature", "top_p", "repetition_penalty", "frequency_penalty"):
        with pytest.raises(ValueError, match=f"{arg} must be a finite number, got an int of 401 digits"):
            sampling.generate(ours, [[1, 2]], max_new_tokens=2, do_sample=True, **{arg: -(10**400)})
    # A 0-d meta tensor has no value to read (torch's .item() would fail inside).
    with pytest.raises(ValueError, match="top_p is a tensor on the meta device"):
        sampling.generate(ours, [[1, 2]], max_new_tokens=2, do_sample=True, top_p=torch.tensor(0.5, device="meta"))
    with pytest.raises(ValueError, match=r"eos_token_id\[0\] is a tensor on the meta device"):
        sampling.generate(ours, [[1, 2]], max_new_tokens=2, eos_token_id=torch.tensor([5], device="meta"))


@pytest.mark.exercise("beam_search")
def test_beam_search_refuses_a_length_penalty_without_a_float_value(sampling, ours):
    with pytest.raises(ValueError, match="length_penalty must be a finite number, got an int of 401 digits"):
        sampling.beam_search(ours, [[1, 2]], 2, 2, length_penalty=10**400)


BEAM_BAD = [
    ("num_beams", 0, ValueError), ("num_beams", 2.0, TypeError), ("num_beams", True, TypeError),
    ("num_return_sequences", 0, ValueError), ("num_return_sequences", 4, ValueError),
    ("length_penalty", NAN, ValueError), ("length_penalty", INF, ValueError), ("length_penalty", "long", TypeError),
    ("early_stopping", 1, TypeError), ("early_stopping", 0, TypeError), ("early_stopping", None, TypeError),
    ("early_stopping", "always", ValueError), ("max_new_tokens", 0, ValueError), ("eos_token_id", -2, ValueError),
]


@pytest.mark.exercise("beam_search")
@pytest.mark.parametrize("arg, value, error", BEAM_BAD, ids=[f"{a}={v!r}" for a, v, _ in BEAM_BAD])
def test_beam_search_refuses_bad_arguments_by_name(sampling, ours, arg, value, error):
    ids, mask = padded_batch(VOCAB, [5, 3], seed=1)
    kwargs = {"num_beams": 3, "max_new_tokens": 4, "attention_mask": mask, "pad_token_id": 0, arg: value}
    with pytest.raises(error, match=arg):
        sampling.beam_search(ours, ids, **kwargs)


@pytest.mark.exercise("greedy")
@pytest.mark.parametrize("arg, value, error", [
    ("max_new_tokens", -1, ValueError), ("max_new_tokens", 0, ValueError), ("max_new_tokens", 2.5, TypeError),
    ("eos_token_id", -1, ValueError), ("eos_token_id", VOCAB, ValueError), ("eos_token_id", [1, 2.5], TypeError),
    ("eos_token_id", 1.0, TypeError),
], ids=str)
def test_greedy_decode_refuses_bad_arguments_by_name(sampling, ours, arg, value, error):
    ids = torch.stack(prompts(VOCAB, [4, 4], seed=3))
    kwargs = {"max_new_tokens": 3, arg: value}
    with pytest.raises(error, match=arg):
        sampling.greedy_decode(ours, ids, **kwargs)


@pytest.mark.exercise("two_contexts")
@pytest.mark.parametrize("arg, value, error", [
    ("gamma", NAN, ValueError), ("gamma", INF, ValueError), ("gamma", "1", TypeError), ("mode", "mean", ValueError),
    ("temperature", NAN, ValueError), ("top_p", 2.0, ValueError), ("top_k", -3, ValueError),
    ("max_new_tokens", 0, ValueError),
], ids=str)
def test_sample_two_contexts_refuses_bad_arguments_by_name(sampling, ours, arg, value, error):
    ids_a, mask_a = padded_batch(VOCAB, [4, 2], seed=4)
    ids_b, mask_b = padded_batch(VOCAB, [3, 5], seed=5)
    kwargs = {"max_new_tokens": 3, "pad_token_id": 0, arg: value}
    with pytest.raises(error, match=arg):
        sampling.sample_two_contexts(ours, ids_a, ids_b, mask_a, mask_b, **kwargs)


@pytest.mark.exercise("suffix_scoring")
@pytest.mark.parametrize("arg, value, error", [
    ("num_samples", 0, ValueError), ("num_samples", 2.0, TypeError), ("num_samples", True, TypeError),
    ("eos_token_id", [1, 2.5], TypeError), ("temperature", NAN, ValueError), ("top_p", -1.0, ValueError),
    ("max_new_tokens", -1, ValueError), ("bad_suffix_ids", [], ValueError), ("good_suffix_ids", [1.5], ValueError),
], ids=str)
def test_filtered_sample_refuses_bad_arguments_by_name(sampling, ours, arg, value, error):
    kwargs = dict(prompt_ids=[1, 2, 3], num_samples=2, bad_suffix_ids=[4], good_suffix_ids=[5], max_new_tokens=3)
    kwargs[arg] = value
    with pytest.raises(error, match=arg):
        sampling.filtered_sample(ours, **kwargs)


# ----------------------------------------------------------------------------- numbers of the processors

PROCESSOR_BAD = [
    ("apply_temperature", dict(temperature=NAN), ValueError, "temperature"),
    ("apply_temperature", dict(temperature=INF), ValueError, "temperature"),
    ("apply_temperature", dict(temperature=True), TypeError, "temperature"),
    ("top_k_filter", dict(top_k=1.5), TypeError, "top_k"),
    ("top_k_filter", dict(top_k=3, min_tokens_to_keep=0), ValueError, "min_tokens_to_keep"),
    ("top_p_filter", dict(top_p=NAN), ValueError, "top_p"),
    ("top_p_filter", dict(top_p=1.0001), ValueError, "top_p"),
    ("top_p_filter", dict(top_p=0.5, min_tokens_to_keep=1.0), TypeError, "min_tokens_to_keep"),
    ("min_p_filter", dict(min_p=NAN), ValueError, "min_p"),
    ("min_p_filter", dict(min_p=-0.01), ValueError, "min_p"),
    ("apply_repetition_penalty", dict(penalty=NAN), ValueError, "penalty"),
    ("apply_repetition_penalty", dict(penalty=0.0), ValueError, "penalty"),
    ("apply_frequency_presence_penalty", dict(frequency_penalty=NAN, presence_penalty=0.0), ValueError,
     "frequency_penalty"),
    ("apply_frequency_presence_penalty", dict(frequency_penalty=0.0, presence_penalty=INF), ValueError,
     "presence_penalty"),
    ("no_repeat_ngram_filter", dict(ngram_size=0), ValueError, "ngram_size"),
    ("no_repeat_ngram_filter", dict(ngram_size=2.0), TypeError, "ngram_size"),
    ("process_logits", dict(num_generated=-1), ValueError, "num_generated"),
    ("process_logits", dict(num_generated=7), ValueError, "num_generated"),
    ("process_logits", dict(num_generated=0, top_p=NAN), ValueError, "top_p"),
    ("process_logits", dict(num_generated=0, min_p=NAN), ValueError, "min_p"),
    ("process_logits", dict(num_generated=0, repetition_penalty=NAN), ValueError, "repetition_penalty"),
    ("process_logits", dict(num_generated=0, presence_penalty=NAN), ValueError, "presence_penalty"),
    ("process_logits", dict(num_generated=0, do_sample=False, top_p=NAN), ValueError, "top_p"),
    ("process_logits", dict(num_generated=0, do_sample=False, temperature=NAN), ValueError, "temperature"),
]
TAKES_IDS = {"apply_repetition_penalty", "apply_frequency_presence_penalty", "no_repeat_ngram_filter", "process_logits"}
EXERCISE = {"apply_temperature": "temperature", "top_k_filter": "top_k", "top_p_filter": "top_p",
            "min_p_filter": "top_p"}


@pytest.mark.parametrize("fn, kwargs, error, word", [
    pytest.param(*case, marks=pytest.mark.exercise(EXERCISE.get(case[0], "penalties")), id=f"{case[0]}-{case[1]}")
    for case in PROCESSOR_BAD
])
def test_processors_refuse_bad_numbers_by_name(sampling, fn, kwargs, error, word):
    logits, ids = logits_and_ids()
    args = (logits, ids) if fn in TAKES_IDS else (logits,)
    with pytest.raises(error, match=word):
        getattr(sampling, fn)(*args, **kwargs)


@pytest.mark.exercise("penalties")
def test_processors_refuse_ids_outside_the_vocabulary(sampling):
    logits, ids = logits_and_ids()
    ids[1, 2] = VOCAB  # one past the last token
    for fn, extra in (("apply_repetition_penalty", (1.3,)), ("apply_frequency_presence_penalty", (0.5, 0.5)),
                      ("no_repeat_ngram_filter", (2,))):
        with pytest.raises(ValueError, match="input_ids"):
            getattr(sampling, fn)(logits, ids, *extra)
    with pytest.raises(ValueError, match="history"):
        sampling.process_logits(logits, ids, 0, repetition_penalty=1.3)


@pytest.mark.exercise("temperature")
@pytest.mark.parametrize("row", [[0.0, NAN, 1.0], [float("-inf")] * 3, [0.0, INF, 1.0]], ids=["nan", "all-inf", "inf"])
def test_sample_token_refuses_rows_without_a_distribution(sampling, row):
    """torch.multinomial would fail with a bare error (or draw garbage): name logits instead."""
    logits = torch.tensor([[0.5, 0.2, 0.1], row])
    with pytest.raises(ValueError, match="logits"):
        sampling.sample_token(logits, torch.Generator().manual_seed(0))


NO_VOCABULARY = [
    of("temperature", lambda s, e: s.sample_token(e), id="sample_token"),
    of("temperature", lambda s, e: s.apply_temperature(e, 0.5), id="apply_temperature"),
    of("top_k", lambda s, e: s.top_k_filter(e, 2), id="top_k_filter"),
    of("top_p", lambda s, e: s.top_p_filter(e, 0.5), id="top_p_filter"),
    of("top_p", lambda s, e: s.min_p_filter(e, 0.1), id="min_p_filter"),
    of("penalties", lambda s, e: s.process_logits(e, [[], []], 0), id="process_logits"),
]


@pytest.mark.parametrize("call", NO_VOCABULARY)
def test_processors_refuse_logits_without_a_vocabulary(sampling, call):
    """(B, 0) logits: nothing to keep or draw; torch's amax and multinomial fail with bare errors."""
    with pytest.raises(ValueError, match=r"logits must hold at least one token per row .*shape \(2, 0\)"):
        call(sampling, torch.zeros(2, 0))


@pytest.mark.exercise("two_contexts")
def test_combine_two_contexts_refuses_bad_gamma_and_shapes(sampling):
    a, b = torch.zeros(2, 5), torch.ones(2, 5)
    for gamma in (NAN, INF, -INF):
        with pytest.raises(ValueError, match="gamma"):
            sampling.combine_two_contexts(a, b, "contrastive", gamma)
    with pytest.raises(ValueError, match="logits_b"):
        sampling.combine_two_contexts(a, torch.ones(2, 6), "product", 1.0)


@pytest.mark.exercise("kv_cache_loop")
def test_cache_helpers_refuse_bad_rows(sampling):
    past = tuple((torch.zeros(3, 2, 4, 5), torch.zeros(3, 2, 4, 5)) for _ in range(2))
    for repeats, error in ((0, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match="repeats"):
            sampling.expand_cache(past, repeats)
    for index, error in (([0, 3], ValueError), ([-1], ValueError), (torch.tensor([0.0, 1.0]), ValueError)):
        with pytest.raises(error, match="index"):
            sampling.reorder_cache(past, index)
    got = sampling.reorder_cache(past, [2, 0])  # a list is a valid index
    assert got[0][0].shape == (2, 2, 4, 5)


# ----------------------------------------------------------------------------- ids: forms, empty batches


EMPTY_BATCH = [
    of("kv_cache_loop", lambda s, m, e: s.generate(m, e, max_new_tokens=2), id="generate"),
    of("greedy", lambda s, m, e: s.greedy_decode(m, e, 2), id="greedy_decode"),
    of("beam_search", lambda s, m, e: s.beam_search(m, e, 2, 2), id="beam_search"),
    of("two_contexts", lambda s, m, e: s.sample_two_contexts(m, e, e, max_new_tokens=2), id="sample_two_contexts"),
]


@pytest.mark.parametrize("call", EMPTY_BATCH)
def test_empty_batch_is_refused_by_name(sampling, ours, call):
    with pytest.raises(ValueError, match="input_ids"):
        call(sampling, ours, torch.zeros(0, 4, dtype=torch.long))


@pytest.mark.exercise("kv_cache_loop")
@pytest.mark.parametrize("ids, error", [
    ([[1.5, 2.0]], ValueError), ([[True, False]], ValueError), ([[1, 2], [3]], ValueError), ("abc", TypeError),
    ([[1, VOCAB]], ValueError), ([[-1, 2]], ValueError), (torch.tensor([[1.0, 2.0]]), ValueError),
], ids=["floats", "bools", "ragged", "string", "past-vocab", "negative", "float-tensor"])
def test_bad_ids_are_refused_by_name(sampling, ours, ids, error):
    with pytest.raises(error, match="input_ids"):
        sampling.generate(ours, ids, max_new_tokens=2)


@pytest.mark.exercise("kv_cache_loop")
def test_bad_masks_are_refused_by_name(sampling, ours):
    ids, mask = padded_batch(VOCAB, [5, 3], seed=6)
    for bad in (mask.float() * 0.5 + 0.5, mask * 2, mask[:, 1:]):
        with pytest.raises(ValueError, match="attention_mask"):
            sampling.generate(ours, ids, bad, max_new_tokens=2, pad_token_id=0)


@pytest.mark.exercise("kv_cache_loop")
def test_lists_and_tuples_equal_tensors(sampling, model):
    """Every decoder takes nested lists or tuples of ids (and masks) as the tensors they spell."""
    ids, mask = padded_batch(VOCAB, [5, 3], seed=7)
    L, M = ids.tolist(), tuple(map(tuple, mask.tolist()))
    expected = sampling.generate(model, ids, mask, max_new_tokens=4, pad_token_id=0)
    assert_tokens_equal(sampling.generate(model, L, M, max_new_tokens=4, pad_token_id=0), expected, "generate(lists)")
    assert_tokens_equal(sampling.generate(model, ids.numpy(), mask.numpy(), max_new_tokens=4, pad_token_id=0), expected,
                        "generate(numpy arrays)")
    assert_tokens_equal(sampling.generate(model, list(ids), mask, max_new_tokens=4, pad_token_id=0), expected,
                        "generate(a list of row tensors)")


@pytest.mark.exercise("greedy")
def test_greedy_decode_takes_lists(sampling, model):
    plain = torch.stack(prompts(VOCAB, [4, 4], seed=8))
    assert_tokens_equal(sampling.greedy_decode(model, tuple(plain.tolist()), 3), sampling.greedy_decode(model, plain, 3),
                        "greedy_decode(tuple of lists)")


@pytest.mark.exercise("beam_search")
def test_beam_search_takes_lists(sampling, model):
    ids, mask = padded_batch(VOCAB, [5, 3], seed=7)
    L, M = ids.tolist(), tuple(map(tuple, mask.tolist()))
    beams = sampling.beam_search(model, ids, 2, 4, attention_mask=mask, pad_token_id=0)
    got = sampling.beam_search(model, L, 2, 4, attention_mask=M, pad_token_id=0)
    assert_tokens_equal(got.sequences, beams.sequences, "beam_search(lists)")


@pytest.mark.exercise("batching")
def test_left_pad_checks_and_devices(sampling):
    # A numpy mask (what a tokenizer may return) is the tensor it spells.
    # Padding may get any valid position (it is masked): 0, or transformers' 1; real tokens count from 0.
    pos = sampling.position_ids_from_mask(np.array([[0, 1, 1], [1, 1, 1]]))
    assert isinstance(pos, torch.Tensor) and pos.dtype == torch.long, f"position ids are a long tensor, got {pos!r}"
    real = torch.tensor([[0, 1, 1], [1, 1, 1]]).bool()
    assert pos[real].tolist() == [0, 1, 0, 1, 2] and int(pos[~real].min()) >= 0, (
        f"position_ids_from_mask(a numpy mask) = {pos.tolist()}, expected [[any, 0, 1], [0, 1, 2]]")
    ids, mask = sampling.left_pad([(5, 6), np.array([7])], 0, device="cpu")
    assert_tokens_equal(ids, torch.tensor([[5, 6], [0, 7]]), "left_pad of a tuple and a numpy array")
    for seqs, pad, error, word in (([], 0, ValueError, "sequences"), ([[1], []], 0, ValueError, r"sequences\[1\]"),
                                   ([[1.5]], 0, ValueError, r"sequences\[0\]"), ([[1]], -1, ValueError, "pad_token_id"),
                                   ([[1]], 1.0, TypeError, "pad_token_id")):
        with pytest.raises(error, match=word):
            sampling.left_pad(seqs, pad)
    with pytest.raises(ValueError, match=r"sequences\[1\].*meta.*cpu"):
        sampling.left_pad([torch.tensor([1]), torch.tensor([2], device="meta")], 0, device="cpu")


# ----------------------------------------------------------------------------- devices (meta stands for "elsewhere")


def _meta(t):
    return torch.empty(t.shape, dtype=t.dtype, device="meta")


ELSEWHERE = r"is on meta but the model is on cpu"
# (exercise, the call on (sampling, model, ids, mask), the argument its error names)
ON_ANOTHER_DEVICE = [
    of("kv_cache_loop", lambda s, m, i, k: s.generate(m, _meta(i), k, max_new_tokens=2, pad_token_id=0), "input_ids",
       id="generate-input_ids"),
    of("kv_cache_loop", lambda s, m, i, k: s.generate(m, i, _meta(k), max_new_tokens=2, pad_token_id=0),
       "attention_mask", id="generate-attention_mask"),
    of("greedy", lambda s, m, i, k: s.greedy_decode(m, _meta(i), 2), "input_ids", id="greedy_decode"),
    of("greedy", lambda s, m, i, k: s.greedy_decode(m, [i[0], _meta(i[1])], 2), "input_ids\\[1\\]",
       id="greedy_decode-row"),
    of("beam_search", lambda s, m, i, k: s.beam_search(m, _meta(i), 2, 2, attention_mask=k, pad_token_id=0),
       "input_ids", id="beam_search"),
    of("two_contexts", lambda s, m, i, k: s.sample_two_contexts(m, i, _meta(i), k, k, max_new_tokens=2,
                                                                 pad_token_id=0), "input_ids_b", id="two_contexts"),
    of("suffix_scoring", lambda s, m, i, k: s.score_suffix(m, _meta(i[0]), [[1]], [2]), "prompt_ids",
       id="score_suffix"),
    of("suffix_scoring", lambda s, m, i, k: s.score_suffix_naive(m, [1, 2], [[1], _meta(i[0])], [2]),
       "completions\\[1\\]", id="score_suffix_naive"),
    of("suffix_scoring", lambda s, m, i, k: s.filtered_sample(m, [1, 2], 2, _meta(i[0]), [3], max_new_tokens=2),
       "suffix_ids", id="filtered_sample"),
]


@pytest.mark.parametrize("call, name", ON_ANOTHER_DEVICE)
def test_tensors_on_another_device_are_refused_naming_both_devices(sampling, ours, call, name):
    ids, mask = padded_batch(VOCAB, [5, 3], seed=9)
    with pytest.raises(ValueError, match=f"{name} {ELSEWHERE}"):
        call(sampling, ours, ids, mask)


@pytest.mark.exercise("penalties")
def test_processors_refuse_ids_on_another_device(sampling):
    logits, hist = logits_and_ids()
    with pytest.raises(ValueError, match="input_ids is on meta but logits is on cpu"):
        sampling.apply_repetition_penalty(logits, _meta(hist), 1.2)
    with pytest.raises(ValueError, match="history is on meta but logits is on cpu"):
        sampling.process_logits(logits, _meta(hist), 0)


@pytest.mark.exercise("two_contexts")
def test_combine_two_contexts_refuses_logits_on_another_device(sampling):
    logits, _ = logits_and_ids()
    with pytest.raises(ValueError, match="logits_b is on meta"):
        sampling.combine_two_contexts(logits, _meta(logits), "contrastive", 1.0)
