"""``mlab-tfs filter-sample``: sample continuations and rank them by the model's own judgement.

    mlab-tfs filter-sample --prompt "The food at the restaurant" -n 8
    mlab-tfs filter-sample --model mlab_tfs/training/model --prompt "ROMEO:"   # a GPT-2 folder
    mlab-tfs filter-sample --model gpt2 --prompt "..." -n 16          # a hub id (online)
    mlab-tfs filter-sample --model path/or/id --transformers           # any transformers causal LM

Without --model it builds a tiny random GPT-2 with GPT-2's vocabulary (offline; random
weights, so the text is noise: a demonstration of the mechanics), and says so. A model folder
is read with its own tokenizer, as ``mlab-tfs sample`` reads one (``load_model_folder``); a
hub id gets transformers' GPT2Tokenizer on OpenAI's vocabulary files from the offline assets
(the vocabulary of the hub's GPT-2 checkpoints); with --transformers, the folder's or hub
id's own tokenizer through AutoTokenizer.
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


RANDOM_MODEL = "a tiny random GPT-2 (2 layers, random weights: the text is noise; pass --model <folder> for a trained one)"


def _names_a_path(model: str) -> bool:
    """Whether --model is written as a path rather than a hub id: absolute, ./ or ../, ~, or
    under a folder that exists here (mlab_tfs/training/modle is a typo, not a hub id)."""
    path = Path(model)
    return path.is_absolute() or model.startswith((".", "~")) or (len(path.parts) > 1 and Path(path.parts[0]).is_dir())


def load(args: argparse.Namespace):
    """(model, tokenizer, what the model is, in words) for filter-sample's --model and --transformers."""
    if args.model is None:
        return tiny_random_gpt2(args.seed), gpt2_tokenizer(), RANDOM_MODEL
    if args.transformers:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        # A path that names no folder is a typo, not a hub id (offline, transformers' message is about repo ids).
        if _names_a_path(args.model) and not Path(args.model).is_dir():
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
        model = AutoModelForCausalLM.from_pretrained(args.model).eval()
        return model, tok, f"{args.model} (transformers' {type(model).__name__}, its own tokenizer)"
    if Path(args.model).expanduser().is_dir() or _names_a_path(args.model):
        from mlab_tfs.training.commands import load_model_folder

        # The folder's own tokenizer: a model trained on another vocabulary reads other ids.
        model, tok = load_model_folder(Path(args.model).expanduser())
        return model.eval(), tok, f"{args.model} (its own tokenizer)"
    from mlab_tfs.gpt2 import GPT2LMHeadModel

    # A hub id: the hub's GPT-2 checkpoints share OpenAI's vocabulary, shipped offline.
    model, tok = GPT2LMHeadModel.from_pretrained(args.model), gpt2_tokenizer()
    if model.config.vocab_size < len(tok):
        raise ValueError(f"--model {args.model} has vocab_size={model.config.vocab_size}, fewer than the "
                         f"{len(tok)} tokens of GPT-2's vocabulary, which filter-sample encodes a hub id's text "
                         "with; pass --transformers to use its own tokenizer")
    return model.eval(), tok, f"{args.model} (GPT-2's vocabulary)"


def _filter_sample(args: argparse.Namespace) -> int:
    from mlab_tfs.cli import one_torch_thread

    one_torch_thread()
    from mlab_tfs.sampling.solution import filtered_sample

    model, tok, described = load(args)
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
    print(f"model: {described}")
    print(f"prompt: {args.prompt!r}")
    print(f"score = log P({args.bad!r}) - log P({args.good!r}); lowest first\n")
    for completion, score in zip(result.completions, result.scores.tolist()):
        print(f"{score:+8.3f}  {tok.decode(completion)!r}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("filter-sample", help="sample continuations and rank them with the model as its own "
                                                    "classifier (log P(bad suffix) - log P(good suffix))")
    p.add_argument("--model", default=None, metavar="FOLDER_OR_ID",
                   help="a GPT-2 folder (read with its own tokenizer, e.g. mlab_tfs/training/model) or a hub id "
                        "(default: a tiny random GPT-2, offline; its text is noise)")
    p.add_argument("--transformers", action="store_true",
                   help="load --model with transformers' AutoModelForCausalLM and its own tokenizer")
    p.add_argument("--prompt", default="The food at the restaurant",
                   help='the text to continue (default: "%(default)s")')
    p.add_argument("-n", type=number(int, 1), default=8, help="how many continuations to sample (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=number(int, 1), default=20,
                   help="the most tokens each continuation gets (default: %(default)s)")
    p.add_argument("--temperature", type=number(float, 0, low_open=True), default=1.0,
                   help="divides the logits before sampling; below 1 is more conservative (default: %(default)s)")
    p.add_argument("--top-p", type=number(float, 0, 1, low_open=True), default=1.0,
                   help="nucleus sampling: sample from the smallest set of tokens whose probability reaches "
                        "this (default: %(default)s, no cut)")
    p.add_argument("--bad", default=BAD, help='the suffix whose log-probability counts against a continuation '
                                              '(default: "%(default)s")')
    p.add_argument("--good", default=GOOD, help='the suffix whose log-probability counts for a continuation '
                                                '(default: "%(default)s")')
    p.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0,
                   help="the random seed of the sampling (and of the random model's weights) (default: %(default)s)")
    p.set_defaults(func=_filter_sample)
