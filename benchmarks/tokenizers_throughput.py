"""Encoding throughput on the Shakespeare corpus (5.06 MB, 187,223 lines), side by side in one run.

    python benchmarks/tokenizers_throughput.py [--repeat 3]

WordPiece: ours, transformers' pure-Python BertTokenizerLegacy, and the Rust-backed
BertTokenizer (through transformers' __call__ and through its backend's encode_batch), each
encoding every line. BPE: ours (cold cache, then warm), transformers' GPT2Tokenizer (Rust)
and tiktoken, each encoding the corpus as one string. Best of --repeat runs; MB/s of UTF-8
input. Also: BPE merging of one huge word (n and 4n bytes), to show it is not quadratic.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time


def best_of(repeat, fn):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one core for the Rust tokenizers too
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import tiktoken
    import tiktoken.load
    from tiktoken_ext.openai_public import r50k_pat_str
    from transformers import BertTokenizer, GPT2Tokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    from mlab_tfs import assets
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer, WordPieceTokenizer

    text = assets.shakespeare_text()
    lines = text.splitlines()
    mb = len(text.encode()) / 1e6
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"corpus: {mb:.2f} MB, {len(lines)} lines; best of {args.repeat}\n")
    rows = []

    ours = WordPieceTokenizer.from_pretrained(assets.minilm_path())
    legacy = BertTokenizerLegacy(str(assets.minilm_path() / "vocab.txt"))
    fast = BertTokenizer.from_pretrained(str(assets.minilm_path()))
    rows.append(("WordPiece, ours (pure Python)", best_of(args.repeat, lambda: [ours.encode(x) for x in lines])))
    rows.append(("WordPiece, transformers BertTokenizerLegacy (Python)",
                 best_of(1, lambda: [legacy.encode(x) for x in lines])))
    rows.append(("WordPiece, transformers BertTokenizer (Rust) via __call__", best_of(args.repeat, lambda: fast(lines))))
    rows.append(("WordPiece, tokenizers (Rust) encode_batch", best_of(args.repeat, lambda: fast._tokenizer.encode_batch(lines))))

    folder = tempfile.mkdtemp()
    shutil.copy(assets.gpt2_vocab_dir() / "encoder.json", f"{folder}/vocab.json")
    shutil.copy(assets.gpt2_vocab_dir() / "vocab.bpe", f"{folder}/merges.txt")
    gpt2 = GPT2Tokenizer.from_pretrained(folder)
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(assets.gpt2_vocab_dir() / "vocab.bpe"),
                                                           str(assets.gpt2_vocab_dir() / "encoder.json"))
    enc = tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
    bpe = ByteLevelBPETokenizer.from_pretrained(assets.gpt2_vocab_dir())

    def cold():
        bpe.cache.clear()
        bpe.encode(text)

    rows.append(("BPE, ours (pure Python), empty cache", best_of(args.repeat, cold)))
    rows.append(("BPE, ours (pure Python), warm cache", best_of(args.repeat, lambda: bpe.encode(text))))
    rows.append(("BPE, transformers GPT2Tokenizer (Rust) via __call__", best_of(args.repeat, lambda: gpt2(text))))
    rows.append(("BPE, tiktoken (Rust)", best_of(args.repeat, lambda: enc.encode_ordinary(text))))

    print(f"{'tokenizer':<60} {'seconds':>8} {'MB/s':>7}")
    for name, secs in rows:
        print(f"{name:<60} {secs:>8.2f} {mb / secs:>7.2f}")

    from mlab_tfs.tokenizers.solution import bpe_merge, bytes_to_unicode

    table = bytes_to_unicode()
    print("\nBPE merging of one word of n letters (GPT-2's regex keeps a run of letters whole):")
    for n in (250_000, 1_000_000):
        word = [table[b] for b in ("abcdefghij" * (n // 10)).encode()]
        print(f"  n = {n:>9,}: {best_of(1, lambda: bpe_merge(word, bpe.bpe_ranks)):.2f} s")


if __name__ == "__main__":
    main()
