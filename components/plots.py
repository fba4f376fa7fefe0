"""Small matplotlib helpers shared by the stages (headless Agg backend, one style)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@contextlib.contextmanager
def figure(path: Path, title: str, size: tuple[float, float] = (6.4, 4.2)) -> Iterator[Any]:
    """Yield an Axes; the figure is saved to `path` as PNG and closed."""
    fig, ax = plt.subplots(figsize=size, dpi=100)
    try:
        yield ax
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def learning_curves(history: dict[str, list[float]], path: Path) -> None:
    """Train/validation curves of every metric, one panel each."""
    names = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), dpi=100, squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = range(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label=f"train {name}")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label=f"val {name}")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def heatmap(matrix: Any, path: Path, title: str, xlabels: Sequence[str], ylabels: Sequence[str],
            xlabel: str = "", ylabel: str = "", annotate: bool = True) -> None:
    """A labelled heat map (confusion matrices, attention weights)."""
    import numpy as np

    matrix = np.asarray(matrix)
    size = (max(4.0, 0.45 * len(xlabels) + 2), max(3.5, 0.4 * len(ylabels) + 1.5))
    with figure(path, title, size) as ax:
        im = ax.imshow(matrix, cmap="Blues", aspect="auto")
        ax.set_xticks(range(len(xlabels)), labels=list(xlabels), rotation=90 if len(xlabels) > 12 else 0)
        ax.set_yticks(range(len(ylabels)), labels=list(ylabels))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if annotate and matrix.size <= 400:
            for (i, j), v in np.ndenumerate(matrix):
                text = f"{v:.2f}" if matrix.dtype.kind == "f" else str(v)
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if v > matrix.max() / 2 else "black")
        ax.figure.colorbar(im, ax=ax)
