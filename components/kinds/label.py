"""`label`: one class per example as the target (classification); the model outputs probabilities.

State: `classes` (sorted train values; a validation/test example of an unseen class is left out).
Served as {"label": string [B], "probabilities": float [B, C]} (`classify`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from components.kinds.base import input_checks
from components.kinds.category import Category


class Label(Category):
    name = "label"

    def io_entry(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        return {"num_classes": len(state["classes"]), **super(Category, self).io_entry(state, side)}

    def layers(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        return {}

    def encode(self, codec: Any, raw: Any, side: str) -> Any:
        raise ValueError(f"cannot encode a {self.name!r} side")

    def encode_targets(self, codec: Any, ys: list[Any], xs: list[Any] | None) -> np.ndarray:
        index = {c: i for i, c in enumerate(codec.y["classes"])}
        return np.array([index[str(v)] for v in ys], dtype="int32")

    def target_filter(self, state: dict[str, Any]) -> Callable[[Any], bool]:
        known = set(state["classes"])
        return lambda value: str(value) in known

    def output_contract(self, codec: Any) -> dict[str, Any]:
        return {"classes": [str(c) for c in codec.y["classes"]]}  # the order of `probabilities` (/metadata)

    def serve(self, model: Any, codec: Any, cfg: Any) -> Callable[[Any], dict[str, Any]]:
        """Raw inputs -> {label, probabilities}."""
        import tensorflow as tf


        check = input_checks(codec, cfg)

        def fn(inputs: Any) -> dict[str, Any]:
            inputs, _ = check(inputs)
            probs = model(codec.encode(inputs, "x"), training=False)
            return {"label": tf.gather(codec.class_names(), tf.argmax(probs, -1)), "probabilities": probs}

        return fn

    def distribution(self, state: dict[str, Any], train_y: np.ndarray) -> list[str]:
        counts = np.bincount(train_y, minlength=len(state["classes"]))
        return ["- train target distribution: " + ", ".join(
            f"{c} {n / counts.sum():.1%}" for c, n in zip(state["classes"], counts))]

    def window_rows(self, out: dict[str, Any], i: int, lead: list[Any], time: Any, topology: str, data: Any,
                    frequency: str | None, levels: list[float]) -> list[list[Any]]:
        """The class data.horizon steps after the window."""
        from components.ingestion.timeseries import later_times
        from components.serving.protocol import text

        when = later_times(time, frequency, data.horizon)[-1]
        return [lead + [when, data.horizon, text(out["label"][i]), float(np.max(out["probabilities"][i]))]]

    evaluator = "classification"


KIND = Label()
