"""The tokenizer guide's figures, drawn from the course's own trainer (``python -m mlab_tfs.figures
tokenizers``). The data of each is a function of its own, tested in tests/test_figures_data.py."""

from __future__ import annotations

from mlab_tfs import assets
from mlab_tfs.figures import figure
from mlab_tfs.tokenizers.solution import ByteLevelBPETokenizer, bytes_to_unicode

# The first 300,000 characters of the 42 plays (All's Well That Ends Well, Antony and Cleopatra and
# the opening of As You Like It) to train on; the last 100,000 (the end of The Winter's Tale) held out.
TRAIN_CHARS = 300_000
HELD_OUT_CHARS = 100_000
N_MERGES = 768


def shakespeare_bpe(n_merges: int = N_MERGES, n_chars: int = TRAIN_CHARS) -> ByteLevelBPETokenizer:
    """A byte-level BPE of 256 + n_merges tokens trained by the solution on the first n_chars
    characters of the packaged Shakespeare (about 1 s for the defaults)."""
    return ByteLevelBPETokenizer().train([assets.shakespeare_text()[:n_chars]], 256 + n_merges)


def first_merges(bpe: ByteLevelBPETokenizer, k: int) -> ByteLevelBPETokenizer:
    """The tokenizer made of bpe's first k merges: the bytes and the tokens those merges spell,
    with their ids (training stopped after k merges gives the same vocabulary: merges are
    learned one at a time, and ids are given in the order merges spell new tokens)."""
    if not 0 <= k <= len(bpe.merges):
        raise ValueError(f"k must be in [0, {len(bpe.merges)}] (the merges there are), got {k}")
    byte_tokens = set(bytes_to_unicode().values())
    kept = byte_tokens | {a + b for a, b in bpe.merges[:k]}
    return ByteLevelBPETokenizer({t: i for t, i in bpe.encoder.items() if t in kept}, bpe.merges[:k], {})


def merge_lengths(bpe: ByteLevelBPETokenizer) -> list[int]:
    """For each merge in rank order, how many bytes the token it makes stands for."""
    to_byte = {ch: b for b, ch in bytes_to_unicode().items()}
    return [len(bytes(to_byte[c] for c in a + b)) for a, b in bpe.merges]


def bytes_per_token(bpe: ByteLevelBPETokenizer, text: str) -> float:
    """UTF-8 bytes of text over the number of tokens bpe encodes it to (1.0 for the bytes alone)."""
    return len(text.encode("utf-8")) / len(bpe.encode(text))


def compression_by_merges(bpe: ByteLevelBPETokenizer, text: str, ks: list[int]) -> list[float]:
    """bytes_per_token of text with the first k merges of bpe, for each k in ks."""
    return [bytes_per_token(first_merges(bpe, k), text) for k in ks]


@figure("bpe_merges")
def bpe_merges():
    import matplotlib.pyplot as plt

    bpe = shakespeare_bpe()
    held_out = assets.shakespeare_text()[-HELD_OUT_CHARS:]
    lengths = merge_lengths(bpe)
    ks = [0, 32, 64, 128, 256, 384, 512, 640, 768]
    ratios = compression_by_merges(bpe, held_out, ks)
    gpt2 = ByteLevelBPETokenizer.from_pretrained(assets.gpt2_vocab_dir())

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.4))
    left.scatter(range(len(lengths)), lengths, s=6, alpha=0.5)
    long_rank = next(r for r, n in enumerate(lengths) if n >= 9)
    for rank, dy in ((0, 14), (10, 14), (long_rank, -4)):  # a few merges, named (Ġ is the space)
        a, b = bpe.merges[rank]
        left.annotate(f"{a} + {b}", (rank, lengths[rank]), textcoords="offset points", xytext=(8, dy), fontsize=8,
                      arrowprops={"arrowstyle": "-", "lw": 0.5})
    left.set_xlabel("merge rank (order learned)")
    left.set_ylabel("bytes of the new token")
    left.set_title("What BPE learns first on Shakespeare", fontsize=9)
    right.plot([256 + k for k in ks], ratios, marker="o", label="trained here (300k chars)")
    right.axhline(bytes_per_token(gpt2, held_out), color="gray", linestyle="--", label="GPT-2 (50,257 tokens)")
    right.set_xlabel("vocabulary size (256 bytes + merges)")
    right.set_ylabel("bytes per token, held-out text")
    right.set_title("Compression on The Winter's Tale's last 100k chars", fontsize=9)
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
