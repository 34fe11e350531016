"""Helpers of the BERT tests."""

from __future__ import annotations


import torch

from mlab_tfs.bert import solution
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.shortcuts import additive, no_shortcuts, shortcuts
from mlab_tfs.testing.tiny import load_submodule, padded_bert_batch

HEAD_OF_TARGET = {"model": "model", "mlm": "mlm", "classifier": "classifier"}


def config_of(hf_model) -> solution.BertConfig:
    """Our config of a transformers BERT, on the hand-written attention path: the exercises'
    tests forbid F.scaled_dot_product_attention (the sdpa path, the default, is tested in
    test_fast_paths.py)."""
    return solution.BertConfig.from_dict({**hf_model.config.to_dict(), "attn_implementation": "eager"})


def load_into(module: torch.nn.Module, hf_model, target: str = "model", prefix: str = "") -> torch.nn.Module:
    """Copy a transformers BERT's weights into one of our modules (prefix picks a submodule).

    Uses the solution's name map, so component and model tests don't depend on the
    loading exercise. Keys the module doesn't have (a pooler, another head) are left out;
    the load is strict, so every key it has must come from the checkpoint.
    """
    ours = solution.from_hf_state_dict(hf_model.state_dict(), config_of(hf_model), target)
    return load_submodule(module, ours, prefix, only_its_keys=True)


def hf_grads_as_ours(hf_model, ours: torch.nn.Module, target: str) -> dict[str, torch.Tensor | None]:
    """transformers' parameter gradients under our names, for the parameters ours has.

    A tied decoder is one parameter, listed once by named_parameters (as the word embedding).
    """
    grads = solution.from_hf_state_dict({n: p.grad for n, p in hf_model.named_parameters()}, config_of(hf_model),
                                        target)
    names = {n for n, _ in ours.named_parameters()}
    return {k: v for k, v in grads.items() if k in names}


def assert_bert_grads_close(ours: torch.nn.Module, expected: dict[str, torch.Tensor | None], **kwargs) -> None:
    """Every gradient within 1e-5 relative (assert_grads_close), except the key biases.

    A key bias adds q . b_k to every score of a query's row, and softmax ignores a shift
    shared by a whole row: its true gradient is exactly 0, and both implementations hold
    only rounding noise (measured on MiniLM: up to ~4e-6 in fp32), whose relative error means nothing. Those must be
    ~0 in absolute terms instead.
    """
    __tracebackhide__ = True  # failures point at the test's line
    actual = {n: p.grad for n, p in ours.named_parameters()}
    for name in [n for n in expected if n.endswith("self.key.bias")]:
        for who, g in (("yours", actual.pop(name, None)), ("reference", expected.pop(name))):
            if g is not None:
                assert float(g.abs().max()) < 1e-4, (
                    f"{name}: {who} gradient is {float(g.abs().max()):.3g}, but a key bias cannot change a softmax "
                    f"over keys (it shifts a whole row): it should be ~0"
                )
    assert_grads_close(actual, expected, **kwargs)


def batch(cfg, lengths=(7, 3, 5, 1), seed: int = 0):
    """A right-padded batch with token types: (input_ids, attention_mask, token_type_ids, real positions)."""
    ids, mask, types = padded_bert_batch(cfg.vocab_size, list(lengths), cfg.type_vocab_size, cfg.pad_token_id or 0,
                                         seed)
    return ids, mask, types, mask.bool()


__all__ = ["assert_close", "assert_bert_grads_close", "batch", "config_of", "hf_grads_as_ours", "load_into",
           "no_shortcuts", "shortcuts", "additive", "HEAD_OF_TARGET"]
