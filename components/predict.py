"""Batch inference (TFX BulkInferrer, `ludwig predict`): `rnnpipe predict EXPORT_OR_CONFIG --input FILE`.

Runs a published (or stage-output) SavedModel's `serving_default` over a whole file and writes
the predictions as CSV (or JSONL when `--output` ends in .jsonl):

- a time-series export (`data.source: csv`): the file is read exactly as ingestion reads it
  (`components/ingestion/sources.load_csv`: time parsing, sorting, frequency, ids, fills, gaps,
  malformed rows) with the export's own data settings; for each series the last
  `data.window` gap-free steps are the input and the output is the forecast past the end of the
  series, one row per step with its time stamp (`id`, `time`, `step`, then one column per target;
  with quantiles also `<target>_q<level>`; a classifier: `label`, `confidence`). A model with
  known future inputs (`data.future_columns`) reads them from the rows after the last target value
  of each series: the target columns empty, the future columns filled, one row per forecast step
  (`split_future`); missing or misplaced ones are a clear error. A model with a series-id input
  (`model.id_embedding_dim`) gets each series' id.
- any other export: one prediction per input line; the input is a JSONL object's input field
  (`input`, `source`, `x`, `sequence`, `text`), the first field of a TSV line, or the whole line
  of a plain text file (a JSON list for numeric inputs). Every output of the signature is a
  column (lists as JSON).

The export says how its data was read in `assets.extra/rnnpipe_data.json` (written by the export
stage); given a config instead, its latest published version under `export.dir/<name>` is used
with the config's data settings. Work runs in batches of `batch_size` with a progress line on
stderr; malformed rows are skipped and listed (`file:line: reason`), as ingestion does.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from components import kinds
from components import stage_files as files
from components.serving.protocol import text as _text

INPUT_FIELDS = ("input", "source", "x", "sequence", "text")


class PredictError(RuntimeError):
    """The export or the input file cannot be used (one clear message)."""


def resolve(target: str) -> tuple[Path, dict[str, Any]]:
    """EXPORT_OR_CONFIG -> (SavedModel folder, its data description)."""
    from components import config as cfgmod

    path = Path(target)
    if not path.exists():
        raise PredictError(f"{target!r} does not exist: give an export folder (exports/<name>[/<version>]) "
                           f"or the pipeline's YAML config.")
    override = None
    if path.is_file():
        config = cfgmod.load(path)
        path = Path(config.export.dir) / config.name
        override = config.data
        if not path.is_dir():
            raise PredictError(f"config {target!r} has no published export under {path} yet: run it first "
                               f"(rnnpipe run {target}).")
    if not (path / "saved_model.pb").is_file():
        if (path / files.SAVED_MODEL / "saved_model.pb").is_file():  # an export stage output
            path = path / files.SAVED_MODEL
        else:
            versions = sorted((n, p) for p in path.iterdir() if p.is_dir() for n in [files.version_number(p.name)]
                              if n is not None and (p / "saved_model.pb").is_file())
            if not versions:
                raise PredictError(f"no SavedModel in {path} (no saved_model.pb, no numeric version folders).")
            path = versions[-1][1]
    described = path / files.DATA_DESCRIPTION
    if not described.is_file():
        raise PredictError(f"the export {path} does not describe its data ({files.DATA_DESCRIPTION} is missing: it was "
                           f"exported before `rnnpipe predict` existed); export it again.")
    info = json.loads(described.read_text())
    if override is not None:
        from components.config import to_plain

        info["data"] = to_plain(override)
    return path, info


def _data_config(info: dict[str, Any], input_path: Path) -> Any:
    from components.config import DataConfig, from_dict

    data = from_dict({"name": "predict", "data": info["data"]}).data
    assert isinstance(data, DataConfig)
    return replace(data, path=str(input_path), val_fraction=0.0, test_fraction=0.0, max_examples=None)


def _batches(items: list[Any], size: int) -> Iterator[tuple[int, list[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


def _progress(done: int, total: int, out: Any) -> None:
    print(f"\rpredict: {done}/{total} ({100 * done / max(total, 1):.0f}%)", end="" if done < total else "\n",
          file=out, flush=True)


def _report_bad(rows: Any, log: Any) -> list[dict[str, Any]]:
    bad = list(rows.bad)
    if bad:
        print(f"predict: {len(bad)} of {rows.total} rows malformed, skipped:", file=log)
        for b in bad[:10]:
            print(f"  {b['where']}: {b['reason']}", file=log)
        if len(bad) > 10:
            print(f"  ... and {len(bad) - 10} more", file=log)
    return bad


def run(target: str, input_path: str, output: str | None = None, batch_size: int = 256,
        log: Any = None) -> dict[str, Any]:
    """Predict every row / series of `input_path`; returns {output, rows, bad} (progress to `log`, default stderr)."""
    import tensorflow as tf

    log = log if log is not None else sys.stderr  # read when called: a stream bound at import time may be closed

    source = Path(input_path)
    if not source.is_file():
        raise PredictError(f"--input {input_path!r} is not a file.")
    path, info = resolve(target)
    out_path = Path(output) if output else source.with_name(source.stem + ".predictions.csv")
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    call: Callable[..., dict[str, np.ndarray]] = lambda x, **named: {  # noqa: E731
        k: v.numpy() for k, v in fn(inputs=x, **named).items()}
    if info["data"].get("source") == "csv":
        header, rows, bad = _predict_series(call, info, source, batch_size, log)
    else:
        header, rows, bad = _predict_lines(call, info, source, batch_size, log)
    _write(out_path, header, rows)
    print(f"predict: {len(rows)} rows -> {out_path} (model {path})", file=log)
    return {"output": str(out_path), "rows": len(rows), "bad": bad}


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        path.write_text("".join(json.dumps(dict(zip(header, r)), ensure_ascii=False) + "\n" for r in rows))
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        writer.writerow(header)
        writer.writerows([[json.dumps(v) if isinstance(v, (list, dict)) else v for v in r] for r in rows])


# --------------------------------------------------------------------------------------------
# Time series: the forecast past the end of each series


def _predict_series(call: Callable[[Any], dict[str, np.ndarray]], info: dict[str, Any], source: Path,
                    batch_size: int, log: Any) -> tuple[list[str], list[list[Any]], list[dict]]:
    import tempfile

    import tensorflow as tf

    from components.ingestion.sources import load_csv
    from components.ingestion.windows import time_labels

    data = _data_config(info, source)
    names = set(fn_inputs(info))
    future_cols = list(data.future_columns) if "future" in names else []
    with tempfile.TemporaryDirectory(prefix="rnnpipe-predict-") as tmp:
        history, ahead = split_future(source, data, Path(tmp)) if future_cols else (source, {})
        splits, file_rows, loaded = load_csv(replace(data, path=str(history)))
    bad = _report_bad(file_rows, log)
    rows = splits["train"]
    x_cols = info["columns"]["x"] or loaded["targets"] + loaded["features"]
    y = info["io"]["y"]
    frequency = loaded.get("frequency")
    ids = rows.id if rows.id is not None else np.full(len(rows), None, dtype=object)
    ends = np.flatnonzero(np.r_[ids[1:] != ids[:-1], True]) if len(rows) else np.zeros(0, "int64")
    new_run = np.r_[True, rows.segment[1:] != rows.segment[:-1]] if len(rows) else np.zeros(0, bool)
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(len(rows)), 0))  # each row's gap-free run
    inputs, keys, futures = [], [], []
    for end in ends:  # each series' last row (series are contiguous, in time order)
        key = ids[end]
        last = np.arange(max(run_start[end], end + 1 - data.window), end + 1)  # its last gap-free run
        time = None if rows.time is None else time_labels(rows.time[end:end + 1], loaded.get("time_kind"))[0]
        if len(last) < data.window:
            print(f"predict: series {key if key is not None else '(file)'} skipped: its last gap-free run has "
                  f"{len(last)} steps, the model reads {data.window}", file=log)
            continue
        if future_cols:  # the known future values of the horizon steps after the window
            got = ahead.get("" if key is None else str(key), [])
            if len(got) < data.horizon:
                raise PredictError(
                    f"series {key if key is not None else '(file)'}: the model needs the known future values of "
                    f"{', '.join(future_cols)} for the {data.horizon} steps after the last target value, found "
                    f"{len(got)}: add {data.horizon} rows after the last value of each series with the target "
                    f"columns empty and {', '.join(future_cols)} filled.")
            check_future_times(got[:data.horizon], time, frequency, key)
            futures.append([values for _, values in got[:data.horizon]])
        inputs.append(np.stack([rows.values[c][last] for c in x_cols], axis=1).tolist())
        keys.append((key, time))
    if not inputs:
        raise PredictError(f"--input {str(source)!r} has no series with {data.window} gap-free steps "
                           f"(data.window) to forecast from.")
    has_id = data.id_column is not None
    header = (["id"] if has_id else []) + ["time", "step"]
    targets = [str(c) for c in (info["columns"]["y"] or loaded["targets"])]
    levels = info.get("quantiles") or []
    header += kinds.of(y).window_header(targets, levels)
    rows: list[list[Any]] = []
    for start, batch in _batches(inputs, batch_size):
        named = {}
        if future_cols:
            named["future"] = tf.constant(np.asarray(futures[start:start + len(batch)], dtype="float32"))
        if "series_id" in names:
            named["series_id"] = tf.constant(["" if k is None else str(k) for k, _ in keys[start:start + len(batch)]])
        out = call(tf.constant(np.asarray(batch, dtype="float32")), **named)
        for i, (key, time) in enumerate(keys[start:start + len(batch)]):
            rows += _series_rows(out, i, key, time, info, data, frequency, has_id, levels)
        _progress(start + len(batch), len(inputs), log)
    return header, rows, bad


def fn_inputs(info: dict[str, Any]) -> list[str]:
    """The named inputs the export takes beside `inputs` (`future`, `series_id`), from its description."""
    return list(info.get("extra_inputs") or [])


def split_future(source: Path, data: Any, tmp: Path) -> tuple[Path, dict[str, list[tuple[Any, list[float]]]]]:
    """A file with known future values -> (the history: a copy without the future rows, {series id:
    [(time, future values)] in time order}).

    Future rows are the rows of a series after its last row with a target value whose target
    columns are all empty (`data.future_columns` filled). They are blanked in the copy (same name,
    same line numbers, so malformed rows are reported as in the input).
    """
    from components.ingestion import timeseries
    from components.ingestion.sources import read_bytes

    lines = read_bytes(source).decode("utf-8", "replace").split("\n")
    first = next(i for i, line in enumerate(lines) if line.strip())  # read_bytes refused a blank file
    header = [h.strip() for h in next(csv.reader([lines[first]]))]
    rows = []
    for i in range(first + 1, len(lines)):
        if lines[i].strip():
            fields = next(csv.reader([lines[i].rstrip("\r")]), [])
            if len(fields) == len(header):
                rows.append((i, [f.strip() for f in fields]))
    column = {name: header.index(name) for name in header}
    missing = [c for c in [*data.target_columns, *data.future_columns] if c not in column]
    if missing or not rows:
        return source, {}  # load_csv reports the missing column / empty file
    ids = [r[column[data.id_column]] if data.id_column else "" for _, r in rows]
    if data.time_column and data.time_column in column:
        times = timeseries.parse_times(np.array([r[column[data.time_column]] for _, r in rows], dtype=object),
                                       data.time_format)
        order = np.where(times.ok, times.values, np.nan).astype("float64")
    else:
        order = np.arange(len(rows), dtype="float64")
    targets = np.array([[r[column[c]] for c in data.target_columns] for _, r in rows], dtype=object)
    empty = np.all(np.stack([timeseries.missing(targets[:, j]) for j in range(targets.shape[1])], 1), axis=1)
    last: dict[str, float] = {}
    for k, key in enumerate(ids):
        if not empty[k] and np.isfinite(order[k]):
            last[key] = max(last.get(key, -np.inf), order[k])
    ahead: dict[str, list[tuple[float, Any, list[float]]]] = {}
    blank = set()
    for k, (i, fields) in enumerate(rows):
        if empty[k] and np.isfinite(order[k]) and order[k] > last.get(ids[k], np.inf):
            try:
                values = [float(fields[column[c]]) for c in data.future_columns]
            except ValueError:
                continue  # left in the history: load_csv reports it
            when = fields[column[data.time_column]] if data.time_column else None
            ahead.setdefault(ids[k], []).append((order[k], when, values))
            blank.add(i)
    copy = tmp / source.name
    copy.write_text("\n".join("" if i in blank else line for i, line in enumerate(lines)), encoding="utf-8")
    return copy, {key: [(when, values) for _, when, values in sorted(got, key=lambda g: g[0])]
                  for key, got in ahead.items()}


def check_future_times(got: list[tuple[Any, list[float]]], time: Any, frequency: str | None, key: Any) -> None:
    """The future rows must be the steps right after the window (a clear error names the expected time)."""
    from components.ingestion.timeseries import later_times

    if time is None or got[0][0] is None:
        return
    import pandas as pd

    expected = later_times(time, frequency, len(got))
    for step, ((when, _), want) in enumerate(zip(got, expected), start=1):
        if not want:
            return
        try:
            same = pd.Timestamp(str(when)) == pd.Timestamp(want) if not str(want).lstrip("-").isdigit() \
                else float(when) == float(want)
        except (ValueError, TypeError):
            same = False
        if not same:
            raise PredictError(f"series {key if key is not None else '(file)'}: the known future row for forecast "
                               f"step {step} has time {when!r}, expected {want!r} (the steps right after the "
                               f"last target value, with no gap).")


def _series_rows(out: dict[str, np.ndarray], i: int, key: Any, time: Any, info: dict[str, Any], data: Any,
                 frequency: str | None, has_id: bool, levels: list[float]) -> list[list[Any]]:
    lead = [key] if has_id else []
    return kinds.of(info["io"]["y"]).window_rows(out, i, lead, time, info["topology"], data, frequency, levels)




# --------------------------------------------------------------------------------------------
# Every other export: one prediction per line


def read_inputs(source: Path, numeric: bool) -> tuple[list[tuple[int, Any]], Any]:
    """(line number, input) of every usable line, and the Rows record of the skipped ones."""
    from components.ingestion.sources import HEADER_NAMES, Rows, json_fields

    rows = Rows(source)
    suffix = source.suffix.lower()
    out: list[tuple[int, Any]] = []
    for number, text in rows.lines():
        if suffix in (".jsonl", ".json", ".ndjson"):
            got = json_fields(text, INPUT_FIELDS)
            if isinstance(got, str):
                rows.skip(number, got)
                continue
            (value,) = got
        else:
            value = text.split("\t")[0] if suffix in (".tsv", ".csv") or "\t" in text else text
            if number == 1 and value.strip().lower() in HEADER_NAMES:
                rows.total -= 1
                continue
        if numeric:
            try:
                value = json.loads(value) if isinstance(value, str) else value
                arr = np.asarray(value, dtype="float32")
            except (ValueError, TypeError):
                rows.skip(number, "not a list of numbers")
                continue
            if not arr.size or not np.all(np.isfinite(arr)):
                rows.skip(number, "empty or non-finite numbers")
                continue
            value = arr.tolist()
        elif not str(value).strip():
            rows.skip(number, "empty input")
            continue
        out.append((number, value))
    return out, rows


def _predict_lines(call: Callable[[Any], dict[str, np.ndarray]], info: dict[str, Any], source: Path,
                   batch_size: int, log: Any) -> tuple[list[str], list[list[Any]], list[dict]]:

    kind = kinds.of(info["io"]["x"])
    numeric = not kind.strings
    items, file_rows = read_inputs(source, numeric)
    bad = _report_bad(file_rows, log)
    if not items:
        raise PredictError(f"--input {str(source)!r} has no usable rows.")
    header: list[str] = []
    rows: list[list[Any]] = []
    for start, batch in _batches(items, batch_size if not numeric or not kind.sequence else 1):
        out = call(kind.raw_tensor([v for _, v in batch]))
        if not header:
            header = ["line", "input", *sorted(out)]
        for i, (number, value) in enumerate(batch):
            rows.append([number, value if not numeric else json.dumps(value)]
                        + [_plain(out[k][i]) for k in header[2:]])
        _progress(start + len(batch), len(items), log)
    return header, rows, bad


def _plain(value: Any) -> Any:
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind == "S":
        return _text(arr.item()) if arr.ndim == 0 else [_text(v) for v in arr.reshape(-1).tolist()]
    return arr.item() if arr.ndim == 0 else arr.tolist()
