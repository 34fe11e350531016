"""Fixtures of the tokenizer tests: the implementation under test, the real vocabularies and
the references (transformers' tokenizers, tiktoken), each built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlab_tfs import assets
from mlab_tfs.testing.plugin import load_impl

from mlab_tfs.testing.ordering import reorder_first


@pytest.fixture(scope="session")
def tok(pytestconfig):
    """The module under test: mlab_tfs.tokenizers.solution, or .student with --impl=student."""
    return load_impl(pytestconfig, "tokenizers")


@pytest.fixture(scope="session")
def bert_vocab_dir():
    return assets.minilm_path()


@pytest.fixture(scope="session")
def hf_bert(bert_vocab_dir):
    """transformers' BertTokenizer: the fast (Rust-backed) one, which we match."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(str(bert_vocab_dir))
    # The checkpoint's tokenizer.json pads to 128: the tests that call the Rust backend
    # directly want what tokenizer(text) gives, whichever test ran before them.
    tokenizer._tokenizer.no_padding()
    tokenizer._tokenizer.no_truncation()
    return tokenizer


@pytest.fixture(scope="session")
def hf_bert_legacy(bert_vocab_dir):
    """transformers' pure-Python BertTokenizerLegacy (the original BERT code)."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    return BertTokenizerLegacy(str(bert_vocab_dir / "vocab.txt"))


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory):
    """OpenAI's encoder.json and vocab.bpe under transformers' names."""
    folder = tmp_path_factory.mktemp("gpt2_vocab")
    shutil.copy(assets.gpt2_vocab_dir() / "encoder.json", folder / "vocab.json")
    shutil.copy(assets.gpt2_vocab_dir() / "vocab.bpe", folder / "merges.txt")
    return folder


@pytest.fixture(scope="session")
def hf_gpt2(gpt2_dir):
    from transformers import GPT2Tokenizer

    return GPT2Tokenizer.from_pretrained(str(gpt2_dir))


@pytest.fixture(scope="session")
def tiktoken_gpt2():
    """tiktoken's gpt2 encoding, built from the local files (it cannot download offline)."""
    import tiktoken
    import tiktoken.load
    from tiktoken_ext.openai_public import r50k_pat_str

    folder = assets.gpt2_vocab_dir()
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(folder / "vocab.bpe"), str(folder / "encoder.json"))
    return tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


@pytest.fixture(scope="session")
def shakespeare_lines():
    return assets.shakespeare_text().splitlines()


# The step-by-step tests of each exercise run first, so that the first failure of an exercise
# (what `mlab-tfs check` shows) is a small hand-checked case that can name the mistake.
_FIRST = ("test_wordpiece.py", "test_bpe.py", "test_diagnosis.py", "test_call.py")


def pytest_collection_modifyitems(items):
    reorder_first(items, Path(__file__).parent, _FIRST)
