"""The BERT exercises in course order: (name, title, section of GUIDE.md)."""

from mlab_tfs.testing.exercises import Exercise

PART = "bert"

EXERCISES = [
    Exercise("layer_norm", "Layer norm", "1-layer-norm"),
    Exercise("embeddings", "Embeddings", "2-embeddings"),
    Exercise("attention_pattern", "Attention pattern and padding mask", "3-attention-pattern-and-padding-mask"),
    Exercise("attention", "Attention", "4-attention"),
    Exercise("mlp", "MLP (erf GELU)", "5-mlp"),
    Exercise("block", "Post-LN block", "6-block"),
    Exercise("model", "BERT model", "7-model"),
    Exercise("pooler", "Pooler", "8-pooler"),
    Exercise("mlm_head", "Masked-LM head", "9-mlm-head"),
    Exercise("classifier", "Sequence classifier", "10-classifier"),
    Exercise("loading", "Loading and saving weights", "11-loading-weights"),
]
