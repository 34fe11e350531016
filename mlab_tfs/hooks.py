"""Hook points: named places in a model where an activation can be read or replaced.

The convention is TransformerLens's (``transformer_lens/hook_points.py``): a
``HookPoint`` is an identity module placed at each meaningful activation, and the
model's ``run_with_cache`` / ``run_with_hooks`` reach them by name. The names are
TransformerLens's too (``blocks.0.attn.hook_pattern``, ``blocks.3.hook_resid_post``...),
so analysis code written for TransformerLens reads our models. Our modules keep
transformers' names (``transformer.h.0.attn``) so that checkpoints load by a name map;
each model class maps its module paths to hook names with ``hook_name_rules``.

A hook is ``fn(activation, hook)``, called as TransformerLens calls it
(``fn(activation, hook=point)``; ``fn(activation, point)`` for a function without a ``hook``
keyword): ``hook`` is the HookPoint (``hook.name`` its name). It gets a copy of the
activation, which it may edit in place; returning a tensor (same shape, dtype and device)
replaces the activation, returning None keeps the copy (with the edits, if any).

With no hook registered a HookPoint costs one identity call, nothing under
``torch.compile``; a model compiled before a hook is added compiles again with it.
Attention layers run their hand-written path whenever a hook sits on
``hook_attn_scores`` or ``hook_pattern``: the fused kernel never forms the pattern.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import re
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence, Union

import torch
from torch import nn

Tensor = torch.Tensor
HookFn = Callable[[Tensor, "HookPoint"], Union[Tensor, None]]
NamesFilter = Union[None, str, Sequence[str], Callable[[str], bool]]


class HookPoint(nn.Module):
    """An identity module that names an activation: ``forward(x)`` returns ``x``, after
    the hooks added with ``add_hook`` have had the chance to read or replace it (in the
    order they were added, each seeing the previous one's replacement).

    ``name`` is set by the model that holds it (its TransformerLens-style name).

    The hooks live in a tuple that ``forward`` reads, not in PyTorch's forward-hook dict:
    torch.compile guards on the tuple, so a model compiled without hooks compiles again
    when one is added (and runs it) instead of silently skipping it (PyTorch does not guard
    on module hooks by default, ``torch._dynamo.config.skip_nnmodule_hook_guards``).
    """

    _fns: tuple[Callable[[Tensor], Tensor], ...] = ()  # also for a HookPoint unpickled from before it had them

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        self._fns = ()

    def forward(self, x: Tensor) -> Tensor:
        for run in self._fns:  # empty without hooks: one attribute read, nothing in a compiled graph
            x = run(x)
        return x

    @property
    def has_hooks(self) -> bool:
        """True while any hook is registered here (add_hook's, or a PyTorch forward hook such as
        ``capture``'s): then a fused path that would skip this activation must not run."""
        return bool(self._fns) or bool(self._forward_hooks) or bool(self._forward_pre_hooks)

    def add_hook(self, fn: HookFn, copy: bool = True) -> "HookHandle":
        """Register ``fn(activation, hook)``; a tensor it returns replaces the activation.

        ``fn`` is called as TransformerLens calls it, ``fn(activation, hook=self)``, or, if it
        takes no ``hook`` keyword, ``fn(activation, self)``; a function that takes neither
        is a TypeError naming the hook point. A replacement must have the activation's shape
        (ValueError), dtype (TypeError) and device (ValueError), each naming the hook point.

        copy: give ``fn`` a copy of the activation, so that an edit in place
        (``activation[:, :, head] = 0``) changes what flows on and nothing else: not a
        tensor autograd saved for the backward pass, not another hook point's value sharing
        its memory (blocks.0.hook_resid_post is blocks.1.hook_resid_pre), not a view that
        PyTorch refuses to edit (the heads split from one matmul, a broadcast embedding).
        An edited copy replaces the activation even if ``fn`` returns None. False saves the
        copy for a hook that only reads (``run_with_cache``).

        Returns the handle whose ``remove()`` takes the hook off again.
        """
        call = hook_caller(fn, f"the hook for {self.name!r}")

        def run(output: Tensor) -> Tensor:
            given = output.clone() if copy else output
            new = call(given, self)
            if new is None:
                return given
            if not isinstance(new, torch.Tensor):
                raise TypeError(f"hook on {self.name!r} returned {type(new).__name__}; a hook returns a tensor "
                                f"of shape {tuple(output.shape)} to replace the activation, or None to keep it")
            if new.shape != output.shape:
                raise ValueError(f"hook on {self.name!r} returned shape {tuple(new.shape)}; the activation "
                                 f"has shape {tuple(output.shape)} and a replacement must too")
            if new.dtype != output.dtype:
                raise TypeError(f"hook on {self.name!r} returned a {new.dtype} tensor; the activation is "
                                f"{output.dtype} and a replacement must be too (return it .to(activation.dtype))")
            if new.device != output.device:
                raise ValueError(f"hook on {self.name!r} returned a tensor on {new.device}; the activation is "
                                 f"on {output.device} and a replacement must be too")
            return new

        self._fns = (*self._fns, run)
        return HookHandle(self, run)

    def layer(self) -> int:
        """The block index in this point's name (``blocks.3.attn.hook_z`` -> 3), as
        TransformerLens's ``HookPoint.layer()``; ValueError for a point outside the blocks."""
        match = re.match(r"blocks\.(\d+)\.", self.name or "")
        if match is None:
            raise ValueError(f"hook point {self.name!r} is not inside a block (blocks.<i>....): it has no layer")
        return int(match[1])

    def extra_repr(self) -> str:
        return repr(self.name) if self.name else ""


class HookHandle:
    """What ``HookPoint.add_hook`` returns: ``remove()`` takes the hook off (again: a no-op);
    usable as ``with point.add_hook(fn):``."""

    def __init__(self, point: HookPoint, run: Callable[[Tensor], Tensor]) -> None:
        self.point, self.run = point, run

    def remove(self) -> None:
        self.point._fns = tuple(f for f in self.point._fns if f is not self.run)

    def __enter__(self) -> "HookHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def hook_caller(fn: object, where: str) -> Callable[[Tensor, HookPoint], Any]:
    """How to call the hook function ``fn`` with (activation, hook point): as TransformerLens
    does, ``fn(activation, hook=point)``, when it takes a ``hook`` keyword, else with two
    positional arguments. TypeError naming ``where`` if ``fn`` is not callable or takes
    neither form (checked here, before any forward pass, not deep inside one)."""
    if not callable(fn):
        raise TypeError(f"{where} must be callable as fn(activation, hook), got {type(fn).__name__}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: call them positionally
        return lambda activation, point: fn(activation, point)
    for args, kwargs, call in (((None,), {"hook": None}, lambda activation, point: fn(activation, hook=point)),
                               ((None, None), {}, lambda activation, point: fn(activation, point))):
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            continue
        return call
    raise TypeError(f"{where} must take two arguments, fn(activation, hook) (TransformerLens calls it as "
                    f"fn(activation, hook=hook_point)); {getattr(fn, '__name__', type(fn).__name__)} has signature "
                    f"{signature}")


def _name_matcher(names_filter: NamesFilter, known: Sequence[str], where: str) -> Callable[[str], bool]:
    """names_filter as a predicate over hook names. Names that no hook point has are a
    ValueError listing the closest ones (a typo would otherwise cache or hook nothing)."""
    if names_filter is None:
        return lambda name: True
    if isinstance(names_filter, nn.Module):  # callable, but no filter: it would accept every name
        raise TypeError(f"{where} must be None, a hook name, a list of hook names or a function name -> bool, "
                        f"got the module {type(names_filter).__name__} (pass its name, e.g. point.name)")
    if callable(names_filter):
        return name_predicate(names_filter, where)
    if isinstance(names_filter, str):
        wanted = [names_filter]
    elif isinstance(names_filter, (list, tuple, set, frozenset)):
        wanted = list(names_filter)
        for i, n in enumerate(wanted):
            if not isinstance(n, str):
                raise TypeError(f"{where} must list hook names (str); entry {i} is {type(n).__name__} {n!r}")
    else:
        raise TypeError(f"{where} must be None, a hook name, a list of hook names or a function name -> bool, "
                        f"got {type(names_filter).__name__}")
    unknown_name(wanted, known, where)
    wanted_set = set(wanted)
    return lambda name: name in wanted_set


def name_predicate(fn: Callable[[str], bool], where: str) -> Callable[[str], bool]:
    """``fn`` itself, after checking that it can be called with one argument, a hook name
    (TypeError naming ``where`` otherwise, instead of an error from inside a forward pass)."""
    try:
        inspect.signature(fn).bind("")
    except TypeError:
        raise TypeError(f"{where}: a filter function takes one argument, a hook name, and returns a bool; "
                        f"{getattr(fn, '__name__', type(fn).__name__)} has signature {inspect.signature(fn)}") from None
    except ValueError:  # no signature to check (some builtins)
        pass
    return fn


def unknown_name(wanted: Iterable[str], known: Sequence[str], where: str) -> None:
    """ValueError for the first name in ``wanted`` that is not in ``known``, with the closest
    known names."""
    known_set = set(known)
    for name in wanted:
        if name not in known_set:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"{where}: the model has no hook point {name!r}{hint} "
                             f"(model.hook_dict lists all {len(known)})")


@contextlib.contextmanager
def capture(points: Sequence[HookPoint]) -> Iterator[list[Tensor | None]]:
    """Inside the block, the values passing through ``points``: a list with one slot per
    point, in the order given, filled as the forward pass runs (not detached: gradients
    flow). How the models gather transformers' ``output_attentions`` and
    ``output_hidden_states``. The hooks are removed on exit, also on error."""
    values: list[Tensor | None] = [None] * len(points)

    def keeper(i: int) -> Callable[..., None]:
        def keep(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
            values[i] = output
        return keep

    handles = [p.register_forward_hook(keeper(i)) for i, p in enumerate(points)]
    try:
        yield values
    finally:
        for h in handles:
            h.remove()


# transformers' encoder layout (``embeddings``, ``encoder.layer.{i}.attention.self``...) ->
# TransformerLens's HookedEncoder names (transformer_lens/HookedEncoder.py,
# components/bert_embed.py, bert_block.py), shared by BERT's and DeBERTa's hook_name_rules,
# which add their own rules around these (after them, a layer's other points: ``blocks.{i}.``).
ENCODER_HOOK_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"^embeddings\.LayerNorm\.", "embed.ln."),
    (r"^embeddings\.", "embed."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.", r"blocks.\1.attn."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"blocks.\1.ln1."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.", r"blocks.\1.mlp."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"blocks.\1.ln2."),
)
# An encoder's lookups sit under ``embed.`` (TransformerLens's HookedEncoder); the decoders'
# top-level names reach them too.
ENCODER_HOOK_ALIASES: dict[str, str] = {
    "hook_embed": "embed.hook_embed", "hook_pos_embed": "embed.hook_pos_embed",
    "hook_token_type_embed": "embed.hook_token_type_embed",
}


# TransformerLens's short names (``transformer_lens.utils.get_act_name``): ("pattern", 0) is
# blocks.0.attn.hook_pattern, "resid_post" with layer 3 blocks.3.hook_resid_post.
_ATTN_ACTS = ("q", "k", "v", "z", "attn_scores", "pattern", "c2p_scores", "p2c_scores")
_MLP_ACTS = ("pre", "post")
_ACT_ALIASES = {"attn": "pattern", "attn_logits": "attn_scores", "query": "q", "key": "k", "value": "v",
                "mlp_pre": "pre", "mlp_post": "post"}


def act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """The full hook name of a TransformerLens short name: ``act_name("pattern", 0)`` is
    ``"blocks.0.attn.hook_pattern"``, ``act_name("resid_pre", 2)`` ``"blocks.2.hook_resid_pre"``,
    ``act_name("normalized", 1, "ln2")`` ``"blocks.1.ln2.hook_normalized"``, ``act_name("embed")``
    ``"hook_embed"``; a full name comes back as it is. TypeError for a layer that is not an int."""
    if not isinstance(name, str):
        raise TypeError(f"a hook name must be a str, got {type(name).__name__}")
    if layer is None and layer_type is None and ("." in name or name.startswith("hook_")):
        return name
    if layer is not None and (not isinstance(layer, int) or isinstance(layer, bool)):
        raise TypeError(f"the layer of hook name {name!r} must be an int, got {layer!r}")
    name = _ACT_ALIASES.get(name, name)
    if name in _ATTN_ACTS:
        layer_type = "attn"
    elif name in _MLP_ACTS:
        layer_type = "mlp"
    full = f"hook_{name}"
    if layer_type:
        full = f"{layer_type}.{full}"
    if layer is not None:
        full = f"blocks.{layer}.{full}"
    elif name in ("scale", "normalized") and not layer_type:
        full = f"ln_final.{full}"
    return full


def resolve_name(name: str, known: Any, aliases: dict[str, str]) -> str:
    """The name among ``known`` (a container of hook names) that ``name`` means: itself, an
    alias, or the expansion of a TransformerLens short form (``act_name``), tried in that
    order; ``name`` unchanged when none is known (the caller then names it as unknown)."""
    for candidate in (name, aliases.get(name), act_name(name)):
        candidate = aliases.get(candidate, candidate) if candidate else candidate
        if candidate in known:
            return candidate
    return name


class ActivationCache(dict):
    """What ``run_with_cache`` returns: a dict of hook name -> activation, in forward order,
    which also reads TransformerLens's short keys (``cache["pattern", 0]``,
    ``cache["resid_post", 3]``, ``cache["embed"]``; see ``act_name``) and the model's aliases
    (an encoder's ``cache["hook_embed"]`` is its ``embed.hook_embed``)."""

    def __init__(self, values: dict[str, Tensor], aliases: dict[str, str] | None = None):
        super().__init__(values)
        self.aliases = dict(aliases or {})

    def _key(self, key: Any) -> Any:
        if isinstance(key, tuple) and key and isinstance(key[0], str):
            return act_name(*key)
        if isinstance(key, str):
            return resolve_name(key, dict.keys(self), self.aliases)
        return key

    def __getitem__(self, key: Any) -> Tensor:
        resolved = self._key(key)
        if not dict.__contains__(self, resolved):
            known = list(self)
            close = difflib.get_close_matches(str(resolved), known, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise KeyError(f"{key!r} is not in the cache{hint} (it holds {len(known)} activations; "
                           f"names_filter may have left it out)")
        return dict.__getitem__(self, resolved)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, self._key(key))

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default


class HookedRootModule:
    """``hook_dict``, ``hooks``, ``run_with_hooks`` and ``run_with_cache`` for a model that
    holds HookPoints (TransformerLens's ``HookedRootModule``, with the same names).

    A class sets ``hook_name_rules``: regex substitutions, applied in order, that turn a
    module path (``transformer.h.0.ln_1.hook_normalized``) into its hook name
    (``blocks.0.ln1.hook_normalized``). ``hook_dict`` lists the points in the order the
    modules were built, which is the order the forward pass reaches them when each module
    builds its parts in that order; a model whose checkpoint layout builds them otherwise
    (DeBERTa's encoder holds the layers before the relative table the layers read, and the
    convolution run after layer 0) sets ``hook_order``, a sort key over hook names.
    """

    hook_name_rules: ClassVar[tuple[tuple[str, str], ...]] = ()
    hook_order: ClassVar[Callable[[str], Any] | None] = None
    # Other names a hook point answers to (an encoder's "hook_embed" -> "embed.hook_embed"),
    # besides TransformerLens's short forms (act_name).
    hook_aliases: ClassVar[dict[str, str]] = {}

    def resolve_hook_name(self, name: str, known: Sequence[str] | None = None) -> str:
        """The hook point's own name for ``name``: itself, an alias (``hook_aliases``) or a
        TransformerLens short form (``act_name``), whichever the model has; else ``name``
        unchanged (the callers then name it as unknown)."""
        return resolve_name(name, list(self.hook_dict) if known is None else known, self.hook_aliases)

    @classmethod
    def hook_name(cls, module_path: str) -> str:
        """The hook name of the HookPoint at ``module_path`` (a path in named_modules)."""
        for pattern, replacement in cls.hook_name_rules:
            module_path = re.sub(pattern, replacement, module_path)
        return module_path

    @property
    def hook_dict(self) -> dict[str, HookPoint]:
        """Every hook point by name, in the order the forward pass reaches them (the order
        the modules were built, sorted by ``hook_order`` where the class sets one)."""
        points: dict[str, HookPoint] = {}
        for path, module in self.named_modules():  # type: ignore[attr-defined]
            if isinstance(module, HookPoint):
                module.name = self.hook_name(path)
                points[module.name] = module
        key = type(self).hook_order
        if key is not None:
            points = dict(sorted(points.items(), key=lambda item: key(item[0])))  # stable: ties keep build order
        return points

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = ()) -> Iterator[Any]:
        """``with model.hooks([(name, fn), ...]):`` runs the forwards inside the block with
        the hooks on, and removes them on exit, also on error. A name may be a function
        name -> bool, which hooks every point it accepts (TransformerLens's filter), or one of
        the model's HookPoints itself. Nested blocks add their hooks after the outer ones'
        (each hook sees the replacement of those before it)."""
        points = self.hook_dict
        known = list(points)
        if isinstance(fwd_hooks, (str, bytes)) or not isinstance(fwd_hooks, (list, tuple)):
            raise TypeError(f"fwd_hooks must be a list of (hook name, fn) pairs, got {type(fwd_hooks).__name__}")
        handles = []
        try:
            for pair in fwd_hooks:
                if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                    raise TypeError(f"fwd_hooks entries must be (hook name, fn) pairs, got {pair!r}")
                name, fn = pair
                hook_caller(fn, f"fwd_hooks: the hook for {name!r}")
                if isinstance(name, HookPoint):  # the point itself, if it is one of this model's
                    if not any(p is name for p in points.values()):
                        raise ValueError(f"fwd_hooks: the HookPoint {name.name!r} is not one of this model's "
                                         f"hook points (model.hook_dict lists them)")
                    targets = [name]
                elif isinstance(name, nn.Module):
                    raise TypeError(f"fwd_hooks: a hook name must be a str, a HookPoint of this model or a "
                                    f"function name -> bool, got the module {type(name).__name__}")
                elif isinstance(name, str):
                    name = self.resolve_hook_name(name, known)
                    unknown_name([name], known, "fwd_hooks")
                    targets = [points[name]]
                elif callable(name):
                    accepts = name_predicate(name, "fwd_hooks")
                    targets = [p for n, p in points.items() if accepts(n)]
                else:
                    raise TypeError(f"fwd_hooks: a hook name must be a str or a function name -> bool, "
                                    f"got {type(name).__name__}")
                handles += [p.add_hook(fn) for p in targets]
            yield self
        finally:
            for h in handles:
                h.remove()

    def run_with_hooks(self, input_ids: Tensor | None = None,
                       fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
                       **forward_kwargs: Any) -> Any:
        """``model(input_ids, **forward_kwargs)`` with ``fwd_hooks`` on for this call only
        (input_ids may be None when forward_kwargs hold inputs_embeds).

        fwd_hooks: ``[(name, fn), ...]``, ``fn(activation, hook)`` returning a replacement
        tensor of the same shape or None. Unknown names are a ValueError naming the closest
        ones. Returns the model's output.

        On ``torch.compile(model)`` this is the wrapped model's method, so it runs the model
        uncompiled; ``with model.hooks(fwd_hooks): compiled(...)`` runs the compiled one
        (compiled again for the hooks, see HookPoint).
        """
        with self.hooks(fwd_hooks):
            return self(input_ids, **forward_kwargs)  # type: ignore[operator]

    def run_with_cache(self, input_ids: Tensor | None = None, names_filter: NamesFilter = None,
                       **forward_kwargs: Any) -> tuple[Any, "ActivationCache"]:
        """Run ``model(input_ids, **forward_kwargs)`` and keep the activations (input_ids may be
        None when forward_kwargs hold inputs_embeds).

        names_filter: None (every hook point), a name, a list of names, or a function
        name -> bool; names may be TransformerLens's short forms or the model's aliases
        (see ``resolve_hook_name``). Returns ``(output, cache)`` with ``cache[name]`` the
        activation at that hook point, detached (as TransformerLens's default), in the
        model's order: an ``ActivationCache`` (a dict that also reads ``cache["pattern", 0]``).
        """
        points = self.hook_dict
        known = list(points)
        if isinstance(names_filter, str):
            names_filter = self.resolve_hook_name(names_filter, known)
        elif isinstance(names_filter, (list, tuple, set, frozenset)):
            names_filter = [self.resolve_hook_name(n, known) if isinstance(n, str) else n for n in names_filter]
        keep = _name_matcher(names_filter, known, "names_filter")
        cache: dict[str, Tensor] = {}

        def store(activation: Tensor, hook: HookPoint) -> None:
            cache[hook.name] = activation.detach()

        # No copy: store only reads. Hooks already on (``with model.hooks(...)``) ran first, so
        # the cache holds their edits; the edits of other hooks touch copies, never these values.
        handles = []
        try:
            handles = [p.add_hook(store, copy=False) for name, p in points.items() if keep(name)]
            output = self(input_ids, **forward_kwargs)  # type: ignore[operator]
        finally:
            for h in handles:
                h.remove()
        return output, ActivationCache({name: cache[name] for name in points if name in cache}, self.hook_aliases)
