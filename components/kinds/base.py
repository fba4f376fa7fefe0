"""The `Kind` interface (see components/kinds/__init__.py for what lives where)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


class Kind:
    """One data kind. The defaults suit a kind that is neither text nor numbers per step."""

    name = ""
    strings = True  # raw values are text (sent as strings to the exported model)
    sequence = False  # a time axis (a length to fit and pad)
    dtype = "int32"  # the encoded dtype

    # -- validation ------------------------------------------------------------------------
    def type_ok(self, value: Any) -> bool:
        """True when `value` (present, not missing) is a raw value of this kind."""
        raise NotImplementedError

    def stats(self, present: list[Any], spec: dict[str, Any], lowercase: bool) -> dict[str, Any]:
        """Kind-specific statistics of the well-typed present values of one split side."""
        raise NotImplementedError

    # -- preprocessing ---------------------------------------------------------------------
    def fit(self, values: list[Any], state: dict[str, Any], data: Any, generated: bool) -> None:
        """Add the fitted state (vocabulary, classes, mean/variance, length) to `state`, in place."""
        raise NotImplementedError

    def io_entry(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        """What the model builder needs about this side (besides "kind")."""
        return {"length": state["length"]} if "length" in state else {}

    def layers(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        """The Keras preprocessing layers of this side, by name ("x", "y_invert", ...)."""
        return {}

    def encode(self, codec: Any, raw: Any, side: str) -> Any:
        """Raw values of one side -> the model's tensor (a TF op)."""
        raise ValueError(f"cannot encode a {self.name!r} side")

    def encode_targets(self, codec: Any, ys: list[Any], xs: list[Any] | None) -> np.ndarray:
        """Raw targets -> training targets (NumPy)."""
        raise ValueError(f"a {self.name!r} side is not a target")

    def shape(self, state: dict[str, Any]) -> tuple[int, ...]:
        """The encoded shape of one example (without the batch axis)."""
        return ()

    def pad(self, encoded: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        """Encoded inputs made the fitted shape (token inputs are padded or cut to the fitted length)."""
        return encoded

    def target_filter(self, state: dict[str, Any]) -> Callable[[Any], bool] | None:
        """A test that a raw target can be encoded (a class seen in train), or None: all can."""
        return None

    # -- export, predict, registry ---------------------------------------------------------
    def raw_tensor(self, values: list[Any]) -> Any:
        """Raw values as the exported model's input tensor."""
        import tensorflow as tf

        return tf.constant([str(v) for v in values])

    def input_signature(self, io_x: dict[str, Any], steps: int | None, name: str) -> Any:
        """The raw input TensorSpec (`steps`: a fixed time axis, or None)."""
        import tensorflow as tf

        return tf.TensorSpec([None], tf.string, name=name)

    def input_contract(self, codec: Any, cfg: Any, future: list[str] = ()) -> dict[str, Any]:
        """What the exported model accepts as this x side (`serving_contract.json` "inputs"; `future`:
        the input columns whose future values are a named input too)."""
        return {"kind": self.name}

    def contract_lines(self, inputs: dict[str, Any]) -> list[str]:
        """Model-card lines describing `input_contract`'s "inputs"."""
        return []

    def output_contract(self, codec: Any) -> dict[str, Any]:
        """What the contract says about a target of this kind (e.g. the order of class probabilities)."""
        return {}

    def checked_inputs(self, codec: Any, cfg: Any) -> Callable[[Any], tuple[Any, Any]]:
        """raw -> (raw, real steps per row or None): the exported model's input checks for this x side."""
        return lambda raw: (raw, None)

    def serve(self, model: Any, codec: Any, cfg: Any) -> Callable[[Any], dict[str, Any]]:
        """The raw-in/raw-out function `serving_default` exports for a target of this kind."""
        raise ValueError(f"a {self.name!r} side is not a served target")

    def distribution(self, state: dict[str, Any], train_y: np.ndarray) -> list[str]:
        """Model-card lines on the encoded train targets (e.g. the share of each class)."""
        return []

    def window_header(self, targets: list[str], levels: list[float]) -> list[str]:
        """`rnnpipe predict` on a time-series file: the output columns for a target of this kind."""
        return ["label", "confidence"]

    def window_rows(self, out: dict[str, Any], i: int, lead: list[Any], time: Any, topology: str, data: Any,
                    frequency: str | None, levels: list[float]) -> list[list[Any]]:
        """The output rows of window i (after the `lead` columns)."""
        raise ValueError(f"a {self.name!r} target is not predicted from series files")

    # -- evaluation ------------------------------------------------------------------------
    zero_pads = False  # encoded id 0 is padding (a step that does not count)

    # which of components/evaluation's EVALUATORS judges a target of this kind, with its baselines
    # (a name, not the function: evaluation runs after the stages that read kinds)
    evaluator: str | None = None


def input_checks(codec: Any, cfg: Any) -> Callable[[Any], tuple[Any, Any]]:
    """raw -> (raw, real steps per row or None): the exported model's checks of `codec`'s x side."""
    from components.kinds import of

    return of(codec.x).checked_inputs(codec, cfg)
