"""Exercise 9 of the Llama part: LlamaModel and LlamaForCausalLM against transformers' on the
tiny checkpoints (the weights copied with the solution's name map, so that these tests don't
depend on exercise 10): logits and loss within 1e-5, gradients 1e-4 relative, left padding
with position_ids, and decoding with the cache equal to one pass. A failure names the
catalogued mistake it matches."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from mlab_tfs.llama import solution
from mlab_tfs.llama.mistakes import MISTAKES as M
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.mistakes import likely
from mlab_tfs.testing.tiny import left_padded_batch

from . import reference as ref
from .helpers import GQA, LLAMA3, QWEN3, QWEN3_TIED, TIED, hf_grads_as_ours, random_ids


def _ours(llama, hf):
    config = ref.config_of(hf)
    model = llama.LlamaForCausalLM(config)
    model.load_state_dict(solution.from_hf_state_dict(hf.state_dict(), config))
    return model.eval()


@contextmanager
def _without_final_norm(hf):
    norm = hf.model.norm
    hf.model.norm = nn.Identity()
    try:
        yield
    finally:
        hf.model.norm = norm


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", [GQA, TIED])
def test_head_tied_as_configured(llama, hf_models, name):
    config = ref.config_of(hf_models[name])
    model = llama.LlamaForCausalLM(config)
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    if config.tie_word_embeddings:
        assert tied, ("with tie_word_embeddings the head is the embedding: self.lm_head.weight = "
                      "self.model.embed_tokens.weight, one Parameter")
    else:
        assert not tied, (f"tie_word_embeddings is False: lm_head has its own weight\n  {likely(M['head_always_tied'])}")
    assert tuple(model.lm_head.weight.shape) == (config.vocab_size, config.hidden_size)
    assert model.lm_head.bias is None, "lm_head has no bias (nn.Linear(C, V, bias=False))"


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", [GQA, LLAMA3, TIED, QWEN3])
def test_logits_and_loss(llama, hf_models, name):
    hf = hf_models[name]
    ours = _ours(llama, hf)
    ids = random_ids(hf.config.vocab_size)
    with torch.no_grad():
        expected = hf(ids, labels=ids)
        with _without_final_norm(hf):
            no_norm = hf(ids).logits
        actual = ours(ids, labels=ids)
    assert_close(actual.logits, expected.logits, name=f"{name} logits", atol=1e-5,
                 mistakes={M["no_final_norm"]: no_norm},
                 hint="embed_tokens, the layers with one cos/sin for all of them, norm, lm_head")
    assert_close(actual.loss, expected.loss, name=f"{name} loss", atol=1e-5,
                 hint="your GPT-2 lm_loss: logits at t against labels at t + 1")


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", [TIED, QWEN3_TIED])
def test_gradients(llama, hf_models, name):
    hf = hf_models[name]
    ours = _ours(llama, hf)
    ids = random_ids(hf.config.vocab_size, seed=1)
    ours(ids, labels=ids).loss.backward()
    hf.zero_grad()
    hf(ids, labels=ids).loss.backward()
    assert_grads_close({n: p.grad for n, p in ours.named_parameters()},
                       hf_grads_as_ours(hf, ours.config.tie_word_embeddings), rtol=1e-4)
    hf.zero_grad()


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_given_position_ids_are_used(llama, hf_models, name):
    """Two documents packed in one row, positions restarting at the second (0..4, 0..3): not a
    shift of the default 0..8, so the logits differ from the default's (by about 1.9 here)."""
    hf = hf_models[name]
    ours = _ours(llama, hf)
    ids = random_ids(hf.config.vocab_size, shape=(1, 9), seed=4)
    pos = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]])
    with torch.no_grad():
        expected, ignored = hf(ids, position_ids=pos).logits, hf(ids).logits
        actual = ours(ids, position_ids=pos).logits
    assert_close(actual, expected, name=f"{name} logits with given position_ids", atol=1e-5,
                 mistakes={M["position_ids_ignored"]: ignored},
                 hint="use the given position_ids (the default P .. P + T - 1 only when none are given)")


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_left_padding_with_position_ids(llama, hf_models, name):
    """Left-padded rows with position_ids counted over the real tokens: every real position's
    logits as transformers' (its eager padding rows differ by design: they see no key)."""
    hf = hf_models[name]
    ours = _ours(llama, hf)
    ids, mask, pos = left_padded_batch(hf.config.vocab_size, [8, 5, 2], seed=2)
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, position_ids=pos).logits
        ignored = hf(ids, attention_mask=mask).logits  # positions 0 .. T - 1 whatever the padding
        actual = ours(ids, attention_mask=mask, position_ids=pos).logits
    real = mask.bool()
    assert_close(actual[real], expected[real], name=f"{name} left-padded logits (real tokens)", atol=1e-5,
                 mistakes={M["position_ids_ignored"]: ignored[real]},
                 hint="the mask (B, 1, T, S) = causal & the padding mask over the keys (pad[:, None, None, :]), "
                      "and the given position_ids used as they are")


@pytest.mark.exercise("model")
@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_decoding_with_the_cache_equals_one_pass(llama, hf_models, name):
    """6 tokens, then 1, then 2 with the cache: the logits of one pass over the 9."""
    hf = hf_models[name]
    ours = _ours(llama, hf)
    ids = random_ids(hf.config.vocab_size, seed=3)
    with torch.no_grad():
        expected = hf(ids).logits
        first = hf(ids[:, :6], use_cache=True)
        second = hf(ids[:, 6:7], past_key_values=first.past_key_values, position_ids=torch.tensor([[0]]),
                    use_cache=True)
        third = hf(ids[:, 7:], past_key_values=second.past_key_values, position_ids=torch.arange(2)[None])
        restarted = torch.cat([first.logits, second.logits, third.logits], 1)
        out = ours(ids[:, :6], use_cache=True)
        logits = [out.logits]
        for chunk in (ids[:, 6:7], ids[:, 7:]):
            out = ours(chunk, past_key_values=out.past_key_values, use_cache=True)
            logits.append(out.logits)
    assert_close(torch.cat(logits, 1), expected, name=f"{name} logits decoded with the cache", atol=1e-5,
                 mistakes={M["positions_restart_after_cache"]: restarted},
                 hint="position_ids default to P .. P + T - 1, P = past_key_values.get_seq_length()")


@pytest.mark.exercise("model")
def test_hidden_states_and_attentions(llama, hf_models):
    """num_hidden_layers + 1 hidden states (each layer's input, then the final norm's output) and
    one pattern per layer, as transformers' output_hidden_states / output_attentions."""
    hf = hf_models[GQA]
    ours = _ours(llama, hf)
    ids = random_ids(hf.config.vocab_size, shape=(2, 6), seed=5)
    with torch.no_grad():
        e = hf(ids, output_hidden_states=True, output_attentions=True)
        a = ours(ids, output_hidden_states=True, output_attentions=True)
    L = hf.config.num_hidden_layers
    got = None if a.hidden_states is None else len(a.hidden_states)
    assert got == L + 1, (f"hidden_states should hold num_hidden_layers + 1 = {L + 1} tensors (each layer's input, "
                          f"then the final norm's output, as transformers), got {got}")
    for i, (x, y) in enumerate(zip(a.hidden_states, e.hidden_states)):
        assert_close(x, y, name=f"hidden_states[{i}]", atol=1e-5,
                     hint="the layers' hook_resid_pre, then norm's output last (last_hidden_state)")
    got = None if a.attentions is None else len(a.attentions)
    assert got == L, f"attentions should hold one (B, nh, T, S) pattern per layer ({L}), got {got}"
    for i, (x, y) in enumerate(zip(a.attentions, e.attentions)):
        assert_close(x, y, name=f"attentions[{i}]", atol=1e-5, hint="each layer's self_attn.hook_pattern")


@pytest.mark.exercise("model")
def test_final_norm_reads_rms_norm_eps(llama, hf_models):
    """The eps of the tiny checkpoints is too small to show in the logits: read it directly."""
    config = dataclasses.replace(ref.config_of(hf_models[GQA]), rms_norm_eps=0.25)
    model = llama.LlamaModel(config)
    assert model.norm.eps == 0.25, (f"LlamaModel.norm should be RMSNorm(C, eps=config.rms_norm_eps) (0.25 here), "
                                    f"has eps {model.norm.eps}")
