"""The weight initialisation every part's ``init_<part>_weights`` starts from: transformers'
``PreTrainedModel._init_weights`` for GPT-2, BERT and DeBERTa (``models/*/modeling_*.py``).
"""

from __future__ import annotations

import torch
from torch import nn


def init_normal_weights(model: nn.Module, std: float) -> None:
    """In place: N(0, std) weights of every nn.Linear, nn.Conv1d and embedding table, zero
    biases of the Linear and Conv1d layers, and the padding row of a table with a
    ``padding_idx`` at zero. Layer norms keep their construction values (1 and 0). A table
    is a module called ``Embedding`` or having a ``padding_idx`` (torch's, GPT-2's solution,
    a learner's own), with a ``weight`` Parameter. Draws in ``model.modules()`` order."""
    for module in model.modules():
        is_table = (type(module).__name__ == "Embedding" or hasattr(module, "padding_idx")) and isinstance(
            getattr(module, "weight", None), nn.Parameter)
        is_layer = isinstance(module, (nn.Linear, nn.Conv1d))
        if is_layer or is_table:
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if is_layer and module.bias is not None:
            nn.init.zeros_(module.bias)
        if is_table and getattr(module, "padding_idx", None) is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
