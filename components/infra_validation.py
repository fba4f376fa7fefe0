"""Infra-validation stage (TFX InfraValidator): the exported model is served and answers correctly.

inputs -> outputs: export -> `canary.json` (requests, answers), `server.log`; the validated
SavedModel's `content_hash` in the properties (what the push stage checks before publishing).

The export is not published yet: the project's own server (`rnnpipe serve`) runs in a fresh
process on a free loopback port over a private, empty model base (a temporary folder); this stage
links the export in as version 1 and, once the version is AVAILABLE, sends canary requests from
the test split to `/v1/models/<name>/versions/1:predict`; the answers must equal those the
in-memory model gave at export time (strings exactly, numbers within 1e-4 + 1e-3 relative). A
`generate` signature must answer too. Any failure (the server does not start, the version does
not load, an error status, a different answer) raises InfraValidationError and the run FAILS;
nothing was ever visible in the served base. The fingerprint follows the export's content, so
a new export is always validated again.

Off the critical path (issue 16): `prestart()` (the runner calls it when the train stage, or a
later one before this, starts building) launches that fresh server process on an empty private
base at a lower CPU priority (`PRESTART_NICE`), so its interpreter start and TensorFlow import
(~6 CPU-seconds) use the cycles training leaves idle instead of adding to the run's critical path;
`run()` then links the export in (`serve_candidate`) and waits for it to be AVAILABLE. Without a
prestarted server, or if it did not come up, it starts one the same way at normal priority, so
there is one path. The server is still a process that never saw another model, started for this
validation only (a sweep's trials each get their own: reusing one across trials would break that
guarantee); one that is not claimed (export cached or failed, a gate closed, Ctrl-C) is stopped by
`discard_prestarted()`, at once even while it is still starting, or dies with this process (kill -9);
its private folder is then removed by the next validation server this machine starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from components import faults
from components import stage_files as files
from components.config import ExportConfig
from components.serving import HeldServer, ServerProcess, call


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


CANDIDATE = "candidate"
POLL_SECONDS = "0.1"  # the validation server looks for the linked version this often
PRESTART_NICE = 19  # a prestarted server's CPU priority: the lowest (CFS weight 15 against training's 1024)
PRESTART_TIMEOUT = 900  # s: at that priority, on a machine training saturates, it starts slowly


class Prestarted(HeldServer):
    """A fresh `rnnpipe serve` on an empty private base (`base`, inside the private folder `home`),
    started now and held by a thread that lives as long as it (see components.serving.HeldServer:
    the parent-death signal fires when the spawning *thread* ends)."""

    def __init__(self, nice: int = 0, start_timeout: float = 180) -> None:
        _remove_orphaned_homes()
        self.home = Path(tempfile.mkdtemp(prefix=f"{HOME_PREFIX}{os.getpid()}-"))  # all its files are in here
        self.base = self.home / CANDIDATE
        self.base.mkdir()
        super().__init__(ServerProcess(self.base, "--model-name", CANDIDATE, "--poll-seconds", POLL_SECONDS,
                                       log_path=self.home / "server.log", nice=nice, start_timeout=start_timeout,
                                       tmp_dir=self.home),
                         name="infra-validation-server")

    def close(self) -> None:
        try:
            super().close()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)


HOME_PREFIX = "rnnpipe-infra-"  # + the pid of the process that made it


def _remove_orphaned_homes() -> None:
    """Remove the private folders of validation servers whose maker died (kill -9 during training): the
    server died with it (parent-death signal), its folder did not."""
    from components.artifacts import remove_orphans

    remove_orphans(Path(tempfile.gettempdir()), HOME_PREFIX)


_prestarted: list[Prestarted] = []  # at most one, claimed by the next infra_validate in this process


def prestart(config: Any, nice: int = PRESTART_NICE) -> None:
    """Start the validation server now, at a low priority, if infra validation will run (the runner calls
    this once per run, when training starts building)."""
    discard_prestarted()
    if config.export.infra_validate:
        _prestarted.append(Prestarted(nice=nice, start_timeout=PRESTART_TIMEOUT))


def discard_prestarted() -> None:
    """Stop a prestarted server nobody claimed (export cached or failed, gate closed, run over)."""
    while _prestarted:
        _prestarted.pop().close()


def serve_candidate(server: Prestarted, saved_model: Path, version: int = 1) -> str:
    """Link `saved_model` into the fresh server's empty base as `version`; its root URL.

    Linked under a non-numeric name, then renamed: the server never sees a half-linked version.
    """
    root = server.wait()
    staging = server.base / f".tmp-{version}"
    link_tree(Path(saved_model), staging)
    staging.rename(server.base / str(version))
    return root


def validate(server: Prestarted, saved_model: Path, canary: dict[str, Any], signatures: list[str],
             version: int = 1) -> dict[str, Any]:
    """Serve `saved_model` as `version` in the fresh `server`; check it against the canary answers."""
    try:  # a RuntimeError other than InfraValidationError below is the server failing, not the model
        url = f"{serve_candidate(server, saved_model, version)}/v1/models/{CANDIDATE}"
        wait_available(url, version)
        faults.point("infra_validate:serving")
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
        raise InfraValidationError(f"the validation server did not come up: {exc}") from None
    return outputs


def run(inputs: dict, workdir: Path, ctx: Any, *, export: ExportConfig) -> dict[str, Any]:
    """Serve the export in a fresh process, send canaries, compare with in-process answers."""
    art = inputs["export"]
    props = art.properties
    canary = files.canary(art)
    if not export.infra_validate:
        files.write_canary(workdir, canary)
        return {"summary": "skipped (export.infra_validate=false)", "validated": False,
                "content_hash": props["content_hash"]}
    started = time.monotonic()
    server = _prestarted.pop() if _prestarted else None
    prestarted = server is not None
    try:
        if server is not None:
            try:
                server.wait()
            except RuntimeError:  # it did not come up: one fresh try at normal priority says why, if it fails too
                server.close()
                server, prestarted = None, False
        server = server or Prestarted()
        answers = validate(server, files.saved_model(art), canary, props.get("signatures", ["serving_default"]))
    except InfraValidationError as exc:
        raise InfraValidationError(f"{exc}\nThe export {props['content_hash']} was not published; fix the cause "
                                   f"and rerun (the export stage builds it again).") from None
    finally:
        if server is not None:
            with contextlib.suppress(OSError):
                shutil.copyfile(server.home / "server.log", workdir / "server.log")
            server.close()
    files.write_canary(workdir, {**canary, "answers": answers})
    seconds = time.monotonic() - started
    how = "fresh process prestarted during training" if prestarted else "fresh process"
    sent = canary["inputs"]["inputs"] if isinstance(canary["inputs"], dict) else canary["inputs"]  # named inputs
    return {"summary": f"{len(sent)} canaries answered identically by `rnnpipe serve` "
                       f"({how}, {seconds:.1f}s)",
            "validated": True, "content_hash": props["content_hash"], "tags": {"infra_validated": "true"}}


def link_tree(source: Path, target: Path) -> None:
    """Copy a folder as hard links where the file system allows (no bytes copied), else as files."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, copy_function=link)
