"""`labels`: a class per input step as the target (tagging, many_to_many).

State: `classes` (sorted over every train step), `length` (the longest train sequence).
Served as {"labels": string [B, T] ("" past the end of the input), "confidence": float [B, T]}.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import numpy as np

from components.kinds.base import Kind, input_checks


class Labels(Kind):
    name = "labels"
    sequence = True

    def type_ok(self, value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value)

    def stats(self, present: list[Any], spec: dict[str, Any], lowercase: bool) -> dict[str, Any]:
        return {"lengths": [len(v) for v in present],
                "classes": dict(Counter(str(t) for seq in present for t in seq).most_common())}

    def fit(self, values: list[Any], state: dict[str, Any], data: Any, generated: bool) -> None:
        state["classes"] = sorted({str(t) for seq in values for t in seq})
        state["length"] = max(len(v) for v in values)

    def io_entry(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        return {"num_classes": len(state["classes"]), **super().io_entry(state, side)}

    def encode_targets(self, codec: Any, ys: list[Any], xs: list[Any] | None) -> np.ndarray:
        s = codec.y
        index = {c: i for i, c in enumerate(s["classes"])}
        out = np.zeros((len(ys), s["length"]), dtype="int32")
        for row, seq in enumerate(ys):
            ids = [index[str(t)] for t in seq][: s["length"]]
            out[row, : len(ids)] = ids
        return out

    def shape(self, state: dict[str, Any]) -> tuple[int, ...]:
        return (state["length"],)

    def target_filter(self, state: dict[str, Any]) -> Callable[[Any], bool]:
        known = set(state["classes"])
        return lambda value: set(map(str, value)) <= known

    def serve(self, model: Any, codec: Any, cfg: Any) -> Callable[[Any], dict[str, Any]]:
        """Raw sequences -> one label per step ('' past the end of a token input or on a series' padding)."""
        import tensorflow as tf

        from components.kinds import of

        check = input_checks(codec, cfg)
        steps = of(codec.x).sequence

        def fn(inputs: Any) -> dict[str, Any]:
            inputs, lengths = check(inputs)
            encoded = codec.encode(inputs, "x")
            probs = model(encoded, training=False)
            labels = tf.gather(codec.class_names(), tf.argmax(probs, -1))
            confidence = tf.reduce_max(probs, -1)
            if steps:
                valid = (tf.not_equal(encoded, 0) if lengths is None else
                         tf.sequence_mask(lengths, tf.shape(encoded)[1]))
                labels = tf.where(valid, labels, "")
                confidence = tf.where(valid, confidence, 0.0)
            return {"labels": labels, "confidence": confidence}

        return fn

    def window_rows(self, out: dict[str, Any], i: int, lead: list[Any], time: Any, topology: str, data: Any,
                    frequency: str | None, levels: list[float]) -> list[list[Any]]:
        """A label per input step: the last one is the latest."""
        from components.serving.protocol import text

        return [lead + [time or "", 0, text(out["labels"][i][-1]), float(out["confidence"][i][-1])]]

    evaluator = "tagging"


KIND = Labels()
