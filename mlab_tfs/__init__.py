"""MLAB Transformers From Scratch: build GPT-2, BERT and DeBERTa in PyTorch, checked against transformers."""

__version__ = "0.1.0"

__all__ = ["as_transformers"]


def __getattr__(name: str):
    # Lazy: ``import mlab_tfs`` must not import transformers (an optional bridge).
    if name == "as_transformers":
        from mlab_tfs.bridge import as_transformers

        return as_transformers
    raise AttributeError(f"module 'mlab_tfs' has no attribute {name!r}")
