"""`vector`: a fixed-width list of numbers (one_to_one / one_to_many inputs).

State: per-feature train `mean` and `variance` (a feature constant in train is centred, not
scaled), `features`. Encoded by a Keras Normalization layer (its inverse decodes numeric targets).
The numeric statistics (`numeric`, per column min/max/mean/missing + histogram) serve series too.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from components.kinds.base import Kind


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def numeric(rows: list[list[float]], names: list[str] | None = None) -> dict[str, Any]:
    """Statistics of numeric rows: the usual width, ragged rows, and per column min/max/mean/missing."""
    widths = Counter(len(r) for r in rows)
    width = widths.most_common(1)[0][0] if widths else 0
    cols = list(zip(*[r for r in rows if len(r) == width])) if rows else []
    out: dict[str, Any] = {"features": width, "ragged": sum(n for w, n in widths.items() if w != width),
                           "columns": []}
    for j, col in enumerate(cols):
        finite = [float(v) for v in col if v is not None and math.isfinite(float(v))]
        out["columns"].append({
            "name": names[j] if names and j < len(names) else f"f{j}",
            "min": min(finite, default=None),
            "max": max(finite, default=None),
            "mean": sum(finite) / len(finite) if finite else None,
            "missing": len(col) - len(finite),
            "histogram": histogram(finite),
        })
    return out


def numeric_columns(rows: np.ndarray, names: list[str] | None = None) -> dict[str, Any]:
    """`numeric` of a float array [rows, columns], vectorised (no ragged rows; NaN is missing)."""
    rows = np.asarray(rows, dtype="float64")
    rows = rows.reshape(len(rows), rows.shape[-1] if rows.ndim > 1 else 1)
    out: dict[str, Any] = {"features": int(rows.shape[1]), "ragged": 0, "columns": []}
    for j in range(rows.shape[1]):
        col = rows[:, j]
        finite = col[np.isfinite(col)]
        some = bool(len(finite))
        out["columns"].append({
            "name": names[j] if names and j < len(names) else f"f{j}",
            "min": float(finite.min()) if some else None, "max": float(finite.max()) if some else None,
            "mean": float(finite.mean()) if some else None, "missing": int(len(col) - len(finite)),
            "histogram": histogram(finite),
        })
    return out


def histogram(values: Any, bins: int = 20) -> dict[str, list[float]]:
    if not len(values):
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist()}


def fit_flat(flat: np.ndarray, state: dict[str, Any]) -> None:
    """Per-feature train `mean` and `variance` of numeric rows [n, features] (NaN ignored), and `features`."""
    state["mean"] = np.nanmean(flat, axis=0).tolist()
    variance = np.nanvar(flat, axis=0)
    # a feature constant in train (e.g. an always-blank pixel) is centred, not blown up
    state["variance"] = np.where(variance < 1e-8, 1.0, variance).tolist()
    state["features"] = int(flat.shape[-1])


class Vector(Kind):
    name = "vector"
    strings = False
    dtype = "float32"

    def type_ok(self, value: Any) -> bool:
        return isinstance(value, list) and all(is_number(v) or v is None for v in value)

    def stats(self, present: list[Any], spec: dict[str, Any], lowercase: bool) -> dict[str, Any]:
        return numeric(list(present), spec.get("columns"))

    def fit(self, values: list[Any], state: dict[str, Any], data: Any, generated: bool) -> None:
        arr = np.asarray(values, dtype="float64")
        fit_flat(arr.reshape(-1, arr.shape[-1]), state)

    def io_entry(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        return {"features": state["features"], **super().io_entry(state, side)}

    def layers(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        import keras

        return {side: keras.layers.Normalization(mean=state["mean"], variance=state["variance"], name=f"{side}_norm"),
                f"{side}_invert": keras.layers.Normalization(mean=state["mean"], variance=state["variance"],
                                                             invert=True, name=f"{side}_denorm")}

    def encode(self, codec: Any, raw: Any, side: str) -> Any:
        import tensorflow as tf

        return tf.cast(codec.layers[side](tf.cast(raw, "float32")), "float32")

    def encode_targets(self, codec: Any, ys: list[Any], xs: list[Any] | None) -> np.ndarray:
        if not ys:
            return np.zeros((0, *codec.shape("y")), dtype="float32")
        return np.asarray(codec.encode(np.asarray(ys, dtype="float32"), "y"))

    def shape(self, state: dict[str, Any]) -> tuple[int, ...]:
        return (state["features"],)

    def raw_tensor(self, values: list[Any]) -> Any:
        import tensorflow as tf

        return tf.constant(np.asarray(values, dtype="float32"))

    def input_signature(self, io_x: dict[str, Any], steps: int | None, name: str) -> Any:
        import tensorflow as tf

        return tf.TensorSpec([None, io_x["features"]], tf.float32, name=name)


KIND = Vector()
