"""Training stage: build the model from models/, fit it on the encoded splits, save it.

inputs -> outputs: preprocess -> `model.keras`, `history.json`, `learning_curves.png`,
`cudnn.md` (per-layer cuDNN eligibility), `input_example.npz` and `signature.json` (for the MLflow signature).

A killed run resumes: Keras' BackupAndRestore keeps an epoch checkpoint in the stage's
scratch folder (stable per fingerprint), so the same command continues where it stopped
(checkpoints are spaced so that they cost about 1% of the training time; see `_atomic_backup`).
A NaN/Inf loss stops training at once with a clear error.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from components import faults
from components import stage_files as files
from components.config import ModelConfig, TrainConfig
from components.preprocessing import load_split, window_cutter


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


SHUFFLE_WINDOWS = 65_536  # the shuffle buffer of a split read shard by shard (`data.runner: beam`)
SHARDS_AT_ONCE = 4  # row shards read in turn by the interleave (memory: their rows)
BLOCK = 4_096  # windows cut from a shard's rows at a time


def make_dataset(inputs: Any, targets: Any, batch_size: int, *, shuffle: bool, seed: int,
                 cut: Callable[[Any], Any] | None = None, elements: Any = None) -> Any:
    """Arrays (or a dataset of `elements`) -> a shuffled, batched, prefetched tf.data pipeline.

    `cut` maps each batch's inputs to the model's: a CSV's windows stand as their starts and are cut from the
    split's rows and encoded per batch (memory grows with rows, not rows x window); other inputs are in
    memory already and are cached. `elements`: a split read shard by shard (`shard_elements`), shuffled
    within SHUFFLE_WINDOWS. Under a multi-worker strategy each worker reads its shard of every global batch.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((inputs, targets)) if elements is None else elements
    if cut is None:
        ds = ds.cache()
    if shuffle:
        buffer = len(targets) if elements is None else min(len(targets), SHUFFLE_WINDOWS)
        ds = ds.shuffle(max(buffer, 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if cut is not None:
        ds = ds.map(lambda x, y: (cut(x), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def split_dataset(preprocess: Any, split: str, model_cfg: ModelConfig, train: TrainConfig,
                  shuffle: bool = False) -> Any:
    """The tf.data pipeline of one encoded split, shaped for the topology (a CSV's windows cut per batch; a
    Beam split's read a row shard at a time)."""
    from models.build import model_inputs, training_data

    io = preprocess.properties["io"]
    arrays = files.load_arrays(preprocess, split)
    starts = arrays.pop("starts", None)

    def shaped(arrays: dict[str, Any]) -> tuple[Any, Any]:
        return training_data(model_cfg, io, model_inputs(model_cfg, io, arrays), arrays["y"])

    cut, elements = None, None
    if starts is not None:  # x stands as the window starts (or raw windows) until `cut` (x is "inputs" in a dict)
        elements = shard_elements(preprocess, split, starts, arrays, shaped)
        if elements is None:
            arrays["x"], window = starts, window_cutter(preprocess, split, starts)
        else:
            window = encoder(preprocess)

        def cut(inputs: Any) -> Any:
            return {**inputs, "inputs": window(inputs["inputs"])} if isinstance(inputs, dict) else window(inputs)
    inputs, targets = shaped(arrays) if elements is None else (None, arrays["y"])
    return make_dataset(inputs, targets, global_batch_size(train), shuffle=shuffle and train.shuffle,
                        seed=train.seed, cut=cut, elements=elements)


def encoder(preprocess: Any) -> Callable[[Any], Any]:
    """Raw input windows [B, window, features] -> the model's (the codec's graph ops)."""
    import tensorflow as tf

    from components.preprocessing import Codec

    codec = Codec.load(preprocess)
    return lambda raw: tf.cast(codec.encode(raw, "x"), "float32")


def shard_elements(preprocess: Any, split: str, starts: np.ndarray, arrays: dict[str, np.ndarray],
                   shaped: Callable[[dict[str, Any]], tuple[Any, Any]]) -> Any:
    """A split stored as row shards (`data.runner: beam`) as a tf.data interleave of its shards, SHARDS_AT_ONCE
    read in turn, each cutting its windows (raw, float32) from its own rows a BLOCK at a time, with their
    targets and other arrays, shaped by `shaped`; memory holds those shards' rows. None for one file."""
    import tensorflow as tf

    from components.ingestion.beam import shard_files
    from components.ingestion.windows import SeriesRows, Windows

    path = preprocess.path(files.rows_file(split))
    if not path.is_dir():
        return None
    spec = files.preprocessor_state(preprocess)["windows"]
    shards, keys = shard_files(path), sorted(arrays)
    bounds = [*np.searchsorted(starts, [lo for _, lo, _ in shards]).tolist(), len(starts)]  # windows per shard

    def read(k: int) -> Iterator[tuple[np.ndarray, ...]]:
        file, lo, _ = shards[k]
        first, last = bounds[k], bounds[k + 1]
        windows = Windows(SeriesRows.read(file), spec, starts[first:last] - lo)  # this shard's rows only
        for i in range(0, last - first, BLOCK):
            at = slice(first + i, min(first + i + BLOCK, last))
            yield (windows.x(slice(i, i + BLOCK), "float32"), *(arrays[key][at] for key in keys))

    signature = (tf.TensorSpec([None, spec["window"], len(spec["x"])], tf.float32),
                 *(tf.TensorSpec([None, *arrays[key].shape[1:]], arrays[key].dtype) for key in keys))
    ds = tf.data.Dataset.range(len(shards)).interleave(
        lambda k: tf.data.Dataset.from_generator(read, args=(k,), output_signature=signature),
        cycle_length=min(SHARDS_AT_ONCE, max(len(shards), 1)), deterministic=True)
    return ds.unbatch().map(lambda x, *rest: shaped({"x": x, **dict(zip(keys, rest))}))


def global_batch_size(train: TrainConfig) -> int:
    """`train.batch_size` per replica x the number of replicas in sync."""
    from components.cluster import strategy

    return train.batch_size * strategy(train.distribution).num_replicas_in_sync


@contextlib.contextmanager
def precision(policy: str) -> Iterator[None]:
    """Temporarily set the Keras mixed-precision policy."""
    import keras

    previous = keras.config.dtype_policy()
    if policy != "none":
        keras.config.set_dtype_policy(f"mixed_{policy}")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def optimizer(train: TrainConfig) -> Any:
    import keras

    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
               "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    return classes[train.optimizer](learning_rate=train.learning_rate, clipnorm=train.clipnorm)


def compiled_model(model_cfg: ModelConfig, train: TrainConfig, io: dict[str, Any]) -> Any:
    """Build and compile the model (inside the current distribution scope)."""
    from models.build import build_model, loss_and_metrics

    model = build_model(model_cfg, io)
    loss, metrics = loss_and_metrics(io, model_cfg)
    model.compile(optimizer=optimizer(train), loss=loss, metrics=metrics,
                  steps_per_execution=train.steps_per_execution, jit_compile=False)
    return model


def _atomic_backup(backup_dir: Path, save_every: float = 100.0) -> Any:
    """Keras BackupAndRestore whose checkpoint files are replaced atomically.

    Keras writes the weights file in place, so a kill -9 while it saves leaves a corrupt HDF5
    file that the next run cannot load. Here each file is written beside its final name and
    renamed over it, so a checkpoint on disk is always the last whole one.

    A checkpoint (an HDF5 file of every weight and optimizer slot) takes ~0.1 s even for a
    small model; after every short epoch that was 5-10% of the training time (bench/
    pipeline_overhead.py). So it saves after the first epoch, then at an epoch end only once
    the training since the last save took `save_every` x that save's duration: checkpoints
    cost <= ~1/save_every of the time, and a kill loses at most max(one epoch, save_every x
    one save) of work.
    """
    import os
    import time

    import keras

    class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
        _saved_at: float | None = None  # perf_counter() when the last save ended
        _save_seconds = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            if self._saved_at is not None:  # tests: kill -9 once an epoch is checkpointed and logged
                faults.point(faults.TRAIN_CHECKPOINTED)
            super().on_epoch_begin(epoch, logs)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self._current_epoch = epoch + 1
            self._last_batch_seen = 0
            now = time.perf_counter()
            if self._saved_at is None or now - self._saved_at >= save_every * self._save_seconds:
                self._save_model()
                self._saved_at = time.perf_counter()
                self._save_seconds = self._saved_at - now

        def _save_model(self) -> None:
            os.makedirs(self.backup_dir, exist_ok=True)
            tmp_weights = os.path.join(self.backup_dir, "saving.weights.h5")
            self.model.save_weights(tmp_weights, overwrite=True)
            os.replace(tmp_weights, self._weights_path)
            tmp_meta = self._training_metadata_path + ".saving"
            with open(tmp_meta, "w") as handle:
                json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, handle)
            os.replace(tmp_meta, self._training_metadata_path)

    return AtomicBackupAndRestore(str(backup_dir))


def _build_before_fit(net: Any, dataset: Any) -> None:
    """Build metrics/loss/optimizer state from one plain batch before a distributed fit.

    Under a tf.distribute strategy Keras 3.15's TF trainer builds these by pulling a batch off
    the *distributed* training iterator: that shifts the shuffled order by one batch, and under
    MultiWorkerMirroredStrategy its MEAN-reduce of integer token batches fails. Building here
    from an undistributed batch and skipping that step avoids both.
    """
    batch = next(iter(dataset))
    net._symbolic_build(data_batch=batch)
    net._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def _batch_guard() -> Any:
    import keras

    from components import stop

    class BatchGuard(keras.callbacks.Callback):
        """After every batch: stop for a signal whose first exception was lost (`components.stop`);
        raise as soon as the batch loss is NaN or infinite."""

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            stop.check()
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(float(loss)):
                raise TrainingDiverged(
                    f"training diverged: loss became {float(loss)} at batch {batch}; "
                    f"lower train.learning_rate or set train.clipnorm"
                )

    return BatchGuard()


def fit_callbacks(ctx: Any, train: TrainConfig, has_val: bool) -> list[Any]:
    """The stage's Keras callbacks: epoch checkpoints (resume), the epoch log, the NaN guard, the context's own
    (live MLflow metrics) and early stopping. Their per-step work (`bench.pipeline_overhead`'s `hooks_share`) is
    the stop and NaN checks."""
    import keras

    callbacks = [
        _atomic_backup(ctx.scratch / "backup"),
        keras.callbacks.CSVLogger(str(ctx.scratch / "epochs.csv"), append=True),
        _batch_guard(),
        *ctx.callbacks,
    ]
    if train.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss" if has_val else "loss", patience=train.early_stopping_patience,
            restore_best_weights=True))
    return callbacks


def read_epoch_log(path: Path) -> dict[str, list[float]]:
    """Per-epoch metrics from the CSV log, across resumes (a repeated epoch keeps its last row).

    Keras writes "NA" for metrics an epoch did not have (every val_* without a validation
    split): a column that is never a number is left out, a single gap becomes NaN.
    """
    import csv

    with path.open() as handle:
        rows = {int(r["epoch"]): r for r in csv.DictReader(handle)}

    def number(value: str | None) -> float:
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return float("nan")

    names = [k for k in next(iter(rows.values()), {}) if k != "epoch"]
    columns = {k: [number(rows[e].get(k)) for e in sorted(rows)] for k in names}
    return {k: v for k, v in columns.items() if not all(np.isnan(v))}


def _write_signature(net: Any, example: Any, path: Path) -> None:
    """The MLflow signature of `model.keras` (example in, the model's answer out), written while the model is
    in memory: one eager call on a few rows, so tracking logs the saved file without reloading, running
    and re-saving the model (issue 16)."""
    import keras
    from mlflow.models import infer_signature

    outputs = keras.tree.map_structure(np.asarray, net(example, training=False))
    path.write_text(json.dumps(infer_signature(example, outputs).to_dict()))


def run(inputs: dict, workdir: Path, ctx: Any, *, model: ModelConfig, train: TrainConfig) -> dict[str, Any]:
    """Fit the model; resumable after a kill; returns the final metrics."""
    import keras

    from components.cluster import strategy
    from components.plots import learning_curves
    from models import cudnn

    preprocess = inputs["preprocess"]
    io = preprocess.properties["io"]
    dist = strategy(train.distribution)  # before seeding: creating it may draw random ops
    keras.utils.set_random_seed(train.seed)
    if dist.num_replicas_in_sync > 1:
        ctx.log(f"{train.distribution}: {dist.num_replicas_in_sync} replicas, "
                f"global batch {global_batch_size(train)}")
    with precision(train.mixed_precision), dist.scope():
        net = compiled_model(model, train, io)
        report = cudnn.report(net)
        for line in cudnn.lines(report):
            ctx.log(line)
        train_ds = split_dataset(preprocess, "train", model, train, shuffle=True)
        val_ds = split_dataset(preprocess, "validation", model, train)
        has_val = len(files.load_arrays(preprocess, "validation")["y"]) > 0  # (no inputs encoded to count)
        if not has_val:
            ctx.log("warning: the validation split is empty (data.val_fraction=0, or series too short for a "
                    "window): training without validation (no val_loss; early stopping watches loss)")
        if (ctx.scratch / "backup").is_dir() and any((ctx.scratch / "backup").iterdir()):
            ctx.log("resuming from the last epoch checkpoint of an interrupted run")
        callbacks = fit_callbacks(ctx, train, has_val)
        if train.distribution != "none":
            _build_before_fit(net, split_dataset(preprocess, "train", model, train))
        net.fit(train_ds, validation_data=val_ds if has_val else None, epochs=train.epochs,
                shuffle=False,  # the tf.data pipeline shuffles (seeded, each epoch)
                callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
    hist = read_epoch_log(ctx.scratch / "epochs.csv")
    net.save(workdir / files.MODEL)
    (workdir / files.HISTORY).write_text(json.dumps(hist, indent=1))
    learning_curves(hist, workdir / "learning_curves.png")
    (workdir / files.CUDNN_REPORT).write_text(cudnn.markdown(report))
    from models.build import model_inputs, training_data

    head = load_split(preprocess, "train", limit=5)
    # teacher-forced models take two inputs; known future values / series ids ride along by name
    example, _ = training_data(model, io, model_inputs(model, io, head), head["y"])
    np.savez(workdir / files.INPUT_EXAMPLE, **(example if isinstance(example, dict) else {"inputs": example}))
    _write_signature(net, example, workdir / files.SIGNATURE)
    final = {f"final_{k}": v[-1] for k, v in hist.items() if v}
    eligible = cudnn.summary(report)
    return {
        "metrics": {**final, "epochs_trained": len(next(iter(hist.values()), []))},
        "tags": {"cudnn": eligible},
        "params": net.count_params(),
        "log": {"history": files.HISTORY,
                "keras_model": {"file": files.MODEL, "signature": files.SIGNATURE, "example": files.INPUT_EXAMPLE,
                                "tags": {"topology": model.topology, "cell": model.cell, "units": model.units}}},
        "summary": " ".join(f"{k}={v[-1]:.4f}" for k, v in hist.items()),
    }
