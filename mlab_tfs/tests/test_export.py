"""The models export as they are: ``torch.export.export`` of each model class, and ONNX
(``torch.onnx.export(..., dynamo=True)``) of GPT-2 and BERT, with the exported program's
outputs equal to eager's (fp32, 1e-5) on inputs other than the ones traced. This needs the
outputs to be registered pytrees (mlab_tfs.outputs) and the value-reading input checks to
step aside while exporting (mlab_tfs.inputs._check_values)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils import _pytree

from mlab_tfs.bert import solution as bert
from mlab_tfs.deberta import solution as deberta
from mlab_tfs.gpt2 import solution as gpt2
from mlab_tfs.llama import solution as llama
from mlab_tfs.outputs import BaseModelOutput, CausalLMOutput, MaskedLMOutput, ModelOutput, SequenceClassifierOutput
from mlab_tfs.testing import tiny
from mlab_tfs.testing.plugin import under_test
from mlab_tfs.testing.compare import assert_close

CASES = {
    "gpt2_lm": (gpt2.GPT2LMHeadModel, lambda root: tiny.gpt2_checkpoint(root, "base")),
    "bert_mlm": (bert.BertForMaskedLM, lambda root: tiny.bert_checkpoint(root, "base", head="mlm")),
    "bert_classifier": (bert.BertForSequenceClassification,
                        lambda root: tiny.bert_checkpoint(root, "base", head="classifier")),
    "deberta_mlm": (deberta.DebertaV2ForMaskedLM, lambda root: tiny.deberta_checkpoint(root, "v3")),
    "gpt2_body": (gpt2.GPT2Model, lambda root: tiny.gpt2_checkpoint(root, "deep_narrow_heads")),
    "bert_body": (bert.BertModel, lambda root: tiny.bert_checkpoint(root, "base")),
    "deberta_body": (deberta.DebertaV2Model, lambda root: tiny.deberta_checkpoint(root, "v2_conv")),
    "llama_lm": (llama.LlamaForCausalLM, lambda root: tiny.llama_checkpoint(root, "llama/llama3_rope_head_dim")),
    "qwen3_lm": (llama.LlamaForCausalLM, lambda root: tiny.llama_checkpoint(root, "qwen3/qk_norm")),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory, pytestconfig):
    root = tmp_path_factory.mktemp("export")
    return {name: under_test(pytestconfig, cls).from_pretrained(make(root / name)).eval()
            for name, (cls, make) in CASES.items()}


def _batch(model, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (2, 6) and a mask with the second row's last two positions padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, model.config.vocab_size, (2, 6), generator=g)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    return ids, mask


def _assert_same_output(got: ModelOutput, expected: ModelOutput, name: str) -> None:
    assert type(got) is type(expected), f"{name}: {type(got).__name__}, eager {type(expected).__name__}"
    assert got.keys() == expected.keys(), f"{name}: keys {got.keys()}, eager {expected.keys()}"
    for key in expected.keys():
        assert_close(got[key], expected[key], name=f"{name} {key}", atol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_torch_export_runs_like_eager(models, name):
    model = models[name]
    ids, mask = _batch(model, 0)
    with torch.no_grad():
        program = torch.export.export(model, (ids,), kwargs={"attention_mask": mask})
        # Other ids and another padding pattern, of the traced shape: nothing was baked in.
        ids2, mask2 = _batch(model, 1)
        mask2[0, 3:] = 0
        got = program.module()(ids2, attention_mask=mask2)
        expected = model(ids2, attention_mask=mask2)
    _assert_same_output(got, expected, f"{name} exported")


def test_torch_export_returns_the_cache(models):
    """use_cache=True: the KVCache is a pytree too (as transformers' Cache), so the exported
    program returns one holding eager's keys and values, which the next step can take."""
    model = models["gpt2_lm"]
    ids, _ = _batch(model, 5)
    with torch.no_grad():
        program = torch.export.export(model, (ids,), kwargs={"use_cache": True})
        got, expected = program.module()(ids, use_cache=True), model(ids, use_cache=True)
        assert type(got.past_key_values) is type(expected.past_key_values)
        for i, (a, b) in enumerate(zip(got.past_key_values.to_legacy_cache(), expected.past_key_values.to_legacy_cache())):
            assert_close(a[0], b[0], name=f"exported keys[{i}]", atol=1e-5)
            assert_close(a[1], b[1], name=f"exported values[{i}]", atol=1e-5)
        step = ids[:, :1]
        assert_close(model(step, past_key_values=got.past_key_values).logits,
                     model(step, past_key_values=expected.past_key_values).logits, name="next step", atol=1e-5)


def test_torch_export_takes_inputs_embeds(models):
    model = models["gpt2_lm"]
    ids, _ = _batch(model, 4)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
        program = torch.export.export(model, (), kwargs={"inputs_embeds": embeds})
        other = embeds.flip(0)
        _assert_same_output(program.module()(inputs_embeds=other), model(inputs_embeds=other), "exported, embeds")


def test_torch_export_keeps_the_optional_outputs(models):
    """hidden_states and attentions (tuples of tensors) come back through the pytree too."""
    model = models["bert_mlm"]
    ids, mask = _batch(model, 2)
    kwargs = dict(attention_mask=mask, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        program = torch.export.export(model, (ids,), kwargs=kwargs)
        got, expected = program.module()(ids, **kwargs), model(ids, **kwargs)
    assert got.keys() == ["logits", "hidden_states", "attentions"] == expected.keys()
    assert len(got.hidden_states) == model.config.num_hidden_layers + 1
    for key in ("hidden_states", "attentions"):
        for i, (a, b) in enumerate(zip(got[key], expected[key])):
            assert_close(a, b, name=f"exported {key}[{i}]", atol=1e-5)


def _onnx_outputs(model, inputs: dict[str, torch.Tensor], run_on: dict[str, torch.Tensor]):
    from onnx.reference import ReferenceEvaluator

    with torch.no_grad():
        program = torch.onnx.export(model, (), kwargs=inputs, dynamo=True, verbose=False)
    proto = program.model_proto
    assert [i.name for i in proto.graph.input] == list(inputs)
    return ReferenceEvaluator(proto).run(None, {k: v.numpy() for k, v in run_on.items()})


@pytest.mark.parametrize("name", ["gpt2_lm", "bert_mlm"])
def test_onnx_export_runs_like_eager(models, name):
    """The graph run by onnx's reference evaluator (onnxruntime is not installed here) on new
    inputs gives eager's logits."""
    pytest.importorskip("onnxscript")
    model = models[name]
    ids, mask = _batch(model, 0)
    ids2, mask2 = _batch(model, 3)
    mask2[0, 5:] = 0
    outputs = _onnx_outputs(model, dict(input_ids=ids, attention_mask=mask), dict(input_ids=ids2, attention_mask=mask2))
    with torch.no_grad():
        expected = model(ids2, attention_mask=mask2).logits
    assert len(outputs) == 1  # the set fields only: None leaves are no graph outputs
    assert_close(torch.from_numpy(outputs[0]), expected, name=f"{name} ONNX logits", atol=1e-5)


# ---------------------------------------------------------------------------------------
# The pytree registration itself
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [BaseModelOutput, CausalLMOutput, MaskedLMOutput, SequenceClassifierOutput])
def test_every_output_class_round_trips_through_the_pytree(cls):
    names = [f.name for f in dataclasses.fields(cls)]
    values = {n: torch.full((1,), float(i)) for i, n in enumerate(names) if i % 2 == 0}  # every other field set
    out = cls(**values)
    out["extra"] = torch.tensor([7.0])  # a key that is not a field, as transformers allows
    leaves, spec = _pytree.tree_flatten(out)
    # Every field in field order (an unset one as a None leaf), then the extra keys.
    assert [None if x is None else float(x) for x in leaves] == [
        float(values[n]) if n in values else None for n in names] + [7.0]
    back = _pytree.tree_unflatten([None if x is None else x + 1 for x in leaves], spec)
    assert type(back) is cls and back.keys() == out.keys()
    for key in out.keys():
        assert torch.equal(back[key], out[key] + 1)
    paths = [_pytree.keystr(path) for path, _ in _pytree.tree_flatten_with_path(out)[0]]
    assert paths == [f".{n}" for n in names] + [".extra"]
