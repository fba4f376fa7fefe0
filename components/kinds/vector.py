"""`vector`: a fixed-width list of numbers (one_to_one / one_to_many inputs).

State: per-feature train `mean` and `variance` (a feature constant in train is centred, not
scaled), `features`. Encoded by a Keras Normalization layer (its inverse decodes numeric targets).
The numeric statistics (`numeric`, per column min/max/mean/missing + histogram) serve series too.
"""

from __future__ import annotations

import functools
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
    """`numeric` of a float array [rows, columns], vectorised (no ragged rows; NaN is missing).

    Two passes of mergeable parts, so shards can be summed (`data.runner: beam`): `column_parts`
    (counts, sums, min, max), then `column_counts` of each column's histogram between the merged
    min and max (`edges_of`); `numeric_of` puts them together."""
    rows = as_table(rows)
    parts = column_parts(rows)
    edges = edges_of(parts)
    return numeric_of(parts, column_counts(rows, edges), edges, names)


def as_table(rows: Any) -> np.ndarray:
    rows = np.asarray(rows, dtype="float64")
    return rows.reshape(len(rows), rows.shape[-1] if rows.ndim > 1 else 1)


BLOCK = 1 << 20  # rows: the statistics of longer tables are merged block by block (bounded temporaries)


def blockwise(fn: Any, merge: Any, rows: np.ndarray) -> dict[str, list[float]]:
    """fn(rows) for a table of any length: the merged fn of each BLOCK rows (one call when it is shorter)."""
    parts = [fn(rows[lo:lo + BLOCK]) for lo in range(0, max(len(rows), 1), BLOCK)]
    return functools.reduce(merge, parts)


def column_parts(rows: np.ndarray) -> dict[str, list[float]]:
    """Per column: rows, finite values, their sum, min and max (mergeable with `merge_parts`)."""
    if len(rows) > BLOCK:
        return blockwise(column_parts, merge_parts, rows)
    finite = np.isfinite(rows)
    some = finite.any(axis=0)
    return {"rows": [len(rows)] * rows.shape[1], "finite": finite.sum(axis=0).tolist(),
            "sum": np.where(finite, rows, 0.0).sum(axis=0).tolist(),
            "min": np.where(some, np.min(np.where(finite, rows, np.inf), axis=0, initial=np.inf), np.inf).tolist(),
            "max": np.where(some, np.max(np.where(finite, rows, -np.inf), axis=0, initial=-np.inf), -np.inf).tolist()}


def merge_parts(a: dict[str, list[float]], b: dict[str, list[float]]) -> dict[str, list[float]]:
    pick = {"min": min, "max": max}
    return {k: [pick.get(k, lambda x, y: x + y)(x, y) for x, y in zip(a[k], b[k])] for k in a}


def edges_of(parts: dict[str, list[float]], bins: int = 20) -> list[list[float] | None]:
    """Each column's histogram edges: `bins` equal bins from its min to its max (None: no finite value)."""
    out: list[list[float] | None] = []
    for n, lo, hi in zip(parts["finite"], parts["min"], parts["max"]):
        if not n:
            out.append(None)
            continue
        lo, hi = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
        out.append(np.linspace(lo, hi, bins + 1).tolist())
    return out


def column_counts(rows: np.ndarray, edges: list[list[float] | None]) -> list[list[int]]:
    """Each column's finite values counted into its bins (mergeable by adding)."""
    out = []
    for j, e in enumerate(edges):
        col = rows[:, j]
        out.append(np.histogram(col[np.isfinite(col)], bins=e)[0].tolist() if e is not None else [])
    return out


def numeric_of(parts: dict[str, list[float]], counts: list[list[int]], edges: list[list[float] | None],
               names: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"features": len(parts["rows"]), "ragged": 0, "columns": []}
    for j, n in enumerate(parts["finite"]):
        out["columns"].append({
            "name": names[j] if names and j < len(names) else f"f{j}",
            "min": float(parts["min"][j]) if n else None, "max": float(parts["max"][j]) if n else None,
            "mean": float(parts["sum"][j] / n) if n else None, "missing": int(parts["rows"][j] - n),
            "histogram": {"edges": [round(float(x), 6) for x in edges[j]], "counts": counts[j]} if n else
            {"edges": [], "counts": []},
        })
    return out


def histogram(values: Any, bins: int = 20) -> dict[str, list[float]]:
    if not len(values):
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist()}


def fit_flat(flat: np.ndarray, state: dict[str, Any]) -> None:
    """Per-feature train `mean` and `variance` of numeric rows [n, features] (NaN ignored), and `features`."""
    fit_moments(moments(flat), state)


def moments(rows: np.ndarray) -> dict[str, list[float]]:
    """Per column: finite count, mean and sum of squared deviations (mergeable with `merge_moments`)."""
    rows = as_table(rows)
    if len(rows) > BLOCK:
        return blockwise(moments, merge_moments, rows)
    finite = np.isfinite(rows)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(finite, rows, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
    m2 = np.where(finite, (rows - mean) ** 2, 0.0).sum(axis=0)
    return {"n": n.tolist(), "mean": mean.tolist(), "m2": m2.tolist()}


def merge_moments(a: dict[str, list[float]], b: dict[str, list[float]]) -> dict[str, list[float]]:
    """Two parts' moments as one (Chan et al.'s parallel variance)."""
    out: dict[str, list[float]] = {"n": [], "mean": [], "m2": []}
    for na, ma, qa, nb, mb, qb in zip(a["n"], a["mean"], a["m2"], b["n"], b["mean"], b["m2"]):
        n = na + nb
        if not na or not nb:
            row = (n, ma if na else mb, qa if na else qb)
        else:
            delta = mb - ma
            row = (n, ma + delta * nb / n, qa + qb + delta * delta * na * nb / n)
        for key, value in zip(("n", "mean", "m2"), row):
            out[key].append(value)
    return out


def fit_moments(parts: dict[str, list[float]], state: dict[str, Any]) -> None:
    """`mean` and `variance` from moments; a feature constant in train (e.g. an always-blank pixel) is
    centred, not blown up."""
    n = np.asarray(parts["n"], dtype="float64")
    variance = np.where(n > 0, np.asarray(parts["m2"]) / np.maximum(n, 1), np.nan)
    state["mean"] = np.asarray(parts["mean"], dtype="float64").tolist()
    state["variance"] = np.where(variance < 1e-8, 1.0, variance).tolist()
    state["features"] = len(parts["n"])


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
