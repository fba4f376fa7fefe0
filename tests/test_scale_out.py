"""Stages runnable alone on a shared run dir, and tracking against a real `mlflow server`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import ConfigError
from pipeline import runner
from tests.conftest import ROOT, tiny

QUIET = {"log": lambda _: None}


def test_each_stage_alone_on_a_shared_run_dir(make_config, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    config = make_config(**tiny(export__infra_validate="false"))
    run_dir = tmp_path / "shared"
    with pytest.raises(ConfigError, match="needs the output of 'ingest'"):
        runner.run_stage(config, "validate", run_dir, **QUIET)
    for name in runner.STAGE_NAMES:
        art = runner.run_stage(config, name, run_dir, **QUIET)
        assert art.type == name and (run_dir / name / runner.CURRENT).read_text() == art.fingerprint
    again = runner.run_stage(config, "train", run_dir, **QUIET)  # same inputs and config: cached
    assert again.uri == runner.run_stage(config, "train", run_dir, **QUIET).uri
    run_id = (run_dir / runner.RUN_ID_FILE).read_text()
    run = MlflowClient(tracking_uri=config.tracking.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert {"test_accuracy", "val_loss", "examples_train"} <= set(run.data.metrics)
    assert (run_dir / "export" / runner.CURRENT).is_file()
    assert Path(config.export.dir, config.name, "1", "saved_model.pb").is_file()


def test_stage_cli_rejects_unknown_stage(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "stage", "deploy", "--config",
                           str(ROOT / "configs" / "names_gender_lstm.yaml"), "--run-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "stage 'deploy' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real `mlflow server` on a loopback port with a SQLite backend and local artifacts."""
    from components.serving import local_server

    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", "{port}",
            "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"]
    with local_server(argv, "/health", cwd=tmp_path, log_path=tmp_path / "server.log") as url:
        yield url, tmp_path


@pytest.mark.slow
def test_tracking_against_a_remote_mlflow_server(make_config, mlflow_server, monkeypatch) -> None:
    from mlflow import MlflowClient

    url, server_dir = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    config = make_config(**tiny(export__infra_validate="false"))
    result = runner.run(config, **QUIET)
    client = MlflowClient(tracking_uri=url)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["model.cell"] == "lstm"
    assert "test_accuracy" in run.data.metrics and len(client.get_metric_history(run.info.run_id, "loss")) == 1
    plots = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "learning_curves.png" in plots
    assert list((server_dir / "server-artifacts").rglob("learning_curves.png"))  # stored by the server
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert any(m.source_run_id == run.info.run_id for m in models)
    assert not Path(config.tracking.uri.replace("sqlite:///", "")).exists()  # nothing went to the local store
    assert os.environ["MLFLOW_TRACKING_URI"] == url
