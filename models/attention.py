"""Attention: the score functions, attention pooling and the attentive decoder recurrence.

Conventions (as TF-Addons' attention mechanisms): the encoder outputs ("memory", [B, T, M]) are
projected once to keys [B, T, units] without bias; the values are the memory itself.

- `luong`: score(q, k_j) = q . k_j (dot product; q has `units` features).
- `bahdanau`: score(q, k_j) = v . tanh(q W_q + k_j) (additive).

Two decoder architectures use them (see models/topologies.py):
- context_feed=initial_state (Luong et al. 2015): the decoder RNN runs first, then each output
  h_t queries the memory and the "attentional" vector tanh(W_c [c_t; h_t]) feeds the head.
- context_feed=every_step (Bahdanau et al. 2015): `AttentiveRNN` computes c_t from the previous
  top-layer state and concatenates it to the input of step t, so the recurrence itself sees the
  context. Keras 3 RNN layers take no per-call constants, so this layer runs its own loop
  (`keras.ops.scan`) over standard Keras cells; it is never cuDNN-fused.
All are registered for `.keras` serialization.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from models import cells as registry
from models.layers import Layer, register

SCORES = ("luong", "bahdanau")


def masked_softmax(scores: Any, mask: Any) -> Any:
    """Softmax over the last axis in float32, masked steps (mask False) get weight 0."""
    scores = ops.cast(scores, "float32")
    if mask is not None:
        scores = ops.where(mask, scores, -1e9)
    return ops.softmax(scores, axis=-1)


@register
class Attention(Layer):
    """(query [B, Lq, units], memory [B, T, M], memory_mask [B, T]) -> (context [B, Lq, M], weights [B, Lq, T])."""

    config_keys = ("score", "units")

    def __init__(self, score: str = "luong", units: int = 32, **kwargs: Any):
        super().__init__(**kwargs)
        if score not in SCORES:
            raise ValueError(f"attention score must be one of {SCORES}, got {score!r}")
        self.score, self.units = score, int(units)

    def build(self, query_shape: Any, memory_shape: Any, memory_mask_shape: Any = None) -> None:
        if self.score == "luong" and query_shape[-1] != self.units:
            raise ValueError(f"luong attention needs {self.units}-wide queries, got {query_shape[-1]}")
        self.memory_kernel = self.add_weight(name="memory_kernel", shape=(memory_shape[-1], self.units))
        if self.score == "bahdanau":
            self.query_kernel = self.add_weight(name="query_kernel", shape=(query_shape[-1], self.units))
            self.score_vector = self.add_weight(name="score_vector", shape=(self.units,))

    def keys(self, memory: Any) -> Any:
        """The projected memory (computed once per sequence)."""
        return ops.matmul(memory, self.memory_kernel)

    def attend(self, query: Any, keys: Any, memory: Any, memory_mask: Any = None) -> tuple[Any, Any]:
        """Context and weights for queries [B, Lq, units] against precomputed keys."""
        if self.score == "luong":
            scores = ops.einsum("bqu,btu->bqt", query, keys)
        else:
            hidden = ops.tanh(ops.matmul(query, self.query_kernel)[:, :, None, :] + keys[:, None, :, :])
            scores = ops.einsum("bqtu,u->bqt", hidden, self.score_vector)
        mask = None if memory_mask is None else ops.cast(memory_mask, "bool")[:, None, :]
        weights = ops.cast(masked_softmax(scores, mask), memory.dtype)
        return ops.einsum("bqt,btm->bqm", weights, memory), weights

    def call(self, query: Any, memory: Any, memory_mask: Any = None) -> tuple[Any, Any]:
        return self.attend(query, self.keys(memory), memory, memory_mask)


@register
class AttentionPooling(Layer):
    """[B, T, D] -> [B, D]: a weighted sum with weights softmax_t(v . tanh(W h_t + b)) over unmasked steps."""

    config_keys = ("units",)

    def __init__(self, units: int = 32, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = int(units)
        self.supports_masking = True

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.score_vector = self.add_weight(name="score_vector", shape=(self.units,))

    def call(self, inputs: Any, mask: Any = None) -> Any:
        scores = ops.matmul(ops.tanh(ops.matmul(inputs, self.kernel) + self.bias), self.score_vector)
        weights = ops.cast(masked_softmax(scores, mask), inputs.dtype)
        return ops.sum(inputs * weights[..., None], axis=1)


@register
class AttentiveRNN(Layer):
    """A stacked decoder whose first layer reads [x_t; c_t], c_t = attention(top h_{t-1}, memory).

    Call: (inputs [B, L, D], memory [B, T, M], memory_mask [B, T], initial_state: flat list of the
    layers' states, layer-major: LSTM [h1, c1, h2, c2, ...], GRU/SimpleRNN [h1, h2, ...]; any cell of
    `models.cells`, a custom one included, whose first state is its output h) ->
    (outputs [B, L, units], contexts [B, L, M], weights [B, L, T], *final states).
    Input dropout is applied by the caller; recurrent dropout is refused at config time.
    """

    config_keys = ("cell", "units", "num_layers", "score", "cell_kwargs")

    def __init__(self, cell: str = "lstm", units: int = 32, num_layers: int = 1, score: str = "luong",
                 cell_kwargs: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.cell, self.units, self.num_layers, self.score = cell, int(units), int(num_layers), score
        self.cell_kwargs = dict(cell_kwargs or {})
        self.cells = [registry.make_cell(cell, self.units, name=f"cell_{i + 1}", dtype=self.dtype_policy,
                                         **self.cell_kwargs) for i in range(self.num_layers)]
        self.attention = Attention(score, self.units, name="attention", dtype=self.dtype_policy)
        self.states_per_layer = len(registry.get(cell).state_sizes(self.units))

    def build(self, inputs_shape: Any, memory_shape: Any, memory_mask_shape: Any = None,
              initial_state_shape: Any = None) -> None:
        width = inputs_shape[-1] + memory_shape[-1]
        for cell in self.cells:
            cell.build((None, width))
            width = self.units
        self.attention.build((None, 1, self.units), memory_shape)

    def call(self, inputs: Any, memory: Any, memory_mask: Any, initial_state: Any, training: Any = None) -> Any:
        keys = self.attention.keys(memory)
        batch = ops.shape(inputs)[0]
        zeros = (ops.zeros((batch, self.units), self.compute_dtype), ops.zeros_like(memory[:, 0]),
                 ops.zeros_like(memory[:, :, 0]))
        k = self.states_per_layer

        def step(carry: Any, x_t: Any) -> tuple[Any, Any]:
            states = carry[0]
            context, weights = self.attention.attend(states[-k][:, None, :], keys, memory, memory_mask)
            h, new_states = ops.concatenate([x_t, context[:, 0]], axis=-1), []
            for i, cell in enumerate(self.cells):
                h, s = cell(h, list(states[i * k:(i + 1) * k]), training=training)
                new_states.extend(s if isinstance(s, (list, tuple)) else [s])
            new = (tuple(new_states), h, context[:, 0], weights[:, 0])
            return new, new  # the TF backend's scan needs y shaped like the carry

        init = (tuple(ops.cast(s, self.compute_dtype) for s in initial_state), *zeros)
        last, seq = ops.scan(step, init, ops.transpose(inputs, (1, 0, 2)))
        outputs, contexts, weights = (ops.transpose(s, (1, 0, 2)) for s in seq[1:])
        return (outputs, contexts, weights, *last[0])
