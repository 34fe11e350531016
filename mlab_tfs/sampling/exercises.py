"""The sampling exercises in course order: (name, title, section of GUIDE.md, optional).

Beam search and two contexts are optional: the core (about 180 lines) runs from greedy
decoding to suffix scoring without them."""

from mlab_tfs.testing.exercises import Exercise

PART = "sampling"

EXERCISES = [
    Exercise("greedy", "Greedy decoding", "1-greedy-decoding"),
    Exercise("temperature", "Temperature and sampling", "2-temperature-and-sampling"),
    Exercise("top_k", "Top-k", "3-top-k"),
    Exercise("top_p", "Top-p and min-p", "4-top-p-and-min-p"),
    Exercise("penalties", "Penalties and the order", "5-penalties-and-the-order"),
    Exercise("batching", "Batching with left padding", "6-batching-with-left-padding"),
    Exercise("kv_cache_loop", "The KV cache loop: generate", "7-the-kv-cache-loop-generate"),
    Exercise("beam_search", "Beam search", "8-beam-search", optional=True),
    Exercise("two_contexts", "Two contexts", "9-two-contexts", optional=True),
    Exercise("suffix_scoring", "Suffix scoring", "10-suffix-scoring"),
]
