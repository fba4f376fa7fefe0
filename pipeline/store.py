"""The MLflow store: which one (`tracking.uri`, MLFLOW_TRACKING_URI), its health, its lock, the experiment.

A local SQLite store is created once, under a file lock, and marked as created; a store that
lost its history or whose creation was interrupted is refused, never silently recreated.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from components.artifacts import file_lock
from components.config import Config

ENV_URI = "MLFLOW_TRACKING_URI"


def tracking_uri(config: Config) -> str:
    """MLFLOW_TRACKING_URI wins over the config's `tracking.uri`."""
    return os.environ.get(ENV_URI) or config.tracking.uri


def _is_local_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///")


def store_lock(uri: str) -> contextlib.AbstractContextManager[None]:
    """Serialise set-up and registration on a local SQLite store (table creation, experiments, versions)."""
    if not _is_local_sqlite(uri):
        return contextlib.nullcontext()
    db = _sqlite_path(uri)
    return file_lock(db.with_name(db.name + ".lock"))


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
    with store_lock(uri):
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


def store_uri(explicit: str | None = None) -> str:
    """The store to read: an explicit URI, else MLFLOW_TRACKING_URI, else the project's SQLite store."""
    from components.config import ConfigError, TrackingConfig

    uri = explicit or os.environ.get(ENV_URI) or TrackingConfig().uri
    check_store(uri)
    if _is_local_sqlite(uri) and not Path(uri[len("sqlite:///"):]).is_file():
        raise ConfigError(f"no MLflow store at {uri} (looked in {Path.cwd()}): run a pipeline first, "
                          f"or point --tracking-uri / {ENV_URI} at your store.")
    return uri


def requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("tensorflow", "keras", "numpy")]
