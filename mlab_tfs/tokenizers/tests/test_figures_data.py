"""The data behind the guide's figures (mlab_tfs/tokenizers/figures.py) and the numbers the guide
quotes from them, held to independent computations."""

from __future__ import annotations

from collections import Counter

import pytest

from mlab_tfs import assets
from mlab_tfs.tokenizers import figures as F
from mlab_tfs.tokenizers.solution import ByteLevelBPETokenizer

pytestmark = pytest.mark.solution_only  # the figures are drawn with the solution


@pytest.fixture(scope="module")
def small():
    return F.shakespeare_bpe(n_merges=60, n_chars=20_000)


@pytest.mark.parametrize("k", [0, 1, 17, 60])
def test_first_merges_is_training_stopped_early(small, k):
    # what the compression curve's points claim: k merges of a longer run = a run of k merges
    stopped = F.shakespeare_bpe(n_merges=k, n_chars=20_000)
    cut = F.first_merges(small, k)
    assert cut.merges == stopped.merges and cut.encoder == stopped.encoder
    text = assets.shakespeare_text()[-5_000:]
    assert cut.encode(text) == stopped.encode(text)


def test_first_merges_refuses_a_k_out_of_range(small):
    with pytest.raises(ValueError, match=r"k must be in \[0, 60\] \(the merges there are\), got 61"):
        F.first_merges(small, 61)
    with pytest.raises(ValueError, match=r"got -1"):
        F.first_merges(small, -1)


def test_merge_lengths_and_bytes_per_token_by_hand():
    # "aaab aaab ab": a+a, then a+b, then aa+ab (tests/test_bpe.py's worked example)
    bpe = ByteLevelBPETokenizer().train(["aaab aaab ab"], 259)
    assert bpe.merges == [("a", "a"), ("a", "b"), ("aa", "ab")]
    assert F.merge_lengths(bpe) == [2, 2, 4]
    assert F.bytes_per_token(bpe, "aaab") == 4.0  # one token
    assert F.bytes_per_token(bpe, "aaab ab") == 7 / 3  # "aaab", "Ġ", "ab"
    # é is two UTF-8 bytes (C3 A9), in both words: the first merge puts the character back together
    assert F.merge_lengths(ByteLevelBPETokenizer().train(["é é"], 257)) == [2]
    assert F.compression_by_merges(bpe, "aaab", [0, 1, 3]) == [1.0, 4 / 3, 4.0]  # a a a b; aa a b; aaab


def test_what_the_guide_says_of_the_merges():
    """The guide's sentences on the figure: the first merges, " the" at rank 10, CLEOPATRA as
    the first 9-byte token, and the held-out compression at 1,024 tokens against GPT-2's."""
    bpe = F.shakespeare_bpe()
    assert bpe.merges[:3] == [("Ġ", "t"), ("h", "e"), ("Ġ", "a")]
    assert bpe.merges[10] == ("Ġt", "he")
    lengths = F.merge_lengths(bpe)
    first_long = next(r for r, n in enumerate(lengths) if n >= 9)
    assert (first_long, bpe.merges[first_long]) == (169, ("C", "LEOPATRA"))
    held_out = assets.shakespeare_text()[-F.HELD_OUT_CHARS:]
    ours = F.bytes_per_token(bpe, held_out)
    gpt2 = F.bytes_per_token(ByteLevelBPETokenizer.from_pretrained(assets.gpt2_vocab_dir()), held_out)
    assert round(ours, 2) == 2.40 and round(gpt2, 2) == 2.99


def test_what_the_guide_says_of_gpt2_artifacts(tiktoken_gpt2):
    """The guide's tokenizer artifacts, with tiktoken's gpt2 encoding as the reference: a glitch
    token is one token, digits are cut by frequency, a trailing space is a token of its own."""
    gpt2 = ByteLevelBPETokenizer.from_pretrained(assets.gpt2_vocab_dir())
    cases = {" SolidGoldMagikarp": [43453], " 1234567": [17031, 2231, 3134], " 2023": [1160, 1954],
             " 2024": [48609], "Hello world": [15496, 995], "Hello world ": [15496, 995, 220], "\n\n": [628],
             "<|endoftext|>": [27, 91, 437, 1659, 5239, 91, 29]}
    for text, ids in cases.items():
        assert gpt2.encode(text) == ids == tiktoken_gpt2.encode_ordinary(text), text
    assert gpt2.tokenize(" 1234567") == ["Ġ123", "45", "67"] and gpt2.tokenize("CLEOPATRA") == ["CLE", "OP", "AT", "RA"]
    single = [y for y in range(1900, 2031) if len(tiktoken_gpt2.encode_ordinary(f" {y}")) == 1]
    assert len(single) == 126 and sorted(set(range(1900, 2031)) - set(single)) == [2023, 2026, 2027, 2028, 2029]


def test_what_the_guide_says_of_wordpiece_examples(hf_bert):
    """MiniLM's vocabulary has "una": the guide's and the docstrings' examples, as transformers gives them."""
    assert hf_bert.tokenize("unaffable") == ["una", "##ffa", "##ble"]
    assert hf_bert.tokenize("Hello, unaffable!") == ["hello", ",", "una", "##ffa", "##ble", "!"]
    assert hf_bert.tokenize("[mask]") == ["[", "mask", "]"] and hf_bert.tokenize("[MASK]") == ["[MASK]"]
    assert hf_bert("hello")["input_ids"] == [101, 7592, 102]
    assert hf_bert.decode(hf_bert("Héllo, World")["input_ids"]) == "[CLS] hello, world [SEP]"


def test_what_the_guide_says_of_the_slices():
    """The plays the figure's slices hold: the first 300,000 characters are All's Well, all of Antony
    and Cleopatra and the opening of As You Like It, where CLEOPATRA speaks most (204 speeches,
    ANTONY 202); the last 100,000 are the end of The Winter's Tale, the last play."""
    text = assets.shakespeare_text()
    starts = {title: text.find(f"\n\n{title}\n\nby William Shakespeare") for title in
              ("ANTONY AND CLEOPATRA", "AS YOU LIKE IT", "THE WINTER'S TALE")}
    assert text.startswith("ALL'S WELL THAT ENDS WELL\n\nby William Shakespeare")
    assert 0 < starts["ANTONY AND CLEOPATRA"] < starts["AS YOU LIKE IT"] < F.TRAIN_CHARS
    assert 0 < starts["THE WINTER'S TALE"] < len(text) - F.HELD_OUT_CHARS
    assert "by William Shakespeare" not in text[starts["THE WINTER'S TALE"] + 40:]
    speakers = Counter(line for line in text[:F.TRAIN_CHARS].splitlines() if line.isupper() and line.endswith("."))
    assert speakers.most_common(2) == [("CLEOPATRA.", 204), ("ANTONY.", 202)]


def test_what_the_guide_says_of_the_training_snippet():
    """The guide's snippet: 24 merges on the first 100,000 characters; " the" (from " t" + "he")
    within the first dozen, and " the" and " you" the only tokens longer than two characters."""
    bpe = ByteLevelBPETokenizer().train([assets.shakespeare_text()[:100_000]], 256 + 24)
    assert bpe.merges[:3] == [("Ġ", "t"), ("h", "e"), ("Ġ", "a")] and ("Ġt", "he") in bpe.merges[:12]
    assert {("o", "u"), ("i", "n"), ("Ġ", "s")} <= set(bpe.merges[:12])
    assert [t for t in bpe.encoder if len(t) > 2] == ["Ġthe", "Ġyou"]


def test_what_the_guide_says_of_merges_that_spell_a_token_again(tiktoken_gpt2):
    """4,096 tokens trained on the whole corpus: 3,840 merges, each a new token (none spells bytes
    already a token), and " Paris" is one GPT-2 token, as the trailing-space question says."""
    bpe = ByteLevelBPETokenizer().train([assets.shakespeare_text()], 4096)
    assert len(bpe.merges) == 3840 == len({a + b for a, b in bpe.merges}) and len(bpe.encoder) == 4096
    assert tiktoken_gpt2.encode_ordinary(" Paris") == [6342]
