"""Helpers every evaluator shares: the preprocessed rows and state, batched prediction, short
table cells, the token vocabulary, the accuracy-by-position plot and CSV tables.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from components import stage_files as files
from components.preprocessing import PAD

BATCH = 256


def _raw(preprocess: Any, split: str = "test") -> Sequence[dict[str, Any]]:
    return files.raw_examples(preprocess, split)


def _field(raw: Sequence[dict[str, Any]], key: str) -> Any:
    """One field of every example (None where one has none); a CSV's windows read it from the rows at once,
    not through a dict per window (`Examples.field`: numbers as an array)."""
    from components.ingestion.windows import Examples

    return raw.field(key) if isinstance(raw, Examples) else [r.get(key) for r in raw]


def _state(preprocess: Any) -> dict[str, Any]:
    return files.preprocessor_state(preprocess)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's encoded predictions on `x` (every model but a token generator: model(x))."""
    if not len(x["inputs"] if isinstance(x, dict) else x):
        return np.zeros((0,))
    return np.asarray(model.predict(x, batch_size=BATCH, verbose=0))


def _vocabulary(state: dict[str, Any], side: str = "y") -> list[str]:
    return [PAD, "[UNK]", *state[side]["vocabulary"]]


def accuracy_by_position(path: Path, correct: dict[str, np.ndarray], mask: np.ndarray, what: str) -> None:
    """Accuracy at each step (model and baseline), counting only unmasked steps."""
    from components.plots import figure

    counts = np.maximum(mask.sum(0), 1)
    with figure(path, f"{what} accuracy by position (test)") as ax:
        for name, hits in correct.items():
            ax.plot(np.arange(1, mask.shape[1] + 1), (hits & mask).sum(0) / counts, marker=".", label=name)
        ax.set_xlabel("position")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend()


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
