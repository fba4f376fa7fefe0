"""The RNN model zoo: every topology x every cell (see models/topologies.py).

`spec` (ModelConfig, ConfigError) and `cells` (the cell registry) import no Keras; the modules
that build models do. Importing `models.layers` or `models.attention` (every module that builds
or reads a model does) registers the custom layers and metrics (package "rnnpipe"), so a saved
`model.keras` loads with `keras.saving.load_model(path, safe_mode=True)`; `load_model` below
does both. `models` imports nothing from `pipeline/` or `components/`.
"""

from __future__ import annotations

from typing import Any


def load_model(path: Any, compile: bool = True, cells: tuple[str, ...] | list[str] = ()) -> Any:
    """A saved `.keras` model with the zoo's custom objects registered (safe_mode on).

    `cells`: the custom cells (`module:Class`) the caller trusts, e.g. the run's `model.cell`; an
    archive naming any other custom cell is refused, so loading a file never imports a module it names.
    """
    import keras

    from models import attention as _attention  # noqa: F401  (registers the custom layers)
    from models import layers as _layers  # noqa: F401

    _register_custom_cells(path, tuple(cells))
    return keras.saving.load_model(path, compile=compile, safe_mode=True)


def _register_custom_cells(path: Any, trusted: tuple[str, ...]) -> None:
    """Import (and so register) the user cells (`module:Class`) a saved model holds, if `trusted` names them."""
    import json
    import zipfile

    from models import cells

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return  # not a .keras archive: let Keras say what is wrong
    todo = [config]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if str(node.get("registered_name", "")).startswith(cells.CUSTOM_PACKAGE) and node.get("module"):
                name = f"{node['module']}:{node['class_name']}"
                if name not in trusted:
                    raise ValueError(f"{path} holds the custom cell {name[:200]!r}, which the caller did not name "
                                     f"as trusted (load_model(cells=[...]), the run's model.cell): not imported")
                cells.get(name)
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
