"""The time-series CSV source: a user's CSV -> rows per split, each series split by time.

Here live `load_csv` (columns, time sorting, frequency, series ids, missing values and their
fills, gaps, the split by time of each series) and its helpers (column types and checks,
duplicate times, the rows of one series, their time stamps). Reading the file into columns is
in `csv_read.py`; the time grid and the fills in `timeseries.py`; the shared line reader and
`DataSourceError` in `readers.py`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from components.config import DataConfig
from components.stage_files import SPLITS

from . import csv_read as reading
from . import timeseries
from .bundled import time_split
from .readers import DataSourceError, Rows
from .windows import SeriesRows


@dataclass
class Column:
    """What one CSV column holds: numbers or strings (missing values: empty, NA, NaN, null...)."""

    name: str
    numeric: bool
    missing: int = 0


def load_csv(data: DataConfig) -> tuple[dict[str, Any], Rows, dict[str, Any]]:
    """A time-series CSV -> rows per split (each series split by time) + the columns used.

    Each split is a `SeriesRows` (windows.py): the used columns, each row's segment, and its series
    id / time stamp (with `data.id_column` / `data.time_column`). Rows are sorted by time within
    each series and placed on the grid of the inferred frequency (`timeseries.py`); a missing
    step or value that `data.fill_missing` does not fill starts a new segment, and windows
    never cross a segment, so no window hides a gap or spans two series.
    """
    rows = Rows(Path(data.path))
    first = reading.first_line(rows.path)  # the header, when it is line 1: the whole-file reader may take the file
    fast = None
    if first is not None:
        header, targets, features, used = _header(first, data, rows.path)
        fast = reading.read_fast(rows, header, used, [*targets, *features], data)
    if fast is not None:
        numbers, raw, absent, parsed_numbers, times, unreadable = fast
    else:
        lines = rows.lines()
        try:
            _, header_text = next(lines)
        except StopIteration:
            raise DataSourceError(f"data file '{rows.path}' has no readable lines.") from None
        rows.total -= 1
        header, targets, features, used = _header(header_text, data, rows.path)
        numbers, raw = reading.read_lines(rows, lines, header, used)
        absent = {name: timeseries.missing(raw[name]) for name in used}
        parsed_numbers = {name: reading.to_numbers(raw[name], absent[name]) for name in [*targets, *features]}
        times, unreadable, *_ = reading.read_times(raw, absent, data, rows.path, [*targets, *features])
    columns = {name: _column_type(name, absent[name], parsed_numbers[name]) for name in [*targets, *features]}
    _check_columns(columns, targets, features, rows.path, numbers, raw, absent)
    values, problems = _csv_values(columns, raw, absent, parsed_numbers, data)
    for i, text in unreadable.items():
        problems.setdefault(i, f"unreadable time {text!r} in column {data.time_column!r}"
                               + (f" (data.time_format={data.time_format!r})" if data.time_format else ""))
    for i in sorted(problems):
        rows.skip(int(numbers[i]), problems[i])
    good = np.ones(len(numbers), dtype=bool)
    good[list(problems)] = False
    if times is not None:
        t = times.values
    ids = raw[data.id_column] if data.id_column else None
    if times is None and data.id_column:  # each series in file order: a skipped row of it is a gap
        import pandas as pd

        t = pd.Series(ids).groupby(ids).cumcount().to_numpy(dtype="int64")
    elif times is None:  # file order: a skipped line leaves a hole in the positions (a gap)
        lines_seen = np.sort(np.concatenate([numbers, [int(b["where"].rsplit(":", 1)[1]) for b in rows.bad]]))
        t = np.searchsorted(lines_seen, numbers).astype("int64")
    rows_good = np.flatnonzero(good)
    if data.id_column:
        keys, code = np.unique(ids[good].astype(str), return_inverse=True)
        ranked = rows_good[np.lexsort((rows_good, t[rows_good], code))]  # by series, then time, then line
        bounds = np.searchsorted(np.sort(code), np.arange(len(keys) + 1))
    else:  # one series: by time, then line (a file in time order is already sorted: no sort, no copy)
        ordered_in_file = len(rows_good) < 2 or bool(np.all(t[rows_good[1:]] >= t[rows_good[:-1]]))
        ranked = rows_good if ordered_in_file else rows_good[np.argsort(t[rows_good], kind="stable")]
        keys, bounds = (np.array([""]), np.array([0, len(ranked)])) if len(ranked) else (np.array([]), [0])
    del ids
    series = [(str(key), _drop_duplicate_times(ranked[bounds[k]:bounds[k + 1]], t, numbers, rows))
              for k, key in enumerate(keys)]
    del ranked, rows_good, raw, absent  # the strings and masks of the read: only the series' rows go on
    repeated = int(good.sum()) - sum(len(o) for _, o in series)  # rows dropped as duplicate times
    if times is not None and not data.id_column and repeated > max(2, 0.1 * good.sum()):
        raise DataSourceError(
            f"{repeated} of {int(good.sum())} rows of '{rows.path}' repeat the time of another row "
            f"(e.g. {next(b['where'] for b in rows.bad if b['reason'].startswith('duplicate time'))}): is it "
            f"several series in one file? Set data.id_column to the column that names each series.")
    grid = timeseries.infer_grid([t[o] for _, o in series], times)
    job = SeriesJob(data, grid, columns, None if times is None else t.dtype)
    ordered = ((key if data.id_column else None, _take(t, o), {n: _take(values[n], o) for n in columns})
               for key, o in series)
    if data.runner == "beam":  # the per-series work as an Apache Beam pipeline (beam.py), sharded rows
        from .beam import run_series

        splits, counts = run_series(list(ordered), job)
    else:
        splits, counts = job.run(ordered)
    if counts.irregular_series:
        counts.missing_timestamps = None
    info = {"targets": targets, "features": features,
            "target_type": "numeric" if columns[targets[0]].numeric else "string",
            "columns": {c.name: {"type": "numeric" if c.numeric else "string", "missing": c.missing}
                        for c in columns.values()},
            "frequency": grid.frequency if data.time_column else None,
            "time_kind": None if times is None else "number" if not times.datetime else
                         "date" if times.date_only else "datetime",
            "series": {**counts.as_dict(), "fill_missing": data.fill_missing, "max_fill": data.max_fill,
                       "frequency": grid.frequency if data.time_column else None,
                       "id_column": data.id_column, "time_column": data.time_column}}
    return splits, rows, info


def _header(text: str, data: DataConfig, path: Path) -> tuple[list[str], list[str], list[str], list[str]]:
    """The header line -> its column names, the targets, the features, and every column read."""
    header = [h.strip() for h in next(csv.reader([text]))]
    targets, features = _csv_columns(header, data, path)
    used = list(dict.fromkeys([*targets, *features, *(c for c in (data.time_column, data.id_column) if c)]))
    return header, targets, features, used


def _csv_columns(header: list[str], data: DataConfig, path: Path) -> tuple[list[str], list[str]]:
    """The target and feature columns (features: every other column but the time and id, unless listed)."""
    listed = data.feature_columns or ()
    wanted = [*data.target_columns, *listed, *data.future_columns] + [
        c for c in (data.time_column, data.id_column) if c]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataSourceError(f"data file '{path}' has no column {missing[0]!r} (named in the config); "
                              f"its columns are: {', '.join(header)}.")
    targets = list(data.target_columns)
    for key in ("time_column", "id_column"):
        if getattr(data, key) in targets:
            raise DataSourceError(f"data.{key}={getattr(data, key)!r} is also a target column; it cannot be both.")
    if data.feature_columns is None:
        features = [c for c in header if c not in targets and c not in (data.time_column, data.id_column)]
    else:
        features = list(data.feature_columns)
    for key in ("time_column", "id_column"):
        if getattr(data, key) in data.future_columns:
            raise DataSourceError(f"data.{key}={getattr(data, key)!r} is also in data.future_columns; a known "
                                  f"future column must be a numeric column of its own.")
    features += list(data.future_columns)  # known-ahead columns are inputs too (their past, in the encoder)
    return targets, [c for c in dict.fromkeys(features) if c not in targets]


def _column_type(name: str, absent: np.ndarray, numbers: np.ndarray) -> Column:
    return Column(name, numeric=reading.numeric_vote(absent, numbers), missing=int(absent.sum()))


def _check_columns(columns: dict[str, Column], targets: list[str], features: list[str], path: Path,
                   numbers: np.ndarray, raw: dict[str, np.ndarray], absent: dict[str, np.ndarray]) -> None:
    """Fatal column problems: an all-empty target, a text feature, mixed target types."""
    for name in targets:
        if columns[name].missing == len(numbers):
            raise DataSourceError(f"target column {name!r} of '{path}' is empty in every row: nothing to learn.")
    for name in features:
        if not columns[name].numeric:
            first = int(np.flatnonzero(~absent[name])[0])
            number, value = int(numbers[first]), raw[name][first]
            raise DataSourceError(
                f"wrong column type: feature column {name!r} of '{path}' holds text (e.g. {value!r} at "
                f"{path.name}:{number}), but features must be numbers; list the numeric ones in "
                f"data.feature_columns (or set data.id_column if it names the series).")
    kinds = {columns[name].numeric for name in targets}
    if len(kinds) > 1 or (False in kinds and len(targets) > 1):
        raise DataSourceError(f"data.target_columns of '{path}' must be all numeric, or one text (class) column.")


def _csv_values(columns: dict[str, Column], raw: dict[str, np.ndarray], absent: dict[str, np.ndarray],
                numbers: dict[str, np.ndarray], data: DataConfig) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Each column's values (NaN / None where missing) and the rows that are malformed, with why.

    A missing value is not malformed (it is a gap, or filled); a non-number in a numeric column is.
    """
    problems: dict[int, str] = {}
    values: dict[str, np.ndarray] = {}
    for name, column in columns.items():
        if column.numeric:
            for i in np.flatnonzero(~absent[name] & np.isnan(numbers[name])):
                problems.setdefault(int(i), f"non-numeric value {raw[name][i]!r} in column {name!r}")
            values[name] = numbers[name]
        else:
            values[name] = np.where(absent[name], None, raw[name])
    if data.id_column:
        for i in np.flatnonzero(absent[data.id_column]):
            problems.setdefault(int(i), f"missing id in column {data.id_column!r}")
    return values, problems


def _slots(rows: np.ndarray, block: int = 1 << 20) -> slice | np.ndarray:
    """Row indices as a slice when they are consecutive (indexing by it gives a view, not a copy); checked a
    block at a time (no temporary as long as the rows)."""
    if not len(rows) or rows[-1] - rows[0] != len(rows) - 1:
        return rows
    if any(bool((np.diff(rows[i:i + block + 1]) != 1).any()) for i in range(0, len(rows), block)):
        return rows
    return slice(int(rows[0]), int(rows[-1]) + 1)


def _take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values[rows]; a view when the rows are consecutive (a series stored in time order: no copy)."""
    return values[_slots(rows)]


def _drop_duplicate_times(order: np.ndarray, t: np.ndarray, numbers: np.ndarray, rows: Rows) -> np.ndarray:
    """Rows of one series sorted by time, without the later rows that repeat a time (recorded as bad)."""
    same = np.concatenate([[False], t[order][1:] == t[order][:-1]])
    if not same.any():
        return order
    kept = order[np.maximum.accumulate(np.where(~same, np.arange(len(order)), 0))]
    for i in np.flatnonzero(same):
        rows.skip(int(numbers[order[i]]), f"duplicate time (same as line {int(numbers[kept[i]])})")
    return order[~same]


@dataclass
class SeriesJob:
    """The per-series work (grid, fills, gap-free segments, split by time), the same in both drivers:
    `run` here (local) and one Beam task per shard of series (`beam.py`)."""

    data: DataConfig
    grid: Any
    columns: dict[str, Column]
    time_dtype: Any = None  # the rows' time stamps (data.time_column): int64 ns or float; None: no times

    @property
    def timed(self) -> bool:
        return self.time_dtype is not None

    def run(self, series: Iterable[tuple[str | None, np.ndarray, dict[str, np.ndarray]]],
            segment: int = 0) -> tuple[dict[str, SeriesRows], timeseries.Counts]:
        """The rows per split of some series (each: its key, its times and values in time order)."""
        counts = timeseries.Counts(rows={s: 0 for s in SPLITS})
        parts: dict[str, list[SeriesRows]] = {s: [] for s in SPLITS}
        for key, tt, vals in series:
            counts.series += 1
            segment = _series_rows(key, tt, vals, self, counts, parts, segment)
        dtypes = {name: "float64" if column.numeric else object for name, column in self.columns.items()}
        return {s: SeriesRows.concat(parts[s], dtypes, bool(self.data.id_column), self.time_dtype)
                for s in SPLITS}, counts


def _series_rows(key: str | None, tt: np.ndarray, vals: dict[str, np.ndarray], job: SeriesJob, counts: Any,
                 parts: dict[str, list[SeriesRows]], segment: int) -> int:
    """Place one series on its grid, fill, cut it into gap-free segments, split it by time.

    Appends each split's rows to `parts`, adds to `counts`; returns the next free segment number.
    """
    data, grid, columns = job.data, job.grid, job.columns
    pos = grid.positions(tt)
    if len(pos) > 1 and np.any(np.diff(pos) <= 0):  # off the grid: only jumps of > 1.5 steps are gaps
        counts.irregular_series += 1
        step = np.diff(tt)
        pos = np.concatenate([[0], np.cumsum(np.where(step > 1.5 * np.median(step), data.max_fill + 2, 1))])
    n = int(pos[-1]) + 1
    present = np.zeros(n, dtype=bool)
    present[pos] = True
    grid_values, filled = {}, []
    for name, column in columns.items():
        if n == len(pos):  # every step is there: the values as they are (fill_column copies before it writes)
            arr = vals[name]
        else:
            arr = np.full(n, np.nan) if column.numeric else np.full(n, None, dtype=object)
            arr[pos] = vals[name]
        counts.missing_values += int(((np.isnan(arr) if column.numeric else arr == None) & present).sum())  # noqa: E711
        grid_values[name], did = timeseries.fill_column(arr, column.numeric, data.fill_missing, data.max_fill)
        filled.append(did)
    complete = np.ones(n, dtype=bool)
    for name, column in columns.items():
        arr = grid_values[name]
        complete &= ~np.isnan(arr) if column.numeric else arr != None  # noqa: E711
    counts.missing_timestamps += int((~present).sum())
    counts.filled_timestamps += int((~present & complete).sum())
    counts.filled_values += int(sum((did & present & complete).sum() for did in filled))
    keep = np.flatnonzero(complete)
    if not len(keep):
        return segment
    breaks = np.concatenate([[0], (np.diff(keep) > 1).astype("int64")])
    seg = segment + np.cumsum(breaks)
    counts.gaps += int(breaks.sum())
    stamps = _time_stamps(tt, pos, keep, present, grid) if job.timed else None
    parts_of = time_split(n, data.val_fraction, data.test_fraction)
    for split, r in parts_of.items():
        lo, hi = np.searchsorted(keep, [r.start, r.stop])
        counts.rows[split] += int(hi - lo)
        if hi > lo:
            slots = _slots(keep[lo:hi])  # no gap inside: views, not copies
            parts[split].append(SeriesRows({name: grid_values[name][slots] for name in columns},
                                           seg[lo:hi].astype("int64", copy=False),
                                           None if key is None else np.full(hi - lo, key, dtype=object),
                                           None if stamps is None else stamps[lo:hi]))
    return int(seg[-1]) + 1


def _time_stamps(tt: np.ndarray, pos: np.ndarray, keep: np.ndarray, present: np.ndarray, grid: Any) -> np.ndarray:
    """The time of each kept grid step (filled steps get their grid time): int64 ns or float numbers."""
    stamps = np.zeros(len(present), dtype=tt.dtype)
    stamps[pos] = tt
    made = keep[~present[keep]]
    if len(made):
        stamps[made] = grid.time_at(tt[0], made)
    return stamps if len(keep) == len(stamps) else stamps[keep]
