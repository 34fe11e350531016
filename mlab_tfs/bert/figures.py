"""The BERT guide's figures, drawn from the solution (``python -m mlab_tfs.figures bert``).

The data of each figure comes from a function of its own, which the BERT tests hold
(``mlab_tfs/bert/tests/test_figures_data.py``): the pictures cannot show something the
code does not do.
"""

from __future__ import annotations

import torch

from mlab_tfs.figures import figure

# Two sentences of different lengths, right-padded to the longer one by the WordPiece tokenizer.
SENTENCES = ("a storm at sea", "calm")


def padded_batch() -> tuple[list[list[str]], torch.Tensor, torch.Tensor]:
    """(tokens of each row, input_ids (2, T), attention_mask (2, T)) of SENTENCES through the
    course's WordPiece tokenizer on MiniLM's vocabulary, padded to the longest row."""
    from mlab_tfs.assets import minilm_path
    from mlab_tfs.tokenizers import WordPieceTokenizer

    tok = WordPieceTokenizer.from_pretrained(minilm_path())
    batch = tok(list(SENTENCES), padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    tokens = [tok.convert_ids_to_tokens(row.tolist()) for row in ids]
    return tokens, ids, mask


def padding_mask_grid(attention_mask: torch.Tensor) -> torch.Tensor:
    """The solution's ``padding_mask`` broadcast to what each query may see: bool (B, T, S),
    entry [b, t, s] True when query t of sequence b may attend to key s."""
    from mlab_tfs.bert.solution import padding_mask

    B, T = attention_mask.shape
    return padding_mask(attention_mask).expand(B, 1, T, T)[:, 0]  # (B, T, S)


def padded_pattern(layer: int = 0, head: int = 0) -> tuple[list[str], torch.Tensor]:
    """(tokens, pattern (T, S)) of the padded second sentence in MiniLM (through the solution's
    BertModel, eval mode): the attention pattern of ``layer``'s ``head``, from
    ``blocks.{layer}.attn.hook_pattern``."""
    from mlab_tfs.assets import minilm_path
    from mlab_tfs.bert.solution import BertModel

    tokens, ids, mask = padded_batch()
    model = BertModel.from_pretrained(minilm_path()).eval()
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, attention_mask=mask)
    return tokens[1], cache[f"blocks.{layer}.attn.hook_pattern"][1, head]


@figure("padding_mask")
def draw_padding_mask():
    """Left: what each query of the padded row may see (the solution's padding_mask). Right:
    MiniLM's layer-0 head-0 pattern on that row: padding keys get exactly 0, padding queries
    still attend to the real tokens."""
    import matplotlib.pyplot as plt

    tokens, _, mask = padded_batch()
    grid = padding_mask_grid(mask)[1].float()  # (T, S) of the padded row
    row_tokens, pattern = padded_pattern()
    fig, (ax_mask, ax_pat) = plt.subplots(1, 2, figsize=(7.5, 3.6))
    for ax, data, title, cmap in ((ax_mask, grid, "padding_mask (black: may attend)", "Greys"),
                                  (ax_pat, pattern, "MiniLM layer 0, head 0: pattern", "viridis")):
        im = ax.imshow(data.numpy(), cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks(range(len(row_tokens)), row_tokens, rotation=90, fontsize=8)
        ax.set_yticks(range(len(row_tokens)), row_tokens, fontsize=8)
        ax.set_xlabel("key s")
        ax.set_title(title, fontsize=9)
    ax_mask.set_ylabel("query t")
    fig.colorbar(im, ax=ax_pat, fraction=0.046, pad=0.04)
    fig.suptitle(f"{SENTENCES[1]!r} right-padded to the length of {SENTENCES[0]!r}", fontsize=9)
    fig.tight_layout()
    return fig
