"""Test helpers shared by the model parts: "no shortcut" patches and the reference mask."""

from __future__ import annotations

from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

from mlab_tfs.attention import additive_mask


class no_shortcuts:
    """Within the block, calling any of the given (owner, attribute) functions fails the test
    with a message saying that the exercise is to write it by hand."""

    def __init__(self, *targets: tuple[object, str]):
        self.patches = []
        for owner, attr in targets:
            def boom(*args, _name=f"{getattr(owner, '__name__', owner)}.{attr}", **kwargs):
                __tracebackhide__ = True
                raise AssertionError(f"no shortcut: this exercise is about writing {_name} yourself, don't call it")
            self.patches.append(mock.patch.object(owner, attr, boom))

    def __enter__(self):
        for p in self.patches:
            p.start()

    def __exit__(self, *exc):
        for p in self.patches:
            p.stop()


def shortcuts() -> no_shortcuts:
    """Every library function the model exercises ask you to write yourself."""
    return no_shortcuts(
        (F, "layer_norm"), (torch, "layer_norm"), (F, "embedding"), (F, "gelu"),
        (F, "scaled_dot_product_attention"), (nn.MultiheadAttention, "forward"),
    )


def additive(keep: torch.Tensor) -> torch.Tensor:
    """A bool keep-mask as the additive float32 mask transformers' eager attention takes."""
    return additive_mask(keep, torch.float32)
