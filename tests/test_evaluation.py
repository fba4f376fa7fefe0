"""Task metrics and their baselines, golden values on hand-made arrays; the evaluation artifacts."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components import evaluation as ev
from components.artifacts import Artifact
from components.config import EvaluateConfig, ModelConfig


def test_classification_metrics_golden() -> None:
    y = np.array([0, 0, 1, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 0]]
    out = ev.classification_metrics(y, probs, ["a", "b", "c"])
    assert out["metrics"]["accuracy"] == pytest.approx(0.6)
    # per class F1: a 0.5 (p 0.5, r 0.5), b 0.8 (p 2/3, r 1), c 0 -> macro 0.4333
    assert out["metrics"]["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert out["per_class"]["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "support": 2}
    assert out["confusion"].tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_edit_distance_and_sequence_metrics() -> None:
    assert ev.edit_distance(list("kitten"), list("sitting")) == 3
    assert ev.edit_distance([], ["a"]) == 1 and ev.edit_distance(["a"], ["a"]) == 0
    refs = [["HH", "AH", "L", "OW"], ["K", "AE", "T"]]
    hyps = [["HH", "AH", "L", "OW"], ["K", "AA", "T", "S"]]
    m = ev.sequence_metrics(refs, hyps)
    assert m == {"exact_match": 0.5, "edit_distance": 1.0, "token_error_rate": pytest.approx(2 / 7)}
    words = ["", "[UNK]", "<s>", "</s>", "x", "y"]
    assert ev.ids_to_tokens([2, 4, 5, 3, 4, 0], words) == ["x", "y"]


def test_forecast_metrics_and_naive_baselines() -> None:
    actual = np.array([[[1.0], [2.0]], [[3.0], [4.0]]])
    pred = actual + np.array([[[1.0], [-1.0]], [[0.0], [2.0]]])
    m = ev.forecast_metrics(actual, pred, scale=2.0)
    assert m["mae"] == pytest.approx(1.0) and m["rmse"] == pytest.approx(np.sqrt(6 / 4))
    assert m["mase"] == pytest.approx(0.5)
    assert m["smape"] == pytest.approx(100 * np.mean([2 / 3, 2 / 3, 0, 4 / 10]))
    x = np.arange(12, dtype=float).reshape(1, 6, 2)  # columns: target (0, 2, ..., 10), feature
    bases = ev.naive_forecasts(x, 3, [0], season=4)
    assert bases["last value"][0, :, 0].tolist() == [10.0] * 3
    assert bases["seasonal naive (season 4)"][0, :, 0].tolist() == [4.0, 6.0, 8.0]  # the last season, repeated
    assert ev.naive_forecasts(x, 6, [0], season=2)["seasonal naive (season 2)"][0, :, 0].tolist() == [8.0, 10.0] * 3
    assert bases["drift"][0, :, 0].tolist() == [12.0, 14.0, 16.0]
    assert bases["window mean"][0, :, 0].tolist() == [5.0] * 3
    assert "seasonal naive (season 7)" not in ev.naive_forecasts(x, 3, [0], season=7)  # window shorter than a season
    assert ev.season_length(None, "weekly") == (52, "inferred from the weekly frequency")
    assert ev.season_length(12, "daily") == (12, "data.season")
    assert ev.season_length(None, "yearly")[0] is None and ev.season_length(None, None)[0] is None
    # MASE scale: the in-sample one-step seasonal-naive MAE on train (lag = season when windows hold more)
    train = np.array([[[0.0], [1.0], [3.0], [6.0]]])
    assert ev.naive_scale(train, [0], None) == (pytest.approx(2.0), 1)
    assert ev.naive_scale(train, [0], 2) == (pytest.approx(4.0), 2)
    assert ev.naive_scale(train, [0], 4)[1] == 1  # no more than a season in a window: lag 1


def test_step_mask_ignores_padding() -> None:
    x = np.array([[5, 6, 0], [7, 0, 0]])
    y = np.array([[1, 2, 0], [3, 0, 0]])
    labels_state = {"x": {"kind": "tokens"}, "y": {"kind": "labels"}}
    assert ev.step_mask(x, y, labels_state).tolist() == [[True, True, False], [True, False, False]]
    lm_state = {"x": {"kind": "tokens"}, "y": {"kind": "tokens"}}
    assert ev.step_mask(x, np.array([[6, 9, 0], [0, 0, 0]]), lm_state).tolist() == [[True, True, False]] + [[False] * 3]


def test_names_evaluation_artifacts(names_run: Any) -> None:
    _, result = names_run
    art = result.artifacts["evaluate"]
    names = {p.name for p in art.uri.iterdir()}
    assert {"confusion_matrix.png", "evaluation.md", "metrics.json", "blessing.json", "predictions.csv",
            "samples.npz"} <= names
    metrics = art.properties["metrics"]
    assert {"test_accuracy", "test_macro_f1", "baseline_accuracy", "baseline_macro_f1", "test_examples",
            "test_accuracy_improvement_ci_low", "test_accuracy_improvement_ci_high"} <= set(metrics)
    report = (art.uri / "evaluation.md").read_text()
    assert "| metric | better | model | majority class (" in report and "| stratified random |" in report
    assert "Paired bootstrap over test examples" in report and "## Per class" in report
    blessing = json.loads((art.uri / "blessing.json").read_text())
    (gate,) = blessing["comparisons"]
    assert gate["metric"] == "accuracy" and gate["low"] <= gate["delta"] <= gate["high"]
    assert gate["examples"] == metrics["test_examples"] > 0
    with (art.uri / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and set(rows[0]) == {"input", "target", "predicted", "confidence"}


def fake_preprocess(tmp_path: Path, state: dict[str, Any], splits: dict[str, tuple[Any, Any]]) -> Artifact:
    """A preprocess artifact with raw and encoded splits, as the preprocessing stage writes them."""
    from components.preprocessing import Codec, io_spec

    codec = Codec(state)
    for split, (xs, ys) in splits.items():
        np.savez(tmp_path / f"{split}.npz", x=codec.encode_inputs(xs), y=codec.encode_targets(ys))
        lines = [json.dumps({"x": x, "y": y}) + "\n" for x, y in zip(xs, ys)]
        (tmp_path / f"{split}_raw.jsonl").write_text("".join(lines))
    (tmp_path / "preprocessor.json").write_text(json.dumps(state))
    return Artifact("preprocess", tmp_path, "fp", {"io": io_spec(state)})


def forecast_case(tmp_path: Path, random_walk: bool) -> tuple[Any, Any, Any, np.ndarray, np.ndarray]:
    """A preprocess artifact of 6-step windows -> 2-step targets, and a model that always predicts
    0 (normalised), i.e. the train mean 21.0, in raw units."""
    import keras

    rng = np.random.default_rng(0)
    if random_walk:  # trending series: the last value is far better than any mean
        walk = np.cumsum(rng.normal(0, 1, size=(300, 8, 1)), axis=1) + rng.normal(0, 30, size=(300, 1, 1))
        train_x, test_x = walk[:200, :6].tolist(), walk[200:, :6].tolist()
        train_y, test_y = walk[:200, 6:].tolist(), walk[200:, 6:].tolist()
    else:
        series = lambda n: rng.normal(20, 3, size=(n, 6, 1)).round(1).tolist()  # noqa: E731
        train_x, test_x = series(20), series(10)
        train_y, test_y = [row[-2:] for row in series(20)], [row[-2:] for row in series(10)]
    state = {"topology": "seq2seq",
             "x": {"kind": "series", "columns": ["temp"], "mean": [20.0], "variance": [9.0], "features": 1,
                   "length": 6},
             "y": {"kind": "series", "columns": ["temp"], "mean": [21.0], "variance": [4.0], "features": 1,
                   "length": 2}}
    pre = fake_preprocess(tmp_path, state, {"train": (train_x, train_y), "test": (test_x, test_y)})
    inputs = keras.Input((6, 1))
    zero = keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")
    model = keras.Model(inputs, zero(keras.layers.Cropping1D((4, 0))(inputs)))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    return model, pre, out_dir, np.asarray(test_x), np.asarray(test_y)


def test_forecast_evaluation_in_raw_units_against_every_naive_baseline(tmp_path: Path) -> None:
    """Golden MAEs: the model (train mean) and each baseline, with data.season = 2."""
    model, pre, out_dir, test_x, actual = forecast_case(tmp_path, random_walk=False)
    result = ev.evaluate_forecast(model, pre, out_dir, EvaluateConfig(), ModelConfig(topology="seq2seq"), season=2)
    assert result["main"] == "mae" and result["gate"] == ["mae"] and result["examples"] == 10
    assert result["model"]["mae"] == pytest.approx(np.abs(actual - 21.0).mean(), rel=1e-5)
    bases = result["baselines"]
    assert set(bases) == {"last value", "seasonal naive (season 2)", "drift", "window mean"}
    assert bases["seasonal naive (season 2)"]["mae"] == pytest.approx(np.abs(actual - test_x[:, -2:]).mean())
    assert bases["last value"]["mae"] == pytest.approx(np.abs(actual - test_x[:, -1:]).mean())
    assert bases["window mean"]["mae"] == pytest.approx(np.abs(actual - test_x.mean(1, keepdims=True)).mean())
    assert "Season: 2 (data.season)" in " ".join(result["report"])
    assert {"error_by_horizon.png", "forecast_vs_actual.png"} <= {p.name for p in out_dir.iterdir()}


def test_a_forecast_that_loses_to_last_value_is_not_blessed(tmp_path: Path) -> None:
    model, pre, out_dir, _, _ = forecast_case(tmp_path, random_walk=True)
    result = ev.evaluate_forecast(model, pre, out_dir, EvaluateConfig(), ModelConfig(topology="seq2seq"))
    judged = ev.bless(result, EvaluateConfig())
    assert not judged["blessed"]
    (c,) = judged["comparisons"]
    assert c["reference"] == "best baseline 'last value'" and c["high"] < 0  # surely worse, not a close call
    assert judged["failures"][0].startswith("mae ") and "does not beat best baseline 'last value'" in \
        judged["failures"][0]


def test_every_emitted_metric_is_registered(names_run: Any, tmp_path: Path) -> None:
    """The metric registry knows each metric an evaluator or training logs, with a direction."""
    from components import metrics

    model, pre, out_dir, _, _ = forecast_case(tmp_path, random_walk=False)
    forecast = ev.evaluate_forecast(model, pre, out_dir, EvaluateConfig(), ModelConfig(topology="seq2seq"))
    _, result = names_run
    emitted = set(forecast["model"]) | set(result.artifacts["evaluate"].properties["metrics"]) | \
        set(json.loads(result.artifacts["train"].path("history.json").read_text()))
    unknown = [m for m in emitted if metrics.lookup(m) is None]
    assert not unknown
    for name, lower in (("test_mae", True), ("test_mase", True), ("test_token_error_rate", True),
                        ("test_teacher_forced_perplexity", True), ("val_loss", True), ("test_accuracy", False),
                        ("baseline_macro_f1", False), ("test_exact_match", False)):
        assert metrics.lower_is_better(name) is lower, name
