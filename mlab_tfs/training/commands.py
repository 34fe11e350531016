"""``mlab-tfs train`` (our training loop) and ``mlab-tfs sample`` (the course's own model).

    mlab-tfs train --config mlab_tfs/training/course_model.toml
    mlab-tfs train --config my.toml --max-steps 100 --out runs/try --no-compile
    mlab-tfs train --config mlab_tfs/training/llama_course.toml            # the Llama of the same size
    torchrun --nproc-per-node 2 -m mlab_tfs.cli train --config my.toml     # data-parallel (DDP)
    torchrun --nproc-per-node 2 -m mlab_tfs.cli train --config my.toml --parallel fsdp   # sharded (FSDP2)
    mlab-tfs sample "ROMEO:"                                               # the shipped model
    mlab-tfs sample "ROMEO:" --model runs/try/model -n 3
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from mlab_tfs.assets import course_model_path
from mlab_tfs.cli import number

SHIPPED_MODEL = course_model_path()


# What each TrainConfig field means, for `mlab-tfs train --help` (a test holds one per field).
SETTINGS = {
    "corpus": "files or folders of *.txt to train on",
    "eval_fraction": "the share of each document held out for evaluation (its end)",
    "tokenizer": '"bpe" (train a byte-level BPE on the corpus), "gpt2" (GPT-2\'s vocabulary) or a tokenizer folder',
    "vocab_size": 'the size of the BPE vocabulary trained for --tokenizer bpe, <|endoftext|> included',
    "repeat_fraction": "the share of training sequences made a span of random tokens repeated (induction data; its first copy is not trained on)",
    "repeat_text_fraction": "the share of training sequences made their own first span of text repeated (induction data)",
    "n_layer": "transformer blocks (llama: num_hidden_layers)",
    "n_head": "attention heads per block (llama: num_attention_heads)",
    "n_embd": "the model width, a multiple of --n-head (llama: hidden_size)",
    "n_positions": "the longest sequence the model reads (gpt2: learned position embeddings; "
                   "llama: max_position_embeddings)",
    "dropout": "dropout probability of the embeddings, attention and residual branches (llama: attention "
               "dropout only, the one dropout a Llama has)",
    "init_from": "a checkpoint folder of --arch to start from",
    "arch": '"gpt2" (our GPT2LMHeadModel) or "llama" (our LlamaForCausalLM, head tied to the embedding)',
    "n_kv_head": "llama only: key/value heads, dividing --n-head (grouped-query attention)",
    "intermediate_size": "llama only: the width of the SwiGLU MLP",
    "rope_theta": "llama only: the base of the rotary embeddings' frequencies",
    "block_size": "tokens per training sequence (at most --n-positions)",
    "batch_size": "sequences per optimizer step, over all processes and accumulation steps",
    "grad_accum": "micro-batches per optimizer step, per process",
    "max_steps": "optimizer steps of the run",
    "lr": "peak learning rate, reached after the warm-up, then a cosine down to --min-lr",
    "min_lr": "the learning rate at the end of the cosine",
    "warmup_steps": "steps of linear warm-up",
    "weight_decay": "AdamW's weight decay, on the linear layers' matrices (not biases, layer norms or embeddings)",
    "beta1": "AdamW's beta1",
    "beta2": "AdamW's beta2",
    "grad_clip": "the largest global gradient norm; 0: no clipping",
    "seed": "the seed of the initialisation, the data order and the samples",
    "eval_every": "steps between evaluations of the held-out loss",
    "eval_blocks": "held-out blocks per evaluation, evenly spread; 0: all",
    "sample_prompt": "the prompt of the samples written at each evaluation",
    "sample_tokens": "tokens per sample",
    "sample_temperature": "the samples' temperature",
    "sample_top_k": "the samples' top-k; 0: none",
    "checkpoint_every": "steps between checkpoints (for --resume)",
    "device": '"auto" (cuda if there is one, else cpu), "cpu", "cuda" or "cuda:N"',
    "amp": "bf16 autocast",
    "compile": "torch.compile the model",
    "parallel": 'over several processes (torchrun): "ddp" (each holds the whole model) or "fsdp" '
                "(FSDP2: each holds a shard of the weights, gradients and optimizer state)",
    "out": "the run folder: log.jsonl, checkpoint/ and model/ (the exported model)",
    "progress": "show the progress bar",
}
# Defaults that are None or empty and mean something.
SETTING_DEFAULTS = {
    "corpus": "the 42 Shakespeare plays of the offline assets",
    "init_from": "none: random weights",
    "warmup_steps": "min(100, max_steps // 10)",
    "n_kv_head": "--n-head (no sharing)",
    "intermediate_size": "8 x n_embd / 3 rounded up to a multiple of 16 (GPT-2's MLP parameter count)",
    "rope_theta": "10000.0",
    "amp": "on where there is a GPU",
    "compile": "on where there is a GPU",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from mlab_tfs.training.loop import TrainConfig

    group = parser.add_argument_group(
        "settings", "each overrides the config file's; the defaults shown are TrainConfig's, used where neither "
                    "gives the setting (mlab_tfs/training/course_model.toml sets the course model's)")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        kind = str(f.type)
        # A default that is None or empty means something the description says; the others are shown.
        value = getattr(defaults, f.name)
        shown = SETTING_DEFAULTS.get(f.name, "on" if value is True else "off" if value is False else repr(value))
        help = f"{SETTINGS[f.name]} (default: {shown})".replace("%", "%%")
        if kind == "bool | None" or kind == "bool":
            group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help)
        elif kind == "list[str]":
            group.add_argument(_flag(f.name), nargs="+", default=None, metavar="PATH", help=help)
        else:
            # Ranges are check_config's (one place for them); here only the conversion.
            convert = {"int": int, "int | None": int, "float": float, "float | None": float}.get(kind, str)
            group.add_argument(_flag(f.name), type=convert, default=None, metavar=kind.split(" ")[0].upper(),
                               help=help)


def _train(args: argparse.Namespace) -> int:
    from mlab_tfs.training.loop import TrainConfig, config_from_dict, load_config, train

    names = [f.name for f in fields(TrainConfig)]
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    cfg = load_config(args.config, overrides) if args.config is not None else config_from_dict(overrides, "flags")
    command = "mlab-tfs " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    train(cfg, resume=args.resume, command=command)
    return 0


def load_model_folder(folder: str | Path | None):
    """(our model in fp32, our ByteLevelBPETokenizer) from an exported folder: one with
    config.json, model.safetensors, and vocab.json + merges.txt or (saved by transformers 5)
    tokenizer.json (or a run folder holding such a folder as model/). The model is our
    GPT2LMHeadModel or LlamaForCausalLM, as config.json's model_type says ("gpt2"; "llama" or
    "qwen3"; a config.json without model_type is a GPT-2's).

    Raises FileNotFoundError for a missing folder or file, ValueError for a model_type neither
    class loads, a vocabulary that lacks a byte's token or has ids beyond the model's vocab_size."""
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer
    from mlab_tfs.training.loop import MODEL_TYPES, _folder_model_type, model_class

    folder = Path(folder) if folder is not None else SHIPPED_MODEL
    if not (folder / "config.json").is_file() and (folder / "model" / "config.json").is_file():
        folder = folder / "model"
    if not folder.is_dir():
        hint = (" (the course model is not in this copy of the repository yet: train one with "
                "`mlab-tfs train --config mlab_tfs/training/course_model.toml` and pass --model runs/shakespeare/model)"
                if folder == SHIPPED_MODEL else "")
        raise FileNotFoundError(f"--model: no folder {folder}{hint}")
    # The tokenizer: ours (vocab.json + merges.txt) or transformers 5's save (tokenizer.json).
    vocab_files = ("tokenizer.json",) if (folder / "tokenizer.json").is_file() else ("vocab.json", "merges.txt")
    missing = [n for n in ("config.json", "model.safetensors", *vocab_files) if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"--model: {folder} lacks {', '.join(missing)} (an `mlab-tfs train` run writes them "
                                "to <out>/model; tokenizer.save_pretrained(folder) writes a tokenizer's)")
    import torch

    from mlab_tfs.tokenizers import bytes_to_unicode

    model_type = _folder_model_type(folder, "--model") or "gpt2"  # none named: a GPT-2, as before model_type was read
    if model_type not in MODEL_TYPES:
        raise ValueError(f"--model: {folder / 'config.json'} has model_type {model_type!r}; mlab-tfs sample loads "
                         f"model_type {' / '.join(repr(t) for t in MODEL_TYPES)}")
    model = model_class(MODEL_TYPES[model_type]).from_pretrained(folder, dtype=torch.float32)
    tok = ByteLevelBPETokenizer.from_pretrained(folder)
    # A byte-level BPE encodes any text only if every byte has a token; and every id it gives
    # must have a row in the model's embedding.
    lacking = [c for c in bytes_to_unicode().values() if c not in tok.encoder]
    if lacking:
        raise ValueError(f"--model: {folder / vocab_files[0]} lacks the tokens of {len(lacking)} of the 256 bytes "
                         f"(first {lacking[0]!r}), so it cannot encode every text; it is not a byte-level BPE vocabulary")
    if max(tok.encoder.values()) >= model.config.vocab_size:
        raise ValueError(f"--model: the tokenizer in {folder} has ids up to {max(tok.encoder.values())}, but the model "
                         f"has vocab_size={model.config.vocab_size}: they are not from the same run")
    return model, tok


def _sample(args: argparse.Namespace) -> int:
    from mlab_tfs.cli import one_torch_thread

    one_torch_thread()
    import torch

    from mlab_tfs.sampling import generate

    model, tok = load_model_folder(args.model)
    eot = tok.encoder.get("<|endoftext|>")
    prompt = tok.encode(args.prompt) if args.prompt else [eot]
    if not prompt or None in prompt:
        raise ValueError("the prompt is empty and the tokenizer has no <|endoftext|> to start from")
    from mlab_tfs.training.loop import max_positions

    longest = max_positions(model.config)
    room = longest - len(prompt)
    if room < 1:
        raise ValueError(f"the prompt is {len(prompt)} tokens; the model sees at most {longest}, "
                         "and one more is needed for a new token")
    n_new = min(args.max_new_tokens, room)
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.tensor([prompt] * args.n)
    with torch.no_grad():
        out = generate(model, ids, max_new_tokens=n_new, do_sample=True, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, eos_token_id=eot, pad_token_id=eot, generator=g)
    for i, row in enumerate(out.tolist()):
        if args.n > 1:
            print(f"--- sample {i + 1} ---")
        if eot is not None and eot in row[len(prompt):]:
            row = row[: len(prompt) + row[len(prompt):].index(eot)]
        print(tok.decode(row))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a GPT-2 or a Llama with the course's own loop "
                                            "(see mlab_tfs/training/GUIDE.md)",
                              description="Train our GPT-2 or Llama (--arch) from a config file (TOML or JSON) "
                                          "and/or flags. Flags win.")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a .toml or .json file of settings, e.g. mlab_tfs/training/course_model.toml "
                        "(default: none; the settings' defaults below)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    _add_config_flags(p)
    p.set_defaults(func=_train)

    s = subparsers.add_parser("sample", help="write text with the course's Shakespeare GPT-2 (offline, CPU)")
    s.add_argument("prompt", nargs="?", default="ROMEO:", help='where the text starts (default: "ROMEO:")')
    s.add_argument("--model", default=None, metavar="FOLDER",
                   help="a folder written by mlab-tfs train (<out>/model) or any GPT-2 or Llama folder with its "
                        "byte-level BPE tokenizer "
                        "(default: the shipped mlab_tfs/training/model)")
    s.add_argument("-n", type=number(int, 1), default=1, help="how many samples (default: %(default)s)")
    s.add_argument("--max-new-tokens", type=number(int, 1), default=200,
                   help="the most tokens each sample gets; fewer where the model's context ends "
                        "(default: %(default)s)")
    s.add_argument("--temperature", type=number(float, 0, low_open=True), default=0.8,
                   help="divides the logits before sampling; below 1 is more conservative (default: %(default)s)")
    s.add_argument("--top-k", type=number(int, 0), default=40,
                   help="sample from the k likeliest tokens only; 0: no top-k (default: %(default)s)")
    s.add_argument("--top-p", type=number(float, 0, 1, low_open=True), default=1.0,
                   help="nucleus sampling: sample from the smallest set of tokens whose probability reaches this "
                        "(default: %(default)s, no cut)")
    s.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0, help="the random seed (default: %(default)s)")
    s.set_defaults(func=_sample)
