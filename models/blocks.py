"""The building blocks every topology shares: named layers (`Parts`), inputs, embeddings, heads, poolings.

Named inputs beside x (the model input is then {"inputs": x, ...}): `future` [B, H, n], the known
future values of `data.future_columns` at the horizon steps, concatenated to the seq2seq series
decoder's step inputs (past-only features stay in the encoder); `series_id` [B] (with
`model.id_embedding_dim`), embedded (`id_embedding`, id 0 = unseen in train) and appended to every
real input step of a series encoder (`SeriesContext`).
"""

from __future__ import annotations

from typing import Any, Callable

import keras

from models.attention import AttentionPooling
from models.io import classes, side
from models.layers import MaskedMaxPooling, SeriesContext, SeriesMask
from models.spec import ConfigError, ModelConfig

FUTURE, SERIES_ID = "future", "series_id"  # the named inputs beside x (see `extra_inputs`)


class Parts:
    """Named layers: made once (training graph) or taken from a trained model (generation graphs)."""

    def __init__(self, model: keras.Model | None = None):
        self.model, self.made = model, {}

    def __call__(self, name: str, make: Callable[[str], keras.layers.Layer]) -> keras.layers.Layer:
        if name not in self.made:
            self.made[name] = self.model.get_layer(name) if self.model is not None else make(name)
        return self.made[name]


# --------------------------------------------------------------------------------------------
# Inputs, embeddings, heads


def input_layer(io_x: dict[str, Any], name: str = "inputs", static_length: bool = False) -> keras.KerasTensor:
    """The model input for an encoded x side (time axis fixed only when `static_length`)."""
    facts = side(io_x)
    steps = (io_x.get("length") if static_length else None,) if facts.sequence else ()
    if facts.ids:
        return keras.Input(shape=steps, dtype="int32", name=name)
    return keras.Input(shape=(*steps, io_x["features"]), dtype="float32", name=name)


def extra_names(cfg: ModelConfig, io: dict[str, Any]) -> list[str]:
    """The named inputs beside x: `future` [B, H, n] (`data.future_columns`, the seq2seq series decoder)
    and `series_id` [B] int32 (`model.id_embedding_dim`, with `data.id_column`)."""
    names = []
    if io.get("future") and cfg.topology == "seq2seq" and side(io["y"]).output == "values":
        names.append(FUTURE)
    if getattr(cfg, "id_embedding_dim", None) and io.get("series_id"):
        names.append(SERIES_ID)
    return names


def extra_inputs(cfg: ModelConfig, io: dict[str, Any]) -> dict[str, keras.KerasTensor]:
    """The Keras inputs of `extra_names`."""
    shapes = {FUTURE: ((io.get("future") or {}).get("length"), (io.get("future") or {}).get("features")),
              SERIES_ID: ()}
    return {name: keras.Input(shape=shapes[name], dtype="float32" if name == FUTURE else "int32", name=name)
            for name in extra_names(cfg, io)}


def with_series_id(cfg: ModelConfig, io: dict[str, Any], parts: Parts, inputs: Any, extra: dict[str, Any]) -> Any:
    """x with the embedded series id (`id_embedding`; 0 = unseen) appended to every real step."""
    if SERIES_ID not in extra:
        return inputs
    embedded = parts("id_embedding", lambda n: keras.layers.Embedding(
        io["series_id"]["vocab_size"], cfg.id_embedding_dim, name=n))(extra[SERIES_ID])
    return parts("series_context", lambda n: SeriesContext(name=n))(inputs, embedded)


def model_inputs(inputs: Any, extra: dict[str, Any]) -> Any:
    """x alone, or {"inputs": x, "future": ..., "series_id": ...}."""
    return {"inputs": inputs, **extra} if extra else inputs


def embed_sequence(io_x: dict[str, Any], cfg: ModelConfig, x: Any, parts: Parts | None = None,
                   name: str = "embedding") -> Any:
    """Token ids -> masked embeddings (0 = padding); a numeric series -> `SeriesMask` (all-NaN steps masked)."""
    parts, facts = parts or Parts(), side(io_x)
    if not facts.sequence:
        return x
    if not facts.ids:
        return parts("series_mask", lambda n: SeriesMask(name=n))(x)
    return parts(name, lambda n: keras.layers.Embedding(io_x["vocab_size"], cfg.embedding_dim, mask_zero=True,
                                                        name=n))(x)


def condition(cfg: ModelConfig, io_x: dict[str, Any], parts: Parts, x: Any) -> Any:
    """A fixed input as a vector [B, D]: category -> embedding, vector -> as is."""
    facts = side(io_x)
    if facts.sequence:
        raise ConfigError(f"a {io_x['kind']!r} input is a sequence; this topology takes a fixed vector or category")
    if facts.ids:
        return parts("embedding", lambda n: keras.layers.Embedding(io_x["vocab_size"], cfg.embedding_dim,
                                                                   name=n))(x)
    return x


def head(io_y: dict[str, Any], x: Any, parts: Parts | None = None, name: str = "outputs") -> Any:
    """The output layer, float32 even under mixed precision.

    Classes/tokens: softmax (per step when x is [B, L, D]); series: linear values, one per
    feature and step; a series target from a single vector x [B, D] gets a direct multi-step
    head (dense horizon*features, reshaped to [B, H, F]).
    """
    parts = parts or Parts()
    if side(io_y).output in ("classes", "tokens"):
        size = classes(io_y)
        return parts(name, lambda n: keras.layers.Dense(size, activation="softmax", dtype="float32", name=n))(x)
    features = io_y["features"]
    if len(x.shape) == 2:
        steps = io_y.get("length", 1)
        flat = parts(name + "_flat", lambda n: keras.layers.Dense(steps * features, dtype="float32", name=n))(x)
        return parts(name, lambda n: keras.layers.Reshape((steps, features), dtype="float32", name=n))(flat)
    return parts(name, lambda n: keras.layers.Dense(features, dtype="float32", name=n))(x)


def dropout(cfg: ModelConfig, x: Any, parts: Parts, name: str) -> Any:
    """Dropout before a head (identity when `model.dropout` is 0)."""
    if not cfg.dropout:
        return x
    return parts(name, lambda n: keras.layers.Dropout(cfg.dropout, name=n))(x)


# mask-aware poolings: many_to_one's `reduce` and the pooled seq2seq context
POOLS: dict[str, Callable[[ModelConfig, str], keras.layers.Layer]] = {
    "mean": lambda cfg, name: keras.layers.GlobalAveragePooling1D(name=name),
    "max": lambda cfg, name: MaskedMaxPooling(name=name),
    "attention": lambda cfg, name: AttentionPooling(cfg.units, name=name),
}
