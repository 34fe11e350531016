"""The DeBERTa exercises in course order: (name, title, section of GUIDE.md)."""

from mlab_tfs.testing.exercises import Exercise

PART = "deberta"

EXERCISES = [
    Exercise("log_buckets", "Log buckets", "1-log-buckets", difficulty=3, importance=2, minutes=30),
    Exercise("relative_position", "Relative position matrix", "2-relative-position-matrix", difficulty=1, importance=4, minutes=10),
    Exercise("c2p", "Content-to-position scores", "3-content-to-position", difficulty=3, importance=5, minutes=30),
    Exercise("p2c", "Position-to-content scores", "4-position-to-content", difficulty=4, importance=4, minutes=45),
    Exercise("attention", "Disentangled attention", "5-disentangled-attention", difficulty=4, importance=5, minutes=50),
    Exercise("embeddings", "Embeddings: the v3 path", "6-embeddings", difficulty=2, importance=2, minutes=25),
    Exercise("encoder", "Encoder: shared table and 2-d mask", "7-encoder", difficulty=3, importance=3, minutes=30),
    Exercise("mlm_heads", "MLM heads: legacy and original", "8-mlm-heads", difficulty=2, importance=2, minutes=20),
    Exercise("model", "The whole model", "9-the-whole-model", difficulty=1, importance=2, minutes=10),
]
