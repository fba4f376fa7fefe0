"""Known future covariates (`data.future_columns`) and series-id embeddings (`model.id_embedding_dim`),
issue 14 items 2 and 6, end to end on small long-format files made here."""

from __future__ import annotations

import csv
import datetime
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest

from components.config import ConfigError
from tests.conftest import raw_rows


def stores_csv(path: Path, days: int = 60, future_days: int = 0, horizon: int = 2) -> Path:
    """`store,date,units,price,holiday`: three stores, units lifted on holidays (known ahead) and by price
    cuts; the last `future_days` days of each store have empty units (the rows predict reads ahead)."""
    rng = random.Random(0)
    rows = []
    for store, level in (("north", 100), ("south", 300), ("east", 50)):
        for d in range(days + future_days):
            holiday = int(d % 7 in (5, 6))
            price = 9.99 if d % 10 else 7.99
            units = "" if d >= days else f"{level + 0.5 * d + 30 * holiday + 10 * (price < 9) + rng.gauss(0, 1):.2f}"
            rows.append(f"{store},{datetime.date(2023, 1, 1) + datetime.timedelta(days=d)},{units},"
                        f"{'' if d >= days else price},{holiday}")
    rng.shuffle(rows)
    path.write_text("store,date,units,price,holiday\n" + "\n".join(rows) + "\n")
    return path


def forecast_config(make_config, path: Path, name: str, **model) -> object:
    from tests.conftest import tiny

    raw = {"name": name, "data": {"source": "csv", "path": str(path), "time_column": "date", "id_column": "store",
                                  "target_columns": ["units"], "feature_columns": ["price"],
                                  "future_columns": ["holiday"], "window": 7, "horizon": 2, "test_fraction": 0.2},
           "model": {"topology": "seq2seq", "cell": "gru", **model}}
    return make_config(raw, **tiny(data__max_examples="null", tracking__enabled="false", train__epochs=2))


@pytest.mark.slow
def test_future_columns_ingest_train_export_serve_and_predict(make_config, tmp_path: Path) -> None:
    """The decoder reads the known future values: windows carry them, the SavedModel takes them as a
    named `future` input (answering as the evaluation did), `rnnpipe serve` answers the canaries, and
    `rnnpipe predict` reads them from the rows after the last target value."""
    import tensorflow as tf

    from components import predict
    from models import load_model
    from pipeline import runner

    path = stores_csv(tmp_path / "stores.csv")
    config = forecast_config(make_config, path, "ts_future")
    result = runner.run(config, log=lambda _: None)  # through infra validation (a served canary) and push
    pre = result.artifacts["preprocess"]
    first = raw_rows(pre.path(), "test")[0]
    assert len(first["future"]) == 2 and all(len(step) == 1 for step in first["future"])
    assert len(first["x"][0]) == 3  # units, price, holiday: the future column's past is an input too
    io_spec = pre.properties["io"]
    assert io_spec["future"] == {"features": 1, "length": 2}
    stats = json.loads(result.artifacts["validate"].path("statistics.json").read_text())
    assert stats["train"]["future"]["columns"][0]["name"] == "holiday"
    net = load_model(result.artifacts["train"].path("model.keras"))
    assert {t.name for t in net.inputs} >= {"inputs", "future"} and net.get_layer("decoder_future")

    export_dir = result.artifacts["export"].path("saved_model")
    fn = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    x = tf.constant([first["x"]], dtype=tf.float32)
    out = fn(inputs=x, future=tf.constant([first["future"]], dtype=tf.float32))["units"].numpy()
    with result.artifacts["evaluate"].path("test_predictions.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["window"] == "0"]
    np.testing.assert_allclose(out[0], [float(r["units_forecast"]) for r in rows], rtol=1e-4)
    flipped = fn(inputs=x, future=tf.constant([[[1.0 - v] for (v,) in first["future"]]], dtype=tf.float32))
    assert not np.allclose(flipped["units"].numpy(), out)  # the decoder reads them
    with pytest.raises(tf.errors.InvalidArgumentError, match="future"):
        fn(inputs=x, future=tf.constant([[[np.nan], [0.0]]], dtype=tf.float32))

    contract = json.loads((export_dir / "assets.extra" / "serving_contract.json").read_text())
    assert contract["future"]["columns"] == [{"name": "holiday", "unit": ""}] and contract["future"]["steps"] == 2
    assert [c["role"] for c in contract["inputs"]["columns"]] == ["target", "feature", "future"]
    assert "`future`: [batch, 2, 1], the known values of `holiday`" in (export_dir / "model_card.md").read_text()
    assert result.artifacts["infra_validate"].properties["validated"]
    canary = json.loads(result.artifacts["infra_validate"].path("canary.json").read_text())
    assert set(canary["inputs"]) == {"inputs", "future"}

    # predict: the two days after each store's last value are rows with empty units and holiday filled
    ahead = stores_csv(tmp_path / "ahead.csv", future_days=2)
    out_csv = tmp_path / "next.csv"
    done = predict.run(str(result.artifacts["export"].uri), str(ahead), str(out_csv), log=io.StringIO())
    assert done["rows"] == 6 and not done["bad"]
    with out_csv.open() as handle:
        got = list(csv.DictReader(handle))
    north = [r for r in got if r["id"] == "north"]
    assert [r["time"] for r in north] == ["2023-03-02", "2023-03-03"]
    lines = [ln.split(",") for ln in path.read_text().splitlines()[1:] if ln.startswith("north,")]
    window = [[float(u), float(p), float(h)] for _, _, u, p, h in sorted(lines, key=lambda f: f[1])[-7:]]
    want = fn(inputs=tf.constant([window], dtype=tf.float32),
              future=tf.constant([[[0.0], [1.0]]], dtype=tf.float32))["units"].numpy()[0]  # days 60, 61: 4 -> 0, 5 -> 1
    np.testing.assert_allclose([float(r["units"]) for r in north], want, rtol=1e-4)
    with pytest.raises(predict.PredictError, match=r"known future values of holiday for the 2 steps after the last "
                                                   r"target value, found 0"):
        predict.run(str(result.artifacts["export"].uri), str(path), str(tmp_path / "no.csv"), log=io.StringIO())


def test_future_columns_fail_at_config_time_outside_seq2seq(make_config, tmp_path: Path) -> None:
    from pipeline import runner

    path = stores_csv(tmp_path / "stores.csv", days=20)
    config = forecast_config(make_config, path, "ts_future_m21")
    bad = make_config({**config.to_dict(), "model": {"topology": "many_to_one", "cell": "gru"}})
    with pytest.raises(ConfigError, match=r"^data.future_columns feeds .* model.topology='many_to_one' has no "
                                          r"decoder"):
        runner.check(bad)
    target = make_config({**config.to_dict(), "data": {**config.to_dict()["data"], "future_columns": ["units"]}})
    with pytest.raises(ConfigError, match="data.future_columns names 'units', a target column"):
        runner.check(target)


@pytest.mark.slow
def test_id_embedding_trains_exports_and_predicts_with_the_series_id(make_config, tmp_path: Path) -> None:
    """model.id_embedding_dim: the model embeds the series id (train ids + an unseen bucket) at every
    input step; the SavedModel takes it as a named string input; predict passes each series' id."""
    import tensorflow as tf

    from components import predict
    from models import load_model
    from pipeline import runner

    path = stores_csv(tmp_path / "stores.csv")
    base = forecast_config(make_config, path, "ts_ids").to_dict()
    base["data"]["future_columns"] = []
    base["model"]["id_embedding_dim"] = 3
    base["export"]["infra_validate"] = False
    config = make_config(base)
    result = runner.run(config, to_stage="export", log=lambda _: None)
    pre = result.artifacts["preprocess"]
    assert pre.properties["io"]["series_id"] == {"vocab_size": 4}  # east, north, south + unseen
    net = load_model(result.artifacts["train"].path("model.keras"))
    assert net.get_layer("id_embedding").input_dim == 4 and {t.name for t in net.inputs} >= {"series_id"}
    raw = raw_rows(pre.path(), "test")
    export_dir = result.artifacts["export"].path("saved_model")
    fn = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    x = tf.constant([raw[0]["x"]], dtype=tf.float32)
    out = fn(inputs=x, series_id=tf.constant([raw[0]["id"]]))["units"].numpy()
    with result.artifacts["evaluate"].path("test_predictions.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["window"] == "0"]
    np.testing.assert_allclose(out[0], [float(r["units_forecast"]) for r in rows], rtol=1e-4)
    other = next(r["id"] for r in raw if r["id"] != raw[0]["id"])
    assert not np.allclose(fn(inputs=x, series_id=tf.constant([other]))["units"].numpy(), out)
    unseen = fn(inputs=x, series_id=tf.constant(["never seen"]))["units"].numpy()
    assert np.all(np.isfinite(unseen))
    contract = json.loads((export_dir / "assets.extra" / "serving_contract.json").read_text())
    assert contract["series_id"]["known"] == 3

    out_csv = tmp_path / "next.csv"
    done = predict.run(str(result.artifacts["export"].uri), str(path), str(out_csv), log=io.StringIO())
    assert done["rows"] == 6
    with out_csv.open() as handle:
        got = [r for r in csv.DictReader(handle) if r["id"] == "north"]
    lines = [ln.split(",") for ln in path.read_text().splitlines()[1:] if ln.startswith("north,")]
    window = [[float(u), float(p)] for _, _, u, p, _ in sorted(lines, key=lambda f: f[1])[-7:]]  # no holiday
    want = fn(inputs=tf.constant([window], dtype=tf.float32), series_id=tf.constant(["north"]))["units"].numpy()[0]
    np.testing.assert_allclose([float(r["units"]) for r in got], want, rtol=1e-4)


def test_id_embedding_needs_an_id_column(make_config, tmp_path: Path) -> None:
    from pipeline import runner

    path = stores_csv(tmp_path / "stores.csv", days=20)
    raw = forecast_config(make_config, path, "ts_ids_bad").to_dict()
    raw["data"]["id_column"] = None
    raw["model"]["id_embedding_dim"] = 4
    with pytest.raises(ConfigError, match=r"^model.id_embedding_dim=4 embeds the series id, but data.id_column is "
                                          r"not set"):
        runner.check(make_config(raw))


# --------------------------------------------------------------------------------------------
# Backtest origins over the validation period (evaluate.backtest.on)


@pytest.mark.parametrize("on", ["validation", "both"])
def test_backtest_origins_over_the_validation_period(tmp_path: Path, on: str) -> None:
    from components import evaluation as ev
    from components.config import EvaluateConfig, ModelConfig
    from tests.test_forecasting import last_value_model, series_preprocess, windows

    rng = np.random.default_rng(7)
    splits: dict[str, list] = {"train": [], "validation": [], "test": []}
    for k, name in enumerate(["AAA", "BBB"]):
        values = (10.0 ** (k + 1) + np.cumsum(rng.normal(0, 1, 90))).reshape(-1, 1)
        splits["train"] += windows(values[:50], 5, 2, id=name)
        splits["validation"] += windows(values[50:70], 5, 2, 50, id=name)  # 14 windows per series
        splits["test"] += windows(values[70:], 5, 2, 70, id=name)
    pre = series_preprocess(tmp_path, splits)
    out = tmp_path / "out"
    out.mkdir()
    cfg = EvaluateConfig(backtest={"origins": 3, "on": on})
    result = ev.evaluate_forecast(last_value_model(5, 2, pre), pre, out, cfg, ModelConfig(topology="seq2seq"))
    with (out / "backtest_validation.csv").open() as handle:
        origins = list(csv.DictReader(handle))
    assert [r["origin"] for r in origins] == ["1", "2", "3"] and all(r["windows"] == "2" for r in origins)
    assert origins[0]["time"] == "2021-02-24" and origins[-1]["time"] == "2021-03-09"  # first, last validation window
    # the model is the last-value forecast: each origin's MAE is last value's on those validation windows
    picks, _ = ev.backtest_origins([r.get("id") for r in splits["validation"]], 3, "validation")
    for row, idx in zip(origins, picks):
        chosen = [splits["validation"][i] for i in idx]
        want = np.mean([abs(np.asarray(r["y"]) - r["x"][-1][0]).mean() for r in chosen])
        assert float(row["model_mae"]) == pytest.approx(want, rel=1e-4)
    assert (out / "backtest_validation_error_by_origin.png").is_file()
    report = "\n".join(result["report"])
    assert "## Backtest (validation period)" in report and "reported only: the gate reads test windows" in report
    test_windows = len(splits["test"])
    if on == "validation":  # the gate reads the whole test split
        assert result["examples"] == test_windows and not (out / "backtest.csv").exists()
    else:  # both: the gate reads the test origins
        assert result["examples"] == 6 and (out / "backtest.csv").is_file()


def test_backtest_on_is_checked() -> None:
    from components.config import EvaluateConfig

    assert EvaluateConfig(backtest={"origins": 2, "on": "both"}).backtest["on"] == "both"
    with pytest.raises(ConfigError, match=r"evaluate.backtest.on='tests' is not allowed. Allowed: test, validation, "
                                          r"both"):
        EvaluateConfig(backtest={"origins": 2, "on": "tests"})
    with pytest.raises(ConfigError, match="evaluate.backtest needs origins"):
        EvaluateConfig(backtest={"on": "validation"})
