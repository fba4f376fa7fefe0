"""Config -> Keras model, its loss and metrics, its training arrays, and the config checks.

API for the other stages:
- `check(model_cfg, train_cfg)`: raise `ConfigError` for impossible combinations, before any work,
  and print `notices` (one line each, to stderr, e.g. the input_mode rename); `check_io(model_cfg,
  io)` does the ones that need the x/y kinds (`build_model` runs it).
- `build_model(model_cfg, io)`: the uncompiled functional model (encoded inputs -> encoded outputs).
- `loss_and_metrics(io)`: what to compile it with.
- `training_data(model_cfg, io, x, y)`: encoded split arrays -> (model inputs, targets).
- `generates(model_cfg, io)`: True when outputs are tokens produced step by step at inference
  (then use `models.decoding.make_generator`; every other model answers with `model(x)`).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from models import cells
from models.spec import ConfigError, ModelConfig


def cudnn_blockers(model: ModelConfig) -> list[str]:
    """The settings that keep this config off the fused cuDNN kernel ([] = eligible), as field=value
    (the cell's own rules come from the cell registry, `models.cells`)."""
    blockers = cells.get(model.cell).blockers(model)
    if model.topology == "seq2seq" and model.context == "attention" and model.context_feed == "every_step" and (
            not cells.get(model.cell).no_kernel):
        blockers.append("model.context_feed='every_step' with model.context='attention' (the attentive decoder "
                        "runs its own loop)")
    return blockers


FIRST_STEP_RENAMED = (
    "note: model.input_mode='first_step' now feeds the input vector as the decoder's first step input (issue 17); "
    "the former first_step (initial state h0 = tanh(W x)) is now called 'initial_state', the default: set "
    "model.input_mode=initial_state to keep a model trained before the rename.")
_printed: set[str] = set()


def notices(model: ModelConfig) -> list[str]:
    """One-line notices for settings whose meaning changed (not errors)."""
    if model.topology == "one_to_many" and model.input_mode == "first_step":
        return [FIRST_STEP_RENAMED]
    return []


def check(model: ModelConfig, train: Any = None) -> None:
    """Reject combinations that cannot make sense, before any work (io-dependent ones: `build_model`).

    `train` (the pipeline's TrainConfig) is accepted for callers that pass it; no check needs it yet.
    """
    from models.io import FITS  # not models.topologies: no Keras (TensorFlow) import before the data stages

    for line in notices(model):
        if line not in _printed:
            _printed.add(line)
            print(line, file=sys.stderr)

    if model.topology not in FITS:
        raise ConfigError(
            f"model.topology={model.topology!r} has no builder yet. Allowed: {', '.join(FITS)}."
        )
    if model.topology == "one_to_many" and model.bidirectional:
        raise ConfigError(
            "model.bidirectional=true does not fit model.topology='one_to_many': it has no input sequence "
            "to read both ways, and its decoder generates step by step (causal). Set model.bidirectional=false.")
    attentive = model.topology == "seq2seq" and model.context == "attention" and model.context_feed == "every_step"
    if attentive and model.recurrent_dropout > 0:
        raise ConfigError(
            f"model.recurrent_dropout={model.recurrent_dropout} is not supported by the attentive decoder "
            f"(model.context='attention' with model.context_feed='every_step'); set it to 0 or use "
            f"model.context_feed='initial_state'.")
    levels = list(model.quantiles)
    if levels and (any(not 0 < q < 1 for q in levels) or levels != sorted(set(levels)) or 0.5 not in levels):
        raise ConfigError(f"model.quantiles={levels} must be increasing levels between 0 and 1 that include 0.5 "
                          f"(the median is the point forecast), e.g. [0.1, 0.5, 0.9].")
    if model.use_cudnn == "true":
        blockers = cudnn_blockers(model)
        if blockers:
            raise ConfigError(
                f"model.use_cudnn='true' but this config cannot run on the cuDNN kernel: {'; '.join(blockers)}. "
                f"Fix those or set model.use_cudnn='auto' (falls back to the generic kernel).")
        if not _gpu_visible():
            raise ConfigError("model.use_cudnn='true' needs a visible GPU and none was found; "
                              "set model.use_cudnn='auto' to run anywhere.")


def _gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def check_io(model: ModelConfig, io: dict[str, Any]) -> None:
    """The checks that need the data's kinds (x/y "kind" is enough: ingestion's spec can be passed early)."""
    from models.io import fit_error, side

    x, y = io["x"]["kind"], io["y"]["kind"]
    problem = fit_error(model.topology, x, y)
    if problem:
        raise ConfigError(problem)
    what = side(io["y"]).shifted
    if model.topology == "many_to_many" and model.bidirectional and what:
        raise ConfigError(
            f"model.bidirectional=true cannot learn a {what} target with many_to_many: the backward RNN "
            f"would read the very steps it must predict. Use model.bidirectional=false (bidirectional "
            f"many_to_many is for tagging, y kind 'labels').")
    if model.quantiles and side(io["y"]).output != "values":
        raise ConfigError(f"model.quantiles is for numeric forecasts (y kind 'series'); this data's target is {y}. "
                          f"Remove model.quantiles.")
    if getattr(model, "id_embedding_dim", None):
        if "series_id" not in io:
            raise ConfigError("model.id_embedding_dim embeds the series id, but this data has none: set "
                              "data.id_column (a csv of many series) or remove model.id_embedding_dim.")
        if not (side(io["x"]).sequence and not side(io["x"]).ids and side(io["y"]).output == "values"):
            raise ConfigError(f"model.id_embedding_dim is for numeric forecasts (series -> series; this data "
                              f"maps {x} -> {y}); remove model.id_embedding_dim.")
    if model.unroll and side(io["x"]).ids and side(io["x"]).sequence:
        raise ConfigError("model.unroll=true needs a fixed number of steps, but token inputs are variable-length "
                          "(padded per batch); set model.unroll=false.")


def build_model(model: ModelConfig, io: dict[str, Any]) -> Any:
    """An uncompiled functional Keras model for `model.topology` x `model.cell` (runs `check_io` first)."""
    from models.topologies import BUILDERS

    check_io(model, io)
    if model.quantiles:  # one output per target and quantile level (target f, level q at f * Q + q)
        io = {**io, "y": {**io["y"], "features": io["y"]["features"] * len(model.quantiles)}}
    return BUILDERS[model.topology](model, io)


def generates(model: ModelConfig, io: dict[str, Any]) -> bool:
    """True when the model emits tokens one step at a time (teacher-forced in training)."""
    from models.io import generates as decodes

    return decodes(model.topology, io["y"])


def loss_and_metrics(io: dict[str, Any], model: ModelConfig | None = None) -> tuple[Any, list[Any]]:
    """The training loss and metrics for the kind of target (token targets ignore padding id 0;
    `model.quantiles`: the pinball loss over those levels)."""
    import keras

    from models.io import side
    from models.layers import PinballLoss, TokenAccuracy

    output = side(io["y"]).output
    if output == "tokens":
        return keras.losses.SparseCategoricalCrossentropy(ignore_class=0), [TokenAccuracy()]
    if output == "classes":
        return "sparse_categorical_crossentropy", ["accuracy"]
    if model is not None and model.quantiles:
        return PinballLoss(model.quantiles), []
    return "mse", ["mae"]


def decoder_inputs(y: np.ndarray, start_id: int) -> np.ndarray:
    """Teacher forcing: each target row shifted right by one, starting with the start id."""
    y = np.asarray(y)
    return np.concatenate([np.full((len(y), 1), start_id, dtype="int32"), y[:, :-1].astype("int32")], axis=1)


EXTRA_INPUTS = ("future", "series_id")  # arrays of a split beside x that a model may take (topologies.extra_inputs)


def model_inputs(model: ModelConfig, io: dict[str, Any], arrays: dict[str, Any]) -> Any:
    """An encoded split's arrays -> what `model(...)` takes: x alone, or {"inputs": x, "future": ...,
    "series_id": ...} for a model with those inputs (`data.future_columns`, `model.id_embedding_dim`)."""
    from models.blocks import model_inputs as named
    from models.topologies import extra_names

    return named(arrays["x"], {name: arrays[name] for name in extra_names(model, io) if name in arrays})


def training_data(model: ModelConfig, io: dict[str, Any], x: Any, y: Any) -> tuple[Any, Any]:
    """Encoded split arrays -> (model inputs, targets) for fitting.

    Generating models get {"inputs": x, "decoder_inputs": start + y[:-1]}; all others take x as is
    (numeric series decoders are not autoregressive, see models/topologies.py).
    """
    if generates(model, io):
        return {"inputs": x, "decoder_inputs": decoder_inputs(y, io["y"].get("start_id", 2))}, y
    return x, y
