"""``mlab-tfs interp``: looking inside a model from the command line.

    mlab-tfs interp attention "ROMEO: But soft, what light" --layer 1             # every head of layer 1
    mlab-tfs interp attention "ROMEO: But soft" --layer 1 --head 4 --out pictures
    mlab-tfs interp attention "To be, or not" --layer 0 --model runs/try/model    # a GPT-2 or Llama folder

``attention`` runs the model on the text once, reads layer L's attention pattern from its
``blocks.L.attn.hook_pattern`` (``run_with_cache``), and writes it as ``attention_L{L}.png``
(``mlab_tfs.interp.plot_attention``: a grid of every head, or the one head of --head) and, where
circuitsvis is installed, an interactive ``attention_L{L}.html`` (``attention_html``), into
--out. The model is the course model (``mlab_tfs.assets.course_model_path()``) unless --model
names a folder, read with its own tokenizer as ``mlab-tfs sample`` reads one (GPT-2 or Llama,
by config.json's model_type). It prints the paths it wrote.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from mlab_tfs.cli import number

DEFAULT_OUT = "interp_out"


def _attention(args: argparse.Namespace) -> int:
    from mlab_tfs.cli import one_torch_thread

    one_torch_thread()
    import torch

    from mlab_tfs.interp import attention_html, plot_attention
    from mlab_tfs.training.commands import load_model_folder

    if not args.text:
        raise ValueError("the text must not be empty: the attention pattern is over its tokens")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; it must name a folder (made if missing)")
    model, tok = load_model_folder(None if args.model is None else Path(args.model).expanduser())
    model.eval()
    layers = sum(1 for name in model.hook_dict if name.endswith(".attn.hook_pattern"))
    if args.layer >= layers:
        raise ValueError(f"--layer {args.layer} is out of range: the model has {layers} layers (0 to {layers - 1})")
    ids = tok.encode(args.text)
    if not ids:
        raise ValueError(f"the text {args.text!r} encodes to no tokens with the model's tokenizer")
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if limit is not None and len(ids) > limit:
        raise ValueError(f"the text is {len(ids)} tokens; the model reads at most {limit}: give a shorter text")

    name = f"blocks.{args.layer}.attn.hook_pattern"
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([ids]), names_filter=name)
    pattern = cache[name][0]  # (nh, T, T): query rows, key columns
    heads = pattern.shape[0]
    if args.head is not None:
        if args.head >= heads:
            raise ValueError(f"--head {args.head} is out of range: layer {args.layer} has {heads} heads "
                             f"(0 to {heads - 1})")
        pattern = pattern[args.head]  # (T, T)
    tokens = [tok.decode([i]) for i in ids]
    which = f"layer {args.layer}" + (f", head {args.head}" if args.head is not None else f", heads 0-{heads - 1}")

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent that is a file, a folder without write permission...
        raise OSError(f"--out {out}: cannot make the folder ({e.strerror or e})") from None
    written = [plot_attention(pattern, tokens, out / f"attention_L{args.layer}.png", title=f"attention, {which}")]
    if importlib.util.find_spec("circuitsvis") is not None:
        written.append(attention_html(pattern, tokens, out / f"attention_L{args.layer}.html"))
    else:
        print("no HTML view: circuitsvis is not installed (pip install -e '.[interp]')")
    for path in written:
        print(path)
    return 0


def register(subparsers) -> None:
    interp = subparsers.add_parser("interp", help="look inside a model: pictures of its attention (see: mlab-tfs "
                                                  "interp --help)",
                                   description="Look inside a model; `mlab-tfs interp COMMAND --help` says what "
                                               "each command takes.")
    commands = interp.add_subparsers(dest="interp_command", required=True, metavar="COMMAND")
    a = commands.add_parser("attention", help="draw one layer's attention pattern on a text as a PNG (and an "
                                              "interactive HTML view where circuitsvis is installed)")
    a.add_argument("text", help="the text whose tokens the pattern is over")
    a.add_argument("--layer", type=number(int, 0), required=True,
                   help="which layer's attention, from 0 (default: none, it must be given)")
    a.add_argument("--head", type=number(int, 0), default=None,
                   help="draw only this head, from 0 (default: every head of the layer, in a grid)")
    a.add_argument("--model", default=None, metavar="FOLDER",
                   help="a GPT-2 or Llama folder, read with its own tokenizer (default: the course model, "
                        "mlab_tfs/training/model)")
    a.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="the folder to write attention_L<layer>.png and .html into, made if missing "
                        "(default: %(default)s)")
    a.set_defaults(func=_attention)
