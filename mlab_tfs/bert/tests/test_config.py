"""BertConfig: every field checked where it is built, and every field that changes the
computation equal to transformers' BERT with the same value (logits, losses, gradients)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mlab_tfs.activations import ACTIVATIONS
from mlab_tfs.bert import solution
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.fields import assert_init_like, bad_cases

from .helpers import assert_bert_grads_close, batch, hf_grads_as_ours

FIELDS = {
    "vocab_size": "positive_int", "hidden_size": "positive_int", "num_hidden_layers": "positive_int",
    "num_attention_heads": "positive_int", "intermediate_size": "positive_int", "hidden_act": "choice",
    "hidden_dropout_prob": "probability", "attention_probs_dropout_prob": "probability",
    "max_position_embeddings": "positive_int", "type_vocab_size": "positive_int",
    "initializer_range": "non_negative_float", "layer_norm_eps": "positive_float", "pad_token_id": "token_id",
    "classifier_dropout": "optional_probability", "tie_word_embeddings": "bool", "num_labels": "positive_int",
    "problem_type": "optional_choice", "attn_implementation": "choice", "id2label": "id2label",
}
SMALL = dict(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
             max_position_embeddings=16)
BAD_ID2LABEL = [{0: "a"}, {0: "a", 2: "b"}, {"x": "a", "y": "b"}, {0: 1, 1: 2}, ["a", "b"]]


def test_every_field_is_listed():
    assert sorted(FIELDS) == sorted(f.name for f in dataclasses.fields(solution.BertConfig))


@pytest.mark.parametrize("field,value", bad_cases({k: v for k, v in FIELDS.items() if v != "id2label"})
                         + [("id2label", v) for v in BAD_ID2LABEL] + [("pad_token_id", 50)], ids=repr)
def test_bad_field_value_is_refused_naming_it(field, value):
    with pytest.raises(ValueError, match=f"BertConfig\\.{field}"):
        solution.BertConfig(**{**SMALL, field: value})


def test_from_dict_refuses_what_it_does_not_implement():
    with pytest.raises(TypeError, match="BertConfig.from_dict needs a dict"):
        solution.BertConfig.from_dict(None)
    for value in ("relative_key", "relative_key_query"):
        with pytest.raises(ValueError, match="position_embedding_type"):
            solution.BertConfig.from_dict({**SMALL, "position_embedding_type": value})
    solution.BertConfig.from_dict({**SMALL, "position_embedding_type": "absolute"})


# ---------------------------------------------------------------------------------------
# Parity with transformers, one field at a time
# ---------------------------------------------------------------------------------------

# name -> (head, overrides). Values far from the defaults so that ignoring one shows.
PARITY = {
    **{f"hidden_act_{a}": ("mlm", dict(hidden_act=a)) for a in ACTIVATIONS},
    "layer_norm_eps": ("mlm", dict(layer_norm_eps=0.3)),
    "pad_token_id": ("mlm", dict(pad_token_id=5)),  # the padding row gets no gradient
    "pad_token_id_none": ("mlm", dict(pad_token_id=None)),
    "untied_decoder": ("mlm", dict(tie_word_embeddings=False)),
    "type_vocab_size_1": ("classifier", dict(type_vocab_size=1)),
    "type_vocab_size_5": ("classifier", dict(type_vocab_size=5)),
    "max_position_embeddings": ("classifier", dict(max_position_embeddings=9)),
    "single_label": ("classifier", dict(problem_type="single_label_classification")),
    "multi_label": ("classifier", dict(problem_type="multi_label_classification")),
    "regression": ("classifier", dict(problem_type="regression")),
    "regression_one_label": ("classifier", dict(num_labels=1)),
    "inferred_multi_label": ("classifier", dict(num_labels=4)),  # float labels, no problem_type
}


@pytest.fixture(scope="module")
def parity_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert_fields")
    return {name: tiny.bert_checkpoint(root / name, "base", seed=i, head=head, **overrides)
            for i, (name, (head, overrides)) in enumerate(PARITY.items())}


def _labels(name: str, config, ids):
    g = torch.Generator().manual_seed(2)
    B, L = ids.shape[0], config.num_labels
    if PARITY[name][0] == "mlm":
        return ids.masked_fill(torch.rand(ids.shape, generator=g) < 0.5, -100)
    if name in ("multi_label", "inferred_multi_label"):
        return (torch.rand(B, L, generator=g) < 0.5).float()
    if name.startswith("regression"):
        return torch.randn(B, L, generator=g) if L > 1 else torch.randn(B, generator=g)
    return torch.randint(0, L, (B,), generator=g)


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("name", list(PARITY))
def test_field_matches_transformers(bert, parity_folders, name):
    head, overrides = PARITY[name]
    folder = parity_folders[name]
    hf = tiny.hf_bert(folder, head)
    cls = bert.BertForMaskedLM if head == "mlm" else bert.BertForSequenceClassification
    ours = cls.from_pretrained(folder)
    for field, value in overrides.items():
        assert getattr(ours.config, field) == value
    ids, mask, types, real = batch(ours.config, lengths=(7, 3, 5), seed=4)
    if ours.config.pad_token_id is None:
        ids = ids.masked_fill(ids == 0, 1)
    labels = _labels(name, ours.config, ids)
    kwargs = dict(attention_mask=mask, token_type_ids=types, labels=labels)
    out, ref = ours(ids, **kwargs), hf(ids, **kwargs)
    logits = (out.logits[real], ref.logits[real]) if head == "mlm" else (out.logits, ref.logits)
    assert_close(*logits, name=f"logits with {overrides}", atol=1e-5)
    assert_close(out.loss, ref.loss, name=f"loss with {overrides}", atol=1e-5)
    out.loss.backward()
    ref.loss.backward()
    assert_bert_grads_close(ours, hf_grads_as_ours(hf, ours, head), rtol=1e-4, what=f"gradient with {overrides}")


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("classifier_dropout", [0.5, 0.0, None])
def test_classifier_dropout_in_train_mode(bert, tmp_path, classifier_dropout):
    """The classifier's dropout is classifier_dropout (hidden_dropout_prob when None): with the
    body's dropouts at 0 it is the only random draw, so the same seed gives transformers' mask."""
    folder = tiny.bert_checkpoint(tmp_path, "base", head="classifier", hidden_dropout_prob=0.25 * (
        classifier_dropout is None), attention_probs_dropout_prob=0.0, classifier_dropout=classifier_dropout)
    hf = tiny.hf_bert(folder, "classifier").train()
    ours = bert.BertForSequenceClassification.from_pretrained(folder).train()
    if classifier_dropout is None:  # the body's dropout draws too: compare the head alone
        pooled = torch.randn(4, 32, generator=torch.Generator().manual_seed(0))
        torch.manual_seed(7)
        a = ours.classifier(ours.dropout(pooled))
        torch.manual_seed(7)
        b = hf.classifier(hf.dropout(pooled))
        assert ours.dropout.p == hf.dropout.p == 0.25
        assert_close(a, b, name="classifier logits after hidden_dropout_prob's dropout", atol=1e-6)
        return
    ids, mask, types, _ = batch(ours.config, lengths=(7, 3, 5), seed=4)
    torch.manual_seed(7)
    a = ours(ids, attention_mask=mask, token_type_ids=types).logits
    torch.manual_seed(7)
    b = hf(ids, attention_mask=mask, token_type_ids=types).logits
    assert_close(a, b, name=f"train-mode logits with classifier_dropout={classifier_dropout}", atol=1e-5)
    with torch.no_grad():
        evaluated = ours.eval()(ids, attention_mask=mask, token_type_ids=types).logits
    assert torch.equal(a, evaluated) == (classifier_dropout == 0.0), "dropout acts exactly when p > 0"


BODY_DROPOUTS = {"hidden_dropout_prob": dict(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.0),
                 "attention_probs_dropout_prob": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.3),
                 "both": dict(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)}


@pytest.mark.exercise("loading")
@pytest.mark.parametrize("name", list(BODY_DROPOUTS))
def test_body_dropout_fields_in_train_mode(bert, tmp_path, name):
    """Each dropout field drops where transformers' does (train mode, eager attention, the same
    seed: the same masks drawn in the same order)."""
    folder = tiny.bert_checkpoint(tmp_path, "base", head="mlm", **BODY_DROPOUTS[name])
    hf = tiny.hf_bert(folder, "mlm").train()
    ours = bert.BertForMaskedLM.from_pretrained(folder, attn_implementation="eager").train()
    ids, mask, types, real = batch(ours.config, lengths=(7, 3, 5), seed=4)
    kwargs = dict(attention_mask=mask, token_type_ids=types)
    torch.manual_seed(11)
    a = ours(ids, **kwargs).logits
    torch.manual_seed(11)
    b = hf(ids, **kwargs).logits
    assert_close(a[real], b[real], name=f"train-mode logits with {BODY_DROPOUTS[name]}", atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(a, ours.eval()(ids, **kwargs).logits), "dropout should act in train mode"


@pytest.mark.solution_only
@pytest.mark.parametrize("head", ["mlm", "classifier"])
def test_initializer_range_initialises_as_transformers(head):
    import transformers

    cfg = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
               max_position_embeddings=64, type_vocab_size=8, initializer_range=0.37, num_labels=5, pad_token_id=3)
    torch.manual_seed(0)
    ours = (solution.BertForMaskedLM if head == "mlm" else solution.BertForSequenceClassification)(
        solution.BertConfig(**cfg))
    hf_cls = transformers.BertForMaskedLM if head == "mlm" else transformers.BertForSequenceClassification
    theirs = hf_cls(transformers.BertConfig(**cfg)).state_dict()
    theirs.pop("cls.predictions.decoder.bias", None)  # ours keeps it once, as cls.predictions.bias
    theirs.pop("cls.predictions.decoder.weight", None)  # tied: saved once, as the word embeddings
    assert_init_like(ours.state_dict(), theirs)
    word = ours.bert.embeddings.word_embeddings.weight
    assert torch.equal(word[3], torch.zeros(64)), "the padding row starts at zero, as in transformers"
