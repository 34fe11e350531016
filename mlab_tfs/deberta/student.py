"""DeBERTa-v2/v3 from scratch: your version.

Every function and method below that raises ``NotImplementedError`` is an exercise.
Replace the ``raise`` line with your code; the docstring above it says what goes in,
what comes out, and what usually goes wrong. The exercises, in order:

     1. make_log_bucket_position       (log buckets)
     2. build_relative_position        (the relative position matrix)
     3. c2p_scores                     (content-to-position, with its gather)
     4. p2c_scores                     (position-to-content, with its gather)
     5. DisentangledSelfAttention      (the three terms, the scale, the mask)
     6. DebertaV2Encoder               (the shared relative table, the 2-d mask, the layers)
     7. the whole model: nothing new to write; its tests run your pieces inside the given
        DebertaV2ForMaskedLM against transformers, on every configuration.

Everything else (config, layer norm, embeddings, MLP, residual blocks, the convolution, the
MLM heads, checkpoint loading) is given: it is imported from the solution at the top and
the bottom of this file, and the given classes that build your pieces (DebertaV2Layer
builds a DebertaV2Attention, which builds your DisentangledSelfAttention...) run with
yours. Each exercise has a section in ``mlab_tfs/deberta/GUIDE.md``; each stub's error
message links to it.

Check your progress with

    mlab-tfs check deberta                                # progress table, first failure explained
    pytest --impl=student mlab_tfs/deberta -x             # the same tests, plain pytest
    pytest --impl=student mlab_tfs/deberta -k c2p         # one exercise

The tests compare each piece with Hugging Face transformers' DeBERTa-v2, outputs and
gradients, to about 1e-5.

Rules: build the attention yourself. Plain torch ops (matmul, gather, clamp, log, ceil,
where, softmax, masked_fill), ``nn.Linear``, ``nn.Dropout``, ``nn.ModuleList`` and einops
are fine; don't call transformers.

Shapes: B batch, T tokens, H = hidden_size, nh heads, hs = H // nh head size,
k = att_span (relative distances are clamped to [-k, k), so the relative table has 2k rows).

The solution is in ``mlab_tfs/deberta/solution.py``; look only after you have tried.
"""

from __future__ import annotations

import math  # noqa: F401  (imported for your code)

import torch
import torch.nn.functional as F  # noqa: F401
from einops import rearrange  # noqa: F401
from torch import nn

from mlab_tfs.deberta import solution
from mlab_tfs.deberta._given import given
from mlab_tfs.deberta.solution import (  # given, not exercises
    ConvLayer,
    DebertaV2Config,
    DebertaV2Embeddings,
    DebertaV2Intermediate,
    DebertaV2LMPredictionHead,
    DebertaV2OnlyMLMHead,
    DebertaV2Output,
    DebertaV2SelfOutput,
    Embedding,
    LayerNorm,
    LegacyDebertaV2LMPredictionHead,
    LegacyDebertaV2OnlyMLMHead,
    LegacyDebertaV2PredictionHeadTransform,
    mlm_from_hf_state_dict,
    mlm_to_hf_state_dict,
    model_from_hf_state_dict,
    model_to_hf_state_dict,
)
from mlab_tfs.outputs import BaseModelOutput

Tensor = torch.Tensor

__all__ = [
    "DebertaV2Config",
    "make_log_bucket_position",
    "build_relative_position",
    "c2p_scores",
    "p2c_scores",
    "DisentangledSelfAttention",
    "DebertaV2Encoder",
    "DebertaV2Attention",
    "DebertaV2Layer",
    "DebertaV2Model",
    "DebertaV2ForMaskedLM",
    "LayerNorm",
    "Embedding",
    "DebertaV2Embeddings",
    "DebertaV2SelfOutput",
    "DebertaV2Intermediate",
    "DebertaV2Output",
    "ConvLayer",
    "LegacyDebertaV2PredictionHeadTransform",
    "LegacyDebertaV2LMPredictionHead",
    "LegacyDebertaV2OnlyMLMHead",
    "DebertaV2LMPredictionHead",
    "DebertaV2OnlyMLMHead",
    "model_from_hf_state_dict",
    "model_to_hf_state_dict",
    "mlm_from_hf_state_dict",
    "mlm_to_hf_state_dict",
]

# ---------------------------------------------------------------------------------------
# Relative positions
# ---------------------------------------------------------------------------------------


def make_log_bucket_position(relative_pos: Tensor, bucket_size: int, max_position: int) -> Tensor:
    """Squeeze long relative distances into few buckets, keeping short ones exact.

    relative_pos: integer tensor of any shape (distances i - j, positive or negative).
    bucket_size: the number of buckets on each side (config.position_buckets, 256 in v3).
    max_position: the distance that lands in the last bucket (config.max_relative_positions,
        or max_position_embeddings when that is < 1; 512 in v3).
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
    beyond k (any sequence longer than k) inside the table, otherwise gather raises an index
    error. Don't divide by the scale here.
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
        - ``self.scale_factor = 1 + len(pos_att_type)``: the number of score terms.

        Only with relative attention:
        - ``self.att_span = config.att_span`` (k);
        - ``self.pos_dropout = nn.Dropout(config.hidden_dropout_prob)`` (on the relative table);
        - unless ``share_att_key``: ``self.pos_key_proj = nn.Linear(H, H)`` if "c2p" is used,
          ``self.pos_query_proj = nn.Linear(H, H)`` if "p2c" is used. (With share_att_key the
          table goes through key_proj / query_proj themselves, as in DeBERTa-v3.)
        """
        raise NotImplementedError("Exercise 5 (disentangled attention): see mlab_tfs/deberta/GUIDE.md#5-disentangled-attention")

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor,
        relative_pos: Tensor | None = None,
        rel_embeddings: Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attention of every token over every token, with relative terms.

        hidden_states: (B, T, H). attention_mask: bool (B, 1, T, T), True = query i may attend
        to key j (the encoder builds it). relative_pos: (T, T) long; rel_embeddings: (2k, H),
        the relative table (both None without relative attention).

        Returns (context (B, T, H), probabilities (B, nh, T, T) if output_attentions else None).

        1. q, k, v = the three projections, split into heads: (B, T, H) -> (B, nh, T, hs).
        2. scale = sqrt(hs * scale_factor): each term is a dot product of hs products, and
           there are scale_factor terms, so dividing by this keeps the sum's variance at 1.
           scores = q @ k^T / scale.
        3. With relative attention: scores += disentangled_attention_bias(q, k, relative_pos,
           pos_dropout(rel_embeddings)).
        4. scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min), softmax over
           the keys (dim=-1), dropout, @ v, heads merged back to (B, T, H).

        Pitfalls: the scale has the (1 + number of position types) factor *inside* the sqrt;
        mask with masked_fill and finfo.min (not -inf, and not by adding): padding queries
        have fully masked rows, which must give a uniform row and zero gradient, as in
        transformers.
        """
        raise NotImplementedError("Exercise 5 (disentangled attention): see mlab_tfs/deberta/GUIDE.md#5-disentangled-attention")

    def disentangled_attention_bias(
        self, query: Tensor, key: Tensor, relative_pos: Tensor, rel_embeddings: Tensor
    ) -> Tensor:
        """The relative terms: c2p and/or p2c (as pos_att_type says), each divided by
        sqrt(hs * scale_factor). Returns (B, nh, T, T).

        query, key: (B, nh, T, hs); relative_pos: (T, T); rel_embeddings: (2k, H).

        - c2p: pos_key = (key_proj if share_att_key else pos_key_proj)(rel_embeddings), split
          into heads: (2k, H) -> (nh, 2k, hs); then c2p_scores(query, pos_key, relative_pos, k).
        - p2c: pos_query = (query_proj if share_att_key else pos_query_proj)(rel_embeddings),
          in heads; then p2c_scores(key, pos_query, relative_pos, k).

        Hint: the projection's bias is part of it (nn.Linear applies it): the table rows are
        projected like tokens.
        """
        raise NotImplementedError("Exercise 5 (disentangled attention): see mlab_tfs/deberta/GUIDE.md#5-disentangled-attention")


# ---------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------


class DebertaV2Encoder(nn.Module):
    """The layers, plus what they share: the relative table, the relative positions and the
    2-d attention mask."""

    def __init__(self, config: DebertaV2Config):
        """Create, with these names:

        - ``self.layer = nn.ModuleList([DebertaV2Layer(config) for each of num_hidden_layers])``
          (DebertaV2Layer is given; it builds your attention);
        - ``self.relative_attention``; and with relative attention: ``self.position_buckets =
          config.position_buckets``, ``self.max_relative_positions = config.max_relative``, and
          the table ``self.rel_embeddings = Embedding(2 * config.att_span, H)`` (the given
          Embedding; the table is its ``.weight``);
        - if "layer_norm" is in config.norm_rel_ebd: ``self.LayerNorm = LayerNorm(H,
          config.layer_norm_eps)`` (the given LayerNorm), applied to the table;
        - if config.conv_kernel_size > 0: ``self.conv = ConvLayer(config)`` (given).
        """
        raise NotImplementedError("Exercise 6 (encoder): see mlab_tfs/deberta/GUIDE.md#6-encoder")

    def get_rel_embedding(self) -> Tensor | None:
        """The relative table (2k, H): ``rel_embeddings.weight``, through ``self.LayerNorm``
        when norm_rel_ebd asks for it. None without relative attention."""
        raise NotImplementedError("Exercise 6 (encoder): see mlab_tfs/deberta/GUIDE.md#6-encoder")

    def forward(
        self,
        hidden_states: Tensor,
        input_mask: Tensor,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutput:
        """hidden_states: the embeddings (B, T, H); input_mask: (B, T) bool, True = real token.

        1. The 2-d mask: keep[b, 0, i, j] = input_mask[b, i] & input_mask[b, j], (B, 1, T, T).
           Padding *queries* are masked too (their rows come out uniform), as transformers does.
        2. With relative attention, once for all layers: relative_pos =
           build_relative_position(T, T, position_buckets, max_relative_positions, device) and
           rel_embeddings = self.get_rel_embedding().
        3. Run the layers: ``x, probs = layer(x, keep, relative_pos, rel_embeddings,
           output_attentions)``. After layer 0 only, if there is a conv:
           ``x = self.conv(hidden_states, x, input_mask)`` (the encoder's *input*, then the
           layer's output).
        4. Return BaseModelOutput(last_hidden_state=x, hidden_states=(input, each layer's
           output) if output_hidden_states else None, attentions=(each layer's probs) if
           output_attentions else None).
        """
        raise NotImplementedError("Exercise 6 (encoder): see mlab_tfs/deberta/GUIDE.md#6-encoder")


# ---------------------------------------------------------------------------------------
# Given classes that build your pieces: the solution's code, names looked up in this file
# (see mlab_tfs/deberta/_given.py). DebertaV2Layer builds DebertaV2Attention, which builds
# your DisentangledSelfAttention; DebertaV2Model builds your DebertaV2Encoder.
# ---------------------------------------------------------------------------------------

DebertaV2Attention, DebertaV2Layer, DebertaV2Model, DebertaV2ForMaskedLM = given(
    solution.DebertaV2Attention,
    solution.DebertaV2Layer,
    solution.DebertaV2Model,
    solution.DebertaV2ForMaskedLM,
    namespace=globals(),
)
