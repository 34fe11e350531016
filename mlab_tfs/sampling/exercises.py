"""The sampling exercises in course order: (name, title, section of GUIDE.md, optional).

Beam search and two contexts are optional: the core (about 180 lines) runs from greedy
decoding to suffix scoring without them."""

from mlab_tfs.testing.exercises import Exercise

PART = "sampling"

EXERCISES = [
    Exercise("greedy", "Greedy decoding", "1-greedy-decoding", difficulty=1, importance=4, minutes=15),
    Exercise("temperature", "Temperature and sampling", "2-temperature-and-sampling", difficulty=1, importance=4, minutes=15),
    Exercise("top_k", "Top-k", "3-top-k", difficulty=2, importance=3, minutes=15),
    Exercise("top_p", "Top-p and min-p", "4-top-p-and-min-p", difficulty=3, importance=4, minutes=30),
    Exercise("penalties", "Penalties and the order", "5-penalties-and-the-order", difficulty=3, importance=3, minutes=35),
    Exercise("batching", "Batching with left padding", "6-batching-with-left-padding", difficulty=2, importance=4, minutes=20),
    Exercise("kv_cache_loop", "The KV cache loop: generate", "7-the-kv-cache-loop-generate", difficulty=4, importance=5, minutes=50),
    Exercise("beam_search", "Beam search", "8-beam-search", optional=True, difficulty=4, importance=3, minutes=60),
    Exercise("two_contexts", "Two contexts", "9-two-contexts", optional=True, difficulty=2, importance=2, minutes=30),
    Exercise("suffix_scoring", "Suffix scoring", "10-suffix-scoring", difficulty=4, importance=3, minutes=70),
]
