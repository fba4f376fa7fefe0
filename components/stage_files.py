"""The files stages hand each other: one name and one reader for each (TFX's typed artifacts).

A stage writes its output files under these names; a later stage, the tracker or a tool reads
them with these functions, so each file name between stages is written once, here. An output's
record (`artifact.json`: properties, manifest, digest) is pipeline/artifacts.py's.

| stage      | files                                                                    |
|------------|--------------------------------------------------------------------------|
| ingest     | `spec.json`, `<split>.jsonl` or (csv) `<split>.parquet`, `bad_rows.json`  |
| preprocess | `preprocessor.json`, `io.json`, `<split>.npz`, `<split>_raw.jsonl`, or    |
|            | (csv) `<split>.npz` (window starts, targets) + `<split>.parquet` (rows)   |
| train      | `model.keras`, `history.json`, `signature.json`, `input_example.npz`,    |
|            | `cudnn.md`                                                               |
| evaluate   | `samples.npz`, `blessing.json`, `metrics.json`                           |
| export     | `saved_model/`, `canary.json`                                            |
| infra_validate | `canary.json` (with the served answers)                              |
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation", "test")

SPEC = "spec.json"  # ingest: the data's kinds, sizes and topology
BAD_ROWS = "bad_rows.json"  # ingest: malformed rows (file:line), reported by validate
PREPROCESSOR = "preprocessor.json"  # preprocess: the fitted codec state
IO = "io.json"  # preprocess: the encoded inputs' and targets' shapes and kinds
MODEL = "model.keras"  # train: the trained Keras model
HISTORY = "history.json"  # train: per-epoch metrics {name: [epoch 0, epoch 1, ...]}
SIGNATURE = "signature.json"  # train: the MLflow signature of model.keras
INPUT_EXAMPLE = "input_example.npz"  # train: a few encoded input rows
CUDNN_REPORT = "cudnn.md"  # train: per-layer cuDNN eligibility (the export's model card quotes it)
SAMPLES = "samples.npz"  # evaluate: per-example results of the gate metrics (the champion's, later)
SAMPLES_RUN_FOLDER = "evaluation"  # where the tracker logs samples.npz in the MLflow run (the registry reads it)
BLESSING = "blessing.json"  # evaluate: the gate's decision and reasons
METRICS = "metrics.json"  # evaluate: the model's and every baseline's test metrics
SAVED_MODEL = "saved_model"  # export: the SavedModel folder infra_validate serves and push publishes
# The published export (exports/<name>/<version>/, TF Serving's layout): written by export and push,
# read by serving, `rnnpipe predict` and the registry.
MAX_VERSION_DIGITS = 18  # versions are int64 in TF Serving; a longer number is no version of ours
SERVING_CONTRACT = "assets.extra/serving_contract.json"  # what the signatures accept (TF Serving ignores it)
DATA_DESCRIPTION = "assets.extra/rnnpipe_data.json"  # how the data was read, for `rnnpipe predict`
CANARY = "canary.json"  # export, infra_validate: canary inputs and the in-process (and served) answers


def examples_file(split: str) -> str:
    """ingest: one {"x": ..., "y": ...} example per line."""
    return f"{split}.jsonl"


def rows_file(split: str) -> str:
    """ingest (csv): the rows of one split, once, columnar (windows are cut where they are read)."""
    return f"{split}.parquet"


def split_file(split: str) -> str:
    """preprocess: the encoded arrays `x`, `y` of one split."""
    return f"{split}.npz"


def raw_file(split: str) -> str:
    """preprocess: the examples of one split as read (x, y and meta such as a series' id and time)."""
    return f"{split}_raw.jsonl"


def _json(artifact: Any, name: str) -> Any:
    return json.loads(artifact.path(name).read_text())


def spec(ingest: Any) -> dict[str, Any]:
    """The ingest output's data spec (kinds, sizes, topology)."""
    return _json(ingest, SPEC)


def preprocessor_state(preprocess: Any) -> dict[str, Any]:
    """The fitted preprocessing state (the codec's vocabularies, scales, ...)."""
    return _json(preprocess, PREPROCESSOR)


def load_arrays(preprocess: Any, split: str) -> dict[str, Any]:
    """The arrays saved for one split (`components.preprocessing.load_split` gives the model's inputs)."""
    import numpy as np

    with np.load(preprocess.path(split_file(split))) as data:
        return {k: data[k] for k in data.files}


def raw_examples(preprocess: Any, split: str = "test", limit: int | None = None) -> Sequence[dict[str, Any]]:
    """The examples of one split as read, in the encoded arrays' order: {"x", "y"} and meta (id, time, future);
    a CSV's windows are cut from its rows at the saved starts as they are read (`Examples`)."""
    windows = raw_windows(preprocess, split, limit)
    if windows is not None:
        from components.ingestion.windows import Examples

        return Examples(windows)
    lines = preprocess.path(raw_file(split)).read_text().splitlines()
    return [json.loads(line) for line in lines[:limit]]


def raw_windows(preprocess: Any, split: str, limit: int | None = None, starts: Any = None) -> Any:
    """A CSV's windows of one split, or its first `limit` (`components.ingestion.windows.Windows`: raw
    arrays), else None; `starts`: the split's saved starts when the caller has read them already."""
    rows = preprocess.path(rows_file(split))
    if not rows.exists():
        return None
    from components.ingestion.windows import SeriesRows, Windows

    starts = (load_arrays(preprocess, split)["starts"] if starts is None else starts)[:limit]
    return Windows(SeriesRows.read(rows), preprocessor_state(preprocess)["windows"], starts)


def data_digest(preprocess: Any, split: str = "test") -> str:
    """A content hash of one encoded split: equal digests mean the same examples in the same order."""
    return split_digest(preprocess.path(), split)


def split_digest(folder: Path, split: str) -> str:
    """The content hash of an encoded split's arrays, and of a CSV's rows (see data_digest).

    The rows are hashed by their decoded columns, not the Parquet bytes (which name the writer's
    version and, with `data.runner: beam`, the shard layout), and a segment by where it changes (its
    numbers are per shard): the same rows give the same digest whichever runner or pyarrow wrote them.
    One array in memory at a time.
    """
    import numpy as np

    digest = hashlib.sha256()

    def add(name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        digest.update(f"{name}{array.dtype}{array.shape}".encode())
        if array.dtype.kind == "O":  # strings (series ids), a block at a time
            for lo in range(0, len(array), 1 << 16):
                digest.update("".join(f"{v}\x00" for v in array[lo:lo + (1 << 16)]).encode())
        else:
            digest.update(memoryview(array).cast("B") if array.size and array.dtype.kind not in "mM" else
                          array.tobytes())

    with np.load(Path(folder) / split_file(split)) as data:
        for key in sorted(data.files):
            add(key, data[key])
    rows = Path(folder) / rows_file(split)
    if rows.exists():
        from components.ingestion.windows import SeriesRows

        for name, values in SeriesRows.columns(rows):
            add(name, np.flatnonzero(np.diff(values)) if name == "segment" else values)
    return digest.hexdigest()[:16]


def model_file(train: Any) -> Path:
    """The trained Keras model's file."""
    return train.path(MODEL)


def history(train: Any) -> dict[str, list[float]]:
    """Per-epoch metrics of the training."""
    return _json(train, HISTORY)


def samples_file(evaluate: Any) -> Path | None:
    """The evaluation's per-example results, if it wrote them."""
    path = evaluate.path(SAMPLES)
    return path if path.is_file() else None


def saved_model(export: Any) -> Path:
    """The export output's SavedModel folder."""
    return export.path(SAVED_MODEL)


def canary(artifact: Any) -> dict[str, Any]:
    """Canary inputs and answers (`inputs`, `outputs`, `signature_name`; after infra validation `answers`)."""
    return _json(artifact, CANARY)


def write_canary(workdir: Path, canary: dict[str, Any]) -> None:
    (Path(workdir) / CANARY).write_text(json.dumps(canary, ensure_ascii=False))


def version_number(name: str) -> int | None:
    """A version folder's number: plain ASCII digits, at most MAX_VERSION_DIGITS (TF Serving's rule), else None."""
    return int(name) if name.isascii() and name.isdigit() and len(name) <= MAX_VERSION_DIGITS else None
