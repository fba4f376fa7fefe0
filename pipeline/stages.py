"""The pipeline, wired explicitly (TFX's `create_pipeline`): each stage's component, inputs and config.

Every stage is `run(inputs, workdir, ctx, **select(config)) -> properties`: `inputs` are the
outputs of the stages it names, `select` picks what it may see of the config, plus any input
from outside the run (the registry's champion for `evaluate.compare_to: last_blessed`). That
selection is both the stage's keyword arguments and, with the input fingerprints and the code
version, what its fingerprint hashes, so a stage reruns exactly when something it sees changes.

A stage's properties say what the tracker logs (pipeline/tracking.py: `metrics`, `tags`, `log`);
`after` runs on its output on every run, built or cached (the push stage's registration).

The components are imported here, at the top, so that a reader or an IDE can follow each
stage to its code; they keep TensorFlow, Keras and MLflow imports inside their functions, so
this costs little (`rnnpipe --help` does not import it at all).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from components import (
    evaluation,
    export,
    infra_validation,
    ingestion,
    preprocessing,
    push,
    training,
    validation,
)
from components.config import Config
from pipeline import registry


@dataclass
class StageContext:
    """What the runner hands a stage besides its inputs and config."""

    stage: str
    log: Callable[[str], None]
    scratch: Path = Path(".")
    callbacks: list[Any] = field(default_factory=list)  # Keras callbacks (per-epoch metrics while training)
    forced: bool = False
    register: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None  # the model registry of this run


@dataclass(frozen=True)
class Stage:
    """One pipeline step: `run(inputs, workdir, ctx, **select(config)) -> properties`."""

    name: str
    run: Callable[..., dict[str, Any]]
    inputs: tuple[str, ...]
    select: Callable[[Config], dict[str, Any]]
    warm_up: Callable[[Config], None] | None = None  # slow set-up started early, while earlier stages build:
    warm_up_from: str | None = None  # once per run, when this stage (or a later one before it) builds
    cancel_warm_up: Callable[[], None] | None = None  # at the end of a run: a warm-up nobody used
    after: Callable[[Any, StageContext], str | None] | None = None  # on the output, built or cached; a note


def evaluate_inputs(config: Config) -> dict[str, Any]:
    """The evaluator's config, and with `compare_to: last_blessed` the model to beat: the registry's
    champion (version, metrics, data digest, per-example samples; None if there is none)."""
    selected: dict[str, Any] = {"evaluate": config.evaluate, "model": config.model, "season": config.data.season}
    if config.evaluate.compare_to == "last_blessed":
        selected["champion"] = registry.champion(config)
    return selected


def create_pipeline() -> tuple[Stage, ...]:
    """The stages in the order they run."""
    return (
        Stage("ingest", ingestion.run, (), lambda c: {"data": c.data, "topology": c.model.topology}),
        Stage("validate", validation.run, ("ingest",), lambda c: {"data": c.data}),
        Stage("preprocess", preprocessing.run, ("ingest", "validate"), lambda c: {"data": c.data}),
        Stage("train", training.run, ("preprocess",), lambda c: {"model": c.model, "train": c.train}),
        Stage("evaluate", evaluation.run, ("preprocess", "train"), evaluate_inputs),
        Stage("export", export.run, ("preprocess", "train", "evaluate"),
              lambda c: {"export": c.export, "name": c.name, "model": c.model, "data": c.data, "train": c.train,
                         "evaluate": c.evaluate}),
        Stage("infra_validate", infra_validation.run, ("export",), lambda c: {"export": c.export},
              # its fresh server starts, at a low CPU priority, when training starts
              warm_up=infra_validation.prestart, warm_up_from="train",
              cancel_warm_up=infra_validation.discard_prestarted),
        Stage("push", push.run, ("export", "infra_validate", "evaluate"),
              lambda c: {"export": c.export, "name": c.name}, after=push.register),
    )


STAGES = create_pipeline()
STAGE_NAMES = tuple(s.name for s in STAGES)


def replace_stage(pipeline: tuple[Stage, ...], name: str, **changes: Any) -> tuple[Stage, ...]:
    """The pipeline with one stage's fields changed (tests and benches: a failing or instrumented
    stage, `monkeypatch.setattr(stages, "STAGES", replace_stage(stages.STAGES, "train", run=...))`)."""
    return tuple(dataclasses.replace(s, **changes) if s.name == name else s for s in pipeline)
