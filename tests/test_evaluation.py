"""Task metrics and their baselines, golden values on hand-made arrays; the evaluation artifacts."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components import evaluation as ev
from pipeline.artifacts import Artifact
from pipeline.config import EvaluateConfig, ModelConfig


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
    x = np.arange(12, dtype=float).reshape(1, 6, 2)  # columns: target, feature
    assert ev.naive_forecast(x, 3, [0], synced=False)[0, :, 0].tolist() == [6.0, 8.0, 10.0]  # last season
    assert ev.naive_forecast(x, 8, [0], synced=False)[0, :, 0].tolist() == [10.0] * 8  # short window: last value
    assert ev.naive_forecast(x, 6, [1], synced=True)[0, :, 0].tolist() == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]


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
    assert {"confusion_matrix.png", "evaluation.md", "metrics.json", "blessing.json", "predictions.csv"} <= names
    metrics = art.properties["metrics"]
    assert {"test_accuracy", "test_macro_f1", "baseline_accuracy", "baseline_macro_f1"} <= set(metrics)
    report = (art.uri / "evaluation.md").read_text()
    assert "| metric | model | baseline: majority class" in report and "## Per class" in report
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


def test_forecast_evaluation_in_raw_units_against_seasonal_naive(tmp_path: Path) -> None:
    """A model that always predicts 0 (normalised) forecasts the train mean; golden MAEs."""
    import keras

    rng = np.random.default_rng(0)
    series = lambda n: rng.normal(20, 3, size=(n, 6, 1)).round(1).tolist()  # noqa: E731
    train_x, test_x = series(20), series(10)
    train_y = [row[-2:] for row in series(20)]
    test_y = [row[-2:] for row in series(10)]
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
    result = ev.evaluate_forecast(model, pre, out_dir, EvaluateConfig(), ModelConfig(topology="seq2seq"))
    actual = np.asarray(test_y)
    assert result["main"] == "mae" and result["baseline_name"] == "seasonal naive (season 2)"
    assert result["model"]["mae"] == pytest.approx(np.abs(actual - 21.0).mean(), rel=1e-5)
    naive = np.asarray(test_x)[:, -2:]  # the last season (= horizon) of the input window
    assert result["baseline"]["mae"] == pytest.approx(np.abs(actual - naive).mean(), rel=1e-5)
    assert {"error_by_horizon.png", "forecast_vs_actual.png"} <= {p.name for p in out_dir.iterdir()}
