"""The Llama exercises in course order: (name, title, section of GUIDE.md)."""

from mlab_tfs.testing.exercises import Exercise

PART = "llama"

EXERCISES = [
    Exercise("rms_norm", "RMSNorm", "1-rmsnorm", difficulty=1, importance=4, minutes=15),
    Exercise("rotary", "Rotary embeddings", "2-rotary-embeddings", difficulty=3, importance=5, minutes=45),
    Exercise("rope_frequencies", "Rotary frequencies", "3-rotary-frequencies", difficulty=3, importance=3,
             minutes=35),
    Exercise("swiglu", "SwiGLU MLP", "4-swiglu-mlp", difficulty=1, importance=3, minutes=15),
    Exercise("repeat_kv", "Repeating key/value heads", "5-repeating-keyvalue-heads", difficulty=2, importance=4,
             minutes=15),
    Exercise("attention", "Grouped-query attention", "6-grouped-query-attention", difficulty=3, importance=5,
             minutes=50),
    Exercise("qk_norm", "QK-norm", "7-qk-norm", difficulty=1, importance=3, minutes=15),
    Exercise("block", "Decoder layer", "8-decoder-layer", difficulty=1, importance=3, minutes=15),
    Exercise("model", "Llama model and LM loss", "9-model", difficulty=3, importance=5, minutes=50),
    Exercise("loading", "Loading and saving weights", "10-loading-weights", difficulty=2, importance=3, minutes=30),
]
