"""Plain config data and the tracking URI: dataclass -> dict, dotted keys, credentials masked, schemes checked.

Here live `to_plain` (a config's dataclasses -> JSON/YAML-ready dicts and lists), `flatten`
(nested dicts -> dotted keys, for MLflow params), `redact_uri` / `redacted` (a tracking URI's
user:password@ and secret-looking query values masked wherever a config is shown or logged) and
`check_tracking_uri` (the schemes MLflow can store runs with). They depend on no part of the
schema, so `components/config.py` (the schema) and `components/config_load.py` both use them;
all are re-exported from `components.config`.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import Any

from models.spec import ConfigError
from models.spec import short as _short

TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks",
                    "databricks-uc", "uc")


def to_plain(obj: Any) -> Any:
    """Dataclasses/tuples -> dicts/lists, recursively (JSON- and YAML-ready)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out



SECRET_QUERY = re.compile(r"(?i)(token|password|passwd|secret|key|credential|auth|sig|signature)")


def redact_uri(uri: str) -> str:
    """A URI with its user:password@ and secret-looking query values replaced by `***`."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={'***' if SECRET_QUERY.search(k) else v}" for k, v in pairs)
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redacted(data: dict[str, Any]) -> dict[str, Any]:
    """A plain config dict with the tracking URI's credentials masked."""
    tracking = data.get("tracking")
    if isinstance(tracking, dict) and isinstance(tracking.get("uri"), str):
        data = {**data, "tracking": {**tracking, "uri": redact_uri(tracking["uri"])}}
    return data


def check_tracking_uri(uri: str, key: str) -> None:
    """A tracking URI must be a path or use a scheme MLflow can store runs with."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", uri)
    if not match or len(match.group(1)) == 1:  # a plain path (or a Windows drive letter): a file store
        return
    scheme = match.group(1).lower().split("+")[0]
    if scheme not in TRACKING_SCHEMES:
        raise ConfigError(f"{key}={_short(redact_uri(uri))} has an unsupported scheme '{match.group(1)}:'. "
                          f"Allowed: a path or {', '.join(s + ':' for s in TRACKING_SCHEMES)} "
                          f"(e.g. sqlite:///mlruns/mlflow.db or http://127.0.0.1:5000).")
