"""Forecasting beyond one time split (issue 14, items 3-5, 7): window scaling for trending series,
per-target and per-series metrics, rolling-origin backtests and the full test predictions, on
small data made here."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components import evaluation as ev
from components import preprocessing
from components.config import ConfigError, EvaluateConfig, ModelConfig
from components.ingestion.timeseries import later_times
from components.preprocessing import Codec
from tests.conftest import raw_rows
from tests.forecasting_support import X_SPEC, Y_SPEC, trend_windows, trending_long_csv
from tests.test_preprocessing import preprocess

# --------------------------------------------------------------------------------------------
# 3. Scaling that survives trends


def test_window_scaling_round_trips_and_is_relative_to_each_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    splits = {"train": trend_windows(20, 0.0, rng), "test": trend_windows(5, 500.0, rng)}  # test far above train
    art, codec = preprocess(tmp_path, X_SPEC, Y_SPEC, splits, "seq2seq", scale="window")
    assert codec.state["x"]["window_scale"]["columns"] == [0] and codec.state["y"]["window_scale"]
    test = preprocessing.load_split(art, "test")
    train = preprocessing.load_split(art, "train")
    # the target column is in window units: the same shape of window gives the same encoding at any level
    np.testing.assert_allclose(test["x"][:, :, 0], train["x"][:5, :, 0], atol=0.25)
    assert np.abs(test["x"][:, :, 0]).max() < 3 and np.abs(test["y"]).max() < 4
    # the other feature keeps the global (train) scaling
    np.testing.assert_allclose(test["x"][:, :, 1], train["x"][:5, :, 1], atol=1e-6)
    raw_x = np.asarray([e[0] for e in splits["test"]], dtype="float32")
    back = np.asarray(codec.decode_series(test["y"], raw_x))
    np.testing.assert_allclose(back, np.asarray([e[1] for e in splits["test"]]), atol=1e-3)
    # a zero output is the window mean, wherever the window lies
    zero = np.asarray(codec.decode_series(np.zeros_like(test["y"]), raw_x))
    np.testing.assert_allclose(zero[:, 0, 0], raw_x[:, :, 0].mean(1), rtol=1e-5)


def test_window_scaling_with_a_reference_adds_the_reference_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    splits = {"train": trend_windows(10, 0.0, rng), "test": trend_windows(3, 90.0, rng)}
    art, codec = preprocess(tmp_path, X_SPEC, Y_SPEC, splits, "seq2seq", scale="window", target_reference="last")
    raw_x = np.asarray([e[0] for e in splits["test"]], dtype="float32")
    test = preprocessing.load_split(art, "test")
    zero = np.asarray(codec.decode_series(np.zeros_like(test["y"]), raw_x))
    np.testing.assert_allclose(zero, np.repeat(raw_x[:, -1:, :1], 2, axis=1))  # zero = last value
    np.testing.assert_allclose(np.asarray(codec.decode_series(test["y"], raw_x)),
                               np.asarray([e[1] for e in splits["test"]]), atol=1e-3)


def test_window_scaling_needs_series_targets_among_the_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    splits = {"train": trend_windows(4, 0.0, rng)}
    with pytest.raises(ConfigError, match="data.scale='window' needs numeric series targets"):
        preprocess(tmp_path, {"kind": "series", "columns": ["promo", "other"]}, Y_SPEC, splits, "seq2seq",
                   scale="window")


# --------------------------------------------------------------------------------------------
# Evaluation: per target, per series, backtest, every test forecast


def series_preprocess(tmp_path: Path, splits: dict[str, list[dict]], frequency: str | None = "daily",
                      targets: int = 1) -> Any:
    """A preprocess artifact (global scaling) from raw rows {x, y, id?, time?}, as the stage writes them."""
    from components.artifacts import Artifact
    from components.preprocessing import io_spec

    tmp_path.mkdir(exist_ok=True)
    names = ["small", "big"][:targets]
    train = np.asarray([r["x"] for r in splits["train"]], dtype="float64")
    flat = train.reshape(-1, targets)
    state = {"topology": "seq2seq",
             "x": {"kind": "series", "columns": names, "mean": flat.mean(0).tolist(),
                   "variance": flat.var(0).tolist(), "features": targets, "length": train.shape[1]},
             "y": {"kind": "series", "columns": names, "mean": flat.mean(0).tolist(),
                   "variance": flat.var(0).tolist(), "features": targets,
                   "length": len(splits["train"][0]["y"])}}
    codec = Codec(state)
    for split, rows in splits.items():
        np.savez(tmp_path / f"{split}.npz", x=codec.encode_inputs([r["x"] for r in rows]),
                 y=codec.encode_targets([r["y"] for r in rows]))
        (tmp_path / f"{split}_raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "preprocessor.json").write_text(json.dumps(state))
    io = io_spec(state) | {"frequency": frequency}
    return Artifact("preprocess", tmp_path, "fp", {"io": io})


def last_value_model(window: int, horizon: int, pre: Any) -> Any:
    """A Keras model that repeats the last (normalised) input value: the last-value forecast."""
    import keras

    inputs = keras.Input((window, None))
    last = keras.layers.Cropping1D((window - 1, 0))(inputs)
    return keras.Model(inputs, keras.layers.Concatenate(axis=1)([last] * horizon))


def windows(values: np.ndarray, window: int, horizon: int, start: int = 0, **meta: Any) -> list[dict]:
    """Consecutive windows of one series [T, C] with their meta and the day of their last input step."""
    import datetime

    out = []
    for i in range(len(values) - window - horizon + 1):
        day = datetime.date(2021, 1, 1) + datetime.timedelta(days=start + i + window - 1)
        out.append({"x": values[i:i + window].tolist(), "y": values[i + window:i + window + horizon].tolist(),
                    "time": day.isoformat(), **meta})
    return out


def test_several_targets_are_reported_per_target_and_gated_scale_free(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    steps = np.arange(80)
    values = np.stack([10 + np.sin(steps) + rng.normal(0, 0.1, 80), 135_000 + 50 * np.cos(steps)], axis=1)
    pre = series_preprocess(tmp_path, {"train": windows(values[:50], 6, 2), "test": windows(values[50:], 6, 2, 50)},
                            targets=2)
    out = tmp_path / "out"
    out.mkdir()
    result = ev.evaluate_forecast(last_value_model(6, 2, pre), pre, out, EvaluateConfig(),
                                  ModelConfig(topology="seq2seq"))
    assert result["main"] == "mase" and result["gate"] == ["mase"]
    # the model is the last-value forecast: identical per target and pooled
    assert result["model"]["mase"] == pytest.approx(result["baselines"]["last value"]["mase"], rel=1e-4)
    with (out / "per_target.csv").open() as handle:
        rows = {r["target"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"small", "big"}
    actual = np.asarray([r["y"] for r in windows(values[50:], 6, 2, 50)])
    last = np.asarray([r["x"][-1] for r in windows(values[50:], 6, 2, 50)])
    assert float(rows["big"]["model_mae"]) == pytest.approx(np.abs(actual[..., 1] - last[:, None, 1]).mean(), rel=1e-4)
    report = "\n".join(result["report"])
    assert "## Per target" in report and "| small |" in report and "| big |" in report
    assert {"forecast_vs_actual.png", "forecast_vs_actual_big.png", "error_by_horizon.png"} <= \
        {p.name for p in out.iterdir()}
    # a target without a naive scale (constant in train) cannot gate on MASE: MAE as before
    values[:, 1] = 7.0
    flat = series_preprocess(tmp_path / "flat", {"train": windows(values[:50], 6, 2),
                                                 "test": windows(values[50:], 6, 2, 50)}, targets=2)
    (tmp_path / "flat_out").mkdir()
    again = ev.evaluate_forecast(last_value_model(6, 2, flat), flat, tmp_path / "flat_out", EvaluateConfig(),
                                 ModelConfig(topology="seq2seq"))
    assert again["gate"] == ["mae"]


def test_per_series_table_backtest_and_every_test_forecast(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    train, test = [], []
    for k, name in enumerate(["AAA", "BBB", "CCC"]):
        level = 10.0 ** (k + 1)  # three scales: 10, 100, 1000
        values = (level + np.cumsum(rng.normal(0, level / 10, 60))).reshape(-1, 1)
        train += windows(values[:40], 5, 3, id=name)
        test += windows(values[40:], 5, 3, 40, id=name)  # 13 windows per series
    pre = series_preprocess(tmp_path, {"train": train, "test": test})
    out = tmp_path / "out"
    out.mkdir()
    cfg = EvaluateConfig(backtest={"origins": 4})
    result = ev.evaluate_forecast(last_value_model(5, 3, pre), pre, out, cfg, ModelConfig(topology="seq2seq"))
    # the gate reads 4 origins x 3 series
    assert result["examples"] == 12 and len(result["samples"]["model"]["mae"].num) == 12
    with (out / "backtest.csv").open() as handle:
        origins = list(csv.DictReader(handle))
    assert [int(r["origin"]) for r in origins] == [1, 2, 3, 4] and all(r["windows"] == "3" for r in origins)
    assert origins[0]["time"] == "2021-02-14" and origins[-1]["time"] == "2021-02-26"  # first and last test window
    mean = np.mean([float(r["model_mae"]) for r in origins])
    assert result["model"]["mae"] == pytest.approx(mean, rel=1e-6)  # equal windows per origin: pooled = mean
    assert (out / "backtest_error_by_origin.png").is_file()
    with (out / "per_series.csv").open() as handle:
        series = {r["id"]: r for r in csv.DictReader(handle)}
    assert set(series) == {"AAA", "BBB", "CCC"} and all(r["windows"] == "13" for r in series.values())
    # per-series MASE is scale-free: the three series are comparable
    assert float(series["CCC"]["model_mae"]) > 10 * float(series["AAA"]["model_mae"])
    assert all(0.2 < float(r["model_mase"]) < 5 for r in series.values())
    report = "\n".join(result["report"])
    assert "## Per series" in report and "Worst 3 by MASE" in report and "## Backtest" in report
    with (out / "test_predictions.csv").open() as handle:
        preds = list(csv.DictReader(handle))
    assert len(preds) == len(test) * 3  # every window, every step: untruncated
    first = preds[0]
    assert list(first) == ["id", "origin_time", "window", "step", "time", "small", "small_forecast"]
    assert (first["id"], first["origin_time"], first["step"], first["time"]) == ("AAA", "2021-02-14", "1", "2021-02-15")
    assert preds[2]["time"] == "2021-02-17" and float(first["small_forecast"]) == pytest.approx(test[0]["x"][-1][0],
                                                                                               rel=1e-4)


def test_backtest_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="evaluate.backtest.origns: unknown key"):
        EvaluateConfig(backtest={"origns": 3})
    with pytest.raises(ConfigError, match="between 1 and 10000"):
        EvaluateConfig(backtest={"origins": 0})


def test_later_times_follow_the_frequency() -> None:
    assert later_times("2021-01-29", "business_daily", 2) == ["2021-02-01", "2021-02-02"]
    assert later_times("2021-01-31", "monthly", 2) == ["2021-02-28", "2021-03-31"]
    assert later_times("1999", "yearly", 2) == ["2000", "2001"]
    assert later_times("2021-01-01T23:00:00", "hourly", 1) == ["2021-01-02T00:00:00"]
    assert later_times(None, "daily", 2) == ["", ""] and later_times("7", None, 1) == [""]


@pytest.mark.slow
def test_window_scaled_pipeline_exports_raw_in_raw_out_like_its_evaluation(make_config, tmp_path: Path) -> None:
    """data.scale=window on a trending multi-series CSV, ingest -> export: the SavedModel's forecast of
    a test window is the evaluation's (test_predictions.csv), in raw units, also right-padded."""
    import tensorflow as tf

    from pipeline import runner
    from tests.conftest import tiny

    path = trending_long_csv(tmp_path / "stores.csv")
    raw = {"name": "ts_window", "data": {"source": "csv", "path": str(path), "time_column": "date",
                                        "id_column": "store", "target_columns": ["units"], "feature_columns": [],
                                        "window": 7, "horizon": 2, "scale": "window", "test_fraction": 0.2},
           "model": {"topology": "seq2seq", "cell": "gru"}, "evaluate": {"backtest": {"origins": 3}}}
    config = make_config(raw, **tiny(data__max_examples="null", tracking__enabled="false",
                                     export__infra_validate="false"))
    result = runner.run(config, to_stage="export", log=lambda _: None)
    state = json.loads(result.artifacts["preprocess"].path("preprocessor.json").read_text())
    assert state["x"]["window_scale"]["columns"] == [0]
    evaluation = result.artifacts["evaluate"]
    assert evaluation.properties["metrics"]["test_examples"] == 9.0  # 3 origins x 3 stores
    assert {"backtest.csv", "per_series.csv", "test_predictions.csv"} <= {p.name for p in evaluation.uri.iterdir()}
    first = raw_rows(result.artifacts["preprocess"].path(), "test")[0]
    with evaluation.path("test_predictions.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["window"] == "0"]
    fn = tf.saved_model.load(str(result.artifacts["export"].path("saved_model"))).signatures["serving_default"]
    x = np.asarray([first["x"]], dtype="float32")
    out = fn(inputs=tf.constant(x))["units"].numpy()
    np.testing.assert_allclose(out[0], [float(r["units_forecast"]) for r in rows], rtol=1e-4)
    padded = np.concatenate([x, np.full((1, 2, 1), np.nan, "float32")], axis=1)  # right-padded: same answer
    np.testing.assert_allclose(fn(inputs=tf.constant(padded))["units"].numpy(), out, rtol=1e-5)
    assert np.abs(out[0] - first["x"][-1][0]).max() < 0.5 * abs(first["x"][-1][0])  # raw units, at the series' level

    # rnnpipe predict on the same file plus a malformed row: the forecast past the end of each series
    from components import predict

    with path.open("a") as handle:
        handle.write("north,not a date,5\n")
    out_csv = tmp_path / "forecast.csv"
    done = predict.run(str(result.artifacts["export"].uri), str(path), str(out_csv), batch_size=2, log=io.StringIO())
    assert done["rows"] == 6 and [b["reason"] for b in done["bad"]] == ["unreadable time 'not a date' in column 'date'"]
    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "time", "step", "units"]
    assert [(r["id"], r["time"], r["step"]) for r in rows[:2]] == [("east", "2021-03-12", "1"),
                                                                    ("east", "2021-03-13", "2")]
    assert {r["id"] for r in rows} == {"east", "north", "south"}
    lines = path.read_text().splitlines()[1:-1]
    north = sorted((ln.split(",")[1], float(ln.split(",")[2])) for ln in lines if ln.startswith("north,"))[-7:]
    want = fn(inputs=tf.constant([[[v] for _, v in north]], dtype=tf.float32))["units"].numpy()[0]
    np.testing.assert_allclose([float(r["units"]) for r in rows if r["id"] == "north"], want, rtol=1e-4)
