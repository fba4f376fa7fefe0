"""Time-aware series for the `csv` source: times, frequency, a grid of steps, gaps and fills.

A series is the rows of one id (`data.id_column`; the whole file without one), sorted by
time. Its times are placed on a grid of steps of the inferred frequency (hourly, daily,
business days, weekly, monthly, quarterly, yearly, or any fixed step such as 15min or an
integer step); a missing grid step is a missing timestamp. `data.fill_missing` (`ffill` or
`interpolate`) fills runs of at most `data.max_fill` consecutive missing steps / values (text
columns are always carried forward); whatever stays missing is a gap, and windows never span
a gap. Without a time column the file order is the time order and a skipped line is a gap.

Vectorised with NumPy / pandas; the per-row Python work is limited to the rows that are bad.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Values that mean "missing" (case-insensitive, surrounding blanks ignored): a gap, never malformed.
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "nat", "#n/a", "?"})

DAY = 86_400 * 10**9  # ns
NAMES = {3_600 * 10**9: "hourly", DAY: "daily", 7 * DAY: "weekly", 60 * 10**9: "minutely", 10**9: "secondly"}


def missing(values: np.ndarray) -> np.ndarray:
    """Which raw strings are missing values (only the short ones are lower-cased: no copy of every string)."""
    import pandas as pd

    stripped = pd.Series(values, dtype=object).str.strip()
    short = (stripped.str.len() <= max(map(len, MISSING))).to_numpy(dtype=bool)
    out = np.zeros(len(stripped), dtype=bool)
    out[short] = stripped[short].str.lower().isin(MISSING).to_numpy(dtype=bool)
    return out


# --------------------------------------------------------------------------------------------
# Parsing


@dataclass
class Times:
    """Parsed time stamps: int64 ns (datetimes) or float64 numbers; `ok` False where unreadable."""

    values: np.ndarray
    ok: np.ndarray
    datetime: bool

    @property
    def date_only(self) -> bool:
        """Every datetime is at midnight: labels are plain dates."""
        block = 1 << 20  # in blocks: no temporary of the whole column
        return self.datetime and bool(self.ok.any()) and all(
            bool(np.all(self.values[i:i + block][self.ok[i:i + block]] % DAY == 0))
            for i in range(0, len(self.values), block))

    @classmethod
    def concat(cls, parts: list[Times]) -> Times:
        """The times of consecutive chunks of one column (read with one TimeRule) as one."""
        return cls(np.concatenate([p.values for p in parts]), np.concatenate([p.ok for p in parts]),
                   parts[0].datetime)


@dataclass(frozen=True)
class TimeRule:
    """How a time column is read, decided once from its values: numbers when most present values are
    numbers, else datetimes in `format` (given by data.time_format, or inferred from the first present
    value as pandas does; None: each value on its own); `retry`: a value the inferred format misses is
    parsed on its own (mixed formats)."""

    datetime: bool
    format: str | None = None
    retry: bool = False


NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")  # a value read as a finite number


def may_be_number(time_format: str) -> bool:
    """Whether a value written in this strftime format could read as a number (each directive stands for
    digits: %Y%m%d -> 20240101 or %Y.%m -> 2024.01 could; %Y-%m-%d, %d.%m.%Y or %H:%M cannot)."""
    return NUMBER.fullmatch(re.sub("%-?.", "0", time_format)) is not None


def time_rule(raw: np.ndarray, time_format: str | None, absent: np.ndarray) -> TimeRule:
    """The TimeRule of a time column (or of its first rows, for a file read in chunks)."""
    import pandas as pd

    if time_format is not None:
        return TimeRule(True, time_format)
    series = pd.Series(np.where(absent, None, raw), dtype=object)
    present = max(int((~absent).sum()), 1)
    try:  # the format pd.to_datetime would infer for the whole column (from its first present value)
        from pandas.core.tools.datetimes import _guess_datetime_format_for_array as guess
    except ImportError:  # pragma: no cover - a pandas without it: each value on its own
        guess = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guessed = guess(series.to_numpy(dtype=object)) if guess else None
    if guessed and not may_be_number(guessed):
        # most present values in that format: fewer than half are numbers, the vote below is decided (reading
        # each value as a number costs 8x parsing the column as datetimes)
        if (~np.isnat(_to_datetime(series, format=guessed))).sum() * 2 > present:
            return TimeRule(True, guessed, retry=True)
    finite = np.isfinite(pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64"))
    if finite.sum() * 2 >= present:
        return TimeRule(False)
    return TimeRule(True, guessed, retry=True)


def numbers_among(raw: np.ndarray, absent: np.ndarray, times: Times, rule: TimeRule) -> int:
    """How many present values read as finite numbers: the `time_rule` vote, so a file read in chunks can
    check that its first chunk's rule is the whole column's. Cheap: a value read as a datetime in a format
    with separators or words cannot be a number, so only the others are converted."""
    import pandas as pd

    if not rule.datetime:
        return int(times.ok.sum())
    maybe = ~absent if rule.format is None or may_be_number(rule.format) else ~absent & ~times.ok
    numbers = pd.to_numeric(pd.Series(raw[maybe], dtype=object), errors="coerce").to_numpy(dtype="float64")
    return int(np.isfinite(numbers).sum())


def parse_times(raw: np.ndarray, time_format: str | None, absent: np.ndarray | None = None,
                rule: TimeRule | None = None) -> Times:
    """The time column -> Times, read by `rule` (default: the column's own `time_rule`); `absent`: which
    values are missing, when the caller knows."""
    import pandas as pd

    absent = missing(raw) if absent is None else absent
    rule = rule or time_rule(raw, time_format, absent)
    series = pd.Series(np.where(absent, None, raw), dtype=object)
    if not rule.datetime:
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64")
        return Times(numbers, np.isfinite(numbers), datetime=False)
    stamps = _to_datetime(series, format=rule.format) if rule.format else _to_datetime(series)
    if rule.retry:
        for i in np.flatnonzero(np.isnat(stamps) & ~absent):  # what the inferred format missed: one by one
            stamps[i] = _one_datetime(raw[i])
    return Times(stamps.astype("int64"), ~np.isnat(stamps), datetime=True)


def _to_datetime(series: Any, **kwargs: Any) -> np.ndarray:
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": it then parses each value
        try:
            out = pd.to_datetime(series, errors="coerce", **kwargs)
        except (ValueError, TypeError):  # mixed UTC offsets
            out = pd.to_datetime(series, errors="coerce", utc=True, **kwargs)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out.to_numpy(dtype="datetime64[ns]").copy()


def _one_datetime(value: str) -> np.datetime64:
    import pandas as pd

    try:
        stamp = pd.Timestamp(value.strip().replace("/", "-"))
    except (ValueError, TypeError, OverflowError):
        return np.datetime64("NaT", "ns")
    if stamp is pd.NaT:
        return np.datetime64("NaT", "ns")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.value, "ns")


# --------------------------------------------------------------------------------------------
# The grid of steps


@dataclass
class Grid:
    """How time stamps map to integer steps (`positions`) and back (`time_at`)."""

    kind: str  # fixed | months | business | order
    frequency: str | None
    step: int | float = 1  # fixed: the step in ns (datetimes) or in time units (numbers); months: months
    datetime: bool = False

    def positions(self, t: np.ndarray) -> np.ndarray:
        """Grid steps of one series' sorted, distinct times, relative to its first."""
        if self.kind == "months":
            months = t.astype("datetime64[ns]").astype("datetime64[M]").astype("int64")
            pos = months // int(self.step)
        elif self.kind == "business":
            days = t.astype("datetime64[ns]").astype("datetime64[D]")
            pos = np.busday_count(days[0], days).astype("int64")
        elif self.kind == "fixed":
            pos = np.floor((t - t[0]) / self.step + 0.5).astype("int64")
        else:  # order: the values are already positions (file order)
            pos = t.astype("int64")
        return pos - pos[0]

    def time_at(self, first: Any, pos: np.ndarray) -> np.ndarray:
        """The time stamps of grid steps `pos` of a series whose first time is `first`."""
        if self.kind == "fixed":
            return first + pos * self.step
        if self.kind == "months":
            import pandas as pd

            start = pd.Timestamp(int(first))
            return np.array([(start + pd.DateOffset(months=int(p) * int(self.step))).value for p in pos], "int64")
        if self.kind == "business":
            day = np.datetime64(int(first), "ns").astype("datetime64[D]")
            days = np.busday_offset(day, pos.astype("int64"), roll="forward").astype("datetime64[ns]")
            return days.astype("int64") + int(first) % DAY
        return first + pos


def infer_grid(series: list[np.ndarray], times: Times | None) -> Grid:
    """The frequency of the series (the most common step between consecutive times)."""
    if times is None:
        return Grid("order", None)
    diffs = np.concatenate([np.diff(t) for t in series] or [np.zeros(0)])
    diffs = diffs[diffs > 0]
    if not len(diffs):
        return Grid("fixed", None, DAY if times.datetime else 1, times.datetime)
    values, counts = np.unique(diffs, return_counts=True)
    step = values[np.argmax(counts)]
    if not times.datetime:
        integral = all(np.all(t == np.round(t)) for t in series)
        years = integral and all(np.all((t >= 1000) & (t <= 2999)) for t in series)
        return Grid("fixed", "yearly" if years and step == 1 else None, int(step) if integral else float(step))
    step = int(step)
    for months, name, lo, hi in ((1, "monthly", 28, 31), (3, "quarterly", 89, 92), (12, "yearly", 365, 366)):
        if lo * DAY <= step <= hi * DAY:
            return Grid("months", name, months, True)
    if step == DAY and _business_days(series, diffs):
        return Grid("business", "business_daily", 1, True)
    if step in NAMES:
        name = NAMES[step]
    elif step % DAY == 0:
        name = f"{step // DAY}d"
    else:
        import pandas as pd

        name = pd.tseries.frequencies.to_offset(pd.Timedelta(step, "ns")).freqstr
    return Grid("fixed", name, step, True)


def _business_days(series: list[np.ndarray], diffs: np.ndarray) -> bool:
    """Daily stamps on Monday-Friday only, with the weekends skipped (markets, offices)."""
    days = np.concatenate(series).astype("datetime64[ns]").astype("datetime64[D]").astype("int64")
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return bool(np.all(weekday < 5)) and bool(np.any(diffs == 3 * DAY))


# --------------------------------------------------------------------------------------------
# One series on its grid: fill, gaps, segments


@dataclass
class Counts:
    """What was missing and what was filled (for the report and MLflow)."""

    series: int = 0
    missing_values: int = 0  # empty / NA cells in the rows that are there
    missing_timestamps: int | None = 0  # grid steps with no row (None: irregular times)
    filled_values: int = 0
    filled_timestamps: int = 0
    gaps: int = 0  # breaks left inside series after filling: no window spans them
    irregular_series: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # grid steps kept per split

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def runs_up_to(gap: np.ndarray, limit: int, inside: bool) -> np.ndarray:
    """Cells of `gap` in runs of at most `limit` that have a value before them (and after, if inside)."""
    if limit <= 0 or not gap.any():
        return np.zeros_like(gap)
    start = gap & ~np.concatenate([[False], gap[:-1]])
    label = np.cumsum(start) * gap
    sizes = np.bincount(label)
    ok = gap & (sizes[label] <= limit)
    first = np.flatnonzero(start)
    bad_runs = set()
    if len(first) and first[0] == 0:
        bad_runs.add(1)  # no value before it
    if inside and gap[-1]:
        bad_runs.add(int(label[-1]))  # no value after it
    if bad_runs:
        ok &= ~np.isin(label, list(bad_runs))
    return ok


def fill_column(values: np.ndarray, numeric: bool, how: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(filled values, which cells were filled) of one column along the grid."""
    gap = np.isnan(values) if numeric else np.array([v is None for v in values], dtype=bool)
    interpolate = how == "interpolate" and numeric
    todo = runs_up_to(gap, limit, inside=interpolate) if how != "none" else np.zeros_like(gap)
    if not todo.any():
        return values, todo
    out = values.copy()
    known = np.flatnonzero(~gap)
    where = np.flatnonzero(todo)
    if interpolate:
        out[where] = np.interp(where, known, values[known])
    else:  # carry the last value forward
        previous = known[np.searchsorted(known, where) - 1]
        out[where] = values[previous]
    return out, todo


def later_times(label: Any, frequency: str | None, steps: int) -> list[str]:
    """The time labels of the `steps` grid steps after `label` (a window's last input time), or
    blanks when the step is unknown (no time column, or numbers other than years)."""
    if label is None or not frequency:
        return [""] * steps
    import pandas as pd

    text = str(label)
    try:
        if frequency == "yearly" and text.lstrip("-").isdigit():
            return [str(int(text) + k) for k in range(1, steps + 1)]
        start = pd.Timestamp(text)
        offsets = {"hourly": pd.Timedelta(hours=1), "daily": pd.Timedelta(days=1), "weekly": pd.Timedelta(days=7),
                   "business_daily": pd.offsets.BDay(), "monthly": pd.DateOffset(months=1),
                   "quarterly": pd.DateOffset(months=3), "yearly": pd.DateOffset(years=1)}
        step = offsets.get(frequency) or pd.tseries.frequencies.to_offset(frequency)
        stamps = [start + k * step for k in range(1, steps + 1)]
    except (ValueError, TypeError):
        return [""] * steps
    dated = len(text) == 10
    return [t.strftime("%Y-%m-%d") if dated else t.isoformat() for t in stamps]
