"""tf.distribute training: MirroredStrategy on two logical CPUs, two multi-worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.serving import free_port
from tests.conftest import CONFIGS, ROOT, isolated, tiny

# Runs in a fresh interpreter: logical devices must be set before TensorFlow initialises.
MIRRORED = r"""
import json, sys
import numpy as np, tensorflow as tf, yaml
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from components import config as cfgmod
from components.preprocessing import load_split
from pipeline import runner
raw, out = json.loads(sys.argv[1]), {}
for name, dist, batch in (("mirrored", "mirrored", 8), ("single", "none", 16)):
    cfg = cfgmod.with_overrides(cfgmod.from_dict(raw), {"train.distribution": dist, "train.batch_size": batch,
                                                        "runs_dir": raw["runs_dir"] + "/" + name})
    result = runner.run(cfg, log=lambda _: None)
    model = keras.saving.load_model(result.artifacts["train"].path("model.keras"))
    x = load_split(result.artifacts["preprocess"], "test")["x"]
    out[name] = {"pred": model.predict(x, verbose=0).tolist(), "loss": result.metrics}
print("RESULT " + json.dumps(out))
"""


def names_raw(tmp_path: Path, **overrides: object) -> dict:
    from components.config import apply_override

    raw = isolated(yaml.safe_load((CONFIGS / "names_gender_lstm.yaml").read_text()), tmp_path)
    fixed = tiny(export__infra_validate="false", model__dropout=0.0, model__bidirectional="false",
                 train__clipnorm="null", train__shuffle="false", train__epochs=2)
    for key, value in {**fixed, **overrides}.items():
        apply_override(raw, f"{key.replace('__', '.')}={value}")
    return raw


def python(args: list[str], env: dict | None = None, **kwargs: object) -> subprocess.Popen:
    full = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    full.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def csv_raw(tmp_path: Path) -> dict:
    """A small CSV series: training cuts its windows per batch from the rows (`preprocessing.window_cutter`)."""
    path = tmp_path / "series.csv"
    path.write_text("time,y,a\n" + "".join(f"{h},{(h * 7) % 11 + h / 50},{h % 5}\n" for h in range(400)))
    data = {"source": "csv", "path": str(path), "time_column": "time", "target_columns": ["y"], "window": 6}
    return isolated({"name": "csv_dist", "data": data, "tracking": {"enabled": False},
                     "model": {"topology": "many_to_one", "cell": "gru", "units": 8, "dropout": 0.0},
                     "train": {"epochs": 2, "shuffle": False, "clipnorm": None},
                     "export": {"infra_validate": False, "require_blessing": False}}, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("data", ["names", "csv"])
def test_mirrored_on_two_logical_cpus_matches_single_device(tmp_path: Path, data: str) -> None:
    """Same examples per global step (shuffle off): gradients averaged over replicas = one device; also for a
    CSV's windows, cut per batch inside the distributed tf.data pipeline."""
    import numpy as np

    raw = names_raw(tmp_path, tracking__enabled="false") if data == "names" else csv_raw(tmp_path)
    proc = python(["-c", MIRRORED, json.dumps(raw)])
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    mirrored, single = np.array(result["mirrored"]["pred"]), np.array(result["single"]["pred"])
    assert mirrored.shape == single.shape and mirrored.shape[0] > 0
    np.testing.assert_allclose(mirrored, single, atol=1e-5)


@pytest.mark.slow
def test_two_workers_train_together_and_only_the_chief_logs_and_exports(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    raw = names_raw(tmp_path, train__distribution="multi_worker")
    path = tmp_path / "mw.yaml"
    path.write_text(yaml.safe_dump(raw))
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    procs = [python(["-m", "pipeline.cli", "run", str(path)],
                    env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
             for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outs):
        assert proc.returncode == 0, out[-3000:]
    assert "2 replicas" in outs[0] and "2 replicas" in outs[1]
    assert "export:" in outs[0] and "export:" not in outs[1]
    client = MlflowClient(tracking_uri=raw["tracking"]["uri"])
    runs = client.search_runs([client.get_experiment_by_name(raw["name"]).experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the chief's run only
    exports = Path(raw["export"]["dir"], raw["name"])
    assert [p.name for p in exports.iterdir() if p.name.isdigit()] == ["1"]
    worker_dir = Path(raw["runs_dir"], "_workers", "worker1", raw["name"])
    assert (worker_dir / "train").is_dir() and not (worker_dir / "export").exists()
