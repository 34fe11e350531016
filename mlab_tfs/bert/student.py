"""BERT from scratch: your version.

Every function and method below that raises ``NotImplementedError`` is an exercise.
Replace the ``raise`` line with your code; the docstring says what goes in, what comes
out and what usually goes wrong. The exercises, in order:

     1. BertEmbeddings
     2. padding_mask
     3. BertSelfAttention, BertSelfOutput, BertAttention (with their hook points)
     4. gelu, BertIntermediate, BertOutput
     5. BertLayer
     6. BertEncoder, BertModel
     7. BertPooler
     8. BertPredictionHeadTransform, BertLMPredictionHead, mlm_loss, BertForMaskedLM
     9. problem_type_of, classification_loss, BertForSequenceClassification
    10. from_hf_state_dict, to_hf_state_dict

BERT reuses your GPT-2 layer norm, embedding and attention pattern (and your gelu_new):
they are imported below from ``mlab_tfs/gpt2/student.py``, so do GPT-2's exercises 1-3
and 6 first. BERT's layer norm is the same function with eps=config.layer_norm_eps (1e-12),
its embedding the same table with a padding row.

Each exercise has a section in ``mlab_tfs/bert/GUIDE.md``. Check your progress with

    mlab-tfs check bert                                # progress table, first failure explained
    pytest --impl=student mlab_tfs/bert --exercise attention   # one exercise

Rules: build the layers yourself. No ``nn.MultiheadAttention``, ``F.layer_norm`` /
``nn.LayerNorm``, ``F.scaled_dot_product_attention``, ``nn.Embedding`` / ``F.embedding``
or ``F.gelu``. ``nn.Linear``, ``nn.Parameter``, ``nn.Dropout``, ``nn.ModuleList``,
``nn.ModuleDict``, einops and plain torch ops (matmul, softmax, erf, tanh, indexing,
``F.cross_entropy``, ``F.mse_loss``, ``F.binary_cross_entropy_with_logits``) are fine.

Module names must mirror Hugging Face's (``encoder.layer.0.attention.self.query``...):
the ``__init__`` docstrings give them. That makes loading real checkpoints a name map.

Hook points (``HookPoint()``, an identity module) go where the docstrings say, named as
there: the model then reaches them by TransformerLens's names (``blocks.0.attn.hook_pattern``)
in ``run_with_cache`` / ``run_with_hooks``, and fills ``output_attentions`` /
``output_hidden_states`` from them. ``x = self.hook_name(x)``: pass the activation through
and use what comes back (a hook may replace it).

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

from mlab_tfs.activations import get_activation  # noqa: F401  (given: the other activations)
from mlab_tfs.attention import check_attn_implementation, check_bool_mask  # noqa: F401
from mlab_tfs.bert.given import (  # given, not exercises  # noqa: F401
    DECODER,
    PROBLEM_TYPES,
    TARGETS,
    UNUSED,
    WORD_EMBEDDINGS,
    BertConfig,
    BertPreTrainedModel,
    init_bert_weights,
)
from mlab_tfs.checkpoints import StateDict, save_tied_weights_once  # noqa: F401
from mlab_tfs.gpt2.student import Embedding, LayerNorm, attention_pattern, gelu_new  # noqa: F401  (yours, GPT-2)
from mlab_tfs.hooks import HookPoint, capture  # noqa: F401  (given)
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


class BertEmbeddings(nn.Module):
    """word + token type + position embeddings, then layer norm and dropout."""

    def __init__(self, config: BertConfig):
        """Create (names matter), with your GPT-2 Embedding and LayerNorm:
        - ``word_embeddings``: Embedding(vocab_size, C, padding_idx=config.pad_token_id);
        - ``position_embeddings``: Embedding(max_position_embeddings, C);
        - ``token_type_embeddings``: Embedding(type_vocab_size, C);
        - hook points ``hook_embed``, ``hook_pos_embed``, ``hook_token_type_embed``;
        - ``LayerNorm``: LayerNorm(C, eps=config.layer_norm_eps) (capital L, as in checkpoints;
          pass the eps: BERT's 1e-12 is not the class default 1e-5);
        - ``dropout``: nn.Dropout(config.hidden_dropout_prob).
        Build the hook points in the order the forward reaches them (your layer norm's own
        come after these): ``model.hook_dict`` lists them in construction order.
        """
        raise NotImplementedError("Exercise 1 (embeddings): see mlab_tfs/bert/GUIDE.md#1-embeddings")

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        """input_ids (B, T); token_type_ids and position_ids (B, T) or (1, T).
        Returns dropout(LayerNorm(word + token_type + position)), (B, T, C).

        Each lookup passes through its hook point as (B, T, C), in this order: ``hook_embed(word)``,
        ``hook_pos_embed(pos.expand_as(word))``, ``hook_token_type_embed(types.expand_as(word))``
        (a (1, T, C) lookup broadcast to the batch, as TransformerLens's hooks see it).
        Sum in transformers' order, (word + token_type) + position: float sums depend on it.
        """
        raise NotImplementedError("Exercise 1 (embeddings): see mlab_tfs/bert/GUIDE.md#1-embeddings")


def padding_mask(attention_mask: Tensor) -> Tensor:
    """attention_mask (B, S), 1 = real token, 0 = padding -> bool (B, 1, 1, S), True where
    a key may be attended to.

    The mask is on *keys* (the last dim of the scores (B, nh, T, S)): no query looks at
    padding. It broadcasts over heads and queries. BERT is bidirectional: no causal mask.
    """
    raise NotImplementedError("Exercise 2 (padding mask): see mlab_tfs/bert/GUIDE.md#2-padding-mask")


class BertSelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: separate query, key and value projections."""

    def __init__(self, config: BertConfig):
        """Create ``query``, ``key``, ``value`` (each nn.Linear(C, C)), ``dropout``
        (nn.Dropout(config.attention_probs_dropout_prob), applied to the pattern),
        ``self.num_attention_heads``, ``self.head_dim`` (config.head_dim),
        ``self.scale = head_dim ** -0.5``, ``self.config = config`` and the hook points
        ``hook_q``, ``hook_k``, ``hook_v``, ``hook_attn_scores``, ``hook_pattern``, ``hook_z``.
        """
        raise NotImplementedError("Exercise 3 (attention): see mlab_tfs/bert/GUIDE.md#3-attention")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, T, C); mask: None or bool (B, 1, 1, S) from padding_mask.

        Returns y (B, T, C): the heads' outputs merged back, *before* any output projection
        (that is BertSelfOutput's). Steps:

            q, k, v = hook_q/k/v(lin(x) as "b t (nh hs) -> b t nh hs")     (B, T, nh, hs)
            -> "b t nh hs -> b nh t hs"
            pattern = hook_pattern(attention_pattern(q, k, mask, self.scale,
                                                     self.hook_attn_scores))  (B, nh, T, S)
            y = dropout(pattern) @ v                                      (B, nh, T, hs)
            z = hook_z(y as "b nh t hs -> b t nh hs"), then "b t nh hs -> b t (nh hs)"

        You may ignore ``config.attn_implementation`` (the solution calls the fused kernel
        when no hook needs the pattern; you always take this path).
        """
        raise NotImplementedError("Exercise 3 (attention): see mlab_tfs/bert/GUIDE.md#3-attention")


class BertSelfOutput(nn.Module):
    """Output projection, dropout, then the post-LN residual: LayerNorm(dense(y) + x)."""

    def __init__(self, config: BertConfig):
        """Create ``dense`` (nn.Linear(C, C)), ``dropout`` (config.hidden_dropout_prob), hook
        points ``hook_attn_out``, ``hook_resid_mid`` and then ``LayerNorm``
        (eps=config.layer_norm_eps): construction order is the hook points' order."""
        raise NotImplementedError("Exercise 3 (attention): see mlab_tfs/bert/GUIDE.md#3-attention")

    def forward(self, y: Tensor, x: Tensor) -> Tensor:
        """y: the attention heads (B, T, C); x: the attention's input (B, T, C).
        Returns LayerNorm(hook_resid_mid(hook_attn_out(dropout(dense(y))) + x)): BERT
        normalises *after* the residual add. hook_attn_out is what is added to the residual.
        """
        raise NotImplementedError("Exercise 3 (attention): see mlab_tfs/bert/GUIDE.md#3-attention")


class BertAttention(nn.Module):
    """Self-attention with its output projection and residual layer norm."""

    def __init__(self, config: BertConfig):
        """Create ``self.self = BertSelfAttention(config)`` (yes, ``self.self``: that is the
        checkpoint name) and ``self.output = BertSelfOutput(config)``."""
        raise NotImplementedError("Exercise 3 (attention): see mlab_tfs/bert/GUIDE.md#3-attention")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, T, C). Returns output(self(x, mask), x), (B, T, C)."""
        raise NotImplementedError("Exercise 3 (attention): see mlab_tfs/bert/GUIDE.md#3-attention")


def gelu(x: Tensor) -> Tensor:
    """The exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))). Any shape.

    Pitfall: GPT-2's tanh approximation (gelu_new) differs by up to ~5e-4: not BERT's.
    """
    raise NotImplementedError("Exercise 4 (mlp): see mlab_tfs/bert/GUIDE.md#4-mlp")


class BertIntermediate(nn.Module):
    """First half of the MLP: C -> I, then the activation."""

    def __init__(self, config: BertConfig):
        """Create ``dense`` = nn.Linear(C, config.intermediate_size), ``self.act`` =
        ``get_activation(config.hidden_act, own={"gelu": gelu, "gelu_new": gelu_new})`` (the
        checkpoints say "gelu": your erf GELU runs; the table gives the rarer ones) and hook
        points ``hook_pre``, ``hook_post``."""
        raise NotImplementedError("Exercise 4 (mlp): see mlab_tfs/bert/GUIDE.md#4-mlp")

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, T, I): hook_post(act(hook_pre(dense(x))))."""
        raise NotImplementedError("Exercise 4 (mlp): see mlab_tfs/bert/GUIDE.md#4-mlp")


class BertOutput(nn.Module):
    """Second half of the MLP: I -> C, dropout, then the post-LN residual."""

    def __init__(self, config: BertConfig):
        """Create ``dense`` = nn.Linear(I, C), ``dropout`` (hidden_dropout_prob), hook points
        ``hook_mlp_out``, ``hook_resid_post`` and then ``LayerNorm`` (eps=config.layer_norm_eps)."""
        raise NotImplementedError("Exercise 4 (mlp): see mlab_tfs/bert/GUIDE.md#4-mlp")

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        """h: (B, T, I) from BertIntermediate; x: the MLP's input (B, T, C).
        Returns LayerNorm(hook_resid_post(hook_mlp_out(dropout(dense(h))) + x)), (B, T, C)."""
        raise NotImplementedError("Exercise 4 (mlp): see mlab_tfs/bert/GUIDE.md#4-mlp")


class BertLayer(nn.Module):
    """Post-LN transformer block: x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, config: BertConfig):
        """Create ``hook_resid_pre`` (first, so that the hook points list in order),
        ``attention`` (BertAttention), ``intermediate`` (BertIntermediate), ``output``
        (BertOutput) and ``hook_normalized_resid_post``."""
        raise NotImplementedError("Exercise 5 (block): see mlab_tfs/bert/GUIDE.md#5-block")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, T, C). Returns the block output (B, T, C).

        hook_resid_pre on the input, hook_normalized_resid_post on the output. The layer
        norms live inside ``attention.output`` and ``output``: the block only wires them.
        Pitfall: the MLP reads the *attention's* output, and its residual adds that same
        tensor, not the block's input.
        """
        raise NotImplementedError("Exercise 5 (block): see mlab_tfs/bert/GUIDE.md#5-block")


class BertEncoder(nn.Module):
    """num_hidden_layers BertLayers in a row."""

    def __init__(self, config: BertConfig):
        """Create ``self.layer``: an nn.ModuleList of config.num_hidden_layers BertLayers."""
        raise NotImplementedError("Exercise 6 (model): see mlab_tfs/bert/GUIDE.md#6-model")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: the embeddings (B, T, C). Returns the last layer's output (B, T, C)."""
        raise NotImplementedError("Exercise 6 (model): see mlab_tfs/bert/GUIDE.md#6-model")


class BertPooler(nn.Module):
    """tanh(dense(hidden state of the first token, [CLS]))."""

    def __init__(self, config: BertConfig):
        """Create ``dense`` = nn.Linear(C, C)."""
        raise NotImplementedError("Exercise 7 (pooler): see mlab_tfs/bert/GUIDE.md#7-pooler")

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, C). Returns tanh(dense(x[:, 0])), (B, C): the first token only, not a mean."""
        raise NotImplementedError("Exercise 7 (pooler): see mlab_tfs/bert/GUIDE.md#7-pooler")


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
    raise NotImplementedError("Exercise 10 (loading): see mlab_tfs/bert/GUIDE.md#10-loading-weights")


def to_hf_state_dict(state: StateDict, config: BertConfig, target: str = "model") -> StateDict:
    """Our state dict in the layout transformers' matching class saves and loads.

    Our names already are transformers'. For "mlm": with a tied decoder, leave out
    ``cls.predictions.decoder.weight`` (transformers rebuilds it from the word embeddings);
    untied, also store ``cls.predictions.decoder.bias`` (= ``cls.predictions.bias``).
    """
    raise NotImplementedError("Exercise 10 (loading): see mlab_tfs/bert/GUIDE.md#10-loading-weights")


# ---------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------


class BertModel(BertPreTrainedModel, nn.Module):
    """Embeddings, num_hidden_layers post-LN blocks and (optionally) the pooler."""

    # Given: BertPreTrainedModel's from_pretrained / save_pretrained use these.
    head_prefixes = ("pooler.",)
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "model"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "model"))

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        """``super().__init__()``, store ``self.config``, create ``embeddings``
        (BertEmbeddings), the hook point ``hook_full_embed``, ``encoder`` (BertEncoder) and ``pooler``: BertPooler(config) if
        add_pooling_layer else None (exercise 7; until then the tests pass
        add_pooling_layer=False). Last, ``init_bert_weights(self, config)`` (given).
        """
        raise NotImplementedError("Exercise 6 (model): see mlab_tfs/bert/GUIDE.md#6-model")

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None, output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """input_ids (B, T); attention_mask (B, T) 1 = real token; token_type_ids and
        position_ids (B, T), (1, T) or (T,), defaulting to all 0 and to 0..T-1.

        Returns ``BaseModelOutput(last_hidden_state=(B, T, C), pooler_output=(B, C) or None,
        hidden_states=..., attentions=...)``.

        Start with the given checks, so bad input fails clearly:

            cfg = self.config
            check_token_ids("input_ids", input_ids, cfg.vocab_size)
            B, T = input_ids.shape
            # T > cfg.max_position_embeddings: raise a ValueError naming max_position_embeddings
            position_ids = check_position_ids("position_ids", position_ids, (B, T), cfg.max_position_embeddings)
            token_type_ids = check_token_type_ids("token_type_ids", token_type_ids, (B, T), cfg.type_vocab_size)
            pad = check_attention_mask("attention_mask", attention_mask, (B, T))  # bool (B, T)

        (each only when that argument is given). Then padding_mask, embeddings,
        hook_full_embed, encoder, pooler.

        hidden_states and attentions come from the hook points, not from the layers: wrap
        the embeddings and encoder in ``with capture(points) as seen:`` (given,
        mlab_tfs.hooks), points being, on request, ``hook_full_embed`` and each layer's
        ``hook_normalized_resid_post`` (num_hidden_layers + 1 of (B, T, C)), and each
        layer's ``attention.self.hook_pattern`` (num_hidden_layers of (B, nh, T, T));
        ``seen`` then holds their values in that order. Each is None when not requested.
        """
        raise NotImplementedError("Exercise 6 (model): see mlab_tfs/bert/GUIDE.md#6-model")


class BertPredictionHeadTransform(nn.Module):
    """The MLM head's first step: dense -> activation -> layer norm, (B, T, C) -> (B, T, C)."""

    def __init__(self, config: BertConfig):
        """Create ``dense`` = nn.Linear(C, C), the activation of config.hidden_act (erf GELU)
        and ``LayerNorm`` (eps=config.layer_norm_eps)."""
        raise NotImplementedError("Exercise 8 (mlm head): see mlab_tfs/bert/GUIDE.md#8-mlm-head")

    def forward(self, x: Tensor) -> Tensor:
        """LayerNorm(activation(dense(x)))."""
        raise NotImplementedError("Exercise 8 (mlm head): see mlab_tfs/bert/GUIDE.md#8-mlm-head")


class BertLMPredictionHead(nn.Module):
    """transform, then the decoder to the vocabulary plus its own bias."""

    def __init__(self, config: BertConfig):
        """Create ``transform`` (BertPredictionHeadTransform), ``decoder`` =
        nn.Linear(C, V, bias=False) (BertForMaskedLM ties its weight to the word embeddings)
        and ``bias`` = nn.Parameter(torch.zeros(V)): the decoder's own bias, never tied."""
        raise NotImplementedError("Exercise 8 (mlm head): see mlab_tfs/bert/GUIDE.md#8-mlm-head")

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) -> logits (B, T, V): decoder(transform(x)) + bias."""
        raise NotImplementedError("Exercise 8 (mlm head): see mlab_tfs/bert/GUIDE.md#8-mlm-head")


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """logits (B, T, V), labels (B, T) with -100 where no loss is wanted. Returns the mean
    cross-entropy over labelled positions. No shift: each position predicts its own token.
    """
    raise NotImplementedError("Exercise 8 (mlm head): see mlab_tfs/bert/GUIDE.md#8-mlm-head")


class BertForMaskedLM(BertPreTrainedModel, nn.Module):
    """BertModel (no pooler) with the masked-language-modelling head."""

    head_prefixes = ("cls.",)
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "mlm"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "mlm"))
    tied_weights = {DECODER: WORD_EMBEDDINGS}  # with tie_word_embeddings

    def __init__(self, config: BertConfig):
        """Store ``self.config``; create ``bert`` = BertModel(config, add_pooling_layer=False)
        and ``cls`` = nn.ModuleDict(dict(predictions=BertLMPredictionHead(config))) (HF's
        names: cls.predictions.*); ``init_bert_weights(self.cls, config)``; then, if
        config.tie_word_embeddings, tie: ``self.cls.predictions.decoder.weight =
        self.bert.embeddings.word_embeddings.weight`` (the Parameter itself, not a copy).
        """
        raise NotImplementedError("Exercise 8 (mlm head): see mlab_tfs/bert/GUIDE.md#8-mlm-head")

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None, labels: Tensor | None = None, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> MaskedLMOutput:
        """As BertModel.forward, plus logits (B, T, V) and, given labels (B, T) (check them with
        ``check_labels("labels", labels, tuple(input_ids.shape), vocab_size)``), the mlm_loss.
        Returns MaskedLMOutput(loss, logits, hidden_states, attentions)."""
        raise NotImplementedError("Exercise 8 (mlm head): see mlab_tfs/bert/GUIDE.md#8-mlm-head")


def problem_type_of(config: BertConfig, labels: Tensor) -> str:
    """Which loss transformers uses: ``config.problem_type`` if set; else "regression" when
    num_labels == 1; else "single_label_classification" for integer (long or int) labels;
    else "multi_label_classification" (float labels, and other integer dtypes such as int16).
    Source: transformers' ``BertForSequenceClassification.forward`` (modeling_bert.py); it is
    there for compatibility with it: see GUIDE.md#the-problem_type-rule-optional."""
    raise NotImplementedError("Exercise 9 (classifier): see mlab_tfs/bert/GUIDE.md#9-classifier")


def classification_loss(logits: Tensor, labels: Tensor, problem_type: str) -> Tensor:
    """logits (B, L). Returns a scalar:
    - "regression": mean squared error; with L == 1 compare logits (B,) (squeezed) with
      labels (B,), as floats;
    - "single_label_classification": cross-entropy with class ids (B,) (-100 ignored);
    - "multi_label_classification": binary cross-entropy with logits against (B, L) 0/1 floats.
    """
    raise NotImplementedError("Exercise 9 (classifier): see mlab_tfs/bert/GUIDE.md#9-classifier")


class BertForSequenceClassification(BertPreTrainedModel, nn.Module):
    """BertModel, then dropout and a linear classifier on the pooled [CLS] vector."""

    # transformers' BertForMaskedLM has no pooler: fine-tuning from one starts it fresh too.
    head_prefixes = ("classifier.", "bert.pooler.")
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "classifier"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "classifier"))

    def __init__(self, config: BertConfig):
        """Store ``self.config`` and ``self.num_labels``; create ``bert`` (BertModel, with
        pooler), ``dropout`` (config.classifier_dropout, or hidden_dropout_prob when that is
        None) and ``classifier`` = nn.Linear(C, num_labels); ``init_bert_weights(self.classifier,
        config)``."""
        raise NotImplementedError("Exercise 9 (classifier): see mlab_tfs/bert/GUIDE.md#9-classifier")

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None, labels: Tensor | None = None, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> SequenceClassifierOutput:
        """As BertModel.forward; logits = classifier(dropout(pooler_output)), (B, L). Given
        labels: problem_type = problem_type_of(config, labels); labels =
        check_classification_labels("labels", labels, B, num_labels, problem_type); loss =
        classification_loss(...). Don't write problem_type back into the config."""
        raise NotImplementedError("Exercise 9 (classifier): see mlab_tfs/bert/GUIDE.md#9-classifier")
