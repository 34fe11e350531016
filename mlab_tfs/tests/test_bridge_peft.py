"""peft on our models through as_transformers, with a task_type (CAUSAL_LM, SEQ_CLS,
FEATURE_EXTRACTION), against peft on transformers' model of the same folder carrying the same
LoRA weights: outputs and losses (fp32 1e-5), LoRA gradients (1e-4 relative), a training
step, merge_and_unload (our model runs the merged weights), and adapters saved from ours
loading into transformers' model."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

from mlab_tfs.bridge import as_transformers
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.plugin import load_impl
from mlab_tfs.tests.bridge_cases import CASES, CAUSAL_LMS, batch, ours, theirs, write_checkpoints

# task_type -> (the case, LoRA's target modules, the output a loss is taken of)
TASKS = {
    "CAUSAL_LM": (CASES[1], ["c_attn", "c_proj"], "logits"),
    "SEQ_CLS": (CASES[4], ["query", "value"], "logits"),
    "FEATURE_EXTRACTION": (CASES[2], ["query", "key", "dense"], "last_hidden_state"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_checkpoints(tmp_path_factory.mktemp("bridge_peft"))


def _lora(task, targets, conv1d=False):
    # transformers' GPT-2 keeps its weights as Conv1D (in, out): peft's fan_in_fan_out; ours are Linear.
    return LoraConfig(task_type=task, r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets,
                      fan_in_fan_out=conv1d)


def _inputs(case, config):
    inputs = batch(case, config)
    inputs["attention_mask"] = torch.ones_like(inputs["attention_mask"])  # no padding: every position compared
    if case.name in CAUSAL_LMS:
        inputs["labels"] = inputs["input_ids"]
    elif case.name == "BertForSequenceClassification":
        inputs["labels"] = torch.tensor([0, 2, 1])
    return inputs


def _loss(out, key):
    return out.loss if getattr(out, "loss", None) is not None else out[key].pow(2).mean()


def _lora_grads(model):
    return {k: p.grad for k, p in model.named_parameters() if p.requires_grad}


# An adapter saved for Linear loaded onto Conv1D, and back: peft sets fan_in_fan_out itself.
@pytest.mark.filterwarnings("ignore:fan_in_fan_out is set to")
@pytest.mark.parametrize("task", list(TASKS))
def test_lora_step_and_merge_equal_transformers(task, folders, tmp_path, pytestconfig):
    case, targets, key = TASKS[task]
    model = ours(load_impl(pytestconfig, case.part), case, folders[case.checkpoint])
    mine = get_peft_model(as_transformers(model), _lora(task, targets))
    hf = get_peft_model(theirs(case, folders[case.checkpoint]), _lora(task, targets, conv1d=case.part == "gpt2"))
    with torch.no_grad():  # LoRA B starts at zero: move it, so that the adapters change the outputs
        g = torch.Generator().manual_seed(0)
        for name, p in mine.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    state = get_peft_model_state_dict(mine)
    assert state and all("lora_" in k or "classifier" in k for k in state)
    assert set_peft_model_state_dict(hf, state).unexpected_keys == []  # the same names: portable
    assert {k for k, p in mine.named_parameters() if p.requires_grad} == \
        {k for k, p in hf.named_parameters() if p.requires_grad}
    if task == "SEQ_CLS":  # modules_to_save replaced our model's classifier too
        assert type(model.classifier).__name__ == "ModulesToSaveWrapper"

    inputs = _inputs(case, model.config)
    losses = []  # in eval mode: no dropout, so that the two steps can be compared
    for peft_model in (mine, hf):
        opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
        loss = _loss(peft_model(**inputs), key)
        loss.backward()
        losses.append(loss.detach())
        opt.step()
    assert_close(losses[0], losses[1], name=f"{task} loss", atol=1e-5)
    assert_grads_close(_lora_grads(mine), _lora_grads(hf), rtol=1e-4, what="LoRA gradient")
    with torch.no_grad():
        after = [peft_model(**inputs) for peft_model in (mine, hf)]
        assert_close(_loss(after[0], key), _loss(after[1], key), name=f"{task} loss after a step", atol=1e-5)
        assert_close(after[0][key], after[1][key], name=f"{task} {key} after a step", atol=1e-5)

    # Saved from ours, loaded into transformers' base model: the same outputs.
    mine.save_pretrained(tmp_path / "adapter")
    loaded = PeftModel.from_pretrained(theirs(case, folders[case.checkpoint]), tmp_path / "adapter").eval()
    with torch.no_grad():
        assert_close(loaded(**inputs)[key], after[0][key], name="transformers with our saved adapter", atol=1e-5)

    # ...and the other way: transformers' adapter onto our model.
    hf.save_pretrained(tmp_path / "hf_adapter")
    fresh = ours(load_impl(pytestconfig, case.part), case, folders[case.checkpoint])
    loaded = PeftModel.from_pretrained(as_transformers(fresh), tmp_path / "hf_adapter").eval()
    with torch.no_grad():
        assert_close(loaded(**inputs)[key], after[1][key], name="ours with transformers' saved adapter", atol=1e-5)

    merged, merged_hf = mine.merge_and_unload(), hf.merge_and_unload()
    assert merged.mlab_model is model
    with torch.no_grad():
        out, expected = merged(**inputs)[key], merged_hf(**inputs)[key]
        assert_close(out, expected, name=f"{task} merged", atol=1e-5)
        assert torch.equal(model(**inputs)[key], out)  # our model runs the merged weights itself
    assert not any("lora_" in k for k in model.state_dict())


@pytest.mark.parametrize("task, index", [("CAUSAL_LM", 1), ("CAUSAL_LM", 7), ("SEQ_CLS", 4)])
def test_prompt_tuning_runs_our_forward_from_inputs_embeds(task, index, folders, pytestconfig):
    """peft's prompt tuning prepends learned virtual-token embeddings and calls the model with
    inputs_embeds (peft_model.py, PeftModelForCausalLM / ForSequenceClassification.forward):
    the same loss and gradient of the prompt as on transformers' model (tied and untied GPT-2
    heads, BERT's classifier), padding included."""
    from peft import PromptTuningConfig

    case = CASES[index]
    config = PromptTuningConfig(task_type=task, num_virtual_tokens=3)
    model = ours(load_impl(pytestconfig, case.part), case, folders[case.checkpoint])
    mine = get_peft_model(as_transformers(model), config)
    hf = get_peft_model(theirs(case, folders[case.checkpoint]), config)
    set_peft_model_state_dict(mine, get_peft_model_state_dict(hf))  # one prompt for both
    prompts = [m.prompt_encoder["default"].embedding.weight for m in (mine, hf)]
    assert torch.equal(prompts[0], prompts[1])
    inputs = batch(case, model.config)
    inputs["labels"] = inputs["input_ids"] if task == "CAUSAL_LM" else torch.tensor([0, 2, 1])
    losses = []
    for peft_model in (mine, hf):
        peft_model.eval()
        loss = peft_model(**inputs).loss
        loss.backward()
        losses.append(loss.detach())
    assert_close(losses[0], losses[1], name=f"{task} prompt-tuning loss", atol=1e-5)
    assert_grads_close(_lora_grads(mine), _lora_grads(hf), rtol=1e-4, what="prompt embedding gradient")
