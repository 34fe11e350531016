"""Hook points: named places in a model where an activation can be read or replaced.

The convention is TransformerLens's (``transformer_lens/hook_points.py``): a
``HookPoint`` is an identity module placed at each meaningful activation, and the
model's ``run_with_cache`` / ``run_with_hooks`` reach them by name. The names are
TransformerLens's too (``blocks.0.attn.hook_pattern``, ``blocks.3.hook_resid_post``...),
so analysis code written for TransformerLens reads our models. Our modules keep
transformers' names (``transformer.h.0.attn``) so that checkpoints load by a name map;
each model class maps its module paths to hook names with ``hook_name_rules``.

A hook is ``fn(activation, hook)``: ``hook`` is the HookPoint (``hook.name`` its name);
returning a tensor replaces the activation (same shape), returning None keeps it.

With no hook registered a HookPoint costs one identity call, nothing under
``torch.compile``. Attention layers run their hand-written path whenever a hook sits on
``hook_attn_scores`` or ``hook_pattern``: the fused kernel never forms the pattern.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence, Union

import torch
from torch import nn

Tensor = torch.Tensor
HookFn = Callable[[Tensor, "HookPoint"], Union[Tensor, None]]
NamesFilter = Union[None, str, Sequence[str], Callable[[str], bool]]


class HookPoint(nn.Module):
    """An identity module that names an activation: ``forward(x)`` returns ``x``, after
    any hook added with ``add_hook`` has had the chance to read or replace it.

    ``name`` is set by the model that holds it (its TransformerLens-style name).
    """

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None

    def forward(self, x: Tensor) -> Tensor:
        return x

    @property
    def has_hooks(self) -> bool:
        """True while any forward hook is registered here (then a fused path that would
        skip this activation must not run)."""
        return bool(self._forward_hooks) or bool(self._forward_pre_hooks)

    def add_hook(self, fn: HookFn) -> torch.utils.hooks.RemovableHandle:
        """Register ``fn(activation, hook)``; a tensor it returns replaces the activation
        and must have the activation's shape (ValueError naming the hook otherwise).
        Returns the handle whose ``remove()`` takes the hook off again."""
        if not callable(fn):
            raise TypeError(f"hook for {self.name!r} must be callable as fn(activation, hook), "
                            f"got {type(fn).__name__}")

        def run(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor | None:
            new = fn(output, self)
            if new is None:
                return None
            if not isinstance(new, torch.Tensor):
                raise TypeError(f"hook on {self.name!r} returned {type(new).__name__}; a hook returns a tensor "
                                f"of shape {tuple(output.shape)} to replace the activation, or None to keep it")
            if new.shape != output.shape:
                raise ValueError(f"hook on {self.name!r} returned shape {tuple(new.shape)}; the activation "
                                 f"has shape {tuple(output.shape)} and a replacement must too")
            return new

        return self.register_forward_hook(run)

    def extra_repr(self) -> str:
        return repr(self.name) if self.name else ""


def _name_matcher(names_filter: NamesFilter, known: Sequence[str], where: str) -> Callable[[str], bool]:
    """names_filter as a predicate over hook names. Names that no hook point has are a
    ValueError listing the closest ones (a typo would otherwise cache or hook nothing)."""
    if names_filter is None:
        return lambda name: True
    if callable(names_filter):
        return names_filter
    if isinstance(names_filter, str):
        wanted = [names_filter]
    elif isinstance(names_filter, (list, tuple, set, frozenset)) and all(isinstance(n, str) for n in names_filter):
        wanted = list(names_filter)
    else:
        raise TypeError(f"{where} must be None, a hook name, a list of hook names or a function name -> bool, "
                        f"got {type(names_filter).__name__}")
    unknown_name(wanted, known, where)
    wanted_set = set(wanted)
    return lambda name: name in wanted_set


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


class HookedRootModule:
    """``hook_dict``, ``hooks``, ``run_with_hooks`` and ``run_with_cache`` for a model that
    holds HookPoints (TransformerLens's ``HookedRootModule``, with the same names).

    A class sets ``hook_name_rules``: regex substitutions, applied in order, that turn a
    module path (``transformer.h.0.ln_1.hook_normalized``) into its hook name
    (``blocks.0.ln1.hook_normalized``).
    """

    hook_name_rules: ClassVar[tuple[tuple[str, str], ...]] = ()

    @classmethod
    def hook_name(cls, module_path: str) -> str:
        """The hook name of the HookPoint at ``module_path`` (a path in named_modules)."""
        for pattern, replacement in cls.hook_name_rules:
            module_path = re.sub(pattern, replacement, module_path)
        return module_path

    @property
    def hook_dict(self) -> dict[str, HookPoint]:
        """Every hook point by name, in the order the modules were built."""
        points: dict[str, HookPoint] = {}
        for path, module in self.named_modules():  # type: ignore[attr-defined]
            if isinstance(module, HookPoint):
                module.name = self.hook_name(path)
                points[module.name] = module
        return points

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = ()) -> Iterator[Any]:
        """``with model.hooks([(name, fn), ...]):`` runs the forwards inside the block with
        the hooks on, and removes them on exit, also on error. A name may be a function
        name -> bool, which hooks every point it accepts (TransformerLens's filter)."""
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
                if not callable(fn):
                    raise TypeError(f"fwd_hooks: the hook for {name!r} must be callable as fn(activation, hook), "
                                    f"got {type(fn).__name__}")
                if isinstance(name, str):
                    unknown_name([name], known, "fwd_hooks")
                    targets = [points[name]]
                elif callable(name):
                    targets = [p for n, p in points.items() if name(n)]
                else:
                    raise TypeError(f"fwd_hooks: a hook name must be a str or a function name -> bool, "
                                    f"got {type(name).__name__}")
                handles += [p.add_hook(fn) for p in targets]
            yield self
        finally:
            for h in handles:
                h.remove()

    def run_with_hooks(self, input_ids: Tensor,
                       fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
                       **forward_kwargs: Any) -> Any:
        """``model(input_ids, **forward_kwargs)`` with ``fwd_hooks`` on for this call only.

        fwd_hooks: ``[(name, fn), ...]``, ``fn(activation, hook)`` returning a replacement
        tensor of the same shape or None. Unknown names are a ValueError naming the closest
        ones. Returns the model's output.
        """
        with self.hooks(fwd_hooks):
            return self(input_ids, **forward_kwargs)  # type: ignore[operator]

    def run_with_cache(self, input_ids: Tensor, names_filter: NamesFilter = None,
                       **forward_kwargs: Any) -> tuple[Any, dict[str, Tensor]]:
        """Run ``model(input_ids, **forward_kwargs)`` and keep the activations.

        names_filter: None (every hook point), a name, a list of names, or a function
        name -> bool. Returns ``(output, cache)`` with ``cache[name]`` the activation at
        that hook point, detached (as TransformerLens's default), in the model's order.
        """
        points = self.hook_dict
        keep = _name_matcher(names_filter, list(points), "names_filter")
        cache: dict[str, Tensor] = {}

        def store(activation: Tensor, hook: HookPoint) -> None:
            cache[hook.name] = activation.detach()

        with self.hooks([(name, store) for name in points if keep(name)]):
            output = self(input_ids, **forward_kwargs)  # type: ignore[operator]
        return output, {name: cache[name] for name in points if name in cache}
