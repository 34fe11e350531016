"""Causality: no output at position t depends on a token after t, on any attention path
(hand-written "eager", "sdpa", the tuple KV cache, the static cache), padded or not.

Each test changes every token after t (its id and, in padded batches, whether it is padding)
and requires the logits at positions 0..t, and the gradients of every parameter of a loss on
those logits, to stay as they were. The loss keeps its targets fixed (the original next
tokens, -100 on padding only), so it includes the prediction of the first real token, which
a left-padded row makes at its last padding position.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlab_tfs.checkpoints import read_config
from mlab_tfs.gpt2 import solution
from mlab_tfs.testing.compare import assert_close, assert_grads_close

from .helpers import hf_default, load_into
from .test_model import LEARNER_CONFIGS

T = 8
LENGTHS = [8, 5, 2]
PADDINGS = ["none", "left", "right"]
LEAK_HINT = ("a later token changed this: a padding query that sees no key must output 0 (exercise 3), not "
             "a uniform average over every key, later ones included; and the causal mask must hold on every path "
             "(with a cache: the cached keys first, then the new ones)")


# Not the padding a tokenizer makes, but any mask the model accepts: holes in the middle, a row
# that is all padding, a first column of padding under a real one.
HOLES = torch.tensor([[1, 0, 1, 1, 0, 0, 1, 1], [0] * T, [0, 1, 0, 1, 1, 0, 1, 0]])


def _mask(padding: str) -> torch.Tensor | None:
    if padding == "none":
        return None
    if padding == "holes":
        return HOLES.clone()
    mask = torch.zeros(len(LENGTHS), T, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        if padding == "left":
            mask[b, T - n :] = 1
        else:
            mask[b, :n] = 1
    return mask


def _positions(mask: torch.Tensor | None) -> torch.Tensor:
    """Left padding: counted over real tokens (padding at 1), so they depend on earlier columns
    only; otherwise 0..T-1."""
    if mask is None or bool(mask[:, 0].all()):
        return torch.arange(T)[None].expand(len(LENGTHS), T)
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def _later_changed(ids, mask, t, vocab_size, seed):
    """Every token after t replaced by another id, and (when padded) its padding bit redrawn."""
    g = torch.Generator().manual_seed(seed)
    new_ids = ids.clone()
    shift = torch.randint(1, vocab_size, ids[:, t + 1 :].shape, generator=g)  # never 0: a different id
    new_ids[:, t + 1 :] = (ids[:, t + 1 :] + shift) % vocab_size
    new_mask = None
    if mask is not None:
        new_mask = mask.clone()
        new_mask[:, t + 1 :] = torch.randint(0, 2, mask[:, t + 1 :].shape, generator=g)
    return new_ids, new_mask


def _loss_up_to(logits, targets, t):
    """Cross-entropy of the predictions made at positions 0..t against fixed targets."""
    return F.cross_entropy(logits[:, : t + 1].reshape(-1, logits.shape[-1]), targets[:, : t + 1].reshape(-1),
                           ignore_index=-100)


def _full(model, ids, mask):
    kwargs = {} if mask is None else dict(attention_mask=mask)
    return model(ids, position_ids=_positions(mask), **kwargs).logits


def _cached(model, ids, mask, prefix=3):
    """A prefix of 3 columns, then the other 5 in one step through past_key_values."""
    pos = _positions(mask)
    kw = lambda end: {} if mask is None else dict(attention_mask=mask[:, :end])  # noqa: E731
    first = model(ids[:, :prefix], position_ids=pos[:, :prefix], use_cache=True, **kw(prefix))
    rest = model(ids[:, prefix:], position_ids=pos[:, prefix:], past_key_values=first.past_key_values, **kw(T))
    return torch.cat([first.logits, rest.logits], dim=1)


def _static(model, ids, mask):
    """One prefill through a static cache with more columns than the text."""
    from mlab_tfs.gpt2 import fast

    cache = solution.KVCache.for_model(model, ids.shape[0], T + 3)
    cache.reset(torch.ones_like(ids) if mask is None else mask)
    return fast.static_forward(model, ids, _positions(mask), cache, torch.arange(T))


RUNNERS = {"full": _full, "cached": _cached, "static": _static}


def _model(gpt2, folder, attn):
    cfg = solution.GPT2Config.from_dict(read_config(folder))
    cfg.attn_implementation = attn
    hf = hf_default(folder)
    return load_into(gpt2.GPT2LMHeadModel(cfg), hf)


def _check_causal(model, runner, padding, seed=0):
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (len(LENGTHS), T), generator=g)
    mask = _mask(padding)
    if mask is not None:
        ids = ids.masked_fill(mask == 0, 0)
    # targets[:, t]: the token after t, -100 on padding only (and after the last column).
    targets = ids[:, 1:] if mask is None else ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    targets = torch.cat([targets, torch.full((len(LENGTHS), 1), -100)], dim=1)  # (B, T)

    def logits_and_grads(i, m, t):
        model.zero_grad(set_to_none=True)
        logits = runner(model, i, m)
        _loss_up_to(logits, targets, t).backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    for t in range(T - 1):
        logits, grads = logits_and_grads(ids, mask, t)
        later_ids, later_mask = _later_changed(ids, mask, t, V, seed=100 + t)
        later_logits, later_grads = logits_and_grads(later_ids, later_mask, t)
        assert_close(later_logits[:, : t + 1], logits[:, : t + 1], name=f"logits at positions 0..{t} after "
                     f"changing every later token ({padding} padding)", atol=1e-6, hint=LEAK_HINT)
        assert_grads_close(later_grads, grads, rtol=1e-5, what=f"gradient of the loss at positions 0..{t}",
                           hint=LEAK_HINT)


@pytest.mark.exercise("model")
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", LEARNER_CONFIGS)
def test_no_output_depends_on_a_later_token(gpt2, checkpoints, name, attn, padding):
    _check_causal(_model(gpt2, checkpoints[name], attn), _full, padding)


@pytest.mark.solution_only
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_no_output_depends_on_a_later_token_with_a_static_cache(checkpoints, attn, padding):
    _check_causal(_model(solution, checkpoints["base"], attn), _static, padding)


@pytest.mark.solution_only
@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_no_output_depends_on_a_later_token_with_holes_in_the_mask(checkpoints, attn, runner):
    _check_causal(_model(solution, checkpoints["base"], attn), RUNNERS[runner], "holes")


@pytest.mark.solution_only
@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_a_mask_with_holes_equals_transformers_default(checkpoints, attn, runner):
    """Logits at every position (padding included), loss and gradients, through each runner."""
    from .helpers import hf_grads_as_ours

    mask = _mask("holes")
    ids = torch.randint(0, 97, mask.shape, generator=torch.Generator().manual_seed(7))
    labels = ids.masked_fill(mask == 0, -100)
    hf = hf_default(checkpoints["base"])
    expected = hf(ids, attention_mask=mask, position_ids=_positions(mask))
    solution.lm_loss(expected.logits, labels).backward()
    model = _model(solution, checkpoints["base"], attn)
    logits = RUNNERS[runner](model, ids, mask)
    solution.lm_loss(logits, labels).backward()
    assert_close(logits, expected.logits, name=f"logits ({runner}, {attn}) with holes in the mask", atol=1e-5)
    assert_grads_close({n: p.grad for n, p in model.named_parameters()}, hf_grads_as_ours(hf), rtol=1e-4,
                       what=f"gradient ({runner}, {attn}) with holes in the mask")


@pytest.mark.solution_only
@pytest.mark.parametrize("runner", list(RUNNERS))
def test_every_path_gives_the_same_padded_logits(checkpoints, runner):
    """eager == sdpa == cache == static cache, padding positions included (left padding)."""
    mask = _mask("left")
    ids = torch.randint(0, 61, (len(LENGTHS), T), generator=torch.Generator().manual_seed(3)).masked_fill(mask == 0, 0)
    with torch.no_grad():
        reference = _full(_model(solution, checkpoints["deep_narrow_heads"], "eager"), ids, mask)
        for attn in ("eager", "sdpa"):
            model = _model(solution, checkpoints["deep_narrow_heads"], attn)
            assert_close(RUNNERS[runner](model, ids, mask), reference, name=f"{runner} ({attn}) logits vs eager",
                         atol=1e-5)


# ---------------------------------------------------------------------------------------
# transformers' two paths differ on left padding; ours equals the default
# ---------------------------------------------------------------------------------------


@pytest.mark.solution_only
def test_transformers_eager_path_leaks_and_its_default_does_not(checkpoints):
    """Documents the difference: transformers' eager GPT-2 gives the last padding position
    (which predicts the first real token) an average over every key, later tokens included.
    Its default path (sdpa) and ours do not, and our loss and gradients equal that default."""
    import transformers

    folder = checkpoints["base"]
    eager_hf = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager",
                                                            dtype=torch.float32).eval()
    default_hf, ours = hf_default(folder), solution.GPT2LMHeadModel.from_pretrained(folder)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    ids = torch.tensor([[0, 0, 5, 17, 42, 3]])
    later = ids.clone()
    later[0, 4:] = torch.tensor([88, 9])
    kwargs = dict(attention_mask=mask, position_ids=_positions(mask)[:1, :6])
    with torch.no_grad():
        at_pad = {name: (m(ids, **kwargs).logits[0, 1], m(later, **kwargs).logits[0, 1])
                  for name, m in (("eager", eager_hf), ("default", default_hf), ("ours", ours))}
    before, after = at_pad["eager"]
    assert float((before - after).abs().max()) > 1e-3, "transformers' eager path no longer reads later tokens here"
    for name in ("default", "ours"):
        assert torch.equal(at_pad[name][0], at_pad[name][1]), f"{name}: the padding position read a later token"
    assert_close(at_pad["ours"][0], at_pad["default"][0], name="logits at the last padding position", atol=1e-5)
    assert float((at_pad["ours"][0] - before).abs().max()) > 1e-3, "ours should differ from transformers' eager here"


@pytest.mark.solution_only
def test_left_padded_loss_and_gradients_equal_transformers_default_not_eager(checkpoints):
    import transformers

    from .helpers import hf_grads_as_ours

    folder = checkpoints["base"]
    mask = _mask("left")
    ids = torch.randint(0, 97, (len(LENGTHS), T), generator=torch.Generator().manual_seed(4)).masked_fill(mask == 0, 0)
    labels = ids.masked_fill(mask == 0, -100)  # the first real token's label counts
    kwargs = dict(attention_mask=mask, position_ids=_positions(mask), labels=labels)
    losses, grads = {}, {}
    eager_hf = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    for name, model in (("default", hf_default(folder)), ("eager", eager_hf.eval())):
        loss = model(ids, **kwargs).loss
        loss.backward()
        losses[name], grads[name] = loss.detach(), hf_grads_as_ours(model)
    for attn in ("eager", "sdpa"):
        ours = solution.GPT2LMHeadModel.from_pretrained(folder, attn_implementation=attn)
        out = ours(ids, **kwargs)
        out.loss.backward()
        assert_close(out.loss, losses["default"], name=f"loss ({attn}) vs transformers' default", atol=1e-5)
        assert_grads_close({n: p.grad for n, p in ours.named_parameters()}, grads["default"], rtol=1e-4)
    # Where transformers' eager path differs, and by how much on this tiny model.
    assert float((losses["eager"] - losses["default"]).abs()) > 1e-5
    worst = max(float((grads["eager"][n] - g).abs().max() / g.abs().max()) for n, g in grads["default"].items())
    assert worst > 1e-2, f"transformers' eager gradients now agree with its default ({worst:.3g})"


@pytest.mark.solution_only
def test_train_mode_padded_loss_and_gradients_equal_transformers_default_under_the_same_seed(tmp_path):
    """Dropout on (embeddings, attention pattern, residuals), left padding and a hole in the
    middle: the same seed draws the same masks on both sides, so ours (either path) gives
    transformers' default train-mode loss and gradients; the rows of queries that see no key
    stay zero through the attention dropout."""
    from mlab_tfs.testing import tiny

    from .helpers import hf_grads_as_ours

    folder = tiny.gpt2_checkpoint(tmp_path, "base", seed=8, resid_pdrop=0.1, embd_pdrop=0.2, attn_pdrop=0.3)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [0, 1, 1, 0, 1, 1, 0, 1], [1] * T])
    ids = torch.randint(0, 97, mask.shape, generator=torch.Generator().manual_seed(9)).masked_fill(mask == 0, 0)
    kwargs = dict(attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                  labels=ids.masked_fill(mask == 0, -100))
    hf = hf_default(folder).train()
    torch.manual_seed(10)
    expected = hf(ids, **kwargs).loss
    expected.backward()
    for attn in ("eager", "sdpa"):
        ours = solution.GPT2LMHeadModel.from_pretrained(folder, attn_implementation=attn).train()
        torch.manual_seed(10)
        loss = ours(ids, **kwargs).loss
        loss.backward()
        assert_close(loss, expected, name=f"train-mode loss ({attn}) vs transformers' default", atol=1e-5)
        assert_grads_close({n: p.grad for n, p in ours.named_parameters()}, hf_grads_as_ours(hf), rtol=1e-4,
                           what=f"train-mode gradient ({attn})")
        with torch.no_grad():
            assert float((loss - ours.eval()(ids, **kwargs).loss).abs()) > 1e-3, "dropout should act in train mode"


# ---------------------------------------------------------------------------------------
# Choosing the path: one value on the config, read at forward time
# ---------------------------------------------------------------------------------------


@pytest.mark.solution_only
def test_attn_implementation_defaults_to_sdpa_and_switches_after_loading(checkpoints, monkeypatch):
    from mlab_tfs import attention

    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"])
    assert model.config.attn_implementation == "sdpa" and solution.GPT2Config().attn_implementation == "sdpa"
    assert all(block.attn.config is model.config for block in model.transformer.h), "one config object"
    calls = []
    real = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fused = model(ids).logits
        assert len(calls) == model.config.n_layer, "the default path should run scaled_dot_product_attention"
        model.set_attn_implementation("eager")
        assert model.config.attn_implementation == "eager"
        eager = model(ids).logits
        assert len(calls) == model.config.n_layer, "after set_attn_implementation('eager') no layer may use sdpa"
    assert_close(eager, fused, name="eager logits after switching", atol=1e-5)
    loaded = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"], attn_implementation="eager")
    assert loaded.config.attn_implementation == "eager"
    default = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"], attn_implementation=None)
    assert default.config.attn_implementation == "sdpa", "attn_implementation=None is the default, as in transformers"


@pytest.mark.solution_only
@pytest.mark.parametrize("bad", ["flash_attention_2", "Eager", "", None, 1])
def test_set_attn_implementation_rejects_unknown_names(checkpoints, bad):
    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"])
    with pytest.raises(ValueError, match=r"attn_implementation must be one of \('eager', 'sdpa'\), got"):
        model.set_attn_implementation(bad)
    assert model.config.attn_implementation == "sdpa", "a refused name must leave the model as it was"


@pytest.mark.solution_only
def test_fused_kernels_stay_enabled_when_training_with_padding(checkpoints, monkeypatch):
    """No fallback to the math kernel just because a mask and gradients are present: the
    flash and memory-efficient backends stay enabled around every sdpa call."""
    from mlab_tfs import attention

    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"]).train()
    enabled = []
    real = attention.F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        enabled.append((torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
                        kwargs.get("attn_mask") is not None))
        return real(*args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    mask = _mask("left")
    ids = torch.randint(0, 97, (3, T), generator=torch.Generator().manual_seed(1)).masked_fill(mask == 0, 0)
    model(ids, attention_mask=mask, position_ids=_positions(mask), labels=ids).loss.backward()
    assert enabled == [(True, True, True)] * model.config.n_layer, enabled


@pytest.mark.solution_only
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the memory-efficient kernel")
def test_memory_efficient_kernel_trains_with_padding_as_eager(checkpoints):
    """On a GPU, forced onto the memory-efficient kernel (an error if it cannot run), a
    left-padded training step gives eager's loss and gradients."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    mask = _mask("left").cuda()
    ids = torch.randint(0, 97, (3, T), generator=torch.Generator().manual_seed(2)).cuda().masked_fill(mask == 0, 0)
    kwargs = dict(attention_mask=mask, position_ids=_positions(mask), labels=ids.masked_fill(mask == 0, -100))
    results = []
    for attn in ("eager", "sdpa"):
        model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"], attn_implementation=attn).cuda().train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
            loss = model(ids, **kwargs).loss
            loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    assert_close(results[1][0], results[0][0], name="memory-efficient kernel loss", atol=1e-5)
    assert_grads_close(results[1][1], results[0][1], rtol=1e-4)


@pytest.mark.solution_only
@pytest.mark.parametrize("runner", ["full", "static"])
def test_an_unknown_path_on_the_config_is_an_error_at_forward(checkpoints, runner):
    """Set by hand to a name no layer knows, config.attn_implementation fails loudly instead of
    silently running one of the paths."""
    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"])
    model.config.attn_implementation = "flash_attention_2"
    ids = torch.randint(0, 97, (len(LENGTHS), T), generator=torch.Generator().manual_seed(5))
    with pytest.raises(ValueError, match=r"config.attn_implementation must be one of \('eager', 'sdpa'\), "
                                         r"got 'flash_attention_2'"):
        RUNNERS[runner](model, ids, None)


@pytest.mark.solution_only
def test_attention_mask_of_the_layer_must_be_bool(checkpoints):
    attn = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"]).transformer.h[0].attn
    x = torch.randn(1, 3, 32)
    additive = torch.zeros(1, 1, 3, 3)
    with pytest.raises(TypeError, match="GPT2Attention: attention_mask must be a bool tensor.*got a tensor of dtype "
                                        "torch.float32"):
        attn(x, additive)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        solution.attention_pattern(x[:, None], x[:, None], additive, 1.0)


@pytest.mark.solution_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_half_precision_with_padding_is_finite_and_equals_transformers_default(checkpoints, attn, dtype):
    """Every query -3 and every key +3 in each coordinate: each score is -9 * hs * hs**-0.5 = -25.5,
    and finfo.min added to it is -inf in float16 (transformers' eager path gives NaN here).
    Logits and every gradient finite; logits equal to transformers' default model in the same
    dtype (float16 within 1e-3, bfloat16 within 1e-2: a few units in the last place of logits
    below 1)."""
    import transformers

    folder = checkpoints["base"]
    models = [solution.GPT2LMHeadModel.from_pretrained(folder, attn_implementation=attn, dtype=dtype),
              transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=dtype).eval()]
    C = models[0].config.n_embd
    for model in models:
        with torch.no_grad():
            for block in model.transformer.h:
                w, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # q and k: the first 2C outputs
                out_dim = 0 if w.shape[0] == 3 * C else 1  # ours is (3C, C), transformers' Conv1D (C, 3C)
                w.narrow(out_dim, 0, 2 * C).zero_()
                b[:C], b[C:2 * C] = -3.0, 3.0
    mask = _mask("holes")
    ids = torch.randint(0, 97, mask.shape, generator=torch.Generator().manual_seed(8))
    kwargs = dict(attention_mask=mask, position_ids=_positions(mask), labels=ids.masked_fill(mask == 0, -100))
    out = models[0](ids, **kwargs)
    out.loss.backward()
    with torch.no_grad():
        expected = models[1](ids, **{k: v for k, v in kwargs.items() if k != "labels"}).logits
    assert bool(torch.isfinite(out.logits).all()), f"non-finite {dtype} logits with padding ({attn})"
    bad = [n for n, p in models[0].named_parameters() if not bool(torch.isfinite(p.grad).all())]
    assert not bad, f"non-finite {dtype} gradients ({attn}) for {bad}"
    assert_close(out.logits.float(), expected.float(), name=f"{dtype} logits ({attn}) vs transformers' default",
                 atol=1e-3 if dtype == torch.float16 else 1e-2)
