"""Checks before any work starts: the folders a run writes to are writable and the tracking store answers.

The config schema itself (and the syntax of `tracking.uri`) is `components/config.py`; this is about the
machine the pipeline runs on, so it lives with the pipeline.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

from components.config import Config, ConfigError, _short, check_tracking_uri, redact_uri

STORE_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
REACH_TIMEOUT = 5.0  # seconds to reach a remote tracking store before giving up with a clear message


def reach_tracking_store(uri: str, key: str = "tracking.uri", timeout: float = REACH_TIMEOUT) -> None:
    """A remote store (http, databases) must answer a TCP connection within `timeout` s."""
    check_tracking_uri(uri, key)
    try:
        parts = urllib.parse.urlsplit(uri)
        host, port = parts.hostname, parts.port or STORE_PORTS.get(parts.scheme.split("+")[0].lower())
    except ValueError as exc:
        raise ConfigError(f"{key}={_short(redact_uri(uri))} is not a valid URI: {exc}.") from None
    if not host or not port:
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        if isinstance(exc, socket.timeout):
            reason = f"no answer within {timeout:g} s"
        else:
            reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{key}={redact_uri(uri)}: the tracking store at {host}:{port} cannot be reached "
                          f"({reason}). Start it, fix the URI (MLFLOW_TRACKING_URI wins over tracking.uri), "
                          f"or set tracking.enabled=false.") from None


def _writable_dir(path: str | Path, key: str) -> None:
    """`path` is a folder we can write, or can be created: its nearest existing ancestor is a
    writable folder (nothing is created here)."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{key}={_short(str(path))} is not a folder (a file is in the way).")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}={_short(str(path))} is not writable.")
        return
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}={_short(str(path))} cannot be created: {parent} is not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={_short(str(path))} cannot be created: {parent} is not writable.")


def check_places(config: Config, tracking_uri: str | None = None) -> None:
    """Before any work: the folders the run writes to are writable, the tracking store is reachable."""
    _writable_dir(config.runs_dir, "runs_dir")
    _writable_dir(config.export.dir, "export.dir")
    if not config.tracking.enabled:
        return
    uri = tracking_uri or config.tracking.uri
    key = "MLFLOW_TRACKING_URI" if tracking_uri and tracking_uri != config.tracking.uri else "tracking.uri"
    if uri.startswith("sqlite:///"):
        _writable_dir(Path(uri[len("sqlite:///"):]).parent, key)
    if "://" not in config.tracking.artifact_location:
        _writable_dir(config.tracking.artifact_location, "tracking.artifact_location")
    reach_tracking_store(uri, key)
