"""Every catalogued mistake, planted into a copy of its part's solution, is named by
``mlab-tfs check`` in its "likely cause" line: a diagnosis cannot silently stop working."""

from __future__ import annotations

import sys

import pytest

from mlab_tfs.testing.exercises import PARTS, exercises
from mlab_tfs.testing.mistakes import (
    Catalogue, Mistake, as_student, catalogue, check_report, likely_causes, planted_source, plants, time_mark,
)

CASES = [(part, m.name) for part in PARTS for m in catalogue(part)]


@pytest.mark.parametrize("part,name", CASES, ids=[f"{p}-{n}" for p, n in CASES])
def test_check_names_the_planted_mistake(part, name):
    mistake = catalogue(part)[name]
    edits = plants(part).get(name)
    assert edits, f"{part} mistake {name!r} has no plant in mlab_tfs/{part}/tests/plants.py"
    source = planted_source(part, edits)
    report = check_report(part, mistake.exercise, source)
    title = next(e.title for e in exercises(part) if e.name == mistake.exercise)
    assert f"Next: {title}" in report and "✗ failing" in report, (
        f"with {name!r} planted, exercise {mistake.exercise!r} should fail; the check said:\n{report}")
    causes = likely_causes(report)
    assert causes and mistake.cause in causes[0], (
        f"with {name!r} planted, check's likely cause should name {mistake.cause!r}; it said:\n{report}")


@pytest.mark.parametrize("part", PARTS)
def test_every_mistake_has_one_plant(part):
    names = {m.name for m in catalogue(part)}
    planted = set(plants(part))
    assert planted == names, (f"{part}: plants without a mistake {sorted(planted - names)}, "
                              f"mistakes without a plant {sorted(names - planted)}")
    for name, edits in plants(part).items():
        assert all(old != new for old, new in edits), f"{part} plant {name!r} has an edit that changes nothing"


@pytest.mark.parametrize("part", [p for p in PARTS if p != "training"])
def test_three_mistakes_per_exercise(part):
    cat = catalogue(part)
    thin = {e.name: len(cat.for_exercise(e.name)) for e in exercises(part)
            if len(cat.for_exercise(e.name)) < 3 and e.name not in cat.fewer}
    assert not thin, (f"{part}: exercises with fewer than three catalogued mistakes {thin}; catalogue more, "
                      "or say in Catalogue(fewer=...) why there are not three")


def test_a_catalogue_refuses_what_it_cannot_hold():
    ok = Mistake("layer_norm", "no_eps", "no eps at all", "...")
    with pytest.raises(ValueError, match="exercise must be one of"):
        Catalogue("gpt2", [Mistake("layer_nrom", "x", "c", "w")])
    with pytest.raises(ValueError, match="twice"):
        Catalogue("gpt2", [ok, ok])
    with pytest.raises(ValueError, match="snake_case"):
        Catalogue("gpt2", [Mistake("layer_norm", "No Eps", "c", "w")])
    with pytest.raises(KeyError, match="no gpt2 mistake is named 'eps'"):
        Catalogue("gpt2", [ok])["eps"]
    assert str(ok) == "no eps at all" and f"{ok}" == ok.cause


def test_a_plant_must_match_exactly_once():
    with pytest.raises(ValueError, match="exactly once.*found 0 times"):
        planted_source("gpt2", [("this text is not in the solution", "x")])
    with pytest.raises(ValueError, match=r"found \d{2,} times"):
        planted_source("gpt2", [("self", "this")])


def test_as_student_puts_the_real_module_back():
    import mlab_tfs.gpt2 as package

    before = sys.modules.get("mlab_tfs.gpt2.student")
    with as_student("gpt2", "VALUE = 41 + 1\n") as module:
        assert sys.modules["mlab_tfs.gpt2.student"] is module and module.VALUE == 42
        assert package.student is module
    assert sys.modules.get("mlab_tfs.gpt2.student") is before


def test_the_planted_check_report_reads_the_diagnosis():
    """The machinery on a mistake written here: a layer norm with eps outside the sqrt."""
    source = planted_source("gpt2", [])  # the solution as it is: the exercise passes
    assert "This exercise passes: Layer norm." in check_report("gpt2", "layer_norm", source)
    report = check_report("gpt2", "layer_norm", source.replace("class LayerNorm", "class _Unused", 1) + '''

class LayerNorm(nn.Module):
    def __init__(self, normalized_shape, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        std = x.var(-1, keepdim=True, unbiased=False).sqrt()
        return (x - mean) / (std + self.eps) * self.weight + self.bias
''')
    assert "✗ failing" in report
    assert "eps outside the sqrt" in likely_causes(report)[0], report


@pytest.mark.parametrize("minutes,text", [(5, "~5 min"), (59, "~59 min"), (60, "~1 h"), (62, "~1 h"),
                                          (63, "~1 h 5 min"), (150, "~2 h 30 min"), (595, "~9 h 55 min")])
def test_time_mark(minutes, text):
    assert time_mark(minutes) == text
