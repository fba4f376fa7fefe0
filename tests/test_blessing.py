"""The Evaluator gate: thresholds, baseline and last-blessed comparisons, and the not-blessed path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.evaluation import bless
from pipeline import runner
from pipeline.config import EvaluateConfig, with_overrides
from tests.serving_support import blessed_names_run

QUIET = {"log": lambda _: None}


def cfg(**kwargs: Any) -> EvaluateConfig:
    return EvaluateConfig(**kwargs)


def test_thresholds_min_and_max() -> None:
    model = {"accuracy": 0.61, "loss": 0.9}
    ok, reasons, failures = bless(model, {}, "accuracy", cfg(thresholds={"accuracy": {"min": 0.7}}, compare_to="none"))
    assert not ok and failures == ["accuracy 0.61 < 0.70"] and reasons == failures
    ok, _, failures = bless(model, {}, "accuracy", cfg(thresholds={"loss": {"max": 0.5}}, compare_to="none"))
    assert not ok and failures == ["loss 0.90 > 0.50"]
    ok, reasons, failures = bless(model, {}, "accuracy", cfg(thresholds={"accuracy": {"min": 0.6, "max": 0.7}},
                                                             compare_to="none"))
    assert ok and not failures and "within" in reasons[0]
    ok, _, failures = bless(model, {}, "accuracy", cfg(thresholds={"f1": {"min": 0.1}}, compare_to="none"))
    assert not ok and "unknown metric 'f1'" in failures[0]


def test_nan_never_passes_a_threshold() -> None:
    ok, _, failures = bless({"mae": float("nan")}, {}, "mae", cfg(thresholds={"mae": {"max": 2.0}}, compare_to="none"))
    assert not ok and failures


def test_baseline_must_be_beaten_strictly() -> None:
    ok, _, failures = bless({"accuracy": 0.75}, {"accuracy": 0.75}, "accuracy", cfg())
    assert not ok and failures == ["accuracy 0.75 does not beat baseline 0.75"]
    assert bless({"accuracy": 0.76}, {"accuracy": 0.75}, "accuracy", cfg())[0]
    assert bless({"mae": 1.0}, {"mae": 1.5}, "mae", cfg())[0]  # lower is better
    assert not bless({"mae": 1.6}, {"mae": 1.5}, "mae", cfg())[0]
    assert bless({"mae": 1.6}, {"mae": 1.5}, "mae", cfg(tolerance=0.2))[0]


def test_last_blessed_must_not_be_worse_within_tolerance() -> None:
    last = {"accuracy": 0.80}
    assert bless({"accuracy": 0.80}, {}, "accuracy", cfg(compare_to="last_blessed"), last)[0]  # a tie passes
    ok, _, failures = bless({"accuracy": 0.78}, {}, "accuracy", cfg(compare_to="last_blessed"), last)
    assert not ok and failures == ["accuracy 0.78 is worse than last_blessed 0.8"]
    assert bless({"accuracy": 0.78}, {}, "accuracy", cfg(compare_to="last_blessed", tolerance=0.05), last)[0]
    ok, reasons, _ = bless({"accuracy": 0.1}, {}, "accuracy", cfg(compare_to="last_blessed"), None)
    assert ok and reasons == ["no blessed model registered yet: nothing to compare with"]


def test_not_blessed_run_finishes_without_export(names_run: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    from mlflow import MlflowClient

    config, _ = blessed_names_run(names_run, tmp_path_factory)
    strict = with_overrides(config, {"evaluate.thresholds": {"accuracy": {"min": 1.01}}})
    lines: list[str] = []
    result = runner.run(strict, log=lines.append)
    assert result.cached["train"] and not result.cached["evaluate"]
    assert result.export_path is None and "infra_validate" not in result.artifacts
    gate = result.artifacts["export"].properties
    assert gate["gate"] is False and gate["reason"].startswith("not blessed: accuracy ")
    assert gate["reason"].endswith(" < 1.01") and any("stopping here: not blessed" in line for line in lines)
    run = MlflowClient(tracking_uri=strict.tracking.uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["blessed"] == "false" and run.data.tags["exported"] == "false"
    blessing = (result.artifacts["evaluate"].uri / "blessing.json").read_text()
    assert '"blessed": false' in blessing


def test_compare_to_last_blessed_reads_the_champion(names_run: Any, tmp_path_factory: pytest.TempPathFactory,
                                                    tmp_path: Path) -> None:
    """A fresh store: nothing registered -> blessed; a better champion -> not blessed."""
    import mlflow

    config, _ = blessed_names_run(names_run, tmp_path_factory)
    store = f"sqlite:///{tmp_path}/registry.db"
    fresh = with_overrides(config, {"evaluate.compare_to": "last_blessed", "tracking.uri": store,
                                    "tracking.artifact_location": str(tmp_path / "artifacts")})
    first = runner.run(fresh, to_stage="evaluate", **QUIET)
    assert first.cached["train"]
    props = first.artifacts["evaluate"].properties
    assert props["blessed"] and "no blessed model registered yet" in props["reasons"][0]

    client = mlflow.MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(fresh.experiment).experiment_id
    champion_run = client.create_run(exp, run_name="a better champion")
    client.log_metric(champion_run.info.run_id, "test_accuracy", 0.99)
    client.set_terminated(champion_run.info.run_id)
    client.create_registered_model(fresh.name)
    version = client.create_model_version(fresh.name, str(tmp_path), run_id=champion_run.info.run_id)
    client.set_registered_model_alias(fresh.name, "champion", version.version)

    second = runner.run(fresh, **QUIET)
    props = second.artifacts["evaluate"].properties
    assert not second.cached["evaluate"]  # the reference changed: evaluated again
    assert not props["blessed"] and props["failures"][0].endswith("is worse than last_blessed 0.99")
    assert second.export_path is None
    assert client.get_run(second.run_id).info.status == "FINISHED"
