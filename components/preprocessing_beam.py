"""`data.runner: beam` in preprocessing: the fit's moments and the targets' encoding, one Beam task per row shard.

The tasks call what the local path calls (`moments`, `encode_windows`) on one shard's rows; no
window crosses a shard (a shard holds whole series), and the parts come back in shard order.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from components.config import DataConfig
from components.ingestion import SeriesRows, Windows
from components.ingestion.windows import side_columns
from components.preprocessing import Codec, encode_windows


def beam_moments(path: Path, recipe: dict[str, Any], data: DataConfig) -> dict[str, Any]:
    """The train rows' moments of x (and numeric y) columns, per shard on Beam, merged in shard order."""
    from components.ingestion.beam import run_tasks, shard_files
    from components.kinds.vector import merge_moments

    sides = {side: columns for side, columns in side_columns(recipe).items() if side != "future"}
    parts = run_tasks([(str(file), sides) for file, _, _ in shard_files(path)], shard_moments, data)
    return {side: functools.reduce(merge_moments, [p[side] for p in parts]) for side in sides}


def shard_moments(item: tuple[str, dict[str, list[str]]]) -> dict[str, Any]:
    from components.ingestion.beam import shard_columns
    from components.kinds.vector import moments

    return {side: moments(shard_columns(item[0], cols)) for side, cols in item[1].items()}


def beam_encode(paths: dict[str, Path], starts: dict[str, np.ndarray], state: dict[str, Any], data: DataConfig
                ) -> dict[str, dict[str, np.ndarray]]:
    """`encode_windows` of every split's windows (their `starts` in its rows at `paths`), one Beam task per row
    shard, all in one pipeline (its workers start once, not once per split); each split's parts concatenated
    in shard order (no window crosses a shard)."""
    from components.ingestion.beam import run_tasks, shard_files

    items = [(split, (str(file), at[(at >= lo) & (at < lo + n)] - lo, state))
             for split, at in starts.items() for file, lo, n in shard_files(paths[split])]
    parts = run_tasks([item for _, item in items], shard_encode, data)
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for (split, _), part in zip(items, parts):
        for key, value in part.items():
            out.setdefault(split, {}).setdefault(key, []).append(value)
    return {split: {key: np.concatenate(values) for key, values in arrays.items()} for split, arrays in out.items()}


def shard_encode(item: tuple[str, np.ndarray, dict[str, Any]]) -> dict[str, np.ndarray]:
    path, starts, state = item
    return encode_windows(Codec(state), Windows(SeriesRows.read(Path(path)), state["windows"], starts))
