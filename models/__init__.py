"""The RNN model zoo: every topology x every cell (see models/topologies.py).

Importing any `models` module registers the custom layers and metrics (package "rnnpipe"), so a
saved `model.keras` loads with `keras.saving.load_model(path, safe_mode=True)`; `load_model`
below does both.
"""

from __future__ import annotations

from typing import Any

from models import attention as _attention  # noqa: F401  (registers the custom layers)
from models import layers as _layers  # noqa: F401


def load_model(path: Any, compile: bool = True) -> Any:
    """A saved `.keras` model with the zoo's custom objects registered (safe_mode on)."""
    import keras

    return keras.saving.load_model(path, compile=compile, safe_mode=True)
