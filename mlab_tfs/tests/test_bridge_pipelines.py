"""transformers' pipelines and sentence-transformers on our encoders through as_transformers,
against the same tools on transformers' model of the same folder: BERT on MiniLM's weights
(mlab_tfs.assets.minilm_path(), with its own tokenizer) and a tiny random DeBERTa-v2 with a
small WordPiece vocabulary. Scores and embeddings within fp32 1e-5, tokens and labels equal."""

from __future__ import annotations

import shutil

import pytest
import torch
import transformers

from mlab_tfs import assets
from mlab_tfs.bridge import as_transformers
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.plugin import load_impl

TEXTS = ["The capital of France is [MASK].", "I [MASK] this movie, it was great!", "hello"]
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(assets.minilm_path())


def _with_head(cls, folder, **kwargs):
    """MiniLM with a fresh head (ours, seeded), saved to folder with MiniLM's tokenizer files:
    the same weights for ours and transformers' class of that name."""
    torch.manual_seed(0)
    model = cls.from_pretrained(assets.minilm_path(), new_head=True, **kwargs)
    with torch.no_grad():  # a head far from its init, so that scores differ clearly between tokens
        for name, p in model.named_parameters():
            if name.startswith(("cls.", "classifier.")):
                p.normal_(0, 0.5)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(assets.minilm_path() / name, folder / name)
    return model.eval()


def _pipelines(task, ours, hf, tokenizer):
    return [transformers.pipeline(task, model=m, tokenizer=tokenizer, device="cpu") for m in (ours, hf)]


def _assert_fill_mask_equal(mine, theirs):
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        assert [x["token"] for x in a] == [x["token"] for x in b]
        assert [x["sequence"] for x in a] == [x["sequence"] for x in b]
        assert_close(torch.tensor([x["score"] for x in a]), torch.tensor([x["score"] for x in b]),
                     name="fill-mask scores", atol=1e-5)


def test_fill_mask_on_minilm(tmp_path, minilm_tokenizer, pytestconfig):
    bert = load_impl(pytestconfig, "bert")
    ours = _with_head(bert.BertForMaskedLM, tmp_path)
    hf = tiny.hf_bert(tmp_path, head="mlm")
    mine, theirs = _pipelines("fill-mask", as_transformers(ours), hf, minilm_tokenizer)
    texts = TEXTS[:2]
    _assert_fill_mask_equal(mine(texts, top_k=6), theirs(texts, top_k=6))


def test_feature_extraction_on_minilm(minilm_tokenizer, pytestconfig):
    bert = load_impl(pytestconfig, "bert")
    ours = bert.BertModel.from_pretrained(assets.minilm_path())
    hf = tiny.hf_bert(assets.minilm_path())
    mine, theirs = _pipelines("feature-extraction", as_transformers(ours), hf, minilm_tokenizer)
    for text in TEXTS:
        a, b = torch.tensor(mine(text)), torch.tensor(theirs(text))
        assert a.shape == b.shape == (1, len(minilm_tokenizer(text).input_ids), 384)
        assert_close(a, b, name=f"features of {text!r}", atol=1e-5)


def test_text_classification_on_minilm(tmp_path, minilm_tokenizer, pytestconfig):
    bert = load_impl(pytestconfig, "bert")
    ours = _with_head(bert.BertForSequenceClassification, tmp_path, num_labels=3)
    hf = tiny.hf_bert(tmp_path, head="classifier")
    mine, theirs = _pipelines("text-classification", as_transformers(ours), hf, minilm_tokenizer)
    a, b = mine(TEXTS, top_k=None), theirs(TEXTS, top_k=None)
    for x, y in zip(a, b):
        assert [d["label"] for d in x] == [d["label"] for d in y]
        assert sorted(d["label"] for d in x) == ["LABEL_0", "LABEL_1", "LABEL_2"]
        assert_close(torch.tensor([d["score"] for d in x]), torch.tensor([d["score"] for d in y]),
                     name="class scores", atol=1e-5)
    assert mine(TEXTS[0]) == [max(a[0], key=lambda d: d["score"])]  # top_k=1: the best label


@pytest.mark.parametrize("num_labels, problem_type", [(1, None), (4, "multi_label_classification"), (2, None)])
def test_text_classification_pairs_regression_and_multi_label(num_labels, problem_type, tmp_path,
                                                              minilm_tokenizer, pytestconfig):
    """text-classification with text pairs ({"text", "text_pair"}) in batches of 2, a
    regression head (num_labels=1: sigmoid of the one logit, as transformers' pipeline) and
    multi-label (sigmoid per label): the labels and scores of transformers' model; the
    losses of its problem_type too."""
    bert = load_impl(pytestconfig, "bert")
    kwargs = {"num_labels": num_labels} | ({"problem_type": problem_type} if problem_type else {})
    ours = _with_head(bert.BertForSequenceClassification, tmp_path, **kwargs)
    hf = tiny.hf_bert(tmp_path, head="classifier")
    assert hf.config.num_labels == num_labels and hf.config.problem_type == problem_type
    mine, theirs = _pipelines("text-classification", as_transformers(ours), hf, minilm_tokenizer)
    inputs = [{"text": "a man is eating", "text_pair": "someone eats food"}, "hello",
              {"text": "The capital of France", "text_pair": "is Paris, a large city"}]
    for options in ({}, {"top_k": None}, {"function_to_apply": "softmax"}):
        a, b = mine(inputs, batch_size=2, **options), theirs(inputs, batch_size=2, **options)
        rows = lambda r: [x if isinstance(x, list) else [x] for x in r]
        for x, y in zip(rows(a), rows(b)):
            assert [d["label"] for d in x] == [d["label"] for d in y], options
            assert_close(torch.tensor([d["score"] for d in x]), torch.tensor([d["score"] for d in y]),
                         name=f"scores {options}", atol=1e-5)
    enc = minilm_tokenizer(["a man is eating", "hello"], ["someone eats food", "hi there you"],
                           padding=True, return_tensors="pt")
    labels = {1: torch.tensor([0.5, -1.0]), 2: torch.tensor([1, 0])}.get(
        num_labels, torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]]))
    with torch.no_grad():
        assert_close(as_transformers(ours)(**enc, labels=labels).loss, hf(**enc, labels=labels).loss,
                     name="loss", atol=1e-5)


@pytest.fixture(scope="module")
def deberta(tmp_path_factory):
    """A tiny random DebertaV2ForMaskedLM with a WordPiece vocabulary of its 83 ids."""
    folder = tiny.deberta_checkpoint(tmp_path_factory.mktemp("bridge_deberta") / "d", "v2_conv")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(78)]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab=str(folder / "vocab.txt"))
    assert len(tokenizer) == 83 and tokenizer("w3 [MASK]").input_ids == [2, 8, 4, 3]
    return folder, tokenizer


def test_fill_mask_and_features_on_deberta(deberta, pytestconfig):
    folder, tokenizer = deberta
    impl = load_impl(pytestconfig, "deberta")
    texts = ["w1 w2 [MASK] w5 w70", "[MASK] w3 w3 w3"]
    mine, theirs = _pipelines("fill-mask", as_transformers(impl.DebertaV2ForMaskedLM.from_pretrained(folder)),
                              tiny.hf_deberta(folder), tokenizer)
    _assert_fill_mask_equal(mine(texts, top_k=5), theirs(texts, top_k=5))
    hf_body = transformers.DebertaV2Model.from_pretrained(folder, dtype=torch.float32).eval()
    mine, theirs = _pipelines("feature-extraction", as_transformers(impl.DebertaV2Model.from_pretrained(folder)),
                              hf_body, tokenizer)
    for text in texts:
        assert_close(torch.tensor(mine(text)), torch.tensor(theirs(text)), name=f"features of {text!r}")


def test_sentence_transformers_on_our_minilm(pytestconfig):
    """A SentenceTransformer of MiniLM's folder whose Transformer module runs our BertModel
    (its ``model``, the one ``auto_model`` returns) gives sentence-transformers' embeddings of
    transformers' model: mean pooling over real tokens, then normalisation."""
    from sentence_transformers import SentenceTransformer

    bert = load_impl(pytestconfig, "bert")
    reference = SentenceTransformer(str(assets.minilm_path()), device="cpu")
    st = SentenceTransformer(str(assets.minilm_path()), device="cpu")
    ours = bert.BertModel.from_pretrained(assets.minilm_path())
    st[0].model = as_transformers(ours)
    assert st[0].auto_model.mlab_model is ours
    texts = ["A man is eating food.", "Someone is riding a horse in a field, far away.", "ok"]
    a = st.encode(texts, convert_to_tensor=True, batch_size=3)
    b = reference.encode(texts, convert_to_tensor=True, batch_size=3)
    assert a.shape == (3, 384)
    assert_close(a, b, name="sentence embeddings", atol=1e-5)
    assert_close(a.norm(dim=-1), torch.ones(3), name="norms")
