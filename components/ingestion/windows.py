"""A CSV's rows stored once, and its windows cut lazily from them (no copy per overlapping window).

Ingest writes each split of a `csv` source as `<split>.parquet`: one row per kept time step,
in time order within each series: the used columns (`c:<name>`, numbers or text), `segment`
(a gap-free run of one series; no window crosses one), and the series `id` and `time` where the
config names those columns. Parquet (pyarrow, already an MLflow dependency): columnar, typed,
compressed, and read back as NumPy arrays without parsing; JSON Lines of windows was 17x the
CSV and ~45% of the data stages' time (`bench/data_stages.py`).

`Windows` holds the rows and the window recipe (`spec.json` "windows": window, horizon, stride,
topology, which columns are x, y and known future values) and cuts x / y / meta for any set of
windows with vectorised indexing: storage and memory grow with rows, not rows x window. The
validation statistics and the preprocessing fit read each row once (`steps`).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

PREFIX = "c:"  # value columns; `segment`, `id`, `time` cannot collide with a CSV header


@dataclass
class SeriesRows:
    """The kept rows of one split: value columns, segment numbers, series ids and time stamps."""

    values: dict[str, np.ndarray]  # float64 (numbers) or object (text)
    segment: np.ndarray  # int64
    id: np.ndarray | None = None  # object (str)
    time: np.ndarray | None = None  # int64 ns (datetimes) or float64 (numbers)

    def __len__(self) -> int:
        return len(self.segment)

    @classmethod
    def concat(cls, parts: list[SeriesRows], dtypes: dict[str, Any], ids: bool, times: Any) -> SeriesRows:
        """One split from its series' rows; `dtypes` of the columns, whether there are `ids`, the `times`
        dtype (or None), so an empty split keeps the columns' types."""
        if len(parts) == 1:  # one series (or one part of it): no copy
            return parts[0]

        def cat(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)

        return cls({n: cat([p.values[n] for p in parts], d) for n, d in dtypes.items()},
                   cat([p.segment for p in parts], "int64"),
                   cat([p.id for p in parts], object) if ids else None,
                   cat([p.time for p in parts], times) if times is not None else None)

    def write(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = {PREFIX + name: _arrow(v) for name, v in self.values.items()}
        table["segment"] = pa.array(self.segment, pa.int64())
        if self.id is not None:
            table["id"] = pa.array(self.id, pa.string())
        if self.time is not None:
            table["time"] = pa.array(self.time)
        pq.write_table(pa.table(table), path)

    @classmethod
    def read(cls, path: Path) -> SeriesRows:
        """One file, or a folder of shards (`data.runner: beam`) read in name order (= series order)."""
        col = dict(cls.columns(path))
        return cls({n[len(PREFIX):]: v for n, v in col.items() if n.startswith(PREFIX)}, col["segment"].astype("int64"),
                   col.get("id"), col.get("time"))

    @staticmethod
    def columns(path: Path, names: list[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """The stored columns (or those `names`) as (name, NumPy array), one at a time: at most one column is
        held twice (Arrow's decoded pages and NumPy's copy), and those pages go back to the OS before the next."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        parts = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        for name in names or pq.read_schema(parts[0]).names:
            table = pa.concat_tables([pq.read_table(part, columns=[name]) for part in parts])
            values = table.column(0).to_numpy(zero_copy_only=False)
            del table
            pa.default_memory_pool().release_unused()
            yield name, values


def _arrow(values: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.array(values, pa.string() if values.dtype == object else pa.float64())


def window_starts(segment: np.ndarray, window: int, ahead: int, stride: int) -> np.ndarray:
    """The first row of every window of `window` steps (plus `ahead` more) inside one segment, in row order."""
    n = len(segment)
    if not n:
        return np.zeros(0, dtype="int64")
    begins = np.concatenate([[0], np.flatnonzero(np.diff(segment)) + 1])
    room = np.concatenate([begins[1:], [n]]) - begins - window - ahead + 1
    counts = np.where(room > 0, (room + stride - 1) // stride, 0)
    first = np.repeat(begins, counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return (first + stride * offset).astype("int64")


def starts_of(segment: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """The window starts of a split's rows (their `segment` column) under a recipe; with `max_examples`, a
    seeded sample of them that keeps the time order."""
    ahead = 0 if spec["topology"] == "many_to_many" and spec["text"] else spec["horizon"]
    starts = window_starts(segment, spec["window"], ahead, spec["stride"])
    cap = spec.get("max_examples")
    return starts[sample_positions(len(starts), cap, spec["seed"])] if cap is not None and len(starts) > cap \
        else starts


def sample_positions(n: int, cap: int, seed: int) -> list[int]:
    """A seeded sample of `cap` of n positions, in order (time order survives)."""
    return sorted(random.Random(seed).sample(range(n), cap))


def side_columns(spec: dict[str, Any]) -> dict[str, list[str]]:
    """The row columns of each numeric side of a recipe: x, future, and y unless it is a text target."""
    return {"x": spec["x"], "future": spec["future"], **({} if spec["text"] else {"y": spec["y"]})}


def recipe(data: Any, topology: str, info: dict[str, Any]) -> dict[str, Any]:
    """How windows are cut from a CSV's rows (spec.json "windows"): x / y / future columns and steps."""
    text = info["target_type"] == "string"
    targets, features = list(info["targets"]), list(info["features"])
    return {"window": data.window, "horizon": data.horizon, "stride": data.stride, "topology": topology,
            "text": text, "x": features if text else targets + features, "y": targets,
            "future": list(data.future_columns), "max_examples": data.max_examples, "seed": data.split_seed,
            "time": info.get("time_kind")}


class Windows:
    """The windows of one split, cut on demand from its rows (see the module doc)."""

    def __init__(self, rows: SeriesRows, spec: dict[str, Any], starts: np.ndarray | None = None):
        self.rows, self.spec = rows, spec
        self.w, self.h = spec["window"], spec["horizon"]
        text = spec["text"]
        self.starts = starts_of(rows.segment, spec) if starts is None else starts
        self._x = np.stack([rows.values[c] for c in spec["x"]], axis=1) if spec["x"] else np.zeros((len(rows), 0))
        self._x32: np.ndarray | None = None
        if text:
            self._labels = rows.values[spec["y"][0]]
        else:
            self._y = np.stack([rows.values[c] for c in spec["y"]], axis=1)
        self._future = np.stack([rows.values[c] for c in spec["future"]], axis=1) if spec["future"] else None

    @classmethod
    def read(cls, path: Path, spec: dict[str, Any]) -> Windows:
        return cls(SeriesRows.read(path), spec)

    def __len__(self) -> int:
        return len(self.starts)

    def subset(self, keep: np.ndarray) -> Windows:
        """These windows but only those at positions (or where the mask) `keep`."""
        out = copy.copy(self)  # the rows' stacked columns are shared, not stacked again
        out.starts = self.starts[keep]
        return out

    def _offsets(self, idx: Any, first: int, steps: int) -> np.ndarray:
        return self.starts[idx][:, None] + first + np.arange(steps)

    def x(self, idx: Any = slice(None), dtype: str = "float64", columns: list[int] | None = None) -> np.ndarray:
        """Raw input windows [n, window, features] (float32: gathered from `x_rows`), or only those `columns`."""
        rows = self.x_rows() if dtype == "float32" else self._x
        if columns is not None:
            rows = rows[:, columns]
        return rows[self._offsets(idx, 0, self.w)].astype(dtype, copy=False)

    def x_rows(self) -> np.ndarray:
        """Every row's input columns once, float32 [rows, features] (a copy made once): window i is rows
        starts[i] .. starts[i] + window - 1."""
        if self._x32 is None:
            self._x32 = self._x.astype("float32")
        return self._x32

    def y(self, idx: Any = slice(None)) -> Any:
        """Raw targets: numbers [n, steps, targets]; a text target: one label per window (many_to_one) or a
        label per input step (many_to_many), as lists."""
        w, h, topology = self.w, self.h, self.spec["topology"]
        if self.spec["text"]:
            if topology == "many_to_one":
                return self._labels[self.starts[idx] + w + h - 1].tolist()
            return self._labels[self._offsets(idx, 0, w)].tolist()
        if topology == "many_to_many":
            return self._y[self._offsets(idx, h, w)]
        return self._y[self._offsets(idx, w, h)]

    def future(self, idx: Any = slice(None)) -> np.ndarray | None:
        """The known future values at the horizon steps [n, horizon, future columns] (or None)."""
        return None if self._future is None else self._future[self._offsets(idx, self.w, self.h)]

    def ids(self, idx: Any = slice(None)) -> list[str] | None:
        return None if self.rows.id is None else self.rows.id[self.starts[idx] + self.w - 1].tolist()

    def times(self, idx: Any = slice(None)) -> list[Any] | None:
        """The time of each window's last input step, as a label (a date, a datetime or a number)."""
        if self.rows.time is None:
            return None
        return time_labels(self.rows.time[self.starts[idx] + self.w - 1], self.spec.get("time"))

    def length(self, side: str) -> int:
        """Steps per window of one side: x the window; y the horizon (the window for many_to_many); future
        the horizon."""
        return self.w if side == "x" or (side == "y" and self.spec["topology"] == "many_to_many") else self.h

    def steps(self, side: str) -> np.ndarray | list[str]:
        """Every row of one side once (x, y or future): numbers [rows, columns], or a text target's labels."""
        if side == "x":
            return self._x
        if side == "future":
            return self._future
        return self._labels.tolist() if self.spec["text"] else self._y

    def examples(self, idx: Any = slice(None)) -> list[dict[str, Any]]:
        """The windows at `idx` as example dicts: {"x", "y"} as lists and meta (id, time, future as configured)."""
        ys = self.y(idx)
        rows = [{"x": x, "y": y} for x, y in zip(self.x(idx).tolist(), ys if isinstance(ys, list) else ys.tolist())]
        for key, values in (("id", self.ids(idx)), ("time", self.times(idx)), ("future", self.future(idx))):
            if values is not None:
                for row, value in zip(rows, values.tolist() if isinstance(values, np.ndarray) else values):
                    row[key] = value
        return rows


class Examples(Sequence):
    """A CSV split's windows as example dicts (`Windows.examples`), made a block at a time as they are
    iterated (one when indexed): evaluation's tables read a split of any size in bounded memory."""

    BLOCK = 4096

    def __init__(self, windows: Windows):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self.windows.examples(np.arange(*i.indices(len(self))))
        return self.windows.examples(np.asarray([range(len(self))[i]]))[0]  # range: negatives, IndexError

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for lo in range(0, len(self), self.BLOCK):
            yield from self.windows.examples(slice(lo, lo + self.BLOCK))

    def field(self, key: str) -> Any:
        """One field of every window at once, from the rows ("x", "y", "id", "time" or "future"): numbers as an
        array, labels, ids and times as a list (None each where the data has none)."""
        w = self.windows
        values = {"x": w.x, "y": w.y, "id": w.ids, "time": w.times, "future": w.future}[key]()
        return [None] * len(self) if values is None else values


def time_labels(stamps: np.ndarray, kind: str | None) -> list[Any]:
    """Time stamps as labels: `date` (YYYY-MM-DD), `datetime` (to the second) or `number` (int when whole)."""
    if kind in ("date", "datetime"):
        return np.datetime_as_string(stamps.astype("datetime64[ns]"), unit="D" if kind == "date" else "s").tolist()
    return [int(v) if float(v).is_integer() else float(v) for v in stamps.tolist()]
