"""Every model's forward speaks transformers' API the same way: the arguments both have come
in transformers' order (so a positional call means the same thing), except that the course's
decoders take ``(input_ids, attention_mask, position_ids, past_key_values, ...)`` (the order
every part's guide and the samplers use; transformers' GPT-2 puts the cache second), and each of
output_attentions / output_hidden_states asks for its own output alone, equal to
transformers' (fp32, 1e-5)."""

from __future__ import annotations

import inspect

import pytest
import torch
import transformers

from mlab_tfs.bert import solution as bert
from mlab_tfs.deberta import solution as deberta
from mlab_tfs.testing.tiny import deberta_checkpoint
from mlab_tfs.gpt2 import solution as gpt2
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close

PAIRS = [
    (gpt2.GPT2Model, transformers.GPT2Model), (gpt2.GPT2LMHeadModel, transformers.GPT2LMHeadModel),
    (bert.BertModel, transformers.BertModel), (bert.BertForMaskedLM, transformers.BertForMaskedLM),
    (bert.BertForSequenceClassification, transformers.BertForSequenceClassification),
    (deberta.DebertaV2Model, transformers.DebertaV2Model),
    (deberta.DebertaV2ForMaskedLM, transformers.DebertaV2ForMaskedLM),
]
# transformers 5 calls the cache argument ``cache`` (``past_key_values`` still accepted) and
# keeps output_attentions / output_hidden_states, in that order, in its kwargs where it
# does not list them (TransformersKwargs; DebertaV2Model lists them in that order).
RENAMED = {"cache": "past_key_values"}
FLAGS = ["output_attentions", "output_hidden_states"]
DECODER_ORDER = ["input_ids", "attention_mask", "position_ids", "past_key_values"]


def _params(fn) -> list[str]:
    return [RENAMED.get(n, n) for n, p in inspect.signature(fn).parameters.items()
            if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL, p.KEYWORD_ONLY)]


@pytest.mark.parametrize("ours", [p[0] for p in PAIRS], ids=[p[0].__name__ for p in PAIRS])
def test_forward_takes_inputs_embeds_and_return_dict_by_keyword(ours):
    """Keyword-only (mlab_tfs.surface), so no positional call can mean another argument; input_ids
    optional, as transformers' (inputs_embeds may come instead)."""
    params = inspect.signature(ours.forward).parameters
    for name in ("inputs_embeds", "return_dict"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY and params[name].default is None
    assert params["input_ids"].default is None


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_forward_arguments_come_in_transformers_order(ours, theirs):
    mine, hf = _params(ours.forward), _params(theirs.forward)
    hf = hf + [f for f in FLAGS if f not in hf]
    if "past_key_values" in mine:  # a decoder: the course's order for the first four
        assert mine[:4] == DECODER_ORDER, f"{ours.__name__}.forward starts {mine[:4]}, expected {DECODER_ORDER}"
        mine, hf = [n for n in mine if n != "past_key_values"], [n for n in hf if n != "past_key_values"]
    shared = [n for n in mine if n in hf]
    assert shared == [n for n in hf if n in mine], f"{ours.__name__}.forward: {mine} vs transformers' {hf}"
    assert mine[0] == "input_ids" and set(FLAGS) <= set(mine)


def _models(kind, folder):
    if kind == "gpt2":
        return gpt2.GPT2LMHeadModel.from_pretrained(folder), tiny.hf_gpt2(folder)
    if kind == "bert":
        return bert.BertForMaskedLM.from_pretrained(folder), tiny.hf_bert(folder, head="mlm")
    hf = transformers.DebertaV2ForMaskedLM.from_pretrained(folder, dtype=torch.float32).eval()
    return deberta.DebertaV2ForMaskedLM.from_pretrained(folder), hf


@pytest.mark.parametrize("kind", ["gpt2", "bert", "deberta"])
@pytest.mark.parametrize("flag", FLAGS)
def test_each_output_flag_asks_for_its_own_output(tmp_path, kind, flag):
    if kind == "gpt2":
        folder = tiny.gpt2_checkpoint(tmp_path, "base", seed=0)
    elif kind == "bert":
        folder = tiny.bert_checkpoint(tmp_path, "base", seed=0, head="mlm")
    else:
        folder = deberta_checkpoint(tmp_path, "v3", seed=0)
    ours, hf = _models(kind, folder)
    ours.eval()
    ids = torch.randint(1, ours.config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(0))
    out, expected = ours(ids, **{flag: True}), hf(ids, **{flag: True})
    other = "attentions" if flag == "output_hidden_states" else "hidden_states"
    mine = "hidden_states" if flag == "output_hidden_states" else "attentions"
    assert getattr(out, other) is None, f"{flag}=True alone also returned {other}"
    assert len(getattr(out, mine)) == len(getattr(expected, mine))
    for i, (a, b) in enumerate(zip(getattr(out, mine), getattr(expected, mine))):
        assert_close(a, b, name=f"{kind} {mine}[{i}]", atol=1e-5)


@pytest.mark.parametrize("name", ["base", "untied_erf_gelu_inverse_layer_scale"])
def test_gpt2_model_loads_and_saves_as_transformers_gpt2_model(tmp_path, name):
    """GPT2Model has from_pretrained / save_pretrained too (GPT2PreTrainedModel, as every
    part's base class): from a GPT2LMHeadModel checkpoint (the head left out) and from a
    GPT2Model one, saved in the layout transformers' GPT2Model reads back."""
    lm_folder = tiny.gpt2_checkpoint(tmp_path / "lm", name, seed=1)
    hf_lm = tiny.hf_gpt2(lm_folder)
    hf_body = hf_lm.transformer
    ids = torch.randint(0, hf_lm.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(1))
    expected = hf_body(ids).last_hidden_state
    ours = gpt2.GPT2Model.from_pretrained(lm_folder).eval()
    assert isinstance(ours, gpt2.GPT2PreTrainedModel) and issubclass(gpt2.GPT2LMHeadModel, gpt2.GPT2PreTrainedModel)
    assert_close(ours(ids).last_hidden_state, expected, name=f"{name}: GPT2Model from an LM checkpoint", atol=1e-5)
    ours.save_pretrained(tmp_path / "ours")
    back, info = transformers.GPT2Model.from_pretrained(tmp_path / "ours", attn_implementation="eager",
                                                        output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert_close(back.eval()(ids).last_hidden_state, expected, name=f"{name}: saved GPT2Model in transformers",
                 atol=1e-5)
    hf_body.save_pretrained(tmp_path / "body")  # a GPT2Model checkpoint
    again = gpt2.GPT2Model.from_pretrained(tmp_path / "body").eval()
    assert_close(again(ids).last_hidden_state, expected, name=f"{name}: GPT2Model from a GPT2Model checkpoint",
                 atol=1e-5)


def test_a_positional_mask_is_the_attention_mask(tmp_path):
    """model(ids, mask) means attention_mask in every model, as in the course's earlier API
    and the samplers' calls (transformers' GPT-2 would read the mask as a cache)."""
    folder = tiny.gpt2_checkpoint(tmp_path / "gpt2", "base")
    model = gpt2.GPT2LMHeadModel.from_pretrained(folder).eval()
    ids, mask, _ = tiny.left_padded_batch(model.config.vocab_size, [5, 3])
    with torch.no_grad():
        assert torch.equal(model(ids, mask).logits, model(ids, attention_mask=mask).logits)
        assert torch.equal(model.transformer(ids, mask).last_hidden_state,
                           model.transformer(ids, attention_mask=mask).last_hidden_state)
