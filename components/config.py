"""The pipeline's configuration schema: YAML -> frozen dataclasses, `--set` overrides, validation.

It lives in components/ because every stage reads its own section (as a TFX component reads its spec);
`pipeline/` loads it, and `pipeline/preflight.py` checks the places a run writes to before any work.

Every section is a frozen dataclass; a field's allowed values or range live in its metadata,
so one generic validator checks them all and every error names the field, the value and what
is allowed (with the closest key for a typo). The `model` section (`ModelConfig`) and
`ConfigError` live in `models/spec.py` (the model zoo's own spec) and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models.cells import CELLS  # noqa: F401  (re-exported: the built-in cells)
from models.cells import get as cell_spec
from models.spec import TOPOLOGIES, ConfigError, ModelConfig, bounded, choice  # noqa: F401  (the model section)
from models.spec import short as _short

SEED_MAX = 2 ** 32 - 1  # seeds feed NumPy / TensorFlow generators, which take 32-bit seeds
SLUG = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")  # `name` becomes folder and experiment names
MAX_PARAMETERS = 1 << 28  # 268M weights (~1 GB float32, ~4 GB with Adam's slots): larger cannot train here
TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks",
                    "databricks-uc", "uc")


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
    goal: str = choice("auto", "auto", "max", "min")  # auto: min for *loss/error/mae/mse..., else max

    def __post_init__(self) -> None:
        for key, values in self.grid.items():
            if "." not in key or key.split(".")[0] in ("sweep", "name"):
                raise ConfigError(f"sweep.grid key '{key}' must be a dotted config key like model.cell "
                                  f"(not name or sweep.*).")
            if not values:
                raise ConfigError(f"sweep.grid.{key} has no values; give a list, e.g. [lstm, gru].")


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


# --------------------------------------------------------------------------------------------
# Loading


class NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases: `*name` is refused where it appears, so an alias bomb
    (a few lines expanding to gigabytes) fails at once with a short message."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"YAML aliases (*{event.anchor[:40]}) are not allowed in "
                                              f"rnnpipe configs; write the value out", event.start_mark)
        return super().compose_node(parent, index)


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply `dotted.key=value` overrides and validate everything."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist (or is not a file).")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {problem}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not UTF-8 text.") from None
    if raw is None:
        raise ConfigError(f"config file '{path}' is empty; it needs at least a `name`.")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file '{path}' must be a YAML mapping of sections "
            f"(name, data, model, ...), not a {type(raw).__name__}."
        )
    raw.setdefault("name", path.stem)
    for item in overrides:
        apply_override(raw, item)
    return from_dict(raw)


def from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a Config from plain data."""
    config = _build(Config, raw, "")
    _check_size(config.model)
    return config


def _check_size(model: ModelConfig) -> None:
    """The recurrent layers' weights must fit what can train (MAX_PARAMETERS)."""
    gates = cell_spec(model.cell).gates
    directions = 2 if model.bidirectional else 1
    total, width = 0, model.embedding_dim
    for _ in range(model.num_layers):
        total += directions * gates * model.units * (width + model.units + 2)
        width = model.units * directions
    if total > MAX_PARAMETERS:
        raise ConfigError(f"model.units={model.units} x model.num_layers={model.num_layers}"
                          f"{' (bidirectional)' if model.bidirectional else ''} makes about {total / 1e6:.0f}M "
                          f"recurrent weights, more than the {MAX_PARAMETERS / 1e6:.0f}M that can train; "
                          f"use fewer units or layers.")


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `--set a.b=value` (value parsed as YAML) to the raw mapping."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set '{item}' must look like section.key=value.")
    try:
        value = yaml.load(text, Loader=NoAliasLoader) if text.strip() else None  # noqa: S506 - a SafeLoader
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set '{item}': '{part}' is not a section.")
        node = child
    node[parts[-1]] = value


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """A copy of `config` with dotted keys replaced (validated again)."""
    raw = config.to_dict()
    for key, value in overrides.items():
        apply_override(raw, f"{key}={json.dumps(value)}")
    return from_dict(raw)


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"'{where}' must be a mapping of keys, got {_short(raw)}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6)
        hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown config key '{prefix}{key}'.{hint} "
            f"Allowed keys in {where}: {', '.join(sorted(fields))}."
        )
    values = {}
    for name, value in raw.items():
        f, hint = fields[name], hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value if value is not None else {}, f"{prefix}{name}.")
        else:
            values[name] = _check(f"{prefix}{name}", value, hint, f.metadata)
    return cls(**values)


def _check(key: str, value: Any, hint: Any, meta: Any) -> Any:
    """Coerce `value` to the field's type and check its allowed values and range."""
    value = _coerce(key, value, hint)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint_text = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"{key}={_short(value)} is not allowed.{hint_text} Allowed values: {', '.join(map(str, choices))}."
        )
    if meta.get("slug") and not SLUG.match(value):
        raise ConfigError(f"{key}={_short(value)} is not allowed: use letters, digits, '_', '-' and '.' (not first), "
                          f"at most 100 characters (it names folders and the MLflow experiment).")
    lo, hi = meta.get("min"), meta.get("max")
    if value is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise ConfigError(f"{key}={_short(value)} is out of range; allowed: {rng}.")
    return value


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:  # free-form values (sweep grids), validated where they are used
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={_short(value)} must be true or false.")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={_short(value)} must be a whole number.")
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"{key}={_short(value)} must be a finite number.")
            return float(value)
        raise ConfigError(f"{key}={_short(value)} must be a number.")
    if hint is str:
        if isinstance(value, str) and value:
            return value
        if isinstance(value, bool):  # YAML reads true/false; accept them where strings belong
            return str(value).lower()
        raise ConfigError(f"{key}={_short(value)} must be a non-empty string.")
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(key, v, args[0]) for v in items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={_short(value)} must be a mapping.")
        return {str(k): _coerce(f"{key}.{k}", v, args[1]) for k, v in value.items()}
    raise ConfigError(f"{key}: unsupported type {hint}.")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Plain data helpers


def to_plain(obj: Any) -> Any:
    """Dataclasses/tuples -> dicts/lists, recursively (JSON- and YAML-ready)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def dump_yaml(config: Config) -> str:
    """The resolved config as YAML (credentials in the tracking URI masked)."""
    return yaml.safe_dump(redacted(config.to_dict()), sort_keys=False)


# --------------------------------------------------------------------------------------------
# Tracking URIs, credentials, places the run writes to


SECRET_QUERY = re.compile(r"(?i)(token|password|passwd|secret|key|credential|auth|sig|signature)")


def redact_uri(uri: str) -> str:
    """A URI with its user:password@ and secret-looking query values replaced by `***`."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={'***' if SECRET_QUERY.search(k) else v}" for k, v in pairs)
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redacted(data: dict[str, Any]) -> dict[str, Any]:
    """A plain config dict with the tracking URI's credentials masked."""
    tracking = data.get("tracking")
    if isinstance(tracking, dict) and isinstance(tracking.get("uri"), str):
        data = {**data, "tracking": {**tracking, "uri": redact_uri(tracking["uri"])}}
    return data


def check_tracking_uri(uri: str, key: str) -> None:
    """A tracking URI must be a path or use a scheme MLflow can store runs with."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", uri)
    if not match or len(match.group(1)) == 1:  # a plain path (or a Windows drive letter): a file store
        return
    scheme = match.group(1).lower().split("+")[0]
    if scheme not in TRACKING_SCHEMES:
        raise ConfigError(f"{key}={_short(redact_uri(uri))} has an unsupported scheme '{match.group(1)}:'. "
                          f"Allowed: a path or {', '.join(s + ':' for s in TRACKING_SCHEMES)} "
                          f"(e.g. sqlite:///mlruns/mlflow.db or http://127.0.0.1:5000).")
