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


# ------------------------------------------------------------------ how a hook function is called


def test_a_hook_is_called_as_transformer_lens_calls_it(toy):
    """TransformerLens calls fn(activation, hook=point): a keyword-only ``hook`` and a
    functools.partial binding an argument after it both work; so does a function whose
    second parameter has another name (called positionally)."""
    import functools

    x = torch.randn(2, 3)
    seen = []

    def keyword_only(activation, *, hook):
        seen.append(("keyword_only", hook.name))

    def scale(activation, factor, hook):  # TransformerLens's partial(fn, factor=...) idiom
        return activation * factor

    toy.run_with_hooks(x, fwd_hooks=[("hook_embed", keyword_only), ("hook_embed", lambda a, h: seen.append(h.name))])
    assert seen == [("keyword_only", "hook_embed"), "hook_embed"]
    out = toy.run_with_hooks(x, fwd_hooks=[("hook_embed", functools.partial(scale, factor=3.0))])
    torch.testing.assert_close(out, toy(3.0 * x), rtol=0, atol=0)


@pytest.mark.parametrize("fn, signature", [(lambda a: None, r"\(a\)"), (lambda a, b, c: None, r"\(a, b, c\)"),
                                           (lambda *, hook: None, r"\(\*, hook\)")])
def test_a_hook_of_the_wrong_arity_is_refused_before_the_forward(toy, fn, signature):
    calls = []
    toy.register_forward_pre_hook(lambda module, args: calls.append(1))
    with pytest.raises(TypeError, match=rf"the hook for 'blocks.0.mlp.hook_pre' must take two arguments.*{signature}"):
        toy.run_with_hooks(torch.randn(2, 3), fwd_hooks=[("hook_embed", lambda a, hook: None),
                                                         ("blocks.0.mlp.hook_pre", fn)])
    with pytest.raises(TypeError, match="must take two arguments"):
        toy.body.hook_embed.add_hook(fn)
    assert calls == [], "the forward ran before the bad hook was reported"
    assert not any(p.has_hooks for p in toy.hook_dict.values())


def test_a_filter_function_of_the_wrong_arity_is_refused(toy):
    with pytest.raises(TypeError, match=r"names_filter: a filter function takes one argument.*\(name, extra\)"):
        toy.run_with_cache(torch.randn(2, 3), names_filter=lambda name, extra: True)
    with pytest.raises(TypeError, match=r"fwd_hooks: a filter function takes one argument"):
        toy.run_with_hooks(torch.randn(2, 3), fwd_hooks=[(lambda: True, lambda a, hook: None)])
    with pytest.raises(TypeError, match=r"names_filter must list hook names \(str\); entry 1 is int 3"):
        toy.run_with_cache(torch.randn(2, 3), names_filter=["hook_embed", 3])


def test_a_replacement_of_another_dtype_or_device_is_an_error_naming_the_hook(toy):
    x = torch.randn(2, 3)
    with pytest.raises(TypeError, match=r"hook on 'blocks.0.mlp.hook_post' returned a torch.float64 tensor; "
                                        r"the activation is torch.float32"):
        toy.run_with_hooks(x, fwd_hooks=[("blocks.0.mlp.hook_post", lambda a, hook: a.double())])
    with pytest.raises(TypeError, match=r"returned a torch.int64 tensor"):
        toy.run_with_hooks(x, fwd_hooks=[("hook_embed", lambda a, hook: a.long())])
    with pytest.raises(ValueError, match=r"hook on 'hook_embed' returned a tensor on meta; the activation is on cpu"):
        toy.run_with_hooks(x, fwd_hooks=[("hook_embed", lambda a, hook: a.to("meta"))])
    assert not any(p.has_hooks for p in toy.hook_dict.values())


# --------------------------------------------------------------------------------- edits in place


def _halve_in_place(activation, hook):
    activation[:, 0] *= 0.5  # TransformerLens's idiom: edit, return nothing


def _halve(activation, hook):
    out = activation.clone()
    out[:, 0] *= 0.5
    return out


@pytest.mark.parametrize("name", NAMES)
def test_an_edit_in_place_equals_the_same_edit_returned_with_gradients(toy, name):
    """hook_post is relu's output, which autograd keeps for the backward pass: edited in
    place without a copy, backward would fail ("modified by an inplace operation")."""
    x = torch.randn(4, 3)
    out = toy.run_with_hooks(x, fwd_hooks=[(name, _halve)])
    out.square().sum().backward()
    want = {n: p.grad.clone() for n, p in toy.named_parameters()}
    toy.zero_grad()
    edited = toy.run_with_hooks(x, fwd_hooks=[(name, _halve_in_place)])
    torch.testing.assert_close(edited, out, rtol=0, atol=0)
    edited.square().sum().backward()
    for n, p in toy.named_parameters():
        torch.testing.assert_close(p.grad, want[n], rtol=0, atol=0, msg=f"gradient of {n}")
    assert not torch.equal(edited, toy(x)), "the edit changed nothing"


def test_an_edit_in_place_does_not_change_cached_values_of_other_points(toy):
    """hook_embed's value is the very tensor block 0 reads, and the cache keeps it; an edit in
    place of a later point sharing memory must not rewrite what was cached."""
    x = torch.randn(2, 3)

    class Aliased(Toy):
        def forward(self, x, scale=1.0):
            x = self.body.hook_embed(x * scale)
            return self.body.h[0].hook_pre(x)  # the same tensor at two points

    model = Aliased()
    with model.hooks([("blocks.0.mlp.hook_pre", lambda a, hook: a.zero_())]):
        out, cache = model.run_with_cache(x, names_filter=["hook_embed", "blocks.0.mlp.hook_pre"])
    torch.testing.assert_close(cache["hook_embed"], x, rtol=0, atol=0)
    torch.testing.assert_close(cache["blocks.0.mlp.hook_pre"], torch.zeros(2, 3), rtol=0, atol=0)
    torch.testing.assert_close(out, torch.zeros(2, 3), rtol=0, atol=0)


def test_hook_handles(toy):
    point = toy.body.hook_embed
    x = torch.randn(2, 3)
    with point.add_hook(lambda a, hook: a * 0):
        assert point.has_hooks
        torch.testing.assert_close(toy(x), toy.body.h[1](toy.body.h[0](0 * x) + 0 * x) + toy.body.h[0](0 * x),
                                   rtol=0, atol=0)
    assert not point.has_hooks
    handle = point.add_hook(lambda a, hook: None)
    handle.remove()
    handle.remove()  # a second remove is a no-op
    assert not point.has_hooks


# ---------------------------------------------------------------------------------- torch.compile


def test_a_compiled_model_runs_hooks_added_after_compiling(toy):
    """PyTorch's compiled graphs do not guard on module hooks (skip_nnmodule_hook_guards):
    hooks in PyTorch's hook dict, added after the first compiled call, would be skipped
    silently. HookPoint keeps its hooks where the compiled code guards on them: a new hook
    compiles again and runs; without hooks the first graph runs again."""
    x = torch.randn(2, 3)
    compiled = torch.compile(toy, backend="eager")  # dynamo's guards only: fast, and where the bug was
    with torch.no_grad():
        plain = compiled(x)
        torch.testing.assert_close(plain, toy(x), rtol=0, atol=0)
        for fn in (lambda a, hook: a * 0, lambda a, hook: a * 2):
            want = toy.run_with_hooks(x, fwd_hooks=[("blocks.0.mlp.hook_post", fn)])
            with toy.hooks([("blocks.0.mlp.hook_post", fn)]):
                got = compiled(x)
            torch.testing.assert_close(got, want, rtol=0, atol=0)
            assert not torch.equal(got, plain)
        seen = []
        _, cache = compiled.run_with_cache(x)  # attribute of the wrapped module
        assert list(cache) == NAMES
        with toy.hooks([(lambda n: True, lambda a, hook: seen.append(hook.name))]):
            compiled(x)
        assert seen == NAMES
        torch.testing.assert_close(compiled(x), plain, rtol=0, atol=0)


def test_hook_order_sorts_hook_dict_and_the_cache(toy):
    class Reordered(Toy):
        hook_order = staticmethod(lambda name: 0 if name.startswith("blocks.1.") else 1)  # stable within ties

    model = Reordered()
    expected = NAMES[3:] + NAMES[:3]
    assert list(model.hook_dict) == expected
    assert list(model.run_with_cache(torch.randn(2, 3))[1]) == expected


def test_layer_of_a_hook_point(toy):
    seen = []
    toy.run_with_hooks(torch.randn(2, 3), fwd_hooks=[(lambda n: n.endswith("hook_post"),
                                                       lambda a, hook: seen.append(hook.layer()))])
    assert seen == [0, 1]
    with pytest.raises(ValueError, match=r"hook point 'hook_embed' is not inside a block"):
        toy.hook_dict["hook_embed"].layer()


def test_a_module_as_a_name_is_the_point_itself_or_an_error(toy):
    """A module is callable, so it would pass for a filter accepting every name: a HookPoint of
    the model is taken as that point, any other module is a TypeError."""
    x = torch.randn(2, 3)
    point = toy.body.h[0].hook_post
    seen = []
    toy.run_with_hooks(x, fwd_hooks=[(point, lambda a, hook: seen.append(hook.name))])
    assert seen == ["blocks.0.mlp.hook_post"]
    with pytest.raises(ValueError, match="is not one of this model's hook points"):
        toy.run_with_hooks(x, fwd_hooks=[(HookPoint(), lambda a, hook: None)])
    with pytest.raises(TypeError, match="got the module Linear"):
        toy.run_with_hooks(x, fwd_hooks=[(toy.body.h[0].lin, lambda a, hook: None)])
    with pytest.raises(TypeError, match="names_filter must be .* got the module HookPoint"):
        toy.run_with_cache(x, names_filter=point)
    assert not any(p.has_hooks for p in toy.hook_dict.values())


# ------------------------------------------------------------------ TransformerLens's short names


@pytest.mark.parametrize("args, full", [
    (("pattern", 0), "blocks.0.attn.hook_pattern"),
    (("attn", 2), "blocks.2.attn.hook_pattern"),
    (("q", 1), "blocks.1.attn.hook_q"),
    (("attn_scores", 0), "blocks.0.attn.hook_attn_scores"),
    (("pre", 3), "blocks.3.mlp.hook_pre"),
    (("mlp_post", 3), "blocks.3.mlp.hook_post"),
    (("resid_pre", 0), "blocks.0.hook_resid_pre"),
    (("resid_post", 5), "blocks.5.hook_resid_post"),
    (("attn_out", 1), "blocks.1.hook_attn_out"),
    (("normalized", 1, "ln2"), "blocks.1.ln2.hook_normalized"),
    (("normalized",), "ln_final.hook_normalized"),
    (("scale",), "ln_final.hook_scale"),
    (("embed",), "hook_embed"),
    (("pos_embed",), "hook_pos_embed"),
    (("blocks.0.attn.hook_q",), "blocks.0.attn.hook_q"),
    (("hook_embed",), "hook_embed"),
])
def test_act_name_expands_transformer_lens_short_names(args, full):
    from mlab_tfs.hooks import act_name

    assert act_name(*args) == full


def test_act_name_refuses_a_layer_that_is_not_an_int():
    from mlab_tfs.hooks import act_name

    with pytest.raises(TypeError, match=r"the layer of hook name 'pattern' must be an int, got '0'"):
        act_name("pattern", "0")


def test_the_cache_reads_short_names_and_aliases(toy):
    from mlab_tfs.hooks import ActivationCache

    _, cache = toy.run_with_cache(torch.randn(2, 3))
    assert isinstance(cache, ActivationCache) and isinstance(cache, dict)
    assert cache["embed"] is cache["hook_embed"] and "embed" in cache
    with pytest.raises(KeyError, match=r"'blocks.0.mlp.hook_prex' is not in the cache; did you mean 'blocks.0.mlp.hook_pre'"):
        cache["blocks.0.mlp.hook_prex"]
    assert cache.get("nothing") is None
    aliased = ActivationCache({"embed.hook_embed": torch.ones(1)}, {"hook_embed": "embed.hook_embed"})
    assert aliased["hook_embed"] is aliased["embed.hook_embed"] and aliased["embed"] is aliased["hook_embed"]
    assert list(aliased) == ["embed.hook_embed"], "iteration shows the points' own names only"


def test_short_names_reach_the_points_in_filters_and_hooks(tmp_path):
    """A GPT-2 and a BERT: names_filter and fwd_hooks take TransformerLens's short forms, and an
    encoder's top-level hook_embed is its embed.hook_embed."""
    from mlab_tfs.bert import BertModel
    from mlab_tfs.gpt2 import GPT2LMHeadModel
    from mlab_tfs.testing import tiny

    gpt2 = GPT2LMHeadModel.from_pretrained(tiny.gpt2_checkpoint(tmp_path / "g", "base")).eval()
    bert = BertModel.from_pretrained(tiny.bert_checkpoint(tmp_path / "b", "base")).eval()
    ids = torch.randint(1, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, cache = gpt2.run_with_cache(ids, names_filter=["embed", "blocks.0.attn.hook_pattern"])
        assert list(cache) == ["hook_embed", "blocks.0.attn.hook_pattern"]
        _, cache = bert.run_with_cache(ids, names_filter="hook_embed")
        assert list(cache) == ["embed.hook_embed"]
        zeroed = bert.run_with_hooks(ids, fwd_hooks=[("hook_pos_embed", lambda a, hook: torch.zeros_like(a))])
        by_name = bert.run_with_hooks(ids, fwd_hooks=[("embed.hook_pos_embed", lambda a, hook: torch.zeros_like(a))])
    assert torch.equal(zeroed.last_hidden_state, by_name.last_hidden_state)
    assert not torch.equal(zeroed.last_hidden_state, bert(ids).last_hidden_state)
