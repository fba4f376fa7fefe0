"""The MLflow run of a pipeline run: its lifecycle and what each stage's output logs into it.

One MLflow run per pipeline run (or per sweep trial, nested under the sweep's run): the
flattened resolved config as params, tags (topology, cell, dataset, cudnn, blessed...),
per-epoch metrics while training, and for each stage what its output's properties name:

- `metrics` (numbers) and `tags`;
- `log`: `history` (a per-epoch metrics file), `keras_model` (the model file, its signature,
  example and tags), `datasets` (encoded splits as MLflow dataset inputs), `files` (file ->
  artifact folder);
- and every PNG (plots/) and report (`*.md`, `*.html`, `*.csv`: reports/<stage>/) it wrote.

Stages never import this module: they return properties and write files. The store is
pipeline/store.py's, the model registry pipeline/registry.py's, run queries
pipeline/run_queries.py's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from components import artifacts
from components import stage_files as files
from components.config import Config, dump_yaml
from pipeline.store import experiment_id, requirements

PLOT_DIR = "plots"
REPORT_DIR = "reports"


class Tracker:
    """Records one pipeline run in MLflow."""

    def __init__(self, config: Config, run_id: str | None):
        self.config = config
        self.run_id = run_id
        self.live_epochs: set[int] = set()  # epochs already logged while training

    # -- what the runner calls -------------------------------------------------------------
    def callbacks(self) -> list[Any]:
        """Keras callbacks for a stage: each epoch's metrics logged live (the training stage uses them)."""
        return [epoch_logger(self.live_epochs)] if self.run_id else []

    def registry(self) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
        """This run's model registry for the push stage (pipeline/registry.py), None without tracking."""
        if not self.run_id:
            return None
        from pipeline import registry

        config, run_id = self.config, self.run_id
        return lambda info: registry.register(config, info, run_id)

    def log_stage(self, stage: str, artifact: Any, cached: bool) -> None:
        """Log what a stage's output names (see the module docstring), its plots and reports."""
        if not self.run_id:
            return
        import mlflow

        props = artifact.properties
        tags = {f"stage.{stage}": "cached" if cached else "ran", **props.get("tags", {})}
        mlflow.set_tags({k: str(v) for k, v in tags.items()})
        metrics = {k: float(v) for k, v in props.get("metrics", {}).items() if _is_number(v)}
        if metrics:
            mlflow.log_metrics(metrics)
        logged = props.get("log", {})
        if logged.get("history"):
            self._log_history(artifact.path(logged["history"]), skip=set() if cached else self.live_epochs)
        if logged.get("keras_model"):
            self._log_keras_model(artifact, logged["keras_model"])
        for dataset in logged.get("datasets", []):
            _log_dataset(artifact, dataset)
        for name, folder in logged.get("files", {}).items():
            if artifact.path(name).is_file():
                mlflow.log_artifact(str(artifact.path(name)), folder)
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

    def _log_keras_model(self, artifact: Any, logged: dict[str, Any]) -> None:
        """Log a saved Keras model (keras flavour, tensor signature): `logged` names its `file`, and the
        `signature` and input `example` files written beside it, and its `tags`.

        MLflow's keras flavour saves whatever `.save(path)` writes; `_SavedKeras` hands it a copy of the
        file the stage already saved, with the signature the stage wrote beside it, so the model is not
        reloaded, run and saved again just to be logged (~1.5 s CPU, issue 16, `bench/fixed_costs.py`).
        An output without a signature file (written before it existed) takes the slow path.
        """
        import mlflow
        import mlflow.keras
        from mlflow.models import ModelSignature, infer_signature

        path = artifact.path(logged["file"])
        if not path.is_file():
            return
        signature_file = artifact.path(logged.get("signature") or "-")
        if signature_file.is_file():
            model: Any = _SavedKeras(path)
            signature = ModelSignature.from_dict(json.loads(signature_file.read_text()))
        else:
            import keras

            model = keras.saving.load_model(path, compile=False, safe_mode=True)
            example = _example_inputs(artifact.path(logged.get("example") or "-"))
            signature = infer_signature(example, model.predict(example, verbose=0)) if example is not None else None
        mlflow.keras.log_model(
            model,
            name="keras_model",
            signature=signature,
            pip_requirements=requirements(),
            tags={"pipeline": self.config.name, **{k: str(v) for k, v in logged.get("tags", {}).items()}},
        )


class _SavedKeras:
    """Stands in for a Keras model that is already saved: MLflow's keras flavour calls `save(path)`."""

    def __init__(self, path: Path):
        self.path = path

    def save(self, target: str, **_: Any) -> None:
        shutil.copyfile(self.path, target)


def _log_dataset(artifact: Any, dataset: dict[str, Any]) -> None:
    """An encoded split (`file`: arrays `x`, `y`; a CSV's: its rows) as an MLflow dataset input (the UI's
    Dataset column)."""
    import mlflow
    import numpy as np

    path = artifact.path(dataset["file"])
    if not path.is_file():
        return
    rows = artifact.path(files.rows_file(dataset["context"]))
    with warnings.catch_warnings():  # MLflow registers its local source twice, and hints about integer columns
        warnings.simplefilter("ignore", UserWarning)
        if rows.exists():  # a CSV's split: its rows (windows are cut from them), described by a head, not loaded
            import pyarrow.parquet as pq
            from mlflow.data.meta_dataset import MetaDataset

            first = sorted(rows.glob("*.parquet"))[0] if rows.is_dir() else rows
            parquet = pq.ParquetFile(first)
            head = (next(parquet.iter_batches(batch_size=100), None) or parquet.schema_arrow.empty_table()).to_pandas()
            described = mlflow.data.from_pandas(head, source=str(artifact.uri), name=dataset["name"])
            logged = MetaDataset(described.source, name=dataset["name"], digest=dataset["digest"],
                                 schema=described.schema)
        else:
            with np.load(path) as data:
                arrays = {k: data[k] for k in data.files if k in ("x", "y")}
            logged = mlflow.data.from_numpy(arrays["x"], targets=arrays.get("y"), source=str(artifact.uri),
                                            name=dataset["name"], digest=dataset["digest"])
        for attempt in range(3):  # two runs logging the same new dataset at once: the loser finds it on retry
            try:
                mlflow.log_input(logged, context=dataset["context"])
                return
            except Exception as exc:  # noqa: BLE001 - the store's unique-key error, as raised or wrapped
                if not _duplicate_key(exc) or attempt == 2:
                    raise


def _duplicate_key(exc: BaseException | None) -> bool:
    """Whether `exc` (or what it wraps) is a database unique-key violation (SQLite, PostgreSQL, MySQL...)."""
    from sqlalchemy.exc import IntegrityError

    for _ in range(10):
        if exc is None:
            return False
        text = str(exc).lower()  # an MlflowException may carry only the database's words
        if isinstance(exc, IntegrityError) or "unique constraint" in text or "duplicate entry" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _example_inputs(path: Path) -> Any:
    import numpy as np

    if not path.is_file():
        return None
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays["inputs"] if list(arrays) == ["inputs"] else arrays


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
    """Yield the run's Tracker; an exception ends the run FAILED (KILLED on Ctrl-C or SIGTERM)."""
    try:
        yield Tracker(config, run_id)
    except KeyboardInterrupt as exc:
        # The interrupt may have landed inside an MLflow query. Python 3.11's sqlite3 keeps that
        # query's statement open (SQLite's read lock held) while the cursor is alive, and the
        # traceback's frames keep it alive: ending the run would then fail "database is locked"
        # and replace the interrupt. Those frames' locals are not needed to report an interrupt.
        import gc
        import traceback

        traceback.clear_frames(exc.__traceback__)
        gc.collect()
        _end(run_id, "KILLED", "interrupted")
        raise
    except BaseException as exc:
        _end(run_id, "FAILED", f"{type(exc).__name__}: {exc}"[:5000])
        raise


def _end(run_id: str, status: str, error: str) -> None:
    """Tag the run's error and end it with `status`. A write the store refuses now is one line on
    stderr and the original exception goes on; a run left RUNNING is marked KILLED by the next
    run in its experiment (`close_stale_runs`)."""
    import sys

    import mlflow

    def refused(what: str, exc: Exception) -> None:
        reason = (str(exc).splitlines() or [""])[0]
        print(f"rnnpipe: could not {what} ({type(exc).__name__}: {reason})", file=sys.stderr)

    try:
        mlflow.set_tag("error", error)
    except Exception as exc:
        refused(f"tag the error of MLflow run {run_id}", exc)
    try:
        mlflow.end_run(status)  # leaves MLflow's active-run stack before it writes
    except Exception as exc:
        refused(f"mark MLflow run {run_id} {status}; the next run in its experiment marks it KILLED", exc)


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
