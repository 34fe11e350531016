"""BERT from scratch: your version.

Every function and method below that raises ``NotImplementedError`` is an exercise.
Replace the ``raise`` line with your code; the docstring says what goes in, what comes
out and what usually goes wrong. The exercises, in order:

     1. LayerNorm
     2. Embedding, BertEmbeddings
     3. additive_mask, padding_mask, attention_pattern
     4. BertSelfAttention, BertSelfOutput, BertAttention
     5. gelu, BertIntermediate, BertOutput
     6. BertLayer
     7. BertEncoder, BertModel
     8. BertPooler
     9. BertPredictionHeadTransform, BertLMPredictionHead, mlm_loss, BertForMaskedLM
    10. problem_type_of, classification_loss, BertForSequenceClassification
    11. from_hf_state_dict, to_hf_state_dict

Each has a section in ``mlab_tfs/bert/GUIDE.md``. Check your progress with

    mlab-tfs check bert                                # progress table, first failure explained
    pytest --impl=student mlab_tfs/bert -k attention   # one exercise

Rules: build the layers yourself. No ``nn.MultiheadAttention``, ``F.layer_norm`` /
``nn.LayerNorm``, ``F.scaled_dot_product_attention``, ``nn.Embedding`` / ``F.embedding``
or ``F.gelu``. ``nn.Linear``, ``nn.Parameter``, ``nn.Dropout``, ``nn.ModuleList``,
``nn.ModuleDict``, einops and plain torch ops (matmul, softmax, erf, tanh, indexing,
``F.cross_entropy``, ``F.mse_loss``, ``F.binary_cross_entropy_with_logits``) are fine.

Module names must mirror Hugging Face's (``encoder.layer.0.attention.self.query``...):
the ``__init__`` docstrings give them. That makes loading real checkpoints a name map.

Shapes: B batch, T tokens, S = T keys, C = hidden_size, nh heads, hs = C // nh,
I = intermediate_size, V vocabulary, L = num_labels.

The solution is in ``mlab_tfs/bert/solution.py``; look only after you have tried.
"""

from __future__ import annotations

import math  # noqa: F401  (imported for your code)

import torch
import torch.nn.functional as F  # noqa: F401
from einops import rearrange  # noqa: F401
from torch import nn

from mlab_tfs.bert.solution import (  # given, not exercises  # noqa: F401
    DECODER,
    TARGETS,
    UNUSED,
    WORD_EMBEDDINGS,
    BertConfig,
    BertPreTrainedModel,
    _activation,
    _init_bert_weights,
)
from mlab_tfs.checkpoints import StateDict
from mlab_tfs.inputs import (  # noqa: F401  (use them in the forwards)
    check_attention_mask,
    check_classification_labels,
    check_labels,
    check_position_ids,
    check_token_ids,
    check_token_type_ids,
)
from mlab_tfs.outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """Normalise the last dimension to mean 0, variance 1, then scale and shift."""

    def __init__(self, normalized_shape: int, eps: float = 1e-12):
        """Store ``self.eps`` and two ``nn.Parameter``s of shape (C,): ``weight`` (ones) and
        ``bias`` (zeros). Call ``super().__init__()`` first.

        Note the default eps: BERT's is 1e-12 (``config.layer_norm_eps``), not PyTorch's 1e-5.
        """
        raise NotImplementedError("Exercise 1 (layer norm): see mlab_tfs/bert/GUIDE.md#1-layer-norm")

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., C). Returns the same shape:

            y = (x - mean) / sqrt(var + eps) * weight + bias

        mean and var over the last dimension (keepdim=True). Pitfalls: var is the *biased*
        variance (divide by C; ``unbiased=False``), and eps goes *inside* the sqrt.
        Hint: compute on ``x.float()`` and cast back to ``x.dtype``.
        """
        raise NotImplementedError("Exercise 1 (layer norm): see mlab_tfs/bert/GUIDE.md#1-layer-norm")


class Embedding(nn.Module):
    """A lookup table: row i of ``weight`` is the vector for id i (with an optional padding row)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        """One ``nn.Parameter`` ``weight`` (num_embeddings, embedding_dim) drawn from a standard
        normal (the models re-initialise it), and ``self.padding_idx``.
        """
        raise NotImplementedError("Exercise 2 (embeddings): see mlab_tfs/bert/GUIDE.md#2-embeddings")

    def forward(self, ids: Tensor) -> Tensor:
        """ids: integers of any shape (...). Returns (..., embedding_dim): ``weight[ids]``.

        With ``padding_idx`` set, the lookup is the same but the padding row must get *no
        gradient*, as with ``nn.Embedding(padding_idx=...)``, which transformers' BERT uses
        for word embeddings. Hint: ``torch.where(is_pad[..., None], out.detach(), out)``.
        """
        raise NotImplementedError("Exercise 2 (embeddings): see mlab_tfs/bert/GUIDE.md#2-embeddings")


class BertEmbeddings(nn.Module):
    """word + position + token type embeddings, then layer norm and dropout."""

    def __init__(self, config: BertConfig):
        """Create (names matter):
        - ``word_embeddings``: Embedding(vocab_size, C, padding_idx=config.pad_token_id);
        - ``position_embeddings``: Embedding(max_position_embeddings, C);
        - ``token_type_embeddings``: Embedding(type_vocab_size, C);
        - ``LayerNorm``: LayerNorm(C, eps=config.layer_norm_eps) (capital L, as in checkpoints);
        - ``dropout``: nn.Dropout(config.hidden_dropout_prob).
        """
        raise NotImplementedError("Exercise 2 (embeddings): see mlab_tfs/bert/GUIDE.md#2-embeddings")

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        """input_ids (B, T); token_type_ids and position_ids (B, T) or (1, T).
        Returns dropout(LayerNorm(word + token_type + position)), (B, T, C).
        """
        raise NotImplementedError("Exercise 2 (embeddings): see mlab_tfs/bert/GUIDE.md#2-embeddings")


def additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """bool mask (True = allowed), any shape -> same shape in dtype: 0 where True,
    ``torch.finfo(dtype).min`` where False (not -inf: an all-padding row would give NaN).
    Hint: ``torch.where`` with a 0-dim zero of the right dtype and device.
    """
    raise NotImplementedError(
        "Exercise 3 (attention pattern): see mlab_tfs/bert/GUIDE.md#3-attention-pattern-and-padding-mask")


def padding_mask(attention_mask: Tensor) -> Tensor:
    """attention_mask (B, S), 1 = real token, 0 = padding -> bool (B, 1, 1, S), True where
    a key may be attended to.

    The mask is on *keys* (the last dim of the scores (B, nh, T, S)): no query looks at
    padding. It broadcasts over heads and queries. BERT is bidirectional: no causal mask.
    """
    raise NotImplementedError(
        "Exercise 3 (attention pattern): see mlab_tfs/bert/GUIDE.md#3-attention-pattern-and-padding-mask")


def attention_pattern(q: Tensor, k: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """Softmax attention probabilities.

    q: (B, nh, T, hs), k: (B, nh, S, hs); mask: None or bool broadcastable to (B, nh, T, S),
    True = may attend; scale: 1 / sqrt(hs). Returns (B, nh, T, S), rows summing to 1:

        softmax(q @ k^T * scale + additive_mask(mask), dim=-1)

    Pitfalls: softmax over keys (dim=-1); add the mask, don't multiply by it.
    """
    raise NotImplementedError(
        "Exercise 3 (attention pattern): see mlab_tfs/bert/GUIDE.md#3-attention-pattern-and-padding-mask")


class BertSelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: separate query, key and value projections."""

    def __init__(self, config: BertConfig):
        """Create ``query``, ``key``, ``value`` (each nn.Linear(C, C)), ``dropout``
        (nn.Dropout(config.attention_probs_dropout_prob), applied to the pattern),
        ``self.num_attention_heads``, ``self.head_dim`` (config.head_dim) and
        ``self.scale = head_dim ** -0.5``. You may ignore ``config.attn_implementation``.
        """
        raise NotImplementedError("Exercise 4 (attention): see mlab_tfs/bert/GUIDE.md#4-attention")

    def forward(
        self, x: Tensor, mask: Tensor | None = None, output_attentions: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, C); mask: None or bool (B, 1, 1, S) from padding_mask.

        Returns (y, pattern): y (B, T, C) is the heads' outputs merged back, *before* any
        output projection (that is BertSelfOutput's); pattern (B, nh, T, S) if
        output_attentions else None.

        Steps: query/key/value -> heads "b t (nh hs) -> b nh t hs" -> attention_pattern ->
        dropout -> @ v -> "b nh t hs -> b t (nh hs)".
        """
        raise NotImplementedError("Exercise 4 (attention): see mlab_tfs/bert/GUIDE.md#4-attention")


class BertSelfOutput(nn.Module):
    """Output projection, dropout, then the post-LN residual: LayerNorm(dense(y) + x)."""

    def __init__(self, config: BertConfig):
        """Create ``dense`` (nn.Linear(C, C)), ``LayerNorm`` (eps=config.layer_norm_eps) and
        ``dropout`` (config.hidden_dropout_prob)."""
        raise NotImplementedError("Exercise 4 (attention): see mlab_tfs/bert/GUIDE.md#4-attention")

    def forward(self, y: Tensor, x: Tensor) -> Tensor:
        """y: the attention heads (B, T, C); x: the attention's input (B, T, C).
        Returns LayerNorm(dropout(dense(y)) + x): BERT normalises *after* the residual add.
        """
        raise NotImplementedError("Exercise 4 (attention): see mlab_tfs/bert/GUIDE.md#4-attention")


class BertAttention(nn.Module):
    """Self-attention with its output projection and residual layer norm."""

    def __init__(self, config: BertConfig):
        """Create ``self.self = BertSelfAttention(config)`` (yes, ``self.self``: that is the
        checkpoint name) and ``self.output = BertSelfOutput(config)``."""
        raise NotImplementedError("Exercise 4 (attention): see mlab_tfs/bert/GUIDE.md#4-attention")

    def forward(
        self, x: Tensor, mask: Tensor | None = None, output_attentions: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, C). Returns (output(self(x)), x) (B, T, C), and the pattern or None."""
        raise NotImplementedError("Exercise 4 (attention): see mlab_tfs/bert/GUIDE.md#4-attention")


def gelu(x: Tensor) -> Tensor:
    """The exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))). Any shape.

    Pitfall: GPT-2's tanh approximation (gelu_new) differs by up to ~5e-4: not BERT's.
    """
    raise NotImplementedError("Exercise 5 (mlp): see mlab_tfs/bert/GUIDE.md#5-mlp")


class BertIntermediate(nn.Module):
    """First half of the MLP: C -> I, then the activation."""

    def __init__(self, config: BertConfig):
        """Create ``dense`` = nn.Linear(C, config.intermediate_size) and pick the activation
        from ``config.hidden_act``: "gelu" (the checkpoints' value) is your ``gelu``; for
        other names you may use the given ``_activation(name)``."""
        raise NotImplementedError("Exercise 5 (mlp): see mlab_tfs/bert/GUIDE.md#5-mlp")

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, T, I): activation(dense(x))."""
        raise NotImplementedError("Exercise 5 (mlp): see mlab_tfs/bert/GUIDE.md#5-mlp")


class BertOutput(nn.Module):
    """Second half of the MLP: I -> C, dropout, then the post-LN residual."""

    def __init__(self, config: BertConfig):
        """Create ``dense`` = nn.Linear(I, C), ``LayerNorm`` and ``dropout`` (hidden_dropout_prob)."""
        raise NotImplementedError("Exercise 5 (mlp): see mlab_tfs/bert/GUIDE.md#5-mlp")

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        """h: (B, T, I) from BertIntermediate; x: the MLP's input (B, T, C).
        Returns LayerNorm(dropout(dense(h)) + x), (B, T, C)."""
        raise NotImplementedError("Exercise 5 (mlp): see mlab_tfs/bert/GUIDE.md#5-mlp")


class BertLayer(nn.Module):
    """Post-LN transformer block: x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, config: BertConfig):
        """Create ``attention`` (BertAttention), ``intermediate`` (BertIntermediate) and
        ``output`` (BertOutput)."""
        raise NotImplementedError("Exercise 6 (block): see mlab_tfs/bert/GUIDE.md#6-block")

    def forward(
        self, x: Tensor, mask: Tensor | None = None, output_attentions: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, C). Returns (block output (B, T, C), pattern or None).

        The layer norms live inside ``attention.output`` and ``output``: the block only
        wires them. Pitfall: the MLP reads the *attention's* output, and its residual adds
        that same tensor, not the block's input.
        """
        raise NotImplementedError("Exercise 6 (block): see mlab_tfs/bert/GUIDE.md#6-block")


class BertEncoder(nn.Module):
    """num_hidden_layers BertLayers in a row."""

    def __init__(self, config: BertConfig):
        """Create ``self.layer``: an nn.ModuleList of config.num_hidden_layers BertLayers."""
        raise NotImplementedError("Exercise 7 (model): see mlab_tfs/bert/GUIDE.md#7-model")

    def forward(
        self, x: Tensor, mask: Tensor | None = None, output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, ...] | None, tuple[Tensor, ...] | None]:
        """x: the embeddings (B, T, C). Returns a 3-tuple:
        - the last layer's output (B, T, C);
        - if output_hidden_states: num_hidden_layers + 1 tensors, the embeddings then each
          layer's output; else None;
        - if output_attentions: one pattern (B, nh, T, T) per layer; else None.
        """
        raise NotImplementedError("Exercise 7 (model): see mlab_tfs/bert/GUIDE.md#7-model")


class BertPooler(nn.Module):
    """tanh(dense(hidden state of the first token, [CLS]))."""

    def __init__(self, config: BertConfig):
        """Create ``dense`` = nn.Linear(C, C)."""
        raise NotImplementedError("Exercise 8 (pooler): see mlab_tfs/bert/GUIDE.md#8-pooler")

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, C). Returns tanh(dense(x[:, 0])), (B, C): the first token only, not a mean."""
        raise NotImplementedError("Exercise 8 (pooler): see mlab_tfs/bert/GUIDE.md#8-pooler")


# ---------------------------------------------------------------------------------------
# Hugging Face checkpoints
# ---------------------------------------------------------------------------------------


def from_hf_state_dict(hf_state: StateDict, config: BertConfig, target: str = "model") -> StateDict:
    """A Hugging Face BERT state dict as the state dict of one of our models.

    hf_state: name -> tensor from a BertModel checkpoint (keys like ``embeddings...``, or
    ``bert.embeddings...``), a BertForMaskedLM one (``bert.*`` + ``cls.predictions.*``),
    a BertForPreTraining one (also ``bert.pooler.*`` and ``cls.seq_relationship.*``) or a
    BertForSequenceClassification one (``bert.*`` + ``classifier.*``).
    target: "model" (BertModel: keys without ``bert.``), "mlm" (BertForMaskedLM) or
    "classifier" (BertForSequenceClassification): both with ``bert.``.

    Steps (see the guide's table):
    - drop the buffers ``embeddings.position_ids`` / ``embeddings.token_type_ids``;
    - rename ``LayerNorm.gamma``/``LayerNorm.beta`` (TF-converted checkpoints) to weight/bias;
    - ``cls.predictions.decoder.bias``, where present: with ``config.tie_word_embeddings``
      it is the same as ``cls.predictions.bias``: drop it (use it as the bias if that one is
      missing); untied, it is the bias transformers' decoder adds: use it as
      ``cls.predictions.bias``;
    - put every key in the ``bert.`` / ``cls.`` / ``classifier.`` layout, then drop the keys
      the target doesn't use (the given ``UNUSED[target]`` prefixes) and, for "model",
      remove the ``bert.`` prefix;
    - for "mlm" with ``config.tie_word_embeddings``: ``cls.predictions.decoder.weight`` is
      the word-embedding tensor itself.
    Leave anything else as it is: the loader reports keys that don't fit.
    """
    raise NotImplementedError("Exercise 11 (loading): see mlab_tfs/bert/GUIDE.md#11-loading-weights")


def to_hf_state_dict(state: StateDict, config: BertConfig, target: str = "model") -> StateDict:
    """Our state dict in the layout transformers' matching class saves and loads.

    Our names already are transformers'. For "mlm": with a tied decoder, leave out
    ``cls.predictions.decoder.weight`` (transformers rebuilds it from the word embeddings);
    untied, also store ``cls.predictions.decoder.bias`` (= ``cls.predictions.bias``).
    """
    raise NotImplementedError("Exercise 11 (loading): see mlab_tfs/bert/GUIDE.md#11-loading-weights")


# ---------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------


class BertModel(BertPreTrainedModel, nn.Module):
    """Embeddings, num_hidden_layers post-LN blocks and (optionally) the pooler."""

    # Given: BertPreTrainedModel's from_pretrained / save_pretrained use these.
    target = "model"
    head_prefixes = ("pooler.",)
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "model"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "model"))

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        """``super().__init__()``, store ``self.config``, create ``embeddings``
        (BertEmbeddings), ``encoder`` (BertEncoder) and ``pooler``: BertPooler(config) if
        add_pooling_layer else None (exercise 8; until then the tests pass
        add_pooling_layer=False). Last, ``_init_bert_weights(self, config)`` (given).
        """
        raise NotImplementedError("Exercise 7 (model): see mlab_tfs/bert/GUIDE.md#7-model")

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutput:
        """input_ids (B, T); attention_mask (B, T) 1 = real token; token_type_ids and
        position_ids (B, T), (1, T) or (T,), defaulting to all 0 and to 0..T-1.

        Returns ``BaseModelOutput(last_hidden_state=(B, T, C), pooler_output=(B, C) or None,
        hidden_states=..., attentions=...)``.

        labels is there so that all BERT classes share one signature: BertModel has no head,
        so raise a ValueError naming labels if any are given.

        Start with the given checks, so bad input fails clearly:

            cfg = self.config
            check_token_ids("input_ids", input_ids, cfg.vocab_size)
            B, T = input_ids.shape
            # T > cfg.max_position_embeddings: raise a ValueError naming max_position_embeddings
            position_ids = check_position_ids("position_ids", position_ids, (B, T), cfg.max_position_embeddings)
            token_type_ids = check_token_type_ids("token_type_ids", token_type_ids, (B, T), cfg.type_vocab_size)
            pad = check_attention_mask("attention_mask", attention_mask, (B, T))  # bool (B, T)

        (each only when that argument is given). Then padding_mask, embeddings, encoder,
        pooler.
        """
        raise NotImplementedError("Exercise 7 (model): see mlab_tfs/bert/GUIDE.md#7-model")


class BertPredictionHeadTransform(nn.Module):
    """The MLM head's first step: dense -> activation -> layer norm, (B, T, C) -> (B, T, C)."""

    def __init__(self, config: BertConfig):
        """Create ``dense`` = nn.Linear(C, C), the activation of config.hidden_act (erf GELU)
        and ``LayerNorm`` (eps=config.layer_norm_eps)."""
        raise NotImplementedError("Exercise 9 (mlm head): see mlab_tfs/bert/GUIDE.md#9-mlm-head")

    def forward(self, x: Tensor) -> Tensor:
        """LayerNorm(activation(dense(x)))."""
        raise NotImplementedError("Exercise 9 (mlm head): see mlab_tfs/bert/GUIDE.md#9-mlm-head")


class BertLMPredictionHead(nn.Module):
    """transform, then the decoder to the vocabulary plus its own bias."""

    def __init__(self, config: BertConfig):
        """Create ``transform`` (BertPredictionHeadTransform), ``decoder`` =
        nn.Linear(C, V, bias=False) (BertForMaskedLM ties its weight to the word embeddings)
        and ``bias`` = nn.Parameter(torch.zeros(V)): the decoder's own bias, never tied."""
        raise NotImplementedError("Exercise 9 (mlm head): see mlab_tfs/bert/GUIDE.md#9-mlm-head")

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) -> logits (B, T, V): decoder(transform(x)) + bias."""
        raise NotImplementedError("Exercise 9 (mlm head): see mlab_tfs/bert/GUIDE.md#9-mlm-head")


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """logits (B, T, V), labels (B, T) with -100 where no loss is wanted. Returns the mean
    cross-entropy over labelled positions. No shift: each position predicts its own token.
    """
    raise NotImplementedError("Exercise 9 (mlm head): see mlab_tfs/bert/GUIDE.md#9-mlm-head")


class BertForMaskedLM(BertPreTrainedModel, nn.Module):
    """BertModel (no pooler) with the masked-language-modelling head."""

    target = "mlm"
    head_prefixes = ("cls.",)
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "mlm"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "mlm"))
    tied_weights = {DECODER: WORD_EMBEDDINGS}  # with tie_word_embeddings

    def __init__(self, config: BertConfig):
        """Store ``self.config``; create ``bert`` = BertModel(config, add_pooling_layer=False)
        and ``cls`` = nn.ModuleDict(dict(predictions=BertLMPredictionHead(config))) (HF's
        names: cls.predictions.*); ``_init_bert_weights(self.cls, config)``; then, if
        config.tie_word_embeddings, tie: ``self.cls.predictions.decoder.weight =
        self.bert.embeddings.word_embeddings.weight`` (the Parameter itself, not a copy).
        """
        raise NotImplementedError("Exercise 9 (mlm head): see mlab_tfs/bert/GUIDE.md#9-mlm-head")

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> MaskedLMOutput:
        """As BertModel.forward, plus logits (B, T, V) and, given labels (B, T) (check them with
        ``check_labels("labels", labels, tuple(input_ids.shape), vocab_size)``), the mlm_loss.
        Returns MaskedLMOutput(loss, logits, hidden_states, attentions)."""
        raise NotImplementedError("Exercise 9 (mlm head): see mlab_tfs/bert/GUIDE.md#9-mlm-head")


def problem_type_of(config: BertConfig, labels: Tensor) -> str:
    """Which loss transformers uses: ``config.problem_type`` if set; else "regression" when
    num_labels == 1; else "single_label_classification" for integer (long or int) labels;
    else "multi_label_classification"."""
    raise NotImplementedError("Exercise 10 (classifier): see mlab_tfs/bert/GUIDE.md#10-classifier")


def classification_loss(logits: Tensor, labels: Tensor, problem_type: str) -> Tensor:
    """logits (B, L). Returns a scalar:
    - "regression": mean squared error; with L == 1 compare logits (B,) (squeezed) with
      labels (B,), as floats;
    - "single_label_classification": cross-entropy with class ids (B,) (-100 ignored);
    - "multi_label_classification": binary cross-entropy with logits against (B, L) 0/1 floats.
    """
    raise NotImplementedError("Exercise 10 (classifier): see mlab_tfs/bert/GUIDE.md#10-classifier")


class BertForSequenceClassification(BertPreTrainedModel, nn.Module):
    """BertModel, then dropout and a linear classifier on the pooled [CLS] vector."""

    target = "classifier"
    # transformers' BertForMaskedLM has no pooler: fine-tuning from one starts it fresh too.
    head_prefixes = ("classifier.", "bert.pooler.")
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "classifier"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "classifier"))

    def __init__(self, config: BertConfig):
        """Store ``self.config`` and ``self.num_labels``; create ``bert`` (BertModel, with
        pooler), ``dropout`` (config.classifier_dropout, or hidden_dropout_prob when that is
        None) and ``classifier`` = nn.Linear(C, num_labels); ``_init_bert_weights(self.classifier,
        config)``."""
        raise NotImplementedError("Exercise 10 (classifier): see mlab_tfs/bert/GUIDE.md#10-classifier")

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> SequenceClassifierOutput:
        """As BertModel.forward; logits = classifier(dropout(pooler_output)), (B, L). Given
        labels: problem_type = problem_type_of(config, labels); labels =
        check_classification_labels("labels", labels, B, num_labels, problem_type); loss =
        classification_loss(...). Don't write problem_type back into the config."""
        raise NotImplementedError("Exercise 10 (classifier): see mlab_tfs/bert/GUIDE.md#10-classifier")
