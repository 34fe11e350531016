"""The DeBERTa exercises in course order: (name, title, section of GUIDE.md)."""

from mlab_tfs.testing.exercises import Exercise

PART = "deberta"

EXERCISES = [
    Exercise("log_buckets", "Log buckets", "1-log-buckets"),
    Exercise("relative_position", "Relative position matrix", "2-relative-position-matrix"),
    Exercise("c2p", "Content-to-position scores", "3-content-to-position"),
    Exercise("p2c", "Position-to-content scores", "4-position-to-content"),
    Exercise("attention", "Disentangled attention", "5-disentangled-attention"),
    Exercise("embeddings", "Embeddings: the v3 path", "6-embeddings"),
    Exercise("encoder", "Encoder: shared table and 2-d mask", "7-encoder"),
    Exercise("mlm_heads", "MLM heads: legacy and original", "8-mlm-heads"),
    Exercise("model", "The whole model", "9-the-whole-model"),
]
