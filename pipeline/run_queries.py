"""Queries on the MLflow store: runs as plain records (what `rnnpipe runs` lists and compares)."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any


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
