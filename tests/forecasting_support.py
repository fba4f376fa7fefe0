"""Shared by the forecasting tests: trending windows and series specs, a trending long-format CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def trend_windows(n: int, start: float, rng: np.random.Generator, window: int = 6, horizon: int = 2) -> list:
    """Windows of a rising line (slope 1) with a little noise, 2 columns: the target and a feature."""
    out = []
    for i in range(n):
        level = start + 3 * i + np.arange(window + horizon) + rng.normal(0, 0.1, window + horizon)
        x = [[round(float(v), 3), float(k % 2)] for k, v in enumerate(level[:window])]
        out.append((x, [[round(float(v), 3)] for v in level[window:]]))
    return out


X_SPEC = {"kind": "series", "columns": ["sales", "promo"]}
Y_SPEC = {"kind": "series", "columns": ["sales"]}


def trending_long_csv(path: Path, days: int = 70) -> Path:
    """`store,date,units`: three stores on rising lines at three levels (long format, shuffled rows)."""
    import datetime
    import random

    rng = random.Random(0)
    rows = [f"{store},{datetime.date(2021, 1, 1) + datetime.timedelta(days=d)},"
            f"{level + slope * d + rng.gauss(0, slope):.3f}"
            for store, level, slope in (("north", 100, 2), ("south", 1000, 10), ("east", 50, 1)) for d in range(days)]
    rng.shuffle(rows)
    path.write_text("store,date,units\n" + "\n".join(rows) + "\n")
    return path
