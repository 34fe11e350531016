"""The fused kernels of the solutions' default eager path (mlab_tfs.fused): the default equals
the hand-written code (outputs and every parameter's gradient) for every model, runs the
kernels it claims to, leaves hooked calls and the dtypes where a kernel would differ to the
hand-written code, and is switched by use_fused_ops / fused_ops / hand_written."""

from __future__ import annotations

import copy
import pickle
from contextlib import ExitStack
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from mlab_tfs import fused
from mlab_tfs.activations import gelu, gelu_new
from mlab_tfs.bert import solution as bert
from mlab_tfs.deberta import solution as deberta
from mlab_tfs.fused import FusedOps, hand_written
from mlab_tfs.gpt2 import fast
from mlab_tfs.gpt2 import solution as gpt2
from mlab_tfs.llama import solution as llama
from mlab_tfs.testing import tiny
from mlab_tfs.testing.compare import assert_close, assert_grads_close

KERNELS = ("layer_norm", "gelu", "rms_norm")

MODELS = ([f"gpt2/{n}" for n in tiny.GPT2_CONFIGS] + [f"bert/{n}" for n in tiny.BERT_CONFIGS]
          + [f"deberta/{n}" for n in tiny.DEBERTA_CONFIGS] + list(tiny.LLAMA_FAMILY))


def _build(name: str, folder):
    """(our model in train mode with every dropout at 0, the keyword arguments of a padded batch)."""
    family, config = name.split("/", 1)
    if family == "gpt2":
        model = gpt2.GPT2LMHeadModel.from_pretrained(tiny.gpt2_checkpoint(folder, config, seed=1))
        ids, mask, pos = tiny.left_padded_batch(model.config.vocab_size, [7, 4], seed=2)
        kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=pos)
    elif family == "bert":
        model = bert.BertForMaskedLM.from_pretrained(tiny.bert_checkpoint(folder, config, seed=1, head="mlm"))
        ids, mask, types = tiny.padded_bert_batch(model.config.vocab_size, [7, 4], model.config.type_vocab_size,
                                                  seed=2)
        kwargs = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    elif family == "deberta":
        model = deberta.DebertaV2ForMaskedLM.from_pretrained(tiny.deberta_checkpoint(folder, config, seed=1))
        ids, mask, _ = tiny.padded_bert_batch(model.config.vocab_size, [7, 4], seed=2)
        kwargs = dict(input_ids=ids, attention_mask=mask)
    else:
        model = llama.LlamaForCausalLM.from_pretrained(tiny.llama_checkpoint(folder, name, seed=1))
        ids, mask, pos = tiny.left_padded_batch(model.config.vocab_size, [7, 4], seed=2)
        kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=pos)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model, kwargs


def _run(model, kwargs):
    """Logits and every parameter's gradient of a fixed random weighting of them, and how many
    times each fused kernel was called."""
    model.zero_grad(set_to_none=True)
    with ExitStack() as stack:
        spies = {k: stack.enter_context(mock.patch.object(F, k, wraps=getattr(F, k)))
                 for k in KERNELS if hasattr(F, k)}
        logits = model(**kwargs).logits
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(3))
    (logits * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads, {k: s.call_count for k, s in spies.items()}


def _expected_kernels(model) -> set[str]:
    """The kernels the default path of this model must call: a layer norm per LayerNorm, an
    RMSNorm per RMSNorm (where torch has F.rms_norm), F.gelu for the MLPs' GELUs."""
    want = set()
    for m in model.modules():
        if isinstance(m, gpt2.LayerNorm):
            want.add("layer_norm")
        if isinstance(m, llama.RMSNorm) and fused.HAS_RMS_NORM:
            want.add("rms_norm")
        if isinstance(m, FusedOps) and getattr(m, "act", None) in (gelu, gelu_new):
            want.add("gelu")
    return want


# A key bias adds q . b to every score of a query's row, which softmax ignores: BERT's and
# DeBERTa's key-bias gradients are 0 (or, with DeBERTa's p2c, partly so) up to rounding noise,
# whose error relative to its own largest entry means nothing (bert/tests/helpers.py says more).
# Llama's is real: the rotation makes the shift differ along the row.
KEY_BIASES = ("attention.self.key.bias", "attention.self.key_proj.bias", "attention.self.pos_key_proj.bias")


def _assert_grads_close(grads, ref_grads, what):
    """Every gradient within 1e-5 of the reference relative to its own largest entry; the key
    biases' within 1e-5 of the model's largest gradient entry."""
    __tracebackhide__ = True
    scale = max(float(g.abs().max()) for g in ref_grads.values())
    for name in [n for n in ref_grads if n.endswith(KEY_BIASES)]:
        assert_close(grads.pop(name), ref_grads.pop(name), name=f"{what} of {name}", atol=1e-5 * scale)
    assert_grads_close(grads, ref_grads, rtol=1e-5, what=what)


@pytest.mark.parametrize("name", MODELS)
def test_the_default_path_equals_the_hand_written_code(name, tmp_path):
    """Outputs and every parameter's gradient within 1e-5 (fp32): the kernels compute the same
    functions, rounded differently. The default calls the kernels; the hand-written path
    (use_fused_ops(model, False)) calls none of them."""
    model, kwargs = _build(name, tmp_path / "ckpt")
    keys = list(model.state_dict())
    logits, grads, calls = _run(model, kwargs)
    assert {k for k, n in calls.items() if n} == _expected_kernels(model), calls
    assert fast.use_fused_ops(model, False) is model
    assert list(model.state_dict()) == keys, "the switch keeps module names and weights"
    ref_logits, ref_grads, ref_calls = _run(model, kwargs)
    assert not any(ref_calls.values()), f"the hand-written path called {ref_calls}"
    assert_close(logits, ref_logits, name=f"{name}: default vs hand-written logits", atol=1e-5)
    assert set(grads) == set(ref_grads)
    _assert_grads_close(grads, ref_grads, what=f"{name}: default vs hand-written gradient")
    fast.use_fused_ops(model)  # back on: the default's results again, bit for bit
    again, again_grads, _ = _run(model, kwargs)
    assert torch.equal(again, logits)
    assert all(torch.equal(again_grads[k], grads[k]) for k in grads)


# --- hooks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2/base", "bert/base", "deberta/v2_conv", "qwen3/qk_norm"])
def test_a_hooked_call_sees_exactly_the_hand_written_activations(name, tmp_path):
    """run_with_cache hooks every point: every module runs as written, so the cache and the
    output are those of the hand-written path bit for bit, and no fused kernel runs."""
    model, kwargs = _build(name, tmp_path / "ckpt")
    model.eval()
    ids = kwargs.pop("input_ids")
    with torch.no_grad(), mock.patch.object(F, "layer_norm", wraps=F.layer_norm) as spy:
        out, cache = model.run_with_cache(ids, **kwargs)
    assert spy.call_count == 0
    with torch.no_grad(), fast.fused_ops(model, False):
        ref_out, ref = model.run_with_cache(ids, **kwargs)
    assert list(cache) == list(ref)
    for key in ref:
        assert torch.equal(cache[key], ref[key]), key
    assert torch.equal(out.logits, ref_out.logits)


@pytest.mark.parametrize("point", ["hook_scale", "hook_normalized"])
@pytest.mark.parametrize("norm", ["layer_norm", "rms_norm"])
def test_a_hook_on_a_norm_runs_its_hand_written_code(norm, point):
    """The kernels form neither the scale nor the normalized input: with a hook on either, that
    call runs the hand-written code, so the hook sees the value and its edit takes effect; the
    next call without the hook is fused again."""
    g = torch.Generator().manual_seed(0)
    module = gpt2.LayerNorm(16) if norm == "layer_norm" else llama.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        module.weight.copy_(torch.randn(16, generator=g))
    x = torch.randn(3, 16, generator=g) * 2 + 1
    with fast.fused_ops(module, False):
        ref = module(x)
    seen = []
    handle = getattr(module, point).add_hook(lambda t, hook: seen.append(t.clone()) or t * 2)
    with mock.patch.object(F, norm, wraps=getattr(F, norm, None)) as spy:
        edited = module(x)
    handle.remove()
    assert spy.call_count == 0
    assert len(seen) == 1 and seen[0].shape == ((3, 1) if point == "hook_scale" else (3, 16))
    # Doubling the scale halves the output; doubling the normalized input doubles it (LayerNorm adds its bias).
    bias = module.bias if norm == "layer_norm" else 0.0
    factor = 0.5 if point == "hook_scale" else 2.0
    assert_close(edited, (ref - bias) * factor + bias, name=f"{norm} with {point} doubled", atol=1e-5)
    with mock.patch.object(F, norm, wraps=getattr(F, norm, None)) as spy:
        fused_out = module(x)
    assert spy.call_count == (1 if norm == "layer_norm" or fused.HAS_RMS_NORM else 0)
    assert_close(fused_out, ref, name=f"fused {norm}", atol=1e-6)


def test_a_hook_on_an_mlp_runs_its_hand_written_activation():
    config = gpt2.GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=11, n_positions=8)
    mlp = gpt2.GPT2MLP(config).eval()
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(1))
    handle = mlp.hook_post.add_hook(lambda t, hook: t)
    with mock.patch.object(F, "gelu", wraps=F.gelu) as spy:
        hooked = mlp(x)
    handle.remove()
    assert spy.call_count == 0
    with fast.fused_ops(mlp, False):
        assert torch.equal(hooked, mlp(x))


# --- dtypes ----------------------------------------------------------------------------------


def _norm_pair(norm: str, dtype: torch.dtype):
    """Our module and transformers' (nn.LayerNorm / LlamaRMSNorm), the same random weights in dtype."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    g = torch.Generator().manual_seed(4)
    ours = gpt2.LayerNorm(32, eps=1e-5) if norm == "layer_norm" else llama.RMSNorm(32, eps=1e-6)
    theirs = torch.nn.LayerNorm(32, eps=1e-5) if norm == "layer_norm" else LlamaRMSNorm(32, eps=1e-6)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if name == "weight" else 0.0))
            theirs.get_parameter(name).copy_(p)
    return ours.to(dtype), theirs.to(dtype), torch.randn(4, 7, 32, generator=g) * 3 + 0.5


@pytest.mark.parametrize("norm", ["layer_norm", "rms_norm"])
def test_fused_norms_equal_transformers_in_float32(norm):
    """F.rms_norm against transformers' LlamaRMSNorm (x * rsqrt(mean(x^2) + eps), then the
    weight) and F.layer_norm against nn.LayerNorm: 1e-6 in float32, the gradients too."""
    ours, theirs, x = _norm_pair(norm, torch.float32)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = ours(a), theirs(b)
    assert_close(out, ref, name=f"fused {norm} vs transformers", atol=1e-6)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    (out * w).sum().backward()
    (ref * w).sum().backward()
    assert_close(a.grad, b.grad, name=f"fused {norm}: input gradient", atol=1e-5)
    assert_close(ours.weight.grad, theirs.weight.grad, name=f"fused {norm}: weight gradient", atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_transformers_semantics(dtype):
    """bf16 / fp16: a layer norm with weights of the input's dtype runs F.layer_norm, which is
    what transformers' nn.LayerNorm runs (the same bits); half-precision input with fp32 weights
    (a mix F.layer_norm refuses) runs the hand-written code. RMSNorm runs the hand-written code
    outside float32: transformers rounds the normalised input before the weight, as it does.
    gelu_new stays the formula (transformers' NewGELUActivation, bit for bit)."""
    from transformers.activations import ACT2FN

    ln, hf_ln, x = _norm_pair("layer_norm", dtype)
    with torch.no_grad():
        assert torch.equal(ln(x.to(dtype)), hf_ln(x.to(dtype)))
    ln32 = _norm_pair("layer_norm", torch.float32)[0]
    with torch.no_grad(), mock.patch.object(F, "layer_norm", wraps=F.layer_norm) as spy:
        mixed = ln32(x.to(dtype))
    assert spy.call_count == 0 and mixed.dtype == dtype
    with torch.no_grad(), fast.fused_ops(ln32, False):
        assert torch.equal(mixed, ln32(x.to(dtype)))
    rms, hf_rms, x = _norm_pair("rms_norm", dtype)
    for weights in (dtype, torch.float32):  # transformers' bf16 model, and bf16 input with fp32 weights
        rms.to(weights), hf_rms.to(weights)
        with torch.no_grad():
            assert torch.equal(rms(x.to(dtype)), hf_rms(x.to(dtype))), weights
    x = torch.linspace(-8, 8, 4001).to(dtype)
    with mock.patch.object(F, "gelu", wraps=F.gelu) as spy:
        assert torch.equal(fused.fused_activation(gelu_new)(x), ACT2FN["gelu_new"](x))
    assert spy.call_count == 0
    assert torch.equal(fused.fused_activation(gelu)(x), ACT2FN["gelu"](x)), \
        "the exact GELU is F.gelu in half precision too, as transformers' GELUActivation"


def test_float64_rms_norm_is_hand_written():
    """transformers' LlamaRMSNorm computes in float32 whatever the input: F.rms_norm in float64
    would be more precise than it, so float64 runs the hand-written code."""
    rms, hf_rms, x = _norm_pair("rms_norm", torch.float64)
    with torch.no_grad(), mock.patch.object(F, "rms_norm", wraps=getattr(F, "rms_norm", None)) as spy:
        assert torch.equal(rms(x.double()), hf_rms(x.double()))
    assert spy.call_count == 0


@pytest.mark.parametrize("act, kernel", [(gelu_new, "tanh"), (gelu, "none")])
def test_fused_gelus_equal_the_formulas(act, kernel):
    x = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        with mock.patch.object(F, "gelu", wraps=F.gelu) as spy:
            out = fused.fused_activation(act)(x.to(dtype))
        assert spy.call_count == 1 and spy.call_args.kwargs.get("approximate", "none") == kernel
        assert_close(out, act(x.to(dtype)), name=f"fused {act.__name__} ({dtype})", atol=atol)
    mine = lambda t: t * 0  # noqa: E731  (a learner's own GELU has no fused stand-in)
    assert fused.fused_activation(mine) is mine and fused.fused_activation(torch.tanh) is torch.tanh


# --- the switch ------------------------------------------------------------------------------


def _tiny_gpt2():
    config = gpt2.GPT2Config(n_embd=8, n_layer=2, n_head=2, vocab_size=11, n_positions=8)
    return gpt2.GPT2LMHeadModel(config).eval()


def _settings(model):
    return [m.__dict__.get("fused_ops", "default") for m in model.modules() if isinstance(m, FusedOps)]


def test_use_fused_ops_and_fused_ops_switch_every_module_and_restore():
    model = _tiny_gpt2()
    n = 2 * 2 + 1 + 2  # two layer norms per block, ln_f, an MLP per block
    assert _settings(model) == ["default"] * n and all(m.fused_ops for m in model.modules() if isinstance(m, FusedOps))
    with fast.fused_ops(model, False) as inside:
        assert inside is model and _settings(model) == [False] * n
        with fast.fused_ops(model):
            assert _settings(model) == [True] * n
        assert _settings(model) == [False] * n, "the inner block restores the outer one's setting"
    assert _settings(model) == ["default"] * n, "leaving the block restores the default"
    fast.use_fused_ops(model, False)
    with pytest.raises(RuntimeError, match="inside"):
        with fast.fused_ops(model):
            raise RuntimeError("inside")
    assert _settings(model) == [False] * n, "restored on an error too"
    assert fast.use_fused_ops(model, True) is model and _settings(model) == [True] * n


def test_hand_written_turns_the_default_off_and_an_own_setting_wins():
    model = _tiny_gpt2()
    ids = torch.tensor([[1, 2, 3]])
    with hand_written():
        with mock.patch.object(F, "layer_norm", wraps=F.layer_norm) as spy:
            model(ids)
        assert spy.call_count == 0
        with hand_written():  # nests
            pass
        assert FusedOps.fused_ops is False
        fast.use_fused_ops(model)  # the model's own setting holds inside the block
        with mock.patch.object(F, "layer_norm", wraps=F.layer_norm) as spy:
            model(ids)
        assert spy.call_count == 5
    assert FusedOps.fused_ops is True
    with pytest.raises(ValueError, match="boom"), hand_written():
        raise ValueError("boom")
    assert FusedOps.fused_ops is True, "put back on an error"


def test_bad_arguments_are_refused_naming_them():
    model = _tiny_gpt2()
    for call in (fast.use_fused_ops, lambda m, e: fast.fused_ops(m, e).__enter__()):
        with pytest.raises(TypeError, match=r"enabled must be True or False, got int 1"):
            call(model, 1)
        with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got str"):
            call("gpt2", True)
        with pytest.raises(ValueError, match=r"model \(Sequential\) has no module with a fused path"):
            call(torch.nn.Sequential(torch.nn.Linear(2, 2)), True)
    assert _settings(model) == ["default"] * 7


def test_the_setting_survives_deepcopy_and_pickle_and_compiles_without_graph_breaks():
    """A plain attribute: copied and pickled with the module. torch.compile guards on it: one
    graph per setting (fullgraph, no break), each equal to the eager result."""
    model = _tiny_gpt2()
    fast.use_fused_ops(model, False)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert _settings(clone) == [False] * 7
    ids = torch.tensor([[1, 2, 3, 4]])
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        for enabled in (False, True, False):
            fast.use_fused_ops(model, enabled)
            assert torch.equal(compiled(ids).logits, model(ids).logits), enabled
