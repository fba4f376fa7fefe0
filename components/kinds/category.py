"""`category`: one class name (a string or an int) as an input, looked up to an id (0 = unknown).

State: `classes` (sorted train values). The model embeds the id (models/io.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from components.kinds.base import Kind


class Category(Kind):
    name = "category"

    def type_ok(self, value: Any) -> bool:
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))

    def stats(self, present: list[Any], spec: dict[str, Any], lowercase: bool) -> dict[str, Any]:
        return {"classes": dict(Counter(map(str, present)).most_common())}

    def fit(self, values: list[Any], state: dict[str, Any], data: Any, generated: bool) -> None:
        state["classes"] = sorted({str(v) for v in values})

    def io_entry(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        return {"vocab_size": len(state["classes"]) + 1}  # + unknown

    def layers(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        import keras

        return {side: keras.layers.StringLookup(vocabulary=state["classes"], num_oov_indices=1, mask_token=None,
                                                name=f"{side}_lookup")}

    def encode(self, codec: Any, raw: Any, side: str) -> Any:
        import tensorflow as tf

        return tf.cast(codec.layers[side](raw), "int32")


KIND = Category()
