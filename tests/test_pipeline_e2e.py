"""End to end: the names pipeline into a temporary MLflow store; caching, slices, the export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import ConfigError, with_overrides
from pipeline import runner
from tests.conftest import tiny

QUIET = {"log": lambda _: None}


def test_run_is_recorded_in_mlflow(names_run) -> None:
    from mlflow import MlflowClient

    config, result = names_run
    client = MlflowClient(tracking_uri=config.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == config.name
    params = run.data.params
    assert params["model.topology"] == "many_to_one" and params["model.cell"] == "lstm"
    assert params["train.epochs"] == "2" and params["data.source"] == "names"
    assert len(params) == len(config.flat())
    metrics = run.data.metrics
    for name in ("test_accuracy", "test_macro_f1", "baseline_accuracy", "val_loss", "loss"):
        assert name in metrics, name
    assert len(client.get_metric_history(result.run_id, "val_loss")) == 2  # per epoch
    tags = run.data.tags
    assert (tags["topology"], tags["cell"], tags["dataset"]) == ("many_to_one", "lstm", "names")
    assert tags["cudnn"] in ("yes", "no", "partial") and tags["blessed"] in ("true", "false")
    listed = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "plots", "reports"} <= listed
    plots = {Path(a.path).name for a in client.list_artifacts(result.run_id, "plots")}
    assert {"learning_curves.png", "confusion_matrix.png", "lengths.png"} <= plots
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert any(m.source_run_id == result.run_id and m.name == "keras_model" for m in models)


def test_every_stage_ran_and_exported_a_version(names_run) -> None:
    config, result = names_run
    assert list(result.artifacts) == list(runner.STAGE_NAMES)
    assert not any(result.cached.values())
    path = Path(result.export_path)
    assert path.name == "1" and (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    lineage = json.loads((result.run_dir / "run.json").read_text())
    assert set(lineage["stages"]) == set(runner.STAGE_NAMES)


def test_export_answers_raw_strings_in_a_fresh_process(names_run) -> None:
    _, result = names_run
    code = (
        "import sys, json, tensorflow as tf\n"
        "assert not any(m.split('.')[0] in ('pipeline', 'components', 'models') for m in sys.modules)\n"
        "fn = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = fn(inputs=tf.constant(['Mary', 'John', 'Zoe']))\n"
        "print(json.dumps({'label': [s.decode() for s in out['label'].numpy()],"
        " 'p': out['probabilities'].numpy().tolist()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, result.export_path], cwd="/", capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(answer["label"]) <= {"female", "male"} and len(answer["label"]) == 3
    for row in answer["p"]:
        assert len(row) == 2 and abs(sum(row) - 1) < 1e-4


def test_rerun_reuses_every_stage_and_a_changed_key_reruns_from_its_stage(make_config) -> None:
    config = make_config(**tiny(export__infra_validate="false"))
    first = runner.run(config, **QUIET)
    assert not any(first.cached.values())
    again = runner.run(config, **QUIET)
    assert all(again.cached.values()) and again.run_id != first.run_id
    assert again.export_path == first.export_path  # same model: no new version
    changed = runner.run(with_overrides(config, {"train.epochs": 2}), **QUIET)
    assert changed.cached == {"ingest": True, "validate": True, "preprocess": True, "train": False,
                              "evaluate": False, "export": False, "infra_validate": False, "push": False}
    assert Path(changed.export_path).name == "2"


def test_from_and_to_run_a_slice(make_config) -> None:
    config = make_config(**tiny(export__infra_validate="false"))
    head = runner.run(config, to_stage="preprocess", **QUIET)
    assert list(head.artifacts) == ["ingest", "validate", "preprocess"]
    with pytest.raises(ConfigError, match="--from needs a cached 'train'"):
        runner.run(config, from_stage="evaluate", **QUIET)
    full = runner.run(config, **QUIET)
    assert full.cached["preprocess"] and not full.cached["train"]
    redo = runner.run(config, from_stage="train", to_stage="train", **QUIET)
    assert list(redo.artifacts) == ["ingest", "validate", "preprocess", "train"]
    assert redo.cached == {"ingest": True, "validate": True, "preprocess": True, "train": False}
    with pytest.raises(ConfigError, match="not a stage"):
        runner.run(config, from_stage="deploy", **QUIET)


def test_not_blessed_stops_before_export_and_finishes(make_config) -> None:
    from mlflow import MlflowClient

    config = make_config(**tiny(export__require_blessing="true"),
                         **{"evaluate__thresholds": "{accuracy: {min: 1.01}}"})
    result = runner.run(config, **QUIET)
    assert "export" in result.artifacts and result.export_path is None
    assert "infra_validate" not in result.artifacts
    run = MlflowClient(tracking_uri=config.tracking.uri).get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["blessed"] == "false"
    assert not Path(config.export.dir, config.name).exists()
