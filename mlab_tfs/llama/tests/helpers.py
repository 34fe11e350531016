"""Helpers of the Llama tests."""

from __future__ import annotations

import torch

from mlab_tfs.testing import tiny

NAMES = tuple(tiny.LLAMA_FAMILY)
GQA, LLAMA3, TIED, QWEN3, QWEN3_TIED = NAMES


def random_ids(vocab_size: int, shape=(2, 9), seed=0) -> torch.Tensor:
    """Seeded random token ids of the given shape."""
    return torch.randint(0, vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens, padding at 1 (masked: any position would do)."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def pair(llama, checkpoints, hf_models, name, attn_implementation="sdpa"):
    """Ours (from_pretrained, eval) and transformers' model of the checkpoint ``name``."""
    ours = llama.LlamaForCausalLM.from_pretrained(checkpoints[name]).eval()
    ours.set_attn_implementation(attn_implementation)
    return ours, hf_models[name]


def hf_grads_as_ours(hf_model, tied: bool) -> dict[str, torch.Tensor | None]:
    """transformers' parameter gradients under our names (the same names; a tied head listed once)."""
    grads = {n: p.grad for n, p in hf_model.named_parameters()}
    if tied:
        grads.pop("lm_head.weight", None)
    return grads
