"""BERT from scratch: the solution.

Module names mirror Hugging Face's ``BertModel`` (``embeddings.word_embeddings``,
``encoder.layer.0.attention.self.query``...), so loading a checkpoint is a name map:
no transposes (BERT uses plain linear layers), only prefixes and the tied MLM decoder.

BERT reuses GPT-2's layer norm, embedding and attention pattern (``mlab_tfs.gpt2.solution``,
one precision rule: statistics in fp32 for half inputs) and the activation table
(``mlab_tfs.activations``); what is BERT's own is here. The config, the weight
initialisation and the pretrained base class are in ``mlab_tfs.bert.given``.

Hook points carry TransformerLens's ``HookedEncoder`` names (``transformer_lens/
HookedEncoder.py``, ``components/bert_embed.py``, ``components/bert_block.py``):

- ``embed.hook_embed``, ``embed.hook_pos_embed``, ``embed.hook_token_type_embed`` (B, T, C):
  the three lookups; ``embed.ln.hook_scale`` / ``hook_normalized``: the embedding layer norm;
  ``hook_full_embed`` (B, T, C): what enters block 0 (after the layer norm and dropout).
- per block ``blocks.{i}.``: ``hook_resid_pre`` (B, T, C); ``attn.hook_q/hook_k/hook_v``
  (B, T, nh, hs); ``attn.hook_attn_scores`` (B, nh, T, S) scaled, masked entries at
  finfo.min (TransformerLens: -inf); ``attn.hook_pattern`` (B, nh, T, S) after softmax,
  before dropout; ``attn.hook_z`` (B, T, nh, hs) before the heads merge; ``hook_attn_out``
  (B, T, C) after the output projection, its bias and dropout: what is added to the
  residual; ``hook_resid_mid`` = resid_pre + attn_out; ``ln1.*``; ``mlp.hook_pre`` (B, T, I)
  before the activation, ``mlp.hook_post`` after; ``hook_mlp_out`` (B, T, C) what is added
  to the residual; ``hook_resid_post``; ``ln2.*``; ``hook_normalized_resid_post`` (B, T, C).

Post-LN changes what the residual stream is (as in TransformerLens's BertBlock): the
layer norm comes *after* each residual add, so the MLP reads ln1(resid_mid), not resid_mid,
``hook_resid_post`` = ln1(resid_mid) + mlp_out (not resid_mid + mlp_out), and what the
next block receives is the *normalized* ``hook_normalized_resid_post`` = ln2(resid_post).
So transformers' ``hidden_states[0]`` is ``hook_full_embed`` and ``hidden_states[i + 1]``
is ``blocks.{i}.hook_normalized_resid_post`` (= ``blocks.{i+1}.hook_resid_pre``).
A layer norm's ``hook_normalized`` is (x - mean) / scale *before* its weight and bias, as
TransformerLens's folded LayerNormPre (its unfolded LayerNorm hooks after them).

Shapes: B batch, T tokens (queries), S = T keys, C = hidden_size, nh heads,
hs = C // nh head size, I = intermediate_size, V vocabulary, L = num_labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mlab_tfs.activations import gelu, get_activation  # noqa: F401  (gelu: exercise 4's reference)
from mlab_tfs.attention import check_attn_implementation, check_bool_mask, sdpa
from mlab_tfs.bert.given import (  # noqa: F401  (re-exported: the part's givens)
    DECODER,
    PROBLEM_TYPES,
    TARGETS,
    UNUSED,
    WORD_EMBEDDINGS,
    BertConfig,
    BertPreTrainedModel,
    init_bert_weights,
)
from mlab_tfs.checkpoints import StateDict, save_tied_weights_once
from mlab_tfs.fused import FusedOps, fused_activation
from mlab_tfs.gpt2.solution import Embedding, LayerNorm, attention_pattern  # the GPT-2 exercises
from mlab_tfs.hooks import HookPoint, capture
from mlab_tfs.inputs import (
    check_attention_mask,
    check_classification_labels,
    check_position_ids,
    check_token_ids,
    check_token_type_ids,
)
from mlab_tfs.losses import masked_lm_output, mlm_loss  # noqa: F401  (mlm_loss: exercise 8's reference)
from mlab_tfs.outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """word + token type + position embeddings, then layer norm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        # Hook points built in the order the forward reaches them (hook_dict lists them so).
        self.hook_embed = HookPoint()  # (B, T, C)
        self.hook_pos_embed = HookPoint()  # (B, T, C)
        self.hook_token_type_embed = HookPoint()  # (B, T, C)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        """input_ids (B, T); token_type_ids and position_ids (B or 1, T). Returns (B, T, C)."""
        w = self.hook_embed(self.word_embeddings(input_ids))  # (B, T, C)
        # Broadcast rows made (B, T, C), as TransformerLens's hooks see them (a view: no copy).
        p = self.hook_pos_embed(self.position_embeddings(position_ids).expand_as(w))
        t = self.hook_token_type_embed(self.token_type_embeddings(token_type_ids).expand_as(w))
        return self.dropout(self.LayerNorm(w + t + p))  # transformers' order of the sums


def padding_mask(attention_mask: Tensor) -> Tensor:
    """attention_mask (B, S), 1 = real token -> bool (B, 1, 1, S), True where a key may be seen.

    BERT attends in both directions, so the only mask is on keys: no query looks at padding.
    Padding *queries* still attend to the real tokens; their outputs are ignored downstream.
    """
    return attention_mask.bool()[:, None, None, :]


class BertSelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: separate query, key and value projections.

    Hook points: hook_q, hook_k, hook_v, hook_z (B, T, nh, hs); hook_attn_scores and
    hook_pattern (B, nh, T, S). The fused kernel (attn_implementation "sdpa") forms no
    pattern: a hook on hook_attn_scores or hook_pattern (output_attentions too) runs the
    hand-written path for that call.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim**-0.5
        self.query = nn.Linear(C, C)
        self.key = nn.Linear(C, C)
        self.value = nn.Linear(C, C)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.config = config  # the model's own: attn_implementation is read at every forward
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # (B, T, nh, hs)
        self.hook_attn_scores = HookPoint()  # (B, nh, T, S)
        self.hook_pattern = HookPoint()  # (B, nh, T, S)
        self.hook_z = HookPoint()  # (B, T, nh, hs)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, T, C); mask: bool (B, 1, 1, S), True = attend.

        Returns the heads merged (B, T, C), before the output projection. A query that sees
        no key (all of an all-padding sequence) outputs 0 (pattern row 0) on both paths, as
        transformers' default sdpa path (its eager path gives the row a uniform pattern
        instead). A mask that is not bool (transformers' additive float mask, a 0/1 integer
        one) is a TypeError naming it; an unknown config.attn_implementation a ValueError.
        """
        check_bool_mask("BertSelfAttention: mask", mask)
        q, k, v = (hook(rearrange(lin(x), "b t (nh hs) -> b t nh hs", nh=self.num_attention_heads))
                   for lin, hook in ((self.query, self.hook_q), (self.key, self.hook_k), (self.value, self.hook_v)))
        q, k, v = (rearrange(t, "b t nh hs -> b nh t hs") for t in (q, k, v))
        path = check_attn_implementation(self.config.attn_implementation, "config.attn_implementation")
        if path == "sdpa" and not (self.hook_attn_scores.has_hooks or self.hook_pattern.has_hooks):
            y = sdpa(q, k, v, mask, self.scale, self.dropout.p if self.training else 0.0)
        else:
            # GPT-2's pattern; the scaled, masked scores pass through hook_attn_scores.
            pattern = self.hook_pattern(attention_pattern(q, k, mask, self.scale, self.hook_attn_scores))
            y = torch.matmul(self.dropout(pattern), v)  # (B, nh, T, hs)
        z = self.hook_z(rearrange(y, "b nh t hs -> b t nh hs"))
        return rearrange(z, "b t nh hs -> b t (nh hs)")


class BertSelfOutput(nn.Module):
    """Output projection, dropout, then the post-LN residual: LayerNorm(x + dense(y)).

    Hook points: hook_attn_out (what is added to the residual), hook_resid_mid (the sum,
    before the layer norm); the layer norm is TransformerLens's ``ln1``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.hook_attn_out = HookPoint()  # (B, T, C)
        self.hook_resid_mid = HookPoint()  # (B, T, C)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # after the hooks: forward order

    def forward(self, y: Tensor, x: Tensor) -> Tensor:  # y: attention heads (B, T, C), x: block input (B, T, C)
        attn_out = self.hook_attn_out(self.dropout(self.dense(y)))
        return self.LayerNorm(self.hook_resid_mid(attn_out + x))


class BertAttention(nn.Module):
    """Self-attention with its output projection and residual layer norm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, T, C); mask: bool (B, 1, 1, S). Returns LayerNorm(x + attention(x)), (B, T, C)."""
        return self.output(self.self(x, mask), x)


class BertIntermediate(FusedOps, nn.Module):
    """First half of the MLP: C -> I, then the activation. Hook points: hook_pre (before the
    activation), hook_post (after), both (B, T, I): TransformerLens's ``mlp.*``.

    Fused kernel (``mlab_tfs.fused``): by default, with no hook on hook_pre or hook_post, the
    exact ``gelu`` runs as one ``F.gelu`` on float32 / float64 input; ``self.act`` itself
    otherwise or with ``fused_ops = False``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = get_activation(config.hidden_act)
        self.hook_pre = HookPoint()  # (B, T, I)
        self.hook_post = HookPoint()  # (B, T, I)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, I)
        act = fused_activation(self.act) if self.may_fuse(self.hook_pre, self.hook_post) else self.act
        return self.hook_post(act(self.hook_pre(self.dense(x))))


class BertOutput(nn.Module):
    """Second half of the MLP: I -> C, dropout, then the post-LN residual.

    Hook points: hook_mlp_out (what is added to the residual), hook_resid_post (the sum,
    before the layer norm); the layer norm is TransformerLens's ``ln2``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.hook_mlp_out = HookPoint()  # (B, T, C)
        self.hook_resid_post = HookPoint()  # (B, T, C)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # after the hooks: forward order

    def forward(self, h: Tensor, x: Tensor) -> Tensor:  # h: (B, T, I), x: the MLP's input (B, T, C)
        mlp_out = self.hook_mlp_out(self.dropout(self.dense(h)))
        return self.LayerNorm(self.hook_resid_post(mlp_out + x))


class BertLayer(nn.Module):
    """Post-LN transformer block: x = LN(x + attn(x)); x = LN(x + mlp(x)).

    Hook points: hook_resid_pre (the block's input) and hook_normalized_resid_post (its
    output, the next block's input), (B, T, C)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.hook_resid_pre = HookPoint()  # (B, T, C); built first so hook_dict lists the block in order
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)
        self.hook_normalized_resid_post = HookPoint()  # (B, T, C)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, T, C); mask: bool (B, 1, 1, S). Returns the block output (B, T, C)."""
        x = self.attention(self.hook_resid_pre(x), mask)  # ln1(resid_mid)
        return self.hook_normalized_resid_post(self.output(self.intermediate(x), x))


class BertEncoder(nn.Module):
    """num_hidden_layers BertLayers in a row."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: the embeddings (B, T, C); mask: bool (B, 1, 1, S). Returns the last layer's
        output (B, T, C)."""
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    """tanh(dense(hidden state of the first token, [CLS]))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, C)
        return torch.tanh(self.dense(x[:, 0]))


# ---------------------------------------------------------------------------------------
# Hugging Face checkpoints
# ---------------------------------------------------------------------------------------


def from_hf_state_dict(hf_state: StateDict, config: BertConfig, target: str = "model") -> StateDict:
    """A Hugging Face BERT state dict (BertModel, BertForMaskedLM, BertForPreTraining or
    BertForSequenceClassification, with or without the ``bert.`` prefix) as the state
    dict of our BertModel (target "model"), BertForMaskedLM ("mlm") or
    BertForSequenceClassification ("classifier"), the layouts of transformers'
    ``modeling_bert.py``. Keys that don't fit are left for the loader to report; another
    target is a ValueError naming it. Each model class passes its own target (hf_to_ours)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    hf_state = dict(hf_state)
    decoder_bias = hf_state.pop("cls.predictions.decoder.bias", None)
    if decoder_bias is not None and config.tie_word_embeddings:
        # Tied, it is a second copy of predictions.bias (older checkpoints store both).
        hf_state.setdefault("cls.predictions.bias", decoder_bias)
    elif decoder_bias is not None:
        # Untied, transformers' decoder adds its own bias; predictions.bias is then unused.
        hf_state["cls.predictions.bias"] = decoder_bias
    full: StateDict = {}  # every key in the layout of the models with a head: bert.* / cls.* / classifier.*
    for key, value in hf_state.items():
        if key.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):
            continue  # buffers of older transformers, rebuilt on the fly
        # TF-converted checkpoints name layer-norm parameters gamma and beta.
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if not key.startswith(("bert.", "cls.", "classifier.")):
            key = "bert." + key
        full[key] = value
    if target == "mlm" and config.tie_word_embeddings and WORD_EMBEDDINGS in full:
        full[DECODER] = full[WORD_EMBEDDINGS]  # one tensor, two names: the decoder reads the embedding
    ours = {k: v for k, v in full.items() if not k.startswith(UNUSED[target])}
    if target == "model":  # HF's BertModel has no prefix
        ours = {k.removeprefix("bert."): v for k, v in ours.items()}
    return ours


def to_hf_state_dict(state: StateDict, config: BertConfig, target: str = "model") -> StateDict:
    """Our state dict (of the model that ``target`` names) in the layout transformers'
    matching class saves; another target is a ValueError naming it."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    hf = dict(state)
    if target == "mlm" and config.tie_word_embeddings:
        hf.pop(DECODER, None)  # transformers rebuilds it from the word embeddings
    elif target == "mlm":
        # Untied, transformers also ties decoder.bias to predictions.bias only once loaded: store both.
        hf["cls.predictions.decoder.bias"] = hf["cls.predictions.bias"]
    return hf


# ---------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------


class BertModel(BertPreTrainedModel, nn.Module):
    """Embeddings, num_hidden_layers post-LN blocks and (optionally) the pooler.

    Hook point hook_full_embed (B, T, C): the embeddings as they enter block 0. The others
    sit in the layers (see the module docstring for the list and their meanings).
    """

    head_prefixes = ("pooler.",)
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "model"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "model"))

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.hook_full_embed = HookPoint()  # (B, T, C)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        init_bert_weights(self, config)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None, output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """input_ids (B, T); attention_mask (B, T), 1 = real token; token_type_ids and
        position_ids (B, T), (1, T) or (T,).

        Returns last_hidden_state (B, T, C), pooler_output (B, C) (with a pooler) and, on
        request, hidden_states (num_hidden_layers + 1 of (B, T, C): hook_full_embed, then
        each block's hook_normalized_resid_post) and attentions (num_hidden_layers of
        (B, nh, T, T): each block's attn.hook_pattern, before dropout; the hand-written
        path runs for that call), as transformers' BertModel (modeling_bert.py).
        ValueError / TypeError naming the argument for bad ids, masks, or more tokens than
        max_position_embeddings.
        """
        cfg = self.config
        check_token_ids("input_ids", input_ids, cfg.vocab_size)
        B, T = input_ids.shape
        if T > cfg.max_position_embeddings:
            raise ValueError(
                f"input_ids has {T} tokens, but the model has max_position_embeddings="
                f"{cfg.max_position_embeddings}: split or truncate the input"
            )
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device)[None]  # (1, T)
        else:
            position_ids = check_position_ids("position_ids", position_ids, (B, T), cfg.max_position_embeddings)
        if token_type_ids is None:
            token_type_ids = torch.zeros(1, T, dtype=torch.long, device=input_ids.device)  # all sentence A
        else:
            token_type_ids = check_token_type_ids("token_type_ids", token_type_ids, (B, T), cfg.type_vocab_size)
        mask = None
        if attention_mask is not None:
            mask = padding_mask(check_attention_mask("attention_mask", attention_mask, (B, T)))  # (B, 1, 1, T)

        layers = self.encoder.layer
        states = [self.hook_full_embed] + [layer.hook_normalized_resid_post for layer in layers]
        patterns = [layer.attention.self.hook_pattern for layer in layers]
        with capture((states if output_hidden_states else []) + (patterns if output_attentions else [])) as seen:
            x = self.hook_full_embed(self.embeddings(input_ids, token_type_ids, position_ids))  # (B, T, C)
            x = self.encoder(x, mask)
        n = len(states) if output_hidden_states else 0
        return BaseModelOutput(
            last_hidden_state=x,
            pooler_output=self.pooler(x) if self.pooler is not None else None,
            hidden_states=tuple(seen[:n]) if output_hidden_states else None,
            attentions=tuple(seen[n:]) if output_attentions else None,
        )


class BertPredictionHeadTransform(nn.Module):
    """The MLM head's first step: dense -> activation -> layer norm, (B, T, C) -> (B, T, C)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """transform, then the decoder to the vocabulary plus its own bias."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)  # tied to word embeddings
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))  # the decoder's own bias, never tied

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, V)
        return self.decoder(self.transform(x)) + self.bias


class BertForMaskedLM(BertPreTrainedModel, nn.Module):
    """BertModel (no pooler) with the masked-language-modelling head. Hook names are the
    BertModel's (the ``bert.`` prefix dropped), plus ``mlm_head.ln.*``."""

    head_prefixes = ("cls.",)
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "mlm"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "mlm"))
    tied_weights = {DECODER: WORD_EMBEDDINGS}  # with tie_word_embeddings

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        # HF's head sits at cls.predictions; a ModuleDict gives that name without another class.
        self.cls = nn.ModuleDict(dict(predictions=BertLMPredictionHead(config)))
        init_bert_weights(self.cls, config)
        if config.tie_word_embeddings:
            # One Parameter, two uses: its gradient is the sum of the lookup's and the decoder's.
            self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
            # ...saved once, so that safetensors (and transformers' Trainer) can write it.
            save_tied_weights_once(self, self.tied_weights)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None, labels: Tensor | None = None, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> MaskedLMOutput:
        """As BertModel.forward, plus logits (B, T, V) and, given labels (B, T), the loss."""
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        logits = self.cls.predictions(out.last_hidden_state)  # (B, T, V)
        return masked_lm_output(out, logits, labels)


def problem_type_of(config: BertConfig, labels: Tensor) -> str:
    """The loss transformers picks: the config's problem_type, else regression for one
    label (num_labels == 1, whatever the labels' dtype), single-label classification for
    torch.long or torch.int labels, else multi-label (float labels; other integer dtypes too).

    Source: transformers' ``BertForSequenceClassification.forward`` (modeling_bert.py); only
    for compatibility with it (GUIDE.md#the-problem_type-rule-optional)."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def classification_loss(logits: Tensor, labels: Tensor, problem_type: str) -> Tensor:
    """logits (B, L); labels (B,) class ids (single label), (B,) or (B, L) targets (regression),
    (B, L) 0/1 targets (multi-label). Returns a scalar."""
    if problem_type == "regression":
        labels = labels.to(logits.dtype)
        if logits.shape[-1] == 1:
            return F.mse_loss(logits.squeeze(-1), labels.reshape(logits.shape[0]))
        return F.mse_loss(logits, labels)
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits, labels.reshape(-1), ignore_index=-100)
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}")


class BertForSequenceClassification(BertPreTrainedModel, nn.Module):
    """BertModel, then dropout and a linear classifier on the pooled [CLS] vector. Hook
    names are the BertModel's (the ``bert.`` prefix dropped)."""

    # transformers' BertForMaskedLM has no pooler: fine-tuning from one starts it fresh too.
    head_prefixes = ("classifier.", "bert.pooler.")
    hf_to_ours = staticmethod(lambda state, config: from_hf_state_dict(state, config, "classifier"))
    ours_to_hf = staticmethod(lambda state, config: to_hf_state_dict(state, config, "classifier"))

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        init_bert_weights(self.classifier, config)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None, labels: Tensor | None = None, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> SequenceClassifierOutput:
        """As BertModel.forward, plus logits (B, L) and, given labels, the loss."""
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, L)
        loss = None
        if labels is not None:
            problem_type = problem_type_of(self.config, labels)
            labels = check_classification_labels("labels", labels, input_ids.shape[0], self.num_labels, problem_type)
            loss = classification_loss(logits, labels, problem_type)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        attentions=out.attentions)
