"""DeBERTa-v2/v3 from scratch: your version.

Every function and method below that raises ``NotImplementedError`` is an exercise.
Replace the ``raise`` line with your code; the docstring above it says what goes in,
what comes out, and what usually goes wrong. The exercises, in order:

     1. make_log_bucket_position       (log buckets)
     2. build_relative_position        (the relative position matrix)
     3. c2p_scores                     (content-to-position, with its gather)
     4. p2c_scores                     (position-to-content, with its gather)
     5. DisentangledSelfAttention      (the three terms, the scale, the mask, the hook points)
     6. DebertaV2Embeddings            (words, optional positions and types, embed_proj: v3's path)
     7. DebertaV2Encoder               (the shared relative table, the 2-d mask, the layers)
     8. the MLM heads                  (the legacy and the original layout)
     9. the whole model: nothing new to write; its tests run your pieces inside the given
        DebertaV2ForMaskedLM against transformers, on every configuration.

LayerNorm and Embedding are *yours*, from GPT-2 (``mlab_tfs/gpt2/student.py``, exercises
"layer norm" and "embedding"): do those first. Everything else (config, MLP, residual
blocks, the convolution, the models, checkpoint loading) is given, in
``mlab_tfs/deberta/given.py``. The given classes are built from the classes in ``PARTS`` at
the bottom of this file, which are yours: the given DebertaV2Layer builds your
DisentangledSelfAttention, and DebertaV2Model your embeddings and your encoder. Each exercise
has a section in ``mlab_tfs/deberta/GUIDE.md``; each stub's error message links to it.

Check your progress with

    mlab-tfs check deberta                                # progress table, first failure explained
    pytest --impl=student mlab_tfs/deberta -x             # the same tests, plain pytest
    pytest --impl=student mlab_tfs/deberta --exercise c2p         # one exercise

The tests compare each piece with Hugging Face transformers' DeBERTa-v2, outputs and
gradients, to about 1e-5.

Rules: build the attention yourself. Plain torch ops (matmul, gather, clamp, log, ceil,
where, softmax, masked_fill), ``nn.Linear``, ``nn.Dropout``, ``nn.ModuleList``, einops and
``HookPoint`` are fine; don't call transformers.

Shapes: B batch, T tokens, H = hidden_size, E = embedding_size, nh heads, hs = H // nh head
size, V vocabulary, k = att_span (relative distances are clamped to [-k, k), so the relative
table has 2k rows).

The solution is in ``mlab_tfs/deberta/solution.py``; look only after you have tried.
"""

from __future__ import annotations

import math  # noqa: F401  (imported for your code)

import torch
from einops import rearrange  # noqa: F401
from torch import nn

from mlab_tfs.activations import get_activation  # noqa: F401  (the config's activation by name)
from mlab_tfs.deberta import given
from mlab_tfs.deberta.given import (  # noqa: F401  (given, not exercises)
    ConvLayer,
    DebertaV2Attention,
    DebertaV2Config,
    DebertaV2Intermediate,
    DebertaV2Layer,
    DebertaV2Output,
    DebertaV2Parts,
    DebertaV2PreTrainedModel,
    DebertaV2SelfOutput,
    init_deberta_weights,
    mlm_loss,
    mlm_from_hf_state_dict,
    mlm_to_hf_state_dict,
    model_from_hf_state_dict,
    model_to_hf_state_dict,
)
from mlab_tfs.gpt2.student import Embedding, LayerNorm  # noqa: F401  (your own GPT-2 pieces)
from mlab_tfs.hooks import HookPoint  # noqa: F401  (an identity module that names an activation)

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------
# Relative positions
# ---------------------------------------------------------------------------------------


def make_log_bucket_position(relative_pos: Tensor, bucket_size: int, max_position: int) -> Tensor:
    """Squeeze long relative distances into few buckets, keeping short ones exact.

    relative_pos: integer tensor of any shape (distances i - j, positive or negative).
    bucket_size: the number of buckets on each side (config.position_buckets, 256 in v3).
    max_position: where the log scale ends: a distance of max_position - 1 maps to bucket
        2 * mid - 1, the last (the ceil sends some shorter distances there too); from
        config.max_relative_positions, or max_position_embeddings when that is < 1; 512 in v3.
    Returns a tensor of relative_pos's shape and integer dtype.

    With mid = bucket_size // 2:
    - |r| <= mid: r itself.
    - |r| >  mid: sign(r) * (mid + ceil(log(|r| / mid) / log((max_position - 1) / mid) * (mid - 1))).

    Worked example (bucket_size 8, max_position 32, so mid = 4):
        r       0  1  4  5  7  8  12  13  16  31  -5  -13
        bucket  0  1  4  5  5  6   6   6   7   7  -5   -6

    Pitfalls (the tests diagnose them): ceil, not floor or round; the far buckets keep the
    sign of r; the denominator is log((max_position - 1) / mid), not log(max_position / mid).

    Hint: the log of a zero distance is -inf, and torch.where evaluates both branches:
    replace the near distances (|r| < mid) by some value with a finite log (mid - 1, say)
    before taking the log, and pick the near result with torch.where at the end. Compute the
    log of (max_position - 1) / mid as a float32 tensor (``torch.log(torch.tensor(...))``):
    ceil makes the last bit matter, and that is what the reference does.
    """
    raise NotImplementedError("Exercise 1 (log buckets): see mlab_tfs/deberta/GUIDE.md#1-log-buckets")


def build_relative_position(
    query_size: int,
    key_size: int,
    bucket_size: int = -1,
    max_position: int = -1,
    device: torch.device | str | None = None,
) -> Tensor:
    """The matrix of relative positions: r[i, j] = i - j (query position minus key position).

    Returns a (query_size, key_size) torch.long tensor on ``device``; when bucket_size > 0
    and max_position > 0, passed through make_log_bucket_position first.

        build_relative_position(3, 3) = [[0, -1, -2],
                                          [1,  0, -1],
                                          [2,  1,  0]]

    Hint: a column of query positions minus a row of key positions (torch.arange and
    broadcasting). Return torch.long: the result is a gather index later.
    """
    raise NotImplementedError(
        "Exercise 2 (relative position matrix): see mlab_tfs/deberta/GUIDE.md#2-relative-position-matrix"
    )


# ---------------------------------------------------------------------------------------
# Disentangled attention
# ---------------------------------------------------------------------------------------


def c2p_scores(query: Tensor, pos_key: Tensor, relative_pos: Tensor, att_span: int) -> Tensor:
    """Content-to-position scores: how much query i cares about *being at distance r(i, j)*.

    query: (B, nh, T, hs), the content queries.
    pos_key: (nh, 2k, hs), the relative table through the key projection, split into heads:
        row m stands for the distance m - k.
    relative_pos: (T, T) long, r[i, j] from build_relative_position (maybe bucketed).
    att_span: k.
    Returns (B, nh, T, T), unscaled (the attention divides every term by the same scale):

        out[b, h, i, j] = query[b, h, i] . pos_key[h, clamp(r[i, j] + k, 0, 2k - 1)]

    Two steps: every query against every table row, ``query @ pos_key^T`` (B, nh, T, 2k);
    then, in row i, pick column clamp(r[i, j] + k) for each j: torch.gather along dim=-1
    with the index expanded to (B, nh, T, T).

    Pitfalls: the + k shifts distances -k..k-1 to rows 0..2k-1; the clamp keeps distances
    outside that range inside the table (without buckets: any sequence longer than k; with
    buckets: longer than max_position), otherwise gather raises an index error. Don't divide
    by the scale here.
    """
    raise NotImplementedError("Exercise 3 (content-to-position): see mlab_tfs/deberta/GUIDE.md#3-content-to-position")


def p2c_scores(key: Tensor, pos_query: Tensor, relative_pos: Tensor, att_span: int) -> Tensor:
    """Position-to-content scores: how much key j cares about the query *being at distance
    r(i, j)* from it.

    key: (B, nh, T, hs), the content keys.
    pos_query: (nh, 2k, hs), the relative table through the query projection, in heads.
    relative_pos: (T, T) long; att_span: k. Returns (B, nh, T, T), unscaled.

    As the reference implementation computes it (key-major, then transposed):

        all_pos = key @ pos_query^T                                   (B, nh, T_key, 2k)
        by_key[b, h, j, i] = all_pos[b, h, j, clamp(-r[j, i] + k, 0, 2k - 1)]
        out = by_key transposed over the last two dims                (B, nh, T_query, T_key)

    so out[b, h, i, j] = key[b, h, j] . pos_query[h, clamp(r[i, j] + k)] (r[i, j] = -r[j, i]).

    Pitfalls (the tests diagnose them): the index uses -r (row j reads the distance as seen
    from the key); forgetting the final transpose; the clamp, as in c2p.
    """
    raise NotImplementedError("Exercise 4 (position-to-content): see mlab_tfs/deberta/GUIDE.md#4-position-to-content")


class DisentangledSelfAttention(nn.Module):
    """Multi-head self-attention whose scores add c2p and p2c relative terms."""

    def __init__(self, config: DebertaV2Config):
        """Layers and constants of one attention layer. The names matter for checkpoints.

        Always:
        - ``self.query_proj``, ``self.key_proj``, ``self.value_proj``: ``nn.Linear(H, H)``;
        - ``self.dropout = nn.Dropout(config.attention_probs_dropout_prob)`` (on the probabilities);
        - ``self.num_attention_heads``, ``self.head_dim`` (= config.head_dim);
        - ``self.pos_att_type = list(config.pos_att_type)``, a list holding "c2p" and/or "p2c";
        - ``self.relative_attention = config.relative_attention``, ``self.share_att_key =
          config.share_att_key``;
        - ``self.scale_factor = 1 + len(pos_att_type)``: the number of score terms;
        - hook points (``HookPoint()``, identity modules that name an activation):
          ``self.hook_q``, ``self.hook_k``, ``self.hook_v``, ``self.hook_attn_scores``,
          ``self.hook_pattern``, ``self.hook_z``.

        Only with relative attention:
        - ``self.att_span = config.att_span`` (k);
        - ``self.pos_dropout = nn.Dropout(config.hidden_dropout_prob)`` (on the relative table);
        - if "c2p" is used: ``self.hook_c2p_scores = HookPoint()`` and, unless share_att_key,
          ``self.pos_key_proj = nn.Linear(H, H)``;
        - if "p2c" is used: ``self.hook_p2c_scores = HookPoint()`` and, unless share_att_key,
          ``self.pos_query_proj = nn.Linear(H, H)``. (With share_att_key the table goes
          through key_proj / query_proj themselves, as in DeBERTa-v3.)
        """
        raise NotImplementedError("Exercise 5 (disentangled attention): see mlab_tfs/deberta/GUIDE.md#5-disentangled-attention")

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor,
        relative_pos: Tensor | None = None,
        rel_embeddings: Tensor | None = None,
    ) -> Tensor:
        """Attention of every token over every token, with relative terms.

        hidden_states: (B, T, H). attention_mask: bool (B, 1, T, T), True = query i may attend
        to key j (the encoder builds it). relative_pos: (T, T) long; rel_embeddings: (2k, H),
        the relative table (both None without relative attention).

        Returns the context (B, T, H): a tensor, nothing else. (The model gathers
        ``output_attentions`` from your ``hook_pattern``.)

        1. q, k, v = the three projections, split into heads (B, T, H) -> (B, T, nh, hs),
           passed through hook_q / hook_k / hook_v, then moved to (B, nh, T, hs).
        2. scale = sqrt(hs * scale_factor): each term is a dot product of hs products, and
           there are scale_factor terms, so for independent unit-variance entries dividing by
           this keeps the sum's variance at 1 (He et al. 2021, eq. 4: 1/sqrt(3d)).
           scores = q @ k^T / scale.
        3. With relative attention: scores += disentangled_attention_bias(q, k, relative_pos,
           pos_dropout(rel_embeddings)).
        4. scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min) -> hook_attn_scores,
           whose result is masked the same way again (an edit must not unmask a padding
           key); softmax over the keys (dim=-1) -> hook_pattern; dropout, @ v, to (B, T, nh, hs)
           -> hook_z; heads merged back to (B, T, H).

        Pitfalls: the scale has the (1 + number of position types) factor *inside* the sqrt;
        mask with masked_fill and finfo.min (not -inf, and not by adding): padding queries
        have fully masked rows, which must give a uniform row and zero gradient, as in
        transformers. hook_pattern before the dropout, not after.
        """
        raise NotImplementedError("Exercise 5 (disentangled attention): see mlab_tfs/deberta/GUIDE.md#5-disentangled-attention")

    def disentangled_attention_bias(
        self, query: Tensor, key: Tensor, relative_pos: Tensor, rel_embeddings: Tensor
    ) -> Tensor:
        """The relative terms: c2p and/or p2c (as pos_att_type says), each divided by
        sqrt(hs * scale_factor) and passed through its hook point. Returns (B, nh, T, T).

        query, key: (B, nh, T, hs); relative_pos: (T, T); rel_embeddings: (2k, H).

        - c2p: pos_key = (key_proj if share_att_key else pos_key_proj)(rel_embeddings), split
          into heads: (2k, H) -> (nh, 2k, hs); then hook_c2p_scores(c2p_scores(query, pos_key,
          relative_pos, k) / scale).
        - p2c: pos_query = (query_proj if share_att_key else pos_query_proj)(rel_embeddings),
          in heads; then hook_p2c_scores(p2c_scores(key, pos_query, relative_pos, k) / scale).

        Hint: the projection's bias is part of it (nn.Linear applies it): the table rows are
        projected like tokens.
        """
        raise NotImplementedError("Exercise 5 (disentangled attention): see mlab_tfs/deberta/GUIDE.md#5-disentangled-attention")


# ---------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------


class DebertaV2Embeddings(nn.Module):
    """Token (+ absolute position) (+ token type) embeddings, projected E -> H, layer-normed,
    and zeroed at padding."""

    def __init__(self, config: DebertaV2Config):
        """Create, with these names (E = config.emb_size, H = config.hidden_size):

        - ``self.word_embeddings = Embedding(vocab_size, E, padding_idx=config.pad_token_id)``
          (your GPT-2 Embedding) and ``self.hook_embed = HookPoint()``;
        - ``self.position_biased_input = config.position_biased_input``; if True,
          ``self.position_embeddings = Embedding(max_position_embeddings, E)`` and
          ``self.hook_pos_embed``; DeBERTa-v3 has none (its positions are only relative);
        - if ``type_vocab_size > 0``: ``self.token_type_embeddings = Embedding(type_vocab_size,
          E)`` and ``self.hook_token_type_embed``;
        - if E != H: ``self.embed_proj = nn.Linear(E, H, bias=False)``;
        - ``self.LayerNorm = LayerNorm(H, config.layer_norm_eps)``, ``self.dropout =
          nn.Dropout(config.hidden_dropout_prob)``, ``self.hook_full_embed = HookPoint()``.

        Pitfall: create the optional modules only when the config asks for them: a checkpoint
        has exactly those weights, and loading checks every name.
        """
        raise NotImplementedError("Exercise 6 (embeddings): see mlab_tfs/deberta/GUIDE.md#6-embeddings")

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """input_ids (B, T); token_type_ids (B, T) or None (then all type 0); position_ids
        (B or 1, T) or None (then 0..T-1), read only with absolute positions; mask (B, T) bool,
        True = real token, or None (all real: no multiply). Returns (B, T, H).

        x = hook_embed(word vectors)                      (B, T, E)
          + hook_pos_embed(position vectors)              if position_biased_input: (B, T, E),
                                                          a (1, T, E) lookup .expand_as(word vectors)
          + hook_token_type_embed(token-type vectors)     if there is a token-type table
        x = embed_proj(x)                                  if E != H: (B, T, H)
        x = LayerNorm(x), times the mask (padding rows become exactly 0), dropout, hook_full_embed.

        Pitfalls: embed_proj comes *before* the LayerNorm (the norm is over H); multiply by
        the mask after the norm (the norm of a zero row is its bias, not 0).
        """
        raise NotImplementedError("Exercise 6 (embeddings): see mlab_tfs/deberta/GUIDE.md#6-embeddings")


# ---------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------


class DebertaV2Encoder(nn.Module):
    """The layers, plus what they share: the relative table, the relative positions and the
    2-d attention mask."""

    def __init__(self, config: DebertaV2Config, parts: DebertaV2Parts | None = None):
        """Create, with these names (parts: the classes the given layers are built from; None
        means this file's PARTS, so start with ``parts = parts if parts is not None else PARTS``):

        - ``self.layer = nn.ModuleList([DebertaV2Layer(config, parts) for each of
          num_hidden_layers])`` (DebertaV2Layer is given; it builds your attention from parts);
        - ``self.relative_attention``; and with relative attention: ``self.position_buckets =
          config.position_buckets``, ``self.max_relative_positions = config.max_relative``,
          the table ``self.rel_embeddings = Embedding(2 * config.att_span, H)`` (your
          Embedding; the table is its ``.weight``) and ``self.hook_rel_embeddings = HookPoint()``;
        - ``self.norm_rel_ebd = "layer_norm" in config.norm_rel_ebd.lower()``; if True,
          ``self.LayerNorm = LayerNorm(H, config.layer_norm_eps)``, applied to the table;
        - if config.conv_kernel_size > 0: ``self.conv = ConvLayer(config, parts)`` (given).
        """
        raise NotImplementedError("Exercise 7 (encoder): see mlab_tfs/deberta/GUIDE.md#7-encoder")

    def get_rel_embedding(self) -> Tensor | None:
        """The relative table (2k, H): ``rel_embeddings.weight``, through ``self.LayerNorm``
        when norm_rel_ebd asks for it. None without relative attention."""
        raise NotImplementedError("Exercise 7 (encoder): see mlab_tfs/deberta/GUIDE.md#7-encoder")

    def forward(self, hidden_states: Tensor, attention_mask: Tensor) -> Tensor:
        """hidden_states: the embeddings (B, T, H); attention_mask: (B, T) bool, True = real token.
        Returns the last layer's output (B, T, H): a tensor (the model gathers hidden_states
        and attentions from the hook points).

        1. The 2-d mask: keep[b, 0, i, j] = attention_mask[b, i] & attention_mask[b, j], (B, 1, T, T).
           Padding *queries* are masked too (their rows come out uniform), as transformers does.
        2. With relative attention, once for all layers: relative_pos =
           build_relative_position(T, T, position_buckets, max_relative_positions, device) and
           rel_embeddings = self.hook_rel_embeddings(self.get_rel_embedding()).
        3. Run the layers: ``x = layer(x, keep, relative_pos, rel_embeddings)``. After layer 0
           only, if there is a conv: ``x = self.conv(hidden_states, x, attention_mask)`` (the
           encoder's *input*, then the layer's output).
        """
        raise NotImplementedError("Exercise 7 (encoder): see mlab_tfs/deberta/GUIDE.md#7-encoder")


# ---------------------------------------------------------------------------------------
# The MLM heads
# ---------------------------------------------------------------------------------------


class LegacyDebertaV2PredictionHeadTransform(nn.Module):
    """dense H -> E, activation, layer norm (E)."""

    def __init__(self, config: DebertaV2Config):
        """``self.dense = nn.Linear(H, E)``, ``self.act = get_activation(config.hidden_act)``,
        ``self.LayerNorm = LayerNorm(E, config.layer_norm_eps)`` (E = config.emb_size)."""
        raise NotImplementedError("Exercise 8 (MLM heads): see mlab_tfs/deberta/GUIDE.md#8-mlm-heads")

    def forward(self, hidden_states: Tensor) -> Tensor:
        """(B, T, H) -> LayerNorm(act(dense(x))), (B, T, E)."""
        raise NotImplementedError("Exercise 8 (MLM heads): see mlab_tfs/deberta/GUIDE.md#8-mlm-heads")


class LegacyDebertaV2LMPredictionHead(nn.Module):
    """transformers' default MLM head: transform, then a decoder E -> V."""

    def __init__(self, config: DebertaV2Config):
        """``self.transform = LegacyDebertaV2PredictionHeadTransform(config)``, ``self.decoder =
        nn.Linear(E, V)`` and ``self.bias = nn.Parameter(torch.zeros(V))``. (The given
        DebertaV2ForMaskedLM ties decoder.weight to the word embeddings and decoder.bias to
        this bias when tie_word_embeddings; untied, this bias is kept but unused.)"""
        raise NotImplementedError("Exercise 8 (MLM heads): see mlab_tfs/deberta/GUIDE.md#8-mlm-heads")

    def forward(self, hidden_states: Tensor) -> Tensor:
        """(B, T, H) -> decoder(transform(x)), the logits (B, T, V)."""
        raise NotImplementedError("Exercise 8 (MLM heads): see mlab_tfs/deberta/GUIDE.md#8-mlm-heads")


class LegacyDebertaV2OnlyMLMHead(nn.Module):
    """The legacy head under its checkpoint name, ``cls.predictions``."""

    def __init__(self, config: DebertaV2Config):
        """``self.predictions = LegacyDebertaV2LMPredictionHead(config)``."""
        raise NotImplementedError("Exercise 8 (MLM heads): see mlab_tfs/deberta/GUIDE.md#8-mlm-heads")

    def forward(self, sequence_output: Tensor) -> Tensor:
        """(B, T, H) -> the logits (B, T, V)."""
        raise NotImplementedError("Exercise 8 (MLM heads): see mlab_tfs/deberta/GUIDE.md#8-mlm-heads")


class DebertaV2LMPredictionHead(nn.Module):
    """DeBERTa's original MLM head: dense, activation, layer norm, then the word embeddings
    (always shared, passed in) and a bias."""

    def __init__(self, config: DebertaV2Config):
        """``self.dense = nn.Linear(H, H)``, ``self.act``, ``self.LayerNorm = LayerNorm(H, eps)``
        and ``self.bias = nn.Parameter(torch.zeros(V))``. No decoder: the word table is the
        output matrix."""
        raise NotImplementedError("Exercise 8 (MLM heads): see mlab_tfs/deberta/GUIDE.md#8-mlm-heads")

    def forward(self, hidden_states: Tensor, word_embeddings: Tensor) -> Tensor:
        """hidden_states (B, T, H), word_embeddings (V, H) the word table (a tensor, not the
        module). Returns LayerNorm(act(dense(x))) @ word_embeddings^T + bias, (B, T, V)."""
        raise NotImplementedError("Exercise 8 (MLM heads): see mlab_tfs/deberta/GUIDE.md#8-mlm-heads")


class DebertaV2OnlyMLMHead(nn.Module):
    """The original head under its checkpoint name, ``lm_predictions.lm_head``."""

    def __init__(self, config: DebertaV2Config):
        """``self.lm_head = DebertaV2LMPredictionHead(config)``."""
        raise NotImplementedError("Exercise 8 (MLM heads): see mlab_tfs/deberta/GUIDE.md#8-mlm-heads")

    def forward(self, sequence_output: Tensor, word_embeddings: Tensor) -> Tensor:
        """(B, T, H), (V, H) -> the logits (B, T, V)."""
        raise NotImplementedError("Exercise 8 (MLM heads): see mlab_tfs/deberta/GUIDE.md#8-mlm-heads")


# ---------------------------------------------------------------------------------------
# The given models, built from your classes: nothing to write here.
# ---------------------------------------------------------------------------------------

PARTS = DebertaV2Parts(
    layer_norm=LayerNorm, embeddings=DebertaV2Embeddings, attention=DisentangledSelfAttention, encoder=DebertaV2Encoder,
    legacy_mlm_head=LegacyDebertaV2OnlyMLMHead, mlm_head=DebertaV2OnlyMLMHead,
)


class DebertaV2Model(given.DebertaV2Model):
    parts = PARTS


class DebertaV2ForMaskedLM(given.DebertaV2ForMaskedLM):
    parts = PARTS
