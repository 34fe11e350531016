"""torch.compile of our BERT equals the uncompiled model, forward and backward, on both
attention paths, with right padding and an all-padding sequence (whose queries see no key).
A one-layer, 16-wide model and one batch per path: compiling on a CPU takes seconds."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.bert import solution
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close

from .helpers import assert_bert_grads_close, batch

pytestmark = pytest.mark.solution_only

TINIEST = dict(vocab_size=31, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
               max_position_embeddings=16)


@pytest.fixture(scope="module")
def tiniest(tmp_path_factory):
    return tiny.bert_checkpoint(tmp_path_factory.mktemp("bert_tiniest"), "base", seed=7, head="mlm", **TINIEST)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_compiled_equals_uncompiled_forward_and_backward(tiniest, attn):
    model = solution.BertForMaskedLM.from_pretrained(tiniest, attn_implementation=attn)
    ids, mask, types, _ = batch(model.config, lengths=(6, 2, 4), seed=8)
    mask[1] = 0
    g = torch.randn(*ids.shape, TINIEST["vocab_size"], generator=torch.Generator().manual_seed(9))
    results = []
    torch._dynamo.reset()
    for forward in (model, torch.compile(model)):
        model.zero_grad(set_to_none=True)
        logits = forward(ids, attention_mask=mask, token_type_ids=types).logits
        (logits * g).sum().backward()  # every position, the all-padding sequence included
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (logits, grads), (c_logits, _) = results
    assert_close(c_logits, logits, name=f"compiled BERT logits ({attn}), padding included", atol=1e-5)
    # The model's .grad now holds the compiled run's gradients.
    assert_bert_grads_close(model, grads, rtol=1e-4, what=f"compiled BERT gradient ({attn})")
