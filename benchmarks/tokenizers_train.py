"""Training a 4,096-token byte-level BPE vocabulary on the whole Shakespeare corpus (5.06 MB).

    python benchmarks/tokenizers_train.py [--vocab-size 4096]

Goal: under a minute on one CPU core (the solution is single-threaded pure Python).
Also checks that transformers' GPT2Tokenizer, loading the saved files, encodes a sample as we do.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab-size", type=int, default=4096)
    args = parser.parse_args()

    from mlab_tfs import assets
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer

    text = assets.shakespeare_text()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    start = time.perf_counter()
    bpe = ByteLevelBPETokenizer().train([text], args.vocab_size, special_tokens=["<|endoftext|>"])
    seconds = time.perf_counter() - start
    ids = bpe.encode(text)
    print(f"trained {len(bpe.merges)} merges ({bpe.vocab_size} tokens) on {len(text.encode()) / 1e6:.2f} MB "
          f"in {seconds:.1f} s; the corpus is {len(ids):,} tokens ({len(text.encode()) / len(ids):.2f} bytes/token)")
    print("first merges:", bpe.merges[:8])

    from transformers import GPT2Tokenizer

    with tempfile.TemporaryDirectory() as folder:
        bpe.save_pretrained(folder)
        theirs = GPT2Tokenizer.from_pretrained(folder)
        sample = text[:200_000]
        print("transformers' GPT2Tokenizer on the saved files gives the same ids:", theirs(sample)["input_ids"] == bpe.encode(sample))


if __name__ == "__main__":
    main()
