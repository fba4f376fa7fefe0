"""Recurrent layers for every cell type, built from one place so topologies stay cell-agnostic."""

from __future__ import annotations

from typing import Any

import keras

from pipeline.config import ModelConfig

CELL_CLASSES = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def state_count(cell: str) -> int:
    """How many state tensors the cell carries (LSTM: h and c; GRU, SimpleRNN: h)."""
    return 2 if cell == "lstm" else 1


def rnn_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """Constructor arguments for `cfg.cell` (only those the cell accepts)."""
    kwargs: dict[str, Any] = {
        "units": cfg.units,
        "activation": cfg.activation,
        "use_bias": cfg.use_bias,
        "dropout": cfg.dropout,
        "recurrent_dropout": cfg.recurrent_dropout,
        "unroll": cfg.unroll,
    }
    if cfg.cell in ("lstm", "gru"):
        kwargs["recurrent_activation"] = cfg.recurrent_activation
        kwargs["use_cudnn"] = {"auto": "auto", "true": True, "false": False}[cfg.use_cudnn]
    if cfg.cell == "gru":
        kwargs["reset_after"] = cfg.reset_after
    return kwargs


def cell_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """Arguments for a bare cell (`keras.layers.LSTMCell`...) run in a custom loop: no cuDNN, no unroll,
    and no dropout (the loop's caller drops inputs; recurrent dropout is refused by `build.check`)."""
    skip = ("units", "unroll", "use_cudnn", "dropout", "recurrent_dropout")
    return {k: v for k, v in rnn_kwargs(cfg).items() if k not in skip}


def rnn(cfg: ModelConfig, name: str, *, return_sequences: bool, return_state: bool = False,
        bidirectional: bool | None = None) -> keras.layers.Layer:
    """One recurrent layer of `cfg.cell`, optionally wrapped in Bidirectional."""
    layer = CELL_CLASSES[cfg.cell](
        return_sequences=return_sequences, return_state=return_state, name=name, **rnn_kwargs(cfg)
    )
    if cfg.bidirectional if bidirectional is None else bidirectional:
        return keras.layers.Bidirectional(layer, merge_mode=cfg.merge_mode, name=f"bi_{name}")
    return layer


def stack(cfg: ModelConfig, x: Any, prefix: str, *, last_sequences: bool) -> Any:
    """`cfg.num_layers` stacked layers; every layer but the last returns sequences."""
    for i in range(cfg.num_layers):
        is_last = i == cfg.num_layers - 1
        x = rnn(cfg, f"{prefix}_{cfg.cell}_{i + 1}", return_sequences=last_sequences or not is_last)(x)
    return x
