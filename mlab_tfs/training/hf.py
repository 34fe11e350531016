"""Putting our models into transformers' ``Trainer``: the same weights in both, the same data.

Trainer needs nothing special from a model: a ``forward`` that takes the batch's keys as
keyword arguments (``input_ids``, ``attention_mask``, ``labels``) and returns an output whose
``out["loss"]`` (or ``out[0]``) is the loss, and a ``state_dict()`` that safetensors can write
(the tied head appears once in ours). These helpers build twin models and datasets.
"""

from __future__ import annotations

from typing import Any

import torch

Tensor = torch.Tensor


def hf_gpt2_config(**kwargs: Any):
    """A transformers GPT2Config with dropout off (so no random numbers are drawn) unless given.

    bos_token_id and eos_token_id default to the last id, vocab_size - 1: GPT-2's
    <|endoftext|> (50256 of 50257), and where our ByteLevelBPETokenizer.train puts it when it
    is the only special token (511 of 512). transformers' own default, 50256, is past the end
    of a smaller vocabulary.
    """
    import transformers

    last = kwargs.get("vocab_size", transformers.GPT2Config().vocab_size) - 1
    kwargs = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "bos_token_id": last, "eos_token_id": last,
              **kwargs}
    return transformers.GPT2Config(**kwargs)


def twin_gpt2(seed: int = 0, **config: Any):
    """(transformers' GPT2LMHeadModel, our GPT2LMHeadModel) with identical weights.

    transformers' model is built under ``torch.manual_seed(seed)``; ours gets a copy of its
    weights (names mapped, Conv1D weights transposed). Both in train mode, fp32, eager attention.
    """
    import transformers

    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel, from_hf_state_dict

    hf_config = hf_gpt2_config(**config)
    hf_config._attn_implementation = "eager"
    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(hf_config).float().train()
    ours = GPT2LMHeadModel(GPT2Config.from_dict(hf_config.to_dict())).train()
    ours.load_state_dict(from_hf_state_dict({k: v.clone() for k, v in hf.state_dict().items()}, ours.config))
    return hf, ours


def hf_bpe_tokenizer(folder):
    """transformers' fast GPT-2 tokenizer on a folder our ByteLevelBPETokenizer saved, with
    <|endoftext|> as eos and pad (what DataCollatorForLanguageModeling needs to pad and mask).

    Loaded as ``AutoTokenizer.from_pretrained(folder)`` reads it (our save writes the
    tokenizer_config.json it needs), so it has our vocabulary, ids and special tokens.
    transformers 5's GPT2Tokenizer no longer takes ``vocab_file=``/``merges_file=``: given
    them, it builds an empty tokenizer (one token, every text ``[]``) without a word.
    ValueError if the folder's vocabulary has no <|endoftext|> (nothing to pad with);
    TypeError for a folder that is not a path, FileNotFoundError for one that is not a folder
    with tokenizer_config.json (rather than transformers' attempt to download a repo of that name).
    """
    import os
    from pathlib import Path

    from transformers import AutoTokenizer

    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or os.PathLike) to a folder our tokenizer saved, "
                        f"got {type(folder).__name__} {folder!r}")
    path = Path(folder)
    if not path.is_dir() or not (path / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"folder {str(folder)!r} is not a folder with tokenizer_config.json: save the tokenizer "
                                "there first (ByteLevelBPETokenizer.save_pretrained(folder))")
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.eos_token != "<|endoftext|>" or tok.eos_token_id is None:
        raise ValueError(f"{folder}: the tokenizer has no <|endoftext|> token to end and pad texts with "
                         "(train with special_tokens=['<|endoftext|>'])")
    tok.pad_token = tok.eos_token
    return tok


class BlockDataset(torch.utils.data.Dataset):
    """Fixed-length blocks of a token stream as Trainer features: {"input_ids": (T,) long}."""

    def __init__(self, ids: list[int] | Tensor, block_size: int, n_blocks: int | None = None):
        ids = torch.as_tensor(ids, dtype=torch.long)
        n = len(ids) // block_size if n_blocks is None else n_blocks
        if n < 1 or n * block_size > len(ids):
            raise ValueError(f"the token stream has {len(ids)} tokens: too few for {n} blocks of {block_size}")
        self.blocks = ids[: n * block_size].view(n, block_size)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"input_ids": self.blocks[i]}


def causal_lm_collate(features: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack equal-length blocks; the labels are the inputs (the model shifts them)."""
    ids = torch.stack([f["input_ids"] for f in features])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
