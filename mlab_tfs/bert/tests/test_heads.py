"""Exercises 8 and 9: the masked-LM head and the sequence classifier, outputs, losses, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mlab_tfs.bert.mistakes import MISTAKES as M
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.mistakes import likely
from mlab_tfs.testing.tiny import BERT_CONFIGS

from .helpers import assert_bert_grads_close, batch, config_of, hf_grads_as_ours, load_into, shortcuts

ATOL = 1e-5
GRAD_RTOL = 1e-5
CONFIGS = list(BERT_CONFIGS)


def pair(bert, hf, name, cls_name, head):
    ref = hf(name, head)
    target = "mlm" if head == "mlm" else "classifier"
    return load_into(getattr(bert, cls_name)(config_of(ref)), ref, target), ref


# ----------------------------------------------------------------------------- 8. MLM head


@pytest.mark.exercise("mlm_head")
def test_prediction_head_matches_transformers(bert, hf):
    ref = hf("base", "mlm")
    cfg = config_of(ref)
    ours = load_into(bert.BertLMPredictionHead(cfg), ref, "mlm", "cls.predictions.")
    x = torch.randn(2, 4, cfg.hidden_size, generator=torch.Generator().manual_seed(0))
    head = ref.cls.predictions
    with torch.no_grad():
        with shortcuts():
            actual = ours(x)
        t = head.transform(x)
        mistakes = {
            M["mlm_no_decoder_bias"]: t @ head.decoder.weight.T,
            M["mlm_no_transform"]:
                x @ head.decoder.weight.T + head.bias,
            M["mlm_transform_no_layer_norm"]:
                head.transform.transform_act_fn(head.transform.dense(x)) @ head.decoder.weight.T + head.bias,
        }
        assert_close(actual, head(x), name="BertLMPredictionHead output", atol=1e-5, mistakes=mistakes,
                     hint="decoder(LayerNorm(gelu(dense(x)))) + bias")


@pytest.mark.exercise("mlm_head")
def test_decoder_is_tied_and_has_its_own_bias(bert, hf):
    model, _ = pair(bert, hf, "base", "BertForMaskedLM", "mlm")
    predictions = model.cls.predictions
    assert predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight, (
        "the decoder must be tied: cls.predictions.decoder.weight = bert.embeddings.word_embeddings.weight "
        f"(one Parameter, two uses)\n  {likely(M['decoder_weight_copied'])}"
    )
    assert isinstance(predictions.bias, torch.nn.Parameter) and tuple(predictions.bias.shape) == (99,), (
        "the decoder has its own bias, cls.predictions.bias, an nn.Parameter of shape (V,), not tied to anything"
    )
    assert model.bert.pooler is None, "BertForMaskedLM's BertModel has no pooler (add_pooling_layer=False)"


@pytest.mark.exercise("mlm_head")
def test_mlm_loss(bert):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=g)
    labels = torch.full((3, 6), -100)
    labels[0, 2], labels[1, 0], labels[2, 5], labels[2, 1] = 4, 10, 0, 7
    flat = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    mistakes = {
        M["mlm_loss_shifted"]:
            F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100),
        M["mlm_loss_summed"]:
            F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100, reduction="sum"),
    }
    assert_close(bert.mlm_loss(logits, labels), flat, name="mlm_loss", atol=1e-6, mistakes=mistakes,
                 hint="cross_entropy(logits (N, V), labels (N,), ignore_index=-100), no shift")


@pytest.mark.exercise("mlm_head")
@pytest.mark.parametrize("name", CONFIGS)
def test_masked_lm_logits_loss_and_gradients(bert, hf, name):
    model, ref = pair(bert, hf, name, "BertForMaskedLM", "mlm")
    ids, mask, types, real = batch(model.config, seed=4)
    # Labels at about a third of the real positions, -100 elsewhere, as in MLM training.
    chosen = real & (torch.rand(ids.shape, generator=torch.Generator().manual_seed(5)) < 0.4)
    chosen[0, 0] = True
    labels = ids.masked_fill(~chosen, -100)
    with shortcuts():
        out = model(ids, attention_mask=mask, token_type_ids=types, labels=labels)
    ref.zero_grad()
    expected = ref(ids, attention_mask=mask, token_type_ids=types, labels=labels)
    assert_close(out.logits[real], expected.logits[real], name="MLM logits (non-padded positions)", atol=ATOL)
    assert_close(out.loss, expected.loss, name="MLM loss", atol=ATOL)
    out.loss.backward()
    expected.loss.backward()
    assert_bert_grads_close(model, hf_grads_as_ours(ref, model, "mlm"), rtol=GRAD_RTOL,
                            hint="the word embedding's gradient sums the lookup's and the tied decoder's: tie the "
                                 "Parameter itself, don't copy it")
    ref.zero_grad()


# ----------------------------------------------------------------------------- 9. classifier


@pytest.mark.exercise("classifier")
def test_problem_type_is_chosen_as_transformers_chooses(bert):
    cfg = lambda **kw: bert.BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,  # noqa: E731
                                       num_attention_heads=2, intermediate_size=8, **kw)
    cases = [
        (cfg(num_labels=1), torch.tensor([0.5, 1.0]), "regression"),
        (cfg(num_labels=1), torch.tensor([1, 0]), "regression"),
        (cfg(num_labels=3), torch.tensor([1, 2]), "single_label_classification"),
        (cfg(num_labels=3), torch.tensor([1, 2], dtype=torch.int32), "single_label_classification"),
        # transformers tests `labels.dtype == torch.long or labels.dtype == torch.int`: other integer dtypes fall through
        (cfg(num_labels=3), torch.tensor([1, 2], dtype=torch.int16), "multi_label_classification"),
        (cfg(num_labels=3), torch.tensor([[1.0, 0.0, 1.0]]), "multi_label_classification"),
        (cfg(num_labels=3, problem_type="regression"), torch.tensor([[1.0, 0.0, 1.0]]), "regression"),
    ]
    for config, labels, expected in cases:
        actual = bert.problem_type_of(config, labels)
        if config.problem_type is not None and actual != config.problem_type:
            cause = f"\n  {likely(M['problem_type_config_ignored'])}"
        elif config.num_labels == 1 and actual != "regression":
            cause = f"\n  {likely(M['problem_type_dtype_first'])}"
        elif config.problem_type is None and actual != expected:
            cause = f"\n  {likely(M['problem_type_dtype_ignored'])}"
        else:
            cause = ""
        assert actual == expected, (
            f"num_labels={config.num_labels}, problem_type={config.problem_type}, labels {labels.dtype}: "
            f"expected {expected!r}, got {actual!r} (the config's problem_type wins; else one label is regression, "
            f"long or int labels single-label, any other dtype multi-label){cause}"
        )


@pytest.mark.exercise("classifier")
def test_classification_loss(bert):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=g)
    ids = torch.tensor([2, 0, 1, 1])
    multi = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    single_mistakes = {M["single_label_bce"]: F.binary_cross_entropy_with_logits(logits, F.one_hot(ids, 3).float())}
    assert_close(bert.classification_loss(logits, ids, "single_label_classification"), F.cross_entropy(logits, ids),
                 name="single-label loss", atol=1e-6, mistakes=single_mistakes, hint="F.cross_entropy(logits, labels)")
    multi_mistakes = {M["multi_label_softmax"]:
                      F.cross_entropy(logits, multi)}
    assert_close(bert.classification_loss(logits, multi, "multi_label_classification"),
                 F.binary_cross_entropy_with_logits(logits, multi), name="multi-label loss", atol=1e-6,
                 mistakes=multi_mistakes, hint="F.binary_cross_entropy_with_logits(logits, labels)")
    one = logits[:, :1]
    target = torch.tensor([0.5, -1.0, 2.0, 0.0])
    broadcast = ((one - target[None, :]) ** 2).mean()  # (B, 1) - (1, B) -> (B, B)
    assert_close(bert.classification_loss(one, target, "regression"), F.mse_loss(one[:, 0], target),
                 name="regression loss (num_labels=1)", atol=1e-6,
                 mistakes={M["regression_broadcast"]: broadcast},
                 hint="squeeze the logits to (B,) before F.mse_loss")


def _labels(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    if cfg.problem_type == "multi_label_classification":
        return torch.randint(0, 2, (4, cfg.num_labels), generator=g).float()
    if cfg.num_labels == 1:
        # Targets away from the outputs (tanh-bounded pooler, small classifier), so that the
        # residuals don't cancel in the bias gradient (a sum of them) and leave only rounding.
        return torch.rand(4, generator=g) + 2
    return torch.randint(0, cfg.num_labels, (4,), generator=g)


@pytest.mark.exercise("classifier")
@pytest.mark.parametrize("name", CONFIGS)
def test_classifier_logits_loss_and_gradients(bert, hf, name):
    model, ref = pair(bert, hf, name, "BertForSequenceClassification", "classifier")
    ids, mask, types, real = batch(model.config, seed=6)
    labels = _labels(model.config)
    with shortcuts():
        out = model(ids, attention_mask=mask, token_type_ids=types, labels=labels)
    ref.zero_grad()
    expected = ref(ids, attention_mask=mask, token_type_ids=types, labels=labels, output_hidden_states=True)
    with torch.no_grad():
        no_pooler = ref.classifier(expected.hidden_states[-1][:, 0])  # (B, L)
    assert_close(out.logits, expected.logits, name="classifier logits", atol=ATOL,
                 mistakes={M["classifier_skips_pooler"]: no_pooler}, hint="classifier(dropout(pooler_output))")
    assert_close(out.loss, expected.loss, name=f"classification loss ({ref.config.problem_type})", atol=ATOL)
    out.loss.backward()
    expected.loss.backward()
    assert_bert_grads_close(model, hf_grads_as_ours(ref, model, "classifier"), rtol=GRAD_RTOL)
    ref.zero_grad()


@pytest.mark.exercise("classifier")
def test_each_problem_type_on_one_model(bert, hf):
    """One 3-label model, each loss: regression (forced by the config), single- and multi-label."""
    ref = hf("base", "classifier")
    ids, mask, types, _ = batch(config_of(ref), seed=7)
    g = torch.Generator().manual_seed(8)
    for problem_type, labels in (
        ("regression", torch.randn(4, 3, generator=g)),
        ("single_label_classification", torch.tensor([0, 2, 1, -100])),
        ("multi_label_classification", torch.randint(0, 2, (4, 3), generator=g).float()),
    ):
        ref.config.problem_type = problem_type
        model = load_into(bert.BertForSequenceClassification(config_of(ref)), ref, "classifier")
        ref.zero_grad()
        out = model(ids, attention_mask=mask, token_type_ids=types, labels=labels)
        expected = ref(ids, attention_mask=mask, token_type_ids=types, labels=labels)
        assert_close(out.loss, expected.loss, name=f"{problem_type} loss", atol=ATOL)
        out.loss.backward()
        expected.loss.backward()
        assert_bert_grads_close(model, hf_grads_as_ours(ref, model, "classifier"), rtol=GRAD_RTOL)
    ref.config.problem_type = None
    ref.zero_grad()


BAD_LABELS = {
    "class id == num_labels": torch.tensor([0, 3]),
    "float labels of the wrong shape": torch.tensor([0.5, 0.5]),
    "one id per token instead of per sequence": torch.zeros(2, 5, dtype=torch.long),
}


@pytest.mark.exercise("classifier")
@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_bad_labels_are_a_clear_error(bert, hf, case):
    model, _ = pair(bert, hf, "base", "BertForSequenceClassification", "classifier")  # 3 labels
    with pytest.raises(ValueError, match="labels"):
        model(torch.zeros(2, 5, dtype=torch.long), labels=BAD_LABELS[case])


@pytest.mark.exercise("mlm_head")
def test_bad_mlm_labels_are_a_clear_error(bert, hf):
    model, _ = pair(bert, hf, "base", "BertForMaskedLM", "mlm")
    with pytest.raises(ValueError, match="labels"):
        model(torch.zeros(1, 3, dtype=torch.long), labels=torch.tensor([[0, 99, -100]]))
    with pytest.raises(ValueError, match="labels"):
        model(torch.zeros(1, 3, dtype=torch.long), labels=torch.tensor([[0, 1]]))


@pytest.mark.solution_only
def test_regression_loss_is_finite_for_a_batch_of_one():
    from mlab_tfs.bert import solution

    logits = torch.tensor([[0.25]])
    assert math.isclose(float(solution.classification_loss(logits, torch.tensor([1.0]), "regression")), 0.5625)
