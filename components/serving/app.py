"""The HTTP side of `rnnpipe serve`: the Starlette app (TF Serving's REST API) and uvicorn's settings.

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
`max_length` over `--max-generate-length`, rows x beam_width x max_length (or a generating
model's serving_default: rows x its default length) over `--max-generate-tokens`, `beam_width` /
`temperature` outside what the export accepts),
unparsable HTTP; 404 unknown model or version; 408 a body slower than
`--body-timeout`; 413 a body over `--max-request-bytes`; 503 a version still loading after
`--timeout` (or more than `--max-connections`); 504 inference past `--timeout`; 500 only for a
server bug. No request can stop the server, and no client input gets a 5xx (tests/test_hardening.py
fuzzes paths and bodies).

Bounded work: every body is checked (depth, number of values, rows, string sizes, generation
settings) before it becomes arrays, so a request that would fail alone fails before it can join
a batch. Connections: headers must arrive within `--header-timeout` (idle and trickling
clients are closed), bodies within `--body-timeout`, idle keep-alive ends after `--keep-alive`.
Exports that declare a contract (`assets.extra/serving_contract.json`) give class names (in
/metadata and as `classes` in classifier answers) and the generate limits.

`create_app` builds the app from `Handlers` (one method per endpoint); `http_protocol` and
`uvicorn_config` are the connection rules.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from components.serving.batcher import BatchPolicy
from components.serving.inputs import decode_request
from components.serving.protocol import (
    DEFAULT_SIGNATURE,
    MAX_DEPTH,
    PATH,
    Limits,
    ServingError,
    bad_request,
    dumps,
    encode_response,
    parse_body,
    parse_version,
    scrub,
)
from components.serving.repository import Repository, Servable


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



def respond(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    """A JSON response (every answer of the API, errors included)."""
    from starlette.responses import Response

    return Response(dumps(data), status_code=status, media_type="application/json", headers=headers)


class Handlers:
    """The app's state (the repository, the batch policy, response counts) and one method per endpoint."""

    def __init__(self, base: str | Path, options: Options):
        self.options = options
        self.arriving = 0  # predict requests read but not yet queued (the batchers may wait for them)
        self.policy = BatchPolicy(options.max_batch_rows, options.batch_wait_ms / 1000, lambda: self.arriving)
        self.limits = Limits(**{f.name: getattr(options, f.name) for f in fields(Limits)})
        self.repo = Repository(base, options.model_name, self.policy, poll_seconds=options.poll_seconds)
        self.stop = threading.Event()
        self.counts: collections.Counter = collections.Counter()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> Any:
        """Load the latest versions, then poll for new ones until the server stops."""
        await asyncio.to_thread(self.repo.load_latest)
        thread = threading.Thread(target=self.repo.poll, args=(self.stop,), name="version-poller", daemon=True)
        thread.start()
        yield
        self.stop.set()
        self.repo.close()

    async def models(self, request: Any) -> Any:
        """/v1/models/...: the answer, counted; memory handed back after a big body."""
        response = await self.handle(request)
        self.counts[response.status_code] += 1
        if getattr(request.state, "big", False):  # its body and arrays are garbage now
            asyncio.get_running_loop().run_in_executor(None, _trim_memory)
        return response

    async def handle(self, request: Any) -> Any:
        """Route by PATH; every failure becomes a JSON error with TF Serving's status."""
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
                    return await self.metadata(name, version)
                return respond(self.repo.status(name, version))
            if verb != "predict":
                raise bad_request(f"Malformed request: ':{verb[:40]}' is not supported by this server (use :predict)")
            if request.method != "POST":
                raise ServingError(405, f"{request.method} is not allowed for :predict; use POST")
            return await self.predict(request, name, version)
        except ServingError as exc:
            headers = {"connection": "close"} if exc.status in (408, 413) else None
            return respond({"error": exc.message}, exc.status, headers)
        except RecursionError:
            return respond({"error": f"JSON Parse error: nested too deep (more than {MAX_DEPTH} levels)"}, 400)
        except MemoryError:
            return respond({"error": "the request needs more memory than the server has; send fewer rows"}, 413,
                           {"connection": "close"})
        except Exception as exc:  # noqa: BLE001 - never let one request take the server down
            text = scrub(f"internal error: {type(exc).__name__}: {exc}"[:2000], (str(self.repo.base), "<export base>"))
            return respond({"error": text}, 500)

    async def metadata(self, name: str, version: int | None) -> Any:
        """GET .../metadata: every signature_def, plus what the export declares and the limits."""
        servable = await self.ready(name, version)
        metadata = {"signature_def": {"signature_def": servable.signature_defs},
                    **servable.info.describe(self.limits)}
        return respond({"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                        "metadata": metadata})

    async def predict(self, request: Any, name: str, version: int | None) -> Any:
        """POST ...:predict: read, decode and check the body, run it on the signature's batcher."""
        options = self.options
        self.arriving += 1
        try:
            body = await self.read_body(request)
            servable = await self.ready(name, version)
            try:
                if len(body) > BIG_BODY:
                    req = await asyncio.to_thread(lambda: self.decode(body, servable))
                else:
                    req = self.decode(body, servable)
            finally:
                request.state.big = len(body) > TRIM_BODY
            key = req.batch_key(servable.signatures[req.signature].inputs)
        finally:
            self.arriving -= 1
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

    def decode(self, body: bytes, servable: Servable) -> Any:
        return decode_request(parse_body(body, self.limits), servable.signatures, self.limits, servable.info)

    async def read_body(self, request: Any) -> bytes:
        """The whole body, within --max-request-bytes (413) and --body-timeout (408)."""
        from starlette.requests import ClientDisconnect

        limit = self.options.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise ServingError(413, f"request body of {declared[:30]} bytes is over the limit of "
                                    f"{limit} bytes (--max-request-bytes)")
        chunks, size = [], 0

        async def receive() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ServingError(413, f"request body is over the limit of {limit} bytes (--max-request-bytes)")
                chunks.append(chunk)

        try:
            await asyncio.wait_for(receive(), self.options.body_timeout)
        except asyncio.TimeoutError:
            raise ServingError(408, f"the request body did not arrive within {self.options.body_timeout:g} s "
                                    f"(--body-timeout)") from None
        except ClientDisconnect:
            raise ServingError(400, "the client disconnected before sending the whole body") from None
        return b"".join(chunks)

    async def ready(self, name: str, version: int | None) -> Servable:
        """The servable a request asks for; waits up to --timeout for one being loaded (503 after)."""
        servable = self.repo.cached(name, version)
        if servable is not None:
            return servable
        future = self.repo.wanted(name, version)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.options.timeout)
        except asyncio.TimeoutError:
            what = f"version {version}" if version is not None else "its latest version"
            raise ServingError(503, f"{name} {what} is still loading (state LOADING); retry shortly") from None

    async def metrics(self, request: Any) -> Any:
        """Prometheus text: responses by status; requests, batches, rows per loaded signature."""
        from starlette.responses import Response

        lines = ["# TYPE rnnpipe_http_responses_total counter"]
        lines += [f'rnnpipe_http_responses_total{{code="{code}"}} {n}' for code, n in sorted(self.counts.items())]
        with self.repo.lock:
            servables = [s for e in self.repo.models.values() for s in e.loaded.values()]
        for metric in ("requests", "batches", "rows"):
            lines.append(f"# TYPE rnnpipe_batched_{metric}_total counter")
            for servable in servables:
                for sig, batcher in list(servable.batchers.items()):
                    lines.append(f'rnnpipe_batched_{metric}_total{{model="{servable.name}",'
                                 f'version="{servable.version}",signature="{sig}"}} {batcher.stats[metric]}')
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def not_found(self, request: Any, exc: Any) -> Any:
        """Any other path (Starlette's 404/405), as a JSON error."""
        return respond({"error": f"{exc.detail}: {request.method} {request.url.path[:200]}"}, exc.status_code)


def create_app(base: str | Path, options: Options = Options()) -> Any:
    """The Starlette app serving every model under `base`; it polls for new versions."""
    import tensorflow as tf
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    try:
        tf.config.threading.set_intra_op_parallelism_threads(options.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(options.inter_op_threads)
    except RuntimeError:  # TensorFlow already running in this process (an in-process server): keep its pools
        pass
    handlers = Handlers(base, options)
    app = Starlette(routes=[Route("/v1/models/{rest:path}", handlers.models, methods=["GET", "POST"]),
                            Route("/monitoring/prometheus/metrics", handlers.metrics, methods=["GET"])],
                    exception_handlers={HTTPException: handlers.not_found}, lifespan=handlers.lifespan)
    app.state.repository = handlers.repo
    return app


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

