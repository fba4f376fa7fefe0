"""`series`: numbers per step, [steps, features] (windows of a time series, forecasts).

State: as `vector` plus `length` (the window / horizon), and for targets optionally
`reference` (`data.target_reference`: the target encoded as its difference from a naive forecast
read from the raw inputs) and `window_scale` (`data.scale: window`, RevIN-style: the target
columns of each input window normalised by that window's own mean and standard deviation; the
targets in the same window units). Served as {"series": float [B, T, F]} in raw units, plus one
output per target column (`forecast`, which also feeds the named extra inputs: known future
values, the series id, declared by `extra_signature`). Input checks of served windows: `check_series`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from components.kinds.base import input_checks
from components.kinds.vector import Vector, fit_moments, is_number, moments, numeric


class Steps(NamedTuple):
    """The steps of a side's windows, each row once [rows, features], and the window length (a CSV's windows).

    The statistics (a global scale's mean and variance, validation's histograms) are those of the split's
    rows, as TFX Transform fits on rows: each row counts once, not once per window it falls in, and rows no
    window uses (a segment shorter than a window, the steps left out by `data.max_examples`) count too."""

    rows: np.ndarray
    length: int
    moments: dict[str, list[float]] | None = None  # computed already (`data.runner: beam`)


def reference(y_state: dict[str, Any], x: Any) -> Any:
    """The reference forecast [B, H, targets] read from raw inputs x [B, T, F] (TF op; numpy in is fine).

    `season`: the last H input steps of the target columns (seasonal naive, season = horizon);
    `last`: the last input value repeated H times.
    """
    import tensorflow as tf

    ref, horizon = y_state["reference"], y_state["length"]
    cols = tf.gather(tf.cast(x, "float32"), ref["columns"], axis=2)
    if ref["mode"] == "season":
        return cols[:, -horizon:, :]
    return tf.repeat(cols[:, -1:, :], horizon, axis=1)


def window_stats(spec: dict[str, Any], x: Any) -> tuple[Any, Any]:
    """Per-window location and scale [B, 1, C] of the raw input's target columns (TF op; NaN steps ignored)."""
    import tensorflow as tf

    cols = tf.gather(tf.cast(x, "float32"), spec["columns"], axis=2)
    valid = tf.logical_not(tf.math.is_nan(cols))
    count = tf.maximum(tf.reduce_sum(tf.cast(valid, "float32"), axis=1, keepdims=True), 1.0)
    mean = tf.reduce_sum(tf.where(valid, cols, 0.0), axis=1, keepdims=True) / count
    var = tf.reduce_sum(tf.where(valid, tf.square(cols - mean), 0.0), axis=1, keepdims=True) / count
    return mean, tf.sqrt(var + tf.constant(spec["floor"], "float32"))


def target_columns(x: dict[str, Any], y: dict[str, Any]) -> list[int] | None:
    """The input column of each target column, when both sides are series and x has every target column."""
    x_cols, y_cols = x.get("columns") or [], y.get("columns") or []
    if x["kind"] != "series" or y["kind"] != "series" or not y_cols or not set(y_cols) <= set(x_cols):
        return None
    return [x_cols.index(c) for c in y_cols]


def pairing(x: dict[str, Any], y: dict[str, Any]) -> str:
    """`this data maps x -> y` for the error messages of `target_columns` users."""
    return f"{x['kind']} {x.get('columns') or ''} -> {y['kind']} {y.get('columns') or ''}"


class Series(Vector):
    name = "series"
    sequence = True

    def type_ok(self, value: Any) -> bool:
        return isinstance(value, list) and all(
            isinstance(step, list) and all(is_number(v) or v is None for v in step) for step in value)

    def stats(self, present: list[Any], spec: dict[str, Any], lowercase: bool) -> dict[str, Any]:
        return {"lengths": [len(v) for v in present],
                **numeric([step for seq in present for step in seq], spec.get("columns"))}

    def fit(self, values: Any, state: dict[str, Any], data: Any, generated: bool) -> None:
        """From windows [n, steps, features], or from `Steps` (a CSV's rows once and the window length)."""
        if isinstance(values, Steps):
            fit_moments(values.moments or moments(values.rows), state)
            state["length"] = values.length
            return
        super().fit(values, state, data, generated)
        state["length"] = int(np.asarray(values, dtype="float64").shape[1])

    def encode(self, codec: Any, raw: Any, side: str) -> Any:
        import tensorflow as tf

        out = super().encode(codec, raw, side)
        spec = codec.state[side].get("window_scale") if side == "x" else None
        if not spec:
            return out
        raw = tf.cast(raw, "float32")  # the target columns in window units, the other features globally scaled
        loc, scale = window_stats(spec, raw)
        scaled = (tf.gather(raw, spec["columns"], axis=2) - loc) / scale
        where = {c: i for i, c in enumerate(spec["columns"])}
        features = codec.state[side]["features"]
        spread = tf.gather(scaled, [where.get(f, 0) for f in range(features)], axis=2)
        return tf.where(tf.constant([f in where for f in range(features)]), spread, out)

    def encode_targets(self, codec: Any, ys: list[Any], xs: list[Any] | None) -> np.ndarray:
        """Targets with a reference are encoded as their difference from the reference forecast of `xs`."""
        s = codec.y
        if not len(ys):
            return np.zeros((0, *codec.shape("y")), dtype="float32")
        values = np.asarray(ys, dtype="float32")
        if s.get("window_scale"):
            raw_x = np.asarray(xs, dtype="float32")
            loc, scale = window_stats(s["window_scale"], raw_x)
            base = reference(s, raw_x) if s.get("reference") else loc
            return ((values - np.asarray(base)) / np.asarray(scale)).astype("float32")
        if s.get("reference"):
            values = values - np.asarray(reference(s, np.asarray(xs, dtype="float32")))
        return np.asarray(codec.encode(values, "y"))

    def shape(self, state: dict[str, Any]) -> tuple[int, ...]:
        return (state["length"], state["features"])

    def input_signature(self, io_x: dict[str, Any], steps: int | None, name: str) -> Any:
        import tensorflow as tf

        return tf.TensorSpec([None, steps, io_x["features"]], tf.float32, name=name)

    def input_contract(self, codec: Any, cfg: Any, future: list[str] = ()) -> dict[str, Any]:
        """{"kind", "features", "min_steps", "max_steps" (None: no limit), "trained_steps", "padding"
        [, "columns": the input's last axis, in order, each a target, a `future` column or a feature]}."""
        x = codec.x
        window = int(x["length"])
        ref = codec.y.get("reference") or {}
        low = int(codec.y["length"]) if ref.get("mode") == "season" else 1
        fixed = cfg.unroll or (cfg.topology == "many_to_many" and bool(ref))
        inputs = {
            "kind": "series", "features": int(x["features"]), "trained_steps": window,
            "min_steps": window if fixed else min(low, window), "max_steps": window if fixed else None,
            "padding": "a step that is NaN in every feature is padding; padding steps come after the real "
                       "steps (right-padded) and are masked; every row needs min_steps real steps; "
                       "other NaN or infinite values are refused"}
        if x.get("columns"):
            targets = set(codec.y.get("columns") or [])
            inputs["columns"] = [{"name": str(c), "role": "target" if c in targets else
                                  "future" if c in future else "feature",
                                  "unit": (x.get("units") or {}).get(c, "")} for c in x["columns"]]
        return inputs

    def contract_lines(self, inputs: dict[str, Any]) -> list[str]:
        x = inputs
        most = "no upper limit" if x["max_steps"] is None else f"at most {x['max_steps']}"
        lines = [f"- Input windows: [batch, steps, {x['features']}] with at least {x['min_steps']} steps, {most} "
                 f"(trained on {x['trained_steps']}); {x['padding']}. Out of range: HTTP 400."]
        if x.get("columns"):
            lines.append("- Input columns (the last axis, in this order): " + ", ".join(
                f"{i}: `{c['name']}` ({c['role']}" + (f", {c['unit']})" if c["unit"] else ")")
                for i, c in enumerate(x["columns"])) + ".")
        return lines

    def checked_inputs(self, codec: Any, cfg: Any) -> Callable[[Any], tuple[Any, Any]]:
        contract = {"inputs": self.input_contract(codec, cfg)}  # (the columns' roles do not matter here)
        return lambda raw: check_series(raw, contract)

    def serve(self, model: Any, codec: Any, cfg: Any) -> Callable[[Any], dict[str, Any]]:
        return forecast(model, codec, cfg)  # with the named extra inputs (future values, series id)

    def window_header(self, targets: list[str], levels: list[float]) -> list[str]:
        return [col for name in targets for col in [name] + [f"{name}_q{q:g}" for q in levels]]

    def window_rows(self, out: dict[str, Any], i: int, lead: list[Any], time: Any, topology: str, data: Any,
                    frequency: str | None, levels: list[float]) -> list[list[Any]]:
        """One row per forecast step (many_to_many: the last step's value, `horizon` steps ahead)."""
        from components.ingestion.timeseries import later_times

        series = out["series"][i]  # [steps, targets]
        quantiles = out.get("quantiles")
        if topology == "many_to_many":  # each step's value `horizon` steps ahead: the last step's is past the end
            steps = [(data.horizon, series[-1], None if quantiles is None else quantiles[i][-1])]
        else:
            steps = [(k + 1, series[k], None if quantiles is None else quantiles[i][k]) for k in range(len(series))]
        times = later_times(time, frequency, max(s for s, _, _ in steps))
        rows = []
        for step, values, qs in steps:
            row = lead + [times[step - 1], step]
            for j, value in enumerate(values):
                row += [_num(value)] + ([_num(v) for v in qs[j]] if qs is not None and levels else [])
            rows.append(row)
        return rows

    evaluator = "forecast"


def check_series(raw: Any, contract: dict[str, Any]) -> tuple[Any, Any]:
    """Validate a raw series batch [B, T, F] against the contract; returns (it, real steps per row [B]).

    Raises InvalidArgumentError (TF) for: partial NaN steps, infinite values, padding before a real step, fewer
    than min_steps real steps in a row, more than max_steps steps.
    """
    import tensorflow as tf

    x = contract["inputs"]
    raw = tf.convert_to_tensor(raw, tf.float32)
    nan = tf.math.is_nan(raw)
    pad = tf.reduce_all(nan, axis=-1)
    lengths = tf.reduce_sum(tf.cast(~pad, tf.int32), axis=1)
    steps = tf.shape(raw)[1]
    checks = [
        (tf.reduce_all(tf.reduce_any(nan, -1) == pad),
         "inputs: a step is NaN in some features but not all; a padding step is NaN in every feature, "
         "missing values are not accepted"),
        (tf.reduce_all(~tf.math.is_inf(raw)), "inputs: infinite values are not accepted"),
        (tf.reduce_all(~pad == tf.sequence_mask(lengths, steps)),
         "inputs: padding (all-NaN) steps must come after the real steps of a row (right-padded)"),
        (tf.reduce_all(lengths >= x["min_steps"]),
         f"inputs: every row needs at least {x['min_steps']} real steps (this model's minimum; trained on "
         f"{x['trained_steps']})"),
    ]
    if x["max_steps"] is not None:
        checks.append((steps <= x["max_steps"], f"inputs: at most {x['max_steps']} steps (this model's maximum)"))
    deps = [tf.debugging.Assert(ok, [tf.constant(why)]) for ok, why in checks]
    with tf.control_dependencies(deps):
        return tf.identity(raw), lengths


def align_right(raw: Any, lengths: Any) -> Any:
    """Right-padded rows [B, T, F] -> the same rows with their real steps moved to the end (padding first)."""
    import tensorflow as tf

    steps = tf.shape(raw)[1]
    index = tf.math.floormod(tf.range(steps)[None, :] - (steps - lengths)[:, None], steps)
    return tf.gather(raw, index, batch_dims=1)


def _num(value: Any) -> float:
    return float(f"{float(value):.7g}")  # float32 precision, without the float64 digits


KIND = Series()


# --------------------------------------------------------------------------------------------
# Serving: the raw-in / raw-out function `serving_default` exports for a series target


def extra_signature(codec: Any, cfg: Any) -> list[Any]:
    """The TensorSpecs of the named inputs beside `inputs` (in this order): `future` float32 [B, H, n]
    (`data.future_columns`, seq2seq) and `series_id` string [B] (`model.id_embedding_dim`)."""
    import tensorflow as tf

    from components.kinds import io_spec
    from models.topologies import FUTURE, extra_names

    names = extra_names(cfg, io_spec(codec.state))
    specs = []
    if FUTURE in names:
        f = codec.state["future"]
        specs.append(tf.TensorSpec([None, f["length"], f["features"]], tf.float32, name=FUTURE))
    if "series_id" in names:
        specs.append(tf.TensorSpec([None], tf.string, name="series_id"))
    return specs


def check_future(raw: Any, codec: Any) -> Any:
    """The known future values [B, H, n]: finite numbers (InvalidArgumentError otherwise)."""
    import tensorflow as tf

    raw = tf.convert_to_tensor(raw, tf.float32)
    ok = tf.reduce_all(tf.math.is_finite(raw))
    why = (f"future: the known future values of {', '.join(codec.state['future']['columns'])} at each of the "
           f"{codec.state['future']['length']} horizon steps must be finite numbers")
    with tf.control_dependencies([tf.debugging.Assert(ok, [tf.constant(why)])]):
        return tf.identity(raw)


def forecast(model: Any, codec: Any, cfg: Any) -> Callable[[Any], dict[str, Any]]:
    """Raw inputs -> numbers in raw units (the model predicts normalised values).

    Series inputs: right-padded rows are right-aligned for the reference forecast (it reads the
    last real steps); per-step outputs (many_to_many) are NaN on padding steps.

    Outputs: `series` [batch, steps, targets]; a forecaster (many_to_one, many_to_many, seq2seq)
    also names one output per target column (the column name, made [A-Za-z0-9_]): [batch,
    steps], or one number per row when it forecasts a single step (many_to_one or seq2seq
    with horizon 1), so a scalar forecast comes back as a scalar, not [[[x]]]. With
    `model.quantiles` those are the median, and `quantiles` [batch, steps, targets, levels] holds
    every level (in the order of `model.quantiles`).
    """
    import re

    import tensorflow as tf

    check = input_checks(codec, cfg)
    named: dict[str, int] = {}
    if cfg.topology in ("many_to_one", "many_to_many", "seq2seq"):
        for j, column in enumerate(codec.y.get("columns") or []):
            key = re.sub(r"[^A-Za-z0-9_]+", "_", str(column)).strip("_")
            if not key or key[0].isdigit() or key in ("series", "quantiles") or key in named:
                key = f"target_{j}" + (f"_{key}" if key and key not in ("series", "quantiles") else "")
            named[key] = j
    scalar = cfg.topology != "many_to_many" and codec.y.get("length") == 1
    levels = list(cfg.quantiles)
    extra = [spec.name for spec in extra_signature(codec, cfg)]

    def fn(inputs: Any, *more: Any) -> dict[str, Any]:
        inputs, lengths = check(inputs)
        encoded = codec.encode(inputs, "x")
        if extra:  # the known future values and / or the series id, by name
            given = dict(zip(extra, more))
            encoded = {"inputs": encoded}
            if "future" in given:
                encoded["future"] = codec.encode_future(check_future(given["future"], codec))
            if "series_id" in given:
                encoded["series_id"] = codec.encode_ids(given["series_id"])
        values = model(encoded, training=False)  # series decoders are not autoregressive
        reference = inputs if lengths is None else align_right(inputs, lengths)
        quantiles = None
        if levels:  # [B, H, F, Q] in raw units; the median is the point forecast
            quantiles = codec.decode_quantiles(values, reference, len(levels))
            out = quantiles[..., levels.index(0.5)]
        else:
            out = tf.cast(codec.decode_series(tf.cast(values, "float32"), reference), "float32")
        if lengths is not None and cfg.topology == "many_to_many":
            real = tf.sequence_mask(lengths, tf.shape(out)[1])[..., None]
            out = tf.where(real, out, tf.constant(float("nan")))
            if quantiles is not None:
                quantiles = tf.where(real[..., None], quantiles, tf.constant(float("nan")))
        outputs = {"series": out}
        if quantiles is not None:
            outputs["quantiles"] = quantiles
        for key, j in named.items():
            outputs[key] = out[:, 0, j] if scalar else out[:, :, j]
        return outputs

    return fn
