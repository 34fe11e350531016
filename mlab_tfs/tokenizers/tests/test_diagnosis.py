"""The diagnoses of exercise 5 (diagnosis.py): its hand-computed cases are transformers' counts,
a correct implementation has no diagnosis, and typical mistakes are named."""

from __future__ import annotations

import pytest

from mlab_tfs.tokenizers import solution

from .diagnosis import TRUNCATION_CASES, TRUNCATION_ERRORS, bert_batch_diagnosis


@pytest.mark.parametrize("args, expected, rule", TRUNCATION_CASES, ids=[str(c[0]) for c in TRUNCATION_CASES])
def test_truncation_cases_are_transformers(hf_bert, args, expected, rule):
    first, second, limit, *strategy = args
    strategy = strategy[0] if strategy else "longest_first"
    a, b = " ".join(["a"] * first), None if second is None else " ".join(["b"] * second)
    # a batch of one, as the given call's rows (a single call of transformers' drops an empty pair)
    ids = hf_bert([a], None if b is None else [b], truncation=strategy, max_length=limit + (2 if b is None else 3))
    row = ids["input_ids"][0]
    assert expected == (row.count(1037), None if b is None else row.count(1038)), rule


@pytest.mark.parametrize("args, rule", TRUNCATION_ERRORS, ids=[str(c[0]) for c in TRUNCATION_ERRORS])
def test_truncation_errors_are_transformers(hf_bert, args, rule):
    first, second, limit, strategy = args
    a, b = " ".join(["a"] * first), None if second is None else " ".join(["b"] * second)
    with pytest.raises(Exception, match="too short|Second sequence not provided"):
        hf_bert([a], None if b is None else [b], truncation=strategy, max_length=limit + (2 if b is None else 3))


@pytest.mark.exercise("bert_batch")
def test_no_diagnosis_of_a_correct_implementation(tok, bert_vocab_dir, gpt2_dir):
    for tokenizer in (tok.WordPieceTokenizer.from_pretrained(bert_vocab_dir),
                      tok.ByteLevelBPETokenizer.from_pretrained(gpt2_dir)):
        found = bert_batch_diagnosis(tokenizer)
        assert found is None, f"exercise 5: {found}"


def _halves(a, b, m, strategy="longest_first"):  # both cut to half even when cutting the longer is enough
    if b is None or strategy != "longest_first" or a + b <= m:
        return solution.truncate_pair(a, b, m, strategy)
    return min(a, m // 2), min(b, m - m // 2)


def _odd_to_the_shorter(a, b, m, strategy="longest_first"):
    kept = solution.truncate_pair(a, b, m, strategy)
    both_cut = b is not None and kept[0] < a and kept[1] < b and kept[0] != kept[1]
    return kept[::-1] if both_cut else kept


def _first_cut_first(a, b, m, strategy="longest_first"):  # the first text cut, not the longer
    if b is None or strategy != "longest_first" or a + b <= m:
        return solution.truncate_pair(a, b, m, strategy)
    kept = max(0, m - b)
    return kept, min(b, m - kept)


def _only_swapped(a, b, m, strategy="longest_first"):
    swap = {"only_first": "only_second", "only_second": "only_first"}
    return solution.truncate_pair(a, b, m, strategy if b is None else swap.get(strategy, strategy))


def _zero_budget_ignored(a, b, m, strategy="longest_first"):  # only_first with nothing left keeps the second
    return (0, b) if m == 0 and b is not None and strategy == "only_first" else solution.truncate_pair(a, b, m, strategy)


def _list_not_tuple(a, b, m, strategy="longest_first"):
    return list(solution.truncate_pair(a, b, m, strategy))


def _no_error(a, b, m, strategy="longest_first"):  # only_* that cannot fit: keeps what it can, silently
    try:
        return solution.truncate_pair(a, b, m, strategy)
    except ValueError:
        return (0, m) if strategy == "only_first" else (m, 0)


class _Row:  # build_inputs_with_special_tokens mistakes (self is the tokenizer)
    @staticmethod
    def no_final_sep(self, a, b=None):
        row = [self.cls_token_id, *a, self.sep_token_id]
        return row if b is None else row + list(b)

    @staticmethod
    def two_seps(self, a, b=None):
        row = [self.cls_token_id, *a, self.sep_token_id]
        return row if b is None else row + [self.sep_token_id, *b, self.sep_token_id]

    @staticmethod
    def swapped(self, a, b=None):
        row = [self.sep_token_id, *a, self.cls_token_id]
        return row if b is None else row + [*b, self.cls_token_id]

    @staticmethod
    def converted(self, a, b=None):  # ids looked up for the items, or copies: the markers are lost
        row = [self.cls_token_id, *[self.unk_token_id for _ in a], self.sep_token_id]
        return row if b is None else row + [*[self.unk_token_id for _ in b], self.sep_token_id]


class _Types:  # create_token_type_ids_from_sequences mistakes
    @staticmethod
    def all_zero(self, a, b=None):
        return [0] * (len(a) + 2 + (0 if b is None else len(b) + 1))

    @staticmethod
    def final_sep_zero(self, a, b=None):
        return [0] * (len(a) + 2) + ([] if b is None else [1] * len(b) + [0])

    @staticmethod
    def no_final_sep(self, a, b=None):
        return [0] * (len(a) + 2) + ([] if b is None else [1] * len(b))

    @staticmethod
    def first_sep_one(self, a, b=None):
        return [0] * (len(a) + 1) + [1] + ([] if b is None else [1] * (len(b) + 1))


@pytest.mark.parametrize("piece, mistake, named", [
    ("_truncate_pair", _halves, "cut only the longer one"),
    ("_truncate_pair", _odd_to_the_shorter, "the longer text the odd token"),
    ("_truncate_pair", _first_cut_first, "cut only the longer one"),
    ("_truncate_pair", _only_swapped, "only_first cuts the first text only"),
    ("_truncate_pair", _zero_budget_ignored, "max_tokens 0 keeps nothing of either text"),
    ("_truncate_pair", _list_not_tuple, "returned [3, 3], expected (3, 3)"),
    ("_truncate_pair", _no_error, "expected a ValueError: only_first when the second text alone fills"),
    ("build_inputs_with_special_tokens", _Row.no_final_sep, "the pair's row ends with a [SEP] too"),
    ("build_inputs_with_special_tokens", _Row.two_seps, "one [SEP] between the texts, not two"),
    ("build_inputs_with_special_tokens", _Row.swapped, "[CLS] comes first and a [SEP] after each text"),
    ("build_inputs_with_special_tokens", _Row.converted, "put the items you are given in the row as they are"),
    ("create_token_type_ids_from_sequences", _Types.all_zero, "B0 (a token of the pair) is type 1"),
    ("create_token_type_ids_from_sequences", _Types.final_sep_zero, "the pair's [SEP] is type 1"),
    ("create_token_type_ids_from_sequences", _Types.no_final_sep, "one type per token of the row (6 tokens"),
    ("create_token_type_ids_from_sequences", _Types.first_sep_one, "the first text's [SEP] is type 0"),
], ids=lambda x: getattr(x, "__name__", None) if callable(x) else None)
def test_typical_mistakes_are_named(bert_vocab_dir, piece, mistake, named):
    tokenizer = solution.WordPieceTokenizer.from_pretrained(bert_vocab_dir)
    if piece == "_truncate_pair":
        tokenizer._truncate_pair = mistake
    else:  # a method: bound to this tokenizer only
        setattr(tokenizer, piece, mistake.__get__(tokenizer))
    found = bert_batch_diagnosis(tokenizer)
    assert found is not None and named in found, found


@pytest.mark.parametrize("piece", ["_truncate_pair", "build_inputs_with_special_tokens",
                                   "create_token_type_ids_from_sequences"])
def test_a_stub_stays_not_started(bert_vocab_dir, piece):
    """An untouched stub's NotImplementedError passes through: mlab-tfs check shows the exercise
    as not started, not failing."""
    tokenizer = solution.WordPieceTokenizer.from_pretrained(bert_vocab_dir)

    def stub(*args, **kwargs):
        raise NotImplementedError("Exercise 5 (batches): see mlab_tfs/tokenizers/GUIDE.md")

    setattr(tokenizer, piece, stub)
    with pytest.raises(NotImplementedError, match="Exercise 5"):
        bert_batch_diagnosis(tokenizer)
