"""Typed stage artifacts: a directory plus an `artifact.json` written last, atomically.

A stage's output lives in `<runs_dir>/<pipeline>/<stage>/<fingerprint>/`. The directory is
built under a temporary name and renamed into place only once complete, so a directory that
exists with an `artifact.json` is always whole; a killed stage leaves only a `.tmp-*` folder,
which the next run removes. The fingerprint hashes the stage's sub-config, its input
fingerprints and the code version, so equal fingerprints mean reusable outputs (TFX caching).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

ARTIFACT_FILE = "artifact.json"
PACKAGES = ("pipeline", "components", "models")


@dataclass(frozen=True)
class Artifact:
    """What a stage produced: its type, where, its fingerprint and a few properties."""

    type: str
    uri: Path
    fingerprint: str
    properties: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0

    def path(self, *parts: str) -> Path:
        return self.uri.joinpath(*parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "fingerprint": self.fingerprint,
            "created": self.created,
            "properties": self.properties,
        }

    @classmethod
    def read(cls, uri: Path) -> Artifact:
        data = json.loads((uri / ARTIFACT_FILE).read_text())
        return cls(
            type=data["type"],
            uri=uri,
            fingerprint=data["fingerprint"],
            properties=data.get("properties", {}),
            created=data.get("created", 0.0),
        )


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the project's Python sources: any code change invalidates the cache."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def fingerprint(stage: str, config: Any, inputs: dict[str, Artifact]) -> str:
    """Hash of a stage's name, its sub-config, its input fingerprints and the code version."""
    payload = {
        "stage": stage,
        "config": config,
        "inputs": {k: v.fingerprint for k, v in sorted(inputs.items())},
        "code": code_version(),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def find(stage_dir: Path, fp: str) -> Artifact | None:
    """The complete artifact with this fingerprint, if one exists."""
    uri = stage_dir / fp
    return Artifact.read(uri) if (uri / ARTIFACT_FILE).is_file() else None


@contextlib.contextmanager
def stage_lock(stage_dir: Path, fp: str) -> Iterator[None]:
    """Serialise work on one fingerprint across processes (a second run waits, then reuses)."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    with open(stage_dir / f".{fp}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def building(stage_dir: Path, fp: str) -> Iterator[Path]:
    """A temporary directory that becomes `<stage_dir>/<fp>` only if the block succeeds."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    tmp = stage_dir / f".tmp-{fp}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def commit(tmp: Path, artifact_type: str, fp: str, properties: dict[str, Any]) -> Artifact:
    """Write artifact.json into `tmp`, fsync, and rename it to its final place."""
    final = tmp.parent / fp
    meta = {"type": artifact_type, "fingerprint": fp, "created": time.time(), "properties": properties}
    write_json(tmp / ARTIFACT_FILE, meta)
    if final.exists():  # stale incomplete leftover without artifact.json
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    return Artifact.read(final)


def clean_stale(stage_dir: Path) -> None:
    """Remove temporary folders left by killed processes."""
    if not stage_dir.is_dir():
        return
    for tmp in stage_dir.glob(".tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def write_text(path: Path, text: str) -> None:
    """Write a small text file atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
