"""Ingestion stage: a data source -> train/validation/test examples + their spec.

inputs -> outputs: (none) -> `<split>.jsonl` (one {"x": ..., "y": ...} per line; csv series
windows add their series' "id" and the "time" of their last input step), `spec.json` (the kind
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
"""

from __future__ import annotations

import datetime
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from components import stage_files as files
from components.config import ConfigError, DataConfig
from models.spec import TOPOLOGIES

from . import bundled, sources
from .sources import DataSourceError

Example = tuple[Any, ...]  # (x, y) or (x, y, meta): meta (e.g. a series' id, a time) rides along to raw rows
Make = Callable[[list[dict[str, Any]], DataConfig], list[Example]]

@dataclass(frozen=True)
class Task:
    """How one source feeds one topology: the kinds of x and y and how records become examples.

    `kinds`, when set, decides the x/y kinds from what was loaded (user files) instead of x/y.
    A `tokenize` of "config" takes `data.tokenize` (x) or `data.target_tokenize` (y).
    """

    x: dict[str, Any]
    y: dict[str, Any]
    make: Make
    kinds: Callable[[Loaded, DataConfig], tuple[dict[str, Any], dict[str, Any]]] | None = None


@dataclass
class Loaded:
    """A source's records per split, the rows it had to skip and what it learnt about the data."""

    splits: dict[str, list[dict[str, Any]]]
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


# --------------------------------------------------------------------------------------------
# Records -> examples


def _pairs(x_key: str, y_key: str) -> Make:
    return lambda records, cfg: [(r[x_key], r[y_key]) for r in records]


def groups(records: list[dict[str, Any]], key: str) -> list[list[dict[str, Any]]]:
    """Consecutive runs of records with the same `key` value (a topic, a gap-free segment)."""
    out: list[list[dict[str, Any]]] = []
    for record in records:
        if out and out[-1][0].get(key) == record.get(key):
            out[-1].append(record)
        else:
            out.append([record])
    return out


def window_starts(n: int, window: int, ahead: int, stride: int) -> range:
    """Start indices of windows of `window` steps that leave `ahead` more steps inside n."""
    return range(0, max(n - window - ahead + 1, 0), stride)


def language_model(records: list[dict[str, Any]], cfg: DataConfig) -> list[Example]:
    """Text -> (window of tokens, the same window shifted by one token); windows stay in a topic."""
    sep = "" if cfg.tokenize == "char" else " "
    out = []
    for topic in groups(records, "topic"):
        toks = sources.tokens(" ".join(r["text"] for r in topic), cfg.tokenize)
        for s in window_starts(len(toks), cfg.window, 1, cfg.stride):
            out.append((sep.join(toks[s:s + cfg.window]), sep.join(toks[s + 1:s + cfg.window + 1])))
    return out


# seattle_weather: one step per day


WEATHER_MEASURES = ("precipitation", "temp_max", "temp_min", "wind")
WEATHER_COLUMNS = (*WEATHER_MEASURES, "day_of_year_sin", "day_of_year_cos", "years_since_2012")


def weather_day(record: dict[str, Any]) -> list[float]:
    """A day's measurements, its position in the year (sin/cos) and the years since the record began.

    The date matters beyond the season: the labelling conventions drift (rainy days are mostly
    'rain' in 2012, mostly 'fog' from 2014 on), so a tagger needs to know when a day is.
    """
    date = datetime.date.fromisoformat(record["date"])
    angle = 2 * math.pi * date.timetuple().tm_yday / 365.25
    years = (date - datetime.date(2012, 1, 1)).days / 365.25
    return [record[k] for k in WEATHER_MEASURES] + [round(math.sin(angle), 6), round(math.cos(angle), 6),
                                                     round(years, 6)]


def weather_next_day(records: list[dict[str, Any]], cfg: DataConfig) -> list[Example]:
    """`window` days (measurements + one-hot observed weather) -> the weather `horizon` days later."""
    steps = [weather_day(r) + [float(r["weather"] == w) for w in bundled.WEATHER] for r in records]
    return [(steps[s:s + cfg.window], records[s + cfg.window + cfg.horizon - 1]["weather"])
            for s in window_starts(len(records), cfg.window, cfg.horizon, cfg.stride)]


def weather_tagging(records: list[dict[str, Any]], cfg: DataConfig) -> list[Example]:
    """`window` days of measurements -> that window's weather label for every day."""
    steps = [weather_day(r) for r in records]
    return [(steps[s:s + cfg.window], [r["weather"] for r in records[s:s + cfg.window]])
            for s in window_starts(len(records), cfg.window, 0, cfg.stride)]


DAY = 24  # hours


def hourly_forecast(records: list[dict[str, Any]], cfg: DataConfig) -> list[Example]:
    """`window` hours (temperature, change since the same hour a day earlier) -> the next `horizon` temperatures.

    The day-over-day change makes the trend visible to the model at every step; the first day
    of each split only serves as the history of that change.
    """
    temps = [r["temp"] for r in records]
    steps = [[t, round(t - temps[i - DAY], 4)] for i, t in enumerate(temps) if i >= DAY]
    return [(steps[s:s + cfg.window], [[step[0]] for step in steps[s + cfg.window:s + cfg.window + cfg.horizon]])
            for s in window_starts(len(steps), cfg.window, cfg.horizon, cfg.stride)]


def _digit_rows(records: list[dict[str, Any]], cfg: DataConfig) -> list[Example]:
    return [(r["label"], [r["pixels"][i:i + 8] for i in range(0, 64, 8)]) for r in records]


def _digit_series(records: list[dict[str, Any]], cfg: DataConfig) -> list[Example]:
    return [([r["pixels"][i:i + 8] for i in range(0, 64, 8)], r["label"]) for r in records]


# csv: windows over the rows of each gap-free segment


def csv_windows(topology: str) -> Make:
    """Windows of CSV rows for one topology (see `csv_kinds` for what x and y hold).

    A window stays inside one gap-free segment of one series; it carries that series' `id`
    (with `data.id_column`) and the `time` of its last input step (with `data.time_column`).
    """

    def make(records: list[dict[str, Any]], cfg: DataConfig) -> list[Example]:
        out: list[Example] = []
        w, h = cfg.window, cfg.horizon
        for seg in groups(records, "segment"):
            names = list(seg[0]["values"])
            targets = [n for n in names if n in cfg.target_columns]
            features = [n for n in names if n not in targets]
            text = isinstance(seg[0]["values"][targets[0]], str)
            x_cols = features if text else targets + features
            xs = [[r["values"][c] for c in x_cols] for r in seg]
            ys = [r["values"][targets[0]] if text else [r["values"][c] for c in targets] for r in seg]
            ahead = 0 if topology == "many_to_many" and text else h
            future = [[r["values"][c] for c in cfg.future_columns] for r in seg] if cfg.future_columns else None
            for s in window_starts(len(seg), w, ahead, cfg.stride):
                if topology == "many_to_one":
                    y = ys[s + w + h - 1] if text else ys[s + w:s + w + h]
                elif topology == "many_to_many":
                    y = ys[s:s + w] if text else ys[s + h:s + w + h]
                else:
                    y = ys[s + w:s + w + h]
                meta = {k: seg[s + w - 1][k] for k in ("id", "time") if k in seg[0]}
                if future is not None:  # the known future values at the horizon steps (the decoder's)
                    meta["future"] = future[s + w:s + w + h]
                out.append((xs[s:s + w], y, meta) if meta else (xs[s:s + w], y))
        return out

    return make


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
        tasks={t: Task(SERIES, SERIES, csv_windows(t), csv_kinds(t))
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


def resolve_kinds(task: Task, loaded: Loaded, data: DataConfig, topology: str) -> tuple[dict, dict]:
    """The x / y kinds of this run's spec (tokenizers from the config), checked against the topology."""
    x, y = task.kinds(loaded, data) if task.kinds else (dict(task.x), dict(task.y))
    x, y = dict(x), dict(y)
    if x.get("tokenize") == "config":
        x["tokenize"] = data.tokenize
    if y.get("tokenize") == "config":
        y["tokenize"] = data.tokenize if y.get("language_model") else sources.target_tokenize(data)
    from models.topologies import fit_error  # the one compatibility table (models.topologies.FITS)

    problem = fit_error(topology, x["kind"], y["kind"], source=data.source)
    if problem:
        raise DataSourceError(problem)
    return x, y


def run(inputs: dict, workdir: Path, ctx: Any, *, data: DataConfig, topology: str) -> dict[str, Any]:
    """Load the source, shape it for the topology, cap each split and write it out."""
    source = SOURCES[data.source]
    task = source.tasks[topology]
    loaded = source.load(data)
    x_kind, y_kind = resolve_kinds(task, loaded, data, topology)
    counts = {}
    for split in files.SPLITS:
        examples = _drop_empty(task.make(loaded.splits.get(split, []), data), split, loaded, x_kind)
        if data.max_examples is not None and len(examples) > data.max_examples:
            examples = _sample(examples, data.max_examples, data.split_seed)
        write_examples(workdir / files.examples_file(split), examples)
        counts[split] = len(examples)
    spec = {"x": x_kind, "y": y_kind, "topology": topology, "source": data.source}
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
        if x is None or x == [] or (isinstance(x, str) and not sources.tokens(x, x_kind.get("tokenize", "char"))):
            loaded.bad_rows.append({"where": f"{split} example {i + 1}", "reason": "empty input sequence"})
        else:
            kept.append(example)
    return kept


def _sample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """A seeded sample of n examples that keeps their original order (time order survives)."""
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def write_examples(path: Path, examples: Iterable[Example]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            row = {"x": example[0], "y": example[1], **(example[2] if len(example) > 2 else {})}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_examples(path: Path, meta: bool = False) -> list[Example]:
    """The (x, y) examples of one split; with `meta`, (x, y, {other fields, e.g. id, time})."""
    with Path(path).open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    if meta:
        return [(row["x"], row["y"], {k: v for k, v in row.items() if k not in ("x", "y")}) for row in rows]
    return [(row["x"], row["y"]) for row in rows]


def read_spec(artifact: Any) -> dict[str, Any]:
    return files.spec(artifact)
