"""`data.runner: beam`: a CSV's per-series ingest work as an Apache Beam pipeline (`pip install rnnpipe[beam]`).

The driver (this process) reads and checks the file as the local runner does (`load_csv`:
parsing, column types, bad rows, the time grid). The per-series work (each series placed on
its grid, filled, cut into gap-free segments, split by time) is `SeriesJob.run`, the very
function the local runner calls, applied by Beam to shards of consecutive series. Each shard
writes its rows per split as `part-<shard>.parquet`, so the ingest output's `<split>.parquet` is
a folder of shards, read back in shard order (= series order) as one table.

Beam's DirectRunner runs here with 2 worker processes (`direct_num_workers: 2`,
`direct_running_mode: multi_processing`); `data.beam_options` go to `PipelineOptions` as given
(e.g. `runner: FlinkRunner`, `flink_master: host:8081`), and `temp_location`, if set, is where the
shards and each task's input are written: on a cluster it must be storage every worker and this
process share.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from components.stage_files import SPLITS

from .timeseries import Counts

SEGMENT_SPAN = 1 << 40  # the segment numbers of shard k start at k * SEGMENT_SPAN: distinct across shards
DEFAULTS = {"runner": "DirectRunner", "direct_num_workers": 2, "direct_running_mode": "multi_processing"}


def check_options(options: dict[str, Any]) -> None:
    """`data.beam_options` before any work: Beam installed, every key a Beam pipeline option, a known runner."""
    import difflib

    from components.config import ConfigError

    try:
        from apache_beam.options.pipeline_options import PipelineOptions
        from apache_beam.runners.runner import create_runner
    except ImportError:
        raise ConfigError("data.runner='beam' needs Apache Beam: pip install 'rnnpipe[beam]'.") from None
    known = set(PipelineOptions(flags=[]).get_all_options(retain_unknown_options=False))
    for key in options:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"data.beam_options.{key} is not a Beam pipeline option"
                              + (f"; did you mean {near[0]!r}?" if near else "."))
    temp = options.get("temp_location")
    if temp is not None and not Path(str(temp)).is_dir():
        raise ConfigError(f"data.beam_options.temp_location={str(temp)!r} is not a folder (the shards are written "
                          f"there; on a cluster, storage every worker shares).")
    try:
        create_runner(str({**DEFAULTS, **options}["runner"]))
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"data.beam_options.runner: {str(exc).splitlines()[0]}") from None


class ShardedRows:
    """A split's rows, written as shards by the Beam workers; `write` moves the folder into place."""

    def __init__(self, folder: Path):
        self.folder = folder

    def write(self, path: Path) -> None:
        shutil.move(str(self.folder), str(path))
        with contextlib.suppress(OSError):  # the pipeline's folder, once its last split has moved
            self.folder.parent.rmdir()

    def discard(self) -> None:
        """Remove the pipeline's folder if a split is still in it (the stage failed before moving it)."""
        if self.folder.exists():
            shutil.rmtree(self.folder.parent, ignore_errors=True)


def private_folder(temp_location: Any, what: str) -> Path:
    """A new folder for this process's shards or task results, in `temp_location` (or the system's temporary
    folder), named `rnnpipe-beam-<host hash>-<pid>-<what>-*`; those that processes of this host left when
    killed (kill -9: no `finally` ran) are removed first. Other hosts' folders in a shared location are left
    alone (the host's name is hashed: no dash or glob character in it can make one host's prefix another's)."""
    import hashlib

    from components.artifacts import remove_orphans

    base = Path(str(temp_location)) if temp_location else Path(tempfile.gettempdir())
    prefix = f"rnnpipe-beam-{hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]}-"
    remove_orphans(base, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-{what}-", dir=base))


def shards(series: list[Any], n: int) -> list[list[Any]]:
    """Consecutive series in n shards of about equal rows (a shard is never empty unless there are no series)."""
    rows = np.cumsum([len(tt) for _, tt, _ in series])
    if not len(series):
        return [[]]
    bounds = np.searchsorted(rows, rows[-1] * np.arange(1, n) / n, side="right")
    cuts = sorted({0, *(int(b) for b in bounds if 0 < b < len(series)), len(series)})
    return [series[a:b] for a, b in zip(cuts, cuts[1:])]


def shard_task(item: tuple[int, list[Any], Any, str]) -> dict[str, Any]:
    """One Beam task: the rows of one shard of series, written per split; returns its counts."""
    k, series, job, out = item
    splits, counts = job.run(series, segment=k * SEGMENT_SPAN)
    for split, rows in splits.items():
        folder = Path(out) / split
        folder.mkdir(parents=True, exist_ok=True)
        rows.write(folder / f"part-{k:05d}.parquet")
    return counts.as_dict()


def run_series(series: list[Any], job: Any) -> tuple[dict[str, ShardedRows], Counts]:
    """Run `job` over shards of `series` on Beam; the sharded rows per split and the summed counts."""
    options = {**DEFAULTS, **job.data.beam_options}
    workers = int(options.get("direct_num_workers") or 1) if options["runner"] == "DirectRunner" else 8
    out = private_folder(options.get("temp_location"), "rows")
    try:
        parts = run_tasks([(k, shard, job, str(out)) for k, shard in enumerate(shards(series, 2 * workers))],
                          shard_task, job.data)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written shards left behind
        raise
    total = Counts(rows={s: 0 for s in SPLITS})
    for part in parts:
        for key, value in part.items():
            if key == "rows":
                total.rows = {s: total.rows[s] + value[s] for s in SPLITS}
            elif value is not None:
                setattr(total, key, getattr(total, key) + value)
    return {split: ShardedRows(out / split) for split in SPLITS}, total


# --------------------------------------------------------------------------------------------
# Validation statistics: each numeric column's parts and histogram, per shard, summed


def shard_columns(path: str, columns: list[str]) -> np.ndarray:
    """Some row columns of one shard as a float table [rows, columns] (what statistics and moments read)."""
    from components.kinds.vector import as_table

    from .windows import PREFIX, SeriesRows

    read = dict(SeriesRows.columns(Path(path), [PREFIX + c for c in columns] or ["segment"]))  # those columns only
    if not columns:
        return np.zeros((len(read["segment"]), 0))
    return as_table(np.stack([read[PREFIX + c] for c in columns], axis=1))


def _parts_task(item: tuple[str, list[str]]) -> dict[str, list[float]]:
    from components.kinds.vector import column_parts

    return column_parts(shard_columns(*item))


def _counts_task(item: tuple[str, list[str], list[Any]]) -> list[list[int]]:
    from components.kinds.vector import column_counts

    return column_counts(shard_columns(item[0], item[1]), item[2])


def column_stats(tables: dict[str, tuple[Path, list[str]]], data: Any) -> dict[str, tuple[Any, ...]]:
    """{key: (rows folder of shards, columns)} -> {key: (parts, counts, edges)}: two Beam passes over the
    shards (min / max / sums, then histograms between the merged min and max), the same functions as
    `numeric_columns`, merged here in shard order."""
    from components.kinds.vector import edges_of, merge_parts

    items = [(key, str(file), columns) for key, (folder, columns) in tables.items()
             for file, _, _ in shard_files(folder)]
    parts: dict[str, Any] = {}
    for (key, _, _), part in zip(items, run_tasks([(f, c) for _, f, c in items], _parts_task, data)):
        parts[key] = merge_parts(parts[key], part) if key in parts else part
    edges = {key: edges_of(p) for key, p in parts.items()}
    counts: dict[str, Any] = {}
    for (key, _, _), part in zip(items, run_tasks([(f, c, edges[k]) for k, f, c in items], _counts_task, data)):
        counts[key] = [[x + y for x, y in zip(a, b)] for a, b in zip(counts[key], part)] if key in counts else part
    return {key: (parts[key], counts[key], edges[key]) for key in tables}


# --------------------------------------------------------------------------------------------
# Any per-shard work: a Beam task per item, results back in item order


def _run_one(i: int, fn: Any, folder: str) -> int:
    """Task i: its item from `in-<i>.pkl`, its result to `out-<i>.pkl`, both in the pipeline's folder."""
    import pickle

    folder_path = Path(folder)
    result = fn(pickle.loads((folder_path / f"in-{i:06d}.pkl").read_bytes()))
    (folder_path / f"out-{i:06d}.pkl").write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    return i


def run_tasks(items: list[Any], fn: Any, data: Any) -> list[Any]:
    """`[fn(item) for item in items]` as a Beam pipeline (`fn` a module-level function: workers import it).

    Each item is written to the pipeline's folder (`temp_location`: storage the workers share) and Beam
    carries only its number: the pipeline graph stays a few bytes per task whatever the data (a runner
    such as Dataflow caps a job's graph; a DirectRunner encodes every element it creates).
    """
    import pickle

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    folder = private_folder(data.beam_options.get("temp_location"), "tasks")
    try:
        for i, item in enumerate(items):
            (folder / f"in-{i:06d}.pkl").write_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
        with beam.Pipeline(options=PipelineOptions(flags=[], **{**DEFAULTS, **data.beam_options})) as pipeline:
            _ = (pipeline | "items" >> beam.Create(list(range(len(items))))
                 | "work" >> beam.Map(_run_one, fn, str(folder)))
        done = [folder / f"out-{i:06d}.pkl" for i in range(len(items))]
        missing = [p.name for p in done if not p.is_file()]
        if missing:
            raise RuntimeError(f"the Beam pipeline left {len(missing)} of {len(items)} tasks undone")
        return [pickle.loads(p.read_bytes()) for p in done]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def shard_files(path: Path) -> list[tuple[Path, int, int]]:
    """A split's row shards: (file, first row in the whole table, rows), in table order."""
    import pyarrow.parquet as pq

    files = sorted(Path(path).glob("*.parquet")) if Path(path).is_dir() else [Path(path)]
    out, offset = [], 0
    for file in files:
        rows = pq.ParquetFile(file).metadata.num_rows
        out.append((file, offset, rows))
        offset += rows
    return out
