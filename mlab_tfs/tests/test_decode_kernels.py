"""The hand-written Triton decode kernels (mlab_tfs.decode_kernels) against PyTorch, kernel by
kernel and as GPT-2's decode step (mlab_tfs.gpt2.fast.triton_decode_logits, generate_fast's
kernels="triton"). Without a GPU they run in Triton's interpreter (the test plugin sets
TRITON_INTERPRET=1 before triton is imported), which is slow: small shapes only. float32
throughout: 1e-5, where only the order of float32 sums differs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton", reason="the Triton kernels need the triton package (Linux wheels)")

from mlab_tfs import activations  # noqa: E402
from mlab_tfs.attention import sdpa  # noqa: E402
from mlab_tfs.gpt2.fast import check_triton_decode, pad_vocab, static_forward, triton_decode_logits  # noqa: E402
from mlab_tfs.gpt2.solution import GPT2Config, GPT2LMHeadModel, KVCache  # noqa: E402
from mlab_tfs.sampling.fast import generate_fast  # noqa: E402
from mlab_tfs.testing.tiny import GPT2_CONFIGS, left_padded_batch, randomize_  # noqa: E402

dk = pytest.importorskip("mlab_tfs.decode_kernels")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not dk.INTERPRET:  # pragma: no cover - triton imported before the plugin ran
    pytest.skip("triton was imported without TRITON_INTERPRET=1 on a machine without a GPU", allow_module_level=True)

TOL = dict(atol=1e-5, rtol=1e-5)
torch.backends.cuda.matmul.allow_tf32 = False  # the references in float32 on a GPU too


def _on(*tensors: torch.Tensor):
    """The tensors on DEVICE (built on the CPU from seeded generators)."""
    moved = tuple(t.to(DEVICE) for t in tensors)
    return moved if len(moved) > 1 else moved[0]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------
# flash_decode: one query per row and head over a static cache
# ---------------------------------------------------------------------------------------


def _cache(B: int, nkv: int, M: int, hs: int, pos: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random keys and values in columns <= pos, NaN after it: a kernel that reads a column
    after the query's own (the future, or unwritten memory) gives NaN."""
    g = _gen(seed)
    k, v = torch.randn(B, nkv, M, hs, generator=g), torch.randn(B, nkv, M, hs, generator=g)
    k[:, :, pos + 1 :] = float("nan")
    v[:, :, pos + 1 :] = float("nan")
    return k, v


def _reference(q, k, v, key_mask, pos, scale):
    """mlab_tfs.attention.sdpa over the columns <= pos (q (B, nh hs) -> (B, nh hs))."""
    B, nkv, M, hs = k.shape
    nh = q.shape[1] // hs
    q4 = q.reshape(B, nh, 1, hs)
    kk, vv = k[:, :, : pos + 1], v[:, :, : pos + 1]
    mask = key_mask[:, None, None, : pos + 1]
    out = sdpa(q4, kk.repeat_interleave(nh // nkv, 1), vv.repeat_interleave(nh // nkv, 1), mask, scale)
    return out.reshape(B, nh * hs)


@pytest.mark.parametrize("nh,nkv,hs", [(4, 4, 8), (4, 2, 16), (6, 1, 12)], ids=["mha", "gqa", "mqa-hs12"])
@pytest.mark.parametrize("splits", [1, 3, 8])
def test_flash_decode_equals_sdpa_over_the_visible_columns(nh, nkv, hs, splits):
    B, M, pos, scale = 3, 96, 70, 0.3
    k, v = _cache(B, nkv, M, hs, pos, seed=1)
    q = torch.randn(B, nh * hs, generator=_gen(2))
    key_mask = torch.ones(B, M, dtype=torch.bool)
    key_mask[1, :20] = False  # left padding
    key_mask[2, :65] = False  # only columns 65..70 real: most pieces see no key
    q, k, v, key_mask = _on(q, k, v, key_mask)
    acc, ml = dk.flash_decode(q, k, v, key_mask, _on(torch.tensor([pos])), scale, splits=splits)
    assert acc.shape == (B, nh, splits, hs) and ml.shape == (B, nh, splits, 2)
    got = dk.combine_splits(acc, ml)
    assert torch.isfinite(got).all(), "flash_decode read a cache column after the query's own (NaN there)"
    torch.testing.assert_close(got, _reference(q, k, v, key_mask, pos, scale), **TOL)


def test_flash_decode_query_that_sees_no_key_gets_zero():
    B, nh, hs, M, pos = 2, 2, 8, 64, 10
    k, v = _cache(B, nh, M, hs, pos, seed=3)
    key_mask = torch.ones(B, M, dtype=torch.bool)
    key_mask[0, : pos + 1] = False  # row 0: every visible column is padding
    q = torch.randn(B, nh * hs, generator=_gen(4))
    q, k, v, key_mask = _on(q, k, v, key_mask)
    got = dk.combine_splits(*dk.flash_decode(q, k, v, key_mask, _on(torch.tensor([pos])), 1.0, splits=4))
    assert torch.equal(got[0], torch.zeros(nh * hs, device=DEVICE))
    torch.testing.assert_close(got, _reference(q, k, v, key_mask, pos, 1.0), **TOL)


@pytest.mark.parametrize("pos", [0, 63, 64, 127])
def test_flash_decode_piece_boundaries(pos):
    """The query's column at either edge of a piece (BLOCK_S = 64 columns per step)."""
    B, nh, hs, M = 1, 2, 8, 128
    k, v = _cache(B, nh, M, hs, pos, seed=5)
    q = torch.randn(B, nh * hs, generator=_gen(6))
    key_mask = torch.ones(B, M, dtype=torch.bool)
    q, k, v, key_mask = _on(q, k, v, key_mask)
    got = dk.combine_splits(*dk.flash_decode(q, k, v, key_mask, _on(torch.tensor([pos])), 0.5, splits=2))
    torch.testing.assert_close(got, _reference(q, k, v, key_mask, pos, 0.5), **TOL)


def test_attention_splits_keeps_pieces_of_at_least_one_block():
    assert dk.attention_splits(1, 12, 512) == 8  # 512 columns: 8 pieces of 64
    assert dk.attention_splits(1, 12, 1024) == 16
    assert dk.attention_splits(64, 12, 512) == 1  # 768 programs already
    assert dk.attention_splits(1, 1, 40) == 1


# ---------------------------------------------------------------------------------------
# norm_linear: prologue, matmul, epilogue
# ---------------------------------------------------------------------------------------

ACTS = {0: lambda y: y, 1: activations.gelu_new, 2: activations.gelu, 3: torch.relu, 4: activations.silu}


# One row takes the matrix-vector kernel (products as sums), more rows the tl.dot one.
ROWS = [pytest.param(1, id="one-row"), pytest.param(3, id="three-rows")]


@pytest.mark.parametrize("B", ROWS)
@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("norm,bias,residual", [(True, True, False), (False, True, True), (True, False, False),
                                                 (False, False, True)])
def test_norm_linear_equals_layer_norm_linear_activation_residual(act, norm, bias, residual, B):
    g = _gen(7)
    K, N = 40, 50  # neither a multiple of the 32-wide tiles
    x = torch.randn(B, K, generator=g) * 2 + 0.5
    w, b = torch.randn(N, K, generator=g) / 6, torch.randn(N, generator=g)
    gamma, beta = 1 + torch.randn(K, generator=g) / 5, torch.randn(K, generator=g) / 5
    r = torch.randn(B, N, generator=g)
    x, w, b, gamma, beta, r = _on(x, w, b, gamma, beta, r)
    got = dk.norm_linear(x, w, b if bias else None, norm=(gamma, beta, 1e-5) if norm else None, act=act,
                         residual=r if residual else None)
    h = F.layer_norm(x, (K,), gamma, beta, 1e-5) if norm else x
    want = ACTS[act](F.linear(h, w, b if bias else None)) + (r if residual else 0)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("B", ROWS)
def test_norm_linear_reads_only_the_first_rows_of_a_wider_weight(B):
    """A padded head: out (B, V) reads the first V of the weight's rows."""
    g = _gen(8)
    x, w = torch.randn(B, 32, generator=g), torch.randn(70, 32, generator=g)
    w[50:] = float("nan")
    x, w = _on(x, w)
    got = dk.norm_linear(x, w, out=torch.empty(B, 50, device=DEVICE))
    torch.testing.assert_close(got, x @ w[:50].T, **TOL)


def _combine_reference(acc, ml):
    """Flash-Decoding's reduction in PyTorch: (B, nh, S, hs), (B, nh, S, 2) -> (B, nh hs)."""
    m, l = ml.unbind(-1)  # (B, nh, S)
    top = m.amax(-1, keepdim=True)
    w = torch.exp(m - torch.where(top == float("-inf"), 0.0, top))
    den = (w * l).sum(-1, keepdim=True)
    return ((w[..., None] * acc).sum(-2) / torch.where(den > 0, den, 1.0)).flatten(1)


@pytest.mark.parametrize("splits", [1, 3, 4])
def test_combine_splits_is_flash_decodings_reduction(splits):
    B, nh, hs, M, pos = 2, 4, 8, 64, 40
    k, v = _cache(B, nh, M, hs, pos, seed=9)
    key_mask = torch.ones(B, M, dtype=torch.bool)
    key_mask[0, : pos + 1] = False  # a row that sees no key: its attention output is 0
    key_mask[1, 20:] = False  # row 1: the later pieces see no key
    q = torch.randn(B, nh * hs, generator=_gen(10))
    q, k, v, key_mask = _on(q, k, v, key_mask)
    acc, ml = dk.flash_decode(q, k, v, key_mask, _on(torch.tensor([pos])), 0.4, splits=splits)
    got = dk.combine_splits(acc, ml)
    torch.testing.assert_close(got, _combine_reference(acc, ml), **TOL)
    assert torch.equal(got[0], torch.zeros_like(got[0]))
    half = dk.combine_splits(acc, ml, torch.float16)
    assert half.dtype == torch.float16 and torch.equal(half, got.half())


@pytest.mark.parametrize("B", ROWS)
def test_norm_linear_qkv_writes_queries_and_the_cache_column_only(B):
    g = _gen(14)
    nh, hs, M, pos = 4, 8, 16, 5
    C = nh * hs
    x, w, b = torch.randn(B, C, generator=g), torch.randn(3 * C, C, generator=g) / 5, torch.randn(3 * C, generator=g)
    kc, vc = torch.randn(B, nh, M, hs, generator=g), torch.randn(B, nh, M, hs, generator=g)
    x, w, b, kc, vc = _on(x, w, b, kc, vc)
    k0, v0 = kc.clone(), vc.clone()
    q = torch.empty(B, C, device=DEVICE)
    dk.norm_linear(x, w, b, qkv=(q, kc, vc, _on(torch.tensor([pos]))))
    want_q, want_k, want_v = F.linear(x, w, b).split(C, dim=-1)
    torch.testing.assert_close(q, want_q, **TOL)
    torch.testing.assert_close(kc[:, :, pos], want_k.reshape(B, nh, hs), **TOL)
    torch.testing.assert_close(vc[:, :, pos], want_v.reshape(B, nh, hs), **TOL)
    others = torch.arange(M, device=DEVICE) != pos
    assert torch.equal(kc[:, :, others], k0[:, :, others]) and torch.equal(vc[:, :, others], v0[:, :, others])


@pytest.mark.parametrize("B", ROWS)
def test_norm_linear_is_one_opaque_op_under_torch_compile(B):
    """torch.compile keeps the kernel an op it does not trace (so a compiled step launches the
    tiles Triton's autotuner chose): fullgraph compiles, and the writes into out and into the
    cache's column happen, as eager."""
    g = _gen(22)
    nh, hs, M, pos, K = 2, 8, 8, 3, 16
    C = nh * hs
    x, w, b, r = torch.randn(B, K, generator=g), torch.randn(3 * C, K, generator=g) / 4, torch.randn(3 * C, generator=g), \
        torch.randn(B, 3 * C, generator=g)
    x, w, b, r = _on(x, w, b, r)
    w_qkv = _on(torch.randn(3 * C, C, generator=g) / 4)

    def step(x, kc, vc, q):
        y = dk.norm_linear(x, w, b, residual=r, act=3)
        dk.norm_linear(y[:, :C], w_qkv, None, qkv=(q, kc, vc, _on(torch.tensor([pos]))))
        return y

    caches = [[_on(torch.zeros(B, nh, M, hs)) for _ in range(2)] for _ in range(2)]
    qs = [torch.empty(B, C, device=DEVICE) for _ in range(2)]
    want = step(x, *caches[0], qs[0])
    got = torch.compile(step, backend="aot_eager", fullgraph=True)(x, *caches[1], qs[1])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(qs[1], qs[0], rtol=0, atol=0)
    for ours, ref in zip(caches[1], caches[0]):
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert caches[1][0][:, :, pos].abs().sum() > 0  # the column was written


# ---------------------------------------------------------------------------------------
# GPT-2's decode step
# ---------------------------------------------------------------------------------------


def _model(name: str, seed: int = 0, **overrides) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**{**GPT2_CONFIGS[name], **overrides})).eval()
    randomize_(model, seed)
    return model.to(DEVICE)


def _prefilled(model, lengths, M, seed):
    ids, mask, pos = _on(*left_padded_batch(model.config.vocab_size, lengths, seed=seed))
    cache = KVCache.for_model(model, len(lengths), M)
    cache.reset(mask)
    static_forward(model, ids, pos, cache, torch.arange(ids.shape[1], device=DEVICE))
    return cache, pos[:, -1:] + 1, ids.shape[1]


@pytest.mark.parametrize("lengths", [pytest.param([5, 2, 4], id="three-rows-left-padded"),
                                     pytest.param([4], id="one-row")])
@pytest.mark.parametrize("name", sorted(GPT2_CONFIGS))
@torch.no_grad()
def test_triton_decode_logits_equal_the_modules(name, lengths):
    """Logits and the cache after three decode steps, left padding included, against
    static_forward (the model's own modules) from the same prefill; one row runs every
    matrix product as the matrix-vector kernel."""
    model = _model(name)
    ours, position, T = _prefilled(model, lengths, 16, seed=15)
    ref, _, _ = _prefilled(model, lengths, 16, seed=15)
    check_triton_decode(model)
    token = _on(torch.randint(0, model.config.vocab_size, (len(lengths), 1), generator=_gen(16)))
    for step in range(3):
        column = _on(torch.tensor([T + step]))
        want = static_forward(model, token, position, ref, column)[:, -1]
        got = triton_decode_logits(model, token, position, ours, column)
        torch.testing.assert_close(got, want, **TOL)
        for layer in range(model.config.n_layer):
            torch.testing.assert_close(ours.keys[layer], ref.keys[layer], **TOL)
            torch.testing.assert_close(ours.values[layer], ref.values[layer], **TOL)
        token, position = want.argmax(-1, keepdim=True), position + 1


@torch.no_grad()
def test_triton_decode_logits_on_a_padded_vocabulary():
    model = _model("base", seed=1)
    ref_logits = None
    for padded in (False, True):
        if padded:
            pad_vocab(model, 64)  # 97 -> 128 rows; logits stay 97 wide
        cache, position, T = _prefilled(model, [4, 3], 16, seed=17)
        logits = triton_decode_logits(model, _on(torch.tensor([[5], [7]])), position, cache, _on(torch.tensor([T])))
        assert logits.shape == (2, 97)
        if ref_logits is None:
            ref_logits = logits
    torch.testing.assert_close(logits, ref_logits, **TOL)


@torch.no_grad()
def test_generate_fast_with_triton_kernels_gives_generates_tokens():
    model = _model("base", seed=2)
    ids, mask, _ = _on(*left_padded_batch(97, [5, 2, 4], seed=18))
    kw = dict(max_new_tokens=6, compile=False, pad_token_id=0, eos_token_id=3)
    torch.testing.assert_close(generate_fast(model, ids, mask, kernels="triton", **kw),
                               generate_fast(model, ids, mask, **kw), rtol=0, atol=0)
    sample = dict(do_sample=True, top_k=20, temperature=0.8)
    seeded = lambda: torch.Generator(DEVICE).manual_seed(19)  # noqa: E731
    got = generate_fast(model, ids, mask, kernels="triton", generator=seeded(), **sample, **kw)
    want = generate_fast(model, ids, mask, generator=seeded(), **sample, **kw)
    assert torch.equal(got, want)


# ---------------------------------------------------------------------------------------
# What the kernels refuse
# ---------------------------------------------------------------------------------------


def test_triton_decode_refuses_what_it_cannot_compute():
    model = _model("base")
    ids = _on(torch.tensor([[1, 2, 3]]))
    handle = model.transformer.h[0].attn.hook_z.add_hook(lambda t, hook: t)
    with pytest.raises(ValueError, match=r"hooks are registered on transformer\.h\.0\.attn\.hook_z"):
        generate_fast(model, ids, compile=False, kernels="triton")
    handle.remove()
    model.train()
    with pytest.raises(ValueError, match="training mode with dropout"):
        generate_fast(model, ids, compile=False, kernels="triton")
    model.eval()
    if DEVICE == "cpu":
        with pytest.raises(ValueError, match="compile=False"):
            generate_fast(model, ids, compile=True, kernels="triton")
    with pytest.raises(ValueError, match="kernels must be 'torch' or 'triton', got 'cuda'"):
        generate_fast(model, ids, compile=False, kernels="cuda")
    with pytest.raises(ValueError, match="does not combine with decode_attention=True"):
        generate_fast(model, ids, compile=False, kernels="triton", decode_attention=True)
    fast_gelu = _model("base", activation_function="gelu_fast")
    with pytest.raises(ValueError, match="'gelu_fast'.*not one the kernels compute"):
        generate_fast(fast_gelu, ids, compile=False, kernels="triton")
    model.lm_head.weight.data = model.lm_head.weight.data.double()  # tied: the embedding too
    with pytest.raises(ValueError, match="share one dtype"):
        check_triton_decode(model)
    if DEVICE == "cpu":
        with pytest.raises(ValueError, match="bfloat16 model on the CPU"):
            check_triton_decode(_model("base").to(torch.bfloat16))
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        check_triton_decode(torch.nn.Linear(2, 2))


@pytest.mark.skipif(DEVICE != "cuda", reason="torch.compile of the Triton kernels needs a CUDA GPU")
@torch.no_grad()
def test_compiled_triton_decode_step_equals_the_eager_modules_on_a_gpu():
    """The compiled step (CUDA graphs; the kernels autotuned) gives the eager modules'
    tokens in float32, and in bfloat16 logits within bf16 rounding of the modules'."""
    model = _model("deep_narrow_heads", seed=3)
    ids, mask, _ = _on(*left_padded_batch(model.config.vocab_size, [6, 3, 5], seed=20))
    kw = dict(max_new_tokens=10, pad_token_id=0)
    assert torch.equal(generate_fast(model, ids, mask, kernels="triton", compile=True, **kw),
                       generate_fast(model, ids, mask, compile=False, **kw))
    one = ids[:1, -6:]  # one row: the matrix-vector kernel, autotuned over its own tiles
    assert torch.equal(generate_fast(model, one, kernels="triton", compile=True, **kw),
                       generate_fast(model, one, compile=False, **kw))
    model = model.to(torch.bfloat16)
    ours, position, T = _prefilled(model, [5, 2, 4], 16, seed=21)
    ref, _, _ = _prefilled(model, [5, 2, 4], 16, seed=21)
    token, column = _on(torch.tensor([[1], [2], [3]]), torch.tensor([T]))
    got = triton_decode_logits(model, token, position, ours, column).float()
    want = static_forward(model, token, position, ref, column)[:, -1].float()
    torch.testing.assert_close(got, want, atol=0.05, rtol=0.02)  # bf16: a few roundings apart


def test_triton_decode_refuses_pytorch_hooks_and_replaced_modules():
    """A plain PyTorch forward hook (not a HookPoint) or a module swapped for another class
    (an adapter, a parametrization) would be skipped by the kernels, silently: refused."""
    model = _model("base")
    check_triton_decode(model)  # as built: the word embedding's own inputs_embeds hook is allowed
    for register in ("register_forward_hook", "register_forward_pre_hook"):
        fn = (lambda m, i, o: o * 0) if register == "register_forward_hook" else (lambda m, i: None)
        handle = getattr(model.transformer.h[1].mlp, register)(fn)
        with pytest.raises(ValueError, match=r"hooks are registered on transformer\.h\.1\.mlp"):
            check_triton_decode(model)
        handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        with pytest.raises(ValueError, match="global"):
            check_triton_decode(model)
    finally:
        handle.remove()
    torch.nn.utils.parametrize.register_parametrization(model.transformer.h[0].mlp.c_fc, "weight",
                                                        torch.nn.Identity())
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.mlp\.c_fc is a .*ParametrizedLinear"):
        check_triton_decode(model)
    model = _model("base")
    model.transformer.h[1].train()  # the model in eval mode, one block's dropout on
    with pytest.raises(ValueError, match=r"training mode with dropout \(transformer\.h\.1\."):
        check_triton_decode(model)
    model = _model("base")
    fc = model.transformer.h[0].mlp.c_fc
    fc.weight = torch.nn.Parameter(fc.weight.detach().t().contiguous().t())  # (N, K) at strides (1, N)
    with pytest.raises(ValueError, match=r"contiguous weights; transformer\.h\.0\.mlp\.c_fc\.weight"):
        check_triton_decode(model)
    ids = _on(torch.tensor([[1, 2, 3]]))
    for bad in (None, ["triton"], 1):
        with pytest.raises(TypeError, match="kernels must be the string"):
            generate_fast(_model("base"), ids, compile=False, kernels=bad)


def test_generate_fast_triton_takes_a_list_prompt_as_generate_does():
    model = _model("base", seed=4)
    kw = dict(max_new_tokens=3, compile=False)
    assert torch.equal(generate_fast(model, [[1, 2, 3]], kernels="triton", **kw), generate_fast(model, [[1, 2, 3]], **kw))
    if DEVICE == "cpu":  # the CPU's refusal of compile=True reads the model's device, not the prompt's
        with pytest.raises(ValueError, match="pass compile=False"):
            generate_fast(model, [[1, 2, 3]], kernels="triton", max_new_tokens=3, compile=True)
