"""Forecast building blocks: season length, per-window forecast and quantile metrics, the naive
baselines, MASE's naive scale, the time labels after a window, and the backtest origins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from components.metrics import Sample

SEASONS = {"hourly": 24, "daily": 7, "business_daily": 5, "weekly": 52, "monthly": 12, "quarterly": 4}


def season_length(season: int | None, frequency: str | None) -> tuple[int | None, str]:
    """The season length and how it was chosen: `data.season`, else the data's frequency, else none."""
    if season:
        return season, "data.season"
    if frequency in SEASONS:
        return SEASONS[frequency], f"inferred from the {frequency} frequency"
    return None, f"none ({frequency + ' data has no season' if frequency else 'frequency unknown'}; set data.season)"


def forecast_samples(actual: np.ndarray, pred: np.ndarray, scale: Any) -> dict[str, Sample]:
    """Per-window MAE, RMSE, sMAPE (%), MASE (MAE / the in-sample naive MAE `scale`), raw units.

    `scale` is one number, or one per window and target ([N, targets], e.g. each series' and
    each target's own naive MAE): then MASE is the mean of the errors each divided by its scale,
    over the targets that have one.
    """
    err = (pred - actual).reshape(len(actual), -1)
    count = np.full(len(actual), float(err.shape[1]))
    denom = (np.abs(actual) + np.abs(pred)).reshape(err.shape)
    smape = np.divide(2 * np.abs(err), denom, out=np.zeros_like(denom), where=denom > 0)
    abs_sum = np.abs(err).sum(1)
    if np.ndim(scale) == 0:
        mase = Sample(abs_sum, count, f"scale:{float(scale)!r}")
    else:
        per = np.broadcast_to(np.asarray(scale, dtype="float64"), (len(actual), actual.shape[-1]))[:, None, :]
        scaled = per > 0  # a target with no naive scale (constant in train) has no MASE: left out
        ratio = np.divide(np.abs(pred - actual), per, out=np.zeros(np.broadcast_shapes(actual.shape, per.shape)),
                          where=scaled)
        kept = np.broadcast_to(scaled, ratio.shape).reshape(len(actual), -1).sum(1).astype("float64")
        mase = Sample(ratio.reshape(len(actual), -1).sum(1), kept)
    return {"mae": Sample(abs_sum, count), "rmse": Sample((err ** 2).sum(1), count, "sqrt"),
            "smape": Sample(100 * smape.sum(1), count), "mase": mase}


def quantile_samples(actual: np.ndarray, quantiles: np.ndarray, levels: list[float]) -> dict[str, Sample]:
    """Per-window pinball loss averaged over the levels (raw units) and the share of actual values
    inside the outermost quantiles; quantiles [N, H, targets, levels]."""
    err = actual[..., None] - quantiles
    q = np.asarray(levels, dtype="float64")
    pinball = np.maximum(q * err, (q - 1) * err).reshape(len(actual), -1)
    inside = ((actual >= quantiles[..., 0]) & (actual <= quantiles[..., -1])).reshape(len(actual), -1)
    return {"quantile_loss": Sample(pinball.sum(1), np.full(len(actual), float(pinball.shape[1]))),
            "coverage": Sample(inside.sum(1).astype("float64"), np.full(len(actual), float(inside.shape[1])))}


def forecast_metrics(actual: np.ndarray, pred: np.ndarray, scale: Any) -> dict[str, float]:
    return {k: float(s.value()) for k, s in forecast_samples(actual, pred, scale).items()}


def naive_forecasts(x: np.ndarray, horizon: int, columns: list[int], season: int | None) -> dict[str, np.ndarray]:
    """Trivial forecasts [N, horizon, targets] from raw input windows x [N, T, F]: last value,
    seasonal naive (when the window holds a whole season), drift, window mean."""
    series = np.asarray(x, dtype="float64")[:, :, columns]
    length = series.shape[1]
    steps = np.arange(1, horizon + 1)[None, :, None]
    last = series[:, -1:, :]
    out = {"last value": np.repeat(last, horizon, axis=1)}
    if season and season > 1 and length >= season:
        out[f"seasonal naive (season {season})"] = series[:, length - season + (steps[0, :, 0] - 1) % season, :]
    if length > 1:
        out["drift"] = last + steps * (last - series[:, :1, :]) / (length - 1)
    out["window mean"] = np.repeat(series.mean(1, keepdims=True), horizon, axis=1)
    return out


def naive_scale(train_x: np.ndarray, columns: list[int], season: int | None,
                per_column: bool = False) -> tuple[Any, int]:
    """MASE's scale (Hyndman): the in-sample one-step seasonal-naive MAE on the train series
    (lag = season when the windows hold more than a season, else 1), and the lag used; one
    number, or one per target column with `per_column`."""
    series = np.asarray(train_x, dtype="float64").reshape(len(train_x), -1, np.shape(train_x)[-1])[:, :, columns]
    lag = season if season and series.shape[1] > season else 1
    if series.shape[1] <= lag or not len(series):
        return (np.zeros(len(columns)) if per_column else 0.0), lag
    diffs = np.abs(series[:, lag:] - series[:, :-lag])
    return (diffs.mean(axis=(0, 1)) if per_column else float(diffs.mean())), lag


def backtest_origins(ids: list[Any], origins: int, period: str = "test") -> tuple[list[np.ndarray], str]:
    """`origins` rolling forecast origins over a period (the test split's, or validation's) whose windows
    belong to the series `ids` (None: one series): for each series its windows of that period (in time
    order) at `origins` evenly spaced positions, first to last; origin k = the k-th of every series. Fewer
    when a series has fewer windows (said in the note)."""
    groups: dict[Any, list[int]] = {}
    for i, series in enumerate(ids):
        groups.setdefault(series, []).append(i)
    shortest = min((len(g) for g in groups.values()), default=0)
    k = min(origins, shortest)
    note = "" if k == origins else (f" (asked for {origins}, but the shortest series has {shortest} {period} windows)")
    if k == 0:
        return [], note
    picks = [np.asarray(g)[np.round(np.linspace(0, len(g) - 1, k)).astype(int)] for g in groups.values()]
    return [np.asarray([p[j] for p in picks]) for j in range(k)], note
