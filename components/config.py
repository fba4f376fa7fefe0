"""The pipeline's configuration schema: YAML -> frozen dataclasses, `--set` overrides, validation.

It lives in components/ because every stage reads its own section (as a TFX component reads its spec);
`pipeline/` loads it, and `pipeline/preflight.py` checks the places a run writes to before any work.

Every section is a frozen dataclass; a field's allowed values or range live in its metadata,
so one generic validator checks them all and every error names the field, the value and what
is allowed (with the closest key for a typo). The `model` section (`ModelConfig`) and
`ConfigError` live in `models/spec.py` (the model zoo's own spec) and are re-exported here.

Layout: this module holds the schema (the dataclasses, their bounds and `__post_init__` checks);
loading and validation (YAML, `--set` overrides, `_build` / `_check` / `_coerce`, `dump_yaml`) are
in `components/config_load.py`, the plain-data and tracking-URI helpers (`to_plain`, `flatten`,
redaction, `check_tracking_uri`) in `components/config_plain.py`; both are re-exported here.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from models.cells import CELLS  # noqa: F401  (re-exported: the built-in cells)
from models.spec import TOPOLOGIES, ConfigError, ModelConfig, bounded, choice  # noqa: F401  (the model section)
from models.spec import short as _short

from .config_load import (  # noqa: F401  (re-exported: loading and validation)
    MAX_PARAMETERS,
    SLUG,
    NoAliasLoader,
    apply_override,
    dump_yaml,
    from_dict,
    load,
    with_overrides,
)
from .config_plain import (  # noqa: F401  (re-exported: plain data, tracking URIs)
    SECRET_QUERY,
    TRACKING_SCHEMES,
    check_tracking_uri,
    flatten,
    redact_uri,
    redacted,
    to_plain,
)

MAX_TRIALS = 1000  # trials one sweep may run (a grid may be larger: `sweep.random` samples it)
SEED_MAX = 2 ** 32 - 1  # seeds feed NumPy / TensorFlow generators, which take 32-bit seeds


def slug(default: str) -> Any:
    """A string field that names folders: letters, digits, `_`, `-`, `.` (not first), at most 100."""
    return field(default=default, metadata={"slug": True})


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they are shaped."""

    source: str = "names"
    path: str | None = None
    name: str | None = None
    data_dir: str | None = None
    max_examples: int | None = bounded(None, 1)
    tokenize: str = choice("char", "char", "word")
    target_tokenize: str | None = choice(None, None, "char", "word")  # y of pairs/tfds text; None: = tokenize
    target_reference: str = choice("none", "none", "last", "season")  # numeric y learnt relative to the input's
    # numeric series: train stats (global), each window's own (window, RevIN); auto: window for csv forecasts
    scale: str = choice("auto", "auto", "global", "window")
    units: dict[str, str] = field(default_factory=dict)  # column -> unit, shown in the model card and /metadata
    lowercase: bool = True
    max_length: int | None = bounded(None, 1)
    window: int = bounded(30, 1, 100_000)
    horizon: int = bounded(1, 1, 10_000)
    stride: int = bounded(1, 1)
    time_column: str | None = None
    time_format: str | None = None  # strftime format of time_column (e.g. "%d.%m.%Y"); None: inferred
    id_column: str | None = None  # csv: one series per value (a global model over many series)
    fill_missing: str = choice("none", "none", "ffill", "interpolate")  # csv: missing steps / values
    max_fill: int = bounded(3, 0)  # fill at most this many consecutive missing steps; longer runs stay gaps
    target_columns: tuple[str, ...] = ()
    feature_columns: tuple[str, ...] | None = None  # None: every other column (numeric); []: no features
    future_columns: tuple[str, ...] = ()  # csv seq2seq: known ahead (calendar, price plans), fed to the decoder
    val_fraction: float = bounded(0.1, 0.0, 0.5)
    test_fraction: float = bounded(0.1, 0.0, 0.5)
    split_seed: int = bounded(42, 0, SEED_MAX)
    season: int | None = bounded(None, 1)  # season length of a series (steps); None: from its frequency
    max_bad_fraction: float = bounded(0.01, 0.0, 1.0)
    # csv: the per-series ingest work in this process, or as an Apache Beam pipeline (`pip install rnnpipe[beam]`)
    runner: str = choice("local", "local", "beam")
    beam_options: dict[str, Any] = field(default_factory=dict)  # Beam PipelineOptions, e.g. {runner: FlinkRunner}


@dataclass(frozen=True)
class TrainConfig:
    """How the model is fitted."""

    epochs: int = bounded(10, 1, 100000)
    batch_size: int = bounded(64, 1, 65536)
    learning_rate: float = bounded(1e-3, 0.0)
    seed: int = bounded(0, 0, SEED_MAX)
    shuffle: bool = True
    optimizer: str = choice("adam", "adam", "adamw", "rmsprop", "sgd")
    clipnorm: float | None = bounded(1.0, 0.0)
    early_stopping_patience: int | None = bounded(None, 1)
    mixed_precision: str = choice("none", "none", "bfloat16", "float16")
    distribution: str = choice("none", "none", "mirrored", "multi_worker", "tpu")
    steps_per_execution: int = bounded(1, 1)


BACKTEST_KEYS = ("origins", "on")
BACKTEST_ON = ("test", "validation", "both")  # evaluate.backtest.on: the periods the rolling origins cover


@dataclass(frozen=True)
class EvaluateConfig:
    """Test metrics and the blessing gate."""

    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> {min: x, max: y}
    compare_to: str = choice("baseline", "baseline", "last_blessed", "none")
    tolerance: float = bounded(0.0, 0.0)
    confidence: float = bounded(0.95, 0.5, 0.999)  # of the paired bootstrap interval the gate reads
    min_test_examples: int = bounded(30, 0)  # fewer test examples: never blessed
    gate_metrics: tuple[str, ...] = ()  # metrics compared with the reference; () = the task's own
    beam_width: int | None = bounded(None, 1, 64)
    num_examples: int = bounded(8, 0, 1000)
    # forecasts: {origins: K, on: test | validation | both} rolling origins over that period (default test)
    backtest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from components.metrics import METRICS

        def known(key: str, name: str, allowed: Any, what: str) -> None:
            if name not in allowed:
                close = difflib.get_close_matches(name.lower(), list(allowed), n=1, cutoff=0.5)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"{key}: unknown {what} {name!r}.{hint} Allowed: {', '.join(sorted(allowed))}.")

        gating = [m for m, spec in METRICS.items() if spec.gates]
        for name, bound in self.thresholds.items():
            known(f"evaluate.thresholds.{name}", name, METRICS, "metric")
            if not bound:
                raise ConfigError(f"evaluate.thresholds.{name} has no bound; give min and/or max, e.g. {{min: 0.8}}.")
            for key in bound:
                known(f"evaluate.thresholds.{name}.{key}", key, ("min", "max"), "bound")
        for name in self.gate_metrics:
            known("evaluate.gate_metrics", name, gating, "gate metric")
        for key, value in self.backtest.items():
            known(f"evaluate.backtest.{key}", key, BACKTEST_KEYS, "key")
            if key == "origins" and (not isinstance(value, int) or isinstance(value, bool)
                                     or not 1 <= value <= 10_000):
                raise ConfigError(f"evaluate.backtest.origins={_short(value)} must be a whole number between 1 "
                                  f"and 10000.")
            if key == "on" and value not in BACKTEST_ON:
                raise ConfigError(f"evaluate.backtest.on={_short(value)} is not allowed. Allowed: "
                                  f"{', '.join(BACKTEST_ON)}.")
        if self.backtest and "origins" not in self.backtest:
            raise ConfigError("evaluate.backtest needs origins (e.g. {origins: 6}).")


@dataclass(frozen=True)
class ExportConfig:
    """Where and whether the SavedModel is written."""

    dir: str = "exports"
    require_blessing: bool = True
    infra_validate: bool = True
    register: bool = True


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking; MLFLOW_TRACKING_URI in the environment wins over `uri`."""

    uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_location: str = "mlruns/artifacts"
    experiment: str | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        check_tracking_uri(self.uri, "tracking.uri")


@dataclass(frozen=True)
class SweepConfig:
    """`rnnpipe sweep`: the grid (dotted config key -> values), random search, the ranking metric.

    Not part of a pipeline run's identity: never in a run's params nor in any fingerprint.
    """

    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    random: int | None = bounded(None, 1)  # sample this many grid points (the budget); None: all
    seed: int = bounded(0, 0, SEED_MAX)
    metric: str | None = None  # None: test_<the evaluation's main metric>
    goal: str = choice("auto", "auto", "max", "min")  # auto: the metric's direction in components/metrics.py

    def __post_init__(self) -> None:
        for key, values in self.grid.items():
            if "." not in key or key.split(".")[0] in ("sweep", "name"):
                raise ConfigError(f"sweep.grid key '{key}' must be a dotted config key like model.cell "
                                  f"(not name or sweep.*).")
            if not values:
                raise ConfigError(f"sweep.grid.{key} has no values; give a list, e.g. [lstm, gru].")

    def check_trials(self) -> None:
        """At most MAX_TRIALS trials: checked on the sweep about to run (the YAML's grid with the command line's
        --random laid over it), not when the config is read (`rnnpipe run` ignores the sweep section)."""
        trials = min(self.size, self.random or self.size)
        if trials > MAX_TRIALS:
            raise ConfigError(f"sweep: {trials} trials ({self.size} grid points"
                              + (f", sweep.random={self.random}" if self.random else "")
                              + f") exceed the limit of {MAX_TRIALS}; set sweep.random (--random K) to K <= "
                              f"{MAX_TRIALS} to sample that many.")

    @property
    def size(self) -> int:
        """The number of grid points (never enumerated: a grid may be far larger than any sweep can run)."""
        return math.prod(len(values) for values in self.grid.values())


@dataclass(frozen=True)
class Config:
    """A whole pipeline: its name and one section per stage family."""

    name: str = slug("rnnpipe")
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def flat(self) -> dict[str, Any]:
        """The resolved config as dotted keys (for MLflow params); the sweep section is left out,
        credentials in the tracking URI are masked."""
        return flatten({k: v for k, v in redacted(self.to_dict()).items() if k != "sweep"})

