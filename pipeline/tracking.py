"""All MLflow code lives here: one MLflow run per pipeline run.

The run gets the flattened resolved config as params, tags (topology, cell, dataset, cudnn,
blessed...), per-epoch metrics while training, each stage's metrics, plots (PNG) and reports,
and the trained model. Stages never import MLflow: they return properties and write files,
and this module turns those into MLflow records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from pipeline import artifacts
from pipeline.config import Config, dump_yaml

PLOT_DIR = "plots"
REPORT_DIR = "reports"
ENV_URI = "MLFLOW_TRACKING_URI"


def tracking_uri(config: Config) -> str:
    """MLFLOW_TRACKING_URI wins over the config's `tracking.uri`."""
    return os.environ.get(ENV_URI) or config.tracking.uri


def _is_local_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///")


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise first-time set-up of a local SQLite store (table creation, experiments)."""
    if not _is_local_sqlite(uri):
        yield
        return
    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def use_store(uri: str) -> None:
    """Point this process's MLflow client at `uri`.

    mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; we restore the user's value so
    that "the environment variable wins" keeps meaning what the user set, not our last run.
    """
    import mlflow

    before = os.environ.get(ENV_URI)
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop(ENV_URI, None)
    else:
        os.environ[ENV_URI] = before


def experiment_id(config: Config) -> str:
    """Get or create the pipeline's experiment (safe when two processes race to create it)."""
    import mlflow

    uri = tracking_uri(config)
    name = config.experiment
    with _store_lock(uri):
        use_store(uri)
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = None
        if _is_local_sqlite(uri) and not os.environ.get(ENV_URI):
            location = (Path(config.tracking.artifact_location).resolve() / name).as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except Exception:  # a remote server: another client created it in between
            time.sleep(0.5)
            return client.get_experiment_by_name(name).experiment_id


class Tracker:
    """Records one pipeline run in MLflow."""

    def __init__(self, config: Config, run_id: str | None):
        self.config = config
        self.run_id = run_id
        self.live_epochs: set[int] = set()  # epochs already logged while training

    # -- what the runner calls -------------------------------------------------------------
    def callbacks(self, stage: str) -> list[Any]:
        """Keras callbacks for a stage (per-epoch metrics while training)."""
        return [epoch_logger(self.live_epochs)] if stage == "train" and self.run_id else []

    def stage_inputs(self, stage: str) -> dict[str, Any]:
        """Keyword inputs a stage gets from the store (hashed into its fingerprint, like its config).

        evaluate with `compare_to: last_blessed` gets the champion's test metrics (or None).
        """
        if stage == "evaluate" and self.config.evaluate.compare_to == "last_blessed":
            return {"last_blessed": last_blessed_metrics(self.config)}
        return {}

    def log_stage(self, stage: str, artifact: Any, cached: bool) -> None:
        """Log a stage's metrics, tags, plots and reports."""
        if not self.run_id:
            return
        import mlflow

        props = artifact.properties
        tags = {f"stage.{stage}": "cached" if cached else "ran", **props.get("tags", {})}
        mlflow.set_tags({k: str(v) for k, v in tags.items()})
        metrics = {k: float(v) for k, v in props.get("metrics", {}).items() if _is_number(v)}
        if metrics:
            mlflow.log_metrics(metrics)
        if stage == "train":
            self._log_history(artifact.path("history.json"), skip=set() if cached else self.live_epochs)
            self._log_keras_model(artifact)
        if stage == "infra_validate" and props.get("export"):
            register_export(self.config, artifact)
        for png in sorted(artifact.uri.glob("*.png")):
            mlflow.log_artifact(str(png), PLOT_DIR)
        for report in sorted([*artifact.uri.glob("*.md"), *artifact.uri.glob("*.html"), *artifact.uri.glob("*.csv")]):
            mlflow.log_artifact(str(report), f"{REPORT_DIR}/{stage}")

    def finish(self, result: Any) -> None:
        if not self.run_id:
            return
        import mlflow

        mlflow.log_metrics({f"time_{k}_s": v for k, v in result.seconds.items()})
        mlflow.log_dict({k: str(v.uri) for k, v in result.artifacts.items()}, "lineage.json")

    def log_summary(self, files: dict[str, str] | None = None, metrics: dict[str, float] | None = None,
                    tags: dict[str, Any] | None = None) -> None:
        """Log text files (artifact path -> content), metrics and tags on this run."""
        if not self.run_id:
            return
        import mlflow

        for path, text in (files or {}).items():
            mlflow.log_text(text, path)
        if metrics:
            mlflow.log_metrics(metrics)
        if tags:
            mlflow.set_tags({k: str(v) for k, v in tags.items()})

    # -- helpers ---------------------------------------------------------------------------
    def _log_history(self, path: Path, skip: set[int]) -> None:
        """Per-epoch metrics not logged live (a cached stage, or epochs before a resume)."""
        import mlflow

        if not path.is_file():
            return
        history = json.loads(path.read_text())
        for epoch in range(len(next(iter(history.values()), []))):
            if epoch not in skip:
                mlflow.log_metrics({k: float(v[epoch]) for k, v in history.items()}, step=epoch)

    def _log_keras_model(self, artifact: Any) -> None:
        """Log the trained Keras model (keras flavour, tensor signature)."""
        import keras
        import mlflow
        import mlflow.keras
        from mlflow.models import infer_signature

        path = artifact.path("model.keras")
        if not path.is_file():
            return
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
        example = _example_inputs(artifact)
        signature = infer_signature(example, model.predict(example, verbose=0)) if example is not None else None
        m = self.config.model
        mlflow.keras.log_model(
            model,
            name="keras_model",
            signature=signature,
            pip_requirements=_requirements(),
            tags={"pipeline": self.config.name, "topology": m.topology, "cell": m.cell, "units": str(m.units)},
        )


def _example_inputs(artifact: Any) -> Any:
    import numpy as np

    path = artifact.path("input_example.npz")
    if not path.is_file():
        return None
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays["inputs"] if list(arrays) == ["inputs"] else arrays


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("tensorflow", "keras", "numpy")]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def epoch_logger(logged: set[int]) -> Any:
    """A Keras callback logging each epoch's logs (loss, val_loss, ...) to the active run."""
    import keras
    import mlflow

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            values = {k: float(v) for k, v in (logs or {}).items()}
            if values:
                mlflow.log_metrics(values, step=epoch)
                logged.add(epoch)

    return EpochLogger()


@contextlib.contextmanager
def pipeline_run(config: Config, resume_run_id: str | None = None, nested: bool = False) -> Iterator[Tracker]:
    """Open the MLflow run for a pipeline run; it ends FAILED (or KILLED) on an exception.

    `resume_run_id` reopens an existing run (one stage at a time: `rnnpipe stage`); `nested`
    makes it a child of the active run (a trial of `rnnpipe sweep`, see `sweep_run`).
    """
    if not config.tracking.enabled:
        yield Tracker(config, None)
        return
    import mlflow

    exp_id = experiment_id(config)
    if resume_run_id:
        with mlflow.start_run(run_id=resume_run_id) as active:
            yield from _tracked(config, active.info.run_id)
        return
    close_stale_runs(exp_id)
    m = config.model
    run_name = f"{config.name}-{m.cell}-{m.topology}-{os.urandom(2).hex()}"
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, nested=nested) as active:
        mlflow.set_tags({
            "topology": m.topology,
            "cell": m.cell,
            "dataset": config.data.source,
            "pipeline": config.name,
            "rnnpipe.pid": str(os.getpid()),
            "rnnpipe.host": socket.gethostname(),
        })
        mlflow.log_params({k: _param(v) for k, v in config.flat().items()})
        mlflow.log_text(dump_yaml(config), "config.yaml")
        yield from _tracked(config, active.info.run_id)


def _tracked(config: Config, run_id: str) -> Iterator[Tracker]:
    """Yield the run's Tracker; an exception ends the run FAILED (KILLED on Ctrl-C)."""
    import mlflow

    try:
        yield Tracker(config, run_id)
    except KeyboardInterrupt:
        mlflow.set_tag("error", "interrupted")
        mlflow.end_run("KILLED")
        raise
    except BaseException as exc:
        mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
        mlflow.end_run("FAILED")
        raise


def close_stale_runs(exp_id: str) -> None:
    """Mark RUNNING runs whose process is gone (killed with -9) as KILLED, with a note."""
    import mlflow

    client = mlflow.MlflowClient()
    host = socket.gethostname()
    for run in client.search_runs([exp_id], "attributes.status = 'RUNNING'", max_results=200):
        tags = run.data.tags
        pid = tags.get("rnnpipe.pid")
        if tags.get("rnnpipe.host") != host or not (pid and pid.isdigit()) or artifacts.alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, "error", f"process {pid} died without closing the run")
        client.set_terminated(run.info.run_id, "KILLED")


def _param(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:6000]


# --------------------------------------------------------------------------------------------
# Sweeps and run queries (`rnnpipe sweep`, `rnnpipe runs`)


@contextlib.contextmanager
def sweep_run(config: Config, params: dict[str, Any], tags: dict[str, Any]) -> Iterator[Tracker]:
    """Open a sweep's parent run; trials opened with `pipeline_run(..., nested=True)` nest under it."""
    if not config.tracking.enabled:
        yield Tracker(config, None)
        return
    import mlflow

    exp_id = experiment_id(config)
    close_stale_runs(exp_id)
    run_name = f"{config.name}-sweep-{os.urandom(2).hex()}"
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as active:
        mlflow.set_tags({"pipeline": config.name, "rnnpipe.sweep": "true", "rnnpipe.pid": str(os.getpid()),
                         "rnnpipe.host": socket.gethostname(), **{k: str(v) for k, v in tags.items()}})
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        yield from _tracked(config, active.info.run_id)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One MLflow run as plain data (what `rnnpipe runs` shows)."""

    run_id: str
    name: str
    experiment: str
    status: str
    start_ms: int | None
    end_ms: int | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def parent_id(self) -> str | None:
        return self.tags.get("mlflow.parentRunId")

    @property
    def seconds(self) -> float | None:
        return (self.end_ms - self.start_ms) / 1000 if self.start_ms and self.end_ms else None


def store_uri(explicit: str | None = None) -> str:
    """The store to read: an explicit URI, else MLFLOW_TRACKING_URI, else the project's SQLite store."""
    from pipeline.config import ConfigError, TrackingConfig

    uri = explicit or os.environ.get(ENV_URI) or TrackingConfig().uri
    if _is_local_sqlite(uri) and not Path(uri[len("sqlite:///"):]).is_file():
        raise ConfigError(f"no MLflow store at {uri} (looked in {Path.cwd()}): run a pipeline first, "
                          f"or point --tracking-uri / {ENV_URI} at your store.")
    return uri


def experiment_names(uri: str) -> dict[str, str]:
    """Active experiments of a store: id -> name."""
    import mlflow

    return {e.experiment_id: e.name for e in mlflow.MlflowClient(tracking_uri=uri).search_experiments()}


def search_runs(uri: str, experiment: str | None = None, metric: str | None = None, ascending: bool = False,
                limit: int = 50) -> list[RunRecord]:
    """Runs of one experiment (name or id; None: every experiment), newest first or by `metric`."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = experiment_names(uri)
    if experiment is not None:
        ids = [i for i, name in experiments.items() if experiment in (i, name)]
        if not ids:
            from pipeline.config import ConfigError

            raise ConfigError(f"no experiment '{experiment}' in {uri}; experiments: "
                              f"{', '.join(sorted(experiments.values())) or '(none)'}.")
        experiments = {i: experiments[i] for i in ids}
    if not experiments:
        return []
    order = [f"metrics.`{metric}` {'ASC' if ascending else 'DESC'}"] if metric else []
    runs = client.search_runs(list(experiments), order_by=[*order, "attributes.start_time DESC"],
                              max_results=limit)
    return [_record(r, experiments) for r in runs]


def find_run(uri: str, ref: str) -> RunRecord:
    """A run by full id, unique id prefix or run name."""
    import mlflow

    from pipeline.config import ConfigError

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = experiment_names(uri)
    if len(ref) == 32:  # a full run id
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            return _record(client.get_run(ref), experiments)
    every = client.search_runs(list(experiments), max_results=5000) if experiments else []
    runs = [r for r in every if r.info.run_name == ref] or \
        [r for r in every if len(ref) >= 4 and r.info.run_id.startswith(ref)]
    if len(runs) != 1:
        found = "no run" if not runs else f"{len(runs)} runs"
        raise ConfigError(f"{found} matches '{ref}' in {uri}; give a run id (or a unique prefix of 4+ "
                          f"characters) or a run name, as `rnnpipe runs` lists them.")
    return _record(runs[0], experiments)


def _record(run: Any, experiments: dict[str, str]) -> RunRecord:
    info, data = run.info, run.data
    return RunRecord(info.run_id, info.run_name or "", experiments.get(info.experiment_id, info.experiment_id),
                     info.status, info.start_time, info.end_time, dict(data.params), dict(data.metrics),
                     dict(data.tags))


# --------------------------------------------------------------------------------------------
# Model registry: the blessed export as a pyfunc, alias `champion`; the last blessed metrics

CHAMPION = "champion"
PYFUNC_NAME = "serving_model"
EXPORT_PATH_TAG = "rnnpipe.export_path"


def last_blessed_metrics(config: Config) -> dict[str, float] | None:
    """Test metrics (without the `test_` prefix) of the pipeline's champion version, else of its
    latest registered version; None when nothing is registered yet or tracking is off."""
    if not config.tracking.enabled:
        return None
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri(config))
    try:
        version = client.get_model_version_by_alias(config.name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        versions = _model_versions(client, config.name)
        version = max(versions, key=lambda v: int(v.version)) if versions else None
    if version is None or not version.run_id:
        return None
    metrics = client.get_run(version.run_id).data.metrics
    return {k[len("test_"):]: v for k, v in sorted(metrics.items()) if k.startswith("test_")} or None


def _model_versions(client: Any, name: str) -> list[Any]:
    import mlflow

    try:
        return list(client.search_model_versions(f"name = '{name}'"))
    except mlflow.exceptions.MlflowException:
        return []


def register_export(config: Config, artifact: Any) -> str | None:
    """Register a blessed, infra-validated export (a pyfunc around the SavedModel) as `champion`.

    `artifact` is the infra_validate output (its properties name the export; its canary.json
    gives the signature and input example). A cached export already registered is not
    registered twice: `champion` moves back to its version. Returns the version, or None.
    """
    props = artifact.properties["export"]
    if not config.export.register or not props.get("blessed", True):
        return None
    import mlflow

    client = mlflow.MlflowClient()
    path = props["path"]
    known = [v for v in _model_versions(client, config.name) if v.tags.get(EXPORT_PATH_TAG) == path]
    if known:
        version = max(known, key=lambda v: int(v.version)).version
    else:
        import logging

        signature, example = _pyfunc_signature(artifact)
        quiet = logging.getLogger("mlflow.pyfunc")
        level, bar = quiet.level, os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        quiet.setLevel(logging.ERROR)  # the by-value pickling warning: the class is ours (see saved_model_pyfunc)
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        try:
            info = mlflow.pyfunc.log_model(
                name=PYFUNC_NAME, python_model=saved_model_pyfunc(), artifacts={"saved_model": path},
                signature=signature, input_example=example, pip_requirements=_requirements(),
                registered_model_name=config.name, await_registration_for=60,
            )
        finally:
            quiet.setLevel(level)
            if bar is None:
                os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
            else:
                os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar
        version = str(info.registered_model_version)
        client.set_model_version_tag(config.name, version, EXPORT_PATH_TAG, path)
        client.set_model_version_tag(config.name, version, "rnnpipe.export_version", str(props.get("version")))
    client.set_registered_model_alias(config.name, CHAMPION, version)
    mlflow.set_tags({"registered_model": config.name, "registered_version": version})
    return version


def _pyfunc_signature(artifact: Any) -> tuple[Any, Any]:
    """Signature and input example from the export's canaries (raw inputs and answers)."""
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    canary = json.loads(artifact.path("canary.json").read_text())
    inputs, outputs = canary["inputs"][:2], canary["outputs"]
    if not inputs:
        return None, None
    if artifact.properties["export"].get("input_kind") in ("tokens", "category"):
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

    from pipeline.servers import local_server

    bin_dir = str(Path(sys.executable).parent)  # mlflow starts `uvicorn` from PATH
    env = {**os.environ, ENV_URI: uri, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@{alias}",
            "--env-manager", "local", "-h", "127.0.0.1", "-p", "{port}"]
    with local_server(argv, "/ping", env=env, log_path=log_path, timeout=timeout) as url:
        yield url
