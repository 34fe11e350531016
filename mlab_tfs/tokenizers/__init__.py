"""Tokenizers from scratch: BERT's WordPiece and GPT-2's byte-level BPE.

``mlab_tfs.tokenizers`` is the solution; your version lives in ``student.py``. (Inside this
package always import with absolute names: the folder is called ``tokenizers`` like
Hugging Face's package, and ``import tokenizers`` must keep meaning theirs.)
"""

from mlab_tfs.tokenizers.solution import (
    ByteLevelBPETokenizer,
    WordPieceTokenizer,
    basic_tokenize,
    bpe_merge,
    bytes_to_unicode,
    pretokenize,
    wordpiece,
)

__all__ = [
    "ByteLevelBPETokenizer",
    "WordPieceTokenizer",
    "basic_tokenize",
    "bpe_merge",
    "bytes_to_unicode",
    "pretokenize",
    "wordpiece",
]
