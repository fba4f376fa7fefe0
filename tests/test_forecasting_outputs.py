"""Forecasting outputs (issue 14): probabilistic forecasts, batch inference, input columns in the contract."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from components import evaluation as ev
from components.config import ConfigError, ModelConfig
from tests.conftest import raw_rows
from tests.forecasting_support import X_SPEC, Y_SPEC, trend_windows, trending_long_csv
from tests.test_preprocessing import preprocess

# --------------------------------------------------------------------------------------------
# 5. Probabilistic forecasts


def test_pinball_loss_golden_and_quantile_metrics() -> None:
    from models.layers import PinballLoss

    y = np.asarray([[[1.0]], [[3.0]]])  # [B=2, H=1, F=1]
    pred = np.asarray([[[0.0, 1.0, 2.0]], [[0.0, 1.0, 2.0]]])  # levels 0.1, 0.5, 0.9
    # errors y - q: row 1: 1, 0, -1 -> 0.1, 0, 0.1; row 2: 3, 2, 1 -> 0.3, 1.0, 0.9
    loss = float(PinballLoss([0.1, 0.5, 0.9])(y, pred))
    assert loss == pytest.approx(((0.1 + 0 + 0.1) / 3 + (0.3 + 1.0 + 0.9) / 3) / 2, rel=1e-6)
    samples = ev.quantile_samples(y, pred[..., None, :], [0.1, 0.5, 0.9])
    assert samples["quantile_loss"].value() == pytest.approx(loss, rel=1e-6)
    assert samples["coverage"].value() == pytest.approx(0.5)  # 1 in [0, 2], 3 is not
    from components import metrics

    assert metrics.get("quantile_loss").higher_is_better is False and metrics.get("quantile_loss").gates
    assert metrics.get("coverage").gates is False


@pytest.mark.parametrize(("quantiles", "message"), [
    ([0.1, 0.9], "include 0.5"), ([0.9, 0.5, 0.1], "increasing"), ([0.5, 1.0], "between 0 and 1")])
def test_quantile_levels_are_checked_before_any_work(quantiles: list[float], message: str) -> None:
    from components.config import TrainConfig
    from models.build import check

    with pytest.raises(ConfigError, match=message):
        check(ModelConfig(topology="seq2seq", quantiles=tuple(quantiles)), TrainConfig())


@pytest.mark.slow
def test_quantile_forecaster_trains_evaluates_and_exports_every_level(make_config, tmp_path: Path) -> None:
    import tensorflow as tf

    from pipeline import runner
    from tests.conftest import tiny

    path = trending_long_csv(tmp_path / "stores.csv", days=50)
    raw = {"name": "ts_quantiles", "data": {"source": "csv", "path": str(path), "time_column": "date",
                                           "id_column": "store", "target_columns": ["units"], "feature_columns": [],
                                           "window": 6, "horizon": 2, "scale": "window", "test_fraction": 0.2},
           "model": {"topology": "many_to_one", "cell": "lstm", "quantiles": [0.1, 0.5, 0.9]}}
    config = make_config(raw, **tiny(data__max_examples="null", tracking__enabled="false",
                                     export__infra_validate="false", train__epochs=2))
    result = runner.run(config, to_stage="export", log=lambda _: None)
    metrics = result.artifacts["evaluate"].properties["metrics"]
    assert {"test_quantile_loss", "test_coverage", "baseline_quantile_loss", "test_mae"} <= set(metrics)
    assert "baseline_coverage" not in metrics and 0 <= metrics["test_coverage"] <= 1
    with result.artifacts["evaluate"].path("test_predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"units_q0.1", "units_q0.5", "units_q0.9"} <= set(rows[0])
    assert all(float(r["units_q0.1"]) <= float(r["units_q0.5"]) <= float(r["units_q0.9"]) for r in rows)
    assert all(r["units_q0.5"] == r["units_forecast"] for r in rows)
    fn = tf.saved_model.load(str(result.artifacts["export"].path("saved_model"))).signatures["serving_default"]
    first = raw_rows(result.artifacts["preprocess"].path(), "test")[0]
    out = {k: v.numpy() for k, v in fn(inputs=tf.constant([first["x"]], dtype=tf.float32)).items()}
    assert out["quantiles"].shape == (1, 2, 1, 3) and out["units"].shape == (1, 2)
    np.testing.assert_allclose(out["units"][0], out["quantiles"][0, :, 0, 1], rtol=1e-6)  # the median
    assert np.all(np.diff(out["quantiles"], axis=-1) >= 0)
    np.testing.assert_allclose(out["quantiles"][0, 0, 0], [float(rows[0][f"units_q{q}"]) for q in (0.1, 0.5, 0.9)],
                               rtol=1e-4)


# --------------------------------------------------------------------------------------------
# 7. Batch inference on every topology


@pytest.mark.slow
@pytest.mark.parametrize("base", ["digits_onetoone_gru", "digits_rows_lstm", "names_gender_lstm",
                                  "weather_tagging_lstm", "pydoc_charlm_lstm"])
def test_predict_runs_every_topology_over_a_file(make_config, tmp_path: Path, base: str) -> None:
    """`rnnpipe predict CONFIG --input FILE`: the latest published version over a JSONL file of test
    inputs; each row's outputs equal the SavedModel's on that input; a bad line is reported."""
    import tensorflow as tf

    from components import predict
    from pipeline import cli, runner
    from tests.conftest import tiny

    config = make_config(base, **tiny(data__max_examples=40, tracking__enabled="false",
                                      export__infra_validate="false", data__window=20, data__stride=20))
    result = runner.run(config, log=lambda _: None)
    inputs = [row["x"] for row in raw_rows(result.artifacts["preprocess"].path(), "test")[:5]]
    source = tmp_path / "inputs.jsonl"
    source.write_text("".join(json.dumps({"x": x}) + "\n" for x in inputs) + "{not json\n")
    yaml_path = tmp_path / "config.yaml"
    from components.config import dump_yaml

    yaml_path.write_text(dump_yaml(config))
    out = tmp_path / "out.jsonl"
    assert cli.main(["predict", str(yaml_path), "--input", str(source), "--output", str(out),
                     "--batch-size", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    path, info = predict.resolve(str(yaml_path))
    assert path.name == "1" and info["topology"] == config.model.topology
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    numeric = info["io"]["x"]["kind"] in ("vector", "series")
    x = tf.constant(np.asarray(inputs[:1], dtype="float32")) if numeric else tf.constant([str(inputs[0])])
    want = {k: predict._plain(v.numpy()[0]) for k, v in fn(inputs=x).items()}
    assert set(want) <= set(rows[0])
    for key, value in want.items():
        if isinstance(value, (float, list)) and not (isinstance(value, list) and value and isinstance(value[0], str)):
            np.testing.assert_allclose(np.asarray(rows[0][key], dtype="float64"), np.asarray(value, dtype="float64"),
                                       rtol=1e-4, atol=1e-6)
        else:
            assert rows[0][key] == value


# --------------------------------------------------------------------------------------------
# 8. The input columns in order, with units (model card and /metadata)


def test_input_columns_and_units_in_the_contract_model_card_and_metadata(tmp_path: Path) -> None:
    from components import export
    from components.serving import ExportInfo, Limits
    from components.stage_files import SERVING_CONTRACT

    rng = np.random.default_rng(5)
    splits = {"train": trend_windows(6, 0.0, rng)}
    art, codec = preprocess(tmp_path, X_SPEC, Y_SPEC, splits, "seq2seq", units={"sales": "EUR"})
    contract = export.input_contract(codec, ModelConfig(topology="seq2seq"))
    assert contract["inputs"]["columns"] == [{"name": "sales", "role": "target", "unit": "EUR"},
                                             {"name": "promo", "role": "feature", "unit": ""}]
    card = "\n".join(export.contract_markdown(contract))
    assert "Input columns (the last axis, in this order): 0: `sales` (target, EUR), 1: `promo` (feature)." in card
    (tmp_path / "m" / "assets.extra").mkdir(parents=True)
    (tmp_path / "m" / SERVING_CONTRACT).write_text(json.dumps(contract))
    meta = ExportInfo.read(tmp_path / "m").describe(Limits())
    assert meta["input_columns"][0] == {"name": "sales", "role": "target", "unit": "EUR"}
    with pytest.raises(ConfigError, match="data.units names 'price', not a column of this data"):
        preprocess(tmp_path / "bad", X_SPEC, Y_SPEC, splits, "seq2seq", units={"price": "EUR"})


def test_predict_on_an_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    from components import predict
    from components.ingestion.sources import DataSourceError

    empty = tmp_path / "ahead.csv"
    empty.write_text("\n\n")
    with pytest.raises(DataSourceError, match="is empty"):  # one line from the CLI, as ingestion says it
        predict.split_future(empty, None, tmp_path)
