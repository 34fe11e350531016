"""Padding rows of DeBERTa: every padding query is masked as a query too (keep = m_i & m_j), so
it sees no key, and a whole sequence may be padding. transformers' DeBERTa-v2 has one attention
path, eager, which is also its default: ours equals it everywhere, padding positions included,
finite, gradients included. (There is no sdpa path here, in transformers or in ours.)"""

from __future__ import annotations

import pytest
import torch
import transformers

from mlab_tfs.deberta import solution
from mlab_tfs.testing.compare import assert_close

from .helpers import assert_model_grads_close, named_grads, right_padded_batch

pytestmark = pytest.mark.solution_only


@pytest.mark.parametrize("name", ["v3", "v2_conv", "absolute_only"])
def test_all_padding_sequence_equals_transformers_default(checkpoints, name):
    folder = checkpoints[name]
    ours = solution.DebertaV2ForMaskedLM.from_pretrained(folder)
    hf = transformers.DebertaV2ForMaskedLM.from_pretrained(folder, dtype=torch.float32).eval()  # its default path
    assert hf.config._attn_implementation == "eager"
    cfg = ours.config
    ids, mask, types = right_padded_batch(cfg.vocab_size, [7, 3, 5], seed=21, type_vocab_size=cfg.type_vocab_size)
    mask[1] = 0  # a sequence that is all padding
    ids[1] = 0
    kwargs = dict(attention_mask=mask, token_type_ids=None if types is None else types * mask)
    out, expected = ours(ids, **kwargs), hf(ids, **kwargs)
    assert bool(torch.isfinite(out.logits).all()), "non-finite logits with an all-padding sequence"
    assert_close(out.logits, expected.logits, name=f"logits ({name}), padding and the all-padding sequence included",
                 atol=1e-5)
    g = torch.randn(out.logits.shape, generator=torch.Generator().manual_seed(22))  # every position's gradient
    hf.zero_grad()
    (out.logits * g).sum().backward()
    (expected.logits * g).sum().backward()
    grads = named_grads(ours)
    assert all(bool(torch.isfinite(v).all()) for v in grads.values() if v is not None), "non-finite gradients"
    assert_model_grads_close(grads, named_grads(hf), ours.config)



def test_compiled_equals_uncompiled_with_padding(tmp_path):
    """torch.compile of our DeBERTa (relative attention, both terms) equals it uncompiled,
    forward and backward, on a right-padded batch with an all-padding sequence. A one-layer,
    16-wide model: compiling on a CPU takes seconds."""
    from .helpers import deberta_checkpoint

    folder = deberta_checkpoint(tmp_path / "tiniest", "v3", seed=23, hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=24, vocab_size=31)
    model = solution.DebertaV2ForMaskedLM.from_pretrained(folder)
    ids, mask, _ = right_padded_batch(31, [6, 2, 4], seed=24)
    mask[2] = 0
    labels = ids.masked_fill(mask == 0, -100)
    results = []
    torch._dynamo.reset()
    for forward in (model, torch.compile(model, fullgraph=True)):  # fullgraph: the hook points break no graph
        model.zero_grad(set_to_none=True)
        out = forward(ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        results.append((out.logits.detach(), out.loss.detach(), named_grads(model)))
    (logits, loss, grads), (c_logits, c_loss, c_grads) = results
    assert_close(c_logits, logits, name="compiled DeBERTa logits, padding included", atol=1e-5)
    assert_close(c_loss, loss, name="compiled DeBERTa loss", atol=1e-5)
    assert_model_grads_close(c_grads, grads, model.config)
