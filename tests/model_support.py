"""Shared by the model tests: encoded io specs, random encoded data, small model configs, the variant table."""

from __future__ import annotations

from typing import Any

import numpy as np

from components.config import ModelConfig

X_SPECS: dict[str, dict[str, Any]] = {
    "tokens": {"kind": "tokens", "vocab_size": 9, "length": 6},
    "series": {"kind": "series", "features": 2, "length": 6},
    "vector": {"kind": "vector", "features": 3},
    "category": {"kind": "category", "vocab_size": 4},
}
Y_SPECS: dict[str, dict[str, Any]] = {
    "label": {"kind": "label", "num_classes": 3},
    "labels": {"kind": "labels", "num_classes": 3, "length": 6},
    "lm": {"kind": "tokens", "vocab_size": 9, "length": 6, "language_model": True},
    "tokens": {"kind": "tokens", "vocab_size": 7, "length": 5, "start_id": 2, "end_id": 3},
    "series": {"kind": "series", "features": 2, "length": 4},
    "steps": {"kind": "series", "features": 2, "length": 6},  # per-step series (many_to_many)
}
OUT_SHAPES = {"label": (3,), "labels": (6, 3), "lm": (6, 9), "tokens": (5, 7), "series": (4, 2), "steps": (6, 2)}


def io_of(x: str, y: str) -> dict[str, Any]:
    return {"x": dict(X_SPECS[x]), "y": dict(Y_SPECS[y])}


def make_data(x_kind: str, y_kind: str, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Encoded arrays as preprocessing writes them (right-padded ids, END + 0-padded targets)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 7, n)
    steps = np.arange(6)[None] < lengths[:, None]
    x = {"tokens": lambda: np.where(steps, rng.integers(4, 9, (n, 6)), 0).astype("int32"),
         "series": lambda: rng.normal(size=(n, 6, 2)).astype("float32"),
         "vector": lambda: rng.normal(size=(n, 3)).astype("float32"),
         "category": lambda: rng.integers(1, 4, n).astype("int32")}[x_kind]()
    if y_kind == "label":
        y = rng.integers(0, 3, n)
    elif y_kind == "labels":
        y = np.where(steps, rng.integers(0, 3, (n, 6)), 0)
    elif y_kind == "lm":
        y = np.concatenate([x[:, 1:], np.zeros((n, 1), "int32")], 1)
    elif y_kind == "tokens":
        out_len = rng.integers(1, 5, n)
        y = np.zeros((n, 5), "int32")
        for row, m in enumerate(out_len):
            y[row, :m] = rng.integers(4, 7, m)
            y[row, m] = 3
    else:
        y = rng.normal(size=(n, *OUT_SHAPES[y_kind])).astype("float32")
    return x, y.astype("int32") if y.dtype.kind == "i" else y


def model_cfg(topology: str, cell: str = "lstm", num_layers: int = 1, bidirectional: bool = False,
              **kw: Any) -> ModelConfig:
    return ModelConfig(topology=topology, cell=cell, units=6, embedding_dim=4, num_layers=num_layers,
                       bidirectional=bidirectional, **kw)


# (id, topology, x kind, y kind, extra config)
VARIANTS: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("1v1-vector", "one_to_one", "vector", "label", {}),
    ("1v1-category", "one_to_one", "category", "label", {}),
    ("1vN-init-tokens", "one_to_many", "category", "tokens", {"input_mode": "initial_state"}),
    ("1vN-first-tokens", "one_to_many", "category", "tokens", {"input_mode": "first_step"}),
    ("1vN-every-tokens", "one_to_many", "vector", "tokens", {"input_mode": "every_step"}),
    ("1vN-init-series", "one_to_many", "vector", "series", {"input_mode": "initial_state"}),
    ("1vN-first-series", "one_to_many", "vector", "series", {"input_mode": "first_step"}),
    ("1vN-every-series", "one_to_many", "category", "series", {"input_mode": "every_step"}),
    ("Nv1-last", "many_to_one", "tokens", "label", {"reduce": "last"}),
    ("Nv1-mean", "many_to_one", "tokens", "label", {"reduce": "mean"}),
    ("Nv1-max", "many_to_one", "tokens", "label", {"reduce": "max"}),
    ("Nv1-attention", "many_to_one", "tokens", "label", {"reduce": "attention"}),
    ("Nv1-series-label", "many_to_one", "series", "label", {"reduce": "last"}),
    ("Nv1-series-forecast", "many_to_one", "series", "series", {"reduce": "mean"}),
    ("NvN-tag-tokens", "many_to_many", "tokens", "labels", {}),
    ("NvN-tag-series", "many_to_many", "series", "labels", {}),
    ("NvN-lm", "many_to_many", "tokens", "lm", {}),
    ("NvN-series", "many_to_many", "series", "steps", {}),
    *[(f"s2s-{c}-{f}" + (f"-{a}" if c == "attention" else ""), "seq2seq", "tokens", "tokens",
       {"context": c, "context_feed": f, "attention": a})
      for c in ("last_state", "projected", "attention") for f in ("initial_state", "every_step")
      for a in (("luong", "bahdanau") if c == "attention" else ("luong",))],
    *[(f"s2s-pooled-{p}-{f}", "seq2seq", "tokens", "tokens", {"context": "pooled", "pool": p, "context_feed": f})
      for p in ("mean", "max", "attention") for f in ("initial_state", "every_step")],
    ("s2s-series-pooled", "seq2seq", "series", "series", {"context": "pooled", "pool": "attention"}),
    ("s2s-series-forecast", "seq2seq", "series", "series", {"context": "last_state"}),
    ("s2s-series-attention", "seq2seq", "series", "series", {"context": "attention", "context_feed": "every_step"}),
    ("s2s-tokens-series", "seq2seq", "tokens", "series", {"context": "projected", "context_feed": "every_step"}),
    ("s2s-series-tokens", "seq2seq", "series", "tokens", {"context": "attention", "attention": "bahdanau"}),
]
VARIANT = {v[0]: v for v in VARIANTS}
BASE = {"one_to_one": "1v1-vector", "one_to_many": "1vN-init-tokens", "many_to_one": "Nv1-last",
        "many_to_many": "NvN-tag-tokens", "seq2seq": "s2s-attention-initial_state-luong"}
