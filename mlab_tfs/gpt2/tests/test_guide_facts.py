"""Facts the GPT-2 guide states with numbers, and the data of its figures (mlab_tfs/gpt2/figures.py).

Masking padded rows: a -inf mask makes the padding positions NaN after the first block and the
whole sequence NaN after the second; in float16 a score of -16 or less plus finfo.min is -inf,
-15 is not; filling (masked_fill) or float32 scores never overflow.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config as HFGPT2Config

from mlab_tfs.gpt2 import figures, solution

pytestmark = pytest.mark.solution_only

FP16_MIN = torch.finfo(torch.float16).min


def _tiny(n_layer=2):
    torch.manual_seed(0)
    config = solution.GPT2Config(n_embd=16, n_head=2, n_layer=n_layer, n_positions=16, vocab_size=50,
                                 attn_implementation="eager")
    return solution.GPT2LMHeadModel(config).eval()


def _neg_inf_pattern(q, k, mask, scale, scores_hook=None):
    """attention_pattern as it would be with -inf for the masked scores and no zeroed rows."""
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def _nan_positions_by_block(model, ids, mask):
    _, cache = model.run_with_cache(ids, attention_mask=mask, names_filter=lambda n: n.endswith("hook_resid_post"))
    out = []
    for i in range(model.config.n_layer):
        x = cache[f"blocks.{i}.hook_resid_post"][0]  # (T, C)
        out.append(torch.isnan(x).any(-1).nonzero().flatten().tolist())
    return out


def test_neg_inf_mask_spreads_nan_from_padding_to_the_whole_row(monkeypatch):
    model = _tiny()
    ids = torch.tensor([[0, 0, 7, 8, 9, 10]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])  # left padding: positions 0 and 1 see no key
    assert _nan_positions_by_block(model, ids, mask) == [[], []]  # the solution: finite everywhere
    monkeypatch.setattr(solution, "attention_pattern", _neg_inf_pattern)
    assert _nan_positions_by_block(model, ids, mask) == [[0, 1], [0, 1, 2, 3, 4, 5]]
    out = model(ids, attention_mask=mask, labels=torch.where(mask.bool(), ids, -100))
    assert torch.isnan(out.logits).all() and torch.isnan(out.loss)


def test_without_padding_neg_inf_is_harmless(monkeypatch):
    model = _tiny()
    ids = torch.tensor([[3, 4, 7, 8, 9, 10]])
    mask = torch.ones_like(ids)
    expected = model(ids, attention_mask=mask).logits
    monkeypatch.setattr(solution, "attention_pattern", _neg_inf_pattern)
    torch.testing.assert_close(model(ids, attention_mask=mask).logits, expected, rtol=0, atol=1e-6)


def test_fp16_finfo_min_added_overflows_from_minus_16():
    scores = torch.tensor([-15.0, -15.5, -16.0, -100.0], dtype=torch.float16)
    added = scores + FP16_MIN
    assert added.tolist() == [-65504.0, -65504.0, -math.inf, -math.inf]
    # a row of such scores: NaN when added, uniform when filled or computed in float32
    row = torch.tensor([-16.0, -20.0, -30.0], dtype=torch.float16)
    assert torch.isnan(torch.softmax(row + FP16_MIN, dim=-1)).all()
    filled = row.masked_fill(torch.ones(3, dtype=torch.bool), FP16_MIN)
    assert filled.tolist() == [FP16_MIN] * 3
    assert torch.softmax(filled, -1).tolist() == [pytest.approx(1 / 3, abs=1e-3)] * 3
    fp32 = row.float() + torch.finfo(torch.float32).min
    assert torch.isfinite(fp32).all() and torch.isfinite(torch.softmax(fp32, -1)).all()


def test_fp16_attention_pattern_of_very_negative_scores_is_finite():
    q = torch.full((1, 1, 2, 4), 4.0, dtype=torch.float16)
    k = torch.full((1, 1, 2, 4), -4.0, dtype=torch.float16)  # every score -32 at scale 0.5
    mask = torch.tensor([[False, False], [True, False]])[None, None]
    p = solution.attention_pattern(q, k, mask, 0.5)
    assert p.tolist() == [[[[0.0, 0.0], [1.0, 0.0]]]]


# --- figures' data ---------------------------------------------------------------------

def test_block_steps_read_pre_ln_and_post_ln_from_the_solutions():
    assert figures.traced_blocks() == {
        "GPT-2 block (pre-LN)": ["norm", "attention", "add", "norm", "mlp", "add"],
        "BERT layer (post-LN)": ["attention", "add", "stream norm", "mlp", "add", "stream norm"],
    }


def test_model_masks_are_causal_and_padding():
    model = _tiny(n_layer=1)
    attention_mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    keep = figures.model_masks(model, torch.zeros(2, 4, dtype=torch.long), attention_mask)
    assert keep.shape == (2, 1, 4, 4)
    assert torch.equal(keep[0, 0], solution.causal_mask(4, 4))
    assert keep[1, 0].int().tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]


def test_attention_sink_share_and_previous_token_share_by_hand():
    T = 4
    uniform = solution.causal_mask(T, T).float()
    uniform = (uniform / uniform.sum(-1, keepdim=True))[None, None]  # (1, 1, T, T)
    assert figures.attention_sink_share(uniform).item() == pytest.approx(figures.uniform_share(T), abs=1e-7)
    assert figures.uniform_share(T) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    prev = torch.zeros(1, 1, T, T)
    prev[0, 0, 0, 0] = 1
    prev[0, 0, torch.arange(1, T), torch.arange(T - 1)] = 1  # every query on the token before it
    assert figures.previous_token_share(prev).item() == 1.0
    assert figures.attention_sink_share(prev).item() == pytest.approx(1 / 3)  # only query 1 looks at key 0
    with pytest.raises(ValueError, match="patterns must be"):
        figures.attention_sink_share(torch.zeros(2, 3, 4))


def test_course_model_has_no_attention_sink_on_the_passage():
    """What the guide says about attention sinks in the course model, measured."""
    tokens, patterns = figures.course_attention(figures.passage())
    assert len(tokens) == 200 and patterns.shape == (6, 8, 200, 200)
    share = figures.attention_sink_share(patterns)
    assert share.max().item() == pytest.approx(0.069, abs=5e-4)  # no head puts even 7% on token 0
    assert share.argmax().item() == 2 * 8 + 3
    assert share.mean().item() == pytest.approx(0.027, abs=5e-4)  # close to uniform:
    assert figures.uniform_share(200) == pytest.approx(0.0245, abs=5e-5)
    prev = figures.previous_token_share(patterns)
    assert prev.argmax().item() == figures.PATTERN_LAYER * 8 + figures.PATTERN_HEAD
    assert prev.max().item() == pytest.approx(0.63, abs=0.005)
    top2 = prev.flatten().topk(2)
    assert top2.indices[1].item() == 4 * 8 + 6 and top2.values[1].item() == pytest.approx(0.40, abs=0.005)


def test_the_pattern_figures_head_on_its_line():
    """The guide's reading of the figure: 11 of the 17 queries after the first put most weight on
    the token just before; ` what` 0.89 on `,`; the pieces of `ROMEO:` look back to `RO` (0.37 to
    0.74); ` through` 0.46 on ` what`, 0.38 on ` light`."""
    tokens, patterns = figures.course_attention()
    p = patterns[figures.PATTERN_LAYER, figures.PATTERN_HEAD]  # (T, T)
    T = len(tokens)
    assert T == 18 and int((p[1:].argmax(-1) == torch.arange(T - 1)).sum()) == 11
    at = {t: i for i, t in enumerate(tokens)}
    assert round(p[at[" what"], at[","]].item(), 2) == 0.89
    assert [round(p[q, 0].item(), 2) for q in range(1, 5)] == [0.74, 0.42, 0.37, 0.41]
    assert p[1:5].argmax(-1).tolist() == [0, 0, 0, 0]
    assert (round(p[at[" through"], at[" what"]].item(), 2), round(p[at[" through"], at[" light"]].item(), 2)) == (0.46,
                                                                                                            0.38)


def test_tied_head_share_of_gpt2_small():
    """The guide: the tied embedding is about 31% of GPT-2 small's 124M parameters."""
    c = HFGPT2Config()
    C, V, L, P = c.n_embd, c.vocab_size, c.n_layer, c.n_positions
    block = 2 * C * 2 + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    total = V * C + P * C + L * block + 2 * C
    assert total == 124_439_808
    assert V * C == 38_597_376
    assert round(100 * V * C / total, 1) == 31.0


def test_key_bias_gets_no_gradient():
    """q . (k + b) = q . k + q . b: the same shift for every key of a query's row, which the
    softmax ignores (padding and causal masks included)."""
    model = _tiny()
    ids = torch.tensor([[0, 0, 7, 8, 9, 10], [3, 4, 5, 6, 7, 8]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    out = model(ids, attention_mask=mask, labels=torch.where(mask.bool(), ids, -100))
    out.loss.backward()
    C = model.config.n_embd
    for block in model.transformer.h:
        grad = block.attn.c_attn.bias.grad  # (3C,): [q | k | v]
        assert grad[C:2 * C].abs().max().item() < 1e-8, "the key bias moved the loss"
        assert grad[:C].abs().max().item() > 1e-6 and grad[2 * C:].abs().max().item() > 1e-6


def test_final_stream_is_the_embeddings_plus_every_branch_output():
    """The residual-stream frame: in a pre-LN model nothing but the branches writes to the stream."""
    model = _tiny(n_layer=3)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        _, cache = model.run_with_cache(ids)
    total = cache["hook_embed"] + cache["hook_pos_embed"]
    for i in range(3):
        total = total + cache[f"blocks.{i}.hook_attn_out"] + cache[f"blocks.{i}.hook_mlp_out"]
    torch.testing.assert_close(total, cache["blocks.2.hook_resid_post"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_gelu_new_is_torch_tanh_gelu_and_not_the_erf_one(dtype, atol):
    """The guide: F.gelu(approximate="tanh") is gelu_new; only F.gelu's default (erf) differs,
    by at most 4.7e-4, near |x| = 2.7."""
    import torch.nn.functional as F

    x = torch.linspace(-10, 10, 200_001, dtype=dtype)
    torch.testing.assert_close(solution.gelu_new(x), F.gelu(x, approximate="tanh"), rtol=0, atol=atol)
    if dtype == torch.float64:
        gap = (solution.gelu_new(x) - F.gelu(x)).abs()
        assert gap.max().item() == pytest.approx(4.73e-4, abs=5e-6)
        assert abs(x[gap.argmax()].item()) == pytest.approx(2.70, abs=0.01)


# --- the guide's snippets print what the guide shows -------------------------------------

def _snippets_with_output():
    """(line, code, shown) of every ```python block of the guide followed directly by a ```text
    block: the output the text claims for it."""
    from pathlib import Path

    from mlab_tfs.tests.test_docs import blocks

    found = blocks(Path(figures.__file__).with_name("GUIDE.md"))
    return [pytest.param(code, shown, id=f"GUIDE.md:{line}")
            for (lang, line, code), (next_lang, _, shown) in zip(found, found[1:])
            if lang == "python" and next_lang == "text" and not shown.lstrip().startswith("with ")]


def test_the_guide_has_snippets_with_output():
    assert len(_snippets_with_output()) >= 5  # dtypes, 1/sqrt(hs), softmax, KV cache, masking


@pytest.mark.parametrize("code, shown", _snippets_with_output())
def test_snippet_prints_what_the_guide_shows(code, shown, capsys):
    exec(compile(code, "snippet", "exec"), {"__name__": "__snippet__"})
    assert capsys.readouterr().out.strip() == shown.strip()


# --- the exercise table's line counts ---------------------------------------------------

def _body_lines(obj) -> int:
    """Lines of a function's (or a class's methods') bodies in the solution, without the
    docstrings, comments and blank lines: the guide's rule for its Lines column."""
    import ast
    import inspect
    import textwrap

    src = textwrap.dedent(inspect.getsource(obj))
    lines = src.splitlines()
    node = ast.parse(src).body[0]
    fns = [f for f in node.body if isinstance(f, ast.FunctionDef)] if isinstance(node, ast.ClassDef) else [node]
    total = 0
    for fn in fns:
        body = fn.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        if body:
            total += sum(1 for ln in lines[body[0].lineno - 1:fn.end_lineno]
                         if ln.strip() and not ln.strip().startswith("#"))
    return total


# The lines of the solution's fused-kernel branch (mlab_tfs.fused), which the guide's count leaves out.
FUSED_LINES = {"Layer norm": 2, "MLP": 1}


@pytest.mark.parametrize("exercise, pieces", [
    ("Layer norm", ["LayerNorm"]), ("Embedding", ["Embedding"]), ("Attention pattern", ["attention_pattern"]),
    ("Causal mask", ["causal_mask"]), ("GELU", ["gelu_new"]), ("MLP", ["GPT2MLP"]), ("Block", ["GPT2Block"]),
    ("Loading weights", ["from_hf_state_dict", "to_hf_state_dict"]),
])
def test_exercise_table_line_counts(exercise, pieces):
    """The Lines column of the guide's exercise table, for the exercises whose count is the
    solution's bodies as they stand (no optional path or later exercise's lines left out), less
    the lines of the fused-kernel branch where there is one."""
    import re
    from pathlib import Path

    guide = Path(figures.__file__).with_name("GUIDE.md").read_text(encoding="utf-8")
    row = re.search(rf"^\| \d+ \| \[{exercise}\]\(#[^)]*\) \| [^|]* \| ~?(\d+) \|", guide, re.M)
    assert row, f"no row for {exercise} in the exercise table"
    assert int(row.group(1)) == sum(_body_lines(getattr(solution, p)) for p in pieces) - FUSED_LINES.get(exercise, 0)
