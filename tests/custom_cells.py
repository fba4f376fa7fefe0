"""User-style Keras RNN cells for tests/test_custom_cell.py (`model.cell: tests.custom_cells:<Class>`).

Written as a user would, against the public Keras API only: not registered for serialization
(rnnpipe registers them), state size declared by the cell.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


class MinimalRNNCell(keras.layers.Layer):
    """h_t = activation(x_t W + h_{t-1} U): one state (the Keras guide's minimal cell)."""

    def __init__(self, units: int, activation: str = "tanh", **kwargs: Any):
        super().__init__(**kwargs)
        self.units, self.activation = int(units), keras.activations.get(activation)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), initializer="orthogonal",
                                                name="recurrent_kernel")

    def call(self, inputs: Any, states: Any, training: Any = None) -> tuple[Any, list[Any]]:
        h = self.activation(ops.matmul(inputs, self.kernel) + ops.matmul(states[0], self.recurrent_kernel))
        return h, [h]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


class LeakyPairCell(keras.layers.Layer):
    """Two states [h, c] of different widths (h: units, c: 2 * units), so state plumbing that assumed
    `units`-wide states, or LSTM's two, would break: c leaks, h = tanh(x W + c U)."""

    def __init__(self, units: int, use_bias: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.units, self.use_bias = int(units), bool(use_bias)
        self.state_size = [self.units, 2 * self.units]
        self.output_size = self.units

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], 2 * self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(2 * self.units, self.units), name="recurrent_kernel")
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(shape=(2 * self.units,), initializer="zeros", name="bias")

    def call(self, inputs: Any, states: Any, training: Any = None) -> tuple[Any, list[Any]]:
        _, c = states
        z = ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            z = z + self.bias
        c = 0.5 * c + 0.5 * ops.tanh(z)
        h = ops.tanh(ops.matmul(c, self.recurrent_kernel))
        return h, [h, c]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias}


class NotACell(keras.layers.Layer):
    """A layer without `state_size`: model.cell must refuse it."""

    def __init__(self, units: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = units


class HugeStateCell(MinimalRNNCell):
    """Declares more state than any model can hold: model.cell must refuse it at config time."""

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.state_size = [10**9]


class SubclassedSimpleCell(keras.layers.SimpleRNNCell):
    """A built-in cell subclassed with `**kwargs`: model.dropout and the others reach SimpleRNNCell through them."""

    def __init__(self, units: int, **kwargs: Any):
        super().__init__(units, **kwargs)
