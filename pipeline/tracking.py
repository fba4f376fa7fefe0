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
import shutil
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from components import artifacts
from components.config import Config, dump_yaml

PLOT_DIR = "plots"
SAMPLES_FILE = "samples.npz"  # the evaluation's per-example results (pipeline/registry.py reads them back)
SPLITS = ("train", "validation", "test")
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


def _sqlite_path(uri: str) -> Path:
    return Path(uri[len("sqlite:///"):])


def check_store(uri: str) -> None:
    """Refuse a local store that lost its history or whose creation was interrupted.

    `<db>.created` is written once MLflow has created the store. A missing or empty database
    beside it means the history is gone (never silently recreated); a database without it whose
    schema is incomplete is a half-created store (e.g. a full disk during creation).
    """
    import sqlite3

    from components.config import ConfigError

    if not _is_local_sqlite(uri):
        return
    db = _sqlite_path(uri)
    marker = db.with_name(db.name + ".created")
    empty = not db.is_file() or db.stat().st_size == 0
    if marker.is_file():
        if empty:
            state = "missing" if not db.is_file() else "empty (0 bytes)"
            raise ConfigError(f"the MLflow store {db} is {state}, but a store with run history was created there "
                              f"(see {marker}); restore {db} from a backup, or delete {marker} to start a new, "
                              f"empty store.")
        return
    if empty:
        return  # a new store: MLflow creates it, then `store_created` writes the marker
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            stamped = "alembic_version" in tables and con.execute("SELECT count(*) FROM alembic_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"the MLflow store {db} is not a readable SQLite database ({exc}); restore it from a "
                          f"backup or move it away to start a new store.") from None
    if not ({"experiments", "runs"} <= tables and stamped):
        raise ConfigError(f"the MLflow store {db} is half-created (its creation was interrupted, e.g. by a full "
                          f"disk): it has no complete schema. Delete {db} and run again.")


def store_created(uri: str) -> None:
    """Mark a local store as created (see check_store)."""
    if _is_local_sqlite(uri):
        db = _sqlite_path(uri)
        marker = db.with_name(db.name + ".created")
        if db.is_file() and db.stat().st_size and not marker.is_file():
            marker.write_text("an MLflow store was created beside this file; see pipeline/tracking.py check_store\n")


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
        check_store(uri)
        use_store(uri)
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(name)
        store_created(uri)
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

        evaluate with `compare_to: last_blessed` gets the champion (version, metrics, data digest,
        per-example samples; or None): pipeline/registry.py.
        """
        if stage == "evaluate" and self.config.evaluate.compare_to == "last_blessed":
            from pipeline import registry

            return {"champion": registry.champion(self.config)}
        return {}

    def log_stage(self, stage: str, artifact: Any, cached: bool) -> str | None:
        """Log a stage's metrics, tags, plots and reports; returns a line for the user, if any."""
        if not self.run_id:
            return None
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
        note = None
        if props.get("register"):  # the push stage: register the published export (idempotent)
            from pipeline import registry

            done = registry.register(self.config, props["register"], self.run_id)
            if done:
                note = (f"registry: {self.config.name} version {done['version']}, "
                        f"{'champion' if done['champion'] else 'not champion'} ({done['reason']})")
        if artifact.path(SAMPLES_FILE).is_file():
            mlflow.log_artifact(str(artifact.path(SAMPLES_FILE)), "evaluation")
        if stage == "preprocess":
            _log_datasets(artifact, self.config.data.source)
        for png in sorted(artifact.uri.glob("*.png")):
            mlflow.log_artifact(str(png), PLOT_DIR)
        for report in sorted([*artifact.uri.glob("*.md"), *artifact.uri.glob("*.html"), *artifact.uri.glob("*.csv")]):
            mlflow.log_artifact(str(report), f"{REPORT_DIR}/{stage}")
        return note

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
        """Log the trained Keras model (keras flavour, tensor signature) from the `model.keras` train wrote.

        MLflow's keras flavour saves whatever `.save(path)` writes; `_SavedKeras` hands it a copy of the
        file train already saved, with the signature train wrote beside it (`signature.json`), so the model
        is not reloaded, run and saved again just to be logged (~1.5 s CPU, issue 16, `bench/fixed_costs.py`).
        An output without `signature.json` (written before it existed) takes the slow path.
        """
        import mlflow
        import mlflow.keras
        from mlflow.models import ModelSignature, infer_signature

        path = artifact.path("model.keras")
        if not path.is_file():
            return
        if artifact.path("signature.json").is_file():
            model: Any = _SavedKeras(path)
            signature = ModelSignature.from_dict(json.loads(artifact.path("signature.json").read_text()))
        else:
            import keras

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


class _SavedKeras:
    """Stands in for a Keras model that is already saved: MLflow's keras flavour calls `save(path)`."""

    def __init__(self, path: Path):
        self.path = path

    def save(self, target: str, **_: Any) -> None:
        shutil.copyfile(self.path, target)


def _log_datasets(preprocess: Any, source: str) -> None:
    """Each encoded split as an MLflow dataset input (the UI's Dataset column, with its digest)."""
    import mlflow

    from components.evaluation import data_digest
    from components.preprocessing import load_split

    for split in SPLITS:
        if not preprocess.path(f"{split}.npz").is_file():
            continue
        arrays = load_split(preprocess, split)
        with warnings.catch_warnings():  # MLflow registers its local source twice and says so
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(arrays["x"], targets=arrays.get("y"), source=str(preprocess.uri),
                                             name=f"{source}-{split}",
                                             digest=data_digest(preprocess, split))
        mlflow.log_input(dataset, context=split)


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
    from components.config import ConfigError, TrackingConfig

    uri = explicit or os.environ.get(ENV_URI) or TrackingConfig().uri
    check_store(uri)
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
            from components.config import ConfigError

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

    from components.config import ConfigError

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
