"""Runs the stages in order with per-stage caching, `--from/--to` slices and MLflow tracking.

The stages and their wiring are in pipeline/stages.py; this module runs them: it finds a
stage's inputs, computes its fingerprint, reuses or builds its output, and hands the output
to the tracker and to the stage's `after` step (registration).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from components import artifacts, stop
from components.artifacts import Artifact
from components.config import Config, ConfigError, to_plain
from pipeline import stages as wiring
from pipeline.stages import STAGE_NAMES, STAGES, Stage, StageContext
from pipeline.tables import format_table

__all__ = ["STAGES", "STAGE_NAMES", "Stage", "StageContext", "PipelineError", "RunResult", "run", "run_stage",
           "stage_summary"]

CURRENT = "CURRENT"  # in each stage folder: the fingerprint of the output last used there
RUN_ID_FILE = "mlflow_run_id"


class PipelineError(RuntimeError):
    """A stage failed for a reason the user can act on (bad data, divergence, not blessed...)."""


@dataclass
class RunResult:
    """The outcome of one pipeline run."""

    run_id: str | None
    run_dir: Path
    artifacts: dict[str, Artifact]
    cached: dict[str, bool]
    seconds: dict[str, float]

    @property
    def metrics(self) -> dict[str, float]:
        art = self.artifacts.get("evaluate")
        return dict(art.properties.get("metrics", {})) if art else {}

    @property
    def export_path(self) -> str | None:
        """The published (validated) SavedModel folder, `exports/<name>/<version>`."""
        art = self.artifacts.get("push")
        return art.properties.get("path") if art else None


def check(config: Config) -> None:
    """Cross-field checks (topology x data, cuDNN...) before any work is done."""
    from components import ingestion
    from models import build

    ingestion.check(config.data, config.model.topology)
    ingestion.check_model(config.data, config.model)
    build.check(config.model, config.train)
    kinds = ingestion.declared_kinds(config.data, config.model.topology)
    if kinds:  # e.g. a bidirectional language model fails here, not at the train stage
        build.check_io(config.model, kinds)
    from pipeline.preflight import check_places
    from pipeline.store import ENV_URI

    check_places(config, os.environ.get(ENV_URI))  # writable folders, a reachable store


def run(
    config: Config,
    from_stage: str | None = None,
    to_stage: str | None = None,
    log: Callable[[str], None] = print,
    tracker: Any = None,
) -> RunResult:
    """Run the pipeline; returns what each stage produced."""
    for opt, value in (("--from", from_stage), ("--to", to_stage)):
        if value is not None and value not in STAGE_NAMES:
            raise ConfigError(f"{opt} {value!r} is not a stage. Stages: {', '.join(STAGE_NAMES)}.")
    first = STAGE_NAMES.index(from_stage) if from_stage else 0
    last = STAGE_NAMES.index(to_stage) if to_stage else len(STAGE_NAMES) - 1
    if first > last:
        raise ConfigError(f"--from {from_stage} comes after --to {to_stage}.")
    check(config)
    if config.train.distribution == "multi_worker":
        config, last = _as_worker(config, last)

    from pipeline import tracking

    root = Path(config.runs_dir) / config.name
    with tracking.pipeline_run(config) if tracker is None else _nullctx(tracker) as tracker:
        run_dir = root / "_runs" / (tracker.run_id or time.strftime("%Y%m%d-%H%M%S"))
        run_dir.mkdir(parents=True, exist_ok=True)
        result = RunResult(tracker.run_id, run_dir, {}, {}, {})
        total = last + 1
        warmed: set[str] = set()  # stages whose warm-up started in this run (once each)
        try:
            pipeline = wiring.STAGES  # looked up now: a test may have replaced a stage (stages.replace_stage)
            for index, stage in enumerate(pipeline[: last + 1]):
                produced = _run_stage(stage, config, root, result, force=index >= first and from_stage is not None,
                                      may_build=index >= first, tracker=tracker, log=log,
                                      label=f"[{index + 1}/{total}] {stage.name}",
                                      later=pipeline[index + 1: last + 1], warmed=warmed)
                if produced is None:  # gate closed (e.g. not blessed): later stages do not run
                    break
        finally:
            for stage in pipeline:  # e.g. a validation server started during export that nobody used
                if stage.cancel_warm_up:
                    stage.cancel_warm_up()
        artifacts.write_json(run_dir / "run.json", {
            "run_id": result.run_id,
            "stages": {k: str(v.uri) for k, v in result.artifacts.items()},
            "cached": result.cached,
            "seconds": result.seconds,
        })
        tracker.finish(result)
    return result


def stage_summary(result: Any) -> str:
    """The closing table of `rnnpipe run`: every stage, whether it was cached, its seconds."""
    rows = [[name, ("cached" if result.cached[name] else "ran") if name in result.cached else "not run",
             result.seconds.get(name)] for name in STAGE_NAMES]
    cached = sum(result.cached.values())
    total = round(sum(result.seconds.values()), 3)
    rows.append(["total", f"{len(result.cached) - cached} ran, {cached} cached", total])
    return format_table(["stage", "status", "seconds"], rows)


def run_stage(config: Config, name: str, run_dir: str | Path, log: Callable[[str], None] = print) -> Artifact:
    """Run one stage alone on artifacts in `run_dir` (for Kubeflow/Airflow/Argo steps).

    Inputs are the outputs its upstream stages left in `run_dir` (each `<stage>/CURRENT`
    names the fingerprint); the output goes to `run_dir/<stage>/<fingerprint>/`. All steps
    of one run_dir share one MLflow run, whose id the first step writes to `run_dir`.
    """
    if name not in STAGE_NAMES:
        raise ConfigError(f"stage {name!r} does not exist. Stages: {', '.join(STAGE_NAMES)}.")
    check(config)
    stage = wiring.STAGES[STAGE_NAMES.index(name)]
    root = Path(run_dir)
    result = RunResult(None, root, {}, {}, {})
    for upstream in stage.inputs:
        pointer = root / upstream / CURRENT
        if not pointer.is_file():
            raise ConfigError(f"stage {name!r} needs the output of {upstream!r} in {root}; "
                              f"run `rnnpipe stage {upstream}` with this --run-dir first.")
        try:
            found = artifacts.find(root / upstream, pointer.read_text().strip())
        except artifacts.DamagedArtifact as exc:
            raise ConfigError(f"the {upstream!r} output in {root} is damaged ({exc}); "
                              f"run `rnnpipe stage {upstream}` with this --run-dir again.") from None
        if found is None:
            raise ConfigError(f"stage {name!r} needs the output of {upstream!r} in {root}, and it is gone; "
                              f"run `rnnpipe stage {upstream}` with this --run-dir again.")
        result.artifacts[upstream] = found
    from pipeline import tracking

    id_file = root / RUN_ID_FILE
    resume = id_file.read_text().strip() if id_file.is_file() else None
    with tracking.pipeline_run(config, resume_run_id=resume) as tracker:
        if tracker.run_id:
            artifacts.write_text(id_file, tracker.run_id)
        _run_stage(stage, config, root, result, force=False, may_build=True, tracker=tracker,
                   log=log, label=f"[{name}]")
    return result.artifacts[name]


def _as_worker(config: Config, last: int) -> tuple[Config, int]:
    """Join the TF_CONFIG cluster; a non-chief worker trains in its own folder, untracked.

    The collective strategy must exist before any other TensorFlow op, so it is made here.
    Only the chief logs to MLflow, evaluates and exports.
    """
    from components import cluster
    from components.config import with_overrides

    cluster.strategy("multi_worker")
    if cluster.is_chief():
        return config, last
    kind, index = cluster.task()
    worker = with_overrides(config, {"runs_dir": str(Path(config.runs_dir) / "_workers" / f"{kind}{index}"),
                                     "tracking.enabled": False})
    return worker, min(last, STAGE_NAMES.index("train"))


def _run_stage(stage: Stage, config: Config, root: Path, result: RunResult, *, force: bool,
               may_build: bool, tracker: Any, log: Callable[[str], None], label: str,
               later: tuple[Stage, ...] = (), warmed: set[str] | None = None) -> Artifact | None:
    stop.check()  # a SIGTERM whose exception a finalizer swallowed stops here
    missing = [i for i in stage.inputs if i not in result.artifacts]
    if missing:
        log(f"{label:<24} skipped (no {', '.join(missing)} output)")
        return None
    inputs = {name: result.artifacts[name] for name in stage.inputs}
    kwargs = stage.select(config)
    fp = artifacts.fingerprint(stage.name, to_plain(kwargs), inputs)
    stage_dir = root / stage.name
    ctx = StageContext(stage.name, log=lambda msg: log(f"    {msg}"),
                       scratch=stage_dir / f".scratch-{fp}",  # survives a kill: resumable work (checkpoints)
                       callbacks=tracker.callbacks(), forced=force, register=tracker.registry())
    start = time.time()
    with artifacts.stage_lock(stage_dir, fp):
        artifacts.clean_stale(stage_dir)
        art = None if force else _reusable(stage_dir, fp, label, log)
        cached = art is not None
        if art is None:
            if not may_build:
                raise ConfigError(
                    f"--from needs a cached '{stage.name}' output for this config, and there is none; "
                    f"run without --from first."
                )
            ctx.scratch.mkdir(parents=True, exist_ok=True)
            log(f"{label:<24} running...")
            for waiting in later:  # e.g. the validation server starts when training starts (once per run)
                if waiting.warm_up and waiting.name not in warmed and \
                        STAGE_NAMES.index(stage.name) >= _warm_up_index(waiting):
                    warmed.add(waiting.name)
                    waiting.warm_up(config)
            with artifacts.building(stage_dir, fp) as tmp:
                properties = stage.run(inputs, tmp, ctx, **kwargs)
                art = artifacts.commit(tmp, stage.name, fp, properties or {})
            shutil.rmtree(ctx.scratch, ignore_errors=True)
    seconds = time.time() - start
    artifacts.write_text(stage_dir / CURRENT, art.fingerprint)
    result.artifacts[stage.name] = art
    result.cached[stage.name] = cached
    result.seconds[stage.name] = round(seconds, 3)
    tracker.log_stage(stage.name, art, cached)
    note = stage.after(art, ctx) if stage.after else None
    summary = art.properties.get("summary", "")
    log(f"{label:<24} {'cached' if cached else 'done'} in {seconds:.1f}s  {summary}".rstrip())
    if note:
        log(f"    {note}")
    if art.properties.get("gate") is False:
        log(f"    stopping here: {art.properties.get('reason', 'gate closed')}")
        return None
    return art


def _warm_up_index(stage: Stage) -> int:
    """Where a stage's warm-up may start: its `warm_up_from` stage, else the stage right before it."""
    return STAGE_NAMES.index(stage.warm_up_from) if stage.warm_up_from else STAGE_NAMES.index(stage.name) - 1


def _reusable(stage_dir: Path, fp: str, label: str, log: Callable[[str], None]) -> Artifact | None:
    """The cached output for `fp` if it is intact; a damaged one is reported, removed and rebuilt."""
    try:
        return artifacts.find(stage_dir, fp)
    except artifacts.DamagedArtifact as exc:
        log(f"{label:<24} cached output is damaged ({exc}); building it again")
        artifacts.discard(stage_dir, fp)
        return None


class _nullctx:
    def __init__(self, value: Any):
        self.value = value

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, *exc: Any) -> None:
        return None
