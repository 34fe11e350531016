"""``mlab-tfs filter-sample``: sample continuations and rank them by the model's own judgement.

    mlab-tfs filter-sample --prompt "The food at the restaurant" -n 8
    mlab-tfs filter-sample --model gpt2 --prompt "..." -n 16          # any GPT-2 folder or hub id
    mlab-tfs filter-sample --model path/or/id --transformers           # any transformers causal LM

Without --model it builds a tiny random GPT-2 with GPT-2's vocabulary (offline, gibberish
text, a demonstration of the mechanics). Text goes through transformers' GPT2Tokenizer on
OpenAI's vocabulary files from the offline assets, or the model folder's own tokenizer with
--transformers.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from mlab_tfs.cli import number

BAD, GOOD = " -- and that was bad", " -- and that was good"


def gpt2_tokenizer():
    """transformers' GPT2Tokenizer on the GPT-2 vocabulary shipped with the offline assets."""
    from transformers import GPT2Tokenizer

    from mlab_tfs.assets import gpt2_vocab_dir

    with tempfile.TemporaryDirectory(prefix="gpt2-vocab-") as tmp:
        folder = Path(tmp)  # the tokenizer reads both files when it is built
        shutil.copy(gpt2_vocab_dir() / "encoder.json", folder / "vocab.json")
        shutil.copy(gpt2_vocab_dir() / "vocab.bpe", folder / "merges.txt")
        return GPT2Tokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def tiny_random_gpt2(seed: int = 0):
    """A 2-layer random GPT-2 with the full 50257-token vocabulary, as our GPT2LMHeadModel."""
    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_positions=128, n_embd=32, n_layer=2, n_head=4)
    return GPT2LMHeadModel(config).eval()


def load(args: argparse.Namespace):
    if args.model is None:
        return tiny_random_gpt2(args.seed), gpt2_tokenizer()
    if args.transformers:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        # A path that names no folder is a typo, not a hub id (offline, transformers' message is about repo ids).
        if (Path(args.model).is_absolute() or args.model.startswith(".")) and not Path(args.model).is_dir():
            raise FileNotFoundError(f"--model: no folder {args.model}")
        # Tokenizer and config are checked before the weights load (and print their progress).
        tok = AutoTokenizer.from_pretrained(args.model)
        # A folder without tokenizer files gives an empty tokenizer, which encodes every text to nothing.
        if len(tok) < 2:
            raise ValueError(f"--model {args.model}: the folder holds no tokenizer (transformers built one of "
                             f"{len(tok)} token); save the tokenizer with the model (tokenizer.save_pretrained)")
        vocab = getattr(AutoConfig.from_pretrained(args.model), "vocab_size", None)
        if isinstance(vocab, int) and len(tok) > vocab:
            raise ValueError(f"--model {args.model}: its tokenizer has {len(tok)} tokens but the model has "
                             f"vocab_size={vocab}: they are not from the same model")
        return AutoModelForCausalLM.from_pretrained(args.model).eval(), tok
    from mlab_tfs.gpt2 import GPT2LMHeadModel

    model, tok = GPT2LMHeadModel.from_pretrained(args.model), gpt2_tokenizer()
    if model.config.vocab_size < len(tok):
        raise ValueError(f"--model {args.model} has vocab_size={model.config.vocab_size}, fewer than the "
                         f"{len(tok)} tokens of GPT-2's vocabulary, which filter-sample encodes with; "
                         "pass --transformers to use the folder's own tokenizer")
    return model, tok


def _filter_sample(args: argparse.Namespace) -> int:
    from mlab_tfs.sampling.solution import filtered_sample

    model, tok = load(args)
    why = {"--prompt": "it gives the text to continue", "--bad": "its log-probability is the score",
           "--good": "its log-probability is the score"}
    ids = {}
    for flag, text in (("--prompt", args.prompt), ("--bad", args.bad), ("--good", args.good)):
        if not text:
            raise ValueError(f"{flag} must not be empty ({why[flag]})")
        ids[flag] = tok.encode(text)
        if not ids[flag]:
            raise ValueError(f"{flag} {text!r} encodes to no tokens with the model's tokenizer ({why[flag]})")
    prompt = ids["--prompt"]
    with torch.no_grad():
        result = filtered_sample(
            model, prompt, args.n, ids["--bad"], ids["--good"], max_new_tokens=args.max_new_tokens,
            temperature=args.temperature, top_p=args.top_p, eos_token_id=tok.eos_token_id,
            generator=torch.Generator().manual_seed(args.seed),
        )
    print(f"prompt: {args.prompt!r}")
    print(f"score = log P({args.bad!r}) - log P({args.good!r}); lowest first\n")
    for completion, score in zip(result.completions, result.scores.tolist()):
        print(f"{score:+8.3f}  {tok.decode(completion)!r}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("filter-sample", help="sample continuations and rank them with the model as its own "
                                                    "classifier (log P(bad suffix) - log P(good suffix))")
    p.add_argument("--model", default=None, help="checkpoint folder or hub id (default: a tiny random GPT-2, offline)")
    p.add_argument("--transformers", action="store_true",
                   help="load --model with transformers' AutoModelForCausalLM and its own tokenizer")
    p.add_argument("--prompt", default="The food at the restaurant")
    p.add_argument("-n", type=number(int, 1), default=8, help="how many continuations to sample")
    p.add_argument("--max-new-tokens", type=number(int, 1), default=20)
    p.add_argument("--temperature", type=number(float, 0, low_open=True), default=1.0)
    p.add_argument("--top-p", type=number(float, 0, 1, low_open=True), default=1.0)
    p.add_argument("--bad", default=BAD)
    p.add_argument("--good", default=GOOD)
    p.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0)
    p.set_defaults(func=_filter_sample)
