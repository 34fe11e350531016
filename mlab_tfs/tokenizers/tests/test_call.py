"""Calling the tokenizers like transformers': every argument of ``tokenizer(...)`` and
``tokenizer.pad(...)`` against BertTokenizerFast and GPT2TokenizerFast on the same vocabulary
(MiniLM's vocab.txt; GPT-2's vocab.json + merges.txt): the same keys, values and types.

The call itself is given (batching.py); what it runs of yours is tokenize/encode, truncate_pair,
build_inputs_with_special_tokens and create_token_type_ids_from_sequences, so these tests are
exercise 5's (BERT) and 10's (GPT-2).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from .diagnosis import bert_batch_diagnosis
from .strategies import TRICKY, any_text, fuzz

calls = settings(fuzz, max_examples=150, report_multiple_bugs=False)  # two tokenizers on a small batch per example


@pytest.fixture(scope="session")
def bert(tok, bert_vocab_dir):
    return tok.WordPieceTokenizer.from_pretrained(bert_vocab_dir)


@pytest.fixture(scope="session")
def fast_bert(bert_vocab_dir):
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(bert_vocab_dir))


@pytest.fixture(scope="session")
def gpt2(tok, gpt2_dir):
    return tok.ByteLevelBPETokenizer.from_pretrained(gpt2_dir)


@pytest.fixture(scope="session")
def fast_gpt2(gpt2_dir):
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast.from_pretrained(str(gpt2_dir))


# The tests that run both tokenizers the same way: one parameter per tokenizer, each the test of
# its own exercise (BERT's call is exercise 5's; GPT-2's needs your GPT-2 encode, exercise 10).
BOTH = pytest.mark.parametrize("kind", [pytest.param("bert", marks=pytest.mark.exercise("bert_batch")),
                                         pytest.param("gpt2", marks=pytest.mark.exercise("bpe_encode"))])


@pytest.fixture()
def ours_theirs(request, kind):
    """(ours, transformers') for the parametrized kind: (bert, fast_bert) or (gpt2, fast_gpt2)."""
    return request.getfixturevalue(kind), request.getfixturevalue(f"fast_{kind}")


@pytest.fixture()
def padded_gpt2s(tok, gpt2_dir):
    """Ours and transformers' GPT-2 tokenizers with pad_token = eos_token (fresh: the attribute is set)."""
    from transformers import GPT2TokenizerFast

    ours, theirs = tok.ByteLevelBPETokenizer.from_pretrained(gpt2_dir), GPT2TokenizerFast.from_pretrained(str(gpt2_dir))
    ours.pad_token, theirs.pad_token = ours.eos_token, theirs.eos_token
    return ours, theirs


def reference(tokenizer, *args, **kwargs):
    """transformers' result, or the exception it raised (a Rust panic is a BaseException)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tokenizer(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001  (pyo3's PanicException derives from BaseException)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            return e


def assert_same(got, expected, what=""):
    """Same keys in the same order, equal values of the same types (lists / tuples / tensors / arrays)."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    assert list(got.keys()) == list(expected.keys()), f"{what}: keys {list(got.keys())}, transformers {list(expected.keys())}"
    for key in expected:
        a, b = got[key], expected[key]
        assert type(a) is type(b), f"{what}: {key} is a {type(a).__name__}, transformers' a {type(b).__name__}"
        if isinstance(b, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), f"{what}: {key}\n {a}\n {b}"
        elif isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {key} {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
            assert all(np.array_equal(x, y) for x, y in zip(a, b)), f"{what}: {key}\n {a}\n {b}"
        else:
            assert a == b and repr(a) == repr(b), f"{what}: {key}\n  yours        {a}\n  transformers {b}"


def unassigned(*texts) -> bool:
    """True if some text holds a code point unassigned in Python's Unicode (14.0): where the
    regex module's newer tables and the Rust library's disagree on \\p{L}, GPT-2's words
    (word_ids) can differ though the ids do not."""
    import unicodedata

    flat = [t for x in texts for t in ([x] if isinstance(x, str) else (x or [])) for t in ([t] if isinstance(t, str) else t)]
    return any(unicodedata.category(c) == "Cn" for t in flat for c in t)


def compare(ours, theirs, *args, words=True, **kwargs):
    """Ours equal to transformers', or both refuse (ours with a ValueError); with words, also
    word_ids(), sequence_ids() and tokens() of every row."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    expected = reference(theirs, *args, **kwargs)
    what = f"{args!r} {kwargs}"
    if isinstance(expected, BaseException):
        with pytest.raises(ValueError):
            ours(*args, **kwargs)
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = ours(*args, **kwargs)
        assert_same(got, expected, what)
        for i in range(len(expected.encodings) if words else 0):  # each row, overflow rows too
            for method in ("word_ids", "sequence_ids", "tokens"):
                assert getattr(got, method)(i) == getattr(expected, method)(i), f"{what}: {method}({i})"
    except (AssertionError, ValueError) as e:  # name the piece of exercise 5 behind it, if one is wrong
        try:
            cause = bert_batch_diagnosis(ours)
        except NotImplementedError:  # a piece not written yet: the mismatch itself is the news
            cause = None
        if cause is None:
            raise
        raise AssertionError(f"the call is wrong because of exercise 5's pieces: {cause}\n{e}") from e
    return got


def _specials(kwargs, pair: bool, tokenizer: str) -> int:
    if tokenizer == "gpt2" or kwargs.get("add_special_tokens") is False:
        return 0
    return 3 if pair else 2


options = st.fixed_dictionaries({}, optional={
    "padding": st.sampled_from([False, True, "longest", "max_length", "do_not_pad"]),
    "truncation": st.sampled_from([None, True, False, "longest_first", "only_first", "only_second"]),
    "max_length": st.integers(1, 14),
    "stride": st.integers(0, 4),
    "return_overflowing_tokens": st.booleans(),
    "pad_to_multiple_of": st.sampled_from([None, 2, 3, 8]),
    "padding_side": st.sampled_from(["right", "left"]),
    "add_special_tokens": st.booleans(),
    "return_token_type_ids": st.sampled_from([None, True, False]),
    "return_attention_mask": st.sampled_from([None, True, False]),
    "return_special_tokens_mask": st.booleans(),
    "return_offsets_mapping": st.booleans(),
    "return_length": st.booleans(),
    "return_tensors": st.sampled_from([None, None, "pt", "np"]),
})
short_text = st.one_of(any_text, st.lists(st.sampled_from(["a", "b", "Hello", ",", "wörld", "中", " "]),
                                          max_size=12).map(" ".join))
inputs = st.one_of(
    st.tuples(short_text, st.none()),
    st.tuples(short_text, short_text),  # an empty pair of one text counts as none (test_empty_pair)
    st.integers(1, 3).flatmap(lambda n: st.tuples(st.lists(short_text, min_size=n, max_size=n),
                                                  st.one_of(st.none(), st.lists(short_text, min_size=n, max_size=n)))),
)


def _fuzz_call(ours, theirs, name, texts, kwargs):
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    text, pair = texts
    n_special = _specials(kwargs, pair is not None, name)
    strategy = kwargs.get("truncation")
    cuts = strategy not in (None, False) or (strategy is None and "max_length" in kwargs
                                             and kwargs.get("padding", False) is False)
    # transformers returns rows uncut below the special tokens' count, where we refuse (tested below)
    assume(not (cuts and kwargs.get("max_length", 10**9) < n_special))
    compare(ours, theirs, text, pair, words=name == "bert" or not unassigned(text, pair), **kwargs)


@pytest.mark.exercise("bert_batch")
@calls
@given(texts=inputs, kwargs=options)
def test_bert_call_matches_transformers_on_any_arguments(bert, fast_bert, texts, kwargs):
    _fuzz_call(bert, fast_bert, "bert", texts, kwargs)


@pytest.mark.exercise("bpe_encode")
@calls
@given(texts=inputs, kwargs=options)
def test_gpt2_call_matches_transformers_on_any_arguments(tok, gpt2_dir, texts, kwargs):
    ours, theirs = _padded_gpt2s(tok, gpt2_dir)
    _fuzz_call(ours, theirs, "gpt2", texts, kwargs)


_GPT2S = {}


def _padded_gpt2s(tok, gpt2_dir):
    """A pair built once per implementation (hypothesis runs the test body many times)."""
    if tok.__name__ not in _GPT2S:
        from transformers import GPT2TokenizerFast

        ours, theirs = tok.ByteLevelBPETokenizer.from_pretrained(gpt2_dir), GPT2TokenizerFast.from_pretrained(str(gpt2_dir))
        ours.pad_token, theirs.pad_token = ours.eos_token, theirs.eos_token
        _GPT2S[tok.__name__] = ours, theirs
    return _GPT2S[tok.__name__]


# --------------------------------------------------------------------------- offsets


@pytest.mark.exercise("bert_batch")
@fuzz
@given(text=any_text)
def test_bert_offsets_match_the_fast_tokenizer(bert, fast_bert, text):
    """Through lower-casing, accent stripping, CJK, control characters, [UNK] words and special
    tokens written in the text: the characters of the original text each token came from."""
    compare(bert, fast_bert, text, return_offsets_mapping=True, add_special_tokens=False)


@pytest.mark.exercise("bpe_encode")
@fuzz
@given(text=any_text)
def test_gpt2_offsets_match_the_fast_tokenizer(gpt2, fast_gpt2, text):
    """Byte-level tokens that split a character's bytes both span that character."""
    compare(gpt2, fast_gpt2, text, return_offsets_mapping=True, words=not unassigned(text))


@pytest.mark.exercise("bert_batch")
@pytest.mark.parametrize("text, tokens, spans", [
    ("Héllo, WÖRLD!", ["hello", ",", "world", "!"], [(0, 5), (5, 6), (7, 12), (12, 13)]),
    ("中国abc", ["中", "国", "abc"], [(0, 1), (1, 2), (2, 5)]),
    ("a\u200bb [SEP]x", ["ab", "[SEP]", "x"], [(0, 3), (4, 9), (9, 10)]),  # a dropped character inside a word
    ("xyzzyq 😀", ["x", "##y", "##zzy", "##q", "[UNK]"], [(0, 1), (1, 2), (2, 5), (5, 6), (7, 8)]),
    ("e\u0301clair", ["ec", "##lai", "##r"], [(0, 3), (3, 6), (6, 7)]),  # the stripped accent stays in the span
    ("\u0130x", ["ix"], [(0, 2)]),  # "İ" lower-cases to two characters, one stripped
])
def test_bert_offsets_examples(bert, fast_bert, text, tokens, spans):
    got = bert(text, return_offsets_mapping=True, add_special_tokens=False)
    assert bert.tokenize(text) == tokens
    assert got["offset_mapping"] == spans == fast_bert(text, return_offsets_mapping=True,
                                                       add_special_tokens=False)["offset_mapping"]


@pytest.mark.exercise("bpe_encode")
def test_gpt2_offsets_examples(gpt2, fast_gpt2):
    text = " Hello  world\n\n hi 😀 é<|endoftext|>"
    got = gpt2(text, return_offsets_mapping=True)
    assert got["offset_mapping"] == [(0, 6), (6, 7), (7, 13), (13, 15), (15, 18), (18, 20), (19, 20), (20, 22), (22, 35)]
    assert got["input_ids"][-1] == 50256, "a special token written in the text is that token, as in transformers"
    assert_same(got, fast_gpt2(text, return_offsets_mapping=True))


@BOTH
def test_offsets_on_a_corpus(ours_theirs, shakespeare_lines):
    lines = [line for line in shakespeare_lines[:400] if line]
    ours, theirs = ours_theirs
    got = ours(lines, return_offsets_mapping=True)["offset_mapping"]
    assert got == theirs(lines, return_offsets_mapping=True)["offset_mapping"]


# --------------------------------------------------------------------------- boundaries


A, B = "a a a a a a a", "b b b b"  # 7 and 4 tokens in both vocabularies


@pytest.mark.exercise("bert_batch")
@pytest.mark.parametrize("args, kwargs", [
    ((A,), {"max_length": 2, "truncation": True, "return_overflowing_tokens": True}),  # only the specials: all overflows
    ((A, B), {"max_length": 3, "truncation": True, "return_overflowing_tokens": True}),
    ((A,), {"max_length": 4, "truncation": True, "return_overflowing_tokens": True, "stride": 1}),
    ((A,), {"max_length": 5, "truncation": True, "return_overflowing_tokens": True, "stride": 2}),  # stride = kept - 1
    ((A, B), {"max_length": 7, "truncation": True, "return_overflowing_tokens": True, "stride": 1}),  # 18 rows
    ((A, B), {"max_length": 9, "truncation": "only_first", "return_overflowing_tokens": True, "stride": 1}),
    ((A, B), {"max_length": 12, "truncation": "only_second", "return_overflowing_tokens": True, "stride": 1}),
    (([A, "a", ""], [B, "b b", "b"]), {"max_length": 6, "truncation": True, "return_overflowing_tokens": True,
                                        "padding": True, "return_special_tokens_mask": True, "return_length": True}),
    ((A,), {"max_length": 5, "return_overflowing_tokens": True}),  # max_length alone truncates
    ((A,), {"return_overflowing_tokens": True, "return_tensors": "pt"}),
    (([A, "a"],), {"padding": True, "pad_to_multiple_of": 4, "padding_side": "left", "return_offsets_mapping": True}),
    (([A, "a"],), {"padding": "max_length", "max_length": 8, "pad_to_multiple_of": 4, "truncation": True}),
    (([A, "a"],), {"padding": "max_length", "max_length": 6, "pad_to_multiple_of": 4}),  # no truncation: 8
    (("",), {"return_offsets_mapping": True, "return_length": True, "return_special_tokens_mask": True}),
    ((["", ""],), {"padding": True, "return_tensors": "np"}),
    ((["a", "b c d"],), {"return_tensors": "np"}),  # ragged: an object array of rows
    ((A, B), {"max_length": 12, "truncation": "only_second", "padding": "max_length"}),
    ((A, B), {"max_length": 12, "truncation": "only_first", "return_offsets_mapping": True}),
    # without special tokens: windows of one token, and a max_length below BERT's two (no stride check then)
    ((A,), {"max_length": 1, "add_special_tokens": False, "return_overflowing_tokens": True}),
    (("",), {"max_length": 1, "add_special_tokens": False, "stride": 3}),
])
def test_bert_boundaries(bert, fast_bert, args, kwargs):
    assert compare(bert, fast_bert, *args, **kwargs) is not None, "transformers accepts these"


@pytest.mark.exercise("bert_batch")
def test_overflow_rows_of_a_pair_in_transformers_order(bert, fast_bert):
    got = bert(A, B, max_length=7, truncation=True, return_overflowing_tokens=True, stride=1)
    assert len(got["input_ids"]) == 18 and got["overflow_to_sample_mapping"] == [0] * 18
    assert got["input_ids"][0] == [101, 1037, 1037, 102, 1038, 1038, 102]


@pytest.mark.exercise("bert_batch")
@pytest.mark.parametrize("side", ["left", "right"])
def test_truncation_side(tok, bert_vocab_dir, fast_bert, side):
    ours = tok.WordPieceTokenizer.from_pretrained(bert_vocab_dir)
    from transformers import BertTokenizerFast

    theirs = BertTokenizerFast.from_pretrained(str(bert_vocab_dir))
    ours.truncation_side = theirs.truncation_side = side
    for args, kwargs in [((A + " c",), {"max_length": 5, "truncation": True, "return_overflowing_tokens": True,
                                        "stride": 1}),
                         ((A + " c", B), {"max_length": 7, "truncation": True, "return_overflowing_tokens": True,
                                          "stride": 1, "return_offsets_mapping": True})]:
        assert compare(ours, theirs, *args, **kwargs) is not None


@pytest.mark.exercise("bert_batch")
@pytest.mark.parametrize("max_length, stride, match", [
    (4, 2, "stride=2 must be less than the 2 tokens kept of text"),  # the cut: Rust's panic
    (3, 1, "stride=1 must be less than the 1 tokens kept of text"),
    (4, 3, "stride=3 must be at most max_length=4 minus the 2 special tokens"),  # enable_truncation's ValueError
    (5, 7, "stride=7 must be at most max_length=5 minus the 2 special tokens"),
])
def test_stride_at_or_past_the_kept_tokens_is_refused(bert, fast_bert, max_length, stride, match):
    """transformers refuses a stride past max_length minus the special tokens (ValueError) and
    panics in Rust when a text is cut to no more tokens than the stride; ours names it."""
    assert isinstance(reference(fast_bert, A, max_length=max_length, truncation=True, stride=stride,
                                return_overflowing_tokens=True), BaseException)
    with pytest.raises(ValueError, match=match):
        bert(A, max_length=max_length, truncation=True, stride=stride, return_overflowing_tokens=True)
    # an uncut text is fine at the first limit, as in transformers
    if stride <= max_length - 2:
        assert compare(bert, fast_bert, "a", max_length=max_length, truncation=True, stride=stride) is not None


# (given code: the call's argument checks, no exercise)
def test_pad_to_multiple_of_must_divide_the_truncation_length(bert, fast_bert):
    kwargs = {"max_length": 6, "truncation": True, "padding": True, "pad_to_multiple_of": 4}
    assert isinstance(reference(fast_bert, [A, "a"], **kwargs), ValueError)
    with pytest.raises(ValueError, match="max_length=6 must be a multiple of pad_to_multiple_of=4"):
        bert([A, "a"], **kwargs)


@BOTH
def test_keys_and_types_by_default(ours_theirs, kind):
    """BERT: input_ids, token_type_ids, attention_mask; GPT-2: input_ids, attention_mask; one text
    gives flat lists, return_length a list of one, tensors a batch of one."""
    ours, theirs = ours_theirs
    assert ours.model_input_names == theirs.model_input_names
    assert ours.model_max_length == theirs.model_max_length and ours.get_vocab() == theirs.get_vocab()
    assert (ours.padding_side, ours.truncation_side) == (theirs.padding_side, theirs.truncation_side) == \
        ("right", "right")
    for kwargs in ({}, {"return_length": True}, {"return_tensors": "pt", "return_offsets_mapping": True},
                   {"return_tensors": "np", "return_length": True}, {"return_token_type_ids": True}):
        assert compare(ours, theirs, "Hello, world!", **kwargs) is not None
    if kind == "bert":  # GPT-2 pads only once it has a pad token
        pt = ours(["a b", "c"], padding=True, return_tensors="pt", return_offsets_mapping=True)
        assert pt["offset_mapping"].shape == (2, 4, 2) and pt["offset_mapping"].dtype == torch.long


@BOTH
@pytest.mark.parametrize("words", [["Héllo", "wörld,", "x"], [["Héllo", "wörld"], ["x", "[SEP]", "y z"]]])
def test_is_split_into_words(ours_theirs, words):
    """Each word on its own, offsets within the word, as the fast tokenizers do."""
    pair = None if isinstance(words[0], str) else [["b"], ["c", "d"]]
    ours, theirs = ours_theirs
    assert compare(ours, theirs, words, pair, is_split_into_words=True, return_offsets_mapping=True) is not None


@pytest.mark.exercise("bpe_encode")
def test_gpt2_padding_needs_a_pad_token(gpt2, fast_gpt2, padded_gpt2s):
    assert gpt2.pad_token is None and gpt2.pad_token_id is None and fast_gpt2.pad_token is None
    assert isinstance(reference(fast_gpt2, ["a", "b c"], padding=True), ValueError)
    with pytest.raises(ValueError, match="padding needs a pad token.*pad_token = tokenizer.eos_token"):
        gpt2(["a", "b c"], padding=True)
    with pytest.raises(ValueError, match="padding needs a pad token"):
        gpt2.pad({"input_ids": [[1], [2, 3]]})
    ours, theirs = padded_gpt2s
    assert ours.pad_token == theirs.pad_token == "<|endoftext|>" and ours.pad_token_id == theirs.pad_token_id == 50256
    for side in ("right", "left"):
        assert compare(ours, theirs, ["a", "b c d", ""], padding=True, padding_side=side,
                       return_tensors="pt") is not None
    ours.pad_token_id = 0
    assert ours.pad_token == "!"
    with pytest.raises(ValueError, match="pad_token 'nope' is not a token of this vocabulary"):
        ours.pad_token = "nope"


@pytest.mark.exercise("bert_batch")
def test_special_token_helpers(bert, fast_bert, gpt2, fast_gpt2):
    assert bert.convert_tokens_to_ids("hello") == fast_bert.convert_tokens_to_ids("hello") == 7592
    assert bert.convert_tokens_to_ids(["hello", "zzzzzz"]) == fast_bert.convert_tokens_to_ids(["hello", "zzzzzz"])
    assert gpt2.convert_tokens_to_ids("<|endoftext|>") == 50256 and gpt2.convert_tokens_to_ids(["Hello"]) == [15496]
    assert sorted(bert.all_special_ids) == sorted(fast_bert.all_special_ids)
    assert gpt2.all_special_ids == fast_gpt2.all_special_ids == [50256]
    assert gpt2.eos_token == gpt2.bos_token == fast_gpt2.eos_token
    row = bert("a [SEP] b", "c")["input_ids"]
    assert bert.get_special_tokens_mask(row, already_has_special_tokens=True) == \
        fast_bert.get_special_tokens_mask(row, already_has_special_tokens=True)
    assert bert.get_special_tokens_mask([5, 6], [7]) == [1, 0, 0, 1, 0, 1]  # transformers 5's fast one has none
    assert bert.num_special_tokens_to_add(True) == 3 and gpt2.num_special_tokens_to_add(True) == 0


@pytest.mark.exercise("bert_batch")
def test_build_inputs_with_special_tokens(bert, fast_bert):
    assert bert.build_inputs_with_special_tokens([7, 8]) == [101, 7, 8, 102], "[CLS] A [SEP]"
    assert bert.build_inputs_with_special_tokens([7, 8], [9]) == [101, 7, 8, 102, 9, 102], "[CLS] A [SEP] B [SEP]"
    assert bert.build_inputs_with_special_tokens([], []) == [101, 102, 102]
    assert bert.create_token_type_ids_from_sequences([7, 8]) == [0, 0, 0, 0]
    assert bert.create_token_type_ids_from_sequences([7, 8], [9]) == [0, 0, 0, 0, 1, 1], (
        "0 for [CLS] A [SEP], 1 for B [SEP]")
    marks = [object(), object()]
    assert bert.build_inputs_with_special_tokens(marks)[1:3] == marks, (
        "put the items given in the row as they are: the given __call__ passes markers, not ids")


# --------------------------------------------------------------------------- pad and collators


@pytest.mark.exercise("bert_batch")
@pytest.mark.parametrize("kwargs", [
    {}, {"padding": "max_length", "max_length": 10}, {"pad_to_multiple_of": 8}, {"padding_side": "left"},
    {"return_tensors": "pt"}, {"return_tensors": "np"}, {"padding": False}, {"return_attention_mask": False},
])
def test_pad_matches_transformers(bert, fast_bert, kwargs):
    texts = ["Hello, world!", "A much longer sentence, with some punctuation.", "x"]
    features = [dict(bert(t, return_special_tokens_mask=True)) for t in texts]
    expected = fast_bert.pad([dict(f) for f in features], **kwargs)
    assert_same(bert.pad([dict(f) for f in features], **kwargs), expected, f"list of dicts, {kwargs}")
    as_dict = {k: [f[k] for f in features] for k in features[0]}
    assert_same(bert.pad(dict(as_dict), **kwargs), fast_bert.pad(dict(as_dict), **kwargs), f"dict of lists, {kwargs}")
    one = bert.pad(features[0], padding="max_length", max_length=12)
    assert_same(one, fast_bert.pad(features[0], padding="max_length", max_length=12), "one example")


# (given code: the call's argument checks, no exercise)
def test_pad_tensors_in_and_other_keys(bert, fast_bert):
    features = [{"input_ids": torch.tensor([101, 7592, 102]), "label": 1}, {"input_ids": torch.tensor([101, 102]),
                                                                            "label": 0}]
    assert_same(bert.pad(features), fast_bert.pad(features), "tensors in: tensors out")
    with pytest.raises(ValueError, match="encoded_inputs must have 'input_ids'"):
        bert.pad({"ids": [[1]]})


@pytest.mark.exercise("bert_batch")
@pytest.mark.parametrize("collator_kwargs", [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 24}])
def test_data_collator_with_padding_in_a_dataloader(bert, fast_bert, collator_kwargs):
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    texts = ["Hello, world!", "A much longer sentence, with some punctuation.", "x", "Four words are here.", "ok"]
    dataset = [{**bert(t), "label": i % 2} for i, t in enumerate(texts)]
    ours = DataLoader(dataset, batch_size=2, collate_fn=DataCollatorWithPadding(bert, **collator_kwargs))
    theirs = DataLoader(dataset, batch_size=2, collate_fn=DataCollatorWithPadding(fast_bert, **collator_kwargs))
    n = 0
    for got, expected in zip(ours, theirs):
        assert_same(dict(got), dict(expected), f"batch {n}")
        assert set(got) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
        n += 1
    assert n == 3


@pytest.mark.exercise("bpe_encode")
def test_gpt2_data_collator_with_padding(padded_gpt2s):
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    ours, theirs = padded_gpt2s
    dataset = [ours(t) for t in ["Hello world", "A longer sentence here, with more tokens", "x"]]
    assert dataset[0] == {"input_ids": [15496, 995], "attention_mask": [1, 1]}
    got = list(DataLoader(dataset, batch_size=3, collate_fn=DataCollatorWithPadding(ours)))
    expected = list(DataLoader(dataset, batch_size=3, collate_fn=DataCollatorWithPadding(theirs)))
    assert_same(dict(got[0]), dict(expected[0]))
    assert got[0]["input_ids"][2].tolist() == [87] + [50256] * (got[0]["input_ids"].shape[1] - 1)


# --------------------------------------------------------------------------- bad arguments


# (given code: the call's argument checks, no exercise)
@pytest.mark.parametrize("kwargs, error, match", [
    ({"padding": "left"}, ValueError, "padding must be one of .*got str 'left'"),
    ({"truncation": "yes"}, ValueError, "truncation must be one of .*got str 'yes'"),
    ({"stride": -1}, ValueError, "stride must be an int in \\[0, inf\\], got -1"),
    ({"stride": 1.5}, TypeError, "stride must be an int, got a float"),
    ({"pad_to_multiple_of": 0, "padding": True}, ValueError, "pad_to_multiple_of must be an int in \\[1, inf\\]"),
    ({"return_tensors": "tf"}, ValueError, "return_tensors must be None .*got str 'tf'"),
    ({"padding_side": "middle", "padding": True}, ValueError, "padding_side must be 'right' or 'left'"),
    ({"return_offsets_mapping": "yes"}, TypeError, "return_offsets_mapping must be True or False"),
    ({"return_token_type_ids": 1}, TypeError, "return_token_type_ids must be True, False or None"),
    ({"add_special_tokens": None}, TypeError, "add_special_tokens must be True or False"),
    ({"padding_strategy": "longest"}, TypeError, "unexpected keyword arguments \\['padding_strategy'\\]"),
    ({"max_length": True}, TypeError, "max_length must be an int, got a bool"),
])
def test_bad_arguments_are_named(bert, kwargs, error, match):
    with pytest.raises(error, match=match):
        bert(["a b", "c"], **kwargs)


@pytest.mark.exercise("bert_batch")
def test_bad_texts_are_named(bert):
    for args, kwargs, error, match in [
        ((None,), {}, TypeError, "text is required"),
        (([1, 2],), {}, TypeError, "text must be a str or a list of str, got list"),
        (("a", ["b"]), {}, TypeError, "text_pair must be shaped as text"),
        ((["a"], ["b", "c"]), {}, ValueError, "text_pair must have one pair per text: 1 texts, 2 pairs"),
        ((["a", "b"],), {"is_split_into_words": True, "text_pair": "x"}, TypeError, "text_pair must be a list of str"),
        (("a b",), {"is_split_into_words": True}, TypeError, "text must be a list of str .*is_split_into_words=True"),
        (("a",), {"texts": "b"}, TypeError, "pass text or texts, not both"),
    ]:
        with pytest.raises(error, match=match):
            bert(*args, **kwargs)
    # the names this course used before still work
    assert bert(texts=["a"], text_pairs=["b"]) == bert(["a"], ["b"])


@BOTH
def test_tricky_texts_in_a_batch(ours_theirs):
    texts = [t for t in TRICKY if t != "\ufffd"] + ["\ufffd"]
    ours, theirs = ours_theirs
    assert compare(ours, theirs, texts, return_offsets_mapping=True, return_special_tokens_mask=True) is not None


_OPTIONS = [{"do_lower_case": False}, {"do_lower_case": False, "strip_accents": True},
            {"do_lower_case": True, "strip_accents": False}, {"tokenize_chinese_chars": False}]
_BERTS = {}


def _bert_pair(tok, folder, i):
    """Ours and transformers' BERT tokenizers with the normalizer options _OPTIONS[i], built once."""
    key = (tok.__name__, i)
    if key not in _BERTS:
        from transformers import BertTokenizerFast

        _BERTS[key] = (tok.WordPieceTokenizer.from_pretrained(folder, **_OPTIONS[i]),
                       BertTokenizerFast.from_pretrained(str(folder), **_OPTIONS[i]))
    return _BERTS[key]


@pytest.mark.exercise("bert_batch")
@settings(fuzz, max_examples=100, report_multiple_bugs=False)
@given(text=any_text, which=st.integers(0, len(_OPTIONS) - 1))
def test_bert_offsets_with_other_normalizer_options(tok, bert_vocab_dir, text, which):
    """Cased (no lower-casing), accents stripped or kept, CJK kept together: the offsets follow."""
    ours, theirs = _bert_pair(tok, bert_vocab_dir, which)
    compare(ours, theirs, [text, "Ünïcödé ÇJK 東京 İx"], return_offsets_mapping=True, return_special_tokens_mask=True)


_COLLATED = ["Hello world, this is a test.", "short", "another sentence with more words in it"]


@pytest.mark.exercise("bert_batch")
def test_other_collators_of_transformers(bert, fast_bert):
    """DataCollatorForLanguageModeling (masking: mask_token, get_special_tokens_mask, len, pad)
    and DataCollatorForTokenClassification give the same batches with ours, on one seed."""
    from transformers import DataCollatorForLanguageModeling, DataCollatorForTokenClassification

    features = [dict(bert(t)) for t in _COLLATED]
    batches = []
    for tokenizer in (bert, fast_bert):
        torch.manual_seed(0)
        batches.append(dict(DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.5)(
            [dict(f) for f in features])))
    assert_same(*batches, "DataCollatorForLanguageModeling (mlm)")
    assert (batches[0]["labels"] != -100).sum() > 0 and (batches[0]["input_ids"] == 103).sum() > 0
    labelled = [{**f, "labels": list(range(len(f["input_ids"])))} for f in features]
    assert_same(dict(DataCollatorForTokenClassification(tokenizer=bert)([dict(f) for f in labelled])),
                dict(DataCollatorForTokenClassification(tokenizer=fast_bert)([dict(f) for f in labelled])),
                "DataCollatorForTokenClassification")


@pytest.mark.exercise("bpe_encode")
def test_causal_lm_collator_of_transformers(padded_gpt2s):
    """DataCollatorForLanguageModeling(mlm=False) on GPT-2 padded with its end-of-text token."""
    from transformers import DataCollatorForLanguageModeling

    ours, theirs = padded_gpt2s
    features = [dict(ours(t)) for t in _COLLATED]
    got, expected = (dict(DataCollatorForLanguageModeling(tokenizer=t, mlm=False)([dict(f) for f in features]))
                     for t in (ours, theirs))
    assert_same(got, expected, "DataCollatorForLanguageModeling (causal)")
    assert got["labels"][1].tolist()[-1] == -100, "padding (the end-of-text id) is not a label"


@pytest.mark.exercise("bert_batch")  # given code (the call's attribute checks), run through your call's pieces
def test_attributes_are_checked(tok, gpt2_dir, bert_vocab_dir):
    ours = tok.WordPieceTokenizer.from_pretrained(bert_vocab_dir)
    ours.truncation_side = "middle"
    with pytest.raises(ValueError, match="truncation_side must be 'right' or 'left', got str 'middle'"):
        ours("a", truncation=True, max_length=4)
    ours.truncation_side = "right"
    gpt2 = tok.ByteLevelBPETokenizer.from_pretrained(gpt2_dir)
    with pytest.raises(TypeError, match="pad_token must be a non-empty str or None, got int 5"):
        gpt2.pad_token = 5
    with pytest.raises(ValueError, match="pad_token_id must be an id in \\[0, 50257\\), got 50257"):
        gpt2.pad_token_id = 50257
    # a string outside the vocabulary is unk_token's id, as transformers' (50256 for GPT-2's files)
    assert gpt2.convert_tokens_to_ids("nope") == 50256 and gpt2.convert_tokens_to_ids(["nope", "a"]) == [50256, 64]
    gpt2.unk_token = None
    with pytest.raises(ValueError, match="'nope' is not a token of this vocabulary, and unk_token is None"):
        gpt2.convert_tokens_to_ids("nope")
    gpt2.unk_token = "<|endoftext|>"
    gpt2.eos_token = "!"  # settable, as a loader reading tokenizer_config.json may set them
    assert (gpt2.eos_token, gpt2.eos_token_id, gpt2.bos_token) == ("!", 0, "<|endoftext|>")
    gpt2.bos_token_id = None
    assert gpt2.bos_token is None and gpt2.bos_token_id is None
    encoded = ours(["a b", "c"], padding=True, return_tensors="pt").to("cpu")
    assert encoded["input_ids"].device.type == "cpu" and encoded.input_ids.shape == (2, 4)


@pytest.mark.exercise("bert_batch")
def test_word_ids_sequence_ids_and_tokens(bert):
    """What token classification aligns labels with; the values are transformers' (checked on
    every fuzzed call above too)."""
    got = bert("a [SEP] b, xyzzyq c", "d e")
    assert got.tokens() == ["[CLS]", "a", "[SEP]", "b", ",", "x", "##y", "##zzy", "##q", "c", "[SEP]", "d", "e", "[SEP]"]
    assert got.word_ids() == [None, 0, 1, 2, 3, 4, 4, 4, 4, 5, None, 0, 1, None]
    assert got.sequence_ids() == [None, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, 1, 1, None]
    assert bert(["wörld,", "x"], is_split_into_words=True).word_ids() == [None, 0, 0, 1, None]
    assert bert(["a", "b c"], padding=True).word_ids(0) == [None, 0, None, None]
    rows = bert("a a a a a a", max_length=5, truncation=True, return_overflowing_tokens=True, stride=1)
    assert rows.word_ids(1) == [None, 2, 3, 4, None], "an overflow row keeps the words' indices in the text"
    with pytest.raises(ValueError, match="batch_index must be in \\[0, 3\\)"):
        rows.word_ids(3)
    with pytest.raises(ValueError, match="word_ids\\(\\) needs the result of calling the tokenizer"):
        bert.pad({"input_ids": [[1, 2]]}).word_ids()


@pytest.mark.exercise("bpe_encode")
def test_word_ids_of_gpt2(gpt2):
    """GPT-2's words are the pre-tokenizer's, a special token one of its own; two tokens that
    split an emoji's bytes share its word."""
    assert gpt2("Hello world<|endoftext|> hi  😀").word_ids() == [0, 1, 2, 3, 4, 5, 5]


# (given code: token lookups, no exercise)
def test_convert_tokens_to_ids_as_transformers(bert, fast_bert, gpt2, fast_gpt2):
    """Known, special, unknown and empty strings give transformers' ids (unk_token's for a string
    outside the vocabulary: [UNK] 100, GPT-2's <|endoftext|> 50256); anything but str is a TypeError."""
    tokens = ["hello", "##ing", "[SEP]", "[MASK]", "zzzqqq", "", "Hello", "Ġworld", "<|endoftext|>", "日", "é"]
    for ours, theirs in ((bert, fast_bert), (gpt2, fast_gpt2)):
        assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
        assert [ours.convert_tokens_to_ids(t) for t in tokens] == [theirs.convert_tokens_to_ids(t) for t in tokens]
        assert ours.convert_tokens_to_ids(tuple(tokens)) == theirs.convert_tokens_to_ids(tokens)
        for bad, what in (([1], "int 1 at index 0"), (["a", None], "NoneType None at index 1"), (None, "NoneType None"),
                          (5, "int 5"), (b"hello", "bytes b'hello'")):
            with pytest.raises(TypeError, match=f"tokens must be a .*list of str, got {re.escape(what)}"):
                ours.convert_tokens_to_ids(bad)
    assert gpt2.convert_tokens_to_ids("zzzqqq") == fast_gpt2.convert_tokens_to_ids("zzzqqq") == 50256


@pytest.mark.exercise("bpe_encode")  # given code (special-token attributes, pad's edge), run through your encode
def test_gpt2_masked_lm_collator_and_missing_special_tokens(tok, gpt2_dir, fast_gpt2, padded_gpt2s):
    """GPT-2 has no mask, cls or sep token (None, as GPT2TokenizerFast), so
    DataCollatorForLanguageModeling(mlm=True) says so with transformers' ValueError; with a mask
    token set, it masks as with transformers' tokenizer on one seed."""
    from transformers import DataCollatorForLanguageModeling

    fresh = tok.ByteLevelBPETokenizer.from_pretrained(gpt2_dir)
    names = ("mask_token", "cls_token", "sep_token", "mask_token_id", "cls_token_id", "sep_token_id")
    assert [getattr(fresh, n) for n in names] == [getattr(fast_gpt2, n) for n in names] == [None] * 6
    for tokenizer in (fresh, fast_gpt2):
        with pytest.raises(ValueError, match="This tokenizer does not have a mask token"):
            DataCollatorForLanguageModeling(tokenizer=tokenizer)
    fresh.mask_token_id = 50256
    assert (fresh.mask_token, fresh.mask_token_id) == ("<|endoftext|>", 50256)
    ours, theirs = padded_gpt2s
    ours.mask_token, theirs.mask_token = ours.eos_token, theirs.eos_token
    features = [dict(ours(t)) for t in ["Hello world, this is a test.", "short", "one two three four five six"]]
    batches = []
    for tokenizer in (ours, theirs):
        torch.manual_seed(0)
        batches.append(dict(DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.5)(
            [dict(f) for f in features])))
    assert_same(*batches, "DataCollatorForLanguageModeling (mlm) on GPT-2")
    assert (batches[0]["labels"] != -100).sum() > 0


def test_pad_of_nothing_as_transformers(bert, fast_bert):
    """No rows in: returned as they are, an attention mask only when asked (transformers' pad)."""
    for inputs in ({"input_ids": []}, {"input_ids": [[]]}):
        for kwargs in ({}, {"return_attention_mask": True}, {"return_attention_mask": False}):
            assert dict(bert.pad(dict(inputs), **kwargs)) == dict(fast_bert.pad(dict(inputs), **kwargs)), (inputs, kwargs)
    assert dict(bert.pad({"input_ids": []})) == {"input_ids": []}


# (given code: pad's input checks, no exercise)
@pytest.mark.parametrize("inputs, error, match", [
    ({"input_ids": [[1], [2, 3]], "attention_mask": [[1]]}, ValueError,
     r"encoded_inputs\['attention_mask'\] has 1 rows, 'input_ids' 2"),
    ({"input_ids": [[1, "a"]]}, TypeError, r"encoded_inputs\['input_ids'\]\[0\] must be a list of int token ids, "
                                           r"got str 'a' at index 1"),
    ({"input_ids": [[1, 2], [3, None]]}, TypeError, r"\['input_ids'\]\[1\] must be a list of int token ids, got NoneType"),
    ({"input_ids": [[1, 2], [3]], "attention_mask": [[1, 1], [1, 1]]}, ValueError,
     r"encoded_inputs\['attention_mask'\]\[1\] must have one value per token of encoded_inputs\['input_ids'\]\[1\] \(1\)"),
    ({"input_ids": [1, 2], "token_type_ids": [0]}, ValueError,
     r"encoded_inputs\['token_type_ids'\] must have one value per token of encoded_inputs\['input_ids'\] \(2\)"),
])
def test_pad_refuses_inconsistent_rows(bert, gpt2, inputs, error, match):
    """Rows that do not line up are an error naming the key and the row, never a padded mix."""
    for tokenizer in (bert, gpt2):
        with pytest.raises(error, match=match):
            tokenizer.pad(inputs, padding="max_length", max_length=4) if tokenizer is bert else tokenizer.pad(
                inputs, padding=False)


def test_bert_has_no_bos_or_eos(bert, fast_bert):
    names = ("bos_token", "eos_token", "bos_token_id", "eos_token_id")
    assert [getattr(bert, n) for n in names] == [getattr(fast_bert, n) for n in names] == [None] * 4
