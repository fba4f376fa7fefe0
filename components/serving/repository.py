"""The version repository: which models and versions are under the export base, what is loaded.

- The repository polls the base every `--poll-seconds` (TF Serving's
  file_system_poll_wait_seconds): a new version folder is loaded in the background and
  becomes the default once loaded (availability preserving: the old one answers meanwhile);
  a removed folder is unloaded. Each version is loaded once and cached (a few, LRU).
- Only numeric folders with a saved_model.pb directly under the base are served; names and
  versions from the URL are looked up in what the scan found, never joined into paths, so
  `..` or symlinks out of the base cannot reach other files.
- A request for a version that is still loading waits for it (bounded by the caller); a
  failed load is retried when its files change, else with a back-off. Error messages never
  show server paths.

`Servable` is one loaded version (its signatures, their batchers, what the export declares).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.serving.batcher import Batcher, BatchPolicy, Signature
from components.serving.protocol import ExportInfo, ServingError, scrub
from components.stage_files import version_number

MAX_LOADED = 3  # versions kept loaded per model (the latest always among them)


@dataclass
class Servable:
    """One loaded version of a model."""

    name: str
    version: int
    path: Path
    signatures: dict[str, Signature]
    signature_defs: dict[str, Any]
    policy: BatchPolicy
    info: ExportInfo = field(default_factory=ExportInfo)
    last_used: float = field(default_factory=time.monotonic)
    batchers: dict[str, Batcher] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, name: str, version: int, path: Path, policy: BatchPolicy) -> Servable:
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        signatures = {k: Signature.of(k, fn) for k, fn in loaded.signatures.items()}
        servable = cls(name, version, path, signatures, _signature_defs(path), policy, ExportInfo.read(path))
        servable._keep = loaded  # the functions' variables live as long as the servable
        return servable

    def batcher(self, signature: str) -> Batcher:
        with self.lock:
            if signature not in self.batchers:
                self.batchers[signature] = Batcher(self.signatures[signature], self.policy)
            return self.batchers[signature]

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.stop()


def _signature_defs(path: Path) -> dict[str, Any]:
    """The SignatureDefs of saved_model.pb as TF Serving's metadata JSON shows them."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    defs = proto.meta_graphs[0].signature_def
    return {k: json_format.MessageToDict(v, preserving_proto_field_name=True)
            for k, v in defs.items() if not k.startswith("__")}


# --------------------------------------------------------------------------------------------
# The repository: models, their version folders, what is loaded


@dataclass
class ModelEntry:
    """One served model: its base folder, the versions on disk, those loaded or failed."""

    name: str
    base: Path
    on_disk: dict[int, Path] = field(default_factory=dict)
    loaded: dict[int, Servable] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    loading: set[int] = field(default_factory=set)


@dataclass
class Retry:
    """When a failed load is tried again: at once when its files change, else after `wait` s."""

    fingerprint: tuple
    at: float
    wait: float


MAX_RETRY_WAIT = 60.0


class Repository:
    """Finds models and versions under a base folder and loads them once each.

    Loads run on a small loader pool, one at a time per version; requests wait for them
    (bounded by the caller) instead of holding a thread. A version whose load failed is tried
    again on the next poll when its files changed (e.g. it was still being copied in), else
    with a back-off doubling up to a minute. Unknown version numbers leave nothing behind.
    """

    def __init__(self, base: str | Path, model_name: str | None = None, policy: BatchPolicy | None = None,
                 max_loaded: int = MAX_LOADED, poll_seconds: float = 1.0):
        self.base = Path(base).resolve()
        if not self.base.is_dir():
            raise FileNotFoundError(f"export base {base} is not a folder (expected exports/<model>/ "
                                    f"holding numeric version folders)")
        self.model_name = model_name
        self.policy = policy or BatchPolicy()
        self.max_loaded = max_loaded
        self.poll_seconds = poll_seconds
        self.models: dict[str, ModelEntry] = {}
        self.lock = threading.RLock()
        self.loader = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="load")
        self.pending: dict[tuple[str, int], concurrent.futures.Future] = {}
        self.retries: dict[tuple[str, int], Retry] = {}
        self.refresh()

    # -- discovery ------------------------------------------------------------------------
    def _versions(self, base: Path) -> dict[int, Path]:
        found = {}
        try:
            entries = list(os.scandir(base))
        except OSError:
            return {}
        for entry in entries:
            name = entry.name
            if version_number(name) is None:
                continue
            try:
                if not entry.is_dir():
                    continue
                path = Path(entry.path)
                if not path.resolve().is_relative_to(self.base) or not (path / "saved_model.pb").is_file():
                    continue
            except OSError:
                continue
            found[int(name)] = path
        return found

    def _bases(self) -> dict[str, Path]:
        own = self._versions(self.base)
        if own or self.model_name:
            return {self.model_name or self.base.name: self.base}
        children = {}
        try:
            entries = sorted(os.scandir(self.base), key=lambda e: e.name)
        except OSError:
            entries = []
        for entry in entries:
            try:
                if entry.is_dir() and not entry.name.startswith(".") and self._versions(Path(entry.path)):
                    children[entry.name] = Path(entry.path)
            except OSError:
                continue
        return children or {self.base.name: self.base}

    def refresh(self) -> None:
        """Rescan the folders; forget versions whose folder is gone."""
        bases = self._bases()
        with self.lock:
            for name, base in bases.items():
                entry = self.models.setdefault(name, ModelEntry(name, base))
                entry.on_disk = self._versions(base)
                for version in [v for v in entry.loaded if v not in entry.on_disk]:
                    entry.loaded.pop(version).close()
                for version in [v for v in entry.failed if v not in entry.on_disk]:
                    entry.failed.pop(version)
                    self.retries.pop((name, version), None)
            for name in [n for n in self.models if n not in bases]:
                for servable in self.models.pop(name).loaded.values():
                    servable.close()
            live = {(n, v) for n, e in self.models.items() for v in e.on_disk}
            for key in [k for k in self.retries if k not in live]:
                self.retries.pop(key)

    # -- loading --------------------------------------------------------------------------
    def entry(self, name: str) -> ModelEntry:
        with self.lock:
            entry = self.models.get(name)
        if entry is None:
            raise ServingError(404, f"Servable not found for request: Latest({name})")
        return entry

    def _label(self, entry: ModelEntry, version: int) -> tuple[tuple[str, str], ...]:
        path = entry.on_disk.get(version)
        pairs = [(str(path), f"{entry.name}/{version}")] if path else []
        return (*pairs, (str(entry.base), entry.name), (str(self.base), "<export base>"))

    def start_load(self, name: str, version: int) -> concurrent.futures.Future:
        """A future for the loaded version (one load at a time per version; 404 if not on disk)."""
        entry = self.entry(name)
        with self.lock:
            if version in entry.loaded:
                done: concurrent.futures.Future = concurrent.futures.Future()
                done.set_result(entry.loaded[version])
                return done
            path = entry.on_disk.get(version)
            if path is None:
                raise ServingError(404, f"Servable not found for request: Specific({name}, {version})")
            key = (name, version)
            future = self.pending.get(key)
            if future is None:
                entry.loading.add(version)
                future = self.loader.submit(self._load, entry, version, path)
                self.pending[key] = future
            return future

    def _load(self, entry: ModelEntry, version: int, path: Path) -> Servable:
        key = (entry.name, version)
        fingerprint = _fingerprint(path)
        try:
            servable = Servable.load(entry.name, version, path, self.policy)
        except Exception as exc:  # noqa: BLE001 - a broken export is reported, not fatal
            message = scrub(f"{type(exc).__name__}: {exc}"[:2000], *self._label(entry, version))
            with self.lock:
                entry.loading.discard(version)
                entry.failed[version] = message
                old = self.retries.get(key)
                wait = min(MAX_RETRY_WAIT, old.wait * 2) if old else max(self.poll_seconds, 0.1)
                self.retries[key] = Retry(fingerprint, time.monotonic() + wait, wait)
                self.pending.pop(key, None)
            raise ServingError(404, f"Servable not found for request: Specific({entry.name}, {version}): "
                                    f"failed to load: {message}") from None
        with self.lock:
            entry.loading.discard(version)
            entry.failed.pop(version, None)
            self.retries.pop(key, None)
            self.pending.pop(key, None)
            if version in entry.on_disk:
                entry.loaded[version] = servable
                self._evict(entry)
        return servable

    def load(self, name: str, version: int) -> Servable:
        """Load one version and wait for it (concurrent callers share the same load)."""
        return self.start_load(name, version).result()

    def _evict(self, entry: ModelEntry) -> None:
        latest = max(entry.loaded)
        extra = sorted((s.last_used, v) for v, s in entry.loaded.items() if v != latest)
        while len(entry.loaded) > self.max_loaded and extra:
            entry.loaded.pop(extra.pop(0)[1]).close()

    def _due(self, name: str, version: int) -> bool:
        """Whether a failed version should be tried again now."""
        retry = self.retries.get((name, version))
        if retry is None:
            return True
        path = self.models[name].on_disk.get(version)
        return path is not None and (time.monotonic() >= retry.at or _fingerprint(path) != retry.fingerprint)

    def load_latest(self) -> None:
        """Load each model's newest version on disk if it is not loaded yet (a failed one again
        when it is due, see Retry)."""
        with self.lock:
            todo = [(e.name, max(e.on_disk)) for e in self.models.values()
                    if e.on_disk and max(e.on_disk) not in e.loaded
                    and (max(e.on_disk) not in e.failed or self._due(e.name, max(e.on_disk)))]
        futures = []
        for name, version in todo:
            try:
                futures.append(self.start_load(name, version))
            except ServingError:
                pass
        for future in futures:
            try:
                future.result()
            except ServingError:
                pass  # recorded in `failed`, shown by the status endpoint

    def cached(self, name: str, version: int | None) -> Servable | None:
        """The loaded version a request asks for (latest loaded by default), or None."""
        entry = self.entry(name)
        with self.lock:
            if version is None:
                if not entry.loaded and not entry.on_disk:
                    raise ServingError(404, f"Servable not found for request: Latest({name})")
                version = max(entry.loaded, default=None)
            servable = entry.loaded.get(version) if version is not None else None
        if servable is not None:
            servable.last_used = time.monotonic()
        return servable

    def wanted(self, name: str, version: int | None) -> concurrent.futures.Future:
        """A future for the version a request asks for (by default the newest on disk), loading
        it if needed; a version whose load failed and is not due again is a 404 at once."""
        entry = self.entry(name)
        with self.lock:
            if version is None:
                version = max(entry.on_disk, default=None)
                if version is None:
                    raise ServingError(404, f"Servable not found for request: Latest({name})")
            if version in entry.failed and version not in entry.loading and not self._due(name, version):
                raise ServingError(404, f"Servable not found for request: Specific({name}, {version}): "
                                        f"failed to load: {entry.failed[version]}")
        return self.start_load(name, version)

    def servable(self, name: str, version: int | None) -> Servable:
        """The version a request asks for, loading it (or, by default, the newest) if needed."""
        servable = self.cached(name, version)
        return servable if servable is not None else self.wanted(name, version).result()

    def status(self, name: str, version: int | None) -> dict[str, Any]:
        entry = self.entry(name)
        with self.lock:
            versions = sorted(set(entry.on_disk) | set(entry.loaded), reverse=True)
            if version is not None:
                if version not in versions:
                    raise ServingError(404, f"Servable not found for request: Specific({name}, {version})")
                versions = [version]
            rows = []
            for v in versions:
                if v in entry.loaded:
                    state, code, message = "AVAILABLE", "OK", ""
                elif v in entry.loading:
                    state, code, message = "LOADING", "OK", ""
                elif v in entry.failed:
                    state, code, message = "END", "UNKNOWN", entry.failed[v]
                else:
                    state, code, message = "START", "OK", ""
                rows.append({"version": str(v), "state": state,
                             "status": {"error_code": code, "error_message": message}})
        return {"model_version_status": rows}

    def poll(self, stop: threading.Event) -> None:
        """Rescan and load new versions every `poll_seconds` until `stop` is set (the poller thread)."""
        while not stop.wait(self.poll_seconds):
            try:
                self.refresh()
                self.load_latest()
            except Exception:  # noqa: BLE001, S110 - a scan error must not stop the poller
                pass

    def close(self) -> None:
        with self.lock:
            for entry in self.models.values():
                for servable in entry.loaded.values():
                    servable.close()
        self.loader.shutdown(wait=False, cancel_futures=True)


def _fingerprint(path: Path) -> tuple:
    """Changes when a version folder's files change (sizes and times of the top two levels)."""
    parts = []
    for where in (path, path / "variables"):
        try:
            for entry in sorted(os.scandir(where), key=lambda e: e.name):
                info = entry.stat(follow_symlinks=False)
                parts.append((entry.name, info.st_size, info.st_mtime_ns))
        except OSError:
            parts.append((str(where), None))
    return tuple(parts)

