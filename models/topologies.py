"""One builder per topology, each parameterised by the cell (never by copy-paste).

A builder takes the model config and the io spec from preprocessing and returns an uncompiled
functional `keras.Model` from encoded inputs to encoded outputs. Layers have stable names and
are made through `Parts`, so `generation_models` can rebuild the encoder and a one-step decoder
around the *trained* layers (shared weights) for greedy and beam-search decoding.

Shapes (B = batch):
- one_to_one: x [B, F] (vector) or [B] (category) -> the RNN reads it as a length-1 sequence.
- many_to_one: x [B, T] ids / [B, T, F] -> the RNN stack -> `reduce` (last|mean|max|attention,
  all mask-aware) -> head. A series target [H, F] gets a direct multi-step head (dense H*F).
- Numeric series inputs take any number of steps (the time axis is dynamic unless
  `model.unroll`); a step that is NaN in every feature is padding (trailing, like token
  padding): `SeriesMask` zeroes it and masks it, so the RNNs, reducers and attention skip it.
- many_to_many: an output at every input step. A bidirectional stack is allowed for tagging
  (`labels`) only: a next-token or shifted-series target would be visible to the backward RNN.
- one_to_many, seq2seq: the encoder-decoder builder, in models/seq2seq.py (contexts, the shared
  decoder, `generation_models`); the shared blocks (`Parts`, inputs, heads) are in models/blocks.py.
"""

from __future__ import annotations

from typing import Any, Callable

import keras

from models import cells
from models.blocks import (
    FUTURE,
    POOLS,
    SERIES_ID,
    Parts,
    condition,
    dropout,
    embed_sequence,
    extra_inputs,
    extra_names,
    head,
    input_layer,
    model_inputs,
    with_series_id,
)
from models.seq2seq import DECODER_INPUTS, generation_models, one_to_many, seq2seq
from models.spec import ModelConfig

# the names importable from here (callers in components/ and models/ import them from models.topologies)
__all__ = ["BUILDERS", "DECODER_INPUTS", "FUTURE", "SERIES_ID", "extra_names", "generation_models", "many_to_many",
           "many_to_one", "one_to_many", "one_to_one", "seq2seq"]


# --------------------------------------------------------------------------------------------
# Topologies without a decoder


def one_to_one(cfg: ModelConfig, io: dict[str, Any]) -> keras.Model:
    """Fixed vector -> label; the RNN reads a length-1 sequence (in effect an MLP)."""
    parts = Parts()
    inputs = input_layer(io["x"])
    x = condition(cfg, io["x"], parts, inputs)
    x = keras.layers.Reshape((1, x.shape[-1]), name="as_sequence")(x)
    x = cells.stack(cfg, x, "rnn", last_sequences=False)
    x = dropout(cfg, x, parts, "head_dropout")
    return keras.Model(inputs, head(io["y"], x), name=f"one_to_one_{cells.key(cfg)}")



def many_to_one(cfg: ModelConfig, io: dict[str, Any]) -> keras.Model:
    """Sequence -> one output; the loss sees only the final (reduced) output."""
    parts = Parts()
    inputs, extra = input_layer(io["x"], static_length=cfg.unroll), extra_inputs(cfg, io)
    x = embed_sequence(io["x"], cfg, with_series_id(cfg, io, parts, inputs, extra))
    x = cells.stack(cfg, x, "encoder", last_sequences=cfg.reduce != "last")
    if cfg.reduce != "last":
        x = POOLS[cfg.reduce](cfg, f"reduce_{cfg.reduce}")(x)
    x = dropout(cfg, x, parts, "head_dropout")
    return keras.Model(model_inputs(inputs, extra), head(io["y"], x), name=f"many_to_one_{cells.key(cfg)}")


def many_to_many(cfg: ModelConfig, io: dict[str, Any]) -> keras.Model:
    """Synced sequence -> sequence: an output at every input step.

    Bidirectional only for tagging; `build.check_io` refuses it for next-token / shifted-series targets.
    """
    parts = Parts()
    inputs, extra = input_layer(io["x"], static_length=cfg.unroll), extra_inputs(cfg, io)
    x = embed_sequence(io["x"], cfg, with_series_id(cfg, io, parts, inputs, extra))
    x = cells.stack(cfg, x, "encoder", last_sequences=True)
    x = dropout(cfg, x, parts, "head_dropout")
    return keras.Model(model_inputs(inputs, extra), head(io["y"], x), name=f"many_to_many_{cells.key(cfg)}")



BUILDERS: dict[str, Callable[[ModelConfig, dict[str, Any]], keras.Model]] = {
    "one_to_one": one_to_one,
    "one_to_many": one_to_many,
    "many_to_one": many_to_one,
    "many_to_many": many_to_many,
    "seq2seq": seq2seq,
}

