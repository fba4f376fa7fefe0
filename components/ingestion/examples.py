"""Records -> examples: how each source's records become (x, y[, meta]) examples, and the example files.

Here live the `Example` / `Make` types, the shapers of the bundled datasets (names, digits,
seattle_weather days, seattle_temps hours, text windows for a language model) and the reader /
writer of a split's `<split>.jsonl` (a CSV's windows: `windows.py`). Which shaper
feeds which topology is decided in `catalogue.py`.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from components.config import DataConfig
from components.kinds.tokens import tokens_of

from . import bundled, windows

Example = tuple[Any, ...]  # (x, y) or (x, y, meta): meta (e.g. a series' id, a time) rides along to raw rows
Make = Callable[[list[dict[str, Any]], DataConfig], list[Example]]


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


def window_starts(n: int, window: int, ahead: int, stride: int) -> list[int]:
    """Start indices of windows of `window` steps that leave `ahead` more steps inside n (one segment of
    `windows.window_starts`)."""
    return windows.window_starts(np.zeros(n, dtype="int64"), window, ahead, stride).tolist()


def language_model(records: list[dict[str, Any]], cfg: DataConfig) -> list[Example]:
    """Text -> (window of tokens, the same window shifted by one token); windows stay in a topic."""
    sep = "" if cfg.tokenize == "char" else " "
    out = []
    for topic in groups(records, "topic"):
        toks = tokens_of(" ".join(r["text"] for r in topic), cfg.tokenize)
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
