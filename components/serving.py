"""TensorFlow Serving's REST API on the exported SavedModels: `rnnpipe serve EXPORT_BASE_DIR`.

inputs -> outputs: an export base (`exports/<name>/` holding numeric version folders, or a
folder of such bases) -> HTTP on 127.0.0.1:8501 (uvicorn + Starlette, one process).

Endpoints (as in TF Serving's g3doc/api_rest.md, so its clients work unchanged):

    GET  /v1/models/<name>[/versions/<v>]             version status
    GET  /v1/models/<name>[/versions/<v>]/metadata    signature_def of every signature
    POST /v1/models/<name>[/versions/<v>]:predict     {"instances": [...]} -> {"predictions": ...}
                                                      {"inputs": ...}      -> {"outputs": ...}
    GET  /monitoring/prometheus/metrics               responses by status; requests, batches and
                                                      rows per loaded signature (Prometheus text)

`signature_name` picks the signature (default `serving_default`); without a version the
latest loaded version answers. Strings may be sent as `{"b64": "..."}`. Errors come back as
`{"error": "..."}` with TF Serving's status codes: 400 malformed JSON, wrong shape or dtype,
both or neither of instances/inputs, NaN/Infinity, empty instances, JSON nested too deep,
unknown signature, a limit exceeded (`--max-rows`, `--max-elements`, `--max-string-bytes`,
`max_length` over `--max-generate-length`, rows x beam_width x max_length over
`--max-generate-tokens`, `beam_width` / `temperature` outside what the export accepts),
unparsable HTTP; 404 unknown model or version; 408 a body slower than
`--body-timeout`; 413 a body over `--max-request-bytes`; 503 a version still loading after
`--timeout` (or more than `--max-connections`); 504 inference past `--timeout`; 500 only for a
server bug. No request can stop the server, and no client input gets a 5xx (tests/test_hardening.py
fuzzes paths and bodies).

Bounded work: every body is checked (depth, number of values, rows, string sizes, generation
settings) before it becomes arrays, so a request that would fail alone fails before it can join
a batch (the same answer alone or batched; a merged batch that fails anyway is rerun request by
request). Connections: headers must arrive within `--header-timeout` (idle and trickling
clients are closed), bodies within `--body-timeout`, idle keep-alive ends after `--keep-alive`.

How it works:
- The repository polls the base every `--poll-seconds` (TF Serving's
  file_system_poll_wait_seconds): a new version folder is loaded in the background and
  becomes the default once loaded (availability preserving: the old one answers meanwhile);
  a removed folder is unloaded. Each version is loaded once and cached (a few, LRU).
- Only numeric folders with a saved_model.pb directly under the base are served; names and
  versions from the URL are looked up in what the scan found, never joined into paths, so
  `..` or symlinks out of the base cannot reach other files.
- A request for a version that is still loading waits for it up to `--timeout` (503 after;
  the status shows LOADING); a failed load is retried when its files change, else with a
  back-off. Error messages never show server paths. Exports that declare a contract
  (`assets.extra/serving_contract.json`) give class names (in /metadata and as `classes` in
  classifier answers) and the generate limits.
- Inference runs off the event loop, on one worker thread per (version, signature), so a long
  `generate` call never holds up `serving_default` (the timeout frees its caller). Requests
  that queue up while it is busy are merged into one batch (TF Serving's batching, with no
  added wait: a lone request runs at once) when the signature is row-independent, i.e.
  every output has a leading batch dimension and fixed other dimensions; others run alone.

Production path: the export base is exactly what the official TensorFlow Serving image
loads, so the same folder can be served by it unchanged, e.g.

    docker run -p 8501:8501 -v "$PWD/exports/names_gender_lstm:/models/names_gender_lstm" \\
        -e MODEL_NAME=names_gender_lstm tensorflow/serving
    # = tensorflow_model_server --rest_api_port=8501 --model_name=names_gender_lstm \\
    #       --model_base_path=/models/names_gender_lstm

(`--model_base_path` is the export base, without the version folder.) This server is the
dependency-free equivalent for development, CI and infra validation. Like TF Serving it has
no authentication: keep it on loopback (the default) or behind an authenticating proxy, and
serve only SavedModels you exported yourself (a SavedModel is a program).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

DEFAULT_SIGNATURE = "serving_default"
MAX_DEPTH = 32  # JSON nesting deeper than this is refused before any conversion
MAX_LOADED = 3  # versions kept loaded per model (the latest always among them)
PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                  r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$")
MAX_VERSION_DIGITS = 18  # versions are int64 in TF Serving; a longer number is no version of ours
MAX_BEAM_WIDTH = 64  # beam_width cap when the export does not declare one (model.beam_width's bound)
DEFAULT_GENERATE_LENGTH = 256  # max_length cap when neither --max-generate-length nor the export says
EXPORT_INFO = "assets.extra/serving_contract.json"  # what an rnnpipe export declares (components/export.py)
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"`:,;)\]]+/)+([^\s/'\"`:,;)\]]*)")


class ServingError(Exception):
    """A request that fails with an HTTP status and a TF-Serving-style message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ServingError:
    return ServingError(400, message)


def scrub(text: str, *known: tuple[str, str]) -> str:
    """An error text without absolute server paths: each known (path, label) pair is replaced
    by its label, any other absolute path by its last component."""
    for path, label in known:
        if path:
            text = text.replace(path, label)
    return ABSOLUTE_PATH.sub(lambda m: m.group(1) or "<path>", text)


def short(value: Any, limit: int = 60) -> str:
    """A bounded repr of a JSON value (never walks a huge or deep structure)."""
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# Signatures and loaded versions


@dataclass
class Signature:
    """One callable signature of a loaded SavedModel, with its input/output specs."""

    name: str
    fn: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    batchable: bool

    @classmethod
    def of(cls, name: str, fn: Any) -> Signature:
        inputs = dict(fn.structured_input_signature[1])
        outputs = dict(fn.structured_outputs)
        return cls(name, fn, inputs, outputs, _row_independent(outputs))

    def __call__(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            result = self.fn(**{k: tf.constant(v) for k, v in tensors.items()})
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError,
                tf.errors.FailedPreconditionError, ValueError, TypeError) as exc:
            text = getattr(exc, "message", None) or str(exc)
            text = scrub(text.strip().splitlines()[0][:2000]) if text.strip() else type(exc).__name__
            raise bad_request(text) from None
        return {k: v.numpy() for k, v in result.items()}


def _row_independent(outputs: dict[str, Any]) -> bool:
    """Rows can be merged and split again: a leading batch dim and fixed other dims."""
    for spec in outputs.values():
        dims = spec.shape.as_list() if spec.shape.rank is not None else None
        if not dims or dims[0] is not None or any(d is None for d in dims[1:]):
            return False
    return True


@dataclass
class BatchPolicy:
    """How requests are merged: at most `max_rows` rows; while more requests are on their way
    (`incoming()` > 0: arrived, not yet queued) wait up to `wait` seconds for them."""

    max_rows: int = 256
    wait: float = 0.002
    incoming: Callable[[], int] = lambda: 0


class Batcher:
    """Runs one signature on its own thread; requests queued meanwhile share one call.

    A lone request runs at once (no added latency); see BatchPolicy for the merging.
    """

    def __init__(self, signature: Signature, policy: BatchPolicy):
        self.signature = signature
        self.max_rows = policy.max_rows
        self.wait, self.incoming = policy.wait, policy.incoming
        self.jobs: collections.deque = collections.deque()
        self.cond = threading.Condition()
        self.stopped = False
        self.stats = {"requests": 0, "batches": 0, "rows": 0}
        self.thread = threading.Thread(target=self._loop, name=f"infer-{signature.name}", daemon=True)
        self.thread.start()

    def submit(self, tensors: dict[str, np.ndarray], rows: int | None, key: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self.cond:
            self.jobs.append((tensors, rows, key, future))
            self.cond.notify()
        return future

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify()

    def _take(self) -> list[tuple] | None:
        with self.cond:
            while not self.jobs and not self.stopped:
                self.cond.wait()
            if self.stopped and not self.jobs:
                return None
            first = self.jobs.popleft()
            batch, rows = [first], first[1] or 0
            if first[2] is None or not self.signature.batchable:
                return batch
            deadline = time.monotonic() + self.wait
            while True:
                keep = collections.deque()
                while self.jobs:
                    job = self.jobs.popleft()
                    if job[2] == first[2] and rows + job[1] <= self.max_rows:
                        batch.append(job)
                        rows += job[1]
                    else:
                        keep.append(job)
                self.jobs = keep
                left = deadline - time.monotonic()
                if left <= 0 or rows >= self.max_rows or keep or self.incoming() <= 0:
                    return batch
                self.cond.wait(left)

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            batch = [job for job in batch if job[3].set_running_or_notify_cancel()]  # timed out: skip
            if not batch:
                continue
            self.stats["requests"] += len(batch)
            self.stats["batches"] += 1
            self.stats["rows"] += sum(job[1] or 0 for job in batch)
            if len(batch) == 1:
                self._run_alone(batch[0])
                continue
            try:
                merged = {k: np.concatenate([job[0][k] for job in batch]) for k in batch[0][0]}
                out = self.signature(merged)
            except BaseException:  # noqa: BLE001 - one bad request must not fail the others: each alone
                for job in batch:
                    self._run_alone(job)
                continue
            start = 0
            for _, rows, _, future in batch:
                future.set_result({k: v[start:start + rows] for k, v in out.items()})
                start += rows

    def _run_alone(self, job: tuple) -> None:
        try:
            job[3].set_result(self.signature(job[0]))
        except BaseException as exc:  # noqa: BLE001 - the waiting request gets the error
            if not job[3].done():
                job[3].set_exception(exc)


@dataclass(frozen=True)
class ExportInfo:
    """What an rnnpipe export declares about itself (`assets.extra/serving_contract.json`,
    written by components/export.py; TF Serving ignores the folder).

    classes: class names in the order of the `probabilities` output (classifiers);
    max_length: the largest `max_length` its `generate` signature accepts; default_length: what
    it generates by default; max_beam_width: the largest `beam_width`; token_input: the input is
    text that must hold at least one token. An export without the file (other SavedModels)
    declares nothing and the server's defaults apply; one with only a model card is an older
    rnnpipe export (text inputs are taken as token sequences).
    """

    rnnpipe: bool = False
    classes: tuple[str, ...] = ()
    max_length: int | None = None
    default_length: int | None = None
    max_beam_width: int | None = None
    token_input: bool = False
    columns: tuple[tuple[str, str, str], ...] = ()  # a series input's columns in order: (name, role, unit)

    @classmethod
    def read(cls, path: Path) -> ExportInfo:
        try:
            data = json.loads((path / EXPORT_INFO).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict):
            old = (path / "model_card.md").is_file()
            return cls(rnnpipe=old, token_input=old)

        def whole(value: Any) -> int | None:
            return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

        generate = data.get("generate") if isinstance(data.get("generate"), dict) else {}
        inputs = data.get("inputs") if isinstance(data.get("inputs"), dict) else {}
        classes = data.get("classes") if isinstance(data.get("classes"), list) else []
        return cls(rnnpipe=True, classes=tuple(str(c) for c in classes),
                   max_length=whole(generate.get("max_length")), default_length=whole(generate.get("default_length")),
                   max_beam_width=whole(generate.get("max_beam_width")), token_input=inputs.get("kind") == "tokens",
                   columns=tuple(tuple(str(c.get(k, "")) for k in ("name", "role", "unit"))
                                 for c in inputs.get("columns") or [] if isinstance(c, dict)))

    def generate_length(self, flag: int | None) -> int:
        """The largest max_length served: --max-generate-length, else 4x the export's default
        length (about 4x its longest training target), else DEFAULT_GENERATE_LENGTH; never above
        what the export accepts."""
        wanted = flag or (4 * self.default_length if self.default_length else None) or DEFAULT_GENERATE_LENGTH
        return min(wanted, self.max_length) if self.max_length else wanted

    def describe(self, limits: Limits) -> dict[str, Any]:
        """Extra /metadata fields: class names in output order, the generate limits."""
        out: dict[str, Any] = {}
        if self.classes:
            out["classes"] = list(self.classes)
        if self.columns:  # the input's last axis, in order, with units
            out["input_columns"] = [dict(zip(("name", "role", "unit"), c)) for c in self.columns]
        out["limits"] = {"max_rows": limits.max_rows, "max_elements": limits.max_elements,
                         "max_string_bytes": limits.max_string_bytes,
                         "max_generate_length": self.generate_length(limits.max_generate_length),
                         "max_beam_width": self.max_beam_width or MAX_BEAM_WIDTH,
                         "max_generate_tokens": limits.max_generate_tokens}
        return out


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
            if not (name.isascii() and name.isdigit() and len(name) <= MAX_VERSION_DIGITS):
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


# --------------------------------------------------------------------------------------------
# Request decoding: JSON -> validated NumPy arrays per signature input


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one request may ask for (the `rnnpipe serve` flags of the same names).

    max_rows: rows (instances, or the batch dimension of columnar inputs); max_elements: JSON
    values in the whole body (list items and object members); max_string_bytes: UTF-8 bytes of
    one string input; max_generate_length: the largest `max_length` of a generate signature
    (None: what the export declares, else DEFAULT_GENERATE_LENGTH); max_generate_tokens: rows x
    beam_width x max_length of one generate call (the decoding work a request may ask for).
    """

    max_rows: int = 10_000
    max_elements: int = 1_000_000
    max_string_bytes: int = 4096
    max_generate_length: int | None = None
    max_generate_tokens: int = 200_000


def _reject_constant(name: str) -> Any:
    raise bad_request(f"JSON Parse error: {name} is not a number (NaN and Infinity are not allowed)")


def parse_body(body: bytes, limits: Limits = Limits()) -> dict[str, Any]:
    """Bytes -> the request object, with NaN/Infinity, too-deep nesting and too many values refused."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise bad_request(f"JSON Parse error: nested too deep (more than {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise bad_request(f"JSON Parse error: {str(exc)[:300]}") from None
    if not isinstance(data, dict):
        raise bad_request("JSON Parse error: the request body must be a JSON object")
    _check_structure(data, limits)
    return data


def _check_structure(data: Any, limits: Limits) -> None:
    """Depth and number of values of the whole body, walked without recursion, so nothing later
    (NumPy, comparisons, error messages) can recurse deeply or work on an unbounded body."""
    stack = [(data, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH + 2:  # + the body object and a named instance
            raise bad_request(f"JSON Parse error: nested too deep (more than {MAX_DEPTH} levels)")
        count += len(value)
        if count > limits.max_elements:
            raise bad_request(f"the request holds more than {limits.max_elements} JSON values (--max-elements)")
        items = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in items if isinstance(v, (list, dict)))


def _depth(value: Any, limit: int) -> int:
    """Nesting depth along first elements (a cheap guard before NumPy sees the value)."""
    depth = 0
    while isinstance(value, list) and depth <= limit:
        depth += 1
        value = value[0] if value else None
    return depth


def _strings(value: Any, name: str, limits: Limits) -> Any:
    """Nested lists of str / {"b64": ...} -> the same nesting with bytes leaves (each bounded)."""
    if isinstance(value, list):
        return [_strings(v, name, limits) for v in value]
    if isinstance(value, str):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request(f"Input '{name}': a string is not valid Unicode (it holds a lone surrogate "
                              f"such as \\ud800)") from None
    elif isinstance(value, dict) and list(value) == ["b64"] and isinstance(value["b64"], str):
        if len(value["b64"]) > 4 * (limits.max_string_bytes // 3 + 1):
            data = b"x" * (limits.max_string_bytes + 1)  # too long either way: skip the decoding
        else:
            try:
                data = base64.b64decode(value["b64"], validate=True)
            except ValueError:
                raise bad_request(f"Input '{name}': invalid base64 in {{\"b64\": ...}}") from None
    else:
        raise bad_request(f"Input '{name}' expects strings (DT_STRING) but got {type(value).__name__} "
                          f"{short(value)}")
    if len(data) > limits.max_string_bytes:
        raise bad_request(f"Input '{name}': a string of {len(data)} bytes is over the limit of "
                          f"{limits.max_string_bytes} bytes (--max-string-bytes)")
    return data


def _has_bool(value: Any) -> bool:
    """Whether a JSON value holds true/false anywhere (NumPy would read them as 1/0)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            return True
        if isinstance(item, list):
            stack.extend(item)
    return False


def to_array(value: Any, spec: Any, name: str, batched: bool, limits: Limits = Limits()) -> np.ndarray:
    """One input's JSON value -> an array of the spec's dtype and a compatible shape."""
    import tensorflow as tf

    dims = spec.shape.as_list() if spec.shape.rank is not None else None
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise bad_request(f"Input '{name}': nested too deep (more than {MAX_DEPTH} levels)")
    if spec.dtype != tf.string and not spec.dtype.is_bool and _has_bool(value):
        raise bad_request(f"Input '{name}' expects {spec.dtype.name} (DT_{spec.dtype.name.upper()}) "
                          f"but got booleans")
    try:
        if spec.dtype == tf.string:
            arr = np.asarray(_strings(value, name, limits), dtype=object)
            if arr.dtype != object or (arr.ndim and any(isinstance(v, list) for v in arr.flat)):
                raise ValueError("ragged")
        else:
            arr = np.asarray(value)
    except ValueError:
        raise bad_request(f"Input '{name}': lists of unequal lengths or mixed types "
                          f"(expected shape {_shape_text(dims)})") from None
    if spec.dtype != tf.string:
        arr = _numeric(arr, spec.dtype, name)
    if dims is not None:
        if arr.ndim != len(dims) or any(d is not None and d != a for d, a in zip(dims, arr.shape)):
            what = "each instance" if batched else "the value"
            got = list(arr.shape[1:]) if batched else list(arr.shape)
            want = dims[1:] if batched else dims
            raise bad_request(f"Input '{name}': {what} has shape {got} but the signature expects "
                              f"{_shape_text(want)}")
    if batched and arr.ndim == 0:
        raise bad_request(f"Input '{name}' has no batch dimension")
    return arr


def _numeric(arr: np.ndarray, dtype: Any, name: str) -> np.ndarray:
    kind = arr.dtype.kind
    want = dtype.as_numpy_dtype
    if dtype.is_bool:
        ok = kind == "b"
    elif dtype.is_integer:
        ok = kind in "iu"
    else:
        ok = kind in "iuf"
    if not ok:
        found = {"U": "strings", "S": "strings", "O": "mixed or missing values", "b": "booleans",
                 "f": "non-integer numbers"}.get(kind, arr.dtype.name)
        raise bad_request(f"Input '{name}' expects {dtype.name} (DT_{dtype.name.upper()}) but got {found}")
    if dtype.is_integer:
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise bad_request(f"Input '{name}': value out of range for {dtype.name}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(want)
    if dtype.is_floating and out.size and not np.isfinite(out).all():
        raise bad_request(f"Input '{name}': NaN or Infinity (or a value too large for {dtype.name})")
    return out


def _shape_text(dims: list[int | None] | None) -> str:
    return "unknown" if dims is None else "[" + ", ".join("-1" if d is None else str(d) for d in dims) + "]"


@dataclass
class Request:
    """A decoded predict request."""

    signature: str
    tensors: dict[str, np.ndarray]
    row_format: bool
    rows: int | None  # batch size when every batched input agrees, else None


def decode_request(data: dict[str, Any], signatures: dict[str, Signature], limits: Limits = Limits(),
                   info: ExportInfo = ExportInfo()) -> Request:
    """Validate a predict body against the signature and the limits; build its input arrays.

    Everything that would make the request fail alone fails here, before it can join a batch,
    so a request gets the same answer alone or batched with others.
    """
    name = data.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise bad_request("'signature_name' must be a string")
    if name not in signatures:
        raise bad_request(f"Serving signature name: \"{name[:200]}\" not found in signature def "
                          f"(have: {', '.join(sorted(signatures))})")
    sig = signatures[name]
    has_rows, has_cols = "instances" in data, "inputs" in data
    if has_rows == has_cols:
        raise bad_request("JSON Value: must have exactly one of 'instances' (list) or 'inputs' (columnar) "
                          "as a key, " + ("not both" if has_rows else "found neither"))
    unknown = set(data) - {"signature_name", "instances", "inputs"}
    if unknown:
        raise bad_request(f"unknown key(s) in the request: {', '.join(sorted(k[:100] for k in unknown))}")
    specs = sig.inputs
    if has_rows:
        tensors = _rows(data["instances"], specs, limits)
    else:
        tensors = _columns(data["inputs"], specs, limits)
    _check_values(tensors, specs, limits, info)
    batch = {int(a.shape[0]) for k, a in tensors.items() if a.ndim and _rank(specs[k]) != 0}
    return Request(name, tensors, has_rows, batch.pop() if len(batch) == 1 else None)


def _rank(spec: Any) -> int | None:
    return spec.shape.rank


def _check_values(tensors: dict[str, np.ndarray], specs: dict[str, Any], limits: Limits, info: ExportInfo) -> None:
    """Per-request checks of values: text with no token, and the generation settings."""
    import tensorflow as tf

    text = tensors.get("inputs")
    if info.token_input and text is not None and specs["inputs"].dtype == tf.string:
        for index, value in enumerate(text.flat):
            if not value.strip():
                raise bad_request(f"Input 'inputs': row {index} is empty or blank; a sequence needs at least "
                                  f"one token")
    scalars = {k: v for k, v in tensors.items() if v.ndim == 0}
    length, width = None, 1
    if "max_length" in scalars and specs["max_length"].dtype.is_integer:
        cap = info.generate_length(limits.max_generate_length)
        length = int(scalars["max_length"])
        if not 1 <= length <= cap:
            raise bad_request(f"max_length={length} is out of range: allowed 1..{cap} (--max-generate-length; "
                              f"default 4x the export's default length, at most what the export accepts)")
    if "beam_width" in scalars and specs["beam_width"].dtype.is_integer:
        width = int(scalars["beam_width"])
        top = info.max_beam_width or MAX_BEAM_WIDTH
        if not 1 <= width <= top:
            raise bad_request(f"beam_width={width} is out of range: allowed 1..{top} (what the export supports)")
    if length is not None:  # the decoding work: rows x beams x steps
        rows = next((int(a.shape[0]) for k, a in tensors.items() if a.ndim and _rank(specs[k]) != 0), 1)
        tokens = rows * width * length
        if tokens > limits.max_generate_tokens:
            raise bad_request(f"{rows} rows x beam_width {width} x max_length {length} = {tokens} "
                              f"tokens is over the limit of {limits.max_generate_tokens} generated tokens per "
                              f"request (--max-generate-tokens); send fewer rows or a smaller max_length")
    if "temperature" in scalars and specs["temperature"].dtype.is_floating:
        value = float(scalars["temperature"])
        if value < 0:
            raise bad_request(f"temperature={value:g} must be >= 0 (0: greedy decoding; > 0: sampling)")


def _rows(instances: Any, specs: dict[str, Any], limits: Limits = Limits()) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise bad_request("'instances' must be a list (one element per example)")
    if not instances:
        raise bad_request("'instances' is empty: send at least one example")
    if len(instances) > limits.max_rows:
        raise bad_request(f"{len(instances)} instances is over the limit of {limits.max_rows} rows per request "
                          f"(--max-rows)")
    names = list(specs)
    named = all(isinstance(i, dict) and not (list(i) == ["b64"]) for i in instances)
    if len(names) > 1 and not named:
        raise bad_request(f"this signature has several inputs ({', '.join(names)}): each instance must "
                          f"be an object naming them")
    columns: dict[str, list[Any]] = {}
    if named:
        for index, inst in enumerate(instances):
            if set(inst) != set(names):
                missing, extra = set(names) - set(inst), set(inst) - set(names)
                what = (f"missing input(s) {sorted(missing)}" if missing
                        else f"unknown input(s) {sorted(k[:100] for k in extra)}")
                raise bad_request(f"instance {index}: {what}; the signature's inputs are {names}")
        columns = {n: [inst[n] for inst in instances] for n in names}
    else:
        columns = {names[0]: instances}
    tensors = {}
    for name, values in columns.items():
        if _rank(specs[name]) == 0:  # a scalar setting (e.g. max_length): one value for the batch
            if any(v != values[0] or type(v) is not type(values[0]) for v in values):
                raise bad_request(f"Input '{name}' is a scalar: every instance must give the same value")
            tensors[name] = to_array(values[0], specs[name], name, batched=False, limits=limits)
        else:
            tensors[name] = to_array(values, specs[name], name, batched=True, limits=limits)
    return tensors


def _columns(inputs: Any, specs: dict[str, Any], limits: Limits = Limits()) -> dict[str, np.ndarray]:
    names = list(specs)
    if isinstance(inputs, dict) and list(inputs) != ["b64"]:
        if set(inputs) != set(names):
            missing, extra = set(names) - set(inputs), set(inputs) - set(names)
            what = (f"missing input(s) {sorted(missing)}" if missing
                    else f"unknown input(s) {sorted(k[:100] for k in extra)}")
            raise bad_request(f"'inputs': {what}; the signature's inputs are {names}")
        values = dict(inputs)
    elif len(names) == 1:
        values = {names[0]: inputs}
    else:
        raise bad_request(f"this signature has several inputs ({', '.join(names)}): 'inputs' must be an "
                          f"object naming them")
    tensors = {}
    for name, value in values.items():
        if isinstance(value, list) and not value:
            raise bad_request(f"Input '{name}' is empty: send at least one example")
        if isinstance(value, list) and _rank(specs[name]) != 0 and len(value) > limits.max_rows:
            raise bad_request(f"Input '{name}' has {len(value)} rows, over the limit of {limits.max_rows} rows "
                              f"per request (--max-rows)")
        tensors[name] = to_array(value, specs[name], name, batched=False, limits=limits)
    return tensors


# --------------------------------------------------------------------------------------------
# Responses


def _jsonable(arr: np.ndarray) -> Any:
    if arr.dtype == object or arr.dtype.kind == "S":
        flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.ravel().tolist()]
        return np.asarray(flat, dtype=object).reshape(arr.shape).tolist() if arr.ndim else flat[0]
    return arr.tolist()


def encode_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """Outputs -> {"predictions": rows} or {"outputs": columns}, as TF Serving shapes them."""
    values = {k: _jsonable(v) for k, v in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    batched = {k: v for k, v in values.items() if outputs[k].ndim}
    rows = len(next(iter(batched.values()))) if batched else 1
    scalars = {k: v for k, v in values.items() if k not in batched}
    return {"predictions": [{**{k: v[i] for k, v in batched.items()}, **scalars} for i in range(rows)]}


def dumps(data: Any) -> bytes:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from the request: JSON escapes instead
        return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii")


# --------------------------------------------------------------------------------------------
# The ASGI app


@dataclass(frozen=True)
class Options:
    """Server settings (the `rnnpipe serve` flags)."""

    max_request_bytes: int = 16 << 20
    timeout: float = 30.0
    max_rows: int = Limits.max_rows  # these five: see Limits (one place for their defaults)
    max_elements: int = Limits.max_elements
    max_string_bytes: int = Limits.max_string_bytes
    max_generate_length: int | None = Limits.max_generate_length
    max_generate_tokens: int = Limits.max_generate_tokens
    header_timeout: float = 10.0  # seconds to receive a request's headers (slow or idle clients are closed)
    body_timeout: float = 30.0  # seconds to receive a request's body, else 408
    keep_alive: float = 5.0  # seconds an idle keep-alive connection stays open
    max_connections: int = 512  # concurrent connections; more get 503 at once
    poll_seconds: float = 1.0
    max_batch_rows: int = 256
    batch_wait_ms: float = 2.0
    model_name: str | None = None
    # An RNN step is a few small ops: spreading each one over every core costs more in hand-offs
    # (and CPU taken from the HTTP loop) than it saves, so one thread per op (raise it for large
    # models or batches; 0 = all cores). Ops still run side by side (inter-op 0 = one per core):
    # with a single inter-op thread one slow call (a long beam search) would stall every model.
    intra_op_threads: int = 1
    inter_op_threads: int = 0


MAX_HEADER_BYTES = 64 << 10  # request line + headers; more is refused (400) and the connection closed
BIG_BODY = 64 << 10  # parse bodies above this on a thread, not on the event loop
TRIM_BODY = 1 << 20  # after a body this large, hand freed heap memory back to the OS


def _trim_memory() -> None:
    """glibc keeps freed small-object memory in its arenas; give it back after a big request."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def create_app(base: str | Path, options: Options = Options()) -> Any:
    """The Starlette app serving every model under `base`; it polls for new versions."""
    import tensorflow as tf
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.requests import Request as HttpRequest
    from starlette.responses import Response
    from starlette.routing import Route

    try:
        tf.config.threading.set_intra_op_parallelism_threads(options.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(options.inter_op_threads)
    except RuntimeError:  # TensorFlow already running in this process (an in-process server): keep its pools
        pass
    arriving = [0]  # predict requests read but not yet queued (the batchers may wait for them)
    policy = BatchPolicy(options.max_batch_rows, options.batch_wait_ms / 1000, lambda: arriving[0])
    limits = Limits(**{f.name: getattr(options, f.name) for f in fields(Limits)})
    repo = Repository(base, options.model_name, policy, poll_seconds=options.poll_seconds)
    stop = threading.Event()
    counts: collections.Counter = collections.Counter()

    def respond(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(dumps(data), status_code=status, media_type="application/json", headers=headers)

    def poll() -> None:
        while not stop.wait(options.poll_seconds):
            try:
                repo.refresh()
                repo.load_latest()
            except Exception:  # noqa: BLE001, S110 - a scan error must not stop the poller
                pass

    async def read_body(request: HttpRequest) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isascii() and declared.isdigit() and int(declared) > options.max_request_bytes:
            raise ServingError(413, f"request body of {declared[:30]} bytes is over the limit of "
                                    f"{options.max_request_bytes} bytes (--max-request-bytes)")
        chunks, size = [], 0

        async def receive() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > options.max_request_bytes:
                    raise ServingError(413, f"request body is over the limit of {options.max_request_bytes} "
                                            f"bytes (--max-request-bytes)")
                chunks.append(chunk)

        try:
            await asyncio.wait_for(receive(), options.body_timeout)
        except asyncio.TimeoutError:
            raise ServingError(408, f"the request body did not arrive within {options.body_timeout:g} s "
                                    f"(--body-timeout)") from None
        except ClientDisconnect:
            raise ServingError(400, "the client disconnected before sending the whole body") from None
        return b"".join(chunks)

    async def ready(name: str, version: int | None) -> Servable:
        """The servable a request asks for; waits up to --timeout for one being loaded (503 after)."""
        servable = repo.cached(name, version)
        if servable is not None:
            return servable
        future = repo.wanted(name, version)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), options.timeout)
        except asyncio.TimeoutError:
            what = f"version {version}" if version is not None else "its latest version"
            raise ServingError(503, f"{name} {what} is still loading (state LOADING); retry shortly") from None

    async def predict(request: HttpRequest, name: str, version: int | None) -> Response:
        arriving[0] += 1
        try:
            body = await read_body(request)
            servable = await ready(name, version)
            try:
                if len(body) > BIG_BODY:
                    req = await asyncio.to_thread(
                        lambda: decode_request(parse_body(body, limits), servable.signatures, limits, servable.info))
                else:
                    req = decode_request(parse_body(body, limits), servable.signatures, limits, servable.info)
            finally:
                request.state.big = len(body) > TRIM_BODY
            key = None
            if req.rows is not None:
                inputs = servable.signatures[req.signature].inputs
                key = tuple((k, v.shape[1:] if _rank(inputs[k]) != 0 else v.item(), v.dtype.str)
                            for k, v in sorted(req.tensors.items()))
        finally:
            arriving[0] -= 1
        future = servable.batcher(req.signature).submit(req.tensors, req.rows, key)
        try:
            outputs = await asyncio.wait_for(asyncio.wrap_future(future), options.timeout)
        except asyncio.TimeoutError:
            raise ServingError(504, f"Timed out after {options.timeout:g} s (--timeout) waiting for "
                                    f"{name} version {servable.version}") from None
        data = encode_response(outputs, req.row_format)
        if servable.info.classes and req.signature == DEFAULT_SIGNATURE and "probabilities" in outputs:
            data["classes"] = list(servable.info.classes)  # the probabilities' order
        return respond(data, headers={"x-model-version": str(servable.version)})

    async def models(request: HttpRequest) -> Response:
        response = await handle(request)
        counts[response.status_code] += 1
        if getattr(request.state, "big", False):  # its body and arrays are garbage now
            asyncio.get_running_loop().run_in_executor(None, _trim_memory)
        return response

    def parse_version(text: str | None) -> int | None:
        if text is None:
            return None
        if not (text.isascii() and text.isdigit()):
            raise ServingError(404, f"Malformed request: version '{text[:40]}' is not a number")
        if len(text) > MAX_VERSION_DIGITS:
            raise ServingError(404, f"Servable not found for request: version '{text[:40]}...' is too large")
        return int(text)

    async def handle(request: HttpRequest) -> Response:
        try:
            match = PATH.match(request.url.path)
            if match is None:
                raise ServingError(404, f"Malformed request: {request.method} {request.url.path[:200]}")
            name, version = match["name"], parse_version(match["version"])
            verb = match["verb"]
            if verb is None:
                if request.method != "GET":
                    raise ServingError(405, f"{request.method} is not allowed here; use GET")
                if match["metadata"]:
                    servable = await ready(name, version)
                    metadata = {"signature_def": {"signature_def": servable.signature_defs},
                                **servable.info.describe(limits)}
                    return respond({"model_spec": {"name": name, "signature_name": "",
                                                   "version": str(servable.version)}, "metadata": metadata})
                return respond(repo.status(name, version))
            if verb != "predict":
                raise bad_request(f"Malformed request: ':{verb[:40]}' is not supported by this server (use :predict)")
            if request.method != "POST":
                raise ServingError(405, f"{request.method} is not allowed for :predict; use POST")
            return await predict(request, name, version)
        except ServingError as exc:
            headers = {"connection": "close"} if exc.status in (408, 413) else None
            return respond({"error": exc.message}, exc.status, headers)
        except RecursionError:
            return respond({"error": f"JSON Parse error: nested too deep (more than {MAX_DEPTH} levels)"}, 400)
        except MemoryError:
            return respond({"error": "the request needs more memory than the server has; send fewer rows"}, 413,
                           {"connection": "close"})
        except Exception as exc:  # noqa: BLE001 - never let one request take the server down
            text = scrub(f"internal error: {type(exc).__name__}: {exc}"[:2000], (str(repo.base), "<export base>"))
            return respond({"error": text}, 500)

    async def metrics(request: HttpRequest) -> Response:
        """Prometheus text: responses by status; requests, batches, rows per loaded signature."""
        lines = ["# TYPE rnnpipe_http_responses_total counter"]
        lines += [f'rnnpipe_http_responses_total{{code="{code}"}} {n}' for code, n in sorted(counts.items())]
        with repo.lock:
            servables = [s for e in repo.models.values() for s in e.loaded.values()]
        for metric in ("requests", "batches", "rows"):
            lines.append(f"# TYPE rnnpipe_batched_{metric}_total counter")
            for servable in servables:
                for sig, batcher in list(servable.batchers.items()):
                    lines.append(f'rnnpipe_batched_{metric}_total{{model="{servable.name}",'
                                 f'version="{servable.version}",signature="{sig}"}} {batcher.stats[metric]}')
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def not_found(request: HttpRequest, exc: HTTPException) -> Response:
        return respond({"error": f"{exc.detail}: {request.method} {request.url.path[:200]}"}, exc.status_code)

    async def lifespan(app: Any) -> Any:
        await asyncio.to_thread(repo.load_latest)
        thread = threading.Thread(target=poll, name="version-poller", daemon=True)
        thread.start()
        yield
        stop.set()
        repo.close()

    app = Starlette(routes=[Route("/v1/models/{rest:path}", models, methods=["GET", "POST"]),
                            Route("/monitoring/prometheus/metrics", metrics, methods=["GET"])],
                    exception_handlers={HTTPException: not_found}, lifespan=_lifespan_context(lifespan))
    app.state.repository = repo
    return app


def _lifespan_context(gen: Any) -> Any:
    import contextlib

    return contextlib.asynccontextmanager(gen)


def http_protocol(options: Options) -> Any:
    """uvicorn's httptools protocol with a header timeout: a connection that has not sent a
    request's complete headers within `options.header_timeout` s (idle, or trickling them) is
    closed. (uvicorn's own keep-alive timeout only runs between requests.)"""
    try:
        from uvicorn.protocols.http.flow_control import service_unavailable
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn's default protocol, without the header timeout
        return "auto"

    busy_body = dumps({"error": f"the server is at its limit of {options.max_connections} concurrent "
                                f"connections (--max-connections); retry shortly"})

    async def busy(scope: Any, receive: Any, send: Any) -> None:  # uvicorn's 503, as JSON
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(busy_body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": busy_body, "more_body": False})

    class Protocol(HttpToolsProtocol):
        _header_timer: Any = None
        _header_bytes = 0
        _too_large = False

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(options.header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._arm()

        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > MAX_HEADER_BYTES:
                self._too_large = True
                raise ValueError("headers too large")  # the parser stops; send_400_response answers

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            super()._start_asgi_task(cycle, busy if app is service_unavailable else app)

        def send_400_response(self, msg: str) -> None:  # unparsable HTTP: JSON too, like every error
            if self._too_large:
                msg = f"the request line and headers are over {MAX_HEADER_BYTES} bytes"
            body = dumps({"error": f"Malformed request: {msg}"})
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                                 b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
                                 + body)
            self.transport.close()

    return Protocol


def uvicorn_config(app: Any, host: str, port: int, options: Options, access_log: bool = False) -> Any:
    """uvicorn settings: keep-alive, connection limit, header timeout (see Options)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=access_log,
                          timeout_keep_alive=max(1, int(round(options.keep_alive))),
                          limit_concurrency=options.max_connections, backlog=2048, lifespan="on",
                          http=http_protocol(options), h11_max_incomplete_event_size=64 << 10,
                          timeout_graceful_shutdown=5)


# --------------------------------------------------------------------------------------------
# Running it


def serve(base: str | Path, host: str = "127.0.0.1", port: int = 8501, options: Options = Options(),
          ready_file: str | Path | None = None, log: Any = print, access_log: bool = False) -> None:
    """Serve `base` until interrupted; `port=0` takes a free port (written to `ready_file`)."""
    import uvicorn

    app = create_app(base, options)
    server = uvicorn.Server(uvicorn_config(app, host, port, options, access_log))

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        repo = app.state.repository
        names = ", ".join(f"{n} (versions {sorted(e.on_disk) or 'none yet'})" for n, e in repo.models.items())
        log(f"rnnpipe serve: {names} on http://{host}:{bound}/v1/models/<name>  (Ctrl-C to stop)")
        if ready_file:
            from components.artifacts import write_json

            write_json(Path(ready_file), {"host": host, "port": bound, "pid": os.getpid(),
                                          "models": sorted(repo.models)})

    threading.Thread(target=announce, daemon=True).start()
    server.run()


class ServerThread:
    """An in-process server on a free loopback port (tests, benchmarks): `with ServerThread(base) as url:`."""

    def __init__(self, base: str | Path, options: Options = Options(), host: str = "127.0.0.1"):
        import uvicorn

        self.app = create_app(base, options)
        self.server = uvicorn.Server(uvicorn_config(self.app, host, 0, options))
        self.host = host
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


# --------------------------------------------------------------------------------------------
# Clients: a small JSON-over-HTTP call, and a server in a fresh process


def call(url: str, body: Any = None, method: str | None = None, timeout: float = 60) -> tuple[int, Any]:
    """One HTTP request with a JSON (or raw bytes) body -> (status, decoded JSON answer)."""
    import urllib.error
    import urllib.request

    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode("utf-8", "replace")


class ServerProcess:
    """`rnnpipe serve` in a fresh interpreter on a free loopback port: `with ServerProcess(base) as url:`.

    The child binds port 0 and writes the port to a ready file once it listens (and has
    loaded the latest versions); a child that exits first raises with the tail of its log.
    It runs in its own process group and dies with this process, even if this one is killed
    with -9 (parent-death signal, pipeline.servers.die_with_parent).
    """

    def __init__(self, base: str | Path, *args: str, log_path: str | Path | None = None, start_timeout: float = 180,
                 env: dict[str, str] | None = None):
        import tempfile

        self.base, self.args, self.start_timeout = str(base), args, start_timeout
        self.tmp = tempfile.TemporaryDirectory(prefix="rnnpipe-serve-")
        self.ready = Path(self.tmp.name) / "ready.json"
        self.log_path = Path(log_path) if log_path else Path(self.tmp.name) / "server.log"
        self.env = env
        self.proc: Any = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> str:
        import signal
        import subprocess
        import sys

        from pipeline.servers import die_with_parent

        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(self.env or {})}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "pipeline.cli", "serve", self.base, "--port", "0",
                   "--ready-file", str(self.ready), *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
                                         start_new_session=True, preexec_fn=die_with_parent(signal.SIGKILL))
        deadline = time.monotonic() + self.start_timeout
        while not self.ready.is_file():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.proc.returncode} before it was ready:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                message = f"the server was not ready after {self.start_timeout:g} s:\n{self.log_tail()}"
                self.__exit__()
                raise RuntimeError(message)
            time.sleep(0.05)
        info = json.loads(self.ready.read_text())
        return f"http://{info['host']}:{info['port']}"

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            from pipeline.servers import stop_group

            stop_group(self.proc)
        self.tmp.cleanup()
