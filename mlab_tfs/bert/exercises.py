"""The BERT exercises in course order: (name, title, section of GUIDE.md).

Layer norm, embedding and the attention pattern are not here: BERT reuses the learner's
GPT-2 pieces (mlab_tfs/gpt2/exercises.py)."""

from mlab_tfs.testing.exercises import Exercise

PART = "bert"

EXERCISES = [
    Exercise("embeddings", "Embeddings", "1-embeddings"),
    Exercise("padding_mask", "Padding mask", "2-padding-mask"),
    Exercise("attention", "Attention", "3-attention"),
    Exercise("mlp", "MLP (erf GELU)", "4-mlp"),
    Exercise("block", "Post-LN block", "5-block"),
    Exercise("model", "BERT model", "6-model"),
    Exercise("pooler", "Pooler", "7-pooler"),
    Exercise("mlm_head", "Masked-LM head", "8-mlm-head"),
    Exercise("classifier", "Sequence classifier", "9-classifier"),
    Exercise("loading", "Loading and saving weights", "10-loading-weights"),
]
