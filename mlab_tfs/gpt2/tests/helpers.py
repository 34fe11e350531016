"""Helpers of the GPT-2 tests."""

from __future__ import annotations

import torch

from mlab_tfs.gpt2 import solution
from mlab_tfs.testing.tiny import load_submodule

TRANSPOSED = solution.TRANSPOSED


def config_of(hf_model) -> solution.GPT2Config:
    return solution.GPT2Config.from_dict(hf_model.config.to_dict())


def load_into(module: torch.nn.Module, hf_model, prefix: str = "") -> torch.nn.Module:
    """Copy a transformers GPT-2's weights into one of our modules (prefix picks a submodule).

    Uses the solution's name map, so component tests don't depend on the loading exercise.
    """
    return load_submodule(module, solution.from_hf_state_dict(hf_model.state_dict(), config_of(hf_model)), prefix)


def hf_grads_as_ours(hf_model) -> dict[str, torch.Tensor | None]:
    """transformers' parameter gradients under our names, Conv1D ones transposed.

    A tied head is one parameter, listed once (as transformer.wte.weight).
    """
    config = config_of(hf_model)
    grads = solution.from_hf_state_dict({n: p.grad for n, p in hf_model.named_parameters()}, config)
    if config.tie_word_embeddings:
        del grads["lm_head.weight"]
    return grads


def keep_mask(attention_mask: torch.Tensor | None, q_len: int, k_len: int) -> torch.Tensor:
    """Reference (B or 1, 1, q_len, k_len) bool mask: causal and not padding."""
    causal = torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)[None, None]
    if attention_mask is None:
        return causal
    return causal & attention_mask.bool()[:, None, None, :]


def hf_default(folder):
    """transformers' GPT2LMHeadModel as ``from_pretrained(folder)`` gives it: its default
    attention path, "sdpa", whose padding queries (no visible key) output zeros. fp32, eval."""
    import transformers

    model = transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
    assert model.config._attn_implementation == "sdpa", "transformers' default GPT-2 attention path changed"
    return model


def zero_blind_rows(pattern: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """transformers' eager pattern with the rows of queries that see no key set to 0, which is
    what its default sdpa path computes (the eager path leaves them uniform over all keys)."""
    return pattern.masked_fill(~keep.any(-1, keepdim=True), 0.0)


def hook_point(module: torch.nn.Module, name: str):
    """module.<name>, which must be a HookPoint the layer's __init__ created."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    from mlab_tfs.hooks import HookPoint

    point = getattr(module, name, None)
    assert isinstance(point, HookPoint), (
        f"{type(module).__name__} has no hook point {name!r}: create it in __init__ with "
        f"self.{name} = HookPoint() (from mlab_tfs.hooks), as the docstring lists"
    )
    return point


def returns_tensor(out, what: str) -> torch.Tensor:
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    assert isinstance(out, torch.Tensor), (
        f"{what} must return one tensor (B, T, C), got {type(out).__name__}: the layers return tensors only; "
        f"attention patterns and hidden states are read through hook points"
    )
    return out


def nearest(actual, *candidates: torch.Tensor) -> torch.Tensor:
    """Of the outputs of one mistake written several ways, the one nearest to actual (same
    shape first): what ``assert_close(mistakes=...)`` compares with."""
    if not isinstance(actual, torch.Tensor):
        return candidates[0]
    a = actual.detach().double()

    def distance(c: torch.Tensor) -> float:
        if c.shape != a.shape:
            return float("inf")
        return float((a - c.detach().double()).abs().nan_to_num(nan=float("inf")).max())

    return min(candidates, key=distance)
