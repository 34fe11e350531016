"""The data of the training guide's figure (mlab_tfs/training/figures.py) and the variants'
table it comes from (induction_runs.json), held to the shipped model's recipe."""

from __future__ import annotations

import json

import pytest

from mlab_tfs.assets import course_model_path
from mlab_tfs.training.figures import SHOWN, induction_runs, probe_curves, variant_label


def test_probe_curves_are_the_logged_second_copy_losses():
    curves = probe_curves()
    assert tuple(curves) == SHOWN
    assert {n: len(c) for n, c in curves.items()} == {"v05": 30, "r5": 15, "t1d1": 15, "t3": 15, "r05t1d1": 15,
                                                      "r2t2d1": 15}
    assert curves["v05"][0] == (100, 8.4495) and curves["v05"][-1] == (3000, 8.3034)  # every 100 steps
    shipped = dict(curves["r05t1d1"])  # every 200 steps: flat near ln 4096 = 8.32, then the drop
    assert (shipped[1600], shipped[1800], shipped[2000], shipped[3000]) == (8.3193, 7.4725, 2.9415, 0.3514)
    assert curves["r2t2d1"][-1] == (3000, 0.0081)


def test_a_variant_without_a_curve_or_of_another_name_is_refused():
    with pytest.raises(ValueError, match=r"variant 'v10' has no curve"):
        probe_curves(("v10",))
    with pytest.raises(ValueError, match=r"no variant 'x' in induction_runs.json"):
        probe_curves(("x",))


def test_labels_name_the_mix():
    assert variant_label("r05t1d1") == "random 5% + text 10%, dropout 0.1 (best head 0.96)"
    assert variant_label("t3") == "text 30%, dropout 0.2 (best head 0.55)"


def test_table_agrees_with_its_curves_and_the_shipped_recipe():
    """Every kept curve ends at step 3,000 with the held-out loss of the table (within 0.0005:
    the log's bf16 evaluation on the GPU against the recipe's fp16 weights in fp32 on the CPU);
    the shipped model is the variant r05t1d1."""
    variants = induction_runs()["variants"]
    assert len(variants) == 16
    for v in variants:
        if v["curve"]:
            assert v["curve"][-1]["step"] == 3000
            assert v["curve"][-1]["eval_loss"] == pytest.approx(v["held_out"], abs=5e-4), v["name"]
    recipe = json.loads((course_model_path() / "recipe.json").read_text())
    shipped = next(v for v in variants if v["name"] == "r05t1d1")
    assert (recipe["config"]["repeat_fraction"], recipe["config"]["repeat_text_fraction"],
            recipe["config"]["dropout"]) == (shipped["repeat_fraction"], shipped["repeat_text_fraction"], shipped["dropout"])
    assert round(recipe["final_eval_loss"], 4) == shipped["held_out"] == 3.5534
