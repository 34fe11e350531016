"""The shared masked-LM loss and output (BERT's and DeBERTa's MLM heads)."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.losses import masked_lm_output, mlm_loss
from mlab_tfs.outputs import BaseModelOutput


def _batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, generator=g)
    labels = torch.tensor([[1, -100, 4, 0], [-100, -100, 2, 3]])
    return logits, labels


def test_mlm_loss_is_the_mean_over_labelled_positions_without_shift():
    logits, labels = _batch()
    kept = [(b, t) for b in range(2) for t in range(4) if labels[b, t] != -100]
    by_hand = -sum(torch.log_softmax(logits[b, t], -1)[labels[b, t]] for b, t in kept) / len(kept)
    torch.testing.assert_close(mlm_loss(logits, labels), by_hand, rtol=0, atol=1e-6)
    # half-precision logits: the loss is taken in fp32
    half = mlm_loss(logits.bfloat16(), labels)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, mlm_loss(logits.bfloat16().float(), labels), rtol=0, atol=0)


def test_masked_lm_output_carries_the_body_and_checks_labels():
    logits, labels = _batch()
    hidden, attn = (torch.zeros(2, 4, 3),), (torch.ones(2, 1, 4, 4),)
    body = BaseModelOutput(last_hidden_state=hidden[0], hidden_states=hidden, attentions=attn)
    out = masked_lm_output(body, logits, labels.int())  # any integer dtype
    assert out.logits is logits and out.hidden_states is hidden and out.attentions is attn
    torch.testing.assert_close(out.loss, mlm_loss(logits, labels), rtol=0, atol=0)
    assert masked_lm_output(body, logits, None).loss is None
    for bad, words in [(labels[:, :3], "shape"), (labels.float(), "integer"), (labels.clamp(min=5), r"\[0, 5\)")]:
        with pytest.raises(ValueError, match=f"labels.*{words}"):
            masked_lm_output(body, logits, bad)
