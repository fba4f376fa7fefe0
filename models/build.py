"""Config -> compiled Keras model, plus the config checks that need model knowledge."""

from __future__ import annotations

from typing import Any

from pipeline.config import ConfigError, ModelConfig, TrainConfig


def check(model: ModelConfig, train: TrainConfig) -> None:
    """Reject combinations that cannot make sense, before any work."""
    from models.topologies import BUILDERS

    if model.topology not in BUILDERS:
        raise ConfigError(
            f"model.topology={model.topology!r} has no builder yet. Allowed: {', '.join(BUILDERS)}."
        )


def build_model(model: ModelConfig, io: dict[str, Any]) -> Any:
    """An uncompiled functional Keras model for `model.topology` x `model.cell`."""
    from models.topologies import BUILDERS

    return BUILDERS[model.topology](model, io)


def loss_and_metrics(io: dict[str, Any]) -> tuple[str, list[str]]:
    """The training loss and metrics for the kind of target."""
    kind = io["y"]["kind"]
    if kind in ("label", "labels", "tokens"):
        return "sparse_categorical_crossentropy", ["accuracy"]
    return "mse", ["mae"]


def training_data(model: ModelConfig, io: dict[str, Any], x: Any, y: Any) -> tuple[Any, Any]:
    """Encoded split arrays -> (model inputs, targets) for fitting."""
    return x, y
