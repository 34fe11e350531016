"""mlab_tfs.as_transformers: every course class as a transformers PreTrainedModel that shares
our parameters, runs our forward (equal to ours exactly, to transformers' model on the same
folder within fp32 1e-5), has transformers' checkpoint layout in state_dict(), and writes
folders (save_pretrained, Trainer.save_model, accelerate) that ours and transformers load."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

import mlab_tfs
from mlab_tfs.bridge import as_transformers
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.plugin import load_impl
from mlab_tfs.tests.bridge_cases import (CASES, CAUSAL_LMS, batch, lm_labels, ours, real_rows, theirs,
                                         write_checkpoints)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_checkpoints(tmp_path_factory.mktemp("bridge"))


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request):
    return request.param


@pytest.fixture
def pair(case, folders, pytestconfig):
    """(our model, its adapter, transformers' model, a batch) for the case."""
    folder = folders[case.checkpoint]
    model = ours(load_impl(pytestconfig, case.part), case, folder)
    return model, as_transformers(model), theirs(case, folder), batch(case, model.config)


# -- what it is -----------------------------------------------------------------------------


def test_import_mlab_tfs_does_not_import_the_bridge():
    import subprocess
    import sys

    code = "import sys, mlab_tfs; print('transformers' in sys.modules, 'mlab_tfs.bridge' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    assert mlab_tfs.as_transformers is as_transformers


def test_adapter_is_a_transformers_model_named_as_ours(case, pair):
    model, adapter, hf, _ = pair
    assert isinstance(adapter, transformers.PreTrainedModel)
    assert type(adapter).__name__ == case.name == type(hf).__name__
    assert isinstance(adapter, transformers.GenerationMixin) == (case.name in CAUSAL_LMS)
    assert adapter.can_generate() == hf.can_generate()
    assert type(adapter.config) is type(hf.config)
    assert adapter.config.architectures == [case.name]
    assert adapter.base_model_prefix == hf.base_model_prefix
    assert adapter.mlab_model is model
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
        assert getattr(adapter.config, key) == getattr(hf.config, key), key
    assert adapter.device == torch.device("cpu") and adapter.dtype == torch.float32
    assert adapter.training is False and model.training is False


def test_one_adapter_class_per_model_class(folders):
    from mlab_tfs.gpt2 import GPT2LMHeadModel

    a = as_transformers(GPT2LMHeadModel.from_pretrained(folders["gpt2"]))
    b = as_transformers(GPT2LMHeadModel.from_pretrained(folders["gpt2_untied"]))
    assert type(a) is type(b)
    assert as_transformers(a) is a  # no nesting
    hf = theirs(CASES[1], folders["gpt2"])
    assert as_transformers(hf) is hf  # already a transformers model
    from peft import LoraConfig, get_peft_model

    wrapped = get_peft_model(a, LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["c_attn"]))
    assert as_transformers(wrapped) is wrapped  # peft's wrapper of the adapter: not wrapped again


@pytest.mark.parametrize("bad, what", [(3, "int"), ("gpt2", "str"), (torch.nn.Linear(2, 2), "Linear"),
                                       (None, "NoneType")])
def test_a_non_model_is_a_type_error_naming_the_argument(bad, what):
    with pytest.raises(TypeError, match=rf"as_transformers: model must be one of mlab_tfs's models.*got {what}"):
        as_transformers(bad)


# -- forward --------------------------------------------------------------------------------


def test_forward_equals_ours_and_transformers(case, pair):
    model, adapter, hf, inputs = pair
    with torch.no_grad():
        mine, out, expected = model(**inputs), adapter(**inputs), hf(**inputs)
    assert isinstance(out, transformers.utils.ModelOutput)  # transformers' own class: a pytree, a dict
    assert set(out.keys()) <= set(type(expected).__dataclass_fields__) | {"cache"}
    assert torch.equal(out[case.main], mine[case.main])  # our forward, run as it is
    mask = inputs["attention_mask"]
    assert_close(real_rows(case, out[case.main], mask), real_rows(case, expected[case.main], mask),
                 name=f"{case.name} {case.main}", atol=1e-5)
    tup = adapter(**inputs, return_dict=False)
    assert isinstance(tup, tuple) and torch.equal(tup[0], out[0])


@pytest.mark.parametrize("index", [1, 3, 6], ids=lambda i: CASES[i].id)
def test_compiled_adapter_has_no_graph_break_and_equals_transformers(index, folders, pytestconfig):
    """torch.compile(fullgraph=True) of the adapter: our forward and the conversion to
    transformers' output class trace whole (no dataclasses.fields at run time); outputs equal
    eager's and transformers'."""
    import torch._dynamo

    case = CASES[index]
    model = ours(load_impl(pytestconfig, case.part), case, folders[case.checkpoint])
    adapter, hf = as_transformers(model), theirs(case, folders[case.checkpoint])
    inputs = batch(case, model.config)
    torch._dynamo.reset()
    with torch.no_grad():
        out = torch.compile(adapter, fullgraph=True, backend="eager")(**inputs)
        assert type(out) is type(adapter(**inputs))
        mask = inputs["attention_mask"]
        assert_close(out[case.main], adapter(**inputs)[case.main], name="compiled vs eager")
        assert_close(real_rows(case, out[case.main], mask), real_rows(case, hf(**inputs)[case.main], mask),
                     name=f"compiled {case.name} vs transformers")
    torch._dynamo.reset()


def test_hidden_states_attentions_and_labels_pass_through(folders, pytestconfig):
    gpt2 = load_impl(pytestconfig, "gpt2")
    model = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    adapter, hf = as_transformers(model), theirs(CASES[1], folders["gpt2"])
    inputs = batch(CASES[1], model.config)
    labels = lm_labels(inputs["input_ids"], inputs["attention_mask"])
    with torch.no_grad():
        out = adapter(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
        expected = hf(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
    assert_close(out.loss, expected.loss, name="loss", atol=1e-5)
    assert len(out.hidden_states) == len(expected.hidden_states) == model.config.n_layer + 1
    for i, (a, b) in enumerate(zip(out.hidden_states, expected.hidden_states)):
        assert_close(a[inputs["attention_mask"].bool()], b[inputs["attention_mask"].bool()], name=f"hidden_states[{i}]")
    for i, (a, b) in enumerate(zip(out.attentions, expected.attentions)):
        rows = inputs["attention_mask"].bool()
        assert_close(a.transpose(1, 2)[rows], b.transpose(1, 2)[rows], name=f"attentions[{i}]")


def test_an_argument_our_forward_does_not_take_is_named(folders):
    from mlab_tfs.bert import BertModel

    adapter = as_transformers(BertModel.from_pretrained(folders["bert_model"]))
    ids = torch.tensor([[2, 5, 7]])
    with pytest.raises(TypeError, match=r"encoder_hidden_states: BertModel.forward does not take it"):
        adapter(ids, encoder_hidden_states=torch.zeros(1, 3, 32))
    with pytest.raises(TypeError, match=r"^cache: BertModel.forward does not take it"):
        adapter(ids, cache=((torch.zeros(1, 4, 3, 8),) * 2,) * 2)
    # None is "not given", as transformers' callers pass it
    assert torch.equal(adapter(ids, encoder_hidden_states=None, head_mask=None).last_hidden_state,
                       adapter.mlab_model(ids).last_hidden_state)


# -- shared parameters, transformers' layout ---------------------------------------------------


def test_parameters_are_shared_not_copied(case, pair):
    model, adapter, _, inputs = pair
    ours_params = dict(model.named_parameters())
    assert dict(adapter.named_parameters()).keys() == ours_params.keys()
    for name, p in adapter.named_parameters():
        assert p is ours_params[name], name
    # An optimizer step on the adapter is seen by our model.
    adapter.train()
    assert model.training
    opt = torch.optim.SGD(adapter.parameters(), lr=0.5)
    out = adapter(**inputs)
    out[case.main].float().pow(2).mean().backward()
    opt.step()
    adapter.eval()
    with torch.no_grad():
        assert torch.equal(adapter(**inputs)[case.main], model(**inputs)[case.main])


def test_state_dict_is_transformers_checkpoint(case, pair, folders):
    """Names, shapes and values of the adapter's state_dict() are those of transformers'
    state_dict() and of the file transformers wrote (GPT-2's Conv1D weights transposed back,
    a tied head listed under its name too, as transformers lists it, and not saved)."""
    _, adapter, hf, _ = pair
    saved = load_file(folders[case.checkpoint] / "model.safetensors")
    hf_keys = set(hf.state_dict()) - {k for k in hf.state_dict() if k.endswith((".attn.bias", ".attn.masked_bias"))}
    state = adapter.state_dict()
    assert set(state) == hf_keys, sorted(set(state) ^ hf_keys)
    prefix = hf.base_model_prefix + "."
    tied = (type(hf)._tied_weights_keys or {}) if adapter.mlab_model.weights_are_tied() else {}
    for key, value in state.items():
        stored_key = tied.get(key, key) if key not in saved else key  # a tied alias: its source's values
        stored = saved.get(stored_key, saved.get(prefix + stored_key))  # a body, saved from a model with a head
        assert stored is not None, key
        assert stored.shape == value.shape and torch.equal(stored, value), key
    # ...and load_state_dict takes that layout back.
    adapter.load_state_dict({k: torch.zeros_like(v) for k, v in state.items()})
    assert all(bool((p == 0).all()) for p in adapter.mlab_model.parameters())
    adapter.load_state_dict(state)
    assert all(torch.equal(adapter.state_dict()[k], v) for k, v in state.items())


def test_transformers_model_loads_the_adapters_state_dict_strictly(case, pair):
    """transformers' model.load_state_dict(adapter.state_dict()) with strict=True: every key
    transformers' state_dict() has is there (a tied head too), with the same values; and
    the other way round."""
    model, adapter, hf, inputs = pair
    fresh = type(hf)(hf.config).eval()
    assert not fresh.load_state_dict(adapter.state_dict()).missing_keys
    main = case.main
    with torch.no_grad():
        assert torch.equal(getattr(fresh(**inputs), main), getattr(hf(**inputs), main))
    adapter.load_state_dict(hf.state_dict())  # strict as well
    mask = inputs["attention_mask"]
    with torch.no_grad():
        assert_close(real_rows(case, adapter(**inputs)[main], mask), real_rows(case, hf(**inputs)[main], mask),
                     name=f"{case.name} {main}", atol=1e-5)


# -- folders that load in ours and in transformers ---------------------------------------------


def _assert_folder_loads_in_both(case, folder, adapter, inputs, impl):
    with torch.no_grad():
        expected = adapter(**inputs)[case.main]
        mine = getattr(impl, case.name).from_pretrained(folder)(**inputs)[case.main]
        hf = theirs(case, folder)(**inputs)[case.main]
    assert torch.equal(mine, expected), f"{case.name}: ours from {folder}"
    mask = inputs["attention_mask"]
    assert_close(real_rows(case, hf, mask), real_rows(case, expected, mask), name=f"transformers' {case.name}")


def _perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)


def _saved_keys(adapter):
    """The adapter's state_dict() keys that a checkpoint stores: a tied alias is not (transformers
    saves a tied head once, under its source's name)."""
    tied = type(adapter)._hf_tied if adapter.mlab_model.weights_are_tied() else {}
    return {k for k in adapter.state_dict() if k not in tied}


def test_save_pretrained_writes_a_full_checkpoint(case, pair, tmp_path, pytestconfig):
    model, adapter, _, inputs = pair
    _perturb(model)  # a trained model, not the folder it came from
    adapter.save_pretrained(tmp_path / "a")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["model_type"] == adapter.config.model_type and config["architectures"] == [case.name]
    assert (tmp_path / "a" / "generation_config.json").is_file() == (case.name in CAUSAL_LMS)
    assert load_file(tmp_path / "a" / "model.safetensors").keys() == _saved_keys(adapter)
    impl = load_impl(pytestconfig, case.part)
    _assert_folder_loads_in_both(case, tmp_path / "a", adapter, inputs, impl)
    # The keywords Trainer and accelerate pass: a state_dict in the adapter's layout, a pickle.
    adapter.save_pretrained(tmp_path / "b", state_dict=adapter.state_dict(), safe_serialization=False,
                            save_function=torch.save)
    assert not (tmp_path / "b" / "model.safetensors").exists() and (tmp_path / "b" / "pytorch_model.bin").is_file()
    _assert_folder_loads_in_both(case, tmp_path / "b", adapter, inputs, impl)
    adapter.save_pretrained(tmp_path / "c", is_main_process=False)
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="push_to_hub"):
        adapter.save_pretrained(tmp_path / "d", push_to_hub=True)


@pytest.mark.parametrize("safe", [True, False])
def test_save_pretrained_state_dict_is_what_is_written_once(case, pair, tmp_path, pytestconfig, monkeypatch, safe):
    """state_dict= (transformers' layout, as the adapter's state_dict()) is written instead of the
    parameters, in one weight write (not our save then an overwrite), and loads in both as those values."""
    import safetensors.torch

    model, adapter, _, inputs = pair
    other = {k: v * 0.9 + 0.01 if v.is_floating_point() else v for k, v in adapter.state_dict().items()}
    writes = []
    real_st, real_save = safetensors.torch.save_file, torch.save
    monkeypatch.setattr(safetensors.torch, "save_file", lambda *a, **k: (writes.append(a[1]), real_st(*a, **k)))

    def counting_save(obj, f, *a, **k):
        writes.append(f)
        return real_save(obj, f, *a, **k)

    adapter.save_pretrained(tmp_path / "s", state_dict=other, safe_serialization=safe, save_function=counting_save)
    assert len(writes) == 1, writes
    weights = "model.safetensors" if safe else "pytorch_model.bin"
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.name != "generation_config.json") == [
        "config.json", weights]
    stored = load_file(tmp_path / "s" / weights) if safe else torch.load(tmp_path / "s" / weights)
    assert stored.keys() == _saved_keys(adapter)
    for k, v in stored.items():
        assert torch.equal(v, other[k]), k
    impl = load_impl(pytestconfig, case.part)
    with torch.no_grad():
        adapter.load_state_dict(other)  # the model those values make, to compare the folder with
    _assert_folder_loads_in_both(case, tmp_path / "s", adapter, inputs, impl)
    with pytest.raises(TypeError, match="state_dict must be a dict"):
        adapter.save_pretrained(tmp_path / "t", state_dict=[1])
    assert not (tmp_path / "t").exists()


def _trainer(model, tmp_path, rows, **kwargs):
    kwargs = dict(dict(save_strategy="no"), **kwargs)
    args = transformers.TrainingArguments(tmp_path, per_device_train_batch_size=3, per_device_eval_batch_size=3,
                                          max_steps=2, learning_rate=1e-2, report_to=[], use_cpu=True,
                                          disable_tqdm=True, seed=0, **kwargs)
    return transformers.Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows)


def test_trainer_save_model_writes_a_loadable_folder(tmp_path, pytestconfig):
    """Two training steps through the adapter train our model; Trainer.save_model writes
    config.json and transformers-layout weights that both loaders read as the trained model;
    evaluate and predict agree with transformers' model of that folder under Trainer; and a
    run resumed from the adapter's step-1 checkpoint ends with the same weights."""
    from mlab_tfs.testing import tiny

    gpt2 = load_impl(pytestconfig, "gpt2")
    case = CASES[1]
    # No dropout: the two runs draw no random numbers, so their weights can be compared.
    folder = tiny.gpt2_checkpoint(tmp_path / "start", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = gpt2.GPT2LMHeadModel.from_pretrained(folder)
    adapter = as_transformers(model)
    inputs = batch(case, model.config)
    before = model.state_dict()["transformer.h.0.attn.c_attn.weight"].clone()
    labels = lm_labels(inputs["input_ids"], inputs["attention_mask"])
    rows = [dict(input_ids=ids, attention_mask=m, labels=y)
            for ids, m, y in zip(inputs["input_ids"], inputs["attention_mask"], labels)]
    trainer = _trainer(adapter, tmp_path / "run", rows, save_strategy="steps", save_steps=1)
    trainer.train()
    trained = model.state_dict()["transformer.h.0.attn.c_attn.weight"]
    assert not torch.equal(trained, before)  # it trained our model
    adapter.eval()
    trainer.save_model(tmp_path / "saved")
    _assert_folder_loads_in_both(case, tmp_path / "saved", adapter, inputs, gpt2)

    hf_trainer = _trainer(theirs(case, tmp_path / "saved"), tmp_path / "hf", rows)
    a, b = trainer.evaluate(), hf_trainer.evaluate()
    assert_close(torch.tensor(a["eval_loss"]), torch.tensor(b["eval_loss"]), name="eval_loss", atol=1e-5)
    p, q = trainer.predict(rows).predictions, hf_trainer.predict(rows).predictions
    rows_mask = inputs["attention_mask"].bool()
    assert_close(torch.as_tensor(p)[rows_mask], torch.as_tensor(q)[rows_mask], name="predictions", atol=1e-5)

    resumed = as_transformers(gpt2.GPT2LMHeadModel.from_pretrained(folder))
    _trainer(resumed, tmp_path / "run", rows).train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-1"))
    assert_close(resumed.mlab_model.state_dict()["transformer.h.0.attn.c_attn.weight"], trained,
                 name="weights after resuming", atol=1e-6)


def test_accelerate_save_model_writes_transformers_weights(tmp_path, folders, pytestconfig):
    """accelerator.save_model writes the state_dict alone (no config.json, accelerate's rule):
    the adapter's is transformers' layout, so transformers loads it with the adapter's config,
    and with the config saved beside it (adapter.config.save_pretrained) both loaders do.
    accelerate's save route of transformers models, unwrapped.save_pretrained(save_function=
    accelerator.save), writes the full checkpoint."""
    from accelerate import Accelerator

    gpt2 = load_impl(pytestconfig, "gpt2")
    case = CASES[1]
    model = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    _perturb(model)
    accelerator = Accelerator(cpu=True)
    prepared = accelerator.prepare(as_transformers(model))
    inputs = batch(case, model.config)
    accelerator.save_model(prepared, tmp_path / "weights")
    assert not (tmp_path / "weights" / "config.json").exists()
    unwrapped = accelerator.unwrap_model(prepared)
    with torch.no_grad():
        # transformers' own model, its state dict from the file (from_pretrained(config=) wants a
        # generation_config.json in the folder).
        hf = transformers.GPT2LMHeadModel(unwrapped.config).eval()
        result = hf.load_state_dict(load_file(tmp_path / "weights" / "model.safetensors"), strict=False)
        assert result.missing_keys == ["lm_head.weight"] and not result.unexpected_keys  # tied: not stored
        hf.tie_weights()
        rows = inputs["attention_mask"].bool()
        assert_close(hf(**inputs).logits[rows], unwrapped(**inputs).logits[rows], name="transformers from weights")
    unwrapped.config.save_pretrained(tmp_path / "weights")
    _assert_folder_loads_in_both(case, tmp_path / "weights", unwrapped, inputs, gpt2)
    unwrapped.save_pretrained(tmp_path / "full", save_function=accelerator.save,
                              is_main_process=accelerator.is_main_process)
    _assert_folder_loads_in_both(case, tmp_path / "full", unwrapped, inputs, gpt2)


def test_torch_export_of_the_adapter_equals_eager(folders, pytestconfig):
    """torch.export.export(adapter, (input_ids,)) traces our forward; the exported program's
    logits equal the adapter's (transformers' output classes are pytrees)."""
    gpt2 = load_impl(pytestconfig, "gpt2")
    adapter = as_transformers(gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"]))
    ids = torch.randint(0, adapter.config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(0))
    program = torch.export.export(adapter, (ids,))
    with torch.no_grad():
        out, expected = program.module()(ids), adapter(ids)
    assert type(out).__name__ == "CausalLMOutputWithCrossAttentions"
    assert_close(out.logits, expected.logits, name="exported logits", atol=1e-6)


def test_pickle_and_deepcopy_rebuild_the_adapter_around_a_copy(folders, tmp_path, pytestconfig):
    import copy

    gpt2 = load_impl(pytestconfig, "gpt2")
    model = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    adapter = as_transformers(model)
    torch.save(adapter, tmp_path / "whole.pt")
    ids = torch.tensor([[1, 5, 9, 2]])
    for other in (torch.load(tmp_path / "whole.pt", weights_only=False), copy.deepcopy(adapter)):
        assert type(other) is type(adapter) and other.mlab_model is not model
        assert other.transformer is other.mlab_model.transformer  # still shared within the copy
        with torch.no_grad():
            assert torch.equal(other(ids).logits, adapter(ids).logits)


def test_a_subclass_of_ours_is_bridged_under_transformers_name(folders, pytestconfig):
    """The adapter goes by what the model offers: a learner's subclass of our GPT2LMHeadModel
    becomes transformers' GPT2LMHeadModel (with generate), running the subclass's forward."""
    gpt2 = load_impl(pytestconfig, "gpt2")

    class ShiftedGPT(gpt2.GPT2LMHeadModel):
        def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, **kwargs):
            out = super().forward(input_ids, attention_mask, position_ids, past_key_values, **kwargs)
            out.logits = out.logits + 1.0  # its own behaviour, visible through the adapter
            return out

    model = ShiftedGPT.from_pretrained(folders["gpt2"])
    adapter = as_transformers(model)
    assert type(adapter).__name__ == "GPT2LMHeadModel" and adapter.config.architectures == ["GPT2LMHeadModel"]
    assert isinstance(adapter, transformers.GenerationMixin)
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        plain = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])(ids).logits
        assert torch.equal(adapter(ids).logits, plain + 1.0)
        # A constant shift changes no argmax: greedy decoding is the plain model's.
        hf = theirs(CASES[1], folders["gpt2"])
        assert adapter.generate(ids, max_new_tokens=5, do_sample=False).tolist() == \
            hf.generate(ids, max_new_tokens=5, do_sample=False).tolist()


def test_save_pretrained_replaces_weights_and_keeps_other_files(folders, tmp_path, pytestconfig):
    """One set of weights per folder (an older pickle or safetensors is dropped); a tokenizer
    saved there first is kept, as Trainer saves it after the model."""
    gpt2 = load_impl(pytestconfig, "gpt2")
    adapter = as_transformers(gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"]))
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    (folder / "pytorch_model.bin").write_text("stale")
    expected = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]
    adapter.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == expected
    adapter.save_pretrained(folder, safe_serialization=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*expected[:2], "pytorch_model.bin", "tokenizer.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left beside it
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == 0


def test_name_or_path_is_where_the_model_was_loaded_from(folders, tmp_path, pytestconfig):
    """As transformers' model.name_or_path: the folder given to from_pretrained, on our model and
    on its adapter; peft writes it as the adapter's base_model_name_or_path. "" when built from a config."""
    from peft import LoraConfig, get_peft_model

    gpt2 = load_impl(pytestconfig, "gpt2")
    model = gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    hf = theirs(CASES[1], folders["gpt2"])
    assert model.name_or_path == str(folders["gpt2"]) == hf.name_or_path
    adapter = as_transformers(model)
    assert adapter.name_or_path == hf.name_or_path and adapter.config.name_or_path == hf.config.name_or_path
    peft_model = get_peft_model(adapter, LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["c_attn"]))
    peft_model.save_pretrained(tmp_path / "lora")
    saved = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(folders["gpt2"])
    assert gpt2.GPT2LMHeadModel(model.config).name_or_path == "" == as_transformers(
        gpt2.GPT2LMHeadModel(model.config)).name_or_path


@pytest.mark.parametrize("bad", ["yes", 0, 1, torch.tensor(True)])
def test_adapter_return_dict_that_is_not_a_bool_is_a_type_error(bad, folders, pytestconfig):
    """return_dict must be True, False or None, as on our models: a truthy string or 0 is not a
    silent choice between a ModelOutput and a tuple."""
    gpt2 = load_impl(pytestconfig, "gpt2")
    adapter = as_transformers(gpt2.GPT2LMHeadModel.from_pretrained(folders["gpt2"]))
    ids = batch(CASES[1], adapter.mlab_model.config)["input_ids"]
    with pytest.raises(TypeError, match=r"return_dict must be True, False or None, got"):
        adapter(ids, return_dict=bad)
    with torch.no_grad():
        assert isinstance(adapter(ids, return_dict=False), tuple)
        assert torch.equal(adapter(ids, return_dict=True).logits, adapter(ids, return_dict=False)[0])
