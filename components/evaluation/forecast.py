"""Series targets: the forecast evaluator (model vs the naive baselines, in raw units).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from components import metrics as registry
from components import stage_files as files
from components.config import EvaluateConfig, ModelConfig
from components.evaluation.common import _field, _predict, _raw, _short, _state
from components.evaluation.forecast_tables import (
    _backtest,
    _forecast_plots,
    _per_series,
    _per_target,
    _write_test_predictions,
)
from components.evaluation.series_metrics import (
    backtest_origins,
    forecast_samples,
    naive_forecasts,
    naive_scale,
    quantile_samples,
    season_length,
)
from components.kinds.series import target_columns
from components.metrics import Sample
from components.preprocessing import Codec, chunks


def _select(samples: dict[str, Sample], idx: np.ndarray) -> dict[str, Sample]:
    return {k: Sample(s.num[idx], s.den[idx], s.transform) for k, s in samples.items()}


def evaluate_forecast(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                      model_cfg: ModelConfig, season: int | None = None, **_: Any) -> dict[str, Any]:
    """Series targets in raw units: the model vs last value, seasonal naive, drift and window mean.

    Also: a table and plot per target column, per-series metrics (`per_series.csv`) with an id
    column, every test forecast (`test_predictions.csv`), and, with `evaluate.backtest`, the
    metrics at K rolling origins (`backtest.csv`, `backtest_error_by_origin.png`; the gate then
    reads the backtest windows; `on: validation | both` adds the origins over the validation
    period, `backtest_validation.csv`, reported only). With several targets the gate is MASE.
    """
    state = _state(preprocess)
    train_x, train_y, train_ids = _train_arrays(preprocess)
    y_state = state["y"]
    levels = list(getattr(model_cfg, "quantiles", ()) or ())
    codec = Codec.load(preprocess)
    raw, raw_x, actual, pred, quantiles = _forecasts(model, preprocess, "test", model_cfg, codec, levels)
    horizon, targets = actual.shape[1], actual.shape[-1]
    x_cols, y_cols = state["x"].get("columns") or [], y_state.get("columns") or []
    names = [str(c) for c in y_cols] if len(y_cols) == targets else [f"target_{j}" for j in range(targets)]
    columns = [x_cols.index(c) for c in y_cols] if y_cols and set(y_cols) <= set(x_cols) else None
    frequency = preprocess.properties["io"].get("frequency")
    season, how = season_length(season, frequency)
    notes = [f"Raw units. Season: {season or 'none'} ({how})."]
    ids = _field(raw, "id")
    many = any(i is not None for i in ids)
    lag = None
    if target_columns(state["x"], y_state) is not None and len(raw):  # a numeric input series with the targets
        x_test = raw_x
        x_train, own = train_x(columns), list(range(len(columns)))  # the train windows' target columns
        bases = _naive(x_test, horizon, columns, season, model_cfg.topology)
        lag_season = None if model_cfg.topology == "many_to_many" else season
        if lag_season and f"seasonal naive (season {season})" not in bases:
            notes.append(f"No seasonal-naive baseline: the input window ({x_test.shape[1]} steps) is shorter "
                         f"than a season ({season}).")
        per_column, lag = naive_scale(x_train, own, lag_season, per_column=True)
        scale = float(np.mean(per_column))  # every column has as many differences: the overall MAE
        notes.append(f"MASE scale: in-sample naive MAE on train with lag {lag} = {scale:.4g}"
                     + (" (per series and target)." if many or targets > 1 else "."))

        def scale_of(rows: np.ndarray) -> np.ndarray:
            return naive_scale(x_train[rows], own, lag_season, per_column=True)[0] if len(rows) else per_column
    else:
        y_train = np.asarray(train_y(), dtype="float64").reshape(len(train_ids), *actual.shape[1:])
        bases = {"train mean": np.broadcast_to(y_train.mean(0), actual.shape)}
        per_column = (np.abs(y_train - y_train.mean(0)).mean(axis=(0, 1)) if len(y_train)
                      else np.zeros(targets))
        scale = float(np.mean(per_column))  # equal counts per target: the overall deviation
        notes.append(f"MASE scale: mean absolute deviation of the train targets = {scale:.4g}.")

        def scale_of(rows: np.ndarray) -> np.ndarray:
            ys = y_train[rows]
            return np.abs(ys - ys.mean(0)).mean(axis=(0, 1)) if len(rows) else per_column
    series_scale: dict[Any, np.ndarray] = {}
    if many:
        by_id: dict[Any, list[int]] = {}
        for k, i in enumerate(train_ids):
            by_id.setdefault(i, []).append(k)
        series_scale = {i: scale_of(np.asarray(by_id.get(i, []), dtype="int64")) for i in dict.fromkeys(ids)}
        series_scale = {i: np.where(s > 0, s, per_column) for i, s in series_scale.items()}
        per_example: Any = np.asarray([series_scale[i] for i in ids]).reshape(len(raw), targets)
    elif targets > 1:
        per_example = np.asarray(per_column)
    else:
        per_example = scale  # one target, one series: one number (as before)
    samples = {"model": forecast_samples(actual, pred, per_example),
               **{name: forecast_samples(actual, b, per_example) for name, b in bases.items()}}
    if quantiles is not None:
        samples["model"].update(quantile_samples(actual, quantiles, levels))
        for name, b in bases.items():  # a point forecast is every quantile
            samples[name]["quantile_loss"] = quantile_samples(
                actual, np.repeat(b[..., None], len(levels), axis=-1), levels)["quantile_loss"]
        notes.append(f"Quantiles {levels}: quantile_loss is the pinball loss averaged over the levels (a baseline's "
                     f"point forecast stands for every level); coverage is the share of actual values inside "
                     f"[q{levels[0]:g}, q{levels[-1]:g}] (nominal {levels[-1] - levels[0]:.0%}).")
    # several forecast targets on their own scales: gate on the scale-free MASE (when every target
    # has a naive scale; e.g. digits rows from a class keep MAE: same units, some constant columns)
    main = "mase" if targets > 1 and columns is not None and bool(np.all(np.asarray(per_column) > 0)) else "mae"
    if main == "mase":
        notes.append(f"{targets} targets on their own scales: the gate reads MASE (each target's errors divided by "
                     f"its own naive scale); MAE and RMSE pool raw units of every target.")
    full = {name: {k: float(s.value()) for k, s in by.items()} for name, by in samples.items()}
    backtest = None
    on = cfg.backtest.get("on", "test")
    if cfg.backtest.get("origins") and on in ("test", "both"):
        origin_idx, short = backtest_origins(ids, int(cfg.backtest["origins"]))
        if origin_idx:
            backtest = {"origins": origin_idx, "note": short}
            chosen = np.concatenate(origin_idx)
            samples = {side: _select(by, chosen) for side, by in samples.items()}
    sides = {name: {k: float(s.value()) for k, s in by.items()} for name, by in samples.items()}
    mine = sides.pop("model")
    strongest = registry.get(main).best({n: m[main] for n, m in sides.items()}) or next(iter(bases))
    report = ["", *notes]
    report += _per_target(workdir, actual, pred, bases, strongest, names, per_example)
    _forecast_plots(workdir, actual, pred, bases[strongest], raw, columns, names, strongest,
                    per_column if targets > 1 else None,
                    None if quantiles is None else (quantiles[..., 0], quantiles[..., -1], levels))
    if many:
        report += _per_series(workdir, actual, pred, bases[strongest], strongest, ids, series_scale)
    if backtest:
        report += _backtest(workdir, backtest, raw, actual, pred, bases[strongest], strongest, per_example, main)
        examples = int(sum(len(i) for i in backtest["origins"]))
        report += ["", f"Whole test split ({len(actual)} windows): model " + ", ".join(
            f"{k} {v:.4g}" for k, v in full["model"].items()) + f"; {strongest}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in full[strongest].items()) + "."]
    else:
        examples = len(actual)
    if cfg.backtest.get("origins") and on in ("validation", "both"):
        report += _validation_backtest(
            model, preprocess, workdir, cfg, model_cfg, codec, levels, columns, season, strongest, main,
            series_scale if many else None, per_example if not many else None)
    _write_test_predictions(workdir / "test_predictions.csv", raw, actual, pred, names, frequency,
                            model_cfg.topology == "many_to_many", quantiles, levels)
    rows = [{"input": _short(r["x"]), "actual": _short(np.round(a[:, 0], 2).tolist()),
             "forecast": _short(np.round(p[:, 0], 2).tolist()), "baseline": _short(np.round(b[:, 0], 2).tolist())}
            for r, a, p, b in zip(raw[: cfg.num_examples], actual, pred, bases[strongest])]
    return {"main": main, "gate": [main], "examples": examples, "model": mine, "baselines": sides,
            "samples": samples, "season": season, "rows": rows, "report": report}


def _forecasts(model: Any, preprocess: Any, split: str, model_cfg: ModelConfig, codec: Codec,
               levels: list[float]) -> tuple[list[dict], Any, np.ndarray, np.ndarray, np.ndarray | None]:
    """One split's raw rows, raw input windows (read once, where the decoding or the naive baselines need
    them; else None), actual values, forecasts in raw units (as the export decodes them) and, with
    `model.quantiles`, every level [N, H, targets, levels] (the median is the point forecast).

    Predicted and decoded CHUNK windows at a time: a CSV's encoded inputs exist one chunk at a time."""
    from models.build import model_inputs  # x, or x with the known future values / series ids

    arrays = files.load_arrays(preprocess, split)
    starts = arrays.pop("starts", None)  # a CSV: inputs cut from its rows, encoded a chunk at a time
    windows = files.raw_windows(preprocess, split, starts=starts) if starts is not None else None
    raw = _raw(preprocess, split)
    actual = np.asarray(_field(raw, "y"), dtype="float64").reshape(len(raw), *arrays["y"].shape[1:])
    decoding_reads_x = bool(codec.y.get("reference") or codec.y.get("window_scale"))
    naive_reads_x = target_columns(codec.x, codec.y) is not None
    raw_x = _raw_x(raw) if decoding_reads_x or naive_reads_x else None
    io, decoded = preprocess.properties["io"], []
    for idx in chunks(len(raw)):
        part = {k: v[idx] for k, v in arrays.items()}
        if windows is not None:
            part["x"] = np.asarray(codec.encode(windows.x(idx, "float32"), "x"), "float32")
        encoded = _predict(model, model_inputs(model_cfg, io, part))
        encoded = encoded.reshape(*actual[idx].shape[:-1], -1).astype("float32")
        window_x = None  # the decoding reads the raw input window
        if decoding_reads_x:
            window_x = raw_x[idx].astype("float32").reshape(len(encoded), *part["x"].shape[1:])
        decoded.append(np.asarray(codec.decode_quantiles(encoded, window_x, len(levels)) if levels else
                                  codec.decode_series(encoded, window_x), dtype="float64"))
    out = np.concatenate(decoded)
    if levels:
        return raw, raw_x, actual, out[..., levels.index(0.5)], out
    return raw, raw_x, actual, out, None


def _train_arrays(preprocess: Any) -> tuple[Callable[[list[int]], np.ndarray], Callable[[], Any], list[Any]]:
    """The train split's raw input windows of some columns and its targets (read when asked) and series ids,
    without per-window rows for a CSV's windows (cut from its rows)."""
    windows = files.raw_windows(preprocess, "train")
    if windows is not None:
        ids = windows.ids() or [None] * len(windows)
        return (lambda columns: windows.x(columns=columns)), (lambda: windows.y()), ids
    rows = _raw(preprocess, "train")

    def x(columns: list[int]) -> np.ndarray:
        x = np.asarray([r["x"] for r in rows], dtype="float64")
        return x.reshape(len(x), -1, x.shape[-1])[:, :, columns] if len(x) else x

    return x, (lambda: [r["y"] for r in rows]), [r.get("id") for r in rows]


def _raw_x(raw: Any) -> np.ndarray:
    """A split's raw input windows [n, steps, features] (a CSV's: cut from its rows, not through dicts)."""
    return np.asarray(_field(raw, "x"), dtype="float64")


def _naive(x: np.ndarray, horizon: int, columns: list[int], season: int | None, topology: str) -> dict[str, np.ndarray]:
    """The naive forecasts of raw input windows (many_to_many: the aligned input value)."""
    if topology == "many_to_many":  # synced: y_t is ahead of x_t by a fixed lag
        return {"persistence (aligned input value)": x[:, :horizon][:, :, columns]}
    return naive_forecasts(x, horizon, columns, season)


def _validation_backtest(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig, model_cfg: ModelConfig,
                         codec: Codec, levels: list[float], columns: list[int] | None, season: int | None,
                         strongest: str, main: str, series_scale: dict[Any, np.ndarray] | None,
                         scale: Any) -> list[str]:
    """`evaluate.backtest.on: validation | both`: the rolling origins over the validation period,
    against the test's strongest baseline, in the same units (reported; the gate reads test windows)."""
    raw, x, actual, pred, _ = _forecasts(model, preprocess, "validation", model_cfg, codec, levels)
    ids = _field(raw, "id")
    origins, note = backtest_origins(ids, int(cfg.backtest["origins"]), "validation")
    if not origins or columns is None:
        why = "no validation windows" if not origins else "the targets are not among the inputs (no naive forecast)"
        return ["", "## Backtest (validation period)", "", f"Not computed: {why}{note}."]
    bases = _naive(x, actual.shape[1], columns, season, model_cfg.topology)
    name = strongest if strongest in bases else next(iter(bases))
    if series_scale is not None:  # each window's own series scale (an id unseen in train: the mean scale)
        fallback = np.mean(list(series_scale.values()), axis=0)
        scale = np.asarray([series_scale.get(i, fallback) for i in ids]).reshape(len(raw), -1)
    return _backtest(workdir, {"origins": origins, "note": note}, raw, actual, pred, bases[name], name, scale, main,
                     period="validation")
