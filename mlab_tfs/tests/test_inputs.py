"""The shared argument checks (mlab_tfs.inputs), directly and through every model's forward:
labels below 0 other than -100, and empty batches, are ValueErrors naming the argument."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.bert import solution as bert
from mlab_tfs.deberta import solution as deberta
from mlab_tfs.gpt2 import solution as gpt2
from mlab_tfs.inputs import check_classification_labels, check_labels, check_token_ids

V = 11


@pytest.mark.parametrize("bad", [-1, -2, -99, -101, -1000, V, V + 5])
def test_check_labels_allows_only_minus_100_below_zero(bad):
    labels = torch.tensor([[0, -100, 3], [V - 1, bad, -100]])
    with pytest.raises(ValueError, match=rf"labels must be in \[0, {V}\) or -100 \(ignored\), got {bad} at index \(1, 1\)"):
        check_labels("labels", labels, (2, 3), V)
    good = torch.tensor([[0, -100, 3], [V - 1, -100, -100]])
    assert check_labels("labels", good, (2, 3), V) is good


@pytest.mark.parametrize("bad", [-1, -101, 3])
def test_classification_labels_allow_only_minus_100_below_zero(bad):
    with pytest.raises(ValueError, match=rf"labels must be in \[0, 3\) \(num_labels\) or -100.*got {bad} at index 1"):
        check_classification_labels("labels", torch.tensor([0, bad]), 2, 3, "single_label_classification")
    assert check_classification_labels("labels", torch.tensor([2, -100]), 2, 3, "single_label_classification").tolist() \
        == [2, -100]


@pytest.mark.parametrize("shape,match", [((0, 4), "at least one sequence"), ((3, 0), "at least one token"),
                                         ((0, 0), "at least one sequence")])
def test_empty_token_ids(shape, match):
    with pytest.raises(ValueError, match=f"input_ids must hold {match}"):
        check_token_ids("input_ids", torch.zeros(shape, dtype=torch.long), V)


def _models():
    g = dict(vocab_size=V, n_positions=8, n_embd=8, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    b = dict(vocab_size=V, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
             max_position_embeddings=8)
    d = dict(b, relative_attention=True, pos_att_type="p2c|c2p", position_buckets=4, max_relative_positions=8)
    torch.manual_seed(0)
    return {
        "GPT2LMHeadModel": gpt2.GPT2LMHeadModel(gpt2.GPT2Config(**g)),
        "BertModel": bert.BertModel(bert.BertConfig(**b)),
        "BertForMaskedLM": bert.BertForMaskedLM(bert.BertConfig(**b)),
        "BertForSequenceClassification": bert.BertForSequenceClassification(bert.BertConfig(**b)),
        "DebertaV2Model": deberta.DebertaV2Model(deberta.DebertaV2Config(**d)),
        "DebertaV2ForMaskedLM": deberta.DebertaV2ForMaskedLM(deberta.DebertaV2Config(**d)),
    }


MODELS = _models()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("shape", [(0, 4), (2, 0), (0, 0)])
def test_every_model_refuses_an_empty_batch(name, shape):
    with pytest.raises(ValueError, match="input_ids must hold at least one"):
        MODELS[name].eval()(torch.zeros(shape, dtype=torch.long))


@pytest.mark.parametrize("name", ["GPT2LMHeadModel", "BertForMaskedLM", "DebertaV2ForMaskedLM",
                                  "BertForSequenceClassification"])
@pytest.mark.parametrize("bad", [-1, -7, -101])
def test_every_model_refuses_negative_labels_other_than_minus_100(name, bad):
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    labels = torch.tensor([0, bad]) if name == "BertForSequenceClassification" else torch.tensor(
        [[1, -100, 3], [4, bad, 6]])
    with pytest.raises(ValueError, match=f"labels must be in .* or -100.*got {bad}"):
        MODELS[name].eval()(ids, labels=labels)


# uint8 and int16 labels mean multi-label targets to a sequence classifier (transformers' rule).
INTEGER_LABELS = [(name, dtype) for name in ("GPT2LMHeadModel", "BertForMaskedLM", "DebertaV2ForMaskedLM")
                  for dtype in (torch.int32, torch.int16, torch.uint8)] + [("BertForSequenceClassification", torch.int32)]


@pytest.mark.parametrize("name,dtype", INTEGER_LABELS, ids=repr)
def test_labels_of_any_integer_dtype_give_the_long_loss(name, dtype):
    """cross_entropy takes only long targets: int32 labels (transformers' problem-type rule
    counts them as class ids) give the loss of the same ids as torch.long, not a torch error."""
    model = MODELS[name].eval()
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    labels = torch.tensor([1, 0]) if name == "BertForSequenceClassification" else torch.tensor([[3, 1, 4, 1], [5, 9, 2, 6]])
    expected = model(ids, labels=labels).loss
    assert torch.equal(model(ids, labels=labels.to(dtype)).loss, expected)


@pytest.mark.parametrize("argument", ["input_ids", "token_type_ids", "position_ids"])
def test_uint8_ids_are_refused_not_read_as_a_mask(argument):
    """torch indexes a table with a uint8 tensor as a boolean mask; transformers' embedding
    refuses uint8 too. int32 ids look up the same rows as long ones."""
    model = MODELS["BertModel"].eval()
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]])
    kwargs = {"input_ids": ids, argument: (ids % 2) if argument != "position_ids" else torch.arange(4).repeat(2, 1)}
    kwargs[argument] = kwargs[argument].to(torch.uint8)
    with pytest.raises(ValueError, match=f"{argument} must hold integer.*uint8 tensor indexes as a mask"):
        model(**kwargs)
    kwargs[argument] = kwargs[argument].int()
    expected = model(**{k: v.long() for k, v in kwargs.items()}).last_hidden_state
    assert torch.equal(model(**kwargs).last_hidden_state, expected)
