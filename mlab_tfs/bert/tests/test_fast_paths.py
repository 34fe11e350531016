"""The solution's fast path (attn_implementation="sdpa") equals the hand-written one."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.bert import solution
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.tiny import BERT_CONFIGS

from .helpers import batch

pytestmark = pytest.mark.solution_only


@pytest.mark.parametrize("name", list(BERT_CONFIGS))
def test_sdpa_equals_eager_outputs_and_gradients(checkpoint, name):
    folder = checkpoint(name, "mlm")
    eager = solution.BertForMaskedLM.from_pretrained(folder)
    sdpa = solution.BertForMaskedLM.from_pretrained(folder, attn_implementation="sdpa")
    assert sdpa.config.attn_implementation == "sdpa"
    ids, mask, types, _ = batch(eager.config, seed=10)
    mask[3] = 0  # an all-padding row: the finfo.min mask gives it the same uniform pattern on both paths
    labels = ids.masked_fill(mask == 0, -100)
    kwargs = dict(attention_mask=mask, token_type_ids=types, labels=labels)
    a, b = eager(ids, **kwargs), sdpa(ids, **kwargs)
    assert_close(b.logits, a.logits, name="sdpa logits (padding included)", atol=1e-5)
    assert_close(b.loss, a.loss, name="sdpa loss", atol=1e-6)
    a.loss.backward()
    b.loss.backward()
    assert_grads_close({n: p.grad for n, p in sdpa.named_parameters() if not n.endswith("key.bias")},
                       {n: p.grad for n, p in eager.named_parameters() if not n.endswith("key.bias")}, rtol=1e-5)


def test_sdpa_falls_back_for_attention_patterns(checkpoint):
    folder = checkpoint("base", "model")
    eager = solution.BertModel.from_pretrained(folder)
    sdpa = solution.BertModel.from_pretrained(folder, attn_implementation="sdpa")
    ids = torch.randint(0, 99, (1, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        for i, (x, y) in enumerate(zip(eager(ids, output_attentions=True).attentions,
                                       sdpa(ids, output_attentions=True).attentions)):
            assert_close(y, x, name=f"sdpa attentions[{i}]", atol=0)
