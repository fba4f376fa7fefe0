"""Small custom layers and the token metric the topologies need, registered for `.keras` files.

Every class here is registered under the `rnnpipe` package with a `get_config`, so a saved model
loads with `keras.saving.load_model(path, safe_mode=True)` once `models` is imported.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

register = keras.saving.register_keras_serializable(package="rnnpipe")


class Layer(keras.layers.Layer):
    """Base of the zoo's layers: emits no Keras mask; `get_config` adds the attributes in `config_keys`."""

    config_keys: tuple[str, ...] = ()

    def compute_mask(self, *args: Any, **kwargs: Any) -> None:
        return None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **{k: getattr(self, k) for k in self.config_keys}}


@register
class PaddingMask(Layer):
    """Which encoder steps are real: ids != 0 for token ids [B, T]; for a series [B, T, F], the steps
    that are not all-NaN (a padding step of a numeric series is NaN in every feature)."""

    def call(self, inputs: Any) -> Any:
        if len(inputs.shape) == 2:
            return ops.not_equal(inputs, 0)
        return real_steps(inputs)


def real_steps(series: Any) -> Any:
    """[B, T, F] -> [B, T] bool: the steps that are not padding (a padding step is NaN in every feature)."""
    return ops.logical_not(ops.all(ops.isnan(series), axis=-1))


@register
class SeriesMask(Layer):
    """A numeric series [B, T, F] with its padding masked: an all-NaN step is padding.

    The output has NaN replaced by 0 and carries a Keras mask (True = real step), so the RNN layers
    skip padded steps and the mask-aware reducers ignore them. A window without NaN is unchanged
    (mask all True: the same numbers as an unmasked model). Padding is trailing (right-padded),
    as for token ids and as the cuDNN kernel requires.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs: Any) -> Any:
        return ops.where(ops.isnan(inputs), ops.zeros_like(inputs), inputs)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return real_steps(inputs)


@register
class FirstStep(Layer):
    """one_to_many `input_mode: first_step`: the conditioning vector is the first step's input.

    (steps [B, L, D], first [B, D]) -> steps with step 0 replaced by `first` (token decoders: step 0
    would be the start token's embedding; series: its one-hot position). The one-step decoder
    uses `FirstStepGate` instead.
    """

    def call(self, steps: Any, first: Any) -> Any:
        return ops.concatenate([ops.cast(first, steps.dtype)[:, None, :], steps[:, 1:]], axis=1)


@register
class FirstStepGate(Layer):
    """The one-step decoder's `FirstStep`: (step [B, 1, D], first [B, D], started [B, 1]) ->
    (`first` where `started` is 0 else the step, ones [B, 1]); `started` is a decoder state that
    is zero before the first step."""

    def call(self, step: Any, first: Any, started: Any) -> Any:
        gate = ops.cast(started, step.dtype)[:, :, None]
        return gate * step + (1 - gate) * ops.cast(first, step.dtype)[:, None, :], ops.ones_like(started)


@register
class StepIndex(Layer):
    """One-hot step positions [B, length, length]: the per-step input of a non-autoregressive decoder.

    `inputs` only supplies the batch size.
    """

    config_keys = ("length",)

    def __init__(self, length: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.length = int(length)

    def call(self, inputs: Any) -> Any:
        eye = ops.eye(self.length, dtype=self.compute_dtype)
        return ops.broadcast_to(eye[None], (ops.shape(inputs)[0], self.length, self.length))


@register
class ConcatContext(Layer):
    """[B, L, D] steps and a [B, C] context -> [B, L, D + C] (the context repeated at every step)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, steps: Any, context: Any) -> Any:
        repeated = ops.broadcast_to(context[:, None, :], (*ops.shape(steps)[:2], ops.shape(context)[-1]))
        return ops.concatenate([steps, ops.cast(repeated, steps.dtype)], axis=-1)

    def compute_mask(self, steps: Any, mask: Any = None) -> Any:  # Keras passes (first arg, its mask)
        return mask


@register
class SeriesContext(Layer):
    """A numeric series [B, T, F] and a [B, C] context (an embedded series id) -> [B, T, F + C], the
    context at every real step; a padding step (all-NaN) stays all-NaN, so `SeriesMask` still masks it."""

    def call(self, series: Any, context: Any) -> Any:
        repeated = ops.broadcast_to(context[:, None, :], (*ops.shape(series)[:2], ops.shape(context)[-1]))
        joined = ops.concatenate([series, ops.cast(repeated, series.dtype)], axis=-1)
        pad = ops.all(ops.isnan(series), axis=-1, keepdims=True)
        return ops.where(pad, ops.full_like(joined, float("nan")), joined)


@register
class MaskedMaxPooling(Layer):
    """Max over the unmasked steps of [B, T, D] -> [B, D] (Keras' GlobalMaxPooling1D ignores masks)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs: Any, mask: Any = None) -> Any:
        if mask is not None:
            lowest = ops.cast(ops.full((), -3e4 if self.compute_dtype == "float16" else -1e9), inputs.dtype)
            inputs = ops.where(mask[..., None], inputs, lowest)
        return ops.max(inputs, axis=1)


@register
class PinballLoss(keras.losses.Loss):
    """Quantile (pinball) loss of predictions [B, ..., F * Q] (target f, level q at f * Q + q) against
    targets [B, ..., F], averaged over levels: each level's outputs learn that quantile."""

    def __init__(self, quantiles: Any = (0.1, 0.5, 0.9), name: str = "pinball", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.quantiles = [float(q) for q in quantiles]

    def call(self, y_true: Any, y_pred: Any) -> Any:
        levels = ops.convert_to_tensor(self.quantiles, dtype="float32")
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        pred = ops.reshape(y_pred, (*ops.shape(y_true), len(self.quantiles)))
        err = y_true[..., None] - pred
        return ops.mean(ops.maximum(levels * err, (levels - 1.0) * err), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "quantiles": self.quantiles}


@register
class TokenAccuracy(keras.metrics.Metric):
    """Accuracy over the non-padding target tokens (id 0 is padding and is not counted)."""

    def __init__(self, name: str = "token_accuracy", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.cast(y_true, "int32")
        valid = ops.cast(ops.not_equal(y_true, 0), "float32")
        hit = ops.cast(ops.equal(y_true, ops.cast(ops.argmax(y_pred, axis=-1), "int32")), "float32")
        self.correct.assign_add(ops.sum(hit * valid))
        self.total.assign_add(ops.sum(valid))

    def result(self) -> Any:
        return ops.divide_no_nan(self.correct, self.total)

    def reset_state(self) -> None:
        self.correct.assign(0.0)
        self.total.assign(0.0)
