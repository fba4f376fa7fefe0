"""One builder per topology, each parameterised by the cell (never by copy-paste).

A builder takes the model config and the io spec from preprocessing and returns an
uncompiled functional `keras.Model` from encoded inputs to encoded outputs.
"""

from __future__ import annotations

from typing import Any, Callable

import keras

from models import cells
from pipeline.config import ModelConfig


def input_layer(io_x: dict[str, Any], name: str = "inputs") -> keras.KerasTensor:
    """The model input for an encoded x side."""
    kind = io_x["kind"]
    if kind == "tokens":
        return keras.Input(shape=(None,), dtype="int32", name=name)
    if kind == "category":
        return keras.Input(shape=(), dtype="int32", name=name)
    if kind == "vector":
        return keras.Input(shape=(io_x["features"],), dtype="float32", name=name)
    return keras.Input(shape=(None, io_x["features"]), dtype="float32", name=name)


def embed_sequence(io_x: dict[str, Any], cfg: ModelConfig, x: Any, name: str = "embedding") -> Any:
    """Token ids -> masked embeddings; real-valued steps pass through."""
    if io_x["kind"] == "tokens":
        return keras.layers.Embedding(io_x["vocab_size"], cfg.embedding_dim, mask_zero=True, name=name)(x)
    return x


def classifier(io_y: dict[str, Any], x: Any, name: str = "outputs") -> Any:
    """Softmax over classes (float32 even under mixed precision)."""
    return keras.layers.Dense(io_y["num_classes"], activation="softmax", dtype="float32", name=name)(x)


def many_to_one(cfg: ModelConfig, io: dict[str, Any]) -> keras.Model:
    """Sequence -> one output; the loss sees only the final (reduced) output."""
    inputs = input_layer(io["x"])
    x = embed_sequence(io["x"], cfg, inputs)
    x = cells.stack(cfg, x, "encoder", last_sequences=cfg.reduce != "last")
    if cfg.reduce == "mean":
        x = keras.layers.GlobalAveragePooling1D(name="reduce_mean")(x)
    elif cfg.reduce == "max":
        x = keras.layers.GlobalMaxPooling1D(name="reduce_max")(x)
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(x)
    return keras.Model(inputs, classifier(io["y"], x), name=f"many_to_one_{cfg.cell}")


BUILDERS: dict[str, Callable[[ModelConfig, dict[str, Any]], keras.Model]] = {
    "many_to_one": many_to_one,
}
