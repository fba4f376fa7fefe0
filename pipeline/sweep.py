"""`rnnpipe sweep`: grid or random search, each trial a child MLflow run of one parent run.

All trials share the pipeline's stage cache, so stages that do not see the swept keys (ingest,
validate, preprocess when only model.* / train.* vary) run once. A trial that fails ends FAILED
and the others go on. The ranked table (metric, swept values, wall time) is printed and logged
on the parent as `sweep/ranking.csv` and `sweep/ranking.md`.

MLflow calls live in pipeline/tracking.py and pipeline/run_queries.py; this module plans, ranks
and formats.
"""

from __future__ import annotations

import itertools
import math
import random
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import yaml

from components.config import Config, ConfigError, SweepConfig, with_overrides
from pipeline import run_queries, tracking
from pipeline.store import tracking_uri
from pipeline.tables import csv_table, format_table, markdown_table


@dataclass
class Trial:
    """One combination of a sweep and what became of it."""

    index: int
    overrides: dict[str, Any]
    run_id: str | None = None
    run_name: str = ""
    status: str = "PENDING"
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    blessed: bool | None = None
    main_metric: str | None = None
    error: str = ""


def parse_grid(items: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """`--grid model.cell=lstm,gru` (values read as YAML, or one YAML list `[32, 64]`) -> key: values."""
    grid: dict[str, tuple[Any, ...]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"--grid '{item}' must look like section.key=value1,value2.")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values once: {key}=a,b,c.")
        try:
            values = yaml.safe_load(text) if text.strip().startswith("[") else \
                [yaml.safe_load(v) if v.strip() else v for v in text.split(",")]
        except yaml.YAMLError:
            raise ConfigError(f"--grid '{item}': cannot read the values (YAML).") from None
        grid[key] = tuple(values) if isinstance(values, list) else (values,)
    return grid


def plan(grid: dict[str, Sequence[Any]], budget: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Every combination of the grid (first key slowest), or `budget` of them drawn at random (in grid order).
    Only the combinations returned are made: a huge grid costs nothing beyond them."""
    keys = list(grid)
    size = math.prod(len(grid[k]) for k in keys)
    if budget is None or budget >= size:
        return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    rng = random.Random(seed)
    if size <= sys.maxsize:
        picked = sorted(rng.sample(range(size), budget))
    else:  # range() cannot be sampled past sys.maxsize; the budget is far below the size, so this ends fast
        drawn: set[int] = set()
        while len(drawn) < budget:
            drawn.add(rng.randrange(size))
        picked = sorted(drawn)
    return [combination(grid, keys, i) for i in picked]


def combination(grid: dict[str, Sequence[Any]], keys: list[str], index: int) -> dict[str, Any]:
    """The index-th combination in `itertools.product` order (the last key changes fastest)."""
    combo = {}
    for key in reversed(keys):
        index, at = divmod(index, len(grid[key]))
        combo[key] = grid[key][at]
    return {key: combo[key] for key in keys}


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of `metric` are better: the metric registry (components/metrics.py) says."""
    from components.metrics import lower_is_better as registered

    return registered(metric)


def rank(trials: Sequence[Trial], metric: str, minimize: bool) -> list[Trial]:
    """Best first (ties: lower val_loss first); trials without the metric (failed...) last, in trial order."""
    scored = [t for t in trials if metric in t.metrics]
    rest = [t for t in trials if metric not in t.metrics]

    def key(t: Trial) -> tuple[float, float, int]:
        return (t.metrics[metric] if minimize else -t.metrics[metric], t.metrics.get("val_loss", float("inf")),
                t.index)

    return sorted(scored, key=key) + rest


def ranking(trials: Sequence[Trial], metric: str, minimize: bool, keys: Sequence[str]) -> tuple[list[str], list[list]]:
    """The ranked table: headers and rows."""
    short = {k: k.split(".")[-1] for k in keys}
    if len(set(short.values())) < len(short):
        short = {k: k for k in keys}
    extra = [m for m in ("val_loss",) if m != metric]
    headers = ["rank", metric, *extra, *short.values(), "status", "wall_s", "blessed", "run", "run_id"]
    rows = []
    for place, t in enumerate(rank(trials, metric, minimize), 1):
        rows.append([place if metric in t.metrics else None, t.metrics.get(metric), *(t.metrics.get(m) for m in extra),
                     *(t.overrides[k] for k in keys), t.status, round(t.seconds, 1), t.blessed, t.run_name,
                     (t.run_id or "")[:8]])
    return headers, rows


@dataclass
class SweepResult:
    """What `run_sweep` returns."""

    parent_run_id: str | None
    trials: list[Trial]
    metric: str
    minimize: bool
    table: str

    @property
    def best(self) -> Trial | None:
        ranked = rank(self.trials, self.metric, self.minimize)
        return ranked[0] if ranked and self.metric in ranked[0].metrics else None

    @property
    def failed(self) -> list[Trial]:
        return [t for t in self.trials if t.status != "FINISHED"]


def resolve(config: Config, grid: dict[str, tuple[Any, ...]] | None = None, budget: int | None = None,
            seed: int | None = None, metric: str | None = None, goal: str | None = None) -> SweepConfig:
    """The sweep to run: the YAML `sweep:` section with command-line values laid over it."""
    base = config.sweep
    merged = {**base.grid, **(grid or {})}
    if not merged:
        raise ConfigError("nothing to sweep: give --grid section.key=v1,v2 (repeatable) "
                          "or a `sweep: {grid: {...}}` section in the config.")
    return SweepConfig(grid=merged, random=budget if budget is not None else base.random,
                       seed=seed if seed is not None else base.seed, metric=metric or base.metric,
                       goal=goal or base.goal)


def run_sweep(config: Config, sweep: SweepConfig, to_stage: str | None = "evaluate",
              log: Callable[[str], None] = print) -> SweepResult:
    """Run every trial as a child run of one parent run; returns the ranked trials."""
    from pipeline import runner

    if to_stage is not None and to_stage not in runner.STAGE_NAMES:
        raise ConfigError(f"--to {to_stage!r} is not a stage. Stages: {', '.join(runner.STAGE_NAMES)}.")
    base = replace(config, sweep=SweepConfig())
    sweep.check_trials()  # before any work
    combos = plan(sweep.grid, sweep.random, sweep.seed)
    configs = [with_overrides(base, combo) for combo in combos]  # every value is checked before any work
    trials = [Trial(i + 1, combo) for i, combo in enumerate(combos)]
    keys = list(sweep.grid)
    size = sweep.size
    mode = f"random {len(trials)} of {size}" if len(trials) < size else \
        f"grid {' x '.join(str(len(v)) for v in sweep.grid.values())}"
    log(f"sweep: {len(trials)} trials ({mode}) over {', '.join(keys)}")
    params = {"sweep.mode": "random" if len(trials) < size else "grid", "sweep.trials": len(trials),
              "sweep.seed": sweep.seed, "sweep.goal": sweep.goal, "sweep.to": to_stage or "infra_validate",
              **{f"sweep.grid.{k}": ",".join(map(str, v)) for k, v in sweep.grid.items()}}
    tags = {"topology": base.model.topology, "cell": base.model.cell, "dataset": base.data.source}
    tags.update({tag: ",".join(map(str, sweep.grid[key])) for tag, key in
                 (("topology", "model.topology"), ("cell", "model.cell"), ("dataset", "data.source"))
                 if key in sweep.grid})
    with tracking.sweep_run(base, params, tags) as parent:
        for trial, child in zip(trials, configs):
            what = " ".join(f"{k}={v}" for k, v in trial.overrides.items())
            log(f"\n== trial {trial.index}/{len(trials)}: {what}")
            _run_trial(trial, child, to_stage, log, runner)
            log(f"== trial {trial.index}/{len(trials)}: {trial.status.lower()} in {trial.seconds:.1f}s"
                + (f"  {trial.error}" if trial.error else ""))
        metric = sweep.metric or next((f"test_{t.main_metric}" for t in trials if t.main_metric), "val_loss")
        minimize = sweep.goal == "min" or (sweep.goal == "auto" and lower_is_better(metric))
        headers, rows = ranking(trials, metric, minimize, keys)
        result = SweepResult(parent.run_id, trials, metric, minimize, format_table(headers, rows))
        best = result.best
        parent.log_summary(
            files={"sweep/ranking.csv": csv_table(headers, rows), "sweep/ranking.md": markdown_table(headers, rows)},
            metrics={"trials_finished": len(trials) - len(result.failed), "trials_failed": len(result.failed),
                     **({f"best_{metric}": best.metrics[metric]} if best else {})},
            tags={"sweep.metric": metric, "sweep.goal": "min" if minimize else "max",
                  **({"best_run_id": best.run_id, "best_run_name": best.run_name} if best else {})},
        )
        if len(result.failed) == len(trials):
            raise SweepFailed(f"all {len(trials)} trials failed; first error: {trials[0].error}")
    return result


class SweepFailed(RuntimeError):
    """Every trial of a sweep failed."""


def _run_trial(trial: Trial, config: Config, to_stage: str | None, log: Callable[[str], None],
               runner: Any) -> None:
    """One child run; an exception marks the trial FAILED (the child run ends FAILED) and is not raised."""
    start = time.time()
    try:
        with tracking.pipeline_run(config, nested=True) as tracker:
            trial.run_id = tracker.run_id
            tracker.log_summary(tags={"sweep.trial": trial.index,
                                      **{f"sweep.{k}": v for k, v in trial.overrides.items()}})
            result = runner.run(config, to_stage=to_stage, log=lambda msg: log(f"  {msg}"), tracker=tracker)
        trial.status = "FINISHED"
        for art in result.artifacts.values():  # without tracking; with it, the run's metrics below
            trial.metrics.update({k.removeprefix("final_"): float(v)
                                  for k, v in art.properties.get("metrics", {}).items()
                                  if isinstance(v, (int, float)) and not isinstance(v, bool)})
        evaluate = result.artifacts.get("evaluate")
        if evaluate is not None:
            trial.blessed = evaluate.properties.get("blessed")
            trial.main_metric = evaluate.properties.get("main_metric")
    except Exception as exc:  # noqa: BLE001 - one trial's failure must not stop the sweep
        trial.status = "FAILED"
        trial.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    finally:
        trial.seconds = time.time() - start
    if trial.run_id:  # what the MLflow UI shows: the run's name and latest metrics
        record = run_queries.find_run(tracking_uri(config), trial.run_id)
        trial.run_name = record.name
        if trial.status == "FINISHED":
            trial.metrics = dict(record.metrics)


def sweep_command(config_path: str, sets: Sequence[str], grid_items: Sequence[str], budget: int | None,
                  seed: int | None, metric: str | None, goal: str | None, to_stage: str | None) -> int:
    """`rnnpipe sweep`: run, print the ranked table and how to export the best; exit 1 if a trial failed."""
    from components import config as cfgmod

    config = cfgmod.load(config_path, list(sets))
    sweep = resolve(config, parse_grid(grid_items), budget, seed, metric, goal)
    started = time.time()
    try:
        result = run_sweep(config, sweep, to_stage=to_stage)
    except SweepFailed as exc:
        print(f"rnnpipe: sweep failed: {exc}")
        return 1
    direction = "lower" if result.minimize else "higher"
    print(f"\nsweep of '{config.name}': {len(result.trials)} trials in {time.time() - started:.1f}s, "
          f"ranked by {result.metric} ({direction} is better)\n")
    print(result.table)
    print(f"\nparent MLflow run: {result.parent_run_id or '(tracking disabled)'}  experiment: {config.experiment}"
          f"  (artifacts sweep/ranking.csv, sweep/ranking.md)")
    best = result.best
    if best is not None:
        flags = " ".join(f"--set {k}={v}" for k, v in [*(s.split("=", 1) for s in sets), *best.overrides.items()])
        print(f"best: trial {best.index} {best.run_name} {result.metric}={best.metrics[result.metric]:.4f}\n"
              f"export it (its stages are cached): rnnpipe run {config_path} {flags}".rstrip())
    if result.failed:
        print(f"{len(result.failed)} of {len(result.trials)} trials failed: "
              + "; ".join(f"trial {t.index}: {t.error}" for t in result.failed))
        return 1
    return 0
