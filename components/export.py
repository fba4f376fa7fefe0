"""Export stage (TFX Pusher): a versioned SavedModel that takes raw inputs.

inputs -> outputs: preprocess, train, evaluate -> `exports/<name>/<version>/` (saved_model.pb +
variables/, as TF Serving expects; version = previous highest + 1, allocated under a lock and
written atomically) and, in the stage folder, `export.json` pointing at it.

The SavedModel's `serving_default` signature runs the fitted preprocessing layers, the model
and the decoding (argmax -> label, ...), so it answers raw strings and numbers with raw labels.
Only a blessed model is exported unless `export.require_blessing` is false.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from components.preprocessing import Codec
from pipeline.config import ExportConfig

INPUT_NAME = "inputs"


def input_signature(io_x: dict[str, Any]) -> Any:
    """The raw input TensorSpec for the x side (strings or float32)."""
    import tensorflow as tf

    kind = io_x["kind"]
    if kind in ("tokens", "category"):
        return tf.TensorSpec([None], tf.string, name=INPUT_NAME)
    if kind == "vector":
        return tf.TensorSpec([None, io_x["features"]], tf.float32, name=INPUT_NAME)
    return tf.TensorSpec([None, io_x.get("length"), io_x["features"]], tf.float32, name=INPUT_NAME)


def classify(model: Any, codec: Codec) -> Callable[[Any], dict[str, Any]]:
    """Raw inputs -> {label, probabilities}."""
    import tensorflow as tf

    def fn(inputs: Any) -> dict[str, Any]:
        probs = model(codec.encode(inputs, "x"), training=False)
        return {"label": tf.gather(codec.class_names(), tf.argmax(probs, -1)), "probabilities": probs}

    return fn


SERVERS: dict[str, Callable[[Any, Codec], Callable[[Any], dict[str, Any]]]] = {"label": classify}


def write_saved_model(model: Any, codec: Codec, io: dict[str, Any], path: Path) -> None:
    """Write a SavedModel with a raw-in/raw-out `serving_default` signature to `path`."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    for layer in codec.layers.values():
        archive.track(layer)
    fn = SERVERS[io["y"]["kind"]](model, codec)
    archive.add_endpoint(name="serving_default", fn=fn, input_signature=[input_signature(io["x"])])
    archive.write_out(str(path), verbose=False)


def next_version(base: Path) -> int:
    versions = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


def publish(build: Callable[[Path], None], base: Path) -> tuple[int, Path]:
    """Build into a temp dir, then rename to the next free version under an exclusive lock."""
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{os.getpid()}-{os.urandom(3).hex()}"
    try:
        build(tmp)
        with open(base / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            version = next_version(base)
            final = base / str(version)
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return version, final


def run(inputs: dict, workdir: Path, ctx: Any, *, export: ExportConfig, name: str) -> dict[str, Any]:
    """Export the blessed model as the next version under `export.dir/<name>/`."""
    import keras

    preprocess, train, evaluate = inputs["preprocess"], inputs["train"], inputs["evaluate"]
    if export.require_blessing and not evaluate.properties.get("blessed"):
        reason = "not blessed: " + "; ".join(evaluate.properties.get("reasons", []))
        return {"gate": False, "reason": reason, "summary": reason, "tags": {"exported": "false"}}
    model = keras.saving.load_model(train.path("model.keras"), safe_mode=True)
    codec = Codec.load(preprocess)
    io = preprocess.properties["io"]
    version, path = publish(lambda tmp: write_saved_model(model, codec, io, tmp), Path(export.dir) / name)
    ctx.log(f"SavedModel version {version} -> {path}")
    return {
        "path": str(path.resolve()),
        "base_path": str(path.parent.resolve()),
        "version": version,
        "tags": {"export_version": str(version), "exported": "true"},
        "summary": str(path),
    }
