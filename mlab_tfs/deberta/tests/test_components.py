"""Exercises 1-6: relative positions, c2p and p2c, the attention and the encoder, each
against transformers' own DeBERTa-v2 functions and modules (or an explicit formula)."""

from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
from transformers.models.deberta_v2 import modeling_deberta_v2 as hf_mod

from mlab_tfs.deberta.mistakes import MISTAKES as M
from mlab_tfs.hooks import HookPoint, capture
from mlab_tfs.outputs import BaseModelOutput
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.mistakes import likely

from .helpers import (
    DEBERTA_CONFIGS,
    assert_attention_points,
    assert_model_grads_close,
    config_of,
    load_into,
    right_padded_batch,
)


def _call(fn, *args, what: str):
    """Run the learner's function (c2p_scores or p2c_scores); turn gather's index errors into a diagnosis."""
    __tracebackhide__ = True  # failures point at the test's line
    try:
        return fn(*args)
    except RuntimeError as e:
        message = str(e).lower()
        if "index" in message and ("out of bounds" in message or "out of range" in message):
            mistake = M["c2p_not_clamped" if what.startswith("c2p") else "p2c_not_clamped"]
            pytest.fail(
                f"{what} raised {e!r}. Relative distances run from -(T-1) to T-1 but the table has 2k rows: add k "
                f"(att_span) and clamp to [0, 2k - 1] before gathering.\n  {likely(mistake)}", pytrace=False,
            )
        raise


# ----------------------------------------------------------------------------- 1. log buckets


def _buckets_with_float_mid(r, bucket_size, max_position):
    """The buckets with mid = bucket_size / 2 (a float for odd sizes), truncated to integers at the end."""
    mid = bucket_size / 2
    a = r.abs().double()
    far = torch.ceil(torch.log(a.clamp_min(1) / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    return torch.where(a <= mid, r, (far * r.sign()).long())



@pytest.mark.exercise("log_buckets")
@pytest.mark.parametrize("bucket_size,max_position", [(8, 32), (256, 512), (4, 20), (16, 20), (7, 100)])
def test_make_log_bucket_position(deberta, bucket_size, max_position):
    r = torch.arange(-3 * max_position, 3 * max_position + 1)
    expected = hf_mod.make_log_bucket_position(r, bucket_size, max_position).long()
    actual = deberta.make_log_bucket_position(r, bucket_size, max_position)
    assert isinstance(actual, torch.Tensor) and actual.shape == r.shape, "return a tensor shaped like relative_pos"
    mid = bucket_size // 2
    a = r.abs().clamp_min(1).double()
    log_part = lambda rounding, ratio=(max_position - 1) / mid: rounding(  # noqa: E731
        torch.log(a / mid) / math.log(ratio) * (mid - 1)) + mid
    near = r.abs() <= mid
    mistakes = {
        M["bucket_floor"]: torch.where(near, r, (log_part(torch.floor) * r.sign()).long()),
        M["bucket_round"]: torch.where(near, r, (log_part(torch.round) * r.sign()).long()),
        M["bucket_sign_lost"]: torch.where(near, r, log_part(torch.ceil).long()),
        M["bucket_log_max_position"]:
            torch.where(near, r, (log_part(torch.ceil, max_position / mid) * r.sign()).long()),
        M["bucket_no_mid"]: torch.where(near, r, ((log_part(torch.ceil) - mid) * r.sign()).long()),
        M["bucket_mid_true_division"]: _buckets_with_float_mid(r, bucket_size, max_position),
        M["bucket_log_scale_mid"]: torch.where(near, r, ((torch.ceil(torch.log(a / mid) / math.log(
            (max_position - 1) / mid) * mid) + mid) * r.sign()).long()),
    }
    assert_close(actual.double(), expected.double(), name=f"make_log_bucket_position(r, {bucket_size}, {max_position})",
                 atol=0, mistakes={k: v.double() for k, v in mistakes.items()},
                 hint="|r| <= bucket_size // 2 stays r; beyond, sign(r) * (mid + ceil(log(|r|/mid) / "
                      "log((max_position-1)/mid) * (mid-1)))")


@pytest.mark.exercise("log_buckets")
def test_log_bucket_worked_example(deberta):
    """The example in GUIDE.md: bucket_size 8, max_position 32."""
    r = torch.tensor([0, 1, 4, 5, 7, 8, 12, 13, 16, 31, -5, -13])
    actual = deberta.make_log_bucket_position(r, 8, 32)
    assert actual.long().tolist() == [0, 1, 4, 5, 5, 6, 6, 6, 7, 7, -5, -6], (
        f"make_log_bucket_position({r.tolist()}, 8, 32) gave {actual.long().tolist()}; see the worked example in "
        f"GUIDE.md#1-log-buckets"
    )


@pytest.mark.exercise("log_buckets")
def test_log_buckets_of_an_integer_tensor_are_integers(deberta):
    actual = deberta.make_log_bucket_position(torch.arange(-40, 41), 8, 32)
    assert not actual.dtype.is_floating_point, (
        f"return integer positions (the dtype of relative_pos), got {actual.dtype}: they index a table later"
    )


# ----------------------------------------------------------------------------- 2. relative positions


@pytest.mark.exercise("relative_position")
@pytest.mark.parametrize("q,k,buckets,max_pos", [(4, 4, -1, -1), (3, 5, -1, -1), (12, 12, 8, 32), (40, 40, 4, 20)])
def test_build_relative_position(deberta, q, k, buckets, max_pos):
    actual = deberta.build_relative_position(q, k, buckets, max_pos)
    expected = hf_mod.build_relative_position(torch.zeros(1, q, 1), torch.zeros(1, k, 1), buckets, max_pos)[0]
    assert isinstance(actual, torch.Tensor) and actual.dtype == torch.long, (
        f"return a torch.long tensor (it is used as a gather index), got {getattr(actual, 'dtype', type(actual))}"
    )
    plain = torch.arange(q)[:, None] - torch.arange(k)[None, :]
    assert actual.shape == expected.shape, (
        f"build_relative_position({q}, {k}, ...) should be ({q}, {k}) (query_size, key_size), got {tuple(actual.shape)}"
        + (f"\n  {likely(M['relative_square'])}" if q != k and tuple(actual.shape) in ((q, q), (k, k)) else ""))
    mistakes = {M["relative_sign_flipped"]: -expected, M["relative_not_bucketed"]: plain}
    assert_close(actual.double(), expected.double(), name=f"build_relative_position({q}, {k}, {buckets}, {max_pos})",
                 atol=0, mistakes={m: v.double() for m, v in mistakes.items()},
                 hint="shape (query_size, key_size), r[i, j] = i - j")


@pytest.mark.exercise("relative_position")
def test_relative_position_worked_example(deberta):
    assert deberta.build_relative_position(3, 3).tolist() == [[0, -1, -2], [1, 0, -1], [2, 1, 0]], (
        "build_relative_position(3, 3) should be [[0, -1, -2], [1, 0, -1], [2, 1, 0]] (r[i, j] = i - j)"
    )


@pytest.mark.exercise("relative_position")
def test_relative_position_device(deberta):
    assert deberta.build_relative_position(2, 2, device="cpu").device.type == "cpu", "honour device="


# ----------------------------------------------------------------------------- 3-4. c2p and p2c


def _c2p_p2c_inputs(T=7, k=3, buckets=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 3, T, 4, generator=g)
    key = torch.randn(2, 3, T, 4, generator=g)
    table = torch.randn(3, 2 * k, 4, generator=g)  # (nh, 2k, hs)
    if buckets:
        rel = hf_mod.build_relative_position(torch.zeros(1, T, 1), torch.zeros(1, T, 1), 2 * k, 64)[0]
    else:
        rel = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    return q, key, table, rel, k


def _gathered(table, rel, k):
    """table[h, clamp(rel[i, j] + k)] -> (nh, T, T, hs)."""
    return table[:, (rel + k).clamp(0, 2 * k - 1)]


@pytest.mark.exercise("c2p")
@pytest.mark.parametrize("buckets", [False, True], ids=["plain", "log-buckets"])
def test_c2p_scores(deberta, buckets):
    q, _, pos_key, rel, k = _c2p_p2c_inputs(buckets=buckets)
    actual = _call(deberta.c2p_scores, q, pos_key, rel, k, what="c2p_scores")
    expected = torch.einsum("bhid,hijd->bhij", q, _gathered(pos_key, rel, k))
    mistakes = {
        M["c2p_sign_flipped"]: torch.einsum("bhid,hijd->bhij", q, _gathered(pos_key, -rel, k)),
        M["c2p_clamp_without_k"]: torch.einsum("bhid,hijd->bhij", q, pos_key[:, rel.clamp(0, 2 * k - 1)]),
        M["c2p_gather_wrong_dim"]:
            torch.einsum("bhid,hijd->bhji", q, _gathered(pos_key, rel, k)),
        M["c2p_scaled"]:
            torch.einsum("bhid,hijd->bhij", q, _gathered(pos_key, rel, k)) / math.sqrt(4 * 3),
    }
    assert_close(actual, expected, name="c2p_scores", atol=1e-5, mistakes=mistakes,
                 hint="(q @ pos_key^T) is (B, nh, T, 2k); gather dim=-1 at clamp(r + k, 0, 2k - 1)")


@pytest.mark.exercise("c2p")
def test_c2p_worked_example(deberta):
    """GUIDE.md's 3-token example: k = 2, the gather index is clamp(r + 2, 0, 3)."""
    q = torch.ones(1, 1, 3, 1)
    pos_key = torch.tensor([10.0, 20.0, 30.0, 40.0])[None, :, None]  # (nh=1, 2k=4, hs=1)
    rel = torch.tensor([[0, -1, -2], [1, 0, -1], [2, 1, 0]])
    actual = _call(deberta.c2p_scores, q, pos_key, rel, 2, what="c2p_scores")
    expected = [[30.0, 20.0, 10.0], [40.0, 30.0, 20.0], [40.0, 40.0, 30.0]]
    assert actual.shape == (1, 1, 3, 3) and actual[0, 0].tolist() == expected, (
        f"c2p_scores of the worked example gave {actual.squeeze().tolist()}, expected {expected}: index "
        f"[[2, 1, 0], [3, 2, 1], [3, 3, 2]] = clamp(r + k, 0, 2k - 1) (GUIDE.md#3-content-to-position)"
    )


@pytest.mark.exercise("c2p")
def test_c2p_gradients(deberta):
    q, _, pos_key, rel, k = _c2p_p2c_inputs(seed=1)
    grads = []
    for fn in (lambda a, b: deberta.c2p_scores(a, b, rel, k),
               lambda a, b: torch.einsum("bhid,hijd->bhij", a, _gathered(b, rel, k))):
        a, b = q.clone().requires_grad_(), pos_key.clone().requires_grad_()
        (fn(a, b) * torch.linspace(-1, 1, 49).reshape(7, 7)).sum().backward()
        grads.append({"query": a.grad, "pos_key": b.grad})
    assert_grads_close(grads[0], grads[1], hint="gather is differentiable; don't detach or index with Python loops over .item()")


@pytest.mark.exercise("p2c")
@pytest.mark.parametrize("buckets", [False, True], ids=["plain", "log-buckets"])
def test_p2c_scores(deberta, buckets):
    _, key, pos_query, rel, k = _c2p_p2c_inputs(buckets=buckets, seed=2)
    actual = _call(deberta.p2c_scores, key, pos_query, rel, k, what="p2c_scores")
    expected = torch.einsum("bhjd,hijd->bhij", key, _gathered(pos_query, rel, k))
    mistakes = {
        M["p2c_sign_flipped"]:
            torch.einsum("bhjd,hijd->bhij", key, _gathered(pos_query, -rel, k)),
        M["p2c_no_transpose"]:
            torch.einsum("bhjd,hijd->bhji", key, _gathered(pos_query, rel, k)),
        M["p2c_as_c2p"]:
            torch.einsum("bhid,hijd->bhij", key, _gathered(pos_query, rel, k)),
    }
    assert_close(actual, expected, name="p2c_scores", atol=1e-5, mistakes=mistakes,
                 hint="key @ pos_query^T is (B, nh, T_key, 2k); gather dim=-1 at clamp(-r + k, 0, 2k - 1), "
                      "then transpose the last two dims")


@pytest.mark.exercise("p2c")
def test_p2c_worked_example(deberta):
    key = torch.tensor([1.0, 2.0, 3.0])[None, None, :, None]  # (1, 1, 3, 1): key j has value j + 1
    pos_query = torch.tensor([10.0, 20.0, 30.0, 40.0])[None, :, None]
    rel = torch.tensor([[0, -1, -2], [1, 0, -1], [2, 1, 0]])
    actual = _call(deberta.p2c_scores, key, pos_query, rel, 2, what="p2c_scores")
    expected = [[30.0, 40.0, 30.0], [40.0, 60.0, 60.0], [40.0, 80.0, 90.0]]
    assert actual.shape == (1, 1, 3, 3) and actual[0, 0].tolist() == expected, (
        f"p2c_scores of the worked example gave {actual.squeeze().tolist()}, expected {expected} "
        f"(GUIDE.md#4-position-to-content)"
    )


# ----------------------------------------------------------------------------- 5. attention


def _attention_inputs(hf, cfg, seed=0):
    ids, mask, _ = right_padded_batch(cfg.vocab_size, [7, 4, 6], seed)
    T = ids.shape[1]
    keep = (mask[:, None, :, None] * mask[:, None, None, :]).bool()  # (B, 1, T, T)
    x = torch.randn(3, T, cfg.hidden_size, generator=torch.Generator().manual_seed(seed)) * 2
    rel = rel_emb = None
    if cfg.relative_attention:
        enc = hf.deberta.encoder
        rel = hf_mod.build_relative_position(x, x, enc.position_buckets, enc.max_relative_positions)[0]
        rel_emb = enc.get_rel_embedding().detach()
    return x, keep, rel, rel_emb


def _point(module, name):
    """A hook point of the learner's module, or a failure that says which one to create."""
    __tracebackhide__ = True  # failures point at the test's line
    point = getattr(module, name, None)
    if not isinstance(point, HookPoint):
        pytest.fail(f"{type(module).__name__} has no hook point {name!r}: create self.{name} = HookPoint() in "
                    f"__init__ and pass the activation through it in forward", pytrace=False)
    return point


def _hf_self(hf_self, x, keep, rel, rel_emb):
    return hf_self(x, keep, output_attentions=True, relative_pos=None if rel is None else rel[None],
                   rel_embeddings=rel_emb)


@pytest.mark.exercise("attention")
@pytest.mark.parametrize("name", list(DEBERTA_CONFIGS))
def test_attention_matches_transformers(deberta, hf_models, name):
    hf = hf_models[name]
    cfg = config_of(hf)
    hf_self = hf.deberta.encoder.layer[1].attention.self
    attn = deberta.DisentangledSelfAttention(cfg)
    _assert_attention_parameters(attn, hf_self, name)
    attn = load_into(attn, hf, "deberta.encoder.layer.1.attention.self.")
    x, keep, rel, rel_emb = _attention_inputs(hf, cfg)
    with capture([_point(attn, "hook_pattern")]) as pattern:
        context = attn(x, keep, rel, rel_emb)
    assert isinstance(context, torch.Tensor), (
        f"DisentangledSelfAttention.forward returns the context (B, T, H) only, got {type(context).__name__}: the "
        f"model reads the probabilities from your hook_pattern"
    )
    probs = pattern[0]
    assert probs is not None, "nothing passed through hook_pattern: call self.hook_pattern(probs) after the softmax"
    with torch.no_grad():
        expected, expected_probs = _hf_self(hf_self, x, keep, rel, rel_emb)

        def with_scale(fn):
            def run():
                with mock.patch.object(hf_mod, "scaled_size_sqrt", fn):
                    return _hf_self(hf_self, x, keep, rel, rel_emb)[1]
            return run

        def relative_unscaled():  # c2p + p2c added as they come out of the gathers
            bias = hf_self.disentangled_attention_bias
            unscaled = lambda q, k, r, e, f: bias(q, k, r, e, f) * hf_mod.scaled_size_sqrt(q, f)  # noqa: E731
            with mock.patch.object(hf_self, "disentangled_attention_bias", unscaled):
                return _hf_self(hf_self, x, keep, rel, rel_emb)[1]

        def shared_keys():  # the key and query projections for the table, though share_att_key is False
            with mock.patch.object(hf_self, "share_att_key", True):
                return _hf_self(hf_self, x, keep, rel, rel_emb)[1]

        hs = cfg.head_dim
        mistakes = {
            M["scale_no_factor"]: with_scale(lambda q, f: torch.sqrt(torch.tensor(float(hs)))),
            M["scale_factor_outside_sqrt"]: with_scale(lambda q, f: torch.sqrt(torch.tensor(float(hs))) * f),
            M["scale_factor_fixed_3"]: with_scale(lambda q, f: torch.sqrt(torch.tensor(3.0 * hs))),
            M["no_scale"]: with_scale(lambda q, f: torch.tensor(1.0)),
        }
        if cfg.relative_attention:
            mistakes[M["relative_terms_unscaled"]] = relative_unscaled
            if not cfg.share_att_key:
                mistakes[M["share_att_key_ignored"]] = shared_keys
    assert_close(probs, expected_probs, name=f"attention probabilities ({name})", atol=1e-6, mistakes=mistakes,
                 hint="scores = (q k^T + c2p + p2c) / sqrt(hs * (1 + len(pos_att_type))), masked_fill where the "
                      "mask is False with finfo.min, softmax over keys")
    assert_close(context, expected, name=f"attention context ({name})", atol=1e-5,
                 hint="probs @ v, heads merged back to (B, T, H) in the order they were split")


def _assert_attention_parameters(attn, hf_self, name: str) -> None:
    """The learner's attention has transformers' parameter names (else the weights cannot load)."""
    __tracebackhide__ = True
    ours, theirs = set(dict(attn.named_parameters())), set(dict(hf_self.named_parameters()))
    relative = {n for n in ours ^ theirs if n.startswith(("pos_key_proj.", "pos_query_proj."))}
    assert ours == theirs, (
        f"DisentangledSelfAttention({name}) should have parameters {sorted(theirs)}, has {sorted(ours)}: "
        f"pos_key_proj only for c2p, pos_query_proj only for p2c, neither with share_att_key"
        + (f"\n  {likely(M['share_att_key_ignored'])}" if relative == ours ^ theirs else ""))


ATTENTION_POINTS = ("hook_q", "hook_k", "hook_v", "hook_c2p_scores", "hook_p2c_scores", "hook_attn_scores",
                    "hook_pattern", "hook_z")


@pytest.mark.exercise("attention")
@pytest.mark.parametrize("name", ["v3", "c2p_embed_proj", "p2c_buckets_untied", "absolute_only"])
def test_attention_hook_points(deberta, hf_models, name):
    """Every hook point of the attention holds its value (by hand from transformers' module),
    and the relative ones exist only with the term they name."""
    hf = hf_models[name]
    cfg = config_of(hf)
    attn = load_into(deberta.DisentangledSelfAttention(cfg), hf, "deberta.encoder.layer.0.attention.self.")
    x, keep, rel, rel_emb = _attention_inputs(hf, cfg, seed=4)
    terms = cfg.pos_att_type if cfg.relative_attention else []
    wanted = [p for p in ATTENTION_POINTS if not p.endswith("_scores") or p == "hook_attn_scores" or p[5:8] in terms]
    unwanted = sorted(set(ATTENTION_POINTS) - set(wanted))
    assert not [p for p in unwanted if isinstance(getattr(attn, p, None), HookPoint)], (
        f"{name}: pos_att_type is {cfg.pos_att_type}, so DisentangledSelfAttention has none of {unwanted}: create "
        f"hook_c2p_scores / hook_p2c_scores only for the terms the config uses"
    )
    with torch.no_grad(), capture([_point(attn, p) for p in wanted]) as values:
        attn(x, keep, rel, rel_emb)
    mask = keep[:, 0].diagonal(dim1=-2, dim2=-1)  # (B, T): a token is real when it may see itself
    assert_attention_points(dict(zip(wanted, values)), hf.deberta.encoder.layer[0].attention.self, cfg, x, rel_emb,
                            mask, where="attention.")


@pytest.mark.exercise("attention")
@pytest.mark.parametrize("name", ["v3", "c2p_embed_proj", "p2c_buckets_untied", "both_unshared"])
def test_attention_parameters(deberta, hf_models, name):
    cfg = config_of(hf_models[name])
    ours = set(dict(deberta.DisentangledSelfAttention(cfg).named_parameters()))
    theirs = set(dict(hf_models[name].deberta.encoder.layer[0].attention.self.named_parameters()))
    assert ours == theirs, (
        f"DisentangledSelfAttention({name}) should have parameters {sorted(theirs)}, has {sorted(ours)}: "
        f"pos_key_proj only for c2p, pos_query_proj only for p2c, neither with share_att_key"
    )


@pytest.mark.exercise("attention")
@pytest.mark.parametrize("name", ["v2_conv", "c2p_embed_proj", "p2c_buckets_untied", "both_unshared"])
def test_attention_gradients(deberta, hf_models, name):
    hf = hf_models[name]
    cfg = config_of(hf)
    hf_self = hf.deberta.encoder.layer[0].attention.self
    attn = load_into(deberta.DisentangledSelfAttention(cfg), hf, "deberta.encoder.layer.0.attention.self.")
    x, keep, rel, rel_emb = _attention_inputs(hf, cfg, seed=1)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    # The relative table gets a gradient too: it is shared by every layer.
    ours_emb, hf_emb = rel_emb.clone().requires_grad_(), rel_emb.clone().requires_grad_()
    hf_self.zero_grad()
    (attn(x, keep, rel, ours_emb) * g).sum().backward()
    (_hf_self(hf_self, x, keep, rel, hf_emb)[0] * g).sum().backward()
    prefix = lambda d: {f"encoder.layer.0.attention.self.{k}": v for k, v in d.items()}  # noqa: E731
    assert_model_grads_close(prefix({n: p.grad for n, p in attn.named_parameters()}),
                             prefix({n: p.grad for n, p in hf_self.named_parameters()}), cfg)
    assert_close(ours_emb.grad, hf_emb.grad, name="d attention / d rel_embeddings", atol=1e-6,
                 hint="project rel_embeddings with the key/query projections (share_att_key) or pos_key_proj/"
                      "pos_query_proj, inside the graph")
    hf_self.zero_grad()


# ----------------------------------------------------------------------------- 6. encoder


def _run_encoder(enc, x, mask):
    """The encoder's output, and its hidden states and attentions read from the given layers'
    hook points (the model gathers them the same way)."""
    __tracebackhide__ = True  # failures point at the test's line
    layers = list(enc.layer)
    last = enc.conv.hook_out if len(layers) == 1 and hasattr(enc, "conv") else layers[-1].hook_normalized_resid_post
    with capture([layer.hook_resid_pre for layer in layers] + [last]) as hidden, \
            capture([layer.attention.self.hook_pattern for layer in layers]) as patterns:
        out = enc(x, mask)
    assert isinstance(out, torch.Tensor), f"DebertaV2Encoder.forward returns a tensor (B, T, H), got {type(out)}"
    return BaseModelOutput(last_hidden_state=out, hidden_states=tuple(hidden), attentions=tuple(patterns))


@pytest.mark.exercise("encoder")
@pytest.mark.parametrize("name", list(DEBERTA_CONFIGS))
def test_encoder_matches_transformers(deberta, hf_models, name):
    hf = hf_models[name]
    cfg = config_of(hf)
    hf_enc = hf.deberta.encoder
    enc = load_into(deberta.DebertaV2Encoder(cfg), hf, "deberta.encoder.")
    ids, mask, _ = right_padded_batch(cfg.vocab_size, [9, 3, 6], seed=2)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, ids.shape[1], cfg.hidden_size, generator=g) * mask[..., None]  # embeddings are 0 at padding
    with torch.no_grad():
        out = _run_encoder(enc, x, mask.bool())
        expected = hf_enc(x, mask, output_hidden_states=True, output_attentions=True)
        T = ids.shape[1]

        def keys_only():
            return hf_enc(x, mask[:, None, :].expand(3, T, T), output_hidden_states=True).last_hidden_state

        def unnormed_table():
            saved = hf_enc.norm_rel_ebd
            hf_enc.norm_rel_ebd = ["none"]
            try:
                return hf_enc(x, mask, output_hidden_states=True).last_hidden_state
            finally:
                hf_enc.norm_rel_ebd = saved

        def unbucketed():
            with mock.patch.object(hf_enc, "position_buckets", -1):
                return hf_enc(x, mask, output_hidden_states=True).last_hidden_state

        mistakes = {M["encoder_keys_only_mask"]: keys_only}
        if "layer_norm" in cfg.norm_rel_ebd:
            mistakes[M["encoder_table_not_normed"]] = unnormed_table
        if cfg.relative_attention and cfg.position_buckets > 0:
            mistakes[M["encoder_no_buckets"]] = unbucketed
    n = cfg.num_hidden_layers
    assert_close(out.last_hidden_state, expected.last_hidden_state, name=f"encoder output ({name})", atol=1e-5,
                 mistakes=mistakes, hint="the convolution (when conv_kernel_size > 0) runs once, after layer 0, on "
                                         "the encoder's input: conv(input, layer_0_output, mask)")
    for i, (a, e) in enumerate(zip(out.hidden_states, expected.hidden_states)):
        assert_close(a, e, name=f"encoder hidden_states[{i}]", atol=1e-5)
    for i, (a, e) in enumerate(zip(out.attentions, expected.attentions)):
        assert_close(a, e, name=f"encoder attentions[{i}]", atol=1e-6)


@pytest.mark.exercise("encoder")
@pytest.mark.parametrize("name", ["v3", "c2p_embed_proj", "absolute_only"])
def test_rel_embedding(deberta, hf_models, name):
    hf = hf_models[name]
    cfg = config_of(hf)
    enc = load_into(deberta.DebertaV2Encoder(cfg), hf, "deberta.encoder.")
    expected = hf.deberta.encoder.get_rel_embedding()
    actual = enc.get_rel_embedding()
    if expected is None:
        assert actual is None, "without relative_attention, get_rel_embedding returns None"
        return
    assert_close(actual, expected, name="get_rel_embedding()", atol=1e-6,
                 hint="rel_embeddings.weight, (2k, H), through self.LayerNorm when norm_rel_ebd is 'layer_norm'")


@pytest.mark.exercise("encoder")
def test_encoder_parameters(deberta, hf_models):
    for name in ("v2_conv", "both_unshared", "absolute_only"):
        cfg = config_of(hf_models[name])
        ours = {n: tuple(p.shape) for n, p in deberta.DebertaV2Encoder(cfg).named_parameters()}
        theirs = {n: tuple(p.shape) for n, p in hf_models[name].deberta.encoder.named_parameters()}
        assert ours == theirs, (
            f"DebertaV2Encoder({name}): parameters differ from transformers': missing "
            f"{sorted(set(theirs) - set(ours))[:5]}, extra {sorted(set(ours) - set(theirs))[:5]}, shapes "
            f"{[(k, ours[k], theirs[k]) for k in set(ours) & set(theirs) if ours[k] != theirs[k]][:3]}"
        )


# ----------------------------------------------------------------------------- 6. embeddings


def _embedding_inputs(cfg, seed=0):
    ids, mask, types = right_padded_batch(cfg.vocab_size, [9, 4, 7], seed, cfg.type_vocab_size)
    positions = torch.arange(ids.shape[1])[None] if cfg.position_biased_input else None
    return ids, types, positions, mask.bool()


@pytest.mark.exercise("embeddings")
@pytest.mark.parametrize("name", list(DEBERTA_CONFIGS))
def test_embeddings_match_transformers(deberta, hf_models, name):
    hf = hf_models[name]
    cfg = config_of(hf)
    hf_emb = hf.deberta.embeddings
    emb = load_into(deberta.DebertaV2Embeddings(cfg), hf, "deberta.embeddings.")
    ids, types, positions, mask = _embedding_inputs(cfg, seed=3)
    # Padded slots hold a real id, not the pad id's (zero) row: the mask alone must zero them, and
    # no mask differs from a mask before the norm.
    ids = ids.masked_fill(~mask, 1)
    with torch.no_grad():
        actual = emb(ids, types, positions, mask)
        expected = hf_emb(input_ids=ids, token_type_ids=types, mask=mask)

        def before_norm():  # LayerNorm(x * mask): padding rows become the norm's bias, not 0
            x = hf_emb.word_embeddings(ids)
            if hf_emb.position_embeddings is not None:
                x = x + hf_emb.position_embeddings(positions)
            if hf_emb.token_type_embeddings is not None:
                x = x + hf_emb.token_type_embeddings(types)
            if hf_emb.embed_proj is not None:
                x = hf_emb.embed_proj(x)
            return hf_emb.LayerNorm(x * mask[..., None])

        mistakes = {M["embeddings_no_mask"]:
                    hf_emb(input_ids=ids, token_type_ids=types),
                    M["embeddings_mask_before_norm"]: before_norm}
        if types is not None:
            mistakes[M["embeddings_token_types_ignored"]] = hf_emb(
                input_ids=ids, mask=mask)
    assert isinstance(actual, torch.Tensor) and actual.shape == (*ids.shape, cfg.hidden_size), (
        f"DebertaV2Embeddings returns (B, T, H) = {(*ids.shape, cfg.hidden_size)}, got "
        f"{getattr(actual, 'shape', type(actual))}"
    )
    assert_close(actual, expected, name=f"embeddings ({name})", atol=1e-5, mistakes=mistakes,
                 hint="word (+ position if position_biased_input) (+ token type if there is a table), embed_proj if "
                      "E != H, LayerNorm, times the mask, dropout")
    assert bool((actual[~mask] == 0).all()), "padding positions of the embeddings must be exactly 0"


@pytest.mark.exercise("embeddings")
def test_embeddings_explicit_positions_and_default_types(deberta, hf_models):
    """Per-sequence position_ids (B, T) are used as given; token_type_ids=None means type 0."""
    hf = hf_models["c2p_embed_proj"]
    cfg = config_of(hf)
    emb = load_into(deberta.DebertaV2Embeddings(cfg), hf, "deberta.embeddings.")
    ids, _, _, mask = _embedding_inputs(cfg, seed=4)
    positions = torch.stack([torch.arange(ids.shape[1]).flip(0), torch.arange(ids.shape[1]) + 3,
                             torch.zeros(ids.shape[1], dtype=torch.long)])  # (B, T), all < 24
    with torch.no_grad():
        actual = emb(ids, None, positions, mask)
        expected = hf.deberta.embeddings(input_ids=ids, position_ids=positions, mask=mask)
        default = hf.deberta.embeddings(input_ids=ids, mask=mask)
    assert_close(actual, expected, name="embeddings with position_ids (B, T)", atol=1e-5,
                 mistakes={M["embeddings_position_ids_ignored"]: default},
                 hint="look the absolute positions up at position_ids, not at arange(T)")


@pytest.mark.exercise("embeddings")
@pytest.mark.parametrize("name", ["c2p_embed_proj", "v3"])
def test_embeddings_defaults(deberta, hf_models, name):
    """emb(input_ids) alone: types 0, positions 0..T-1, every token real (transformers' defaults)."""
    hf = hf_models[name]
    cfg = config_of(hf)
    emb = load_into(deberta.DebertaV2Embeddings(cfg), hf, "deberta.embeddings.")
    ids = torch.randint(0, cfg.vocab_size, (2, 6), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        assert_close(emb(ids), hf.deberta.embeddings(input_ids=ids), name=f"embeddings(input_ids) ({name})",
                     atol=1e-5, hint="token_type_ids=None: type 0; position_ids=None: 0..T-1; mask=None: no multiply")


@pytest.mark.exercise("embeddings")
@pytest.mark.parametrize("name", ["v3", "c2p_embed_proj", "absolute_only"])
def test_embeddings_parameters(deberta, hf_models, name):
    cfg = config_of(hf_models[name])
    ours = {n: tuple(p.shape) for n, p in deberta.DebertaV2Embeddings(cfg).named_parameters()}
    theirs = {n: tuple(p.shape) for n, p in hf_models[name].deberta.embeddings.named_parameters()}
    assert ours == theirs, (
        f"DebertaV2Embeddings({name}) should have parameters {sorted(theirs.items())}, has {sorted(ours.items())}: "
        f"position_embeddings only with position_biased_input, token_type_embeddings only with type_vocab_size > 0, "
        f"embed_proj (no bias) only when embedding_size != hidden_size"
    )


@pytest.mark.exercise("embeddings")
@pytest.mark.parametrize("name", ["v2_conv", "c2p_embed_proj"])
def test_embeddings_gradients(deberta, hf_models, name):
    hf = hf_models[name]
    cfg = config_of(hf)
    hf_emb = hf.deberta.embeddings
    emb = load_into(deberta.DebertaV2Embeddings(cfg), hf, "deberta.embeddings.")
    ids, types, positions, mask = _embedding_inputs(cfg, seed=5)
    ids[0, 0] = cfg.pad_token_id  # a padding id at a real position: its row still gets no gradient
    g = torch.randn(*ids.shape, cfg.hidden_size, generator=torch.Generator().manual_seed(6))
    hf_emb.zero_grad()
    (emb(ids, types, positions, mask) * g).sum().backward()
    (hf_emb(input_ids=ids, token_type_ids=types, mask=mask) * g).sum().backward()
    assert_grads_close({n: p.grad for n, p in emb.named_parameters()},
                       {n: p.grad for n, p in hf_emb.named_parameters()},
                       hint="the word table's padding_idx row gets no gradient "
                            "(Embedding(..., padding_idx=pad_token_id))")
    hf_emb.zero_grad()


# ----------------------------------------------------------------------------- 8. MLM heads


def _head_input(cfg, seed=0):
    return torch.randn(3, 5, cfg.hidden_size, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.mark.exercise("mlm_heads")
@pytest.mark.parametrize("name", [n for n, c in DEBERTA_CONFIGS.items() if c.get("legacy", True)])
def test_legacy_head_matches_transformers(deberta, hf_models, name):
    hf = hf_models[name]
    cfg = config_of(hf)
    head = load_into(deberta.LegacyDebertaV2OnlyMLMHead(cfg), hf, "cls.")
    h = _head_input(cfg, seed=7)
    with torch.no_grad():
        t = hf.cls.predictions.transform
        mistakes = {M["head_norm_before_act"]: hf.cls.predictions.decoder(t.transform_act_fn(t.LayerNorm(t.dense(h)))),
                    M["legacy_bias_twice"]: hf.cls(h) + hf.cls.predictions.bias}
        actual, expected = head(h), hf.cls(h)
    assert_close(actual, expected, name=f"legacy MLM head logits ({name})", atol=1e-5, mistakes=mistakes,
                 hint="decoder(LayerNorm(act(dense(h)))); dense is H -> E, the decoder E -> V")


@pytest.mark.exercise("mlm_heads")
def test_original_head_matches_transformers(deberta, hf_models):
    hf = hf_models["v3"]
    cfg = config_of(hf)
    head = load_into(deberta.DebertaV2OnlyMLMHead(cfg), hf, "lm_predictions.")
    h = _head_input(cfg, seed=8)
    words = hf.deberta.embeddings.word_embeddings
    with torch.no_grad():
        lm = hf.lm_predictions.lm_head
        x = lm.LayerNorm(lm.transform_act_fn(lm.dense(h)))
        mistakes = {M["original_head_no_bias"]: x @ words.weight.t(),
                    M["head_norm_before_act"]: lm.transform_act_fn(lm.LayerNorm(lm.dense(h))) @ words.weight.t()
                    + lm.bias}
        expected = hf.lm_predictions(h, words)
    ours_words = words.weight.detach().clone().requires_grad_()
    actual = head(h, ours_words)
    assert_close(actual, expected, name="original MLM head logits (v3)", atol=1e-5, mistakes=mistakes,
                 hint="LayerNorm(act(dense(h))) @ word_embeddings^T + bias")
    g = torch.randn(actual.shape, generator=torch.Generator().manual_seed(9))
    hf_words = words.weight.detach().clone().requires_grad_()
    (actual * g).sum().backward()
    (torch.matmul(x, hf_words.t()) * g).sum().backward()
    assert_close(ours_words.grad, hf_words.grad, name="d logits / d word_embeddings", atol=1e-5,
                 hint="multiply by the word table inside the graph: it is trained through the head too")


@pytest.mark.exercise("mlm_heads")
@pytest.mark.parametrize("name,legacy", [("v3", False), ("c2p_embed_proj", True), ("p2c_buckets_untied", True)])
def test_head_parameters(deberta, hf_models, name, legacy):
    cfg = config_of(hf_models[name])
    head = deberta.LegacyDebertaV2OnlyMLMHead(cfg) if legacy else deberta.DebertaV2OnlyMLMHead(cfg)
    hf_head = hf_models[name].cls if legacy else hf_models[name].lm_predictions
    ours = {n: tuple(p.shape) for n, p in head.named_parameters(remove_duplicate=False)}
    theirs = {n: tuple(p.shape) for n, p in hf_head.named_parameters(remove_duplicate=False)}
    assert ours == theirs, (
        f"{type(head).__name__}({name}) should have parameters {sorted(theirs.items())}, has {sorted(ours.items())}"
    )


@pytest.mark.exercise("embeddings")
@pytest.mark.parametrize("name", ["c2p_embed_proj", "v3"])
def test_embeddings_hook_points(deberta, hf_models, name):
    """hook_embed / hook_pos_embed / hook_token_type_embed: the lookups (B, T, E), present
    only with their table; hook_full_embed: the output."""
    hf = hf_models[name]
    cfg = config_of(hf)
    hf_emb = hf.deberta.embeddings
    emb = load_into(deberta.DebertaV2Embeddings(cfg), hf, "deberta.embeddings.")
    ids, types, positions, mask = _embedding_inputs(cfg, seed=8)
    expected = {"hook_embed": hf_emb.word_embeddings(ids)}
    if cfg.position_biased_input:
        # (B, T, E) even for positions shared by the batch, as BERT's and TransformerLens's
        expected["hook_pos_embed"] = hf_emb.position_embeddings(positions).expand(*ids.shape, -1)
    if cfg.type_vocab_size > 0:
        expected["hook_token_type_embed"] = hf_emb.token_type_embeddings(types)
    absent = {"hook_embed", "hook_pos_embed", "hook_token_type_embed"} - set(expected)
    assert not [p for p in absent if isinstance(getattr(emb, p, None), HookPoint)], (
        f"{name} has no table for {sorted(absent)}: create those hook points only with their table")
    with torch.no_grad(), capture([_point(emb, p) for p in [*expected, "hook_full_embed"]]) as values:
        out = emb(ids, types, positions, mask)
    for (point, value), actual in zip(expected.items(), values):
        assert_close(actual, value.detach(), name=f"embeddings.{point}", atol=0,
                     hint="each hook point holds its table's lookup, before the sum")
    assert values[-1] is out, "hook_full_embed is the embeddings' output: return what passes through it"


@pytest.mark.exercise("encoder")
@pytest.mark.parametrize("name", ["v3", "c2p_embed_proj"])
def test_encoder_passes_the_table_through_its_hook_point(deberta, hf_models, name):
    """hook_rel_embeddings holds the table the layers read (layer-normed when norm_rel_ebd), and
    a table edited there reaches every layer: the same as transformers with the edited table."""
    hf = hf_models[name]
    cfg = config_of(hf)
    hf_enc = hf.deberta.encoder
    enc = load_into(deberta.DebertaV2Encoder(cfg), hf, "deberta.encoder.")
    ids, mask, _ = right_padded_batch(cfg.vocab_size, [6, 4], seed=9)
    x = torch.randn(2, ids.shape[1], cfg.hidden_size, generator=torch.Generator().manual_seed(10)) * mask[..., None]
    point = _point(enc, "hook_rel_embeddings")
    with torch.no_grad(), capture([point]) as table:
        enc(x, mask.bool())
    assert_close(table[0], hf_enc.get_rel_embedding(), name="encoder.hook_rel_embeddings", atol=1e-6,
                 hint="pass get_rel_embedding()'s table through hook_rel_embeddings once, before the layers")
    handle = point.add_hook(lambda t, hook: t.flip(0))
    try:
        with torch.no_grad(), mock.patch.object(hf_enc, "get_rel_embedding", lambda: table[0].flip(0)):
            actual, expected = enc(x, mask.bool()), hf_enc(x, mask).last_hidden_state
    finally:
        handle.remove()
    assert_close(actual, expected, name="encoder output with the table reversed at hook_rel_embeddings", atol=1e-5,
                 hint="every layer reads the table that came out of hook_rel_embeddings")
