"""Shared fixtures: every test writes runs, exports and its MLflow store under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests pick their own stores

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def isolated(raw: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """A raw config dict redirected into `tmp` (runs, exports, MLflow store)."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    raw["runs_dir"] = str(tmp / "runs")
    raw.setdefault("export", {})["dir"] = str(tmp / "exports")
    raw.setdefault("tracking", {}).update(uri=f"sqlite:///{tmp}/mlruns/mlflow.db",
                                          artifact_location=str(tmp / "mlruns" / "artifacts"))
    return raw


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Any]:
    """make_config(name_or_dict, **dotted_overrides) -> validated Config living in tmp_path."""
    import yaml

    from components import config as cfgmod

    def make(base: str | dict[str, Any] = "names_gender_lstm", **overrides: Any) -> Any:
        raw = yaml.safe_load((CONFIGS / f"{base}.yaml").read_text()) if isinstance(base, str) else base
        raw = isolated(raw, tmp_path)
        for key, value in overrides.items():
            cfgmod.apply_override(raw, f"{key.replace('__', '.')}={value}")
        return cfgmod.from_dict(raw)

    return make


def tiny(**extra: Any) -> dict[str, Any]:
    """Overrides that make any pipeline run in seconds."""
    base = {"data__max_examples": 64, "train__epochs": 1, "train__batch_size": 16, "model__units": 8,
            "model__embedding_dim": 8, "export__require_blessing": "false"}
    base.update(extra)
    return base


@pytest.fixture(scope="session")
def names_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One tiny names -> gender pipeline, trained once per test session.

    Returns (config, result) with runs, exports and the MLflow store under a session tmp dir.
    """
    import yaml

    from components import config as cfgmod
    from pipeline import runner

    tmp = tmp_path_factory.mktemp("names_run")
    raw = isolated(yaml.safe_load((CONFIGS / "names_gender_lstm.yaml").read_text()), tmp)
    for key, value in tiny(data__max_examples=200, train__epochs=2).items():
        cfgmod.apply_override(raw, f"{key.replace('__', '.')}={value}")
    config = cfgmod.from_dict(raw)
    return config, runner.run(config, log=lambda _: None)


@pytest.fixture(autouse=True)
def no_leaked_tracking_uri() -> Any:
    """Fail the test that leaves MLFLOW_TRACKING_URI set (it would redirect every later test)."""
    yield
    leaked = os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert leaked is None, f"the test left MLFLOW_TRACKING_URI={leaked} in the environment"


def _folder(folder: Path) -> Any:
    return SimpleNamespace(path=lambda *parts: Path(folder).joinpath(*parts))


def ingested(folder: Path, split: str) -> list[dict[str, Any]]:
    """An ingest output's examples of one split as {"x", "y", meta...}, however they are stored."""
    from components import ingestion

    examples = ingestion.read_split(_folder(folder), split)
    if isinstance(examples, ingestion.Windows):
        return examples.examples()
    return [{"x": x, "y": y, **meta} for x, y, meta in examples]


def raw_rows(folder: Path, split: str = "test") -> list[dict[str, Any]]:
    """A preprocess output's examples of one split as read ({"x", "y", meta...}), in the arrays' order."""
    from components import stage_files

    return list(stage_files.raw_examples(_folder(folder), split))
