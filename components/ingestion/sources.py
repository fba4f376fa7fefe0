"""User data sources: the user's own files (csv, pairs, labelled, text) and prepared TFDS datasets.

Every reader yields records per split plus the rows it had to skip, each with `file:line` and
a reason (bad CSV line, missing field, empty sequence, non-numeric value, undecodable bytes,
sequence longer than `data.max_length`, an unreadable or repeated time). A missing value in a
time series (empty, NA, NaN, null) is not malformed: it is a gap, or filled (`timeseries.py`).
Nothing is dropped silently: the validation stage fails the run when more than
`data.max_bad_fraction` of the rows are bad. Problems with a
whole file (missing, empty, not UTF-8 text, a column that is not there or has the wrong type)
raise `DataSourceError`, which the CLI prints as one paragraph.

Splits are deterministic and leak-free: i.i.d. records (pairs, labelled) by a seeded hash of
the input (so duplicates share a split); time series (each series of `data.id_column` on its
own) by time and text by position (contiguous, `data.val_fraction` / `data.test_fraction` at the
end), never shuffled across a boundary.
"""

from __future__ import annotations

import codecs
import csv
import json
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from components.config import DataConfig
from components.stage_files import SPLITS

from . import timeseries
from .bundled import hash_split, time_split

HEADER_NAMES = {"input", "output", "source", "target", "x", "y", "sequence", "text", "label"}


class DataSourceError(RuntimeError):
    """A data file or dataset cannot be used as a whole (missing, empty, not UTF-8, wrong columns)."""


@dataclass
class Rows:
    """Lines of one user file, with the malformed ones recorded as `file:line: reason`."""

    path: Path
    bad: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def skip(self, line: int, reason: str) -> None:
        self.bad.append({"where": f"{self.path.name}:{line}", "reason": reason})

    def lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of every non-blank line; undecodable lines are recorded and skipped."""
        for number, raw in enumerate(read_bytes(self.path).split(b"\n"), start=1):
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue
            self.total += 1
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.skip(number, f"not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})")


def read_bytes(path: Path) -> bytes:
    """The file's bytes (BOM removed); a clear error if it is missing, empty or not UTF-8 text."""
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(f"data file '{path}' does not exist (or is not a file).")
    raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if not raw.strip():
        raise DataSourceError(f"data file '{path}' is empty: there is nothing to train on.")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw[:4096]:
        raise DataSourceError(
            f"data file '{path}' is not UTF-8 text (it looks like UTF-16 or a binary file); "
            f"re-save it as UTF-8.")
    sample = raw[:65536]
    bad_lines = sum(_undecodable(line) for line in sample.split(b"\n")[:-1] or [sample])
    if bad_lines > max(3, len(sample.split(b"\n")) // 2):
        raise DataSourceError(
            f"data file '{path}' is not UTF-8 text (most lines do not decode; Latin-1 or another "
            f"legacy encoding?); re-save it as UTF-8.")
    return raw


def _undecodable(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def tokens(text: str, tokenize: str) -> list[str]:
    return list(text) if tokenize == "char" else text.split()


def target_tokenize(data: DataConfig) -> str:
    return data.target_tokenize or data.tokenize


# --------------------------------------------------------------------------------------------
# Sequence pairs and labelled sequences (TSV or JSONL), split by a seeded hash of the input


PAIR_FIELDS = {"pairs": (("input", "source", "x"), ("output", "target", "y")),
               "labelled": (("sequence", "text", "input", "x"), ("label", "y", "output", "target"))}


def load_records(data: DataConfig, kind: str) -> tuple[dict[str, list[dict[str, Any]]], Rows]:
    """(x, y) records of a pairs / labelled file, per split."""
    rows = Rows(Path(data.path))
    as_json = rows.path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    x_names, y_names = PAIR_FIELDS[kind]
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for number, text in rows.lines():
        got = json_fields(text, x_names, y_names) if as_json else _tsv_fields(text, number)
        if isinstance(got, str):
            if got:
                rows.skip(number, got)
            else:  # a header line
                rows.total -= 1
            continue
        x, y = got
        problem = _check_pair(x, y, kind, data)
        if problem:
            rows.skip(number, problem)
            continue
        if kind == "labelled":
            y = str(y).strip()
        splits[hash_split(f"{data.split_seed}:{x}", data.val_fraction, data.test_fraction)].append({"x": x, "y": y})
    return splits, rows


def _tsv_fields(text: str, number: int) -> tuple[str, str] | str:
    parts = text.split("\t")
    if len(parts) != 2:
        return f"expected 2 tab-separated fields, found {len(parts)}"
    if number == 1 and {p.strip().lower() for p in parts} <= HEADER_NAMES:
        return ""
    return parts[0], parts[1]


def json_fields(text: str, *groups: tuple[str, ...]) -> tuple[Any, ...] | str:
    """The value of the first present name of each group in a JSONL line, or why there is none
    (also used by `rnnpipe predict` for its input field)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(obj, dict):
        return f"expected a JSON object, found {type(obj).__name__}"
    values = []
    for names in groups:
        key = next((n for n in names if n in obj), None)
        if key is None:
            return f"missing field '{names[0]}' (also accepted: {', '.join(names[1:])})"
        values.append(obj[key])
    return tuple(values)


def _check_pair(x: Any, y: Any, kind: str, data: DataConfig) -> str | None:
    """Why an (x, y) record is malformed, or None."""
    if not isinstance(x, str):
        return f"input is not a string ({type(x).__name__})"
    if kind == "pairs" and not isinstance(y, str):
        return f"output is not a string ({type(y).__name__})"
    if kind == "labelled" and (not isinstance(y, (str, int)) or isinstance(y, bool)):
        return f"label is not a string or whole number ({type(y).__name__})"
    sides = [("input", x, data.tokenize)] + ([("output", y, target_tokenize(data))] if kind == "pairs" else [])
    for side, value, tokenize in sides:
        n = len(tokens(value, tokenize))
        if n == 0:
            return f"empty {side} sequence"
        if data.max_length and n > data.max_length:
            return f"{side} has {n} tokens > data.max_length={data.max_length}"
    if kind == "labelled" and not str(y).strip():
        return "empty label"
    return None


# --------------------------------------------------------------------------------------------
# Plain text (language model), split by position


def load_text(data: DataConfig) -> tuple[dict[str, list[dict[str, Any]]], Rows]:
    """A plain text file -> one text record per split (train / validation / test, by position)."""
    rows = Rows(Path(data.path))
    text = "\n".join(line for _, line in rows.lines())
    if not text.strip():
        raise DataSourceError(f"data file '{rows.path}' has no readable text.")
    parts = time_split(len(text), data.val_fraction, data.test_fraction)
    return {split: [{"topic": rows.path.name, "text": text[r.start:r.stop]}] for split, r in parts.items()}, rows


# --------------------------------------------------------------------------------------------
# Time-series CSV


@dataclass
class Column:
    """What one CSV column holds: numbers or strings (missing values: empty, NA, NaN, null...)."""

    name: str
    numeric: bool
    missing: int = 0


def load_csv(data: DataConfig) -> tuple[dict[str, list[dict[str, Any]]], Rows, dict[str, Any]]:
    """A time-series CSV -> rows per split (each series split by time) + the columns used.

    Each record is {"values": {column: value}, "segment": n, "id": series, "time": label}
    ("id" with `data.id_column`, "time" with `data.time_column`). Rows are sorted by time within
    each series and placed on the grid of the inferred frequency (`timeseries.py`); a missing
    step or value that `data.fill_missing` does not fill starts a new segment, and windows
    never cross a segment, so no window hides a gap or spans two series.
    """
    rows = Rows(Path(data.path))
    lines = rows.lines()
    try:
        header_line, header_text = next(lines)
    except StopIteration:
        raise DataSourceError(f"data file '{rows.path}' has no readable lines.") from None
    rows.total -= 1
    header = [h.strip() for h in next(csv.reader([header_text]))]
    targets, features = _csv_columns(header, data, rows.path)
    used = list(dict.fromkeys([*targets, *features, *(c for c in (data.time_column, data.id_column) if c)]))
    pick = operator.itemgetter(*(header.index(name) for name in used), 0)  # always a tuple
    parsed: list[tuple[str, ...]] = []
    numbers_list: list[int] = []
    for number, text in lines:
        try:
            fields = next(csv.reader([text]))
        except csv.Error as exc:
            rows.skip(number, f"bad CSV line ({exc})")
            continue
        if len(fields) != len(header):
            rows.skip(number, f"expected {len(header)} fields, found {len(fields)}")
            continue
        parsed.append(pick(fields))
        numbers_list.append(number)
    if not parsed:
        raise DataSourceError(f"data file '{rows.path}' has a header but no usable rows.")
    numbers = np.array(numbers_list, dtype="int64")
    raw = {name: np.array([v.strip() for v in column], dtype=object) for name, column in zip(used, zip(*parsed))}
    absent = {name: timeseries.missing(raw[name]) for name in used}
    parsed_numbers = {name: _to_numbers(raw[name], absent[name]) for name in [*targets, *features]}
    columns = {name: _column_type(name, absent[name], parsed_numbers[name]) for name in [*targets, *features]}
    _check_columns(columns, targets, features, rows.path, numbers, raw, absent)
    values, problems = _csv_values(columns, raw, absent, parsed_numbers, data)
    times = None
    if data.time_column:
        try:
            times = timeseries.parse_times(raw[data.time_column], data.time_format)
        except ValueError as exc:  # only a bad data.time_format gets here (values are coerced)
            raise DataSourceError(f"data.time_format={data.time_format!r} cannot read column "
                                  f"{data.time_column!r} of '{rows.path}': {exc}") from None
        for i in np.flatnonzero(~times.ok):
            problems.setdefault(int(i), f"unreadable time {raw[data.time_column][i]!r} in column "
                                        f"{data.time_column!r}" + (f" (data.time_format={data.time_format!r})"
                                                                   if data.time_format else ""))
    for i in sorted(problems):
        rows.skip(int(numbers[i]), problems[i])
    good = np.ones(len(parsed), dtype=bool)
    good[list(problems)] = False
    if times is not None:
        t = times.values
    ids = raw[data.id_column] if data.id_column else np.full(len(parsed), "", dtype=object)
    if times is None and data.id_column:  # each series in file order: a skipped row of it is a gap
        import pandas as pd

        t = pd.Series(ids).groupby(ids).cumcount().to_numpy(dtype="int64")
    elif times is None:  # file order: a skipped line leaves a hole in the positions (a gap)
        lines_seen = np.sort(np.concatenate([numbers, [int(b["where"].rsplit(":", 1)[1]) for b in rows.bad]]))
        t = np.searchsorted(lines_seen, numbers).astype("int64")
    keys, code = np.unique(ids[good].astype(str), return_inverse=True)
    rows_good = np.flatnonzero(good)
    ranked = rows_good[np.lexsort((rows_good, t[rows_good], code))]  # by series, then time, then line
    bounds = np.searchsorted(np.sort(code), np.arange(len(keys) + 1))
    series = [(str(key), _drop_duplicate_times(ranked[bounds[k]:bounds[k + 1]], t, numbers, rows))
              for k, key in enumerate(keys)]
    repeated = int(good.sum()) - sum(len(o) for _, o in series)  # rows dropped as duplicate times
    if times is not None and not data.id_column and repeated > max(2, 0.1 * good.sum()):
        raise DataSourceError(
            f"{repeated} of {int(good.sum())} rows of '{rows.path}' repeat the time of another row "
            f"(e.g. {next(b['where'] for b in rows.bad if b['reason'].startswith('duplicate time'))}): is it "
            f"several series in one file? Set data.id_column to the column that names each series.")
    grid = timeseries.infer_grid([t[o] for _, o in series], times)
    counts = timeseries.Counts(series=len(series), rows={s: 0 for s in SPLITS})
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    segment = 0
    for key, order in series:
        segment = _series_records(key if data.id_column else None, order, t, times, grid, columns, values,
                                  data, counts, splits, segment)
    if counts.irregular_series:
        counts.missing_timestamps = None
    info = {"targets": targets, "features": features,
            "target_type": "numeric" if columns[targets[0]].numeric else "string",
            "columns": {c.name: {"type": "numeric" if c.numeric else "string", "missing": c.missing}
                        for c in columns.values()},
            "frequency": grid.frequency if data.time_column else None,
            "series": {**counts.as_dict(), "fill_missing": data.fill_missing, "max_fill": data.max_fill,
                       "frequency": grid.frequency if data.time_column else None,
                       "id_column": data.id_column, "time_column": data.time_column}}
    return splits, rows, info


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


def _to_numbers(values: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """Each present value as a float (NaN where missing or not a finite number)."""
    import pandas as pd

    out = pd.to_numeric(pd.Series(np.where(absent, None, values), dtype=object), errors="coerce")
    out = out.to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isfinite(out), out, np.nan)


def _column_type(name: str, absent: np.ndarray, numbers: np.ndarray) -> Column:
    present = int((~absent).sum())
    numeric = int(np.isfinite(numbers).sum())
    return Column(name, numeric=bool(present) and numeric * 2 >= present, missing=int(absent.sum()))


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


def _drop_duplicate_times(order: np.ndarray, t: np.ndarray, numbers: np.ndarray, rows: Rows) -> np.ndarray:
    """Rows of one series sorted by time, without the later rows that repeat a time (recorded as bad)."""
    same = np.concatenate([[False], t[order][1:] == t[order][:-1]])
    if not same.any():
        return order
    kept = order[np.maximum.accumulate(np.where(~same, np.arange(len(order)), 0))]
    for i in np.flatnonzero(same):
        rows.skip(int(numbers[order[i]]), f"duplicate time (same as line {int(numbers[kept[i]])})")
    return order[~same]


def _series_records(key: str | None, order: np.ndarray, t: np.ndarray, times: Any, grid: Any,
                    columns: dict[str, Column], values: dict[str, np.ndarray], data: DataConfig,
                    counts: Any, splits: dict[str, list[dict[str, Any]]], segment: int) -> int:
    """Place one series on its grid, fill, cut it into gap-free segments, split it by time.

    Appends the records to `splits`, adds to `counts`; returns the next free segment number.
    """
    tt = t[order]
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
        if column.numeric:
            arr = np.full(n, np.nan)
        else:
            arr = np.full(n, None, dtype=object)
        arr[pos] = values[name][order]
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
    labels = _time_labels(tt, pos, keep, present, times, grid) if times is not None else None
    as_lists = {name: grid_values[name].tolist() for name in columns}
    parts = time_split(n, data.val_fraction, data.test_fraction)
    for split, r in parts.items():
        lo, hi = np.searchsorted(keep, [r.start, r.stop])
        counts.rows[split] += int(hi - lo)
        for j in range(lo, hi):
            slot = int(keep[j])
            record: dict[str, Any] = {"values": {name: as_lists[name][slot] for name in columns},
                                      "segment": int(seg[j])}
            if key is not None:
                record["id"] = key
            if labels is not None:
                record["time"] = labels[j]
            splits[split].append(record)
    return int(seg[-1]) + 1


def _time_labels(tt: np.ndarray, pos: np.ndarray, keep: np.ndarray, present: np.ndarray, times: Any,
                 grid: Any) -> list[Any]:
    """The time of each kept grid step (filled steps get their grid time), as a date / datetime string or number."""
    stamps = np.zeros(len(present), dtype=tt.dtype)
    stamps[pos] = tt
    made = keep[~present[keep]]
    if len(made):
        stamps[made] = grid.time_at(tt[0], made)
    stamps = stamps[keep]
    if times.datetime:
        unit = "D" if times.date_only else "s"
        return np.datetime_as_string(stamps.astype("datetime64[ns]"), unit=unit).tolist()
    return [int(v) if float(v).is_integer() else float(v) for v in stamps.tolist()]


# --------------------------------------------------------------------------------------------
# Any prepared tensorflow-datasets dataset


def load_tfds(data: DataConfig) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Read an already-prepared TFDS dataset (never downloads); returns records and x/y kinds."""
    import tensorflow_datasets as tfds

    from . import bundled  # noqa: F401  (registers the bundled builders by name)

    where = data.data_dir or str(bundled.DEFAULT_DATA_DIR)
    try:
        builder = tfds.builder(data.name, data_dir=where, try_gcs=False)
    except Exception as exc:  # noqa: BLE001 - tfds raises several kinds here
        raise DataSourceError(
            f"tfds dataset {data.name!r} was not found in data.data_dir={where!r} ({type(exc).__name__}). "
            f"Prepare it once where the network is reachable (`tfds build {data.name} --data_dir {where}`); "
            f"rnnpipe never downloads.") from None
    if not builder.is_prepared():
        raise DataSourceError(
            f"tfds dataset {data.name!r} is not prepared in data.data_dir={where!r}. Prepare it once where "
            f"the network is reachable (`tfds build {data.name} --data_dir {where}`); rnnpipe never downloads.")
    features = builder.info.features
    x_key, y_key = _tfds_keys(builder, data)
    kinds = {"x": _tfds_kind(features[x_key], "x", data), "y": _tfds_kind(features[y_key], "y", data)}
    available = list(builder.info.splits)
    source = {s: s for s in SPLITS if s in available}
    base = "train" if "train" in available else available[0]
    read = bundled.read_builder(builder, tuple(dict.fromkeys([*source.values(), base])), limit=data.max_examples)
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        if split in source:
            splits[split] = [{"x": r[x_key], "y": r[y_key]} for r in read[split]]
    carve = [s for s in SPLITS if s not in source]
    if carve:  # hash-split the missing splits out of the base split
        fractions = {"validation": data.val_fraction if "validation" in carve else 0.0,
                     "test": data.test_fraction if "test" in carve else 0.0}
        kept = []
        for i, r in enumerate(read[base]):
            split = hash_split(f"{data.split_seed}:{i}", fractions["validation"], fractions["test"])
            (kept if split == "train" else splits[split]).append({"x": r[x_key], "y": r[y_key]})
        splits[base if base in SPLITS else "train"] = kept
    return splits, kinds


def _tfds_keys(builder: Any, data: DataConfig) -> tuple[str, str]:
    names = list(builder.info.features)
    keys = builder.info.supervised_keys
    x_key = data.feature_columns[0] if data.feature_columns else (keys[0] if keys else None)
    y_key = data.target_columns[0] if data.target_columns else (keys[1] if keys else None)
    if not isinstance(x_key, str) or not isinstance(y_key, str):
        raise DataSourceError(
            f"tfds dataset {data.name!r} has no (input, target) supervised keys; name them with "
            f"data.feature_columns=[INPUT] and data.target_columns=[TARGET] (features: {', '.join(names)}).")
    for key in (x_key, y_key):
        if key not in names:
            raise DataSourceError(f"tfds dataset {data.name!r} has no feature {key!r}; it has: {', '.join(names)}.")
    return x_key, y_key


def _tfds_kind(feature: Any, side: str, data: DataConfig) -> dict[str, Any]:
    """The data-contract kind of one TFDS feature."""
    import tensorflow_datasets as tfds

    if isinstance(feature, tfds.features.ClassLabel):
        return {"kind": "label" if side == "y" else "category"}
    if isinstance(feature, tfds.features.Text):
        return {"kind": "tokens", "tokenize": data.tokenize if side == "x" else target_tokenize(data)}
    shape = tuple(getattr(feature, "shape", ()) or ())
    dtype = str(getattr(feature, "dtype", ""))
    if ("float" in dtype or "int" in dtype) and len(shape) in (1, 2) and side == "x":
        return {"kind": "vector" if len(shape) == 1 else "series"}
    if ("float" in dtype or "int" in dtype) and len(shape) == 2 and side == "y":
        return {"kind": "series"}
    raise DataSourceError(
        f"tfds feature of type {type(feature).__name__} {shape} cannot be the {side} side; supported: "
        f"Text, ClassLabel, numeric Tensor of shape (n,) or (steps, n).")
