"""The BERT exercises in course order: (name, title, section of GUIDE.md).

Layer norm, embedding and the attention pattern are not here: BERT reuses the learner's
GPT-2 pieces (mlab_tfs/gpt2/exercises.py)."""

from mlab_tfs.testing.exercises import Exercise

PART = "bert"

EXERCISES = [
    Exercise("embeddings", "Embeddings", "1-embeddings", difficulty=1, importance=3, minutes=15),
    Exercise("padding_mask", "Padding mask", "2-padding-mask", difficulty=1, importance=4, minutes=10),
    Exercise("attention", "Attention", "3-attention", difficulty=3, importance=5, minutes=40),
    Exercise("mlp", "MLP (erf GELU)", "4-mlp", difficulty=1, importance=3, minutes=15),
    Exercise("block", "Post-LN block", "5-block", difficulty=2, importance=4, minutes=15),
    Exercise("model", "BERT model", "6-model", difficulty=3, importance=4, minutes=45),
    Exercise("pooler", "Pooler", "7-pooler", difficulty=1, importance=2, minutes=10),
    Exercise("mlm_head", "Masked-LM head", "8-mlm-head", difficulty=2, importance=4, minutes=30),
    Exercise("classifier", "Sequence classifier", "9-classifier", difficulty=2, importance=3, minutes=30),
    Exercise("loading", "Loading and saving weights", "10-loading-weights", difficulty=3, importance=2, minutes=40),
]
