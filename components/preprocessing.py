"""Preprocessing stage: fit vocabularies and normalisers on TRAIN only, encode every split.

inputs -> outputs: ingest, validate -> `preprocessor.json` (the fitted state), `io.json`
(shapes the model builder needs) and `<split>.npz` (encoded, right-padded arrays); for a CSV,
window starts and encoded targets beside its rows (`<split>.parquet`, fitted on each row once):
the inputs are cut from the rows and encoded where they are read: per batch in training's tf.data pipeline
(`window_cutter`), per chunk in `load_split` (`data.runner: beam`: preprocessing_beam.py).

`Codec` rebuilds Keras preprocessing layers (StringLookup, Normalization) from the fitted
state. The same layers encode the training data here and run inside the exported SavedModel,
so raw strings and raw numbers go in and raw labels, strings and numbers come out, with no
train/serve skew. Token ids: 0 = padding, 1 = unknown, then (for generated sequences)
2 = start, 3 = end, then the vocabulary in frequency order.

Encoded targets by kind: `label` -> class id; `labels` -> one class id per step; `tokens` ->
token ids + end token, right-padded (one_to_many / seq2seq), or, for a language model
(`language_model` in the spec), the next-token ids in the input's own vocabulary, aligned with
the input steps; `series` -> values normalised with the train mean/variance (the exported model
de-normalises). A numeric feature constant in train is centred but not scaled.

`data.scale: window` (RevIN-style, for trending series): the target columns of each input
window are normalised by that window's own mean and standard deviation (NaN padding ignored;
a floor of 1e-3 x the train variance keeps a flat window finite) and the targets are encoded in
the same window units, so the model sees levels relative to the window; `decode_series` inverts
it with the stats of the raw input. Other feature columns keep the train (global) scaling.

Known future values (`data.future_columns`, seq2seq): each window's `future` [horizon, columns]
is scaled with the train mean / variance of those columns (they are x columns too) and saved as
the `future` array; with `data.id_column` the series ids become the `series_id` array (1.. for
the train ids in sorted order, 0 for an id unseen in train), which `model.id_embedding_dim` reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from components import kinds
from components import stage_files as files
from components.artifacts import link_or_copy
from components.config import ConfigError, DataConfig
from components.ingestion import Windows, read_spec, read_split
from components.kinds import io_spec  # noqa: F401 - also public here
from components.kinds.series import Steps, pairing, reference, target_columns, window_stats
from components.kinds.tokens import END, PAD, START, UNK
from components.stage_files import SPLITS

CHUNK = 65_536  # windows encoded at a time (a CSV's windows: memory stays bounded by the rows)

__all__ = ["END", "PAD", "START", "UNK", "Codec", "fit_side", "io_spec", "load_split", "reference", "run"]


# --------------------------------------------------------------------------------------------
# Fitting (plain Python/NumPy, train split only)


def fit_side(values: list[Any], spec: dict[str, Any], data: DataConfig, generated: bool) -> dict[str, Any]:
    """Fitted state of one side (x or y) from its train values."""
    state: dict[str, Any] = dict(spec)
    kinds.of(spec).fit(values, state, data, generated)
    return state


def reference_spec(spec: dict[str, Any], data: DataConfig) -> dict[str, Any] | None:
    """Where the reference forecast of a numeric target comes from in x (`data.target_reference`)."""
    if data.target_reference == "none":
        return None
    columns = target_columns(spec["x"], spec["y"])
    if columns is None:
        raise ConfigError(
            f"data.target_reference={data.target_reference!r} needs numeric series targets whose columns are "
            f"also input columns (this data maps {pairing(spec['x'], spec['y'])}); "
            f"set data.target_reference=none.")
    return {"mode": data.target_reference, "columns": columns}


def window_spec(x_state: dict[str, Any], y_state: dict[str, Any], data: DataConfig) -> dict[str, Any] | None:
    """Which input columns are normalised per window (`data.scale: window`): the targets'.

    `auto` (the default) is `window` for a numeric forecast from a user CSV (`data.source: csv`,
    series targets among the inputs: it won on the forecasting benchmark, see the README) and
    `global` for everything else (bundled datasets, classifiers)."""
    columns = target_columns(x_state, y_state)
    if data.scale == "auto" and not (columns is not None and data.source == "csv"):
        return None
    if data.scale == "global":
        return None
    if columns is None:
        raise ConfigError(
            f"data.scale='window' needs numeric series targets whose columns are also input columns (this data "
            f"maps {pairing(x_state, y_state)}); set data.scale=global.")
    return {"columns": columns, "floor": [1e-3 * float(x_state["variance"][c]) for c in columns]}


# --------------------------------------------------------------------------------------------
# Codec: the fitted state as Keras layers / TF ops (used for training data and in the export)


class Codec:
    """Encodes raw inputs and targets, decodes model outputs, from a fitted state."""

    def __init__(self, state: dict[str, Any]):
        import keras

        self.state = state
        self.x, self.y = state["x"], state["y"]
        self.layers: dict[str, Any] = {}
        for side in ("x", "y"):
            self.layers.update(kinds.of(state[side]).layers(state[side], side))
        for name, layer in self.layers.items():  # built layers can be tracked by ExportArchive
            features = state[name.split("_")[0]].get("features")
            layer.build((None, features) if features else (None,))
        if state.get("future"):  # known future values: scaled like the same columns in x
            f = state["future"]
            self.layers["future"] = keras.layers.Normalization(mean=f["mean"], variance=f["variance"],
                                                               name="future_norm")
            self.layers["future"].build((None, f["features"]))
        if state.get("series_id"):  # series id -> 1.. in the train ids, 0 = an id never seen in train
            self.layers["series_id"] = keras.layers.StringLookup(
                vocabulary=state["series_id"]["vocabulary"], num_oov_indices=1, mask_token=None,
                name="series_id_lookup")
            self.layers["series_id"].build((None,))

    @classmethod
    def load(cls, artifact: Any) -> Codec:
        return cls(files.preprocessor_state(artifact))

    # -- TF graph ops (also traced into the SavedModel) -----------------------------------
    def tokenize(self, raw: Any, side: str) -> Any:
        """tf.string [B] -> dense tf.string [B, T] padded with '' (right-padded)."""
        import tensorflow as tf

        s = self.state[side]
        text = tf.strings.lower(raw, encoding="utf-8") if s.get("lowercase") else raw
        if s.get("tokenize", "char") == "char":
            parts = tf.strings.unicode_split(text, "UTF-8")
        else:
            parts = tf.strings.split(text)
        return parts.to_tensor(default_value=PAD)

    def encode(self, raw: Any, side: str = "x") -> Any:
        """Raw values of one side -> the model's input tensor."""
        return kinds.of(self.state[side]).encode(self, raw, side)

    def encode_future(self, raw: Any) -> Any:
        """Raw known future values [B, H, n] -> the model's `future` input (train scaling of those columns)."""
        import tensorflow as tf

        return tf.cast(self.layers["future"](tf.cast(raw, "float32")), "float32")

    def encode_ids(self, raw: Any) -> Any:
        """Series ids (strings [B]) -> int32 [B]: 1.. for train ids, 0 for an unseen id."""
        import tensorflow as tf

        return tf.cast(self.layers["series_id"](raw), "int32")

    def extra_arrays(self, examples: list[Any]) -> dict[str, np.ndarray]:
        """The `future` and `series_id` arrays of examples (x, y, meta) that this state encodes."""
        import tensorflow as tf

        out = {}
        if self.state.get("future"):
            f = self.state["future"]
            raw = np.asarray([e[2]["future"] for e in examples], dtype="float32").reshape(
                len(examples), f["length"], f["features"])
            out["future"] = np.asarray(self.encode_future(tf.constant(raw))) if len(raw) else raw
        if self.state.get("series_id"):
            ids = tf.constant([str(e[2].get("id", "")) for e in examples], dtype=tf.string)
            out["series_id"] = (np.asarray(self.encode_ids(ids)) if len(examples) else np.zeros((0,), "int32"))
        return out

    def class_names(self, side: str = "y") -> Any:
        import tensorflow as tf

        return tf.constant(self.state[side]["classes"])

    def token_names(self, side: str = "y") -> Any:
        import tensorflow as tf

        return tf.constant([PAD, UNK, *self.state[side]["vocabulary"]])

    def join_tokens(self, ids: Any, side: str = "y") -> Any:
        """int ids [B, T] -> strings [B], stopping at the end token, skipping pad/start."""
        import tensorflow as tf

        tokens = tf.gather(self.token_names(side), ids)
        keep = tf.cumsum(tf.cast(tf.equal(tokens, END), "int32"), axis=1) == 0
        keep &= tf.not_equal(tokens, PAD) & tf.not_equal(tokens, START)
        sep = "" if self.state[side].get("tokenize", "char") == "char" else " "
        return tf.strings.reduce_join(tf.ragged.boolean_mask(tokens, keep), axis=1, separator=sep)

    def denormalize(self, values: Any, side: str = "y") -> Any:
        return self.layers[f"{side}_invert"](values)

    def decode_series(self, values: Any, inputs: Any) -> Any:
        """Model outputs -> numeric targets in raw units (plus the reference forecast, if any)."""
        spec = self.y.get("window_scale")
        if spec:  # window units -> raw: times the window's scale, plus its mean (or the reference forecast)
            import tensorflow as tf

            loc, scale = window_stats(spec, inputs)
            base = reference(self.y, inputs) if self.y.get("reference") else loc
            return tf.cast(values, "float32") * scale + base
        out = self.denormalize(values, "y")
        return out + reference(self.y, inputs) if self.y.get("reference") else out

    def decode_quantiles(self, values: Any, inputs: Any, levels: int) -> Any:
        """Quantile outputs [B, H, F * Q] -> raw units [B, H, F, Q], sorted along Q (no crossing)."""
        import tensorflow as tf

        values = tf.cast(values, "float32")
        shape = tf.shape(values)
        per = tf.reshape(values, tf.concat([shape[:-1], [-1, levels]], 0))
        return tf.sort(tf.stack([self.decode_series(per[..., q], inputs) for q in range(levels)], axis=-1), axis=-1)

    # -- NumPy encoding of targets (training data only) -----------------------------------
    def encode_targets(self, ys: list[Any], xs: list[Any] | None = None) -> np.ndarray:
        """Raw y values -> training targets (class ids, token ids + end, normalised numbers).

        Numeric targets with a reference (`data.target_reference`) are encoded as their
        difference from the reference forecast read from the raw inputs `xs`.
        """
        return kinds.of(self.y).encode_targets(self, ys, xs)

    def shape(self, side: str) -> tuple[int, ...]:
        """The encoded shape of one example of a side (without the batch axis)."""
        return kinds.of(self.state[side]).shape(self.state[side])

    def encode_inputs(self, xs: list[Any]) -> np.ndarray:
        """Raw x values -> model inputs via the graph encoder, padded to the fitted length."""
        kind = kinds.of(self.x)
        if not xs:  # an empty split (e.g. data.val_fraction=0)
            return np.zeros((0, *self.shape("x")), dtype=kind.dtype)
        return kind.pad(np.asarray(self.encode(kind.raw_tensor(xs), "x")), self.x)


def values(split: Windows | list[Any], side: str) -> Any:
    """One side's raw values of a split: a CSV's windows [n, steps, features], else the examples' values."""
    if isinstance(split, Windows):
        return split.x() if side == "x" else split.y()
    return [e[0 if side == "x" else 1] for e in split]


def fit_values(split: Windows | list[Any], side: str, spec: dict[str, Any], moments: Any = None) -> Any:
    """What a side is fitted on: a CSV's numeric windows as `Steps` (each row once), else its values."""
    if isinstance(split, Windows) and spec[side]["kind"] == "series":
        return Steps(split.steps(side), split.length(side), moments)
    return values(split, side)


def extra_states(spec: dict[str, Any], x_state: dict[str, Any], train: Windows | list[Any]) -> dict[str, Any]:
    """The fitted state of the known future values (`data.future_columns`: the train mean / variance
    of those x columns) and of the series ids (`data.id_column`: the train ids, in sorted order)."""
    out: dict[str, Any] = {}
    if spec.get("future"):
        columns = list(spec["future"]["columns"])
        where = [list(x_state["columns"]).index(c) for c in columns]
        if isinstance(train, Windows):
            length = train.h
        else:
            length = len(train[0][2]["future"]) if train else int(spec["y"].get("length") or 1)
        out["future"] = {"kind": "series", "columns": columns, "features": len(columns), "length": length,
                         "mean": [x_state["mean"][i] for i in where],
                         "variance": [x_state["variance"][i] for i in where]}
    if isinstance(train, Windows):
        ids = sorted({str(i) for i in train.ids() or ()})
    else:
        ids = sorted({str(e[2]["id"]) for e in train if "id" in e[2]})
    if ids:
        out["series_id"] = {"vocabulary": ids}
    return out


def usable(examples: Windows | list, state: dict[str, Any]) -> tuple[Windows | list, int]:
    """Drop (and count) examples whose target class never occurs in train."""
    known = kinds.of(state["y"]).target_filter(state["y"])
    if known is None:
        return examples, 0
    if isinstance(examples, Windows):
        ok = examples.subset(np.array([known(y) for y in examples.y()], dtype=bool))
    else:
        ok = [e for e in examples if known(e[1])]
    return ok, len(examples) - len(ok)


def fit_residuals(train: list, spec: dict[str, Any], data: DataConfig, ref: dict[str, Any]) -> dict[str, Any]:
    """A numeric target fitted as its difference from the reference forecast, scaled but not centred: a
    model that outputs zero makes exactly the reference forecast (no train-period drift baked in)."""
    batches = (((train.y(i), train.x(i, "float32")) for i in chunks(len(train))) if isinstance(train, Windows)
               else [(values(train, "y"), values(train, "x"))])  # a CSV's windows: CHUNK at a time
    state, squares, count = None, 0.0, 0
    for y, x in batches:
        ys, xs = np.asarray(y, dtype="float64"), np.asarray(x, dtype="float32")
        if state is None:
            if ref["mode"] == "season" and ys.shape[1] > xs.shape[1]:
                raise ConfigError(f"data.target_reference='season' needs data.window >= data.horizon "
                                  f"(the input has {xs.shape[1]} steps, the target {ys.shape[1]}).")
            state = {**spec, "reference": ref, "length": ys.shape[1]}
        residuals = (ys - np.asarray(reference(state, xs))).reshape(-1, ys.shape[-1])
        squares, count = squares + (residuals ** 2).sum(axis=0), count + len(residuals)
    second = squares / max(count, 1)
    return state | {"mean": [0.0] * ys.shape[-1], "features": int(ys.shape[-1]),
                    "variance": np.where(second < 1e-8, 1.0, second).tolist()}


def run(inputs: dict, workdir: Path, ctx: Any, *, data: DataConfig) -> dict[str, Any]:
    """Fit on train, encode all splits, save the state and the arrays."""
    ingest = inputs["ingest"]
    spec = read_spec(ingest)
    from models.io import generates

    generated = generates(spec["topology"], spec["y"])
    train = read_split(ingest, "train", spec)
    if beam := data.runner == "beam" and bool(spec.get("windows")):  # fit and encode as Beam pipelines
        from components.preprocessing_beam import beam_encode, beam_moments
    fitted = beam_moments(ingest.path(files.rows_file("train")), spec["windows"], data) if beam else {}
    x_state = fit_side(fit_values(train, "x", spec, fitted.get("x")), spec["x"], data, generated=False)
    ref = reference_spec(spec, data)
    if spec["y"].get("language_model"):  # next-token targets share the input's vocabulary and length
        y_state = {**x_state, **spec["y"]}
    elif ref:
        y_state = fit_residuals(train, spec["y"], data, ref)
    else:
        y_state = fit_side(fit_values(train, "y", spec, fitted.get("y")), spec["y"], data, generated=generated)
    named = {str(c) for side in (x_state, y_state) for c in side.get("columns") or []}
    unknown = sorted(set(data.units) - named)
    if unknown:
        raise ConfigError(f"data.units names {', '.join(map(repr, unknown))}, not a column of this data "
                          f"(its columns: {', '.join(sorted(named)) or 'none'}).")
    if data.units:
        x_state["units"] = {c: data.units[c] for c in x_state.get("columns") or [] if c in data.units}
    window = window_spec(x_state, y_state, data)
    if window:
        x_state["window_scale"] = window
        y_state = {**y_state, "window_scale": window, "mean": [0.0] * y_state["features"],
                   "variance": [1.0] * y_state["features"]}
    state = {"x": x_state, "y": y_state, "topology": spec["topology"]}
    state.update(extra_states(spec, x_state, train))
    if spec.get("windows"):
        state["windows"] = spec["windows"]  # how `load_split` cuts x from the rows saved beside the arrays
    codec = Codec(state)
    dropped, on_beam = {}, {}  # on_beam: the splits' window starts, encoded by one Beam pipeline after the loop
    for split in SPLITS:
        examples, dropped[split] = usable(train if split == "train" else read_split(ingest, split, spec), state)
        if dropped[split]:
            ctx.log(f"{split}: {dropped[split]} examples have a target class unseen in train; left out")
        if isinstance(examples, Windows):  # the rows once, the windows' starts and their encoded targets
            link_or_copy(ingest.path(files.rows_file(split)), workdir / files.rows_file(split))
            if beam and len(examples):
                on_beam[split] = examples.starts
            else:
                np.savez(workdir / files.split_file(split), starts=examples.starts, **encode_windows(codec, examples))
            continue
        xs = [e[0] for e in examples]
        arrays = {"x": codec.encode_inputs(xs), "y": codec.encode_targets([e[1] for e in examples], xs),
                  **codec.extra_arrays(examples)}
        np.savez(workdir / files.split_file(split), **arrays)
        (workdir / files.raw_file(split)).write_text(  # x, y and any meta of the example (a series' id, time)
            "".join(json.dumps({"x": x, "y": y, **meta}, ensure_ascii=False) + "\n" for x, y, meta in examples))
    del train, examples  # the rows in memory: the split digests below read the files a column at a time
    if on_beam:
        paths = {split: ingest.path(files.rows_file(split)) for split in on_beam}
        for split, encoded in beam_encode(paths, on_beam, state, data).items():
            np.savez(workdir / files.split_file(split), starts=on_beam[split], **encoded)
    io = io_spec(state)
    io["frequency"] = ingest.properties.get("frequency")  # a series' time step (hourly, daily, ...) or None
    (workdir / files.PREPROCESSOR).write_text(json.dumps(state, indent=1, ensure_ascii=False))
    (workdir / files.IO).write_text(json.dumps(io, indent=2))
    sizes = {k: io[k].get("vocab_size", io[k].get("num_classes", io[k].get("features"))) for k in ("x", "y")}
    summary = f"x {io['x']['kind']}:{sizes['x']} -> y {io['y']['kind']}:{sizes['y']}"
    datasets = [{"file": files.split_file(split), "context": split, "name": f"{data.source}-{split}",
                 "digest": files.split_digest(workdir, split)} for split in SPLITS]
    return {"io": io, "dropped": dropped, "summary": summary, "log": {"datasets": datasets}}


# --------------------------------------------------------------------------------------------
# A CSV's windows: targets encoded in chunks here, inputs cut and encoded where they are read


def encode_windows(codec: Codec, windows: Windows) -> dict[str, np.ndarray]:
    """The encoded targets (and known future values, series ids) of a CSV's windows, CHUNK windows at a time."""
    import tensorflow as tf
    parts: dict[str, list[np.ndarray]] = {}
    reads_x = bool(codec.y.get("window_scale") or codec.y.get("reference"))
    for idx in chunks(len(windows)):
        out = {"y": codec.encode_targets(windows.y(idx), windows.x(idx, "float32") if reads_x else None)}
        if codec.state.get("future"):
            out["future"] = codec.encode_future(tf.constant(windows.future(idx), tf.float32))
        if codec.state.get("series_id"):
            out["series_id"] = codec.encode_ids(tf.constant(windows.ids(idx), tf.string))
        for key, value in out.items():
            parts.setdefault(key, []).append(np.asarray(value))
    return {key: np.concatenate(value) for key, value in parts.items()}


def load_split(preprocess: Any, split: str, limit: int | None = None, codec: Codec | None = None
               ) -> dict[str, np.ndarray]:
    """The encoded arrays of one split (`x`, `y`, and `future` / `series_id` where used), or its first `limit`
    examples; a CSV's inputs are cut from its rows and encoded here, CHUNK windows at a time (by `codec`, if the
    caller has one)."""
    arrays = {k: v[:limit] for k, v in files.load_arrays(preprocess, split).items()}
    starts = arrays.pop("starts", None)
    if starts is None:
        return arrays
    windows, codec = files.raw_windows(preprocess, split, starts=starts), codec or Codec.load(preprocess)
    x = [np.asarray(codec.encode(windows.x(idx, "float32"), "x"), "float32") for idx in chunks(len(starts))]
    return {"x": np.concatenate(x), **arrays}


def window_cutter(preprocess: Any, split: str, starts: np.ndarray, codec: Codec | None = None) -> Callable[[Any], Any]:
    """A CSV split's window starts [B] -> their encoded inputs, float32 [B, window, features]: gathered from the
    split's rows (held once, as a tensor) and encoded by the codec's graph ops. Training maps it over each
    batch in its tf.data pipeline, so memory grows with rows, not rows x window."""
    import tensorflow as tf

    windows = files.raw_windows(preprocess, split, starts=starts)
    codec = codec or Codec.load(preprocess)
    rows, steps = tf.constant(windows.x_rows()), tf.range(windows.w, dtype="int64")

    def cut(at: Any) -> Any:
        return tf.cast(codec.encode(tf.gather(rows, tf.cast(at, "int64")[:, None] + steps), "x"), "float32")

    return cut


def chunks(n: int) -> list[slice]:
    """CHUNK windows at a time; one empty slice for none (so arrays keep their shape)."""
    return [slice(lo, lo + CHUNK) for lo in range(0, max(n, 1), CHUNK)]
