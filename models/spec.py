"""The model zoo's own spec: `ModelConfig` (the `model:` section of a pipeline config) and `ConfigError`.

`models/` reads only this (and imports nothing from `pipeline/` or `components/`);
`components.config` re-exports both, so `from components.config import ModelConfig, ConfigError` keeps
working and a bad model setting is the same one-line exit-2 config error as any other. A field's
allowed values or range live in its metadata (`choice`, `bounded`), which the pipeline's generic
validator reads; `cell` is checked by `models.cells` (a built-in name or `module:Class`).
Importing this module imports no Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one paragraph."""


def choice(default: Any, *allowed: Any) -> Any:
    """A field whose value must be one of `allowed`."""
    return field(default=default, metadata={"choices": tuple(allowed)})


def bounded(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    """A numeric field that must lie in [lo, hi] (either end optional)."""
    return field(default=default, metadata={"min": lo, "max": hi})


def short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters (an expanded YAML alias bomb must not become the message)."""
    if isinstance(value, (list, tuple, dict)) and len(value) > 20:
        return f"<a {type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except RecursionError:
        return f"<a deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "...'"


TOPOLOGIES = ("one_to_one", "one_to_many", "many_to_one", "many_to_many", "seq2seq")


@dataclass(frozen=True)
class ModelConfig:
    """The network: topology x cell, plus the knobs every topology shares."""

    topology: str = choice("many_to_one", *TOPOLOGIES)
    cell: str = "lstm"  # a name in models.cells.CELLS, or `module:Class` (a user's Keras RNN cell)
    units: int = bounded(64, 1, 4096)
    num_layers: int = bounded(1, 1, 16)
    bidirectional: bool = False
    merge_mode: str = choice("concat", "concat", "sum", "mul", "ave")
    dropout: float = bounded(0.0, 0.0, 0.95)
    recurrent_dropout: float = bounded(0.0, 0.0, 0.95)
    embedding_dim: int = bounded(32, 1, 4096)
    activation: str = choice("tanh", "tanh", "relu", "sigmoid", "linear")
    recurrent_activation: str = choice("sigmoid", "sigmoid", "hard_sigmoid", "tanh", "relu")
    use_bias: bool = True
    unroll: bool = False
    reset_after: bool = True
    use_cudnn: str = choice("auto", "auto", "true", "false")
    reduce: str = choice("last", "last", "mean", "max", "attention")
    # one_to_many: initial_state = h0 from X (the meaning `first_step` had before issue 17);
    # first_step = X is the first step's input; every_step = X concatenated to every step's input
    input_mode: str = choice("initial_state", "initial_state", "first_step", "every_step")
    context: str = choice("last_state", "last_state", "projected", "attention", "pooled")
    pool: str = choice("mean", "mean", "max", "attention")  # context=pooled: how all encoder states are pooled
    attention: str = choice("luong", "luong", "bahdanau")
    context_feed: str = choice("initial_state", "initial_state", "every_step")
    beam_width: int = bounded(1, 1, 64)
    max_output_length: int | None = bounded(None, 1, 10_000)
    quantiles: tuple[float, ...] = ()  # numeric forecasts: quantile levels (pinball loss), must include 0.5
    id_embedding_dim: int | None = bounded(None, 1, 4096)  # with data.id_column: the series id, embedded

    def __post_init__(self) -> None:
        from models import cells

        cells.check(self.cell, self.units)  # raises ConfigError naming model.cell
        cells.check_options(self)  # a custom cell's options it does not take
