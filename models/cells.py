"""The cell registry: one `CellSpec` per cell, read by every place that needs to know a cell.

Config validation (`model.cell`), the recurrent layers of every topology (`rnn`, `stack`), the
attentive decoder (`attention.AttentiveRNN`), the state plumbing of encoders/decoders
(`state_sizes`), the cuDNN report and its config-level twin (`cudnn_rules`, `no_kernel`), the
parameter-size check (`gates`) and the benches all read `CELLS` / `get`. Adding a cell is adding
one `CellSpec` to `BUILTIN`.

`model.cell` may also be `module:Class`, a user's Keras RNN cell (as for `keras.layers.RNN`: a layer
whose `call(inputs, states)` returns `(output, new_states)` and which declares `state_size`; its
first state is its output h). It is made as `Class(units, **options)` with those of `activation`,
`recurrent_activation`, `use_bias`, `dropout`, `recurrent_dropout` its constructor names (one it
does not name, set to anything but its default, is a ConfigError), wrapped in `keras.layers.RNN`,
registered for `.keras` serialization (package `rnnpipe_cells.<module>`) unless it already is, and
never cuDNN-fused. Naming a module in the config imports it, i.e. runs its code, when the config is
read: name only modules you trust. Loading a saved model imports only the custom cells its caller
trusts (`load_model(cells=...)`, the run's `model.cell`), never a module the archive names. This
module imports Keras only when a layer or a custom cell is made, so config validation of built-in
cells stays light.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from models.spec import ConfigError, short

if TYPE_CHECKING:
    from models.spec import ModelConfig

COMMON = ("activation", "use_bias", "dropout", "recurrent_dropout")  # what every cell takes
CUSTOM_OPTIONS = ("activation", "recurrent_activation", "use_bias", "dropout", "recurrent_dropout")
CUSTOM_PACKAGE = "rnnpipe_cells"
NO_FUSED_KERNEL = "no fused kernel"
MAX_STATES, MAX_STATE_WIDTH = 16, 8 * 4096  # what a custom cell may declare (units is at most 4096)


@dataclass(frozen=True)
class Rule:
    """A setting the fused cuDNN kernel needs: `field` must equal `needs` (`who`: 'GRU needs true')."""

    field: str
    needs: Any
    who: str = ""


def _text(value: Any, quote: bool = False) -> str:
    """A setting as the messages write it: true/false, 0.2, relu (or 'relu' when `quote`)."""
    value = getattr(value, "__name__", value)  # an activation function
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if quote else str(value)


CUDNN_RULES = (Rule("activation", "tanh"), Rule("recurrent_activation", "sigmoid"), Rule("recurrent_dropout", 0.0),
               Rule("unroll", False), Rule("use_bias", True))


@dataclass(frozen=True)
class CellSpec:
    """What the zoo knows about one cell.

    name: the `model.cell` value; layer / cell: the Keras layer and cell classes (names in
    `keras.layers` for built-ins; `layer` None: `keras.layers.RNN(cell)`); states: state tensors
    per layer (None: read from the cell's `state_size`); gates: weight blocks per step (size
    check, bench FLOPs); options: `ModelConfig` fields passed beyond `COMMON`; cudnn_rules: what
    the fused kernel needs (empty with `no_kernel`, the reason there is none).
    """

    name: str
    layer: str | None
    cell: str | type
    states: int | None = 1
    gates: int = 1
    options: tuple[str, ...] = ()
    cudnn_rules: tuple[Rule, ...] = ()
    no_kernel: str | None = None

    @property
    def key(self) -> str:
        """The cell in layer names (`encoder_<key>_1`): the name, or the custom class's name in snake case."""
        if isinstance(self.cell, str) and self.layer is not None:
            return self.name
        words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", self.cell.__name__)
        return re.sub(r"[^0-9a-z]+", "_", words.lower())

    @property
    def custom(self) -> bool:
        return self.layer is None

    def layer_class(self) -> Any:
        import keras

        return keras.layers.RNN if self.layer is None else getattr(keras.layers, self.layer)

    def cell_class(self) -> Any:
        import keras

        return getattr(keras.layers, self.cell) if isinstance(self.cell, str) else self.cell

    def state_sizes(self, units: int) -> list[int]:
        """The width of each state tensor of one layer ([units] * states for built-ins)."""
        if self.states is not None:
            return [units] * self.states
        return list(_custom_state_sizes(self.name, self.cell, units))

    def cell_options(self, cfg: ModelConfig) -> dict[str, Any]:
        """Constructor arguments for a bare cell of this kind (besides units), from the config."""
        names = COMMON + self.options if not self.custom else _accepted(self.cell)
        return {name: getattr(cfg, name) for name in names if name != "use_cudnn"}

    def blockers(self, cfg: ModelConfig) -> list[str]:
        """The config settings that keep this cell off the fused kernel, as 'model.field=value (needs x)'."""
        if self.no_kernel:
            return [f"model.cell={cfg.cell!r} ({self.no_kernel})"]
        return [f"model.{r.field}={_text(getattr(cfg, r.field), True)} ({r.who or 'needs'} {_text(r.needs)})"
                for r in self.cudnn_rules if getattr(cfg, r.field) != r.needs]

    def layer_reasons(self, layer: Any) -> list[str]:
        """Why this built layer cannot run on the fused kernel ([] = eligible), as 'field=value'."""
        if self.no_kernel:
            return [self.no_kernel]
        reasons = ["use_cudnn=false"] if getattr(layer, "use_cudnn", "auto") is False else []
        for rule in self.cudnn_rules:
            value = getattr(layer.cell, rule.field) if hasattr(layer.cell, rule.field) else getattr(layer, rule.field)
            if _text(value) != _text(rule.needs):
                reasons.append(f"{rule.field}={_text(value)}")
        return reasons


BUILTIN: dict[str, CellSpec] = {spec.name: spec for spec in (
    CellSpec("simple_rnn", "SimpleRNN", "SimpleRNNCell", states=1, gates=1, no_kernel="SimpleRNN has no cuDNN kernel"),
    CellSpec("lstm", "LSTM", "LSTMCell", states=2, gates=4, options=("recurrent_activation", "use_cudnn"),
             cudnn_rules=CUDNN_RULES),
    CellSpec("gru", "GRU", "GRUCell", states=1, gates=3, options=("recurrent_activation", "use_cudnn", "reset_after"),
             cudnn_rules=(*CUDNN_RULES, Rule("reset_after", True, "GRU needs"))),
)}
CELLS = tuple(BUILTIN)


def get(name: str) -> CellSpec:
    """The spec of a built-in cell or of `module:Class`; a ConfigError naming model.cell otherwise."""
    if isinstance(name, str) and name in BUILTIN:
        return BUILTIN[name]
    if not isinstance(name, str) or ":" not in name:
        import difflib

        close = difflib.get_close_matches(str(name), CELLS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"model.cell={short(name)} is not allowed.{hint} Allowed values: {', '.join(CELLS)}, "
                          f"or module:Class naming a Keras RNN cell.")
    return _custom(name)


def check(name: str, units: int) -> None:
    """Validate `model.cell` for `units` (a custom cell is imported and made once)."""
    get(name).state_sizes(units)


@cache
def _custom(name: str) -> CellSpec:
    module_name, _, class_name = name.partition(":")
    where = f"model.cell={short(name)}"
    if not module_name or not class_name or not all(p.isidentifier() for p in (*module_name.split("."), class_name)):
        raise ConfigError(f"{where} must be a built-in cell ({', '.join(CELLS)}) or module:Class, "
                          f"e.g. mypkg.cells:MyCell.")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's config to fix
        raise ConfigError(f"{where}: module {module_name!r} cannot be imported ({type(exc).__name__}: "
                          f"{short(str(exc), 120)}); check the name and that it is on PYTHONPATH.") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"{where}: module {module_name!r} has no {class_name!r}.")
    import keras

    if not (inspect.isclass(cls) and issubclass(cls, keras.layers.Layer)):
        raise ConfigError(f"{where} is not a Keras RNN cell: it must be a keras.layers.Layer subclass whose "
                          f"call(inputs, states) returns (output, new_states) and which sets state_size.")
    if keras.saving.get_registered_object(keras.saving.get_registered_name(cls)) is not cls:
        # so model.keras reloads; the module in the package keeps two modules' `MyCell`s apart
        keras.saving.register_keras_serializable(package=f"{CUSTOM_PACKAGE}.{module_name}")(cls)
    return custom_spec(cls, name)


def custom_spec(cls: type, name: str | None = None) -> CellSpec:
    """The spec of a user's cell class (made into a `keras.layers.RNN`, never fused)."""
    return CellSpec(name or f"{cls.__module__}:{cls.__name__}", None, cls, states=None,
                    no_kernel=f"{cls.__name__}: {NO_FUSED_KERNEL}")


@cache
def _custom_state_sizes(name: str, cls: type, units: int) -> tuple[int, ...]:
    """A custom cell's state widths, from the `state_size` it declares once made with `units`."""
    where = f"model.cell={short(name)}"
    try:
        size = cls(units).state_size
    except Exception as exc:  # noqa: BLE001 - report what the user's class raised
        raise ConfigError(f"{where} cannot be made as {cls.__name__}({units}) ({type(exc).__name__}: "
                          f"{short(str(exc), 120)}); a cell takes the number of units first.") from None
    sizes = list(size) if isinstance(size, (list, tuple)) else [size]
    if not sizes or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ConfigError(f"{where} is not a Keras RNN cell: its state_size must be a positive int or a list "
                          f"of them, got {short(size)}.")
    if len(sizes) > MAX_STATES or max(sizes) > MAX_STATE_WIDTH:
        raise ConfigError(f"{where} declares state_size {short(size)}: at most {MAX_STATES} states of at most "
                          f"{MAX_STATE_WIDTH} values each.")
    return tuple(sizes)


def check_options(cfg: ModelConfig) -> None:
    """A custom cell is made with those `CUSTOM_OPTIONS` its constructor names; one it does not name, set to
    anything but its default, would be dropped without a word: one ConfigError naming it instead."""
    import dataclasses

    spec = get(cfg.cell)
    if not spec.custom:
        return
    taken = _accepted(spec.cell)
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    for name in CUSTOM_OPTIONS:
        if name not in taken and getattr(cfg, name) != defaults[name]:
            raise ConfigError(
                f"model.{name}={short(getattr(cfg, name))}: the custom cell {spec.cell.__name__} does not take "
                f"{name!r} (its constructor names {', '.join(taken) or 'none of ' + ', '.join(CUSTOM_OPTIONS)}); "
                f"leave model.{name} at {short(defaults[name])} or add the argument to the cell.")


def _accepted(cls: type) -> tuple[str, ...]:
    """The `CUSTOM_OPTIONS` a custom cell's constructor names, or a base class's that it hands `**kwargs` to
    (`class MyCell(keras.layers.LSTMCell)` whose `__init__(self, units, **kwargs)` takes `dropout`)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names |= set(params)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break
    return tuple(name for name in CUSTOM_OPTIONS if name in names)


def state_sizes(cfg: ModelConfig) -> list[int]:
    """The width of each state tensor of one layer of `cfg.cell` (LSTM: h and c; GRU, SimpleRNN: h)."""
    return get(cfg.cell).state_sizes(cfg.units)


def key(cfg: ModelConfig) -> str:
    """`cfg.cell` as it appears in layer and model names."""
    return get(cfg.cell).key


def rnn_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """Constructor arguments for a recurrent layer of `cfg.cell` (only those the cell accepts)."""
    kwargs = get(cfg.cell).cell_options(cfg)
    if "use_cudnn" in get(cfg.cell).options:
        kwargs["use_cudnn"] = {"auto": "auto", "true": True, "false": False}[cfg.use_cudnn]
    return {"units": cfg.units, **kwargs, "unroll": cfg.unroll}


def cell_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """Arguments for a bare cell (`keras.layers.LSTMCell`...) run in a custom loop: no cuDNN, no unroll,
    and no dropout (the loop's caller drops inputs; recurrent dropout is refused by `build.check`)."""
    skip = ("dropout", "recurrent_dropout")
    return {k: v for k, v in get(cfg.cell).cell_options(cfg).items() if k not in skip}


def make_cell(cell: str, units: int, **kwargs: Any) -> Any:
    """A bare cell of `cell` (a built-in name or `module:Class`)."""
    return get(cell).cell_class()(units, **kwargs)


def rnn(cfg: ModelConfig, name: str, *, return_sequences: bool, return_state: bool = False,
        bidirectional: bool | None = None) -> Any:
    """One recurrent layer of `cfg.cell`, optionally wrapped in Bidirectional."""
    import keras

    spec = get(cfg.cell)
    if spec.custom:
        cell = make_cell(cfg.cell, cfg.units, **spec.cell_options(cfg))
        layer = keras.layers.RNN(cell, return_sequences=return_sequences, return_state=return_state,
                                 unroll=cfg.unroll, name=name)
    else:
        layer = spec.layer_class()(return_sequences=return_sequences, return_state=return_state, name=name,
                                   **rnn_kwargs(cfg))
    if cfg.bidirectional if bidirectional is None else bidirectional:
        return keras.layers.Bidirectional(layer, merge_mode=cfg.merge_mode, name=f"bi_{name}")
    return layer


def stack(cfg: ModelConfig, x: Any, prefix: str, *, last_sequences: bool) -> Any:
    """`cfg.num_layers` stacked layers; every layer but the last returns sequences."""
    for i in range(cfg.num_layers):
        is_last = i == cfg.num_layers - 1
        x = rnn(cfg, f"{prefix}_{key(cfg)}_{i + 1}", return_sequences=last_sequences or not is_last)(x)
    return x


def for_layer(layer: Any) -> CellSpec | None:
    """The spec of a built recurrent layer (LSTM/GRU/SimpleRNN or `keras.layers.RNN` of a custom cell)."""
    for spec in BUILTIN.values():
        if type(layer) is spec.layer_class():
            return spec
    import keras

    return custom_spec(type(layer.cell)) if isinstance(layer, keras.layers.RNN) else None
