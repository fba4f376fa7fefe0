"""User data sources: the user's own files (csv, pairs, labelled, text) and prepared TFDS datasets.

Every reader yields records per split plus the rows it had to skip, each with `file:line` and
a reason (bad CSV line, missing field, empty sequence, non-numeric value, undecodable bytes,
sequence longer than `data.max_length`). Nothing is dropped silently: the validation stage
fails the run when more than `data.max_bad_fraction` of the rows are bad. Problems with a
whole file (missing, empty, not UTF-8 text, a column that is not there or has the wrong type)
raise `DataSourceError`, which the CLI prints as one paragraph.

Splits are deterministic and leak-free: i.i.d. records (pairs, labelled) by a seeded hash of
the input (so duplicates share a split); time series and text by position (contiguous,
`data.val_fraction` / `data.test_fraction` at the end), never shuffled across a boundary.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pipeline.config import DataConfig

from .bundled import SPLITS, hash_split, time_split

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
        got = _json_fields(text, x_names, y_names) if as_json else _tsv_fields(text, number)
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


def _json_fields(text: str, x_names: tuple[str, ...], y_names: tuple[str, ...]) -> tuple[Any, Any] | str:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(obj, dict):
        return f"expected a JSON object, found {type(obj).__name__}"
    values = []
    for names in (x_names, y_names):
        key = next((n for n in names if n in obj), None)
        if key is None:
            return f"missing field '{names[0]}' (also accepted: {', '.join(names[1:])})"
        values.append(obj[key])
    return values[0], values[1]


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
    """What one CSV column holds: numbers or strings."""

    name: str
    numeric: bool
    missing: int = 0


def load_csv(data: DataConfig) -> tuple[dict[str, list[dict[str, Any]]], Rows, dict[str, Any]]:
    """A time-series CSV -> rows per split (contiguous in time) + the columns used.

    Each record is {"t": time, "values": {column: value}, "segment": n}: a skipped row starts a
    new segment, and windows never cross a segment, so no window hides a gap.
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
    used = [*targets, *features] + ([data.time_column] if data.time_column else [])
    index = {name: header.index(name) for name in used}
    parsed: list[tuple[int, dict[str, str]]] = []
    for number, text in lines:
        try:
            fields = next(csv.reader([text]))
        except csv.Error as exc:
            rows.skip(number, f"bad CSV line ({exc})")
            continue
        if len(fields) != len(header):
            rows.skip(number, f"expected {len(header)} fields, found {len(fields)}")
            continue
        parsed.append((number, {name: fields[i].strip() for name, i in index.items()}))
    if not parsed:
        raise DataSourceError(f"data file '{rows.path}' has a header but no usable rows.")
    columns = {name: _column_type(name, [v[name] for _, v in parsed]) for name in [*targets, *features]}
    _check_columns(columns, targets, features, rows.path, parsed)
    good = []
    for number, values in parsed:
        record, problem = _csv_record(values, columns, data.time_column)
        if problem:
            rows.skip(number, problem)
        else:
            good.append((number, record))
    if data.time_column:
        good.sort(key=lambda item: item[1]["t"])
        good = _drop_duplicate_times(good, rows)
    bad_lines = sorted(int(b["where"].rsplit(":", 1)[1]) for b in rows.bad)
    segment, records = 0, []
    for i, (number, record) in enumerate(good):
        if i and _gap(good[i - 1][0], number, bad_lines):
            segment += 1
        records.append({**record, "segment": segment})
    parts = time_split(len(records), data.val_fraction, data.test_fraction)
    info = {"targets": targets, "features": features,
            "target_type": "numeric" if columns[targets[0]].numeric else "string",
            "columns": {c.name: {"type": "numeric" if c.numeric else "string", "missing": c.missing}
                        for c in columns.values()}}
    return {split: records[r.start:r.stop] for split, r in parts.items()}, rows, info


def _csv_columns(header: list[str], data: DataConfig, path: Path) -> tuple[list[str], list[str]]:
    """The target and feature columns (default features: every other column but the time)."""
    wanted = [*data.target_columns, *data.feature_columns] + ([data.time_column] if data.time_column else [])
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataSourceError(f"data file '{path}' has no column {missing[0]!r} (named in the config); "
                              f"its columns are: {', '.join(header)}.")
    targets = list(data.target_columns)
    features = list(data.feature_columns) or [c for c in header if c not in targets and c != data.time_column]
    return targets, [c for c in features if c not in targets]


def _as_float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _column_type(name: str, values: list[str]) -> Column:
    present = [v for v in values if v != ""]
    numbers = sum(_as_float(v) is not None for v in present)
    return Column(name, numeric=bool(present) and numbers * 2 >= len(present), missing=len(values) - len(present))


def _check_columns(columns: dict[str, Column], targets: list[str], features: list[str], path: Path,
                   parsed: list[tuple[int, dict[str, str]]]) -> None:
    """Fatal column problems: an all-empty target, a text feature, mixed target types."""
    for name in targets:
        if columns[name].missing == len(parsed):
            raise DataSourceError(f"target column {name!r} of '{path}' is empty in every row: nothing to learn.")
    for name in features:
        if not columns[name].numeric:
            number, values = next((n, v) for n, v in parsed if v[name] != "")
            raise DataSourceError(
                f"wrong column type: feature column {name!r} of '{path}' holds text (e.g. {values[name]!r} at "
                f"{path.name}:{number}), but features must be numbers; list the numeric ones in "
                f"data.feature_columns.")
    kinds = {columns[name].numeric for name in targets}
    if len(kinds) > 1 or (False in kinds and len(targets) > 1):
        raise DataSourceError(f"data.target_columns of '{path}' must be all numeric, or one text (class) column.")


def _csv_record(values: dict[str, str], columns: dict[str, Column], time_column: str | None
                ) -> tuple[dict[str, Any], str | None]:
    record: dict[str, Any] = {"values": {}}
    for name, column in columns.items():
        value = values[name]
        if value == "":
            return record, f"missing value in column {name!r}"
        if column.numeric:
            number = _as_float(value)
            if number is None:
                return record, f"non-numeric value {value!r} in column {name!r}"
            record["values"][name] = number
        else:
            record["values"][name] = value
    if time_column:
        stamp = _parse_time(values[time_column])
        if stamp is None:
            return record, f"unreadable time {values[time_column]!r} in column {time_column!r}"
        record["t"] = stamp
    return record, None


def _parse_time(value: str) -> float | None:
    """A time stamp as a sortable number (plain numbers, or dates pandas can read)."""
    number = _as_float(value)
    if number is not None:
        return number
    import pandas as pd

    try:
        return float(pd.Timestamp(value.replace("/", "-")).value)
    except (ValueError, TypeError, OverflowError):
        return None


def _drop_duplicate_times(good: list[tuple[int, dict]], rows: Rows) -> list[tuple[int, dict]]:
    out = []
    for number, record in good:
        if out and out[-1][1]["t"] == record["t"]:
            rows.skip(number, f"duplicate time (same as line {out[-1][0]})")
        else:
            out.append((number, record))
    return out


def _gap(a: int, b: int, bad_lines: list[int]) -> bool:
    """Whether a skipped line lies between file lines a and b."""
    lo, hi = min(a, b), max(a, b)
    i = bisect.bisect_right(bad_lines, lo)
    return i < len(bad_lines) and bad_lines[i] < hi


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
