"""The blessed export in the MLflow model registry: a pyfunc around the SavedModel, alias `champion`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline import registry, runner, store
from tests.serving_support import blessed_names_run

NAMES = ["Mary", "john", "Zoë"]


@pytest.fixture(scope="module")
def blessed(names_run: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return blessed_names_run(names_run, tmp_path_factory)


def in_process(export_path: str) -> dict[str, Any]:
    import tensorflow as tf

    out = tf.saved_model.load(export_path).signatures["serving_default"](inputs=tf.constant(NAMES))
    return {"label": [s.decode() for s in out["label"].numpy()], "probabilities": out["probabilities"].numpy()}


def test_champion_is_the_validated_export(blessed: tuple[Any, Any]) -> None:
    from mlflow import MlflowClient

    config, result = blessed
    assert result.artifacts["infra_validate"].properties["tags"]["infra_validated"] == "true"
    client = MlflowClient(tracking_uri=config.tracking.uri)
    version = client.get_model_version_by_alias(config.name, registry.CHAMPION)
    assert version.run_id == result.run_id
    assert version.tags[registry.EXPORT_PATH_TAG] == result.export_path
    assert version.tags[registry.CONTENT_TAG] == result.artifacts["push"].properties["content_hash"]
    assert version.tags[registry.DIGEST_TAG] == result.artifacts["evaluate"].properties["data_digest"]
    assert {"cell", "topology", "test_accuracy", "rnnpipe.run_id"} <= set(version.tags)
    run = client.get_run(result.run_id)
    assert run.data.tags["registered_version"] == str(version.version)
    assert registry.last_blessed_metrics(config)["accuracy"] == run.data.metrics["test_accuracy"]


def test_registered_pyfunc_has_signature_example_and_answers_raw(blessed: tuple[Any, Any]) -> None:
    import mlflow
    import pandas as pd

    config, result = blessed
    store.use_store(config.tracking.uri)  # not mlflow.set_tracking_uri: it exports MLFLOW_TRACKING_URI
    model = mlflow.pyfunc.load_model(f"models:/{config.name}@{registry.CHAMPION}")
    inputs = model.metadata.get_input_schema()
    assert inputs.input_names() == ["inputs"] and inputs.inputs[0].type.name == "string"
    assert set(model.metadata.get_output_schema().input_names()) == {"label", "probabilities"}
    assert model.metadata.saved_input_example_info is not None
    answer = model.predict(pd.DataFrame({"inputs": NAMES}))
    local = in_process(result.export_path)
    assert list(answer["label"]) == local["label"]
    np.testing.assert_allclose(answer["probabilities"], local["probabilities"], atol=1e-5)


def test_rerun_of_a_cached_export_registers_nothing_new(blessed: tuple[Any, Any]) -> None:
    from mlflow import MlflowClient

    config, result = blessed
    client = MlflowClient(tracking_uri=config.tracking.uri)
    before = {v.version for v in client.search_model_versions(f"name = '{config.name}'")}
    again = runner.run(config, log=lambda _: None)
    assert all(again.cached.values()) and again.export_path == result.export_path
    assert {v.version for v in client.search_model_versions(f"name = '{config.name}'")} == before
    assert client.get_model_version_by_alias(config.name, registry.CHAMPION).tags[registry.EXPORT_PATH_TAG] == \
        result.export_path


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(blessed: tuple[Any, Any]) -> None:
    from components.serving import call

    config, result = blessed
    local = in_process(result.export_path)
    with registry.serve_registered(config.tracking.uri, config.name) as url:
        for body in ({"dataframe_split": {"columns": ["inputs"], "data": [[n] for n in NAMES]}},
                     {"instances": NAMES}, {"inputs": {"inputs": NAMES}}):
            status, answer = call(f"{url}/invocations", body)
            assert status == 200, answer
            assert answer["predictions"]["label"] == local["label"]
            np.testing.assert_allclose(answer["predictions"]["probabilities"], local["probabilities"], atol=1e-5)


def test_champion_follows_quality_not_recency(tmp_path) -> None:
    """A later, worse model does not take `champion`; a clearly better one does; other test data
    cannot be compared; the same model is already champion."""
    from components.metrics import mean_sample, save_samples

    rng = np.random.default_rng(0)
    truth = rng.random(2000)

    def model(accuracy: float, name: str) -> tuple[str, float]:
        hits = truth < accuracy  # nested: a better model is right wherever a worse one is
        path = tmp_path / f"{name}.npz"
        save_samples(path, {"model": {"accuracy": mean_sample(hits)}})
        return str(path), float(hits.mean())

    gru_samples, gru = model(0.856, "gru")
    lstm_samples, lstm = model(0.846, "lstm")
    best_samples, best = model(0.90, "best")
    champion = {"version": "1", "content_hash": "gru", "data_digest": "d", "metrics": {"accuracy": gru},
                "samples": gru_samples}

    def candidate(content: str, value: float, samples: str, digest: str = "d") -> dict[str, Any]:
        return {"content_hash": content, "data_digest": digest, "gate_metrics": ["accuracy"],
                "main_metric": "accuracy", "metrics": {"test_accuracy": value}, "samples": samples}

    take, reason = registry.decide(candidate("lstm", lstm, lstm_samples), champion, 0.95)
    assert not take and reason.startswith("does not beat the champion: accuracy 0.84") and "95% CI" in reason
    take, reason = registry.decide(candidate("best", best, best_samples), champion, 0.95)
    assert take and reason.startswith("beats the champion")
    take, reason = registry.decide(candidate("lstm", lstm, lstm_samples, digest="other"), champion, 0.95)
    assert take and "judged on other test data" in reason, reason
    assert registry.decide(candidate("gru", gru, gru_samples), champion, 0.95) == (True, "already champion (version 1)")
    assert registry.decide(candidate("lstm", lstm, lstm_samples), None, 0.95) == (True, "first registered version")
