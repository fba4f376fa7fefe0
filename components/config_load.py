"""Loading a config: YAML -> validated `Config`, `--set` overrides, and the resolved config back to YAML.

Here live the alias-free YAML loader (`NoAliasLoader`), `load` (a file + overrides),
`from_dict` (plain data -> `Config`), `apply_override` / `with_overrides` (dotted `key=value`
replacements), the generic field validator (`_build` walks the dataclasses, `_check` checks a
field's allowed values / range / slug from its metadata, `_coerce` converts to the field's type)
with the recurrent-weights size check, and `dump_yaml`. The schema they validate against is in
`components/config.py`, which re-exports everything public here; that module is imported only
inside `from_dict`, so either module may be imported first.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from models.cells import get as cell_spec
from models.spec import ConfigError, ModelConfig
from models.spec import short as _short

from .config_plain import redacted

if TYPE_CHECKING:
    from .config import Config

SLUG = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")  # `name` becomes folder and experiment names
MAX_PARAMETERS = 1 << 28  # 268M weights (~1 GB float32, ~4 GB with Adam's slots): larger cannot train here


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
    from .config import Config  # the schema (which re-exports this module's functions)

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
    if meta.get("slug") and not SLUG.fullmatch(value):
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


def dump_yaml(config: Config) -> str:
    """The resolved config as YAML (credentials in the tracking URI masked)."""
    return yaml.safe_dump(redacted(config.to_dict()), sort_keys=False)
