"""What is wrong in exercise 5 (bert_batch), named: the three pieces the given ``__call__`` runs
(``truncate_pair``, ``build_inputs_with_special_tokens``, ``create_token_type_ids_from_sequences``)
checked on small hand-computed cases. A wrong answer is compared with what each catalogued
mistake of the exercise gives on that case (tests/mistaken.py), and named when one matches.

A call that differs from transformers' (test_call.py) shows whole batches of ids; the mistake
behind it is usually in one of these pieces, so the failure also says which piece, on which
input, and what the rule is. The expected values are BertTokenizerFast's (transformers'
tokenization_bert.py: ``[CLS] A [SEP] B [SEP]``, token types 0 then 1; tokenizers'
``truncate_encodings`` for the counts), pinned against transformers in test_wordpiece.py.
"""

from __future__ import annotations

from . import mistaken
from .helpers import diagnose

# (arguments of truncate_pair, what it must return, the rule that case checks)
TRUNCATION_CASES = [
    ((3, 3, 100), (3, 3), "a pair that fits is not cut"),
    ((7, None, 4), (4, None), "a single text keeps max_tokens of its tokens, and the pair's count is None"),
    ((3, None, 8), (3, None), "a single text that fits is not cut"),
    ((10, 2, 8), (6, 2), "longest_first: when cutting only the longer text to what the shorter leaves is enough, "
                         "cut only the longer one"),
    ((2, 10, 8), (2, 6), "longest_first: when cutting only the longer text to what the shorter leaves is enough, "
                         "cut only the longer one (here the second)"),
    ((10, 9, 7), (4, 3), "longest_first: when both must be cut, each gets max_tokens // 2 and the longer text the "
                         "odd token"),
    ((9, 10, 7), (3, 4), "longest_first: when both must be cut, each gets max_tokens // 2 and the longer text the "
                         "odd token (here the second)"),
    ((10, 10, 7), (3, 4), "longest_first: two texts equally long, both cut: the odd token goes to the second"),
    ((10, 10, 8), (4, 4), "longest_first: both cut to half of an even max_tokens"),
    ((5, 3, 4, "only_first"), (1, 3), "only_first cuts the first text only"),
    ((3, 5, 4, "only_second"), (3, 1), "only_second cuts the second text only"),
    ((5, None, 6, "only_second"), (5, None), "only_second without a pair is not an error when the text fits"),
    ((5, 3, 0, "only_first"), (0, 0), "max_tokens 0 keeps nothing of either text, whatever the strategy"),
    ((4, None, 0), (0, None), "max_tokens 0 keeps nothing of a single text"),
]
TRUNCATION_ERRORS = [
    ((5, 3, 3, "only_first"), "only_first when the second text alone fills max_tokens (transformers: "
                              "'Sequence to truncate too short')"),
    ((3, 5, 3, "only_second"), "only_second when the first text alone fills max_tokens"),
    ((8, None, 7, "only_second"), "only_second without a pair when the text does not fit (transformers: "
                                  "'Second sequence not provided')"),
]


class _Mark:
    """A stand-in for a token, as the given __call__ passes them."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def truncation_mistakes(args: tuple) -> dict:
    """{mistake name: what it gives for truncate_pair(*args)}, for helpers.diagnose."""
    return {n: [lambda f=f: f(*args) for f in (fs if isinstance(fs, list) else [fs])]
            for n, fs in mistaken.TRUNCATE.items()}


_cases = truncation_mistakes


def _truncation(truncate_pair) -> str | None:
    for args, expected, rule in TRUNCATION_CASES:
        call = f"truncate_pair{args}"
        try:
            got = truncate_pair(*args)
        except NotImplementedError:  # a stub: the test says 'not started'
            raise
        except Exception as e:  # noqa: BLE001  (any error of the learner's code is the diagnosis)
            return f"{call} raised {type(e).__name__}: {e}; expected {expected}: {rule}" + diagnose(e, _cases(args))
        if got != expected or type(got) is not tuple:
            return f"{call} returned {got!r}, expected {expected}: {rule}" + diagnose(got, _cases(args))
    for args, rule in TRUNCATION_ERRORS:
        try:
            got = truncate_pair(*args)
        except ValueError:
            continue
        except NotImplementedError:  # a stub: the test says 'not started'
            raise
        except Exception as e:  # noqa: BLE001
            return f"truncate_pair{args} raised {type(e).__name__}: {e}; expected a ValueError: {rule}"
        return f"truncate_pair{args} returned {got!r}, expected a ValueError: {rule}" + diagnose(got, _cases(args))
    return None


def _row(tokenizer) -> str | None:
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    a, b = [_Mark("A0"), _Mark("A1")], [_Mark("B0")]
    names = {cls: "[CLS]", sep: "[SEP]"}

    def show(row):
        return "[" + ", ".join(names.get(x, repr(x)) if isinstance(x, int) else repr(x) for x in row) + "]"

    for args, expected in (((a,), [cls, *a, sep]), ((a, b), [cls, *a, sep, *b, sep])):
        call = f"build_inputs_with_special_tokens({', '.join(map(show, args))})"
        try:
            got = list(tokenizer.build_inputs_with_special_tokens(*args))
        except NotImplementedError:  # a stub: the test says 'not started'
            raise
        except Exception as e:  # noqa: BLE001
            return f"{call} raised {type(e).__name__}: {e}; expected {show(expected)}"
        if got == expected:
            continue
        marks = [x for x in got if isinstance(x, _Mark)]
        if marks != [*a, *(b if len(args) > 1 else [])]:
            why = ("put the items you are given in the row as they are (the given __call__ passes markers, not "
                   "ids: do not convert, copy or drop them)")
        else:
            why = "BERT's row is [CLS] A [SEP], or [CLS] A [SEP] B [SEP] for a pair"
        return (f"{call} gave {show(got)}, expected {show(expected)}: {why}"
                + diagnose(got, {n: lambda f=f: f(cls, sep, *args) for n, f in mistaken.ROWS.items()}))
    return None


def _types(tokenizer) -> str | None:
    a, b = [_Mark("A0"), _Mark("A1")], [_Mark("B0")]
    labels = ["[CLS]", "A0 (a token of the first text)", "A1 (a token of the first text)", "the first text's [SEP]",
              "B0 (a token of the pair)", "the pair's [SEP]"]
    for args, expected in (((a,), [0, 0, 0, 0]), ((a, b), [0, 0, 0, 0, 1, 1])):
        call = f"create_token_type_ids_from_sequences({', '.join(map(repr, args))})"
        try:
            got = list(tokenizer.create_token_type_ids_from_sequences(*args))
        except NotImplementedError:  # a stub: the test says 'not started'
            raise
        except Exception as e:  # noqa: BLE001
            return f"{call} raised {type(e).__name__}: {e}; expected {expected}"
        if got == expected:
            continue
        if len(got) != len(expected):
            why = (f"one type per token of the row ({len(expected)} tokens: [CLS], the texts' tokens and each "
                   f"text's [SEP]), yours has {len(got)}")
        else:
            i = next(i for i, (x, y) in enumerate(zip(got, expected)) if x != y)
            why = f"{labels[i]} is type {expected[i]} (0 for [CLS] A [SEP], 1 for B [SEP]), yours {got[i]!r}"
        return (f"{call} gave {got}, expected {expected}: {why}"
                + diagnose(got, {n: lambda f=f: f(*args) for n, f in mistaken.TYPES.items()}))
    return None


def bert_batch_diagnosis(tokenizer) -> str | None:
    """The first mistake found in exercise 5's pieces of a tokenizer, or None.

    A piece not written yet raises its NotImplementedError (so a test is "not started").
    Runs ``tokenizer._truncate_pair`` (the learner's truncate_pair, as the given call does) and
    the two row methods (WordPiece only: GPT-2's add no tokens and are given) on small cases;
    returns "<call> gave <got>, expected <expected>: <rule>", with a "likely cause" line when a
    catalogued mistake gives the same.
    """
    checks = [lambda: _truncation(tokenizer._truncate_pair)]
    if getattr(tokenizer, "cls_token_id", None) is not None:  # WordPiece's rows; GPT-2's are given
        checks += [lambda: _row(tokenizer), lambda: _types(tokenizer)]
    for check in checks:
        found = check()
        if found:
            return found
    return None
