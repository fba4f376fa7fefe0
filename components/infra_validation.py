"""Infra-validation stage (TFX InfraValidator): the new export is served and answers correctly.

inputs -> outputs: export -> `canary.json` (requests, answers), `server.log`; the export's
path and version in the properties (the tracker registers a validated export).

The project's own server (`rnnpipe serve`) starts on the export base in a fresh process on a
free loopback port; once the new version is AVAILABLE, canary requests from the test split go
to `/v1/models/<name>/versions/<v>:predict` and the answers must equal those the in-memory
model gave at export time (strings exactly, numbers within 1e-4 + 1e-3 relative). A
`generate` signature must answer too. Any failure (the server does not start, the version does
not load, an error status, a different answer) raises InfraValidationError: the run FAILS and
the version folder is renamed `.invalid-<v>-<time>` so that no server loads it as the latest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import ExportConfig


class InfraValidationError(RuntimeError):
    """The exported model failed to load, to be served or to answer like the in-process model."""


def agree(expected: dict[str, Any], answered: dict[str, Any], atol: float = 1e-4, rtol: float = 1e-3) -> list[str]:
    """Names of outputs that differ between two answers."""
    bad = []
    for key in expected:
        x, y = np.asarray(expected[key]), np.asarray(answered.get(key) if isinstance(answered, dict) else None)
        if x.shape != y.shape:
            bad.append(key)
        elif x.dtype.kind in "fiu" and y.dtype.kind in "fiu":
            if not np.allclose(x, y, atol=atol, rtol=rtol):
                bad.append(key)
        elif not (x == y).all():
            bad.append(key)
    return bad


def wait_available(url: str, version: int, timeout: float = 120) -> None:
    """Poll the version status until AVAILABLE; a load failure (END) raises at once."""
    from components.serving import call

    deadline = time.monotonic() + timeout
    while True:
        status, body = call(f"{url}/versions/{version}", timeout=10)
        rows = body.get("model_version_status", []) if isinstance(body, dict) else []
        state = rows[0]["state"] if rows else None
        if state == "AVAILABLE":
            return
        if state == "END":
            raise InfraValidationError(f"version {version} failed to load in the server: "
                                       f"{rows[0]['status']['error_message']}")
        if time.monotonic() > deadline:
            raise InfraValidationError(f"version {version} not AVAILABLE after {timeout:g} s "
                                       f"(last status {status}: {body})")
        time.sleep(0.1)


def validate(base: str, name: str, version: int, canary: dict[str, Any], signatures: list[str],
             log_path: Path) -> dict[str, Any]:
    """Serve `base` in a fresh process, check version `version` against the canary answers."""
    from components.serving import ServerProcess, call

    server = ServerProcess(base, "--model-name", name, log_path=log_path)
    try:
        with server as root:
            url = f"{root}/v1/models/{name}"
            wait_available(url, version)
            status, body = call(f"{url}/versions/{version}:predict", {"inputs": canary["inputs"]})
            if status != 200:
                raise InfraValidationError(f"canary request answered {status}: {body}")
            outputs = body["outputs"]
            if not isinstance(outputs, dict):  # a single output comes back bare
                outputs = {next(iter(canary["outputs"])): outputs}
            mismatched = agree(canary["outputs"], outputs)
            if mismatched:
                raise InfraValidationError(f"served answers differ from the in-process model on {mismatched}: "
                                           f"expected {json.dumps(canary['outputs'])[:300]}, "
                                           f"got {json.dumps(outputs)[:300]}")
            if "generate" in signatures:
                meta = call(f"{url}/versions/{version}/metadata")[1]
                names = meta["metadata"]["signature_def"]["signature_def"]["generate"]["inputs"]
                settings = {"max_length": 8, "beam_width": 2, "temperature": 0.5}
                status, extra = call(f"{url}/versions/{version}:predict", {"signature_name": "generate", "inputs": {
                    "inputs": canary["inputs"][:2], **{k: v for k, v in settings.items() if k in names}}})
                if status != 200:
                    raise InfraValidationError(f"the generate signature answered {status}: {extra}")
    except RuntimeError as exc:
        if isinstance(exc, InfraValidationError):
            raise
        raise InfraValidationError(f"the server did not come up on {base}: {exc}") from None
    return outputs


def run(inputs: dict, workdir: Path, ctx: Any, *, export: ExportConfig) -> dict[str, Any]:
    """Serve the new export in a fresh process, send canaries, compare with in-process answers."""
    art = inputs["export"]
    props = art.properties
    canary = json.loads(art.path("canary.json").read_text())
    export_info = {k: props.get(k) for k in ("path", "base_path", "version", "blessed", "input_kind", "signatures")}
    if not export.infra_validate:
        (workdir / "canary.json").write_text(json.dumps(canary, ensure_ascii=False))
        return {"summary": "skipped (export.infra_validate=false)", "export": export_info}
    name, version = Path(props["base_path"]).name, int(props["version"])
    started = time.monotonic()
    try:
        answers = validate(props["base_path"], name, version, canary, props.get("signatures", ["serving_default"]),
                           workdir / "server.log")
    except InfraValidationError as exc:
        moved = quarantine(Path(props["path"]))
        raise InfraValidationError(f"{exc}\nThe export was moved to {moved} so no server picks it up; "
                                   f"fix the cause and rerun with --from export.") from None
    (workdir / "canary.json").write_text(json.dumps({**canary, "answers": answers}, ensure_ascii=False))
    seconds = time.monotonic() - started
    return {"summary": f"{len(canary['inputs'])} canaries answered identically by `rnnpipe serve` "
                       f"(version {version}, fresh process, {seconds:.1f}s)",
            "export": export_info, "tags": {"infra_validated": "true"}}


def quarantine(path: Path) -> Path:
    """Rename a failed version folder to a non-numeric name (servers only load numeric ones)."""
    target = path.with_name(f".invalid-{path.name}-{int(time.time())}")
    if path.is_dir():
        path.rename(target)
    return target
