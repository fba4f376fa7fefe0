"""The catalogue of data sources: which sources exist, what they need and which topologies they feed.

Here live `Task` (how one source feeds one topology: the x / y kinds and the shaper from
`examples.py`), `Loaded` (what a source loaded: records per split, bad rows, what it learnt),
`Source` (a named source: its loader, tasks, needed settings, frequency), the loaders of the
bundled datasets and user files, the `SOURCES` table itself, and the checks made before any
work (`check`, `check_model`, `declared_kinds`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from components.config import ConfigError, DataConfig
from models.spec import TOPOLOGIES

from . import bundled, sources
from .examples import (
    WEATHER_COLUMNS,
    Make,
    _digit_rows,
    _digit_series,
    _pairs,
    hourly_forecast,
    language_model,
    weather_next_day,
    weather_tagging,
)
from .sources import DataSourceError


@dataclass(frozen=True)
class Task:
    """How one source feeds one topology: the kinds of x and y and how records become examples.

    `kinds`, when set, decides the x/y kinds from what was loaded (user files) instead of x/y.
    A `tokenize` of "config" takes `data.tokenize` (x) or `data.target_tokenize` (y).
    """

    x: dict[str, Any]
    y: dict[str, Any]
    make: Make | None  # None: the rows are stored once and windows cut where they are read (windows.py)
    kinds: Callable[[Loaded, DataConfig], tuple[dict[str, Any], dict[str, Any]]] | None = None


@dataclass
class Loaded:
    """A source's records per split, the rows it had to skip and what it learnt about the data."""

    splits: dict[str, Any]  # {split: [record, ...]}, or a CSV's `SeriesRows`
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    total_rows: int = 0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """A named data source: how to load it, which topologies it feeds, which config it needs."""

    load: Callable[[DataConfig], Loaded]
    tasks: dict[str, Task]
    bundled: bool = True
    needs: tuple[str, ...] = ()
    frequency: str | None = None  # the time step of a bundled series (csv: inferred from the file)


def csv_kinds(topology: str) -> Callable[[Loaded, DataConfig], tuple[dict[str, Any], dict[str, Any]]]:
    """x: series of targets + features (features only for a text target); y: by topology and target type."""

    def kinds(loaded: Loaded, cfg: DataConfig) -> tuple[dict[str, Any], dict[str, Any]]:
        info = loaded.info
        text = info["target_type"] == "string"
        if text and not info["features"]:
            raise DataSourceError(f"target column {info['targets'][0]!r} holds text (classes), so the inputs "
                                  f"must come from other, numeric columns: set data.feature_columns.")
        if text and topology == "seq2seq":
            raise DataSourceError(f"seq2seq on a CSV forecasts numbers, but target column "
                                  f"{info['targets'][0]!r} holds text; use many_to_one or many_to_many.")
        x = {"kind": "series", "columns": info["features"] if text else info["targets"] + info["features"]}
        if text:
            y = {"kind": "label" if topology == "many_to_one" else "labels"}
        else:
            y = {"kind": "series", "columns": info["targets"]}
        return x, y

    return kinds


def _tfds_kinds(loaded: Loaded, cfg: DataConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    return loaded.info["x"], loaded.info["y"]


# --------------------------------------------------------------------------------------------
# Loaders


def _load_bundled(name: str) -> Callable[[DataConfig], Loaded]:
    def load(cfg: DataConfig) -> Loaded:
        splits = bundled.prepare(name, cfg.data_dir)
        return Loaded(splits, [], sum(len(v) for v in splits.values()))

    return load


def _load_user(kind: str) -> Callable[[DataConfig], Loaded]:
    def load(cfg: DataConfig) -> Loaded:
        if kind == "csv":
            splits, rows, info = sources.load_csv(cfg)
        elif kind == "text":
            (splits, rows), info = sources.load_text(cfg), {}
        else:
            (splits, rows), info = sources.load_records(cfg, kind), {}
        bad = sorted(rows.bad, key=lambda b: int(b["where"].rsplit(":", 1)[1]))  # in file order
        return Loaded(splits, bad, rows.total, info)

    return load


def _load_tfds(cfg: DataConfig) -> Loaded:
    splits, kinds = sources.load_tfds(cfg)
    return Loaded(splits, [], sum(len(v) for v in splits.values()), kinds)


CHAR_TOKENS = {"kind": "tokens", "tokenize": "char"}
CONFIG_TOKENS = {"kind": "tokens", "tokenize": "config"}
LM_TARGET = {"kind": "tokens", "tokenize": "config", "language_model": True}
SERIES, LABEL, LABELS = {"kind": "series"}, {"kind": "label"}, {"kind": "labels"}
XY = _pairs("x", "y")

SOURCES: dict[str, Source] = {
    "names": Source(
        load=_load_bundled("names"),
        tasks={
            "many_to_one": Task(CHAR_TOKENS, LABEL, _pairs("name", "gender")),
            "one_to_many": Task({"kind": "category"}, CHAR_TOKENS, _pairs("gender", "name")),
        },
    ),
    "digits": Source(
        load=_load_bundled("digits"),
        tasks={
            "one_to_one": Task({"kind": "vector"}, LABEL, _pairs("pixels", "label")),
            "one_to_many": Task({"kind": "category"}, {**SERIES, "columns": [f"col{i}" for i in range(8)]},
                                _digit_rows),
            "many_to_one": Task({**SERIES, "columns": [f"col{i}" for i in range(8)]}, LABEL, _digit_series),
        },
    ),
    "seattle_weather": Source(
        frequency="daily",
        load=_load_bundled("seattle_weather"),
        tasks={
            "many_to_one": Task({**SERIES, "columns": [*WEATHER_COLUMNS, *(f"was_{w}" for w in bundled.WEATHER)]},
                                LABEL, weather_next_day),
            "many_to_many": Task({**SERIES, "columns": list(WEATHER_COLUMNS)}, LABELS, weather_tagging),
        },
    ),
    "seattle_temps": Source(
        frequency="hourly",
        load=_load_bundled("seattle_temps"),
        tasks={"seq2seq": Task({**SERIES, "columns": ["temp", "temp_change_24h"]}, {**SERIES, "columns": ["temp"]},
                               hourly_forecast)},
    ),
    "pydoc_topics": Source(
        load=_load_bundled("pydoc_topics"),
        tasks={"many_to_many": Task({**CONFIG_TOKENS}, LM_TARGET, language_model)},
    ),
    "cmudict": Source(
        load=_load_bundled("cmudict"),
        tasks={"seq2seq": Task(CHAR_TOKENS, {"kind": "tokens", "tokenize": "word"}, _pairs("word", "phonemes"))},
    ),
    "csv": Source(
        load=_load_user("csv"),
        tasks={t: Task(SERIES, SERIES, None, csv_kinds(t))
               for t in ("many_to_one", "many_to_many", "seq2seq")},
        bundled=False,
        needs=("path", "target_columns"),
    ),
    "pairs": Source(load=_load_user("pairs"), tasks={"seq2seq": Task(CONFIG_TOKENS, CONFIG_TOKENS, XY)},
                    bundled=False, needs=("path",)),
    "labelled": Source(load=_load_user("labelled"), tasks={"many_to_one": Task(CONFIG_TOKENS, LABEL, XY)},
                       bundled=False, needs=("path",)),
    "text": Source(load=_load_user("text"), tasks={"many_to_many": Task(CONFIG_TOKENS, LM_TARGET, language_model)},
                   bundled=False, needs=("path",)),
    "tfds": Source(
        load=_load_tfds,
        tasks={t: Task({}, {}, XY, _tfds_kinds) for t in TOPOLOGIES},
        bundled=False,
        needs=("name",),
    ),
}


def check(data: DataConfig, topology: str) -> None:
    """Fail before any work if the source is unknown, cannot feed this topology or lacks settings."""
    source = SOURCES.get(data.source)
    if source is None:
        raise ConfigError(
            f"data.source={data.source!r} is not a known source. "
            f"Allowed values: {', '.join(sorted(SOURCES))}."
        )
    if topology not in source.tasks:
        raise ConfigError(
            f"data.source={data.source!r} cannot feed model.topology={topology!r}; "
            f"it feeds: {', '.join(source.tasks)}."
        )
    if data.path and not Path(data.path).exists():
        raise ConfigError(f"data.path={data.path!r} does not exist.")
    for key in source.needs:
        if not getattr(data, key):
            raise ConfigError(f"data.source={data.source!r} needs data.{key} "
                              f"({'the file to read' if key == 'path' else 'set it in the config'}).")
    series_only = [k for k in ("time_format", "id_column") if getattr(data, k)]
    series_only += ["fill_missing"] if data.fill_missing != "none" else []
    if series_only and data.source != "csv":
        raise ConfigError(f"data.{series_only[0]} applies to data.source='csv' (time series) only; "
                          f"data.source={data.source!r} reads no time series from a file.")
    if data.future_columns:
        if data.source != "csv":
            raise ConfigError(f"data.future_columns applies to data.source='csv' (time series) only; "
                              f"data.source={data.source!r} reads no time series from a file.")
        if topology != "seq2seq":
            raise ConfigError(f"data.future_columns feeds the known future values to the decoder of "
                              f"model.topology='seq2seq'; model.topology={topology!r} has no decoder for the "
                              f"horizon steps: use seq2seq or remove data.future_columns.")
        both = [c for c in data.future_columns if c in data.target_columns]
        if both:
            raise ConfigError(f"data.future_columns names {both[0]!r}, a target column: a target is not known "
                              f"ahead; remove it from data.future_columns.")
    if data.runner == "beam" or data.beam_options:
        if data.source != "csv":
            raise ConfigError(f"data.runner='beam' runs the csv source's per-series ingest as a Beam pipeline; "
                              f"data.source={data.source!r} runs locally: remove data.runner / data.beam_options.")
        if data.runner != "beam":
            raise ConfigError("data.beam_options is set but data.runner is 'local': set data.runner: beam.")
        from .beam import check_options

        check_options(data.beam_options)
    if data.time_format and not data.time_column:
        raise ConfigError("data.time_format is set but data.time_column is not: name the column it parses.")
    if source.bundled and data.path:
        users = ", ".join(name for name, s in SOURCES.items() if not s.bundled and "path" in s.needs)
        raise ConfigError(f"data.path is set, but data.source={data.source!r} is a bundled dataset that reads "
                          f"no file; to read your file set data.source to one of: {users}.")


def check_model(data: DataConfig, model: Any) -> None:
    """The model settings that need the data's: `model.id_embedding_dim` needs `data.id_column`."""
    if getattr(model, "id_embedding_dim", None) and not data.id_column:
        raise ConfigError(f"model.id_embedding_dim={model.id_embedding_dim} embeds the series id, but "
                          f"data.id_column is not set: name the column that names each series, or remove "
                          f"model.id_embedding_dim.")


def declared_kinds(data: DataConfig, topology: str) -> dict[str, Any] | None:
    """The io kinds a source declares without reading data (None when they depend on the files)."""
    task = SOURCES[data.source].tasks[topology]
    return None if task.kinds else {"x": dict(task.x), "y": dict(task.y)}
