"""Exercise 10: loading Hugging Face BERT checkpoints in their layouts, and saving ones transformers loads."""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from mlab_tfs.bert import solution
from mlab_tfs.bert.mistakes import MISTAKES as M
from mlab_tfs.checkpoints import CheckpointError
from mlab_tfs.testing.compare import assert_close, assert_same_checkpoint
from mlab_tfs.testing.mistakes import likely
from mlab_tfs.testing.tiny import BERT_CONFIGS, assert_load_lists, edited_checkpoint, hf_bert

from .helpers import batch, config_of

CLASSES = {"model": "BertModel", "mlm": "BertForMaskedLM", "classifier": "BertForSequenceClassification"}
HF_CLASSES = {"model": transformers.BertModel, "mlm": transformers.BertForMaskedLM,
              "classifier": transformers.BertForSequenceClassification}
# (checkpoint layout, our target) pairs that load: a checkpoint's body fits any target.
LAYOUTS = [("model", "model"), ("mlm", "model"), ("pretraining", "model"), ("classifier", "model"),
           ("mlm", "mlm"), ("pretraining", "mlm"), ("classifier", "classifier"), ("pretraining", "classifier"),
           ("mlm", "classifier"), ("classifier", "mlm")]


def _key_mistake(missing: set[str], extra: set[str]) -> str:
    """The likely cause of a key mismatch, from the keys alone (empty when none is recognised)."""
    strip = lambda keys: {k.removeprefix("bert.") for k in keys}  # noqa: E731
    if any(k.endswith(("embeddings.position_ids", "embeddings.token_type_ids")) for k in extra):
        return likely(M["position_ids_buffer_kept"])
    if any(k.endswith(("LayerNorm.gamma", "LayerNorm.beta")) for k in extra):
        return likely(M["gamma_beta_not_renamed"])
    if "cls.predictions.decoder.bias" in extra:
        return likely(M["decoder_bias_kept"])
    if missing == {solution.DECODER} and not extra:
        return likely(M["tied_decoder_not_pointed"])
    if missing and extra and strip(missing) == strip(extra):
        return likely(M["bert_prefix_mismatch"])
    return ""


def assert_same_keys(actual: dict, expected: dict, what: str) -> None:
    """actual has exactly expected's keys; the message names the keys that differ and, when it
    recognises them, the mistake."""
    __tracebackhide__ = True  # failures point at the test's line
    assert isinstance(actual, dict), f"from_hf_state_dict should return a dict, got {type(actual).__name__}"
    missing, extra = set(expected) - set(actual), set(actual) - set(expected)
    cause = _key_mistake(missing, extra)
    assert not missing and not extra, (
        f"{what}: missing {sorted(missing)[:6]}, unexpected {sorted(extra)[:6]}" + (f"\n  {cause}" if cause else ""))


def _compare(ours, ref, target: str, cfg, what: str, pooled: bool = True):
    __tracebackhide__ = True  # failures point at the test's line
    ids, mask, types, real = batch(cfg, seed=9)
    kwargs = dict(attention_mask=mask, token_type_ids=types)
    with torch.no_grad():
        a, b = ours(ids, **kwargs), ref(ids, **kwargs)
    if target == "model":
        assert_close(a.last_hidden_state[real], b.last_hidden_state[real], name=f"last_hidden_state {what}", atol=1e-5)
        if pooled:
            assert_close(a.pooler_output, b.pooler_output, name=f"pooler_output {what}", atol=1e-5)
    elif target == "mlm":
        logits = getattr(b, "prediction_logits", None)
        assert_close(a.logits[real], (b.logits if logits is None else logits)[real], name=f"MLM logits {what}",
                     atol=1e-5)
    else:
        assert_close(a.logits, b.logits, name=f"classifier logits {what}", atol=1e-5)


# First: the quickest test that meets every old name (a check stops at the first failure).
@pytest.mark.exercise("loading")
def test_bert_model_checkpoint_with_prefix_and_old_names(bert, hf, tmp_path):
    """An older layout: bert.-prefixed BertModel keys, a position_ids buffer, TF's gamma/beta names."""
    ref = hf("base", "model")
    state = {}
    for k, v in ref.state_dict().items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state["bert." + k] = v.clone()
    state["bert.embeddings.position_ids"] = torch.arange(40)[None]
    assert_same_keys(bert.from_hf_state_dict(state, config_of(ref), "model"), ref.state_dict(),
                     "old-layout BertModel checkpoint -> BertModel")
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(ref.config.to_dict()))
    _compare(bert.BertModel.from_pretrained(tmp_path), ref, "model", config_of(ref), "(old-layout checkpoint)")


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("layout,target", LAYOUTS, ids=[f"{a}->{b}" for a, b in LAYOUTS])
def test_from_hf_state_dict_names(bert, hf, checkpoint, layout, target):
    ref = hf("base", layout)
    cfg = config_of(ref)
    # As save_pretrained writes it: the tied decoder weight is left out (the loader points it at the embedding).
    state = {k: v for k, v in ref.state_dict().items() if not (cfg.tie_word_embeddings and k == solution.DECODER)}
    actual = bert.from_hf_state_dict(state, cfg, target)
    # Independent of the solution: transformers' own class for the target, loaded from the same
    # checkpoint, holds every tensor under the target's names. Leave out what it had to make up
    # (a head the layout lacks: the loader's business) and the decoder's bias, which ours keeps
    # once, as cls.predictions.bias.
    loaded, info = HF_CLASSES[target].from_pretrained(checkpoint("base", layout), output_loading_info=True)
    made_up = set(info["missing_keys"]) | {"cls.predictions.decoder.bias"}
    expected = {k: v for k, v in loaded.state_dict().items() if k not in made_up}
    assert_same_keys(actual, expected, f"{layout} checkpoint -> {CLASSES[target]}: keys differ from transformers' "
                                       f"{HF_CLASSES[target].__name__}")
    for key in expected:
        assert_close(actual[key], expected[key], name=key, atol=0)


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("layout,target", LAYOUTS, ids=[f"{a}->{b}" for a, b in LAYOUTS])
def test_from_pretrained_matches_transformers(bert, checkpoint, layout, target):
    folder = checkpoint("deep_narrow_heads", layout)
    # A BertForMaskedLM checkpoint has no pooler, a BertForPreTraining one no classifier: loading
    # them asks for new_head=True, which starts that head fresh.
    # Fine-tuning a classifier from a BertForMaskedLM checkpoint starts both the pooler and the
    # classifier fresh, as transformers does.
    no_pooler = layout == "mlm" and target in ("model", "classifier")
    new_head = (no_pooler or (layout == "pretraining" and target == "classifier")
                or (layout, target) == ("classifier", "mlm"))
    ours = getattr(bert, CLASSES[target]).from_pretrained(folder, new_head=new_head)
    assert not ours.training, "from_pretrained returns the model in eval mode, as transformers does"
    # transformers loads the same folder into the class that matches the target (with its warnings
    # about unused keys: the pre-training heads, the pooler).
    ref = HF_CLASSES[target].from_pretrained(folder, attn_implementation="eager").eval()
    if layout in ("pretraining", "mlm") and target == "classifier":
        # Neither checkpoint has a classifier: compare the body only.
        ours, ref = ours.bert, ref.bert
        target = "model"
    if (layout, target) == ("classifier", "mlm"):
        # A classifier checkpoint has no MLM head (fresh in both): compare the body, which has no pooler here.
        ours, ref, target, no_pooler = ours.bert, ref.bert, "model", True
    _compare(ours, ref, target, ours.config, f"({layout} checkpoint into {CLASSES[target]})", pooled=not no_pooler)


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("name", list(BERT_CONFIGS))
@pytest.mark.parametrize("target", list(CLASSES))
def test_save_pretrained_loads_in_transformers(bert, checkpoint, name, target, tmp_path):
    head = target
    original = checkpoint(name, head)
    ours = getattr(bert, CLASSES[target]).from_pretrained(original)
    ours.save_pretrained(tmp_path)
    ref, info = HF_CLASSES[target].from_pretrained(tmp_path, output_loading_info=True, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], (
        f"transformers reports {info}: save HF's names, in the layout of {CLASSES[target]}, and leave out the "
        f"tied decoder weight"
    )
    assert_same_checkpoint(tmp_path / "model.safetensors", original / "model.safetensors")
    assert ref.config.num_labels == ours.config.num_labels and ref.config.problem_type == ours.config.problem_type
    _compare(ours, ref.eval(), target, ours.config, "(transformers loading our checkpoint)")


@pytest.mark.exercise("loading")
def test_mlm_checkpoint_with_decoder_keys(bert, hf, tmp_path):
    """Older BertForMaskedLM checkpoints store the tied decoder and its bias under their own names too."""
    ref = hf("base", "mlm")
    state = {k: v.clone() for k, v in ref.state_dict().items()}  # includes cls.predictions.decoder.*
    assert "cls.predictions.decoder.weight" in state and "cls.predictions.decoder.bias" in state
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(ref.config.to_dict()))
    ours = bert.BertForMaskedLM.from_pretrained(tmp_path)
    assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight, (
        "after loading, the decoder must still be tied to the word embeddings"
    )
    _compare(ours, ref, "mlm", config_of(ref), "(checkpoint with decoder keys)")


@pytest.mark.exercise("loading")
def test_head_missing_from_checkpoint_starts_fresh_with_a_warning(bert, checkpoint):
    folder = checkpoint("base", "model")  # a BertModel: no MLM head, no classifier
    for cls_name, key in (("BertForMaskedLM", "cls.predictions.bias"),
                          ("BertForSequenceClassification", "classifier.weight")):
        # Recorded rather than pytest.warns: an error while loading (a stub) then surfaces as itself.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            getattr(bert, cls_name).from_pretrained(folder)
        pattern = re.compile(f"(?s)no weights for {cls_name}'s head.*{key}.*new_head=True")
        assert any(issubclass(w.category, UserWarning) and pattern.search(str(w.message)) for w in caught), (
            f"loading a checkpoint without {cls_name}'s head should warn about {key}; got {[str(w.message) for w in caught]}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # new_head=True: expected, so no warning
        model = bert.BertForMaskedLM.from_pretrained(folder, new_head=True)
    ref = hf_bert(folder, "model")
    ids, mask, types, real = batch(model.config)
    with torch.no_grad():
        assert_close(model.bert(ids, attention_mask=mask, token_type_ids=types).last_hidden_state[real],
                     ref(ids, attention_mask=mask, token_type_ids=types).last_hidden_state[real],
                     name="body of BertForMaskedLM loaded with new_head=True", atol=1e-5)
    assert torch.equal(model.cls.predictions.bias, torch.zeros(99)), "a fresh MLM head's bias starts at zero"


@pytest.mark.solution_only
def test_missing_unexpected_and_mismatched_keys_are_listed(checkpoint, tmp_path):
    def edit(state):
        del state["encoder.layer.1.output.dense.bias"]
        state["embeddings.LayerNorm.weight"] = torch.ones(5)
        state["encoder.layer.0.attention.self.relative_key.weight"] = torch.ones(2)

    folder = edited_checkpoint(checkpoint("base", "model"), tmp_path / "broken", edit)
    assert_load_lists(solution.BertModel, folder, "encoder.layer.1.output.dense.bias", "relative_key.weight",
                      "embeddings.LayerNorm.weight: checkpoint (5,), model (32,)")


@pytest.mark.solution_only
def test_classifier_with_other_num_labels_is_a_shape_mismatch(checkpoint):
    with pytest.raises(CheckpointError, match="classifier.weight: checkpoint \\(3, 32\\), model \\(5, 32\\)"):
        solution.BertForSequenceClassification.from_pretrained(checkpoint("base", "classifier"), num_labels=5)


@pytest.mark.solution_only
def test_checkpoint_of_another_model_is_refused(tmp_path):
    transformers.GPT2Model(transformers.GPT2Config(n_embd=8, n_head=2, n_layer=1, vocab_size=10)).save_pretrained(
        tmp_path)
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        solution.BertModel.from_pretrained(tmp_path)


@pytest.mark.solution_only
def test_config_refuses_what_it_does_not_implement():
    with pytest.raises(ValueError, match="divisible"):
        solution.BertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="hidden_act"):
        solution.BertConfig(hidden_act="gelu_nope")
    with pytest.raises(ValueError, match="problem_type"):
        solution.BertConfig(problem_type="ranking")
    with pytest.raises(ValueError, match="position_embedding_type"):
        solution.BertConfig.from_dict({"model_type": "bert", "position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="is_decoder=True; this implementation supports only is_decoder=False"):
        solution.BertConfig.from_dict({"model_type": "bert", "is_decoder": True})


@pytest.mark.solution_only
def test_config_round_trips_through_transformers():
    for overrides in BERT_CONFIGS.values():
        ours = solution.BertConfig(**overrides)
        theirs = transformers.BertConfig(**ours.to_dict())
        back = solution.BertConfig.from_dict(theirs.to_dict())
        assert back == solution.BertConfig(**{**overrides, "id2label": {i: f"LABEL_{i}" for i in range(ours.num_labels)}})
        assert theirs.num_labels == ours.num_labels and theirs.problem_type == ours.problem_type


@pytest.mark.solution_only
def test_untied_decoder_round_trips(tmp_path, checkpoint):
    folder = checkpoint("base", "mlm")
    model = solution.BertForMaskedLM.from_pretrained(folder, tie_word_embeddings=False, new_head=True)
    assert model.cls.predictions.decoder.weight is not model.bert.embeddings.word_embeddings.weight
    model.save_pretrained(tmp_path)
    ref, info = transformers.BertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True,
                                                             attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    _compare(model, ref.eval(), "mlm", model.config, "(untied decoder)")


@pytest.mark.solution_only
def test_tied_decoder_is_saved_once(tmp_path):
    """safetensors refuses two names for one tensor (and transformers' Trainer saves a plain
    state_dict with it): the tied decoder weight appears once and loads back tied."""
    config = solution.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=20)
    model = solution.BertForMaskedLM(config)
    state = model.state_dict()
    assert "cls.predictions.decoder.weight" not in state
    save_file(state, tmp_path / "plain.safetensors")
    fresh = solution.BertForMaskedLM(config)
    fresh.load_state_dict(load_file(tmp_path / "plain.safetensors"), strict=True)
    assert fresh.cls.predictions.decoder.weight is fresh.bert.embeddings.word_embeddings.weight
    assert torch.equal(fresh.cls.predictions.decoder.weight, model.cls.predictions.decoder.weight)
