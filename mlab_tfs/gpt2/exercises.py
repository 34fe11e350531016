"""The GPT-2 exercises in course order: (name, title, section of GUIDE.md)."""

from mlab_tfs.testing.exercises import Exercise

PART = "gpt2"

EXERCISES = [
    Exercise("layer_norm", "Layer norm", "1-layer-norm"),
    Exercise("embedding", "Embedding", "2-embedding"),
    Exercise("attention_pattern", "Attention pattern", "3-attention-pattern"),
    Exercise("causal_mask", "Causal mask", "4-causal-mask"),
    Exercise("attention", "Attention", "5-attention"),
    Exercise("gelu", "GELU (tanh approximation)", "6-gelu"),
    Exercise("mlp", "MLP", "7-mlp"),
    Exercise("block", "Transformer block", "8-block"),
    Exercise("model", "GPT-2 model and LM loss", "9-model"),
    Exercise("loading", "Loading and saving weights", "10-loading-weights"),
    Exercise("kv_cache", "KV cache", "11-kv-cache"),
]
