"""The GPT-2 exercises in course order: (name, title, section of GUIDE.md)."""

from mlab_tfs.testing.exercises import Exercise

PART = "gpt2"

EXERCISES = [
    Exercise("layer_norm", "Layer norm", "1-layer-norm", difficulty=1, importance=4, minutes=15),
    Exercise("embedding", "Embedding", "2-embedding", difficulty=1, importance=2, minutes=15),
    Exercise("attention_pattern", "Attention pattern", "3-attention-pattern", difficulty=3, importance=5, minutes=35),
    Exercise("causal_mask", "Causal mask", "4-causal-mask", difficulty=2, importance=4, minutes=15),
    Exercise("attention", "Attention", "5-attention", difficulty=3, importance=5, minutes=50),
    Exercise("gelu", "GELU (tanh approximation)", "6-gelu", difficulty=1, importance=2, minutes=10),
    Exercise("mlp", "MLP", "7-mlp", difficulty=1, importance=3, minutes=15),
    Exercise("block", "Transformer block", "8-block", difficulty=2, importance=4, minutes=20),
    Exercise("model", "GPT-2 model and LM loss", "9-model", difficulty=4, importance=5, minutes=75),
    Exercise("loading", "Loading and saving weights", "10-loading-weights", difficulty=2, importance=3, minutes=35),
    Exercise("kv_cache", "KV cache", "11-kv-cache", difficulty=4, importance=4, minutes=60),
]
