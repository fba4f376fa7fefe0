"""Typed stage artifacts: a directory plus an `artifact.json` written last, atomically.

A stage's output lives in `<runs_dir>/<pipeline>/<stage>/<fingerprint>/`. The directory is
built under a temporary name and renamed into place only once complete, so a directory that
exists with an `artifact.json` is always whole; a killed stage leaves only a `.tmp-*` folder,
which the next run removes. The fingerprint hashes the stage's sub-config, its inputs' content
digests and the code version, so equal fingerprints mean reusable outputs (TFX caching), and a
rebuilt input with new content (a forced re-export) always invalidates what was built from it.

`artifact.json` records the size and SHA-256 of every file of the output (its `manifest`) and
a `digest` of that manifest; `verify` checks them before an output is reused, so a truncated
split or a deleted model file is reported by name and rebuilt, never used. An output may also
vouch for files it published elsewhere (`properties["published"]`: a folder and its digest).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
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
    manifest: dict[str, list[Any]] = field(default_factory=dict)
    digest: str = ""

    def path(self, *parts: str) -> Path:
        return self.uri.joinpath(*parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "fingerprint": self.fingerprint,
            "created": self.created,
            "properties": self.properties,
            "manifest": self.manifest,
            "digest": self.digest,
        }

    @classmethod
    def read(cls, uri: Path) -> Artifact:
        """Read an output's record; a missing, unreadable or malformed one raises DamagedArtifact."""
        path = uri / ARTIFACT_FILE
        try:
            data = json.loads(path.read_text())
            return cls(
                type=data["type"],
                uri=uri,
                fingerprint=data["fingerprint"],
                properties=data.get("properties", {}),
                created=data.get("created", 0.0),
                manifest=data.get("manifest", {}),
                digest=data.get("digest", ""),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DamagedArtifact(f"{path} is unreadable ({type(exc).__name__}: {str(exc)[:120]})") from None


class DamagedArtifact(RuntimeError):
    """A stage output whose record or files do not match what was committed."""


def file_manifest(root: Path, skip: tuple[str, ...] = (ARTIFACT_FILE,)) -> dict[str, list[Any]]:
    """Relative path -> [size, sha256] of every file under `root` (sorted; `skip` names left out)."""
    out: dict[str, list[Any]] = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in skip:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        out[rel] = [path.stat().st_size, digest.hexdigest()]
    return out


def manifest_digest(manifest: dict[str, list[Any]]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def dir_digest(root: Path, skip: tuple[str, ...] = ()) -> str:
    """The content digest of a folder (what `published` records and checks)."""
    return manifest_digest(file_manifest(root, skip))


def verify(artifact: Artifact) -> str | None:
    """Why a committed output can no longer be used (a file missing, resized or changed), else None."""
    current = file_manifest(artifact.uri)  # one read of every file
    for rel, (size, sha) in artifact.manifest.items():
        path = artifact.uri / rel
        if rel not in current:
            return f"{path} is missing"
        if current[rel][0] != size:
            return f"{path} has {current[rel][0]} bytes, {size} were written"
        if current[rel][1] != sha:
            return f"{path} changed after it was written"
    if manifest_digest(current) != artifact.digest:  # a file added, or an old output without a manifest
        extra = sorted(set(current) - set(artifact.manifest))
        return f"{artifact.uri / extra[0] if extra else artifact.uri} was not part of the committed output"
    published = artifact.properties.get("published")
    if published:
        folder = Path(published["path"])
        if not folder.is_dir():
            return f"the published folder {folder} is gone"
        if dir_digest(folder, tuple(published.get("skip", ()))) != published["digest"]:
            return f"the published folder {folder} changed after it was published"
    return None


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
        "inputs": {k: v.digest or v.fingerprint for k, v in sorted(inputs.items())},
        "code": code_version(),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def find(stage_dir: Path, fp: str) -> Artifact | None:
    """The complete, intact artifact with this fingerprint, if one exists.

    A damaged one (unreadable record, a file missing or changed) raises DamagedArtifact naming
    the file; the caller reports it and builds the output again.
    """
    uri = stage_dir / fp
    if not (uri / ARTIFACT_FILE).is_file():
        return None
    artifact = Artifact.read(uri)
    problem = verify(artifact)
    if problem:
        raise DamagedArtifact(problem)
    return artifact


def discard(stage_dir: Path, fp: str) -> None:
    """Remove a damaged output so that it is built again."""
    shutil.rmtree(stage_dir / fp, ignore_errors=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created, with its folder) across processes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stage_lock(stage_dir: Path, fp: str) -> contextlib.AbstractContextManager[None]:
    """Serialise work on one fingerprint across processes (a second run waits, then reuses)."""
    return file_lock(stage_dir / f".{fp}.lock")


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
    manifest = file_manifest(tmp)
    meta = {"type": artifact_type, "fingerprint": fp, "created": time.time(), "properties": properties,
            "manifest": manifest, "digest": manifest_digest(manifest)}
    write_json(tmp / ARTIFACT_FILE, meta)
    if final.exists():  # stale incomplete leftover without artifact.json
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_dir(final.parent)
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


def remove_orphans(folder: Path, prefix: str, unreadable: bool = False) -> list[str]:
    """Remove the entries `<prefix><pid>[-...]` of `folder` whose process is gone from this host (a kill -9 left
    them), and with `unreadable` those whose pid cannot be read; returns the names removed. The rule for every
    private temporary folder named by its maker's pid first (a stage's `.tmp-<fp>-<pid>` is `clean_stale`'s)."""
    import glob

    removed = []
    for path in Path(folder).glob(glob.escape(prefix) + "*"):
        pid = path.name[len(prefix):].split("-")[0]
        readable = re.fullmatch("[0-9]{1,10}", pid) is not None  # ASCII digits: int() takes "²"; kill() no 10**20
        if (not alive(int(pid))) if readable else unreadable:
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path.name)
    return removed


def alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such pid (or none that large)
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_or_copy(source: Path, target: Path) -> None:
    """A committed stage output never changes: share its file (a hard link), or copy across file systems;
    a folder is linked file by file."""
    if Path(source).is_dir():
        shutil.copytree(source, target, copy_function=link_or_copy)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
