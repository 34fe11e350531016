"""Our models seen from TransformerLens: ``run_with_cache`` and ``run_with_hooks`` against
TransformerLens's on the same weights, at every hook name both have, in fp32 to 1e-5.

TransformerLens 4 has no HookedTransformer (removed in 4.0): it wraps a transformers model in
a ``TransformerBridge`` (``TransformerBridge.boot_transformers``) whose
``enable_compatibility_mode`` gives HookedTransformer's hook names and shapes
(``blocks.0.attn.hook_z`` (B, T, nh, hs)...). Here the bridge wraps transformers'
GPT2LMHeadModel (or LlamaForCausalLM) loaded from the same folder as ours (``hf_model=``, so
nothing is looked up on the hub; every test runs with the network refused and checks that
nothing tried it): tiny random GPT-2s, the course model, tiny random Llamas and Qwen3s.

Conventions that differ, each pinned by a test below:
- masked attention scores: ours hold finfo.min (transformers' value), TransformerLens's -inf;
- ``hook_resid_mid``: ours is the residual stream itself (HookedTransformer's); the bridge's is
  an alias of ``ln2.hook_in``, so an edit there reaches the MLP's input but not the stream;
- an edit of ``hook_attn_scores`` cannot unmask a later key in ours (masked again after the
  hook); the bridge softmaxes what the hook returns;
- HookedTransformer's default weight processing (``enable_compatibility_mode()`` without
  ``no_processing``) moves the residual stream to mean-zero coordinates and the value biases
  into the output bias: the stream is ours minus its mean, the log-probabilities are ours;
- a GPT-2 with ``scale_attn_weights=False``: the bridge scales its scores all the same;
- Qwen3's QK-norm points are (B, T, nh, ...) in ours, like hook_q, and (B, nh, T, ...) in the
  bridge's.

Our model runs on the eager attention path here, as TransformerLens forces on transformers'
(``boot_transformers`` docstring): the fused sdpa kernel adds in another order, which moved the
course model's logits (magnitude 22) by up to 1.7e-5 after an edit. On the same path the tiny
models' values came out bit-identical; the course model's, see COURSE_ULPS.
"""

from __future__ import annotations

import contextlib
import re
import socket

import pytest
import torch

from mlab_tfs.assets import course_model_path
from mlab_tfs.gpt2 import GPT2LMHeadModel
from mlab_tfs.gpt2.fast import fused_ops
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close

pytest.importorskip("transformer_lens", reason="TransformerLens is not installed: pip install -e '.[interp]'")

ATOL = 1e-5
# The course model's values are larger (logits up to 16 in magnitude, MLPs 1024 wide) and its
# comparisons run at one torch thread (the test session's). The weights are fp16 on disk and
# exact in fp32, so only the order of the arithmetic differs, in two places: BLAS orders each sum
# by the weight's layout (our nn.Linear keeps (out, in), transformers' Conv1D (in, out) with the
# bias added inside addmm), and our LayerNorm is written out, (x - mean) / sqrt(var + eps), so
# that hook_scale and hook_normalized exist, where transformers calls torch's fused layer_norm.
# Measured: our model with its Linears run as Conv1D's addmm cut the logits' difference from
# transformers from 2.25e-5 to 1.51e-5, and with F.layer_norm as well it was bit-identical.
# A float32 sum of n terms taken in another order moves by about sqrt(n) ulps of the sum of the
# terms' magnitudes (a random walk of one rounding per addition), and that sum is set by the
# tensor's largest entries, not by the entry at hand: the worst logit difference
# (2.3e-5) sat at a logit of -0.2 whose 256 terms |y_i W_vi| summed to 25, 9 ulps of 25. So the
# tolerance is relative to the reference's largest magnitude, not to each entry (an entrywise
# rtol passed until the retrained model put its worst difference at a small logit): sqrt(1024)
# (the MLP's width, the longest sum) = 32 ulps, doubled since both sides round, i.e.
# 64 * eps * max|reference|, 1.2e-4 for logits of 16. Measured at most 26 such ulps
# (ln_final.hook_normalized after the pattern edit); transformers' GPT2LMHeadModel itself, on
# the same fp32 weights, differs from ours by 2.25e-5 and from the bridge by 1.5e-5
# (test_transformers_differs_from_ours_by_the_same_rounding).
COURSE_ULPS = 64


def course_tol(reference: torch.Tensor) -> dict:
    """atol for a course-model tensor: ATOL plus COURSE_ULPS ulps of its largest magnitude."""
    big = float(reference.detach().abs().masked_fill(~reference.isfinite(), 0).max())
    return dict(atol=ATOL + COURSE_ULPS * torch.finfo(torch.float32).eps * big, rtol=0.0)


FMIN = torch.finfo(torch.float32).min
# The bridge's own names, beside HookedTransformer's: every wrapped module's input and
# output, the attention's raw output tuple, and the unembedding's output; for Llama and Qwen3
# also the rotary tables (hook_cos, hook_sin) and Qwen3's normed queries and keys.
BRIDGE_ONLY = re.compile(r"(^|\.)hook_(in|out)$|\.attn\.hook_hidden_states$|^hook_unembed$"
                         r"|\.hook_(cos|sin)$|\.attn\.hook_[qk]_normed$")


@contextlib.contextmanager
def no_network():
    """Refuse every connection and name lookup inside the block; fail if anything tried one
    (also if the caller caught the refusal and carried on from a local copy)."""
    tried: list[str] = []

    def refuse(*args, **kwargs):
        tried.append(repr(args[1:] or args)[:200])
        raise OSError("the network is off in this test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        yield
    assert not tried, f"the network was touched: {tried}"


@pytest.fixture(autouse=True)
def _offline():
    with no_network():
        yield


def test_the_network_guard_catches_a_connection():
    """no_network is not vacuous: a connection tried inside it fails the block, even when the
    caller swallows the refusal."""
    with pytest.raises(AssertionError, match="the network was touched"):
        with no_network():
            try:
                socket.create_connection(("127.0.0.1", 9), timeout=1)
            except OSError:
                pass


def ours_from(folder) -> GPT2LMHeadModel:
    model = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
    model.config.attn_implementation = "eager"  # TransformerLens's path (module docstring)
    return model


def bridge_from(folder, processed: bool = False):
    """TransformerLens's view of the GPT-2 in folder: a TransformerBridge around transformers'
    GPT2LMHeadModel (eager, fp32) in compatibility mode, raw weights unless processed (then
    HookedTransformer's default fold_ln / centering / value-bias folding)."""
    from transformer_lens.model_bridge import TransformerBridge

    with no_network():
        bridge = TransformerBridge.boot_transformers(str(folder), hf_model=tiny.hf_gpt2(folder), device="cpu",
                                                     dtype=torch.float32)
        bridge.enable_compatibility_mode(no_processing=not processed, disable_warnings=True)
    return bridge.eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tl-gpt2")
    return {name: tiny.gpt2_checkpoint(root / name, name, seed=i) for i, name in enumerate(tiny.GPT2_CONFIGS)}


@pytest.fixture(scope="module")
def pairs(folders):
    return {name: (ours_from(f), bridge_from(f)) for name, f in folders.items()}


@pytest.fixture(scope="module")
def course_pair():
    folder = course_model_path()
    if not (folder / "model.safetensors").is_file():
        pytest.fail(f"the course model is missing from {folder}")
    return ours_from(folder), bridge_from(folder)


def random_ids(vocab_size: int, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


def assert_caches_equal(ours: dict, theirs: dict, what: str, atol: float = ATOL, rtol: float = 0.0,
                        heads_first: tuple[str, ...] = (), course: bool = False) -> None:
    """Every hook name of ours is in TransformerLens's cache with the same value (1e-5); the
    names only TransformerLens has are its bridge's own. Masked scores: finfo.min in ours,
    -inf in TransformerLens's, at the same places. heads_first: names whose (B, nh, T, ...) in
    TransformerLens's cache are (B, T, nh, ...) in ours."""
    __tracebackhide__ = True
    missing = [name for name in ours if name not in theirs]
    assert not missing, f"{what}: TransformerLens has no {missing}"
    extra = [name for name in theirs if name not in ours and not BRIDGE_ONLY.search(name)]
    assert not extra, f"{what}: TransformerLens names that are neither ours nor its bridge's own: {extra}"
    for name, value in ours.items():
        other = theirs[name]
        if name.endswith(heads_first):
            other = other.transpose(1, 2)
        if name.endswith("hook_attn_scores"):
            masked = other == float("-inf")
            assert masked.any(), f"{what}: {name}: no masked score"
            assert bool((value[masked] == FMIN).all()), f"{what}: {name}: masked scores are not finfo.min in ours"
            assert bool((value[~masked] > FMIN).all()), f"{what}: {name}: finfo.min where TransformerLens sees a key"
            value, other = value.masked_fill(masked, 0.0), other.masked_fill(masked, 0.0)
        tol = course_tol(other) if course else dict(atol=atol, rtol=rtol)
        assert_close(value, other, name=f"{what}: {name}", **tol)


def both_cached(ours, bridge, ids, fwd_hooks=(), **kwargs):
    """(our logits, our cache, TransformerLens's logits, its cache) with fwd_hooks on in both."""
    with torch.no_grad():
        with ours.hooks(list(fwd_hooks)):
            out, cache = ours.run_with_cache(ids, **kwargs)
        with bridge.hooks(fwd_hooks=list(fwd_hooks)):
            logits, their_cache = bridge.run_with_cache(ids, **kwargs)
    return out.logits, cache, logits, dict(their_cache.items())


# ------------------------------------------------------------------------------ run_with_cache


# wide_unscaled (scale_attn_weights=False) is the one TransformerLens reads wrongly: see
# test_transformer_lens_scales_the_scores_of_an_unscaled_gpt2.
@pytest.mark.parametrize("name", [n for n in tiny.GPT2_CONFIGS if n != "wide_unscaled"])
def test_run_with_cache_equals_transformer_lens(pairs, name):
    """Tied and untied heads, erf and tanh GELU, 1 to 6 heads, an inner width that is not 4 C,
    scores scaled by the inverse layer index: every activation both models name is the same."""
    ours, bridge = pairs[name]
    ids = random_ids(ours.config.vocab_size, 2, 9, seed=1)
    logits, cache, their_logits, their_cache = both_cached(ours, bridge, ids)
    assert len(cache) == 4 + 17 * ours.config.n_layer  # 2 embeddings, 17 in each block, 2 in the final norm
    assert_caches_equal(cache, their_cache, name)
    assert_close(logits, their_logits, name=f"{name}: logits", atol=ATOL)


def test_transformer_lens_scales_the_scores_of_an_unscaled_gpt2(pairs, folders):
    """A GPT-2 with scale_attn_weights=False does not divide its scores by sqrt(head size)
    (transformers' GPT2Attention, ``if self.scale_attn_weights``), and ours follows it. The
    bridge's attention always does (``scale = head_dim ** (-0.5)`` in TransformerLens 4.3's
    model_bridge/generalized_components/joint_qkv_attention.py), so its scores are ours over
    sqrt(hs) and everything after them differs: equal up to the scores, then not."""
    ours, bridge = pairs["wide_unscaled"]
    ids = random_ids(ours.config.vocab_size, 2, 9, seed=1)
    logits, cache, their_logits, their_cache = both_cached(ours, bridge, ids)
    names = list(cache)
    before = names[:names.index("blocks.0.attn.hook_attn_scores")]
    assert_caches_equal({n: cache[n] for n in before}, {n: their_cache[n] for n in before}, "unscaled")
    ours_s, their_s = cache["blocks.0.attn.hook_attn_scores"], their_cache["blocks.0.attn.hook_attn_scores"]
    seen = their_s > float("-inf")
    hs = ours.config.n_embd // ours.config.n_head
    assert_close(their_s[seen], ours_s[seen] / hs**0.5, name="TransformerLens's scores (ours / sqrt(hs))", atol=ATOL)
    with torch.no_grad():
        assert_close(logits, tiny.hf_gpt2(folders["wide_unscaled"])(ids).logits, name="ours against transformers",
                     atol=ATOL)
    assert float((logits - their_logits).abs().max()) > 1e-2


def test_a_padded_batch_equals_transformer_lens(pairs):
    """Left padding with its attention mask and position ids, passed to both: equal at every
    position, the padding's too (a query that sees no key has an all-zero pattern row in both)."""
    ours, bridge = pairs["base"]
    ids, mask, pos = tiny.left_padded_batch(ours.config.vocab_size, [6, 3, 5], seed=2)
    logits, cache, their_logits, their_cache = both_cached(ours, bridge, ids, attention_mask=mask, position_ids=pos)
    assert_caches_equal(cache, their_cache, "left-padded")
    assert_close(logits, their_logits, name="left-padded: logits", atol=ATOL)
    pad_query = cache["blocks.0.attn.hook_pattern"][1, :, 0]  # row 1 starts with 3 pads
    assert bool((pad_query == 0).all()) and bool((their_cache["blocks.0.attn.hook_pattern"][1, :, 0] == 0).all())


def test_the_bridges_own_names_are_our_activations(pairs):
    """The names only TransformerLens has hold activations ours has under HookedTransformer's
    names: a block's hook_in / hook_out are its resid_pre / resid_post, ln2.hook_in is
    resid_mid, attn.hook_out and mlp.hook_out the branches' writes, unembed.hook_out the logits."""
    ours, bridge = pairs["deep_narrow_heads"]
    ids = random_ids(ours.config.vocab_size, 2, 7, seed=3)
    logits, cache, _, theirs = both_cached(ours, bridge, ids)
    same = {"embed.hook_out": "hook_embed", "pos_embed.hook_out": "hook_pos_embed"}
    for i in range(ours.config.n_layer):
        same |= {f"blocks.{i}.hook_in": f"blocks.{i}.hook_resid_pre",
                 f"blocks.{i}.hook_out": f"blocks.{i}.hook_resid_post",
                 f"blocks.{i}.ln2.hook_in": f"blocks.{i}.hook_resid_mid",
                 f"blocks.{i}.attn.hook_out": f"blocks.{i}.hook_attn_out",
                 f"blocks.{i}.mlp.hook_out": f"blocks.{i}.hook_mlp_out"}
    for their_name, our_name in same.items():
        assert_close(cache[our_name], theirs[their_name], name=f"{their_name} (ours: {our_name})", atol=ATOL)
    assert_close(logits, theirs["unembed.hook_out"], name="unembed.hook_out (ours: the logits)", atol=ATOL)


# ------------------------------------------------------------------------------ run_with_hooks


def _noise(shape, seed: int, scale: float = 0.5) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def _add_noise(seed: int, scale: float = 0.5):
    def edit(x, hook):
        return x + _noise(x.shape, seed, scale)
    return edit


def _zero_head(head: int):
    def edit(z, hook):  # (B, T, nh, hs)
        z[:, :, head] = 0.0
        return z
    return edit


def _uniform_over_past(head: int):
    def edit(pattern, hook):  # (B, nh, T, S)
        T = pattern.shape[-1]
        past = torch.tril(torch.ones(T, T))
        pattern[:, head] = past / past.sum(-1, keepdim=True)
        return pattern
    return edit


def _first_key_only(head: int):
    def edit(pattern, hook):  # (B, nh, T, S): every query of that head reads the first token only
        pattern[:, head] = 0.0
        pattern[:, head, :, 0] = 1.0
        return pattern
    return edit


EDITS = {  # hook name -> the edit, made in both models
    "hook_embed": _add_noise(0),
    "hook_pos_embed": _add_noise(1),
    "blocks.0.hook_resid_pre": _add_noise(2),
    "blocks.0.ln1.hook_scale": lambda x, hook: x * 1.7,
    "blocks.0.ln1.hook_normalized": _add_noise(3),
    "blocks.0.attn.hook_q": _add_noise(4, 3.0),  # queries and keys of a random model are small
    "blocks.0.attn.hook_k": _add_noise(5, 3.0),
    "blocks.0.attn.hook_v": _add_noise(6),
    "blocks.1.attn.hook_attn_scores": _add_noise(7, 3.0),
    "blocks.1.attn.hook_pattern": _first_key_only(2),
    "blocks.0.attn.hook_z": _zero_head(1),
    "blocks.0.hook_attn_out": _add_noise(8),
    "blocks.1.ln2.hook_scale": lambda x, hook: x * 0.6,
    "blocks.1.ln2.hook_normalized": _add_noise(9),
    "blocks.1.mlp.hook_pre": _add_noise(10),
    "blocks.1.mlp.hook_post": _add_noise(11),
    "blocks.1.hook_mlp_out": _add_noise(12),
    "blocks.1.hook_resid_post": _add_noise(13),
    "ln_final.hook_scale": lambda x, hook: x * 1.3,
    "ln_final.hook_normalized": _add_noise(14),
}


@pytest.mark.parametrize("hook_name", list(EDITS))
def test_run_with_hooks_edit_equals_transformer_lens(pairs, hook_name):
    """The same edit at one hook point in both: every activation after it and the logits agree,
    and the edit changed the logits (it was not a no-op in either)."""
    ours, bridge = pairs["deep_narrow_heads"]  # initializer_range 0.1: edits move its logits
    ids = random_ids(ours.config.vocab_size, 2, 8, seed=4)
    fwd = [(hook_name, EDITS[hook_name])]
    logits, cache, their_logits, their_cache = both_cached(ours, bridge, ids, fwd)
    assert_caches_equal(cache, their_cache, f"edited at {hook_name}")
    assert_close(logits, their_logits, name=f"logits, edited at {hook_name}", atol=ATOL)
    with torch.no_grad():
        clean = ours(ids).logits
        # run_with_cache hooks every point, so every module ran its hand-written code; with one
        # hook the others take the default path's fused kernels (mlab_tfs.fused): rounding apart.
        with fused_ops(ours, False):
            assert float((ours.run_with_hooks(ids, fwd_hooks=fwd).logits - logits).abs().max()) == 0.0
        assert_close(ours.run_with_hooks(ids, fwd_hooks=fwd).logits, logits, name="run_with_hooks on the default path",
                     atol=1e-5)
    change = float((logits - clean).abs().max())
    assert change > 100 * ATOL, f"the edit at {hook_name} moved the logits by only {change:.2e}"


def test_an_edit_of_resid_mid_reaches_the_stream_in_ours_and_only_the_mlp_in_the_bridge(pairs):
    """HookedTransformer's hook_resid_mid is the residual stream between the branches, and ours
    is too: an edit there flows on into resid_post. The bridge's hook_resid_mid is an alias of
    ln2.hook_in, the MLP branch's input: the stream carries on unedited. Undoing our edit at
    resid_post (keeping the MLP's response to it) gives the bridge's result."""
    ours, bridge = pairs["base"]
    ids = random_ids(ours.config.vocab_size, 2, 8, seed=5)
    name = "blocks.0.hook_resid_mid"
    delta = _noise((2, 8, ours.config.n_embd), seed=20)
    logits, cache, their_logits, their_cache = both_cached(ours, bridge, ids, [(name, lambda x, hook: x + delta)])
    assert_close(cache["blocks.0.hook_mlp_out"], their_cache["blocks.0.hook_mlp_out"], name="MLP out", atol=ATOL)
    assert_close(their_cache["blocks.0.hook_resid_post"],
                 cache["blocks.0.hook_resid_post"] - delta, name="bridge's resid_post", atol=ATOL)
    assert float((logits - their_logits).abs().max()) > 1e-2
    undone = [(name, lambda x, hook: x + delta), ("blocks.0.hook_resid_post", lambda x, hook: x - delta)]
    with torch.no_grad():
        assert_close(ours.run_with_hooks(ids, fwd_hooks=undone).logits, their_logits,
                     name="ours with the edit undone at resid_post", atol=ATOL)


def test_an_edit_of_the_scores_cannot_unmask_a_later_key_in_ours(pairs):
    """Setting every score to 0, the masked ones too: ours masks again after the hook, so each
    query attends uniformly over the keys it may see (no output depends on a later token); the
    bridge softmaxes the edit as it is, uniform over all keys, later ones included."""
    ours, bridge = pairs["base"]
    ids = random_ids(ours.config.vocab_size, 1, 5, seed=6)
    fwd = [("blocks.0.attn.hook_attn_scores", lambda s, hook: torch.zeros_like(s))]
    _, cache, _, their_cache = both_cached(ours, bridge, ids, fwd)
    past = torch.tril(torch.ones(5, 5))
    nh = ours.config.n_head
    assert_close(cache["blocks.0.attn.hook_pattern"], (past / past.sum(-1, keepdim=True)).expand(1, nh, 5, 5),
                 name="our pattern after the edit", atol=ATOL)
    assert_close(their_cache["blocks.0.attn.hook_pattern"], torch.full((1, nh, 5, 5), 0.2),
                 name="the bridge's pattern after the edit", atol=ATOL)


# ------------------------------------------------------------------ HookedTransformer's coordinates


def test_hooked_transformers_processed_weights_center_the_stream(folders):
    """With HookedTransformer's default processing (fold the layer norms' weights into the next
    layers, centre the weights that write to the stream and the unembedding, fold the value
    biases into the output bias) the residual stream and every write to it are ours minus
    their mean over d_model; the norms, queries, keys, scores, patterns and MLP activations are
    ours; values and head outputs are ours minus the value of a zero normalized input (ln_1's
    bias through W_V plus b_V, both moved into b_O); the logits are ours minus their mean over
    the vocabulary, so the log-probabilities are ours."""
    folder = folders["base"]
    ours, bridge = ours_from(folder), bridge_from(folder, processed=True)
    ids = random_ids(ours.config.vocab_size, 2, 7, seed=7)
    logits, cache, their_logits, theirs = both_cached(ours, bridge, ids)
    nh, hs = ours.config.n_head, ours.config.n_embd // ours.config.n_head
    for name, value in cache.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("hook_v", "hook_z"):
            layer = int(name.split(".")[1])
            block = ours.transformer.h[layer]
            with torch.no_grad():  # the value of a zero normalized input: ln_1's bias through W_V, plus b_V
                b_v = block.attn.c_attn(block.ln_1.bias)[2 * nh * hs:].view(nh, hs)
            expected = value - b_v
        elif leaf in ("hook_embed", "hook_pos_embed", "hook_attn_out", "hook_mlp_out") or "resid" in leaf:
            expected = value - value.mean(-1, keepdim=True)
        elif leaf == "hook_attn_scores":
            expected = value.masked_fill(value == FMIN, float("-inf"))
        else:
            expected = value
        assert_close(theirs[name], expected, name=f"processed: {name}", atol=ATOL)
    assert_close(their_logits, logits - logits.mean(-1, keepdim=True), name="processed: logits", atol=ATOL)
    assert_close(their_logits.log_softmax(-1), logits.log_softmax(-1), name="processed: log-probs", atol=ATOL)


# --------------------------------------------------------------------------- the course model


def test_the_course_models_cache_equals_transformer_lens(course_pair):
    """The shipped Shakespeare GPT-2 (fp16 weights, run in fp32 by both): every activation."""
    ours, bridge = course_pair
    ids = random_ids(ours.config.vocab_size, 2, 24, seed=8)
    logits, cache, their_logits, their_cache = both_cached(ours, bridge, ids)
    assert len(cache) == 4 + 17 * ours.config.n_layer
    assert_caches_equal(cache, their_cache, "course model", course=True)
    assert_close(logits, their_logits, name="course model: logits", **course_tol(their_logits))


def test_transformers_differs_from_ours_by_the_same_rounding(course_pair):
    """transformers' own GPT2LMHeadModel on the course model's fp32 weights: its logits and
    hidden states differ from ours by the reordered sums of COURSE_ULPS too, so the bridge's
    difference is not TransformerLens's."""
    ours, _ = course_pair
    hf = tiny.hf_gpt2(course_model_path())
    ids = random_ids(ours.config.vocab_size, 2, 24, seed=8)
    with torch.no_grad():
        mine, theirs = ours(ids, output_hidden_states=True), hf(ids, output_hidden_states=True)
    for i, (a, b) in enumerate(zip(mine.hidden_states, theirs.hidden_states)):
        assert_close(a, b, name=f"course model vs transformers: hidden_states[{i}]", **course_tol(b))
    assert_close(mine.logits, theirs.logits, name="course model vs transformers: logits", **course_tol(theirs.logits))


@pytest.mark.parametrize("hook_name, edit", [
    ("blocks.2.attn.hook_z", _zero_head(3)),
    ("blocks.4.attn.hook_pattern", _uniform_over_past(0)),
    ("blocks.1.hook_resid_pre", _add_noise(30)),
], ids=["zero a head", "uniform pattern", "resid_pre"])
def test_the_course_models_edits_equal_transformer_lens(course_pair, hook_name, edit):
    ours, bridge = course_pair
    ids = random_ids(ours.config.vocab_size, 2, 24, seed=9)
    logits, cache, their_logits, their_cache = both_cached(ours, bridge, ids, [(hook_name, edit)])
    assert_caches_equal(cache, their_cache, f"course model edited at {hook_name}", course=True)
    assert_close(logits, their_logits, name=f"course model: logits, edited at {hook_name}",
                 **course_tol(their_logits))
    with torch.no_grad():
        assert float((logits - ours(ids).logits).abs().max()) > 1e-2


# --------------------------------------------------------------------------- Llama and Qwen3

# Qwen3's QK-norm points: ours (B, T, nh, ...) as hook_q, TransformerLens's (B, nh, T, ...).
QK_NORM = ("q_norm.hook_scale", "q_norm.hook_normalized", "k_norm.hook_scale", "k_norm.hook_normalized")


def llama_pair(folder):
    """Our LlamaForCausalLM (eager) and TransformerLens's bridge around transformers' model."""
    from transformers import GPT2Tokenizer
    from transformer_lens.model_bridge import TransformerBridge

    from mlab_tfs.llama import LlamaForCausalLM

    ours = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ours.config.attn_implementation = "eager"
    # boot_transformers makes a tokenizer from the folder unless given one; these tiny folders
    # hold none and transformers makes no Llama tokenizer from nothing. Ids go in, so any will do.
    with no_network():
        tokenizer = GPT2Tokenizer.from_pretrained(course_model_path())
        bridge = TransformerBridge.boot_transformers(str(folder), hf_model=tiny.hf_llama(folder), device="cpu",
                                                     dtype=torch.float32, tokenizer=tokenizer)
        bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    return ours, bridge.eval()


@pytest.fixture(scope="module")
def llama_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tl-llama")
    return {name: llama_pair(tiny.llama_checkpoint(root / name.replace("/", "-"), name, seed=i))
            for i, name in enumerate(tiny.LLAMA_FAMILY)}


@pytest.mark.parametrize("name", list(tiny.LLAMA_FAMILY))
def test_llamas_run_with_cache_equals_transformer_lens(llama_pairs, name):
    """Grouped-query attention, a head_dim that is not hidden / heads, Llama 3's rope scaling,
    biases, a tied head, Qwen3's QK-norm: every activation both models name is the same.

    Not bit for bit: with a hook on hook_scale (run_with_cache hooks every point) our RMSNorm
    divides by the scale it reports, sqrt(mean(x^2) + eps), where transformers multiplies by
    rsqrt (ours does too without the hook). The first difference is 2.4e-7 at
    blocks.0.ln1.hook_normalized; the largest, at the last layers, was 7.2e-6 (llama/gqa)."""
    ours, bridge = llama_pairs[name]
    ids = random_ids(ours.config.vocab_size, 2, 9, seed=10)
    logits, cache, their_logits, their_cache = both_cached(ours, bridge, ids)
    assert_caches_equal(cache, their_cache, name, heads_first=QK_NORM)
    assert_close(logits, their_logits, name=f"{name}: logits", atol=ATOL)


@pytest.mark.parametrize("hook_name, edit", [
    ("blocks.0.attn.hook_z", _zero_head(1)),
    ("blocks.1.attn.hook_pattern", _first_key_only(3)),
    ("blocks.0.attn.hook_rot_k", _add_noise(40)),
    ("blocks.0.mlp.hook_post", _add_noise(41)),
], ids=["zero a head", "first key only", "rotated keys", "mlp post"])
def test_a_llamas_edits_equal_transformer_lens(llama_pairs, hook_name, edit):
    ours, bridge = llama_pairs["llama/gqa"]
    ids = random_ids(ours.config.vocab_size, 2, 9, seed=11)
    logits, cache, their_logits, their_cache = both_cached(ours, bridge, ids, [(hook_name, edit)])
    assert_caches_equal(cache, their_cache, f"llama edited at {hook_name}")
    assert_close(logits, their_logits, name=f"llama: logits, edited at {hook_name}", atol=ATOL)
    with torch.no_grad():
        assert float((logits - ours(ids).logits).abs().max()) > 100 * ATOL
