"""The ingestion stage itself: load the configured source, shape it for the topology, write the splits.

Here live `run` (the stage function wired in `pipeline/stages.py`), `resolve_kinds` (the x / y
kinds of this run's spec, checked against the topology), the dropping of empty inputs, the
seeded order-keeping sample of `data.max_examples`, the one-line summary of a CSV's series
(`series_line`, `SERIES_METRICS`) and `read_spec`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import stage_files as files
from components.config import DataConfig
from components.kinds.tokens import tokens_of

from . import sources, windows
from .catalogue import SOURCES, Loaded, Task
from .examples import Example, read_examples, write_examples
from .sources import DataSourceError
from .windows import SeriesRows, Windows


def resolve_kinds(task: Task, loaded: Loaded, data: DataConfig, topology: str) -> tuple[dict, dict]:
    """The x / y kinds of this run's spec (tokenizers from the config), checked against the topology."""
    x, y = task.kinds(loaded, data) if task.kinds else (dict(task.x), dict(task.y))
    x, y = dict(x), dict(y)
    if x.get("tokenize") == "config":
        x["tokenize"] = data.tokenize
    if y.get("tokenize") == "config":
        y["tokenize"] = data.tokenize if y.get("language_model") else sources.target_tokenize(data)
    from models.io import fit_error  # the one compatibility table (models.io.FITS)

    problem = fit_error(topology, x["kind"], y["kind"], source=data.source)
    if problem:
        raise DataSourceError(problem)
    return x, y


def run(inputs: dict, workdir: Path, ctx: Any, *, data: DataConfig, topology: str) -> dict[str, Any]:
    """Load the source, shape it for the topology, cap each split and write it out."""
    loaded = SOURCES[data.source].load(data)
    try:
        return _write(loaded, workdir, ctx, data, topology)
    finally:  # rows a Beam pipeline wrote that did not move into this stage's output (a later error)
        from .beam import ShardedRows

        for rows in loaded.splits.values():
            if isinstance(rows, ShardedRows):
                rows.discard()


def _write(loaded: Loaded, workdir: Path, ctx: Any, data: DataConfig, topology: str) -> dict[str, Any]:
    source = SOURCES[data.source]
    task = source.tasks[topology]
    x_kind, y_kind = resolve_kinds(task, loaded, data, topology)
    counts = {}
    spec = {"x": x_kind, "y": y_kind, "topology": topology, "source": data.source}
    if task.make is None:  # a CSV: each split's rows once; windows are cut where they are read
        spec["windows"] = windows.recipe(data, topology, loaded.info)
        for split in files.SPLITS:
            rows = loaded.splits[split]
            rows.write(workdir / files.rows_file(split))  # a file, or a folder of shards (data.runner: beam)
            segment = rows.segment if isinstance(rows, SeriesRows) else \
                dict(SeriesRows.columns(workdir / files.rows_file(split), ["segment"]))["segment"]
            counts[split] = len(windows.starts_of(segment, spec["windows"]))
    for split in files.SPLITS if task.make else ():
        examples = _drop_empty(task.make(loaded.splits.get(split, []), data), split, loaded, x_kind)
        if data.max_examples is not None and len(examples) > data.max_examples:
            examples = _sample(examples, data.max_examples, data.split_seed)
        write_examples(workdir / files.examples_file(split), examples)
        counts[split] = len(examples)
    if data.future_columns:  # each window's "future": those columns at the horizon steps
        spec["future"] = {"columns": list(data.future_columns)}
    if "columns" in loaded.info:  # a user CSV: each column's type and missing count
        spec["columns"] = loaded.info["columns"]
    series = loaded.info.get("series")
    if series:  # a user CSV: series, frequency, what was missing / filled, steps per split
        spec["series"] = series
    frequency = loaded.info["frequency"] if "frequency" in loaded.info else source.frequency
    (workdir / files.SPEC).write_text(json.dumps(spec, indent=2))
    (workdir / files.BAD_ROWS).write_text(
        json.dumps({"total_rows": loaded.total_rows, "bad_rows": loaded.bad_rows}, indent=2)
    )
    ctx.log(f"{data.source}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
            + (f"; {len(loaded.bad_rows)} of {loaded.total_rows} rows malformed" if loaded.bad_rows else ""))
    metrics = {f"examples_{k}": v for k, v in counts.items()}
    if series:
        ctx.log(series_line(series))
        metrics.update({f"data_{k}": series[k] for k in SERIES_METRICS if series.get(k) is not None})
    return {
        "counts": counts,
        "spec": spec,
        "frequency": frequency,
        "bad_rows": len(loaded.bad_rows),
        "total_rows": loaded.total_rows,
        "summary": " ".join(f"{k}={v}" for k, v in counts.items()),
        "metrics": metrics,
    }


SERIES_METRICS = ("series", "missing_values", "missing_timestamps", "filled_values", "filled_timestamps", "gaps")


def series_line(series: dict[str, Any]) -> str:
    """One line on a CSV's series: how many, their frequency, what was missing, filled and left as gaps."""
    timestamps = series["missing_timestamps"]
    fill = (f"filled {series['filled_values']} values and {series['filled_timestamps']} timestamps "
            f"({series['fill_missing']}, runs of <= {series['max_fill']} steps)" if series["fill_missing"] != "none"
            else "nothing filled (data.fill_missing=none)")
    return (f"{series['series']} series, frequency {series['frequency'] or 'unknown'}: "
            f"{series['missing_values']} missing values, "
            f"{'an irregular number of' if timestamps is None else timestamps} missing timestamps; {fill}; "
            f"{series['gaps']} gaps left (no window spans one)"
            + (f"; {series['irregular_series']} series off the time grid" if series.get("irregular_series") else ""))


def _drop_empty(examples: list[Example], split: str, loaded: Loaded, x_kind: dict[str, Any]) -> list[Example]:
    """Leave out (and record) examples with an empty input: an empty sequence breaks cuDNN masking."""
    kept = []
    for i, example in enumerate(examples):
        x = example[0]
        if x is None or x == [] or (isinstance(x, str) and not tokens_of(x, x_kind.get("tokenize", "char"))):
            loaded.bad_rows.append({"where": f"{split} example {i + 1}", "reason": "empty input sequence"})
        else:
            kept.append(example)
    return kept


def _sample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """A seeded sample of n examples that keeps their original order (time order survives)."""
    return [examples[i] for i in windows.sample_positions(len(examples), n, seed)]


def read_spec(artifact: Any) -> dict[str, Any]:
    return files.spec(artifact)


def read_split(ingest: Any, split: str, spec: dict[str, Any] | None = None) -> Windows | list[Example]:
    """One split of the ingest output: a CSV's `Windows` (cut lazily from its rows), else its
    (x, y, meta) examples."""
    spec = spec or read_spec(ingest)
    if spec.get("windows"):
        return Windows.read(ingest.path(files.rows_file(split)), spec["windows"])
    return read_examples(ingest.path(files.examples_file(split)), meta=True)
