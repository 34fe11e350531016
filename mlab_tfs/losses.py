"""The masked-language-modelling loss and output, shared by the encoders' MLM heads
(BERT's exercise 8 writes ``mlm_loss``; DeBERTa's given DebertaV2ForMaskedLM uses it).

Source: transformers' ``BertForMaskedLM.forward`` / ``DebertaV2ForMaskedLM.forward``
(``CrossEntropyLoss()`` on the flattened logits, -100 ignored, no shift).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlab_tfs.inputs import check_labels
from mlab_tfs.outputs import BaseModelOutput, MaskedLMOutput

Tensor = torch.Tensor


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the positions whose label is not -100. No shift: position t
    predicts its own (masked) token. logits (B, T, V) in any float dtype (the loss is taken
    in fp32), labels (B, T) long. Returns a scalar."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def masked_lm_output(body: BaseModelOutput, logits: Tensor, labels: Tensor | None) -> MaskedLMOutput:
    """A masked-LM head's output: logits (B, T, V), the body's hidden_states and attentions,
    and, given labels (B, T), their ``mlm_loss``. labels must be integer ids in [0, V) or
    -100, shaped (B, T): otherwise a ValueError naming ``labels``."""
    loss = None
    if labels is not None:
        labels = check_labels("labels", labels, tuple(logits.shape[:-1]), logits.shape[-1])
        loss = mlm_loss(logits, labels)
    return MaskedLMOutput(loss=loss, logits=logits, hidden_states=body.hidden_states, attentions=body.attentions)
