"""The Evaluator gate: thresholds, baseline and last-blessed comparisons, and the not-blessed path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.config import EvaluateConfig, with_overrides
from components.evaluation import bless
from pipeline import runner
from tests.serving_support import blessed_names_run

QUIET = {"log": lambda _: None}


def cfg(**kwargs: Any) -> EvaluateConfig:
    return EvaluateConfig(**{"min_test_examples": 0, **kwargs})


def result(model: dict[str, float], baselines: dict[str, dict[str, float]] | None = None,
           gate: tuple[str, ...] = ("accuracy",), examples: int = 100, **extra: Any) -> dict[str, Any]:
    """An evaluator's result without per-example samples (point comparisons)."""
    return {"model": model, "baselines": baselines or {}, "gate": list(gate), "examples": examples,
            "samples": {"model": {}}, **extra}


def judged(*args: Any, **kwargs: Any) -> tuple[bool, list[str], list[str]]:
    out = bless(*args, **kwargs)
    return out["blessed"], out["reasons"], out["failures"]


def test_thresholds_min_and_max() -> None:
    model = {"accuracy": 0.61, "loss": 0.9}
    ok, reasons, failures = judged(result(model), cfg(thresholds={"accuracy": {"min": 0.7}}, compare_to="none"))
    assert not ok and failures == ["accuracy 0.61 < min 0.7"] and reasons == failures
    ok, _, failures = judged(result(model), cfg(thresholds={"loss": {"max": 0.5}}, compare_to="none"))
    assert not ok and failures == ["loss 0.9 > max 0.5"]
    ok, reasons, failures = judged(result(model), cfg(thresholds={"accuracy": {"min": 0.6, "max": 0.7}},
                                                      compare_to="none"))
    assert ok and not failures and "within" in reasons[0]
    ok, _, failures = judged(result(model), cfg(thresholds={"macro_f1": {"min": 0.1}}, compare_to="none"))
    assert not ok and "'macro_f1', which this task does not report" in failures[0]


def test_nan_never_passes_a_threshold() -> None:
    ok, _, failures = judged(result({"mae": float("nan")}, gate=("mae",)),
                             cfg(thresholds={"mae": {"max": 2.0}}, compare_to="none"))
    assert not ok and failures


def test_baseline_must_be_beaten_strictly() -> None:
    ok, _, failures = judged(result({"accuracy": 0.75}, {"majority": {"accuracy": 0.75}}), cfg())
    assert not ok and failures[0].startswith("accuracy 0.75 does not beat best baseline 'majority' 0.75")
    assert judged(result({"accuracy": 0.76}, {"majority": {"accuracy": 0.75}}), cfg())[0]
    mae = {"last value": {"mae": 1.5}, "window mean": {"mae": 3.0}}
    assert judged(result({"mae": 1.0}, mae, ("mae",)), cfg())[0]  # lower is better
    assert not judged(result({"mae": 1.6}, mae, ("mae",)), cfg())[0]
    assert judged(result({"mae": 1.6}, mae, ("mae",)), cfg(tolerance=0.2))[0]


def test_the_gate_compares_with_the_strongest_baseline() -> None:
    """A forecast that beats a weak seasonal naive but loses to last value is not blessed."""
    bases = {"seasonal naive (season 52)": {"mae": 9.0}, "last value": {"mae": 2.0}, "drift": {"mae": 2.5}}
    ok, _, failures = judged(result({"mae": 3.0}, bases, ("mae",)), cfg())
    assert not ok and "best baseline 'last value' 2" in failures[0]


def test_every_gate_metric_must_pass() -> None:
    """An empty-output-like seq2seq: token error rate beats the frequent target, perplexity loses."""
    bases = {"empty output": {"token_error_rate": 1.0}, "most frequent": {"token_error_rate": 1.07},
             "train unigram": {"teacher_forced_perplexity": 20.0}}
    model = {"token_error_rate": 0.99, "teacher_forced_perplexity": 25.0}
    ok, _, failures = judged(result(model, bases, ("token_error_rate", "teacher_forced_perplexity")), cfg())
    assert not ok and len(failures) == 1 and failures[0].startswith("teacher_forced_perplexity 25")


def test_degenerate_outputs_are_never_blessed() -> None:
    from components.evaluation import degenerate

    assert degenerate([[], [], ["a"]]).startswith("degenerate outputs: 67% of the test outputs are empty")
    assert "the same output" in degenerate([["a", "b"]] * 5)
    assert degenerate([["a"], ["b"], []]) is None
    bases = {"empty output": {"token_error_rate": 1.0}}
    degenerate_result = result({"token_error_rate": 0.2}, bases, ("token_error_rate",),
                               degenerate="degenerate outputs: 100% of the test outputs are empty")
    ok, _, failures = judged(degenerate_result, cfg())
    assert not ok and failures == ["degenerate outputs: 100% of the test outputs are empty"]


def test_too_few_test_examples_are_never_blessed() -> None:
    ok, _, failures = judged(result({"accuracy": 0.9}, {"majority": {"accuracy": 0.5}}, examples=4),
                             cfg(min_test_examples=30))
    assert not ok and failures[0].startswith("only 4 test examples (evaluate.min_test_examples is 30)")


def test_bootstrap_interval_decides_a_close_call() -> None:
    """Paired bootstrap: a 1-point gain on 200 examples is not shown; on 20000 it is."""
    from components.metrics import mean_sample

    rng = np.random.default_rng(0)
    for n, expected in ((200, False), (20000, True)):
        base = rng.random(n) < 0.80
        mine = base.copy()
        flip = rng.choice(np.flatnonzero(~base), size=n // 100, replace=False)
        mine[flip] = True  # the model is right wherever the baseline is, and on 1% more
        res = result({"accuracy": float(mine.mean())}, {"majority": {"accuracy": float(base.mean())}},
                     examples=n, samples={"model": {"accuracy": mean_sample(mine)},
                                          "majority": {"accuracy": mean_sample(base)}})
        out = bless(res, cfg())
        (c,) = out["comparisons"]
        assert c["low"] is not None and c["low"] <= c["delta"] <= c["high"]
        assert out["blessed"] is expected and ("95% CI" in out["reasons"][0])


def test_last_blessed_must_not_be_worse_within_tolerance() -> None:
    def champ(value: float) -> dict[str, Any]:
        return {"version": "1", "metrics": {"accuracy": value}}

    last_cfg = cfg(compare_to="last_blessed")
    assert judged(result({"accuracy": 0.80}), last_cfg, champ(0.80))[0]  # a tie passes (no samples to resample)
    ok, _, failures = judged(result({"accuracy": 0.78}), last_cfg, champ(0.80))
    assert not ok and failures[0].startswith("accuracy 0.78 does not beat champion v1 0.8")
    assert judged(result({"accuracy": 0.78}), cfg(compare_to="last_blessed", tolerance=0.05), champ(0.80))[0]
    ok, reasons, _ = judged(result({"accuracy": 0.1}), last_cfg, None)
    assert ok and reasons == ["accuracy: no champion with this metric registered yet: nothing to compare with"]


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
    assert "< min 1.01" in gate["reason"] and any("stopping here: not blessed" in line for line in lines)
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
    assert props["blessed"] and "no champion with this metric registered yet" in props["reasons"][0]

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
    assert not props["blessed"] and "does not beat champion v1 0.99" in props["failures"][0]
    assert second.export_path is None
    assert client.get_run(second.run_id).info.status == "FINISHED"
