"""Comparisons that fail with a diagnosis.

When a learner's tensor differs from the reference, the failure says which tensor, the
expected and actual shapes, the worst absolute and relative error and where it is, how
many NaNs and infs came out, and, when it can tell, what the usual cause is: the output
is checked against a list of known mistakes ("unbiased variance", "eps outside the sqrt"...)
and against simple transformations of the answer (transposed, scaled, shifted).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

Tensor = torch.Tensor


class Mismatch(AssertionError):
    """A tensor that is not what the reference says it should be."""


def _fmt_shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def _close(a: Tensor, b: Tensor, atol: float, rtol: float) -> bool:
    # equal_nan: a mistake that gives NaN (masking with -inf) is recognised by where its NaNs are.
    return a.shape == b.shape and bool(torch.isclose(a, b, atol=atol, rtol=rtol, equal_nan=True).all())


def _guess(actual: Tensor, expected: Tensor, atol: float, rtol: float) -> str | None:
    """Recognise a few transformations of the right answer."""
    a, e = actual.double(), expected.double()
    tol = dict(atol=max(atol, 1e-6) * 10, rtol=max(rtol, 1e-6) * 10)
    if bool((a == 0).all()):
        return "your output is all zeros: is something multiplied by zero, or a result never written?"
    if a.dim() >= 2 and a.shape == e.transpose(-1, -2).shape and _close(a, e.transpose(-1, -2), **tol):
        return "your output is the answer transposed (last two dims swapped)"
    if a.shape == e.shape:
        if _close(a, -e, **tol):
            return "your output is the answer with the sign flipped"
        denom = (e * e).sum()
        if denom > 0 and e.numel() > 1:  # one number is always some multiple of another: no diagnosis
            c = float((a * e).sum() / denom)
            if abs(c - 1) > 1e-3 and abs(c) > 1e-6 and _close(a, c * e, **tol):
                return f"your output is the answer times {c:.6g}: check a scale factor (sqrt(head size)? a 0.5?)"
        diff = a - e
        if diff.numel() > 1 and float(diff.std()) < 1e-3 * (float(diff.abs().mean()) + 1e-12):
            return f"your output is the answer plus a constant {float(diff.mean()):.6g}: a missing or extra bias?"
        if a.dim() >= 1 and a.shape[-1] > 1 and _close(a.flip(-1), e, **tol):
            return "your output is the answer reversed along the last dim"
    return None


def _named_mistake(a: Tensor, mistakes: Mapping[object, Tensor | Callable[[], Tensor]] | None, atol: float,
                   rtol: float) -> str | None:
    """ "your output matches what <mistake> gives" for the first mistake whose output a (float64,
    on the CPU) equals within ten times the tolerance, else None."""
    for description, candidate in (mistakes or {}).items():
        cand = candidate() if callable(candidate) else candidate
        if _close(a, cand.detach().to("cpu", torch.float64), max(atol, 1e-6) * 10, rtol):
            return f"your output matches what {description} gives"
    return None


def assert_close(
    actual: object,
    expected: Tensor,
    *,
    name: str,
    atol: float = 1e-5,
    rtol: float = 0.0,
    mistakes: Mapping[str, Tensor | Callable[[], Tensor]] | None = None,
    hint: str | None = None,
) -> None:
    """Fail with a diagnosis unless |actual - expected| <= atol + rtol * |expected| everywhere.

    mistakes: {a common mistake (a catalogue's Mistake, or its description): what the output
    would be with it}. If the actual output matches one of them, the failure names that mistake
    ("likely cause: your output matches what <mistake> gives").
    hint: printed when no known mistake matches.
    """
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis, not this helper
    if not isinstance(actual, torch.Tensor):
        raise Mismatch(f"{name}: expected a tensor of shape {_fmt_shape(expected)}, got {type(actual).__name__}")
    lines = [f"{name} does not match the reference."]
    if actual.shape != expected.shape:
        lines.append(f"  shape: expected {_fmt_shape(expected)}, got {_fmt_shape(actual)}")
        if actual.numel() == expected.numel():
            lines.append("  (same number of elements: a reshape/rearrange that orders dims differently?)")
        named = _named_mistake(actual.detach().to("cpu", torch.float64), mistakes, atol, rtol)
        if named:  # a mistake may change the shape too
            lines.append(f"  likely cause: {named}")
        if hint:
            lines.append(f"  hint: {hint}")
        raise Mismatch("\n".join(lines))
    if actual.dtype != expected.dtype:
        lines.append(f"  note: dtype {actual.dtype}, reference {expected.dtype}")
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    nan_a, inf_a = int(torch.isnan(a).sum()), int(torch.isinf(a).sum())
    nan_e, inf_e = int(torch.isnan(e).sum()), int(torch.isinf(e).sum())
    ok = torch.isclose(a, e, atol=atol, rtol=rtol, equal_nan=True)
    if bool(ok.all()):
        return
    err = (a - e).abs().nan_to_num(nan=float("inf"))
    worst = err.argmax()
    idx = tuple(int(i) for i in torch.unravel_index(worst, a.shape)) if a.dim() else ()
    rel = err / e.abs().clamp_min(1e-12)
    lines += [
        f"  shape {_fmt_shape(actual)}; {int((~ok).sum())} of {ok.numel()} elements outside "
        f"atol={atol:g}, rtol={rtol:g}",
        f"  max abs error {float(err.max()):.3g} at index {idx}: got {float(a[idx]) if a.dim() else float(a):.6g}, "
        f"expected {float(e[idx]) if e.dim() else float(e):.6g}",
        f"  max rel error {float(rel.max()):.3g}",
    ]
    if nan_a or inf_a or nan_e or inf_e:
        lines.append(f"  NaN/inf: yours {nan_a} NaN, {inf_a} inf; reference {nan_e} NaN, {inf_e} inf")
        if nan_a and not nan_e:
            lines.append("  hint: NaNs often come from masking with -inf (a fully masked row) or sqrt of a negative")
    diagnosis = _named_mistake(a, mistakes, atol, rtol) or _guess(a, e, atol, rtol)
    if diagnosis:
        lines.append(f"  likely cause: {diagnosis}")
    if hint:
        lines.append(f"  hint: {hint}")
    raise Mismatch("\n".join(lines))


def grad_rel_errors(actual: Mapping[str, Tensor | None], expected: Mapping[str, Tensor | None]) -> dict[str, float]:
    """Per parameter: max |actual - expected| / max |expected| (inf where a gradient is missing)."""
    out = {}
    for name, e in expected.items():
        a = actual.get(name)
        if a is None or e is None:
            out[name] = 0.0 if a is None and e is None else float("inf")
            continue
        if a.shape != e.shape:
            out[name] = float("inf")
            continue
        a64, e64 = a.detach().double(), e.detach().double()
        scale = float(e64.abs().max())
        diff = float((a64 - e64).abs().max())
        out[name] = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    return out


def assert_grads_close(
    actual: Mapping[str, Tensor | None],
    expected: Mapping[str, Tensor | None],
    *,
    rtol: float = 1e-5,
    what: str = "gradient",
    hint: str | None = None,
) -> None:
    """Every parameter's gradient within rtol of the reference, relative to its largest entry."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis, not this helper
    missing = sorted(set(expected) - set(actual))
    if missing:
        raise Mismatch(f"{what}: no gradient for {missing[:10]}")
    errors = grad_rel_errors(actual, expected)
    bad = {k: v for k, v in errors.items() if not v <= rtol}
    if bad:
        worst = sorted(bad.items(), key=lambda kv: -kv[1])[:8]
        lines = [f"{what}s differ from the reference for {len(bad)} of {len(errors)} parameters (rtol={rtol:g}):"]
        for k, v in worst:
            a, e = actual.get(k), expected.get(k)
            shape = "" if a is None or e is None else f" shapes {tuple(a.shape)} vs {tuple(e.shape)}"
            lines.append(f"  {k}: relative error {v:.3g}{shape}")
        if hint:
            lines.append(f"  hint: {hint}")
        raise Mismatch("\n".join(lines))


def grads(module: torch.nn.Module) -> dict[str, Tensor | None]:
    return {n: p.grad for n, p in module.named_parameters()}


def assert_same_checkpoint(saved_file, original_file) -> None:
    """Two safetensors files hold the same keys and bit-identical tensors."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis, not this helper
    from safetensors.torch import load_file

    saved, original = load_file(saved_file), load_file(original_file)
    assert sorted(saved) == sorted(original), f"saved keys differ: {sorted(set(saved) ^ set(original))[:6]}"
    for key in original:
        assert torch.equal(saved[key], original[key]), f"{key} changed on the way through load and save"
