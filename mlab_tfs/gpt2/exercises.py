"""The GPT-2 exercises in course order: (name, title, section of GUIDE.md)."""

from mlab_tfs.testing.exercises import Exercise

PART = "gpt2"

EXERCISES = [
    Exercise("layer_norm", "Layer norm", "1-layer-norm", difficulty=1, importance=3, minutes=15),
    Exercise("embedding", "Embedding", "2-embedding", difficulty=1, importance=3, minutes=15),
    Exercise("attention_pattern", "Attention pattern", "3-attention-pattern", difficulty=2, importance=3, minutes=30),
    Exercise("causal_mask", "Causal mask", "4-causal-mask", difficulty=1, importance=3, minutes=15),
    Exercise("attention", "Attention", "5-attention", difficulty=3, importance=3, minutes=50),
    Exercise("gelu", "GELU (tanh approximation)", "6-gelu", difficulty=1, importance=3, minutes=15),
    Exercise("mlp", "MLP", "7-mlp", difficulty=1, importance=3, minutes=15),
    Exercise("block", "Transformer block", "8-block", difficulty=1, importance=3, minutes=15),
    Exercise("model", "GPT-2 model and LM loss", "9-model", difficulty=3, importance=3, minutes=50),
    Exercise("loading", "Loading and saving weights", "10-loading-weights", difficulty=2, importance=3, minutes=30),
    Exercise("kv_cache", "KV cache", "11-kv-cache", difficulty=3, importance=3, minutes=50),
]
