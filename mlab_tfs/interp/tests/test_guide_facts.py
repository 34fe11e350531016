"""What the interpretability guide says about the course model, measured, and the data of its
figures (mlab_tfs/interp/figures.py). Every number the guide gives about the course model is
held here, at the precision the guide writes it."""

from __future__ import annotations

import math

import pytest
import torch

from mlab_tfs.interp import direct_logit_attribution, figures, logit_diff_metric, logit_lens, ablate_heads

pytestmark = pytest.mark.solution_only


@pytest.fixture(scope="module")
def model():
    return figures.course_model()[0]


def test_induction_heads_and_their_scores():
    scores = figures.course_induction_scores()
    assert scores.shape == (6, 8)
    strong = {(int(i), int(j)): round(float(scores[i, j]), 3) for i, j in (scores >= figures.THRESHOLD).nonzero()}
    assert strong == {(5, 2): 0.971, (5, 5): 0.403, (5, 6): 0.847, (5, 7): 0.721}
    assert divmod(int(scores.argmax()), 8) == figures.INDUCTION_HEAD
    assert float(scores[:5].max()) < 0.05  # no head before the last layer
    assert figures.uniform_induction_score() == pytest.approx(0.0172, abs=5e-5)
    assert figures.uniform_induction_score(5) == pytest.approx(sum(1 / (t + 1) for t in range(5, 10)) / 5)


def test_previous_token_heads(model):
    prev = figures.previous_token_scores(model, figures.induction_tokens())
    assert prev.shape == (6, 8)
    assert divmod(int(prev.argmax()), 8) == (4, 7)
    assert float(prev[4, 7]) == pytest.approx(0.823, abs=5e-4)
    assert float(prev[4, 6]) == pytest.approx(0.506, abs=5e-4)
    assert sorted((int(i), int(j)) for i, j in (prev >= 0.2).nonzero()) == [
        (2, 2), (2, 5), (3, 2), (3, 5), (3, 6), (3, 7), (4, 2), (4, 5), (4, 6), (4, 7)]
    assert float(prev[:2].max()) < 0.07 and float(prev[5].max()) < 0.09
    # by hand: a pattern on the previous token scores 1
    tokens = torch.tensor([[1, 2, 3, 4]])
    previous = torch.eye(4).roll(-1, 1).tril()  # query t on key t - 1 (query 0 on nothing)
    assert float(figures.previous_token_scores(_Fixed(previous), tokens)) == 1.0
    previous[3] = torch.tensor([1.0, 0, 0, 0])  # one of the three queries elsewhere
    assert float(figures.previous_token_scores(_Fixed(previous), tokens)) == pytest.approx(2 / 3)


class _Fixed(torch.nn.Module):
    """A one-layer, one-head stand-in whose run_with_cache returns a fixed pattern."""

    def __init__(self, pattern):
        super().__init__()
        self.pattern = pattern
        self.hook_dict = {"blocks.0.attn.hook_pattern": None}

    def run_with_cache(self, tokens, names_filter=None):
        return None, {"blocks.0.attn.hook_pattern": self.pattern[None, None]}


def test_repeat_loss_with_and_without_the_induction_heads():
    first, second = figures.repeat_losses()
    assert (round(first, 2), round(second, 2)) == (12.59, 0.32)
    assert [round(v, 2) for v in figures.repeat_losses({5: [2]})] == [11.27, 4.60]
    assert [round(v, 2) for v in figures.repeat_losses({4: [7]})] == [12.59, 0.40]
    assert math.log(4096) == pytest.approx(8.32, abs=5e-3)  # the first half costs more than a uniform guess
    first, second = figures.repeat_losses({5: [2, 5, 6, 7]})
    assert (round(first, 2), round(second, 2)) == (11.86, 10.99)


def test_ablate_heads_gives_what_the_guide_measures(model):
    """The figures' zeroing hooks and the solution's ablate_heads are the same ablation."""
    tokens = figures.induction_tokens()
    logits = ablate_heads(model, tokens, [(5, 2), (5, 5), (5, 6), (5, 7)]).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    assert figures.halves(loss) == pytest.approx(figures.repeat_losses({5: [2, 5, 6, 7]}), abs=1e-5)


def test_the_previous_token_heads_feed_the_induction_heads():
    alone = figures.ablated_induction_scores({4: [7]})
    assert round(float(alone[5, 2]), 3) == 0.942
    prev = {2: [2, 5], 3: [2, 5, 6, 7], 4: [2, 5, 6, 7]}  # previous-token score >= 0.2
    together = figures.ablated_induction_scores(prev)
    assert round(float(together[5, 2]), 2) == 0.40
    assert [round(v, 2) for v in figures.repeat_losses(prev)] == [12.36, 5.36]
    scores = figures.course_induction_scores()
    assert float(scores[2:5].max()) < 0.05  # none of the ten is an induction head
    before = figures.ablated_induction_scores({0: [3]})  # a head that is not one: nothing changes
    assert float((before[5] - figures.course_induction_scores()[5]).abs().max()) < 0.005


def test_name_example_differs_in_one_token():
    ex = figures.name_example()
    assert ex["clean"].shape == ex["corrupted"].shape == (1, 27)
    assert (ex["clean"] != ex["corrupted"]).nonzero().tolist() == [[0, 5]]
    assert ex["tokens"][5] == figures.NAME and ex["tokens"][-1] == " Good"


def test_direct_logit_attribution_of_the_name(model):
    ex = figures.name_example()
    dla = direct_logit_attribution(model, ex["clean"], ex["correct"], ex["wrong"])
    assert round(float(dla["total"]), 2) == 5.90
    parts = dla["heads"].sum() + dla["mlps"].sum() + dla["embed"] + dla["biases"]
    assert float((parts - dla["total"]).abs()) < 1e-4
    assert round(float(dla["heads"][5, 2]), 2) == 3.01 and round(float(dla["heads"][5, 7]), 2) == 0.47
    assert round(float(dla["mlps"][0]), 2) == 1.59 and round(float(dla["mlps"][5]), 2) == 0.64
    others = dla["heads"].flatten().clone()
    others[5 * 8 + 2] = others[5 * 8 + 7] = 0
    assert float(others.abs().max()) < 0.25
    assert abs(float(dla["heads"][4, 7])) < 0.1  # the strongest previous-token head: no direct share
    corrupted = direct_logit_attribution(model, ex["corrupted"], ex["correct"], ex["wrong"])
    assert round(float(corrupted["total"]), 2) == -4.09 and round(float(corrupted["heads"][5, 2]), 2) == -4.43
    # the total effect of the head, for comparison: its ablation
    metric = logit_diff_metric(ex["correct"], ex["wrong"])
    ablated = float(metric(ablate_heads(model, ex["clean"], [(5, 2)]).logits))
    assert round(ablated, 2) == 2.45
    assert round(float(dla["total"]) - ablated, 2) == 3.46
    assert round(float(dla["total"]) - ablated - float(dla["heads"][5, 2]), 2) == 0.45
    with torch.no_grad():
        probability = model(ex["clean"]).logits[0, -1].softmax(-1)[ex["correct"]]
    assert round(float(probability), 2) == 0.36
    with torch.no_grad():
        _, cache = model.run_with_cache(ex["clean"], names_filter="blocks.5.attn.hook_pattern")
    row = cache["blocks.5.attn.hook_pattern"][0, 2, -1]
    assert int(row.argmax()) == 5 and round(float(row[5]), 2) == 0.87


def test_patching_the_name():
    result = figures.name_patching()
    assert round(float(result["clean"]), 2) == 5.90 and round(float(result["corrupted"]), 2) == -4.09
    resid = result["resid"]
    assert resid.shape == (6, 27)
    assert float(resid[0, 5]) == pytest.approx(1.0, abs=1e-5)  # the whole input made clean
    assert [round(float(v), 2) for v in resid[1:, 5]] == [0.88, 0.88, 0.87, 0.87, 0.86]
    assert [round(float(v), 2) for v in resid[:, -1]] == [0.0, 0.07, 0.07, 0.08, 0.09, 0.11]
    elsewhere = torch.cat([resid[:, :5], resid[:, 6:-1]], 1)
    assert float(elsewhere.abs().max()) < 0.01
    assert float(resid[:, :5].abs().max()) == 0.0  # before the changed token the runs are equal


def test_patching_the_heads_for_the_name():
    heads = figures.name_head_patching()
    assert heads.shape == (6, 8)
    assert round(float(heads[5, 2]), 2) == 0.78
    assert round(float(heads.sum()), 2) == 1.03
    assert float(heads[:5].max()) < 0.07


def test_logit_lens_per_layer(model):
    losses = figures.lens_losses()
    assert [round(float(v), 2) for v in losses["text"]] == [23.98, 5.33, 5.23, 4.85, 4.31, 3.66, 3.30]
    assert [round(float(v), 2) for v in losses["repeat"][-2:]] == [12.52, 0.32]
    assert float(losses["repeat"][:-1].min()) > 12.5 and float(losses["first"][1:].min()) > 12.3
    assert float(losses["repeat"][-1]) == pytest.approx(figures.repeat_losses()[1], abs=1e-5)  # the model's own
    ex = figures.name_example()
    for ids, shown in ((ex["clean"], [2.68, 3.45, 2.76, 2.89, 2.65, 2.00, 5.90]),
                       (ex["corrupted"], [2.68, 2.05, 1.44, 1.75, 1.44, 0.62, -4.09])):
        lens = logit_lens(model, ids)[:, 0, -1]  # (7, V)
        assert [round(float(v), 2) for v in lens[:, ex["correct"]] - lens[:, ex["wrong"]]] == shown
    lens = logit_lens(model, ex["clean"])[:, 0, -1]
    ranks = [int((row > row[ex["correct"]]).sum()) for row in lens]
    assert ranks == [680, 137, 197, 132, 155, 189, 0]
    from mlab_tfs.gpt2.figures import passage

    _, tok = figures.course_model()
    text = torch.tensor([tok.encode(passage(200))])
    rows = logit_lens(model, text)[:, 0]  # (7, 200, V)
    assert torch.equal(rows[0].argmax(-1), text[0])  # the tied embeddings predict the input token
    hits = [round(100 * float((row[:-1].argmax(-1) == text[0, 1:]).float().mean())) for row in rows]
    assert hits == [0, 13, 16, 17, 18, 24, 32]


def test_the_attention_figure_is_plot_attentions_drawing(model):
    fig = figures.draw_induction_attention()
    try:
        images = [im for ax in fig.axes for im in ax.get_images()]
        assert len(images) == 1
        tokens = figures.induction_tokens(figures.PICTURE_L, batch=1)
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter="blocks.5.attn.hook_pattern")
        drawn = torch.as_tensor(images[0].get_array().data)
        assert torch.equal(drawn, cache["blocks.5.attn.hook_pattern"][0, 2])
        score = drawn[torch.arange(12, 24), torch.arange(1, 13)].mean()
        assert round(float(score), 2) == 0.98
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    from mlab_tfs.interp import given, solution

    assert solution.save_figure is given.save_figure  # put back after drawing
