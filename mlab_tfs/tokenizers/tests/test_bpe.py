"""Exercises 6-10: GPT-2's byte-level BPE, step by step in minbpe's order (the byte table, the
pre-tokenizer, training a vocabulary of your own, merging by rank, encoding), checked against
transformers' GPT2Tokenizer and tiktoken on the whole Shakespeare corpus and arbitrary Unicode,
and a trained vocabulary by loading what we save into transformers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mlab_tfs import assets

from mlab_tfs.tokenizers import solution as S

from . import mistaken
from .helpers import check, diagnose
from .strategies import any_text, fuzz


@pytest.fixture(scope="session")
def gpt2(tok):
    return tok.ByteLevelBPETokenizer.from_pretrained(assets.gpt2_vocab_dir())


# --------------------------------------------------------------------------- 6. bytes_to_unicode


@pytest.mark.exercise("bytes_to_unicode")
def test_bytes_to_unicode(tok, gpt2_dir):
    from transformers.convert_slow_tokenizer import bytes_to_unicode as reference

    table = tok.bytes_to_unicode()
    why = diagnose(table, mistaken.BYTES_TO_UNICODE)
    assert isinstance(table, dict) and sorted(table) == list(range(256)), "one entry per byte value 0..255"
    assert len(set(table.values())) == 256, "every byte needs its own character, or decoding is ambiguous"
    assert table[ord("A")] == "A" and table[ord("é".encode("latin-1"))] == "é", (
        "printable bytes stand for themselves" + why)
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ", (
        f"space -> {table[32]!r}, newline -> {table[10]!r}: the 68 other bytes get chr(256), chr(257)... in byte "
        "order" + why)
    wrong = [b for b in range(256) if table[b] != reference()[b]]
    assert not wrong, (f"differs from GPT-2's table at {len(wrong)} bytes, the first {wrong[0]:#04x}: yours "
                       f"{table[wrong[0]]!r}, GPT-2's {reference()[wrong[0]]!r}" + why) if wrong else ""


# --------------------------------------------------------------------------- 7. pretokenize


PRETOKENIZE_EXAMPLES = [
    ("Hello world", ["Hello", " world"], "a word keeps the one space before it"),
    ("I'm here, they'll see", ["I", "'m", " here", ",", " they", "'ll", " see"], "contractions split off"),
    ("abc123 4.5", ["abc", "123", " 4", ".", "5"], "letters, digits and symbols are separate runs"),
    ("a   b", ["a", "  ", " b"], "a run of spaces leaves its last space to the next word (\\s+(?!\\S))"),
    ("end  \n", ["end", "  \n"], "trailing whitespace is one piece"),
    ("héllo мир 中文", ["héllo", " мир", " 中文"], "\\p{L} is any letter, not just ASCII"),
    ("!!! ?", ["!!!", " ?"], "symbols group with a leading space too"),
    ("", [], "nothing gives no words"),
    ("   ", ["   "], "whitespace alone is one piece (\\s+ at the end of the text)"),
    ("a ", ["a", " "], "a trailing space is a piece of its own"),
    (" a", [" a"], "a leading space goes with the word"),
    ("'s's", ["'s", "'s"], "contractions match before anything else"),
    ("DON'T", ["DON", "'", "T"], "GPT-2's contractions are lower-case only (no (?i:...)): \"'T\" is a symbol, then "
                                 "a letter"),
]


def _pretokenize_mistakes(text):
    return {name: [lambda f=f: f(text) for f in fs] for name, fs in mistaken.PRETOKENIZE.items()}


@pytest.mark.exercise("pretokenize")
@pytest.mark.parametrize("text, expected, hint", PRETOKENIZE_EXAMPLES)
def test_pretokenize_examples(tok, text, expected, hint):
    got = tok.pretokenize(text)
    others = [(lambda t=t: tok.pretokenize(t), _pretokenize_mistakes(t)) for t, _, _ in PRETOKENIZE_EXAMPLES if t != text]
    check(got, expected, f"pretokenize({text!r}) = {got}, expected {expected}\n  hint: {hint}",
          _pretokenize_mistakes(text), others)


@pytest.mark.exercise("pretokenize")
@fuzz
@given(text=any_text)
def test_pretokenize_matches_tiktoken_splits_and_covers_the_text(tok, text):
    import regex
    from tiktoken_ext.openai_public import r50k_pat_str

    got = tok.pretokenize(text)
    assert "".join(got) == text, "the pieces must cover the text exactly"
    assert got == regex.findall(r50k_pat_str, text), "differs from tiktoken's form of GPT-2's pattern"


# --------------------------------------------------------------------------- 8. training


@pytest.mark.exercise("bpe_train")
def test_train_small_worked_example(tok):
    # Counts in "aaab aaab ab": (a,a) 4, (a,b) 3 and (" ", a) 2 -> merge a+a first (id 256).
    bpe = tok.ByteLevelBPETokenizer().train(["aaab aaab ab"], 256 + 3)
    assert bpe.merges[0] == ("a", "a"), f"first merge {bpe.merges[0]}: the most frequent pair is a a"
    examples = ((["aaab aaab ab"], 3), (["dcba"], 1), (["ab ab ba ba cd"], 2), (["xyzzy xyz", "zyx zyx"], 4),
                (["x. x. x."], 1))

    def merges(texts, n):
        return [tuple(m) for m in tok.ByteLevelBPETokenizer().train(texts, 256 + n).merges]

    def mistakes(texts, n):
        return {name: [lambda f=f: f(texts, n) for f in (fs if isinstance(fs, list) else [fs])]
                for name, fs in mistaken.BPE_TRAIN.items()}

    for texts, n in examples:
        got = merges(texts, n)
        others = [(lambda t=t, k=k: merges(t, k), mistakes(t, k)) for t, k in examples if (t, k) != (texts, n)]
        check(got, mistaken.train_merges(texts, n), f"train({texts}, {256 + n}).merges = {got}, expected "
              f"{mistaken.train_merges(texts, n)}", mistakes(texts, n), others)
    assert len(bpe.merges) == 3 and bpe.vocab_size == 259


@pytest.mark.exercise("bpe_train")
def test_train_ties_are_deterministic(tok):
    # Every pair occurs once: the tie goes to the smallest pair of ids, i.e. byte values.
    bpe = tok.ByteLevelBPETokenizer().train(["dcba"], 257)
    assert bpe.merges == [("b", "a")], f"got {bpe.merges}: among equal counts take the smallest (left id, right id)"
    again = tok.ByteLevelBPETokenizer().train(["dcba"], 257)
    assert again.merges == bpe.merges


@pytest.mark.exercise("bpe_train")
def test_train_matches_naive_recount(tok):
    """The incremental counts must give the same merges as recounting every pair each step."""
    from collections import Counter

    import regex

    text = assets.shakespeare_text()[:20_000]
    bpe = tok.ByteLevelBPETokenizer().train([text], 256 + 60)
    words = Counter(regex.findall(tok.GPT2_PATTERN, text))
    seqs = {w: [bytes([b]) for b in w.encode()] for w in words}
    table = tok.bytes_to_unicode()
    ids = {bytes([b]): b for b in range(256)}
    expected = []
    for _ in range(60):
        counts = Counter()
        for w, seq in seqs.items():
            for pair in zip(seq, seq[1:]):
                counts[pair] += words[w]
        best = max(counts, key=lambda p: (counts[p], -ids[p[0]], -ids[p[1]]))
        ids.setdefault(best[0] + best[1], len(ids))
        expected.append(tuple("".join(table[b] for b in part) for part in best))
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
    assert bpe.merges == expected, "merges differ from the naive recount's: are pair counts updated for every changed word?"


@pytest.mark.exercise("bpe_train")
def test_train_bad_input(tok):
    with pytest.raises(ValueError, match="vocab_size must be an int of at least 256"):
        tok.ByteLevelBPETokenizer().train(["text"], 100)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        tok.ByteLevelBPETokenizer().train(["text", 5], 300)


@pytest.mark.exercise("bpe_train")
@pytest.mark.parametrize("text, first", [
    # the words "ba" and " ab" hold (b,a), (Ġ,a), (a,b) once each: (32, 97) is the smallest
    ("ba ab", ("Ġ", "a")),
    # (97, 98) comes first in the text and has the smallest right id, but (32, 122) the smallest left id
    ("ab zc", ("Ġ", "z")),
])
def test_train_ties_between_different_pairs(tok, text, first):
    bpe = tok.ByteLevelBPETokenizer().train([text], 257)
    assert bpe.merges == [first], (f"got {bpe.merges}: among equal counts take the smallest (left id, right id), "
                                   "compared left id first")


@pytest.mark.exercise("bpe_train")
@pytest.mark.parametrize("vocab_size, specials, merges", [
    (256, [], []),  # the bytes alone: no merge
    (257, [], [("a", "b")]),
    (258, [], [("a", "b"), ("Ġ", "ab")]),  # exactly every pair there is
    (258, ["<s>"], [("a", "b")]),  # the special token takes the last id
    (259, ["<s>"], [("a", "b"), ("Ġ", "ab")]),
])
def test_train_stops_at_vocab_size_exactly(tok, vocab_size, specials, merges):
    # "ab ab" is the words "ab" and " ab": a+b (twice), then Ġ+ab (once), then nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reaching vocab_size exactly is no reason to warn
        bpe = tok.ByteLevelBPETokenizer().train(["ab ab"], vocab_size, special_tokens=specials)
    assert bpe.merges == merges, f"vocab_size={vocab_size}, special tokens {specials}: merges {bpe.merges}"
    assert bpe.vocab_size == vocab_size
    assert bpe.special_tokens == {t: vocab_size - len(specials) + k for k, t in enumerate(specials)}


@pytest.mark.exercise("bpe_train")
def test_train_warns_when_the_texts_run_out_of_pairs(tok):
    with warnings.catch_warnings(record=True) as caught:  # (not pytest.warns: a stub's error must show as itself)
        warnings.simplefilter("always")
        bpe = tok.ByteLevelBPETokenizer().train(["ab ab"], 299, special_tokens=["<s>"])
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == [
        "train: the texts have no pair left to merge after 2 merges, so the vocabulary has 259 tokens, "
        "not vocab_size=299"], "say (warnings.warn) that the vocabulary is smaller than asked"
    assert bpe.merges == [("a", "b"), ("Ġ", "ab")]
    assert bpe.vocab_size == 259 and bpe.special_tokens == {"<s>": 258}, "the special tokens follow the last merge"


@pytest.fixture(scope="module")
def trained_with_specials(tok):
    """A vocabulary with special tokens that overlap ("<|a|>", "<|a|>b") and special tokens
    that are also ordinary tokens: "!" is the byte 0x21's token, "Ġ" the space's."""
    text = assets.shakespeare_text()[:20_000]
    specials = ["<|endoftext|>", "<|pad|>", "<|a|>", "<|a|>b", "!", "Ġ"]
    return tok.ByteLevelBPETokenizer.train([text], 400, special_tokens=specials), specials


@pytest.mark.exercise("bpe_train")
def test_special_tokens_get_ids_of_their_own(tok, trained_with_specials):
    bpe, specials = trained_with_specials
    assert bpe.special_tokens == {t: 394 + k for k, t in enumerate(specials)}, "the last ids, in order"
    assert bpe.vocab_size == 400 and len(bpe.decoder) == 400 and sorted(bpe.decoder) == list(range(400))
    assert bpe.encoder["!"] == 33 and bpe.encoder["Ġ"] == 32, "the bytes keep their ids"


@pytest.mark.exercise("bpe_train")
def test_train_special_token_errors(tok):
    bpe = tok.ByteLevelBPETokenizer()
    with pytest.raises(ValueError, match=r"special_tokens has '<s>' twice \(at 0 and 2\)"):
        bpe.train(["text"], 300, special_tokens=["<s>", "<p>", "<s>"])
    with pytest.raises(ValueError, match=r"special_tokens\[1\] is the empty string"):
        bpe.train(["text"], 300, special_tokens=["<s>", ""])
    with pytest.raises(TypeError, match="special_tokens must be a list of str, got str"):
        bpe.train(["text"], 300, special_tokens="<|endoftext|>")
    with pytest.raises(TypeError, match=r"special_tokens\[0\] must be a str, got int"):
        bpe.train(["text"], 300, special_tokens=[5])
    too_small = r"vocab_size must be an int of at least 256 \(the bytes\) \+ 2 special tokens, got 257"
    with pytest.raises(ValueError, match=too_small):
        bpe.train(["text"], 257, special_tokens=["<s>", "<p>"])


@pytest.mark.exercise("bpe_train")
@pytest.mark.parametrize("vocab_size", [np.int64(260), np.int32(260), torch.tensor(260)])
def test_train_accepts_int_likes(tok, vocab_size):
    bpe = tok.ByteLevelBPETokenizer().train(["aaab aaab ab"], vocab_size)
    assert bpe.vocab_size == 260 and type(bpe.vocab_size) is int


@pytest.mark.exercise("bpe_train")
@pytest.mark.parametrize("vocab_size, got", [
    (True, "a bool \\(True\\)"), (260.0, "a float \\(260.0\\)"), ("260", "a str \\('260'\\)"), (torch.tensor([260]), "a torch"),
    (torch.tensor(260.0), "a torch"), (None, "a NoneType"),
])
def test_train_refuses_what_is_not_an_int(tok, vocab_size, got):
    with pytest.raises(TypeError, match=f"vocab_size must be an int, got {got}"):
        tok.ByteLevelBPETokenizer().train(["aaab"], vocab_size)


# --------------------------------------------------------------------------- 9. bpe_merge

TOY_RANKS = {("a", "b"): 0, ("ab", "c"): 1, ("c", "d"): 2, ("b", "c"): 3, ("a", "a"): 4}


BPE_MERGE_EXAMPLES = [
    (list("abcbc"), ["abc", "bc"], "merge the pair of lowest rank first, not the most frequent: ab (0), abc (1), "
                                   "then bc (3)"),
    (list("abcd"), ["abc", "d"], "merge the pair of lowest rank first: ab (0), then abc (1); cd (2) is then gone"),
    (list("bcd"), ["b", "cd"], "cd has rank 2, bc rank 3: the lower rank wins even though bc comes first"),
    (list("aaa"), ["aa", "a"], "equal ranks: leftmost first, and a merged symbol is not merged again in the same pair"),
    (list("aaaa"), ["aa", "aa"], "both non-overlapping pairs merge"),
    (list("x"), ["x"], "a single symbol stays"),
    ([], [], "nothing stays nothing"),
    (list("xyz"), ["x", "y", "z"], "no ranked pair: unchanged"),
]


def _bpe_merge_mistakes(symbols):
    return {name: [lambda f=f: f(symbols, TOY_RANKS) for f in (fs if isinstance(fs, list) else [fs])]
            for name, fs in mistaken.BPE_MERGE.items()}


@pytest.mark.exercise("bpe_merge")
@pytest.mark.parametrize("symbols, expected, hint", BPE_MERGE_EXAMPLES)
def test_bpe_merge_examples(tok, symbols, expected, hint):
    got = tok.bpe_merge(symbols, TOY_RANKS)
    others = [(lambda s=s: tok.bpe_merge(list(s), TOY_RANKS), _bpe_merge_mistakes(s))
              for s, _, _ in BPE_MERGE_EXAMPLES if s != symbols]
    check(got, expected, f"bpe_merge({symbols}) = {got}, expected {expected}\n  hint: {hint}",
          _bpe_merge_mistakes(symbols), others)


@pytest.mark.exercise("bpe_merge")
def test_bpe_merge_on_gpt2(tok, gpt2):
    table = tok.bytes_to_unicode()
    symbols = [table[b] for b in " tokenization".encode()]
    got = tok.bpe_merge(symbols, gpt2.bpe_ranks)
    assert got == ["Ġtoken", "ization"], f"got {got} with GPT-2's merges"


class _CountingRanks(dict):
    lookups = 0

    def get(self, key, default=None):
        _CountingRanks.lookups += 1
        return dict.get(self, key, default)


@pytest.mark.solution_only
def test_bpe_merge_work_grows_linearly_on_one_huge_word(tok, gpt2):
    """GPT-2's regex makes a 10 MB run of letters one word. Rescanning every pair after each
    merge is quadratic in its length; the heap over a linked list needs O(1) rank lookups per
    merge. Counted, not timed: lookups for 4n symbols are about 4x those for n."""
    ranks = _CountingRanks(gpt2.bpe_ranks)
    table = tok.bytes_to_unicode()
    counts = {}
    for n in (2_000, 8_000):
        word = [table[b] for b in ("abcdefghij" * (n // 10)).encode()]
        _CountingRanks.lookups = 0
        merged = tok.bpe_merge(word, ranks)
        assert "".join(merged) == "".join(word)
        counts[n] = _CountingRanks.lookups
    ratio = counts[8_000] / counts[2_000]
    assert ratio < 4.5, f"rank lookups grew {ratio:.1f}x for 4x the symbols ({counts}): quadratic merging?"


# --------------------------------------------------------------------------- 10. encode / decode


ENCODE_TEXTS = [
    "Hello world", " Hello world", "Hello  world\n\n", "I'm here; they'll see 3.14159!", "héllo 中文 😀",
    "", " ", "\t\n \n", "a" * 300, "👨\u200d👩\u200d👧", "<|endoftext|>",
    # equal-rank ties: the same pair at several places merges leftmost first
    "aaaaaaa", "!!!!!!!!!", "\n\n\n\n\n", "      x", "ababababa", "x<|endoftext|>y", " <|endoftext|> ",
    "hi.\n\nThe end",  # across words, "\n\n" + "The" would merge differently
]


@pytest.fixture(scope="session")
def solution_gpt2():
    """The solution's tokenizer on the same vocabulary: what a mistake gives is computed with
    it, never with the learner's own methods."""
    return S.ByteLevelBPETokenizer.from_pretrained(assets.gpt2_vocab_dir())


def _encode_mistakes(solution_gpt2, text):
    return {"no_pretokenize": lambda: mistaken.BPE_ENCODE["no_pretokenize"](solution_gpt2, text),
            "special_tokens_always_matched": lambda: solution_gpt2.encode(text, allowed_special="all")}


@pytest.mark.exercise("bpe_encode")
@pytest.mark.parametrize("text", ENCODE_TEXTS)
def test_encode_matches_references(gpt2, hf_gpt2, tiktoken_gpt2, solution_gpt2, text):
    got = gpt2.encode(text)
    others = [(lambda t=t: gpt2.encode(t), _encode_mistakes(solution_gpt2, t)) for t in ENCODE_TEXTS if t != text]
    check(got, tiktoken_gpt2.encode_ordinary(text), f"{text!r}: yours {gpt2.tokenize(text)}",
          _encode_mistakes(solution_gpt2, text), others)
    if "<|endoftext|>" not in text:  # transformers always treats it as special
        assert got == hf_gpt2(text)["input_ids"], f"{text!r}: yours {gpt2.tokenize(text)}, hf {hf_gpt2.tokenize(text)}"
    back = gpt2.decode(got)
    check(back, text, f"decode(encode({text!r})) = {back!r}: decode must give the text back",
          {"decode_tokens_separately": [lambda: mistaken.bpe_decode_each(gpt2, got),
                                        lambda: mistaken.bpe_decode_each(gpt2, got, "ignore")]})


@pytest.mark.exercise("bpe_encode")
def test_tokenize_shows_byte_characters(gpt2, hf_gpt2):
    text = "Hello world,\nhow are you?"
    assert gpt2.tokenize(text) == hf_gpt2.tokenize(text) == ["Hello", "Ġworld", ",", "Ċ", "how", "Ġare", "Ġyou", "?"]


@pytest.mark.exercise("bpe_encode")
def test_special_tokens_only_where_allowed(gpt2, tiktoken_gpt2):
    text = "end<|endoftext|>start"
    plain = gpt2.encode(text)
    assert 50256 not in plain and plain == tiktoken_gpt2.encode_ordinary(text), "not allowed: it is ordinary text"
    for allowed in ("all", {"<|endoftext|>"}):
        got = gpt2.encode(text, allowed_special=allowed)
        assert got == tiktoken_gpt2.encode(text, allowed_special="all"), f"allowed_special={allowed!r}"
        assert gpt2.decode(got) == text
    with pytest.raises(ValueError, match="not special tokens"):
        gpt2.encode(text, allowed_special={"<|im_start|>"})
    for bad in (5, "ALL", {1}):
        with pytest.raises(TypeError, match="allowed_special must be 'all', 'none' or a set of str"):
            gpt2.encode(text, allowed_special=bad)
    assert gpt2.encode(text, allowed_special=["<|endoftext|>"]) == gpt2.encode(text, allowed_special="all")


@pytest.mark.exercise("bpe_encode")
def test_decode_partial_characters(gpt2, tiktoken_gpt2):
    assert gpt2.decode([]) == tiktoken_gpt2.decode([]) == "", "no ids, no text"
    ids = gpt2.encode("😀")
    assert len(ids) > 1, "an emoji is 4 UTF-8 bytes, more than one token"
    assert gpt2.decode(ids[:1]) == tiktoken_gpt2.decode(ids[:1]), "invalid UTF-8 decodes to U+FFFD (errors='replace')"


@pytest.mark.exercise("bpe_encode")
def test_bad_input(gpt2):
    with pytest.raises(TypeError, match="text must be a str, got list"):
        gpt2.encode(["a list"])
    with pytest.raises(ValueError, match=r"ids must be in \[0, 50257\).*got 50257"):
        gpt2.decode([50257])
    with pytest.raises(TypeError, match="got str"):
        gpt2.decode(["hello"])


@pytest.mark.exercise("bpe_encode")
def test_whole_corpus_matches_transformers_and_tiktoken(gpt2, hf_gpt2, tiktoken_gpt2):
    text = assets.shakespeare_text()
    got = gpt2.encode(text)
    expected = tiktoken_gpt2.encode_ordinary(text)
    assert got == expected, f"{len(got)} tokens, tiktoken {len(expected)}; first difference at token " + str(
        next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected))))
    # transformers' pre-tokenizer splits the same way; its Rust backend directly, for speed
    assert hf_gpt2._tokenizer.encode(text).ids == got
    assert gpt2.decode(got) == text


@pytest.mark.exercise("bpe_encode")
@fuzz
@given(text=any_text)
def test_fuzz_matches_references_and_round_trips(gpt2, hf_gpt2, tiktoken_gpt2, text):
    got = gpt2.encode(text)
    assert got == tiktoken_gpt2.encode_ordinary(text), f"{text!r}: yours {gpt2.tokenize(text)}"
    if "<|endoftext|>" not in text:
        assert got == hf_gpt2(text)["input_ids"], f"{text!r}: yours {gpt2.tokenize(text)}"
    assert gpt2.decode(got) == text, "decode(encode(s)) must give s back"


# --------------------------------------------------------------------------- 10. encode / decode with a trained vocabulary


@pytest.mark.exercise("bpe_encode")
def test_encode_with_a_trained_vocabulary(tok, trained_with_specials):
    # exercise 8's worked example: the merges a+a, a+b, aa+ab make "aaab" one token
    bpe = tok.ByteLevelBPETokenizer().train(["aaab aaab ab"], 256 + 3)
    assert bpe.tokenize("aaab") == ["aaab"] and bpe.tokenize(" aaab") == ["Ġ", "aaab"]
    assert bpe.encode("aaab") == [bpe.encoder[t] for t in bpe.tokenize("aaab")]
    assert bpe.decode(bpe.encode("aaab aaab ab")) == "aaab aaab ab"
    bpe, _ = trained_with_specials
    assert bpe.encode("!") == [33] and bpe.encode("!", allowed_special="all") == [398]
    assert bpe.encode(" ") == [32] and bpe.encode("Ġ", allowed_special={"Ġ"}) == [399]
    assert bpe.decode([398, 33, 399, 32]) == "!!Ġ ", "a special id decodes as its text, a byte's id as the byte"
    assert bpe.decode(bpe.encode(" the end", allowed_special="all")) == " the end", "spaces are not 'Ġ'"


@pytest.mark.exercise("bpe_encode")
def test_trained_tokenizer_loads_in_transformers(tok, tmp_path):
    from transformers import GPT2Tokenizer

    text = assets.shakespeare_text()
    train, held_out = text[: len(text) // 3], text[len(text) // 3 : len(text) // 3 + 100_000]
    bpe = tok.ByteLevelBPETokenizer.train([train], 1000, special_tokens=["<|endoftext|>"])
    assert bpe.vocab_size == 1000 and bpe.encoder["<|endoftext|>"] == 999
    bpe.save_pretrained(tmp_path)
    theirs = GPT2Tokenizer.from_pretrained(str(tmp_path))
    ours_again = tok.ByteLevelBPETokenizer.from_pretrained(tmp_path)
    for sample in (held_out, "héllo 中文 😀 <|endoftext|> x", "Unseen wörds!"):
        expected = theirs(sample)["input_ids"]
        assert bpe.encode(sample, allowed_special="all") == expected
        assert ours_again.encode(sample, allowed_special="all") == expected
        assert bpe.decode(expected) == sample


@pytest.fixture(scope="module")
def trained_tiktoken(tok, trained_with_specials):
    """tiktoken's Encoding for the same vocabulary: the ordinary tokens as bytes (ranks = ids),
    the special tokens apart, as tiktoken keeps them."""
    import tiktoken
    from tiktoken_ext.openai_public import r50k_pat_str

    bpe, _ = trained_with_specials
    to_byte = {ch: b for b, ch in tok.bytes_to_unicode().items()}
    ranks = {bytes(to_byte[c] for c in t): i for t, i in bpe.encoder.items() if bpe.special_tokens.get(t) != i}
    return tiktoken.Encoding("trained", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens=bpe.special_tokens)


@pytest.mark.exercise("bpe_encode")
@pytest.mark.parametrize("text", [
    "x!y<|pad|>z Ġ end<|endoftext|>", "!!", "Ġ Ġ", "", "   ", "<|pad|><|pad|>", "<|endoftext|>\n\nNext",
    "before<|endoftext|>after", " <|pad|> ", "héllo 中文!<|pad|>😀",
])
def test_special_tokens_match_tiktoken(trained_with_specials, trained_tiktoken, text):
    bpe, specials = trained_with_specials
    reference = trained_tiktoken
    non_overlapping = set(specials) - {"<|a|>b"}  # tiktoken does not prefer the longest of two
    assert bpe.encode(text, allowed_special=non_overlapping) == reference.encode(text, allowed_special=non_overlapping)
    assert bpe.encode(text) == reference.encode_ordinary(text)
    assert bpe.decode(bpe.encode(text, allowed_special="all")) == text


@pytest.mark.exercise("bpe_encode")
@fuzz
@given(pieces=st.lists(st.one_of(st.sampled_from(["<|endoftext|>", "<|pad|>", "!", "Ġ", "<|pad", "|>", " "]), any_text),
                       max_size=8))
def test_fuzz_special_tokens_match_tiktoken(trained_with_specials, trained_tiktoken, gpt2, tiktoken_gpt2, pieces):
    text = "".join(pieces)
    bpe, specials = trained_with_specials
    reference = trained_tiktoken
    non_overlapping = set(specials) - {"<|a|>b"}
    got = bpe.encode(text, allowed_special=non_overlapping)
    assert got == reference.encode(text, allowed_special=non_overlapping), f"{text!r}"
    assert bpe.decode(got) == text
    got = gpt2.encode(text, allowed_special="all")
    assert got == tiktoken_gpt2.encode(text, allowed_special="all"), f"{text!r} with GPT-2's vocabulary"
    assert gpt2.decode(got) == text


@pytest.mark.exercise("bpe_encode")
def test_special_tokens_survive_save_and_load(tok, trained_with_specials, tmp_path):
    from transformers import GPT2Tokenizer

    bpe, specials = trained_with_specials
    with pytest.warns(UserWarning, match=r"special tokens \['!', 'Ġ'\] are also ordinary tokens"):
        bpe.save_pretrained(tmp_path)
    again = tok.ByteLevelBPETokenizer.from_pretrained(tmp_path)
    assert again.special_tokens == bpe.special_tokens and again.encoder == bpe.encoder
    assert again.merges == bpe.merges and again.vocab_size == 400
    text = "x!y<|a|>b<|a|>Ġ end<|endoftext|><|pad|><|a|><|a|>bb"
    for allowed in ("all", {"<|a|>"}, {"<|pad|>", "<|a|>b"}, "none"):
        assert again.encode(text, allowed_special=allowed) == bpe.encode(text, allowed_special=allowed), allowed
    # transformers matches the longest special token first, as we do ...
    assert bpe.encode("<|a|><|a|>b<|a|>bb", allowed_special="all") == [396, 397, 397, 98]
    # ... and gives every special token that is not also an ordinary token the same id.
    theirs = GPT2Tokenizer.from_pretrained(str(tmp_path))
    sample = "x<|pad|>y<|a|>b<|a|> end<|endoftext|>\n<|a|><|a|>bb"
    assert theirs(sample)["input_ids"] == bpe.encode(sample, allowed_special="all")


@pytest.mark.exercise("bpe_encode")
@pytest.mark.parametrize("text, index, cp", [("a\ud800b", 1, "D800"), ("\udfff", 0, "DFFF"), ("x \ud83d\ude00", 2, "D83D")])
def test_lone_surrogates_are_refused(gpt2, hf_gpt2, tiktoken_gpt2, text, index, cp):
    """A str with surrogate code points is not Unicode text: it has no UTF-8 bytes to tokenize.
    transformers refuses it; tiktoken quietly replaces it with U+FFFD. We refuse it, clearly."""
    with pytest.raises(TypeError):
        hf_gpt2(text)
    repaired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")  # what the error suggests
    assert gpt2.encode(repaired) == tiktoken_gpt2.encode_ordinary(text), "the repair gives tiktoken's ids"
    for call in (gpt2.encode, gpt2.tokenize):
        with pytest.raises(ValueError, match=f"text has a lone surrogate U\\+{cp} at index {index}"):
            call(text)
    with pytest.raises(ValueError, match=r"texts\[1\] has a lone surrogate"):
        type(gpt2)().train(["fine", text], 260)


@pytest.mark.exercise("bpe_encode")
def test_decode_accepts_int_likes(gpt2):
    ids = gpt2.encode("Hello world")
    expected = gpt2.decode(ids)
    assert expected == "Hello world"
    for form in (np.array(ids), torch.tensor(ids), [np.int64(i) for i in ids], [torch.tensor(i) for i in ids], tuple(ids)):
        assert gpt2.decode(form) == expected, type(form)
    with pytest.raises(TypeError, match="got bool True at index 0"):
        gpt2.decode([True])
    with pytest.raises(TypeError, match="got float 3.0 at index 1"):
        gpt2.decode([1, 3.0])
    with pytest.raises(TypeError, match="ids must be a list of int token ids"):
        gpt2.decode(torch.tensor([[1, 2]]))


@pytest.mark.solution_only
def test_vocabulary_checks(tok, tmp_path):
    """The given vocabulary class refuses ids that would decode wrongly, with the reason."""
    Bpe = tok.ByteLevelBPETokenizer
    byte_ids = {ch: b for b, ch in tok.bytes_to_unicode().items()}
    with pytest.raises(ValueError, match="special token '<s>' has the id 97, which is already the token 'a'"):
        Bpe(byte_ids, [], {"<s>": 97})
    with pytest.raises(ValueError, match="no token has the id 256"):
        Bpe(byte_ids, [], {"<s>": 257})
    with pytest.raises(ValueError, match=r"gives the id 5 to more than one token \(\['x', 'y'\]\)"):
        Bpe({"x": 5, "y": 5}, [], {})
    with pytest.raises(TypeError, match=r"special_tokens\['<s>'\] must be an int, got a float \(256.0\)"):
        Bpe(byte_ids, [], {"<s>": 256.0})
    assert Bpe(byte_ids, [], {"<s>": np.int64(256)}).special_tokens == {"<s>": 256}
    Bpe(byte_ids, [("a", "b")], {"<s>": 256}).save_pretrained(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\nab\n")
    with pytest.raises(ValueError, match=r"merges.txt, line 3: a merge is two tokens separated by one space, got 'ab'"):
        Bpe.from_pretrained(tmp_path)
