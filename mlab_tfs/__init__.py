"""MLAB Transformers From Scratch: build GPT-2, BERT and DeBERTa in PyTorch, checked against transformers."""

__version__ = "0.1.0"
