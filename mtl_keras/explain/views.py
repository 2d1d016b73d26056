"""The per-task views a model already has, collected in one place.

How to read them together, from input to output:

1. **Fusion weights** (`fusion_weights`, `builders.fusion` models): how much
   each task reads each *modality* (image, text, table). A task whose weight
   sits on one modality ignores the others whatever the attributions of
   their features say.
2. **Gates** (`gate_utilisation`, MMoE/PLE): how much each task reads each
   *expert*. Tasks whose gates put weight on the same experts share
   parameters; disjoint gates mean the "shared" trunk is in effect split.
3. **Task attention** (`task_attention`, MTAN): the mean of each task's soft
   mask per trunk block: near 1, the task reads the block's features whole;
   low, it filters them (its own view of the shared trunk).
4. **Attributions** (`integrated_gradients`, `importance_table`): which *raw
   features* move each task's output. Features that rank high for several
   tasks (`shared_features`) are what the shared part learns for all; a
   feature high for one task only is that task's own signal.

Views 1-3 say *where* in the network each task listens; attributions say
*what* it hears. All are means over the rows passed in: compute them on the
same validation rows to compare.

The fusion view is a hook: it calls `mtl_keras.builders.fusion.fusion_weights`
when that builder is present, or a function registered with
`register_view("fusion", fn)` (fn(model, x) -> {task: {modality: weight}}).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from mtl_keras.builders.gates import gate_layers, gate_model, gate_utilisation
from mtl_keras.builders.mtan import mtan_attention_model
from mtl_keras.inputs import strings_to_tensors

_VIEWS: dict[str, Callable[[keras.Model, Any], Any]] = {}


def register_view(name: str, fn: Callable[[keras.Model, Any], Any]) -> None:
    """Registers (or replaces) a view `fn(model, x)` used by `task_views`.

    Example:
    >>> register_view("n_rows", lambda model, x: len(x["a"]))
    >>> task_views(model, x)
    {'n_rows': 16}
    >>> del _VIEWS["n_rows"]  # unregister
    """
    _VIEWS[name] = fn


def task_attention(model: keras.Model, x: Any, batch_size: int = 256) -> dict[str, list[float]]:
    """Mean MTAN attention mask value per task and trunk block over `x`.

    Args:
        model: a model built by `builders.mtan`.
        x: inputs as accepted by `model.predict`.
        batch_size: prediction batch size.

    Returns:
        dict task -> one float per trunk block, in (0, 1).

    Example:
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.mtan(keras.Input((8, 8, 1)), [Binary("a"), Regression("b")],
    ...                       trunk="conv2d", filters=(4, 4))
    >>> att = task_attention(model, np.ones((2, 8, 8, 1), "float32"))
    >>> sorted(att), len(att["a"]), all(0 < v < 1 for v in att["a"])
    (['a', 'b'], 2, True)
    """
    masks = mtan_attention_model(model).predict(
        strings_to_tensors(x), batch_size=batch_size, verbose=0
    )
    return {task: [float(np.mean(m)) for m in blocks] for task, blocks in masks.items()}


def fusion_weights(model: keras.Model, x: Any, batch_size: int = 256) -> dict[str, Any]:
    """Mean fusion weight per task and modality (hook, see module docs)."""
    if "fusion" in _VIEWS:
        return _VIEWS["fusion"](model, x)
    try:
        fusion = importlib.import_module("mtl_keras.builders.fusion")
    except ImportError as error:
        raise ValueError(
            "No fusion view: mtl_keras.builders.fusion is not available; register one with "
            "mtl_keras.explain.register_view('fusion', fn)."
        ) from error
    return fusion.fusion_weights(model, x, batch_size=batch_size)


def task_views(model: keras.Model, x: Any) -> dict[str, Any]:
    """Every view that applies to `model`, computed on the same rows `x`.

    Returns a dict with the keys that apply among "gates" (gate key ->
    expert weights), "attention" (task -> per-block mean mask), "fusion"
    (task -> modality weights) and any registered view.

    Example:
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.mmoe(keras.Input((4,)), [Binary("a"), Regression("b")],
    ...                       num_experts=3, expert_units=(8,), tower_units=(4,))
    >>> views = task_views(model, np.ones((4, 4), "float32"))
    >>> sorted(views), len(views["gates"]["a"])  # MMoE: expert weights of gate "a"
    (['gates'], 3)
    """
    views: dict[str, Any] = {}
    names = {layer.name for layer in model.layers}
    try:
        gate_layers(model)
        views["gates"] = gate_utilisation(model, x)
    except ValueError:
        pass
    tasks = list(getattr(model, "task_names", []))
    if any(f"{t}_attention_0" in names for t in tasks):
        try:
            views["attention"] = task_attention(model, x)
        except ValueError:
            pass
    for name, fn in _VIEWS.items():
        views[name] = fn(model, x)
    if "fusion" not in views:
        try:
            views["fusion"] = fusion_weights(model, x)
        except (ValueError, AttributeError, KeyError):
            pass  # not a fusion model
    return views


__all__ = [
    "fusion_weights",
    "gate_model",
    "gate_utilisation",
    "mtan_attention_model",
    "register_view",
    "task_attention",
    "task_views",
]
