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

Layout: this module holds the sequence pairs / labelled sequences (TSV or JSONL), plain text and
TFDS sources; the time-series CSV source is in `csv_source.py` and the shared readers
(`DataSourceError`, `Rows`, `read_bytes`) in `readers.py`, both re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.config import DataConfig
from components.kinds.tokens import tokens_of
from components.stage_files import SPLITS

from .bundled import hash_split, time_split
from .csv_source import Column, load_csv
from .readers import DataSourceError, Rows, read_bytes, target_tokenize

__all__ = ["HEADER_NAMES", "PAIR_FIELDS", "Column", "DataSourceError", "Rows", "json_fields", "load_csv",
           "load_records", "load_text", "load_tfds", "read_bytes", "target_tokenize"]

HEADER_NAMES = {"input", "output", "source", "target", "x", "y", "sequence", "text", "label"}


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
        n = len(tokens_of(value, tokenize))
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
