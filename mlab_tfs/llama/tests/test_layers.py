"""Exercises 1-8 of the Llama part, each piece against transformers' own (``LlamaRMSNorm``,
``rotate_half``, ``apply_rotary_pos_emb``, ``LlamaRotaryEmbedding``, ``LlamaMLP``, ``repeat_kv``,
``LlamaAttention``, ``Qwen3Attention``, ``LlamaDecoderLayer``) on the tiny random checkpoints,
fp32 within 1e-5 (bfloat16 exactly); a failure names the catalogued mistake it matches."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from transformers.models.llama import modeling_llama as hf_llama

from mlab_tfs.llama.mistakes import MISTAKES as M
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.mistakes import likely
from mlab_tfs.testing.shortcuts import additive, no_shortcuts

from . import reference as ref
from .helpers import GQA, LLAMA3, QWEN3, QWEN3_TIED, TIED

# ----------------------------------------------------------------------------- 1. RMSNorm


def _rms_mistakes(x, weight, eps, actual=None):
    """actual: the learner's output, to pick the nearest of one mistake's several forms."""
    both = lambda **kw: ref.nearest(actual, ref.rms_norm(x, weight, eps, **kw),  # noqa: E731
                                    ref.rms_norm(x, weight, eps, rsqrt=True, **kw))
    return {M["mean_subtracted"]: ref.rms_norm(x, weight, eps, mean=True),
            M["eps_outside_rsqrt"]: ref.rms_norm(x, weight, eps, eps_outside=True),
            M["rms_without_sqrt"]: ref.rms_norm(x, weight, eps, no_sqrt=True),
            M["wrong_dim"]: ref.nearest(actual, *(ref.rms_norm(x, weight, eps, dim=d) for d in range(-2, -x.dim() - 1, -1))),
            M["statistics_in_input_dtype"]: ref.nearest(actual, both(in_dtype=True), both(square_in_dtype=True)),
            M["weight_before_cast"]: both(weight_first=True)}


@pytest.mark.exercise("rms_norm")
def test_rms_norm_parameters(llama):
    norm = llama.RMSNorm(16, eps=0.25)
    params = dict(norm.named_parameters())
    assert set(params) == {"weight"}, (f"RMSNorm should have one parameter, weight (no bias), has {sorted(params)}")
    assert torch.equal(norm.weight.detach(), torch.ones(16)), "RMSNorm.weight should start at ones, shape (C,)"
    assert norm.eps == 0.25, "keep eps as self.eps"
    shown = repr(norm)
    assert "(16,), eps=0.25" in shown, (
        f"print(RMSNorm(16, eps=0.25)) shows the weight's shape and eps (the given RMSNormRepr): expected "
        f"'(16,), eps=0.25' in it, got {shown!r}: is self.weight an nn.Parameter of shape (C,) and self.eps stored?")


def test_printing_a_model_needs_no_exercise_beyond_init(pytestconfig):
    """The repr is given (RMSNormRepr), not a stub: a learner's model whose RMSNorm has only
    __init__ and forward prints, as transformers' LlamaRMSNorm does."""
    if pytestconfig.getoption("impl") == "student":
        pytest.skip("checks the course's stub, not your implementation")
    from mlab_tfs.llama import solution, student

    assert set(k for k, v in vars(student.RMSNorm).items() if callable(v)) == {"__init__", "forward"}

    class Learner(student.RMSNorm):  # the stub with exercise 1's __init__ done
        def __init__(self, hidden_size, eps=1e-6):
            torch.nn.Module.__init__(self)
            self.weight, self.eps = torch.nn.Parameter(torch.ones(hidden_size)), eps

    assert "(16,), eps=0.25" in repr(Learner(16, eps=0.25))
    assert repr(solution.LlamaModel(solution.LlamaConfig(
        vocab_size=11, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2))
    ).count("(8,), eps=1e-06") == 3  # input_layernorm, post_attention_layernorm, norm


@pytest.mark.exercise("rms_norm")
@pytest.mark.parametrize("eps", [1e-6, 0.1])
def test_rms_norm_matches_transformers(llama, eps):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16) * 0.3 + 0.2  # features that do not average to 0, of size ~ sqrt(eps) for 0.1
    norm, theirs = llama.RMSNorm(16, eps=eps), hf_llama.LlamaRMSNorm(16, eps=eps)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
        theirs.weight.copy_(norm.weight)
    with no_shortcuts((F, "rms_norm"), (torch, "rms_norm")):
        actual = norm(x)
    assert_close(actual, theirs(x), name="RMSNorm(x)", atol=1e-5, mistakes=_rms_mistakes(x, theirs.weight.detach(), eps, actual),
                 hint="weight * x / sqrt(mean(x**2, last dim) + eps): no mean subtracted, no bias")


@pytest.mark.exercise("rms_norm")
def test_rms_norm_gradients(llama):
    torch.manual_seed(1)
    x = (torch.randn(3, 7, 12) * 2).requires_grad_()
    norm, theirs = llama.RMSNorm(12, eps=1e-5), hf_llama.LlamaRMSNorm(12, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(12))
        theirs.weight.copy_(norm.weight)
    g = torch.randn(3, 7, 12)
    (norm(x) * g).sum().backward()
    x_grad, x.grad = x.grad.clone(), None
    (theirs(x) * g).sum().backward()
    assert_close(x_grad, x.grad, name="d RMSNorm(x) / dx", atol=1e-5,
                 hint="is the root mean square detached? The gradient flows through it")
    assert_grads_close({"weight": norm.weight.grad}, {"weight": theirs.weight.grad})


@pytest.mark.exercise("rms_norm")
def test_rms_norm_bfloat16_exactly_as_transformers(llama):
    """bfloat16 in, bfloat16 weight: statistics in float32, cast back, then the weight (one rounding
    where transformers has it)."""
    torch.manual_seed(2)
    x = (torch.randn(4, 9, 64) * 3 + 1).to(torch.bfloat16)
    norm, theirs = llama.RMSNorm(64, eps=1e-5), hf_llama.LlamaRMSNorm(64, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(64))
        theirs.weight.copy_(norm.weight)
    norm, theirs = norm.to(torch.bfloat16), theirs.to(torch.bfloat16)
    actual, expected = norm(x), theirs(x)
    assert actual.dtype == torch.bfloat16, f"bfloat16 input and weight should give bfloat16, got {actual.dtype}"
    w = theirs.weight.detach()
    assert_close(actual, expected, name="RMSNorm(x) in bfloat16", atol=0, mistakes=_rms_mistakes(x, w, 1e-5, actual),
                 hint="compute on x.float(), cast the normalised x back to x.dtype, then multiply by the weight")


# ----------------------------------------------------------------------------- 2. rotary embeddings


def _angles(hd: int, T: int, theta: float = 10000.0, B: int = 1):
    pos = torch.arange(T)[None].expand(B, T) + torch.arange(B)[:, None] * 3  # (B, T), rows offset
    return ref.cos_sin(ref.inv_freq(hd, theta), pos, torch.float32)


@pytest.mark.exercise("rotary")
def test_rotate_half(llama):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8)
    expected = hf_llama.rotate_half(x)
    assert_close(llama.rotate_half(x), expected, name="rotate_half(x)", atol=0,
                 mistakes={M["wrong_pair_layout"]: ref.rotate_interleaved(x), M["rotate_half_sign"]: -expected},
                 hint="the halves x1 = x[..., :hd/2], x2 = x[..., hd/2:] -> cat(-x2, x1)")


@pytest.mark.exercise("rotary")
def test_apply_rotary_pos_emb(llama):
    torch.manual_seed(1)
    q, k = torch.randn(2, 4, 6, 8), torch.randn(2, 2, 6, 8)  # nh = 4, nkv = 2 heads
    cos, sin = _angles(8, 6, B=2)  # (B, T, hd)
    q_exp, k_exp = hf_llama.apply_rotary_pos_emb(q, k, cos, sin)
    q_act, k_act = llama.apply_rotary_pos_emb(q, k, cos, sin)
    interleaved = ref.rotate(q, k, cos, sin, turn=ref.rotate_interleaved)
    swapped = ref.rotate(q, k, cos, sin, swapped=True)
    assert_close(q_act, q_exp, name="rotated q", atol=1e-6,
                 mistakes={M["wrong_pair_layout"]: interleaved[0], M["cos_sin_swapped"]: swapped[0]},
                 hint="q * cos + rotate_half(q) * sin, cos and sin unsqueezed at the head dimension")
    assert_close(k_act, k_exp, name="rotated k", atol=1e-6,
                 mistakes={M["keys_not_rotated"]: k, M["wrong_pair_layout"]: interleaved[1],
                           M["cos_sin_swapped"]: swapped[1]},
                 hint="k is rotated exactly as q, with its own nkv heads")


@pytest.mark.exercise("rotary")
def test_rotary_scores_depend_on_the_offset_only(llama):
    """q at m and k at n: q.k is the same for (5, 3), (105, 103), (1000, 998); (3, 5) differs."""
    torch.manual_seed(2)
    hd = 16
    q, k = torch.randn(1, 1, 1, hd), torch.randn(1, 1, 1, hd)
    inv = ref.inv_freq(hd, 10000.0)

    def score(m, n):
        cq, sq = ref.cos_sin(inv, torch.tensor([[m]]), torch.float32)
        ck, sk = ref.cos_sin(inv, torch.tensor([[n]]), torch.float32)
        return float((llama.apply_rotary_pos_emb(q, q, cq, sq)[0] * llama.apply_rotary_pos_emb(k, k, ck, sk)[1]).sum())

    base = score(5, 3)
    for m, n in [(105, 103), (1000, 998)]:
        assert abs(score(m, n) - base) < 1e-3, (
            f"score(q at {m}, k at {n}) = {score(m, n):.5f} but score(5, 3) = {base:.5f}: with q and k both rotated "
            "by their positions the score depends on m - n only")
    assert abs(score(3, 5) - base) > 1e-2, "score(3, 5) should differ from score(5, 3): the rotation has a direction"


@pytest.mark.exercise("rotary")
def test_rotate_interleaved(llama):
    x = torch.arange(8.0).view(1, 8)
    assert_close(llama.rotate_interleaved(x), torch.tensor([[-1.0, 0, -3, 2, -5, 4, -7, 6]]),
                 name="rotate_interleaved([0..7])", atol=0,
                 hint="pairs (2j, 2j + 1): (a, b) -> (-b, a) in place, (0, 1, 2, 3) -> (-1, 0, -3, 2)")


@pytest.mark.exercise("rotary")
def test_interleaved_to_half_keeps_the_scores(llama):
    """Meta-layout weights rotated the interleaved way give the scores of the permuted weights
    rotated the rotate-half way (transformers' convert_llama_weights_to_hf.py permute)."""
    torch.manual_seed(3)
    nh, hd, C = 2, 8, 16
    wq, wk = torch.randn(nh * hd, C), torch.randn(nh * hd, C)
    expected = wq.view(nh, hd // 2, 2, C).transpose(1, 2).reshape(nh * hd, C)  # the conversion script's permute
    assert_close(llama.interleaved_to_half(wq, nh), expected, name="interleaved_to_half(w)", atol=0,
                 hint="within each head, rows (hd/2, 2) -> (2, hd/2): '(h j two) c -> (h two j) c'")
    x = torch.randn(5, C)
    inv = ref.inv_freq(hd, 10000.0)
    pos = torch.arange(5)[None]
    cos_i, sin_i = ref.cos_sin(inv, pos, torch.float32, interleaved=True)
    cos_h, sin_h = ref.cos_sin(inv, pos, torch.float32)

    def scores(wq, wk, turn, cos, sin):
        q = rearrange(x @ wq.T, "t (h d) -> 1 h t d", h=nh)
        k = rearrange(x @ wk.T, "t (h d) -> 1 h t d", h=nh)
        q, k = ref.rotate(q, k, cos, sin, turn=turn)
        return q @ k.transpose(-1, -2)

    meta = scores(wq, wk, ref.rotate_interleaved, cos_i, sin_i)
    ours = scores(llama.interleaved_to_half(wq, nh), llama.interleaved_to_half(wk, nh), hf_llama.rotate_half,
                  cos_h, sin_h)
    assert_close(ours, meta, name="rotate-half scores of the permuted weights", atol=1e-4)


# ----------------------------------------------------------------------------- 3. rotary frequencies


@pytest.mark.exercise("rope_frequencies")
@pytest.mark.parametrize("name", [TIED, QWEN3, GQA])
def test_default_inv_freq(llama, hf_models, name):
    hf = hf_models[name]
    config = ref.config_of(hf)
    hd, theta = config.head_dim, config.rope_parameters["rope_theta"]
    assert_close(llama.rope_frequencies(config), hf.model.rotary_emb.inv_freq, name=f"{name} inv_freq", atol=1e-7,
                 mistakes={M["exponent_not_doubled"]: ref.inv_freq(hd, theta, half_exponent=True),
                           M["theta_ignored"]: ref.inv_freq(hd, 10000.0)},
                 hint=f"1 / rope_theta ** (arange(0, hd, 2) / hd), rope_theta = {theta}, hd = {hd}")


@pytest.mark.exercise("rope_frequencies")
def test_llama3_inv_freq(llama, hf_models):
    hf = hf_models[LLAMA3]
    config = ref.config_of(hf)
    rope = config.rope_parameters
    base = ref.inv_freq(config.head_dim, rope["rope_theta"])
    expected = hf.model.rotary_emb.inv_freq
    # The tiny config puts pairs in all three bands: kept, divided by factor, blended.
    assert (expected == base).any() and (expected == base / rope["factor"]).any()
    assert_close(llama.rope_frequencies(config), expected, name="llama3 inv_freq", atol=1e-7,
                 mistakes={M["llama3_scaling_ignored"]: base,
                           M["every_frequency_divided"]: ref.llama3_inv_freq(base, rope, all_divided=True),
                           M["middle_band_not_blended"]: ref.llama3_inv_freq(base, rope, blend=False)},
                 hint="wavelength 2 pi / inv_freq: above L / low_freq_factor divide by factor, below "
                      "L / high_freq_factor keep, between blend")


@pytest.mark.exercise("rope_frequencies")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", [GQA, LLAMA3])
def test_rotary_embedding_cos_sin(llama, hf_models, name, dtype):
    hf = hf_models[name]
    config = ref.config_of(hf)
    rotary = llama.LlamaRotaryEmbedding(config)
    assert "inv_freq" not in rotary.state_dict(), (
        "inv_freq should be a non-persistent buffer (register_buffer(..., persistent=False)): it is computed "
        "from the config, and checkpoints do not store it")
    x = torch.zeros(1, dtype=dtype)
    # Rotary positions have no table: past 256 a bfloat16 position is rounded (1001 -> 1000), so the
    # second row has positions beyond max_position_embeddings (64), as generation reaches them.
    pos = torch.tensor([[0, 1, 5, 17, 50, 63], [3, 257, 1001, 2049, 4099, 60]])
    cos, sin = rotary(x, pos)
    exp_cos, exp_sin = hf.model.rotary_emb(x, pos)
    inv = hf.model.rotary_emb.inv_freq
    in_dtype = ref.cos_sin(inv, pos, dtype, in_dtype=True), ref.cos_sin(inv, pos, dtype, positions_in_dtype=True)
    wrong = {M["angles_interleaved"]: ref.cos_sin(inv, pos, dtype, interleaved=True)}
    for i, (actual, expected, what) in enumerate([(cos, exp_cos, "cos"), (sin, exp_sin, "sin")]):
        mistakes = {m: out[i] for m, out in wrong.items()}
        mistakes[M["angles_in_model_dtype"]] = ref.nearest(actual, *(out[i] for out in in_dtype))
        assert_close(actual, expected, name=f"{name} {what} ({dtype})", atol=1e-6, mistakes=mistakes,
                     hint="angles = position_ids[..., None].float() * inv_freq; cat(angles, angles); cos and sin "
                          "cast to x.dtype")


# ----------------------------------------------------------------------------- 4. SwiGLU


def _names_and_shapes(module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in module.named_parameters()}


@pytest.mark.exercise("swiglu")
def test_mlp_parameters(llama, hf_models):
    hf_mlp = hf_models[TIED].model.layers[0].mlp  # mlp_bias=True
    ours = _names_and_shapes(llama.LlamaMLP(ref.config_of(hf_models[TIED])))
    theirs = _names_and_shapes(hf_mlp)
    no_bias = {n for n in theirs if n.endswith(".bias")} - set(ours)
    assert ours == theirs, (f"LlamaMLP's parameters should be transformers' {theirs}, got {ours}"
                            + (f"\n  {likely(M['mlp_bias_ignored'])}" if no_bias else ""))


@pytest.mark.exercise("swiglu")
@pytest.mark.parametrize("name", [GQA, TIED])
def test_mlp_matches_transformers(llama, hf_models, name):
    hf = hf_models[name]
    hf_mlp = hf.model.layers[0].mlp
    ours = ref.load_into(llama.LlamaMLP(ref.config_of(hf)), hf, "model.layers.0.mlp.")
    torch.manual_seed(0)
    x = torch.randn(2, 5, hf.config.hidden_size, requires_grad=True)
    actual = ours(x)
    with torch.no_grad():
        expected = hf_mlp(x)
        mistakes = {M["activation_on_up"]: ref.mlp(hf_mlp, x, act_on_up=True),
                    M["gelu_not_silu"]: ref.mlp(hf_mlp, x, gelu=True), M["no_gate"]: ref.mlp(hf_mlp, x, no_gate=True)}
    assert_close(actual, expected, name=f"{name} LlamaMLP(x)", atol=1e-5, mistakes=mistakes,
                 hint="down_proj(silu(gate_proj(x)) * up_proj(x))")
    g = torch.randn_like(expected)
    (actual * g).sum().backward()
    hf_mlp.zero_grad()
    (hf_mlp(x.detach()) * g).sum().backward()
    assert_grads_close({n: p.grad for n, p in ours.named_parameters()},
                       {n: p.grad for n, p in hf_mlp.named_parameters()})


# ----------------------------------------------------------------------------- 5. repeat_kv


@pytest.mark.exercise("repeat_kv")
def test_repeat_kv(llama):
    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 3)  # (B, nkv = 2, S, hd)
    assert_close(llama.repeat_kv(x, 3), hf_llama.repeat_kv(x, 3), name="repeat_kv(x, 3)", atol=0,
                 mistakes={M["heads_tiled"]: ref.tiled(x, 3),
                           M["repeated_along_positions"]: x.repeat_interleave(3, dim=2)},
                 hint="(B, nkv, S, hd) -> (B, nkv * n_rep, S, hd), heads kv0 kv0 kv0 kv1 kv1 kv1")
    assert_close(llama.repeat_kv(x, 1), x, name="repeat_kv(x, 1)", atol=0, hint="n_rep = 1: x unchanged")


# ----------------------------------------------------------------------------- 6. attention


def _attention_inputs(hf, T: int = 7, B: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(B, T, hf.config.hidden_size)
    cos, sin = hf.model.rotary_emb(x, torch.arange(T)[None])  # (1, T, hd)
    keep = torch.ones(T, T, dtype=torch.bool).tril()[None, None]  # (1, 1, T, T) causal
    return x, cos, sin, keep


def _hf_attention(hf_attn, x, cos, sin, keep):
    return hf_attn(x, position_embeddings=(cos, sin), attention_mask=additive(keep))[0]


@pytest.mark.exercise("attention")
@pytest.mark.parametrize("name", [LLAMA3, TIED])
def test_attention_parameters(llama, hf_models, name):
    """nh * hd query features and nkv * hd key/value features, hd = head_dim (not C / nh here)."""
    ours = _names_and_shapes(llama.LlamaAttention(ref.config_of(hf_models[name]), 0))
    theirs = _names_and_shapes(hf_models[name].model.layers[0].self_attn)
    assert ours == theirs, f"{name}: LlamaAttention's parameters should be transformers' {theirs}, got {ours}"


@pytest.mark.exercise("attention")
@pytest.mark.parametrize("name", [GQA, LLAMA3, TIED])
def test_attention_matches_transformers(llama, hf_models, name):
    hf = hf_models[name]
    hf_attn = hf.model.layers[0].self_attn
    ours = ref.load_into(llama.LlamaAttention(ref.config_of(hf), 0), hf, "model.layers.0.self_attn.")
    x, cos, sin, keep = _attention_inputs(hf)
    actual = ours(x, cos, sin)  # attention_mask None: the causal mask alone
    with torch.no_grad():
        expected = _hf_attention(hf_attn, x, cos, sin, keep)
        C, nh = hf.config.hidden_size, hf.config.num_attention_heads
        mistakes = {M["values_rotated"]: ref.attention(hf_attn, x, cos, sin, keep, rotate_v=True),
                    M["scale_by_hidden_over_heads"]: ref.attention(hf_attn, x, cos, sin, keep, scale=(C // nh) ** -0.5),
                    M["causal_mask_missing"]: ref.attention(hf_attn, x, cos, sin, torch.ones_like(keep))}
    assert_close(actual, expected, name=f"{name} LlamaAttention(x)", atol=1e-5, mistakes=mistakes,
                 hint="project, rotate q and k, repeat_kv, scores * head_dim ** -0.5, causal mask, softmax, o_proj")
    g = torch.randn_like(expected)
    (actual * g).sum().backward()
    hf_attn.zero_grad()
    (_hf_attention(hf_attn, x, cos, sin, keep) * g).sum().backward()
    assert_grads_close({n: p.grad for n, p in ours.named_parameters()},
                       {n: p.grad for n, p in hf_attn.named_parameters()}, rtol=1e-4)


@pytest.mark.exercise("attention")
def test_attention_with_a_padding_mask(llama, hf_models):
    """A bool mask (B, 1, T, S), causal and left padding combined: row 1's first 3 keys are
    padding, so its first 3 queries see no key and output zeros (before o_proj's bias)."""
    hf = hf_models[GQA]
    hf_attn = hf.model.layers[0].self_attn
    ours = ref.load_into(llama.LlamaAttention(ref.config_of(hf), 0), hf, "model.layers.0.self_attn.")
    x, cos, sin, causal = _attention_inputs(hf, seed=7)
    pad = torch.ones(2, 7, dtype=torch.bool)
    pad[1, :3] = False
    keep = causal & pad[:, None, None, :]  # (B, 1, T, S)
    with torch.no_grad():
        actual = ours(x, cos, sin, keep)
        expected = ref.attention(hf_attn, x, cos, sin, keep)
        ignored = ref.attention(hf_attn, x, cos, sin, causal.expand(2, 1, 7, 7))
    assert_close(actual, expected, name="LlamaAttention(x) with a padding mask", atol=1e-5,
                 mistakes={M["attention_mask_ignored"]: ignored},
                 hint="use the given bool mask as it is (True = attend); a query row with no True gets a zero pattern "
                      "(your GPT-2 attention_pattern does it)")


@pytest.mark.exercise("attention")
def test_attention_with_the_cache_equals_one_pass(llama, hf_models):
    """4 tokens, then 3 more with the cache: the outputs of one pass over 7, and the cache holds
    the nkv = 2 rotated key heads, not the nh = 4 repeated ones."""
    hf = hf_models[GQA]
    config = ref.config_of(hf)
    ours = ref.load_into(llama.LlamaAttention(config, 0), hf, "model.layers.0.self_attn.")
    x, cos, sin, keep = _attention_inputs(hf)
    with torch.no_grad():
        expected = _hf_attention(hf.model.layers[0].self_attn, x, cos, sin, keep)
        cache = llama.KVCache(1)
        first = ours(x[:, :4], cos[:, :4], sin[:, :4], None, cache)
        rest = ours(x[:, 4:], cos[:, 4:], sin[:, 4:], None, cache)
    assert_close(torch.cat([first, rest], 1), expected, name="attention in two calls with the cache", atol=1e-5,
                 hint="update the cache with the rotated keys and the values, then attend to all it returns")
    shape = tuple(cache.keys[0].shape)
    want = (2, config.num_key_value_heads, 7, config.head_dim)
    assert shape == want, (f"the cache should hold the (B, nkv, S, hd) = {want} keys, holds {shape}"
                           + (f"\n  {likely(M['cache_holds_repeated_heads'])}"
                              if shape[1] == config.num_attention_heads else ""))


# ----------------------------------------------------------------------------- 7. QK-norm


@pytest.mark.exercise("qk_norm")
def test_qk_norm_parameters(llama, hf_models):
    ours = _names_and_shapes(llama.LlamaAttention(ref.config_of(hf_models[QWEN3]), 0))
    theirs = _names_and_shapes(hf_models[QWEN3].model.layers[0].self_attn)
    assert ours == theirs, (f"a Qwen3 attention's parameters should be transformers' {theirs}, got {ours}: "
                            "q_norm and k_norm are RMSNorm(head_dim) when config.model_type == 'qwen3'")
    llama_attn = _names_and_shapes(llama.LlamaAttention(ref.config_of(hf_models[GQA]), 0))
    assert not any("norm" in n for n in llama_attn), f"a Llama attention has no QK-norm, got {sorted(llama_attn)}"


@pytest.mark.exercise("qk_norm")
@pytest.mark.parametrize("name", [QWEN3, QWEN3_TIED])
def test_qk_norm_matches_transformers(llama, hf_models, name):
    hf = hf_models[name]
    hf_attn = hf.model.layers[0].self_attn
    ours = ref.load_into(llama.LlamaAttention(ref.config_of(hf), 0), hf, "model.layers.0.self_attn.")
    x, cos, sin, keep = _attention_inputs(hf, seed=1)
    actual = ours(x, cos, sin)
    with torch.no_grad():
        expected = _hf_attention(hf_attn, x, cos, sin, keep)
        mistakes = {M["qk_norm_after_rotary"]: ref.attention(hf_attn, x, cos, sin, keep, qk_norm="after"),
                    M["qk_norm_missing"]: ref.attention(hf_attn, x, cos, sin, keep, qk_norm=None),
                    M["q_norm_k_norm_swapped"]: ref.attention(hf_attn, x, cos, sin, keep, swap_norms=True),
                    M["values_normed"]: ref.attention(hf_attn, x, cos, sin, keep, norm_v=True)}
    assert_close(actual, expected, name=f"{name} Qwen3 attention(x)", atol=1e-5, mistakes=mistakes,
                 hint="q_norm(q) and k_norm(k) over each head's hd features, right after the projections")
    g = torch.randn_like(expected)
    (actual * g).sum().backward()
    hf_attn.zero_grad()
    (_hf_attention(hf_attn, x, cos, sin, keep) * g).sum().backward()
    assert_grads_close({n: p.grad for n, p in ours.named_parameters()},
                       {n: p.grad for n, p in hf_attn.named_parameters()}, rtol=1e-4)


@pytest.mark.exercise("qk_norm")
def test_qk_norm_reads_rms_norm_eps(llama, hf_models):
    """The tiny Qwen3s have RMSNorm's default eps (1e-6): an RMSNorm(hd) without eps= matches their
    outputs, so the eps is read directly, on a config with another one."""
    config = dataclasses.replace(ref.config_of(hf_models[QWEN3]), rms_norm_eps=0.25)
    attn = llama.LlamaAttention(config, 0)
    got = (getattr(attn, "q_norm", None) and attn.q_norm.eps, getattr(attn, "k_norm", None) and attn.k_norm.eps)
    assert got == (0.25, 0.25), (f"q_norm and k_norm should be RMSNorm(head_dim, eps=config.rms_norm_eps) (0.25 here), "
                                 f"have eps {got}")


# ----------------------------------------------------------------------------- 8. decoder layer


@pytest.mark.exercise("block")
def test_decoder_layer_norms_read_rms_norm_eps(llama, hf_models):
    config = dataclasses.replace(ref.config_of(hf_models[GQA]), rms_norm_eps=0.25)
    layer = llama.LlamaDecoderLayer(config, 0)
    got = (layer.input_layernorm.eps, layer.post_attention_layernorm.eps)
    assert got == (0.25, 0.25), (f"input_layernorm and post_attention_layernorm should be RMSNorm(C, "
                                 f"eps=config.rms_norm_eps) (0.25 here), have eps {got}")


@pytest.mark.exercise("block")
@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_decoder_layer_matches_transformers(llama, hf_models, name):
    hf = hf_models[name]
    layer = hf.model.layers[0]
    ours = ref.load_into(llama.LlamaDecoderLayer(ref.config_of(hf), 0), hf, "model.layers.0.")
    x, cos, sin, keep = _attention_inputs(hf, seed=2)
    actual = ours(x, cos, sin)
    with torch.no_grad():
        expected = layer(x, attention_mask=additive(keep), position_embeddings=(cos, sin))
        attn = lambda h: _hf_attention(layer.self_attn, h, cos, sin, keep)  # noqa: E731
        ln1, ln2, mlp = layer.input_layernorm, layer.post_attention_layernorm, layer.mlp
        h = x + attn(ln1(x))
        post = ln1(x + attn(x))
        mistakes = {M["post_norm"]: ln2(post + mlp(post)),
                    M["no_attn_residual"]: attn(ln1(x)) + mlp(ln2(attn(ln1(x)))),
                    M["no_mlp_residual"]: mlp(ln2(h)),
                    M["input_layernorm_twice"]: h + mlp(ln1(h))}
    assert_close(actual, expected, name=f"{name} LlamaDecoderLayer(x)", atol=1e-5, mistakes=mistakes,
                 hint="x + self_attn(input_layernorm(x)), then x + mlp(post_attention_layernorm(x))")
    g = torch.randn_like(expected)
    (actual * g).sum().backward()
    layer.zero_grad()
    (layer(x, attention_mask=additive(keep), position_embeddings=(cos, sin)) * g).sum().backward()
    assert_grads_close({n: p.grad for n, p in ours.named_parameters()},
                       {n: p.grad for n, p in layer.named_parameters()}, rtol=1e-4)


# ----------------------------------------------------------------------------- hook points


def _recording(module, names):
    """{name: what the hook point module.<name> passed on}, filled by forward hooks; a missing
    point fails with what to create."""
    from mlab_tfs.hooks import HookPoint

    seen, handles = {}, []
    for name in names:
        point = module.get_submodule(name) if "." in name else getattr(module, name, None)
        assert isinstance(point, HookPoint), (f"{type(module).__name__} has no hook point {name!r}: create it in "
                                              "__init__ with HookPoint() (from mlab_tfs.hooks), as the docstring lists")
        handles.append(point.register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, out)))
    return seen, handles


@pytest.mark.exercise("rms_norm")
def test_rms_norm_hook_points(llama):
    torch.manual_seed(3)
    x = torch.randn(2, 3, 8)
    norm = llama.RMSNorm(8, eps=1e-5)
    seen, handles = _recording(norm, ["hook_scale", "hook_normalized"])
    norm(x)
    for h in handles:
        h.remove()
    scale = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    assert_close(seen.get("hook_scale"), scale, name="hook_scale", atol=1e-6, hint="sqrt(mean(x**2) + eps), (..., 1)")
    assert_close(seen.get("hook_normalized"), x / scale, name="hook_normalized", atol=1e-6,
                 hint="x / scale, before the weight")


@pytest.mark.exercise("swiglu")
def test_mlp_hook_points(llama, hf_models):
    hf = hf_models[GQA]
    hf_mlp = hf.model.layers[0].mlp
    ours = ref.load_into(llama.LlamaMLP(ref.config_of(hf)), hf, "model.layers.0.mlp.")
    x = torch.randn(2, 4, hf.config.hidden_size, generator=torch.Generator().manual_seed(4))
    seen, handles = _recording(ours, ["hook_pre", "hook_pre_linear", "hook_post"])
    with torch.no_grad():
        ours(x)
        gate, up = hf_mlp.gate_proj(x), hf_mlp.up_proj(x)
    for h in handles:
        h.remove()
    for name, expected, what in [("hook_pre", gate, "gate_proj(x), before the activation"),
                                 ("hook_pre_linear", up, "up_proj(x)"),
                                 ("hook_post", F.silu(gate) * up, "silu(gate) * up, what down_proj reads")]:
        assert_close(seen.get(name), expected, name=name, atol=1e-5, hint=what)


@pytest.mark.exercise("attention")
def test_attention_hook_points(llama, hf_models):
    """hook_q (B, T, nh, hd); hook_k, hook_v (B, T, nkv, hd) before the rotation; hook_rot_q,
    hook_rot_k after it; hook_pattern (B, nh, T, S); hook_z (B, T, nh, hd)."""
    hf = hf_models[GQA]
    hf_attn = hf.model.layers[0].self_attn
    ours = ref.load_into(llama.LlamaAttention(ref.config_of(hf), 0), hf, "model.layers.0.self_attn.")
    x, cos, sin, keep = _attention_inputs(hf, T=5, seed=5)
    names = ["hook_q", "hook_k", "hook_v", "hook_rot_q", "hook_rot_k", "hook_pattern", "hook_z"]
    seen, handles = _recording(ours, names)
    with torch.no_grad():
        ours(x, cos, sin)
        B, T, hd = 2, 5, hf_attn.head_dim
        q, k, v = (p(x).view(B, T, -1, hd) for p in (hf_attn.q_proj, hf_attn.k_proj, hf_attn.v_proj))
        rq, rk = hf_llama.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        n_rep = q.shape[2] // k.shape[2]
        scores = (rq @ hf_llama.repeat_kv(rk, n_rep).transpose(-1, -2)) * hd**-0.5
        pattern = scores.masked_fill(~keep, torch.finfo(scores.dtype).min).softmax(-1)
        z = (pattern @ hf_llama.repeat_kv(v.transpose(1, 2), n_rep)).transpose(1, 2)
    for h in handles:
        h.remove()
    expected = {"hook_q": q, "hook_k": k, "hook_v": v, "hook_rot_q": rq.transpose(1, 2),
                "hook_rot_k": rk.transpose(1, 2), "hook_pattern": pattern, "hook_z": z}
    for name in names:
        assert_close(seen.get(name), expected[name], name=name, atol=1e-5,
                     hint="see the hook point table of the guide: shapes (B, T, heads, hd), the pattern (B, nh, T, S)")


@pytest.mark.exercise("block")
def test_decoder_layer_hook_points(llama, hf_models):
    hf = hf_models[GQA]
    layer = hf.model.layers[0]
    ours = ref.load_into(llama.LlamaDecoderLayer(ref.config_of(hf), 0), hf, "model.layers.0.")
    x, cos, sin, keep = _attention_inputs(hf, T=5, seed=6)
    names = ["hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"]
    seen, handles = _recording(ours, names)
    with torch.no_grad():
        ours(x, cos, sin)
        attn = _hf_attention(layer.self_attn, layer.input_layernorm(x), cos, sin, keep)
        mid = x + attn
        mlp = layer.mlp(layer.post_attention_layernorm(mid))
    for h in handles:
        h.remove()
    expected = {"hook_resid_pre": x, "hook_attn_out": attn, "hook_resid_mid": mid, "hook_mlp_out": mlp,
                "hook_resid_post": mid + mlp}
    for name in names:
        assert_close(seen.get(name), expected[name], name=name, atol=1e-5,
                     hint="resid_pre, attn_out (the branch), resid_mid (the sum), mlp_out, resid_post")
