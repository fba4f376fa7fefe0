"""The MLflow model registry: validated exports as registered versions, the `champion` alias.

The push stage publishes a validated SavedModel and registers it (components/push.py `register`,
with `properties["register"]`, through this module's `register` that the runner hands it). Registration is idempotent,
keyed by the SavedModel's content hash: a retry, a rerun, a `rm -rf exports` followed by a new
run of the same model, or two concurrent runs never create a second registry version for one
model (the version is created with its tags in one call, under the store's lock).

The champion follows quality, not recency: a new version takes the `champion` alias only when
no champion exists, the champion was judged on other test data (another data digest), or the
new model beats it on the main gate metric with the paired bootstrap on the same test examples
(`evaluate.confidence`); otherwise it is registered without the alias, with the reason as a
tag. `champion` gives the evaluator its reference for `compare_to: last_blessed`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from components import faults
from components.config import Config
from components.stage_files import SAMPLES, SAMPLES_RUN_FOLDER
from pipeline.store import ENV_URI, requirements, store_lock, tracking_uri

CHAMPION = "champion"
PYFUNC_NAME = "serving_model"
CONTENT_TAG = "rnnpipe.content_hash"
EXPORT_PATH_TAG = "rnnpipe.export_path"
DIGEST_TAG = "rnnpipe.data_digest"
SAMPLES_ARTIFACT = f"{SAMPLES_RUN_FOLDER}/{SAMPLES}"  # where the tracker logged the evaluation's samples


def _client(config: Config) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri(config))


def _versions(client: Any, name: str) -> list[Any]:
    import mlflow

    try:
        return list(client.search_model_versions(f"name = '{name}'"))
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise  # a store error is not "never registered" (that would register the model again)
        return []


def _alias(client: Any, name: str) -> Any:
    import mlflow

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # no model / no alias
            raise  # a store error is not "no champion" (that would hand the alias to any new version)
        return None


def champion(config: Config) -> dict[str, Any] | None:
    """The champion's version, run, test metrics (without `test_`), data digest and the local path
    of its per-example samples (downloaded once into runs/<name>/_champion/); None if none."""
    if not config.tracking.enabled:
        return None
    client = _client(config)
    version = _alias(client, config.name)
    if version is None or not version.run_id:
        return None
    metrics = client.get_run(version.run_id).data.metrics
    return {"version": str(version.version), "run_id": version.run_id,
            "metrics": {k[len("test_"):]: v for k, v in sorted(metrics.items()) if k.startswith("test_")},
            "data_digest": version.tags.get(DIGEST_TAG), "content_hash": version.tags.get(CONTENT_TAG),
            "samples": _samples(config, version.run_id)}


def _samples(config: Config, run_id: str) -> str | None:
    """The champion run's evaluation samples as a local file (cached by run id), or None."""
    import mlflow

    local = Path(config.runs_dir) / config.name / "_champion" / f"{run_id}.npz"
    if not local.is_file():
        try:
            got = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=SAMPLES_ARTIFACT,
                                                      tracking_uri=tracking_uri(config))
        except Exception:  # noqa: BLE001 - an old run without samples, or artifacts unreachable
            return None
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(Path(got).read_bytes())
        os.replace(tmp, local)
    return str(local.resolve())


def last_blessed_metrics(config: Config) -> dict[str, float] | None:
    """The champion's test metrics (without the `test_` prefix), or None."""
    found = champion(config)
    return found["metrics"] or None if found else None


def decide(candidate: dict[str, Any], current: dict[str, Any] | None, confidence: float) -> tuple[bool, str]:
    """Whether a new version takes the champion alias from `current`, and why."""
    from components import metrics as registry

    if current is None:
        return True, "first registered version"
    if current.get("content_hash") == candidate["content_hash"]:
        return True, f"already champion (version {current['version']})"
    if current.get("data_digest") != candidate.get("data_digest"):
        return True, (f"champion v{current['version']} was judged on other test data "
                      f"({current.get('data_digest')} vs {candidate.get('data_digest')}): not comparable")
    gates = candidate.get("gate_metrics") or [candidate["main_metric"]]
    name = gates[0]
    mine, theirs = candidate["metrics"].get(f"test_{name}"), current["metrics"].get(name)
    if mine is None or theirs is None:
        return True, f"champion v{current['version']} has no {name} to compare with"
    ours = registry.load_samples(candidate["samples"]).get("model", {}) if candidate.get("samples") else {}
    their_samples = registry.load_samples(current["samples"]).get("model", {}) if current.get("samples") else {}
    comparison = registry.compare(registry.get(name), mine, theirs, ours.get(name), their_samples.get(name),
                                  confidence)
    interval = (f", {confidence:.0%} CI {comparison['low']:+.4g}..{comparison['high']:+.4g}"
                if comparison["low"] is not None else ", point comparison")
    text = f"{name} {mine:.4g} vs champion v{current['version']} {theirs:.4g} (improvement {comparison['delta']:+.4g}" \
           f"{interval})"
    if registry.passes(comparison):
        return True, "beats the champion: " + text
    return False, "does not beat the champion: " + text


def register(config: Config, info: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    """Register a published, validated export once (by content hash); move `champion` if it is better.

    Returns {name, version, champion, reason} (also set as run tags), or None when registration is off
    or the model was not blessed (published with `export.require_blessing: false`).
    """
    if not info.get("enabled", True) or not info.get("blessed"):
        return None
    import mlflow

    client = _client(config)
    name = config.name
    with store_lock(tracking_uri(config)):
        known = [v for v in _versions(client, name) if v.tags.get(CONTENT_TAG) == info["content_hash"]]
        if known:
            version = str(min(int(v.version) for v in known))
        else:
            version = _create_version(config, client, info, run_id)
        current = champion(config)
        take, reason = decide(info, current, config.evaluate.confidence)
        if take:
            client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, "rnnpipe.champion_decision", reason[:5000])
    mlflow.set_tags({"registered_model": name, "registered_version": version, "champion": str(take).lower(),
                     "champion_reason": reason[:5000]})
    return {"name": name, "version": version, "champion": take, "reason": reason}


def _create_version(config: Config, client: Any, info: dict[str, Any], run_id: str) -> str:
    """Log the pyfunc model in the run and create its registry version with every tag in one call."""
    import mlflow

    signature, example = _pyfunc_signature(info)
    quiet = logging.getLogger("mlflow.pyfunc")
    level, bar = quiet.level, os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    quiet.setLevel(logging.ERROR)  # the by-value pickling warning: the class is ours (see saved_model_pyfunc)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        logged = log_pyfunc(info["path"], signature, example)
    finally:
        quiet.setLevel(level)
        if bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar
    faults.point("register:logged")
    m = config.model
    tags = {CONTENT_TAG: info["content_hash"], EXPORT_PATH_TAG: info["path"], DIGEST_TAG: info.get("data_digest"),
            "rnnpipe.export_version": info.get("version"), "rnnpipe.run_id": run_id, "cell": m.cell,
            "topology": m.topology, "main_metric": info.get("main_metric"),
            **{k: f"{v:.6g}" for k, v in info.get("metrics", {}).items() if k.startswith(("test_", "baseline_"))}}
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.create_registered_model(config.name)
    created = client.create_model_version(config.name, logged.model_uri, run_id=run_id,
                                          tags={k: str(v) for k, v in tags.items() if v is not None})
    return str(created.version)


def log_pyfunc(saved_model: str, signature: Any, example: Any, validate: bool = False) -> Any:
    """`mlflow.pyfunc.log_model` of the SavedModel wrapper, without MLflow's serving-input check by default.

    That check loads the SavedModel a second time and runs the input example through it (~1 s CPU,
    `bench/fixed_costs.py`); infra validation has just served this very SavedModel and compared its answers
    with the in-process model, and `tests/test_registry.py` loads the registered pyfunc and checks its
    answers. The SavedModel is copied once into MLflow's staging folder and once into the artifact store:
    `artifacts=` takes a copy by design (the run's artifact must not change when `exports/` does).
    """
    import types

    import mlflow

    model = saved_model_pyfunc()
    public = {"name": PYFUNC_NAME, "python_model": model, "artifacts": {"saved_model": saved_model},
              "signature": signature, "input_example": example, "pip_requirements": requirements()}
    if validate:
        return mlflow.pyfunc.log_model(**public)
    try:  # Model.log is what mlflow.pyfunc.log_model calls, with the check switched off
        from mlflow.models import Model
        from mlflow.pyfunc import _get_pyfunc_model_flavor_name

        flavor_name = _get_pyfunc_model_flavor_name(model)
    except ImportError:  # a newer MLflow moved these internals: the public call, with its check
        return mlflow.pyfunc.log_model(**public)

    def save_model(validate_serving_input: bool = True, **kwargs: Any) -> Any:  # Model.log reads the flag
        return mlflow.pyfunc.save_model(**kwargs)

    flavor = types.SimpleNamespace(__name__=mlflow.pyfunc.__name__, save_model=save_model)
    return Model.log(artifact_path=None, flavor=flavor, validate_serving_input=False, flavor_name=flavor_name,
                     **public)


def _pyfunc_signature(info: dict[str, Any]) -> tuple[Any, Any]:
    """Signature and input example from the validated canaries (raw inputs and answers)."""
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    canary = json.loads(Path(info["canary"]).read_text())
    if isinstance(canary["inputs"], dict):  # several named inputs (known future values, series id): no example
        return None, None
    inputs, outputs = canary["inputs"][:2], canary["outputs"]
    if not inputs:
        return None, None
    from components import kinds

    if info.get("input_kind") in kinds.KINDS and kinds.kind(info["input_kind"]).strings:
        example = pd.DataFrame({"inputs": [str(v) for v in inputs]})
    else:
        example = np.asarray(inputs, dtype="float32")
    answers = {k: np.asarray(v[:2], dtype=object if _strings(v) else "float32") for k, v in outputs.items()}
    return infer_signature(example, answers), example


def _strings(values: Any) -> bool:
    while isinstance(values, list) and values:
        values = values[0]
    return isinstance(values, str)


def saved_model_pyfunc() -> Any:
    """A pyfunc PythonModel answering raw inputs with the SavedModel's `serving_default`.

    Defined inside a function so cloudpickle stores the class by value: `mlflow models serve`
    needs TensorFlow, not this project, on its path.
    """
    import mlflow

    class SavedModelPyfunc(mlflow.pyfunc.PythonModel):
        _skip_type_hint_validation = True  # the signature is given explicitly at log time

        def load_context(self, context) -> None:  # noqa: ANN001
            import tensorflow as tf

            self._loaded = tf.saved_model.load(context.artifacts["saved_model"])
            self._fn = self._loaded.signatures["serving_default"]
            self._spec = self._fn.structured_input_signature[1]["inputs"]

        def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 - no hints: MLflow reads them
            import numpy as np
            import tensorflow as tf

            values = model_input
            if hasattr(values, "columns"):  # a DataFrame: the `inputs` column
                values = values["inputs" if "inputs" in values.columns else values.columns[0]].tolist()
            elif isinstance(values, dict):
                named = {k: np.asarray(v) for k, v in values.items() if k in ("future", "series_id")}
                if named:  # a model with the known future values / series id beside its inputs
                    tensors = {k: tf.constant(v.astype("float32") if k == "future" else v.astype(str))
                               for k, v in named.items()}
                    out = self._fn(inputs=tf.constant(np.asarray(values["inputs"], dtype="float32")), **tensors)
                    return {k: v.numpy() for k, v in out.items()}
                values = values.get("inputs", next(iter(values.values())))
            if self._spec.dtype == tf.string:
                tensor = tf.constant(np.asarray([str(v) for v in np.ravel(np.asarray(values, dtype=object))]))
            else:
                tensor = tf.constant(np.asarray(values, dtype="float32"))
            out = self._fn(inputs=tensor)
            result = {}
            for key, value in out.items():
                arr = value.numpy()
                if arr.dtype == object:
                    arr = np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(arr)
                result[key] = arr
            return result

    return SavedModelPyfunc()


@contextlib.contextmanager
def serve_registered(uri: str, name: str, alias: str = CHAMPION, timeout: float = 300,
                     log_path: str | Path | None = None) -> Iterator[str]:
    """`mlflow models serve -m models:/<name>@<alias> --env-manager local` on a free loopback port.

    Yields its base URL once `/ping` answers; the server's process group is ended afterwards.
    """
    import sys

    from components.serving import local_server

    bin_dir = str(Path(sys.executable).parent)  # mlflow starts `uvicorn` from PATH
    env = {**os.environ, ENV_URI: uri, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@{alias}",
            "--env-manager", "local", "-h", "127.0.0.1", "-p", "{port}"]
    with local_server(argv, "/ping", env=env, log_path=log_path, timeout=timeout) as url:
        yield url
