"""The diagnoses of exercise 5 (diagnosis.py): its hand-computed cases are transformers' counts,
a correct implementation has no diagnosis, and typical mistakes are named."""

from __future__ import annotations

import pytest

from mlab_tfs.tokenizers import solution

from mlab_tfs.tokenizers.mistakes import MISTAKES as M

from . import mistaken
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


def test_no_diagnosis_of_a_correct_implementation(bert_vocab_dir, gpt2_dir):
    for tokenizer in (solution.WordPieceTokenizer.from_pretrained(bert_vocab_dir),
                      solution.ByteLevelBPETokenizer.from_pretrained(gpt2_dir)):
        found = bert_batch_diagnosis(tokenizer)
        assert found is None, f"exercise 5: {found}"


def _list_not_tuple(a, b, m, strategy="longest_first"):
    return list(solution.truncate_pair(a, b, m, strategy))


def _converted(self, a, b=None):  # ids looked up for the items, or copies: the markers are lost
    row = [self.cls_token_id, *[self.unk_token_id for _ in a], self.sep_token_id]
    return row if b is None else row + [*[self.unk_token_id for _ in b], self.sep_token_id]


def _method(rule):
    """A tokenizer method from a mistaken row or types rule (which take no tokenizer)."""
    def method(self, a, b=None):
        return rule(self.cls_token_id, self.sep_token_id, a, b) if rule in mistaken.ROWS.values() else rule(a, b)
    return method


NAMED = ([("_truncate_pair", f, M[n].cause) for n, fs in mistaken.TRUNCATE.items()
          for f in (fs if isinstance(fs, list) else [fs])]
         + [("build_inputs_with_special_tokens", _method(f), M[n].cause) for n, f in mistaken.ROWS.items()]
         + [("create_token_type_ids_from_sequences", _method(f), M[n].cause) for n, f in mistaken.TYPES.items()]
         + [("_truncate_pair", _list_not_tuple, "returned [3, 3], expected (3, 3)"),
            ("build_inputs_with_special_tokens", _converted, "put the items you are given in the row as they are")])


@pytest.mark.parametrize("piece, mistake, named", NAMED, ids=[f"{p}-{n[:30]}" for p, _, n in NAMED])
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


def test_diagnose_names_what_gives_the_output():
    """helpers.diagnose: a mistake matches when its computation gives exactly the output (same
    type), or raises the same kind of exception; several matches are all named; none, nothing."""
    from .helpers import diagnose

    assert diagnose(["a"], {"no_hash_prefix": lambda: ["b"]}) == ""
    assert diagnose([1, 2], {"no_hash_prefix": lambda: (1, 2)}) == ""  # a tuple is not the list
    assert diagnose(["a"], {"no_hash_prefix": [lambda: ["b"], lambda: ["a"]]}) == (
        f"\n  likely cause: your output matches what {M['no_hash_prefix'].cause} gives")
    both = diagnose(["x"], {"no_hash_prefix": lambda: ["x"], "shortest_match_first": lambda: ["x"]})
    assert both == (f"\n  likely cause: your output matches what {M['no_hash_prefix'].cause} "
                    f"(or {M['shortest_match_first'].cause}) gives")

    def raises():
        raise ValueError("no room")

    assert diagnose(ValueError("x"), {"no_error_when_the_other_text_fills_it": raises}) != ""
    assert diagnose(TypeError("x"), {"no_error_when_the_other_text_fills_it": raises}) == ""
    assert diagnose(["a"], {"no_hash_prefix": raises}) == ""


def test_diagnose_tells_matching_mistakes_apart_on_other_inputs():
    """Several mistakes that give the same output on the failing input are told apart with the
    learner's outputs on other inputs (others); an input where none of them matches is skipped,
    and "a (or b)" stays only when no input tells them apart."""
    from .helpers import diagnose

    nohash, shortest = M["no_hash_prefix"].cause, M["shortest_match_first"].cause
    same = {"no_hash_prefix": lambda: ["x"], "shortest_match_first": lambda: ["x"]}
    apart = (lambda: ["y"], {"no_hash_prefix": lambda: ["z"], "shortest_match_first": lambda: ["y"]})
    neither = (lambda: ["w"], {"no_hash_prefix": lambda: ["z"], "shortest_match_first": lambda: ["y"]})
    assert diagnose(["x"], same, [apart]) == f"\n  likely cause: your output matches what {shortest} gives"
    assert diagnose(["x"], same, [neither, apart]) == f"\n  likely cause: your output matches what {shortest} gives"
    assert diagnose(["x"], same, [neither]) == (
        f"\n  likely cause: your output matches what {nohash} (or {shortest}) gives")
    # the other inputs never add a mistake that does not give the failing output
    assert diagnose(["x"], {"no_hash_prefix": lambda: ["q"]}, [apart]) == ""


@pytest.mark.solution_only
@pytest.mark.parametrize("exercise, edit, named", [
    # "a   b" alone cannot tell these apart; "Hello world" can: the spaces do attach
    ("pretokenize", ("_GPT2_RE = regex.compile(GPT2_PATTERN)",
                     "_GPT2_RE = regex.compile(r\"'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+\")"),
     "no_whitespace_lookahead"),
    # a left-to-right scan that restarts: "bcd" alone looks like merging by frequency too
    ("bpe_merge", ("    n = len(symbols)\n    if n < 2:",
                   "    w = list(symbols)\n    i = 0\n    while i + 1 < len(w):\n"
                   "        if (w[i], w[i + 1]) in ranks:\n            w[i:i + 2] = [w[i] + w[i + 1]]\n            i = 0\n"
                   "        else:\n            i += 1\n    return w\n    n = len(symbols)\n    if n < 2:"),
     "leftmost_pair_first"),
    # BPE over the whole text, written in the learner's own method: the mistakes' outputs are
    # computed with the solution's tokenizer, never with the learner's methods
    ("bpe_encode", ("        for word in pretokenize(text):\n            tokens += self._word_tokens(word)",
                    "        if text:\n            tokens += self._word_tokens(text)"), "no_pretokenize"),
    # GPT-2's contractions are case-sensitive: "(?i:...)" (cl100k's) is caught, and named nothing else
    ("pretokenize", ("_GPT2_RE = regex.compile(GPT2_PATTERN)",
                     "_GPT2_RE = regex.compile(\"(?i:'s|'t|'re|'ve|'m|'ll|'d)\" + GPT2_PATTERN[len(\"'s|'t|'re|'ve|'m|'ll|'d\"):])"),
     None),
])
def test_check_names_one_mistake_when_other_inputs_tell(exercise, edit, named):
    from mlab_tfs.testing.mistakes import check_report, likely_causes, planted_source

    report = check_report("tokenizers", exercise, planted_source("tokenizers", [edit]))
    assert "✗ failing" in report, report
    expected = [f"your output matches what {M[named].cause} gives"] if named else []
    assert likely_causes(report) == expected, report
