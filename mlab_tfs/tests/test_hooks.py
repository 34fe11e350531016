"""The hook machinery on a small model built for the test (each model part tests its own
hook points against transformers)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlab_tfs.hooks import HookedRootModule, HookPoint, capture


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x):
        return self.hook_post(torch.relu(self.hook_pre(self.lin(x))))


class Toy(HookedRootModule, nn.Module):
    # module paths "body.h.0.hook_pre" -> hook names "blocks.0.mlp.hook_pre"
    hook_name_rules = ((r"^body\.h\.(\d+)\.", r"blocks.\1.mlp."), (r"^body\.", ""))

    def __init__(self):
        super().__init__()
        self.body = nn.Module()
        self.body.hook_embed = HookPoint()
        self.body.h = nn.ModuleList([Inner(), Inner()])

    def forward(self, x, scale=1.0):
        x = self.body.hook_embed(x * scale)
        for block in self.body.h:
            x = x + block(x)
        return x


NAMES = ["hook_embed", "blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post", "blocks.1.mlp.hook_pre",
         "blocks.1.mlp.hook_post"]


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return Toy()


def test_hook_dict_names_follow_the_rules(toy):
    assert list(toy.hook_dict) == NAMES
    assert toy.body.h[1].hook_post.name == "blocks.1.mlp.hook_post"


def test_run_with_cache_keeps_every_activation_detached(toy):
    x = torch.randn(2, 3)
    out, cache = toy.run_with_cache(x, scale=2.0)
    torch.testing.assert_close(out, toy(x, scale=2.0), rtol=0, atol=0)
    assert list(cache) == NAMES
    torch.testing.assert_close(cache["hook_embed"], 2.0 * x, rtol=0, atol=0)
    pre0 = toy.body.h[0].lin(2.0 * x)
    torch.testing.assert_close(cache["blocks.0.mlp.hook_pre"], pre0.detach(), rtol=0, atol=0)
    torch.testing.assert_close(cache["blocks.0.mlp.hook_post"], pre0.relu().detach(), rtol=0, atol=0)
    assert not any(v.requires_grad for v in cache.values())
    assert not any(p.has_hooks for p in toy.hook_dict.values()), "run_with_cache left hooks behind"


@pytest.mark.parametrize("names_filter, kept", [
    ("hook_embed", ["hook_embed"]),
    (["blocks.1.mlp.hook_post", "hook_embed"], ["hook_embed", "blocks.1.mlp.hook_post"]),
    (lambda name: name.endswith("hook_pre"), ["blocks.0.mlp.hook_pre", "blocks.1.mlp.hook_pre"]),
])
def test_names_filter(toy, names_filter, kept):
    _, cache = toy.run_with_cache(torch.randn(2, 3), names_filter=names_filter)
    assert list(cache) == kept


def test_unknown_names_are_errors_with_the_closest_names(toy):
    with pytest.raises(ValueError, match=r"no hook point 'blocks.0.mlp.hook_pr'.*did you mean 'blocks.0.mlp.hook_pre'"):
        toy.run_with_cache(torch.randn(2, 3), names_filter="blocks.0.mlp.hook_pr")
    with pytest.raises(ValueError, match=r"fwd_hooks: the model has no hook point 'hook_pos_embed'"):
        toy.run_with_hooks(torch.randn(2, 3), fwd_hooks=[("hook_pos_embed", lambda a, hook: None)])
    with pytest.raises(TypeError, match="names_filter must be None, a hook name"):
        toy.run_with_cache(torch.randn(2, 3), names_filter=3)
    with pytest.raises(TypeError, match="fwd_hooks must be a list"):
        toy.run_with_hooks(torch.randn(2, 3), fwd_hooks="hook_embed")
    with pytest.raises(TypeError, match="fwd_hooks entries must be"):
        toy.run_with_hooks(torch.randn(2, 3), fwd_hooks=["hook_embed"])
    with pytest.raises(TypeError, match="the hook for 'hook_embed' must be callable"):
        toy.run_with_hooks(torch.randn(2, 3), fwd_hooks=[("hook_embed", 1.0)])
    assert not any(p.has_hooks for p in toy.hook_dict.values())


def test_run_with_hooks_replaces_an_activation_for_that_call_only(toy):
    x = torch.randn(2, 3)
    seen = []

    def zero_block0(activation, hook):
        seen.append(hook.name)
        return torch.zeros_like(activation)

    out = toy.run_with_hooks(x, fwd_hooks=[("blocks.0.mlp.hook_post", zero_block0)])
    # By hand: block 0 adds nothing, block 1 runs on x.
    expected = x + toy.body.h[1](x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert seen == ["blocks.0.mlp.hook_post"]
    torch.testing.assert_close(toy(x), x + toy.body.h[0](x) + toy.body.h[1](x + toy.body.h[0](x)), rtol=0, atol=0)


def test_a_filter_function_hooks_every_point_it_accepts(toy):
    seen = []
    toy.run_with_hooks(torch.randn(2, 3), fwd_hooks=[(lambda n: "mlp" in n, lambda a, hook: seen.append(hook.name))])
    assert seen == NAMES[1:]


def test_hooks_are_removed_when_a_hook_raises(toy):
    def broken(activation, hook):
        raise RuntimeError("inside the hook")

    with pytest.raises(RuntimeError, match="inside the hook"):
        toy.run_with_hooks(torch.randn(2, 3), fwd_hooks=[("hook_embed", broken), ("blocks.1.mlp.hook_pre", broken)])
    assert not any(p.has_hooks for p in toy.hook_dict.values())


def test_a_replacement_of_another_shape_or_type_is_an_error_naming_the_hook(toy):
    with pytest.raises(ValueError, match=r"hook on 'blocks.0.mlp.hook_pre' returned shape \(2, 1\)"):
        toy.run_with_hooks(torch.randn(2, 3), fwd_hooks=[("blocks.0.mlp.hook_pre", lambda a, hook: a[:, :1])])
    with pytest.raises(TypeError, match=r"hook on 'hook_embed' returned float"):
        toy.run_with_hooks(torch.randn(2, 3), fwd_hooks=[("hook_embed", lambda a, hook: 1.0)])


def test_capture_fills_one_slot_per_point_and_keeps_gradients(toy):
    x = torch.randn(2, 3, requires_grad=True)
    points = [toy.body.h[1].hook_pre, toy.body.hook_embed]
    with capture(points) as values:
        toy(x)
    assert values[1] is not None and values[1].requires_grad
    torch.testing.assert_close(values[1], x, rtol=0, atol=0)
    assert not any(p.has_hooks for p in points)


def test_has_hooks(toy):
    point = toy.body.hook_embed
    assert not point.has_hooks
    handle = point.add_hook(lambda a, hook: None)
    assert point.has_hooks
    handle.remove()
    assert not point.has_hooks
