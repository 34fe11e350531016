"""DeBERTa-v2/v3 from scratch: the solution.

DeBERTa (He et al. 2021, arXiv:2006.03654) keeps BERT's post-LN encoder but changes
attention: each token is a content vector, and its position is *relative*, kept apart in a
small table of relative-distance embeddings that every layer shares. The attention score of
query i and key j adds three terms,

    content->content   Q_i . K_j
    content->position  Q_i . Kr[r(i, j)]        ("c2p")
    position->content  K_j . Qr[r(i, j)]        ("p2c")

where r(i, j) is the (bucketed, clamped) distance i - j and Kr, Qr are the relative
table projected by the layer's key and query projections. DeBERTa-v3 (arXiv:2111.09543) has
the same architecture (it differs in pre-training), so this file loads both.

This file holds the exercises; what is given (config, the layer around the attention, the
models, checkpoint name maps) is in ``given.py``, built from the classes in ``PARTS`` at the
bottom. LayerNorm and Embedding are GPT-2's (``mlab_tfs.gpt2.solution``). The reference is
transformers' ``models/deberta_v2/modeling_deberta_v2.py``.

Shapes: B batch, T tokens, H = hidden_size, E = embedding_size, nh heads, hs = H // nh
head size, V vocabulary, k = att_span (the number of relative distances on each side),
so the relative table has 2k rows.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from mlab_tfs.activations import get_activation
from mlab_tfs.deberta import given
from mlab_tfs.deberta.given import (  # noqa: F401  (re-exported: the part's public names)
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
from mlab_tfs.gpt2.solution import Embedding, LayerNorm
from mlab_tfs.hooks import HookPoint

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------
# Relative positions (exercises 1-2)
# ---------------------------------------------------------------------------------------


def make_log_bucket_position(relative_pos: Tensor, bucket_size: int, max_position: int) -> Tensor:
    """Log buckets: distances within mid = bucket_size // 2 are kept as they are, longer ones
    are squeezed logarithmically so that max_position - 1 lands on 2 * mid - 1, the last bucket
    (transformers' make_log_bucket_position in modeling_deberta_v2.py).

    relative_pos: integer tensor, any shape. Returns the same shape and integer dtype (transformers
    returns floats), with the sign of relative_pos; |value| <= 2 * mid - 1 for |r| <= max_position - 1,
    growing slowly past it (the attention's clamp keeps those in the table).
    """
    mid = bucket_size // 2
    sign = torch.sign(relative_pos)
    # Near distances are returned as they are; mid - 1 stands in for them so the log is defined.
    near = (relative_pos < mid) & (relative_pos > -mid)
    abs_pos = torch.where(near, torch.full_like(relative_pos, mid - 1), relative_pos.abs())
    # mid + (mid - 1) * log(|r| / mid) / log((max_position - 1) / mid), rounded up.
    # (float32 logs, as in the reference: ceil is sensitive to the last bit)
    log_ratio = torch.log(torch.tensor((max_position - 1) / mid, device=relative_pos.device))
    log_pos = torch.ceil(torch.log(abs_pos / mid) / log_ratio * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, relative_pos, (log_pos * sign).to(relative_pos.dtype))


def build_relative_position(
    query_size: int,
    key_size: int,
    bucket_size: int = -1,
    max_position: int = -1,
    device: torch.device | str | None = None,
) -> Tensor:
    """r[i, j] = i - j, log-bucketed when bucket_size > 0 and max_position > 0.

    Returns a (query_size, key_size) torch.long tensor on device.
    """
    q_ids = torch.arange(query_size, dtype=torch.long, device=device)
    k_ids = torch.arange(key_size, dtype=torch.long, device=device)
    rel = q_ids[:, None] - k_ids[None, :]  # (Tq, Tk)
    if bucket_size > 0 and max_position > 0:
        rel = make_log_bucket_position(rel, bucket_size, max_position)
    return rel.to(torch.long)


# ---------------------------------------------------------------------------------------
# Disentangled attention (exercises 3-5)
# ---------------------------------------------------------------------------------------


def c2p_scores(query: Tensor, pos_key: Tensor, relative_pos: Tensor, att_span: int) -> Tensor:
    """Content-to-position: out[b, h, i, j] = query[b, h, i] . pos_key[h, r[i, j] + k],
    with r + k clamped to the table, [0, 2k - 1].

    query: (B, nh, T, hs); pos_key: (nh, 2k, hs), the relative table through the key
    projection; relative_pos: (T, T) long. Returns (B, nh, T, T), unscaled.
    """
    B, nh, T, _ = query.shape
    all_pos = torch.matmul(query, pos_key.transpose(-1, -2))  # (B, nh, T, 2k): query i against every distance
    index = torch.clamp(relative_pos + att_span, 0, 2 * att_span - 1)  # (T, T): the distance of (i, j)
    return torch.gather(all_pos, dim=-1, index=index.expand(B, nh, T, T))


def p2c_scores(key: Tensor, pos_query: Tensor, relative_pos: Tensor, att_span: int) -> Tensor:
    """Position-to-content: out[b, h, i, j] = key[b, h, j] . pos_query[h, r[i, j] + k], with
    r + k clamped to [0, 2k - 1]. Computed key-major (each key against every distance) and
    gathered at -r[j, i] + k, then transposed, as the reference implementation does.

    key: (B, nh, T, hs); pos_query: (nh, 2k, hs), the relative table through the query
    projection; relative_pos: (T, T) long. Returns (B, nh, T, T), unscaled.
    """
    B, nh, T, _ = key.shape
    all_pos = torch.matmul(key, pos_query.transpose(-1, -2))  # (B, nh, T_key, 2k)
    # Row j (a key) reads the distance of the query i from the key's side: -r[j, i].
    index = torch.clamp(-relative_pos + att_span, 0, 2 * att_span - 1)  # (T_key, T_query)
    by_key = torch.gather(all_pos, dim=-1, index=index.expand(B, nh, T, T))  # (B, nh, j, i)
    return by_key.transpose(-1, -2)  # (B, nh, i, j)


class DisentangledSelfAttention(nn.Module):
    """Multi-head self-attention whose scores add c2p and p2c relative terms
    (transformers' DisentangledSelfAttention; the paper's section 3.1).

    Hook points: ``hook_q``, ``hook_k``, ``hook_v``, ``hook_z`` (B, T, nh, hs);
    ``hook_c2p_scores`` / ``hook_p2c_scores`` (B, nh, T, T), each relative term divided by
    the scale (present only when the config uses that term); ``hook_attn_scores`` (B, nh, T, T)
    the total c2c + c2p + p2c, scaled, with masked entries at finfo.min (TransformerLens
    writes -inf); ``hook_pattern`` (B, nh, T, T) after the softmax, before dropout
    (transformers' output_attentions are after its dropout: the same in eval mode). DeBERTa
    has one attention path, this one, with or without hooks.
    """

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        H = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query_proj = nn.Linear(H, H)
        self.key_proj = nn.Linear(H, H)
        self.value_proj = nn.Linear(H, H)
        self.pos_att_type = list(config.pos_att_type)
        self.relative_attention = config.relative_attention
        self.share_att_key = config.share_att_key
        # Each of content, c2p and p2c adds a dot product of hs terms: scale by their count.
        self.scale_factor = 1 + len(self.pos_att_type)
        if self.relative_attention:
            self.att_span = config.att_span
            self.pos_dropout = nn.Dropout(config.hidden_dropout_prob)
            if "c2p" in self.pos_att_type:
                self.hook_c2p_scores = HookPoint()
                if not self.share_att_key:
                    self.pos_key_proj = nn.Linear(H, H)
            if "p2c" in self.pos_att_type:
                self.hook_p2c_scores = HookPoint()
                if not self.share_att_key:
                    self.pos_query_proj = nn.Linear(H, H)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # (B, T, nh, hs)
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()  # (B, nh, T, T)
        self.hook_z = HookPoint()  # (B, T, nh, hs)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor,
        relative_pos: Tensor | None = None,
        rel_embeddings: Tensor | None = None,
    ) -> Tensor:
        """hidden_states: (B, T, H); attention_mask: bool (B, 1, T, T), True = may attend;
        relative_pos: (T, T) long; rel_embeddings: (2k, H), the (normed) relative table
        (both None without relative attention). Returns the context (B, T, H)."""
        split = lambda t: rearrange(t, "b t (nh hs) -> b t nh hs", nh=self.num_attention_heads)  # noqa: E731
        q = self.hook_q(split(self.query_proj(hidden_states)))  # (B, T, nh, hs)
        k = self.hook_k(split(self.key_proj(hidden_states)))
        v = self.hook_v(split(self.value_proj(hidden_states)))
        # Head-major and contiguous once: q and k are each read by two matmuls (content and a
        # relative term), which would otherwise copy a permuted view each time.
        q, k, v = (rearrange(t, "b t nh hs -> b nh t hs").contiguous() for t in (q, k, v))

        # Dividing k^T (B, nh, hs, T) by the scale, as transformers does, costs less than
        # dividing the (B, nh, T, T) scores.
        scale = math.sqrt(self.head_dim * self.scale_factor)
        scores = torch.matmul(q, k.transpose(-1, -2) / scale)  # (B, nh, T, T) content->content
        if self.relative_attention:
            scores = scores + self.disentangled_attention_bias(q, k, relative_pos, self.pos_dropout(rel_embeddings))

        # masked_fill (not an added mask), as transformers does: a padding query's row is all
        # finfo.min, a uniform softmax, and masked scores get exactly zero gradient. (GPT-2's
        # attention_pattern forms q k^T alone and zeroes such rows; here the scores carry the
        # relative terms, and the uniform rows keep hidden states equal to transformers' at
        # padding too: no real position reads them.)
        masked = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        scores = self.hook_attn_scores(masked)
        if scores is not masked:  # edited by a hook: what was masked stays masked
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        probs = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = self.hook_z(rearrange(torch.matmul(self.dropout(probs), v), "b nh t hs -> b t nh hs"))
        return rearrange(z, "b t nh hs -> b t (nh hs)")

    def disentangled_attention_bias(
        self, query: Tensor, key: Tensor, relative_pos: Tensor, rel_embeddings: Tensor
    ) -> Tensor:
        """The c2p and p2c terms, each divided by the same scale as the content term.

        query, key: (B, nh, T, hs); relative_pos: (T, T) long; rel_embeddings: (2k, H).
        Returns (B, nh, T, T).
        """
        per_head = lambda t: rearrange(t, "r (nh hs) -> nh r hs", nh=self.num_attention_heads)  # noqa: E731
        scale = math.sqrt(self.head_dim * self.scale_factor)
        rel_embeddings = rel_embeddings[: 2 * self.att_span]
        # Each table (nh, 2k, hs) is divided by the scale before its product: the gathered
        # term comes out divided, and no (B, nh, T, T) division is needed (equal up to rounding).
        terms = []
        if "c2p" in self.pos_att_type:
            proj = self.key_proj if self.share_att_key else self.pos_key_proj
            pos_key = per_head(proj(rel_embeddings))  # (nh, 2k, hs)
            terms.append(self.hook_c2p_scores(c2p_scores(query, pos_key / scale, relative_pos, self.att_span)))
        if "p2c" in self.pos_att_type:
            proj = self.query_proj if self.share_att_key else self.pos_query_proj
            pos_query = per_head(proj(rel_embeddings))  # (nh, 2k, hs)
            terms.append(self.hook_p2c_scores(p2c_scores(key, pos_query / scale, relative_pos, self.att_span)))
        if not terms:
            return torch.zeros((), dtype=query.dtype, device=query.device)
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]


# ---------------------------------------------------------------------------------------
# Embeddings (exercise 6)
# ---------------------------------------------------------------------------------------


class DebertaV2Embeddings(nn.Module):
    """Token (+ absolute position) (+ token type) embeddings, projected E -> H, layer-normed,
    and zeroed at padding (transformers' DebertaV2Embeddings). v3 has no absolute positions
    (position_biased_input=False); embed_proj exists only when embedding_size != hidden_size.

    Hook points: ``hook_embed`` (B, T, E) the word vectors, ``hook_pos_embed`` (B, T, E)
    with position_biased_input, ``hook_token_type_embed`` (B, T, E) with type_vocab_size > 0,
    ``hook_full_embed`` (B, T, H) the output (hidden_states[0]).
    """

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        E, H = config.emb_size, config.hidden_size
        self.word_embeddings = Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.hook_embed = HookPoint()
        self.position_biased_input = config.position_biased_input
        if config.position_biased_input:
            self.position_embeddings = Embedding(config.max_position_embeddings, E)
            self.hook_pos_embed = HookPoint()
        if config.type_vocab_size > 0:
            self.token_type_embeddings = Embedding(config.type_vocab_size, E)
            self.hook_token_type_embed = HookPoint()
        if E != H:
            self.embed_proj = nn.Linear(E, H, bias=False)
        self.LayerNorm = LayerNorm(H, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.hook_full_embed = HookPoint()

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """input_ids (B, T); token_type_ids (B, T) or None (all type 0); position_ids (B or 1, T)
        or None (0..T-1), read only with absolute positions; mask (B, T) bool, True = real token,
        or None (all real). Returns (B, T, H)."""
        x = self.hook_embed(self.word_embeddings(input_ids))  # (B, T, E)
        if self.position_biased_input:
            if position_ids is None:
                position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # (1, T)
            # Broadcast rows made (B, T, E), as BERT's and TransformerLens's hooks see them (a view).
            x = x + self.hook_pos_embed(self.position_embeddings(position_ids).expand_as(x))
        if hasattr(self, "token_type_embeddings"):
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.hook_token_type_embed(self.token_type_embeddings(token_type_ids))
        if hasattr(self, "embed_proj"):
            x = self.embed_proj(x)  # (B, T, H)
        x = self.LayerNorm(x)
        if mask is not None:
            x = x * mask[..., None].to(x.dtype)  # padding positions start at exactly 0
        return self.hook_full_embed(self.dropout(x))


# ---------------------------------------------------------------------------------------
# The encoder (exercise 7)
# ---------------------------------------------------------------------------------------


class DebertaV2Encoder(nn.Module):
    """The layers, plus what they share: the relative-position table (optionally
    layer-normed), the relative positions and the 2-d attention mask (transformers'
    DebertaV2Encoder). Hook point ``hook_rel_embeddings`` (2k, H): the table the layers read."""

    def __init__(self, config: DebertaV2Config, parts: DebertaV2Parts | None = None):
        """parts: the classes the given layers are built from; None means this file's PARTS."""
        super().__init__()
        parts = parts if parts is not None else PARTS
        self.layer = nn.ModuleList([DebertaV2Layer(config, parts) for _ in range(config.num_hidden_layers)])
        self.relative_attention = config.relative_attention
        if self.relative_attention:
            self.position_buckets = config.position_buckets
            self.max_relative_positions = config.max_relative
            self.rel_embeddings = Embedding(2 * config.att_span, config.hidden_size)  # (2k, H)
            self.hook_rel_embeddings = HookPoint()
        self.norm_rel_ebd = "layer_norm" in config.norm_rel_ebd.lower()
        if self.norm_rel_ebd:
            self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        if config.conv_kernel_size > 0:
            self.conv = ConvLayer(config, parts)

    def get_rel_embedding(self) -> Tensor | None:
        """The relative table (2k, H), layer-normed if norm_rel_ebd; None without relative attention."""
        if not self.relative_attention:
            return None
        rel = self.rel_embeddings.weight
        return self.LayerNorm(rel) if self.norm_rel_ebd else rel

    def forward(self, hidden_states: Tensor, attention_mask: Tensor) -> Tensor:
        """hidden_states: the embeddings (B, T, H); attention_mask: (B, T) bool, True = real token.
        Returns the last layer's output (B, T, H)."""
        T = hidden_states.shape[1]
        # Query i may attend to key j when both are real tokens: padding rows are masked too.
        keep = attention_mask[:, None, :, None] & attention_mask[:, None, None, :]  # (B, 1, T, T)
        relative_pos = rel_embeddings = None
        if self.relative_attention:
            relative_pos = build_relative_position(
                T, T, self.position_buckets, self.max_relative_positions, device=hidden_states.device
            )  # (T, T)
            rel_embeddings = self.hook_rel_embeddings(self.get_rel_embedding())  # (2k, H), once for every layer
        x = hidden_states
        for i, layer in enumerate(self.layer):
            x = layer(x, keep, relative_pos, rel_embeddings)
            if i == 0 and hasattr(self, "conv"):
                x = self.conv(hidden_states, x, attention_mask)
        return x


# ---------------------------------------------------------------------------------------
# The MLM heads (exercise 8)
# ---------------------------------------------------------------------------------------


class LegacyDebertaV2PredictionHeadTransform(nn.Module):
    """dense H -> E, activation, layer norm (E): transformers' legacy head, as BERT's."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.emb_size)
        self.act = get_activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.emb_size, config.layer_norm_eps)

    def forward(self, hidden_states: Tensor) -> Tensor:  # (B, T, H) -> (B, T, E)
        return self.LayerNorm(self.act(self.dense(hidden_states)))


class LegacyDebertaV2LMPredictionHead(nn.Module):
    """transformers' default MLM head: transform, then ``decoder`` E -> V (tied to the word
    embeddings by DebertaV2ForMaskedLM when tie_word_embeddings).

    ``bias`` is the decoder's bias when tied; untied, the decoder has its own bias and this
    one is unused (kept so checkpoints round-trip).
    """

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.transform = LegacyDebertaV2PredictionHeadTransform(config)
        self.decoder = nn.Linear(config.emb_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: Tensor) -> Tensor:  # (B, T, H) -> (B, T, V)
        return self.decoder(self.transform(hidden_states))


class LegacyDebertaV2OnlyMLMHead(nn.Module):
    """The legacy head under the checkpoint name ``cls.predictions``."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.predictions = LegacyDebertaV2LMPredictionHead(config)

    def forward(self, sequence_output: Tensor) -> Tensor:  # (B, T, H) -> (B, T, V)
        return self.predictions(sequence_output)


class DebertaV2LMPredictionHead(nn.Module):
    """DeBERTa's original MLM head (microsoft/DeBERTa bert.py, ``lm_predictions.lm_head``):
    dense H -> H, activation, layer norm, then the word embeddings (always shared, passed in)
    and a bias."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: Tensor, word_embeddings: Tensor) -> Tensor:
        """hidden_states (B, T, H), word_embeddings (V, H) the word table. Returns (B, T, V)."""
        h = self.LayerNorm(self.act(self.dense(hidden_states)))
        return torch.matmul(h, word_embeddings.t()) + self.bias


class DebertaV2OnlyMLMHead(nn.Module):
    """The original head under the checkpoint name ``lm_predictions.lm_head``."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.lm_head = DebertaV2LMPredictionHead(config)

    def forward(self, sequence_output: Tensor, word_embeddings: Tensor) -> Tensor:  # -> (B, T, V)
        return self.lm_head(sequence_output, word_embeddings)


# ---------------------------------------------------------------------------------------
# The models: given, built from these parts
# ---------------------------------------------------------------------------------------

PARTS = DebertaV2Parts(
    layer_norm=LayerNorm, embeddings=DebertaV2Embeddings, attention=DisentangledSelfAttention, encoder=DebertaV2Encoder,
    legacy_mlm_head=LegacyDebertaV2OnlyMLMHead, mlm_head=DebertaV2OnlyMLMHead,
)


class DebertaV2Model(given.DebertaV2Model):
    """The given DebertaV2Model built from this file's parts (see its docstring)."""

    parts = PARTS


class DebertaV2ForMaskedLM(given.DebertaV2ForMaskedLM):
    """The given DebertaV2ForMaskedLM built from this file's parts (see its docstring)."""

    parts = PARTS
