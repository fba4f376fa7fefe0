"""Ingestion stage: a data source -> train/validation/test examples + their spec.

inputs -> outputs: (none) -> `<split>.jsonl` (one {"x": ..., "y": ...} per line) or, for a csv
source, `<split>.parquet` (its rows once; windows are cut where they are read: `windows.py`,
recipe in spec.json "windows"), `spec.json` (the kind
of x and y, see below; csv: its columns and `series`, what was missing / filled) and
`bad_rows.json` (malformed rows with file:line). The properties carry `frequency` (hourly,
daily, ... for a time series, else None) and the csv fill counts as `metrics`.

Kinds of x / y (raw values; all encoding happens in preprocessing, inside the exported model):
- `tokens`: a string, split into chars or words (`tokenize`) by the model's own graph
- `category`: a string naming one class used as an input (one_to_many)
- `vector`: a fixed-length list of floats
- `series`: a list of time steps, each a list of floats (features; `columns` names them)
- `label`: a string class (output of classifiers)
- `labels`: a list of string classes, one per time step (synced tagging)

A `tokens` y with `"language_model": true` is the x text shifted by one token (next-token
prediction, aligned step by step with x). Sources: the bundled datasets (`names`, `digits`,
`seattle_weather`, `seattle_temps`, `pydoc_topics`, `cmudict`; see `bundled.py`) and the user
sources `csv`, `pairs`, `labelled`, `text`, `tfds` (see `sources.py`). Each source lists the
topologies it feeds; `check` rejects any other pairing before any work is done.

Layout: `catalogue.py` (the `SOURCES` table, `Task` / `Loaded` / `Source`, the pre-run checks),
`examples.py` (records -> examples, the example files),
`windows.py` (a CSV's rows and lazy windows), `beam.py` (`data.runner: beam`), `stage.py` (`run`),
`sources.py` / `csv_source.py` (+ `csv_read.py`) / `readers.py` (user files), `bundled.py`, `timeseries.py`.
This package only re-exports their public names.
"""

from __future__ import annotations

from .catalogue import (
    CHAR_TOKENS,
    CONFIG_TOKENS,
    LABEL,
    LABELS,
    LM_TARGET,
    SERIES,
    SOURCES,
    XY,
    Loaded,
    Source,
    Task,
    check,
    check_model,
    csv_kinds,
    declared_kinds,
)
from .examples import (
    DAY,
    WEATHER_COLUMNS,
    WEATHER_MEASURES,
    Example,
    Make,
    groups,
    hourly_forecast,
    language_model,
    read_examples,
    weather_day,
    weather_next_day,
    weather_tagging,
    window_starts,
    write_examples,
)
from .sources import DataSourceError
from .stage import SERIES_METRICS, read_spec, read_split, resolve_kinds, run, series_line
from .windows import SeriesRows, Windows

__all__ = [
    "CHAR_TOKENS", "CONFIG_TOKENS", "DAY", "LABEL", "LABELS", "LM_TARGET", "SERIES", "SERIES_METRICS", "SOURCES",
    "WEATHER_COLUMNS", "WEATHER_MEASURES", "XY", "DataSourceError", "Example", "Loaded", "Make", "Source", "Task",
    "check", "check_model", "csv_kinds", "declared_kinds", "groups", "hourly_forecast",
    "language_model", "read_examples", "read_split", "read_spec", "SeriesRows", "Windows", "resolve_kinds",
    "run", "series_line", "weather_day",
    "weather_next_day", "weather_tagging", "window_starts", "write_examples",
]
