"""TensorFlow Serving's REST API on the exported SavedModels: `rnnpipe serve EXPORT_BASE_DIR`.

inputs -> outputs: an export base (`exports/<name>/` holding numeric version folders, or a
folder of such bases) -> HTTP on 127.0.0.1:8501 (uvicorn + Starlette, one process).

What lives where:

    protocol.py    errors, limits (`Limits`), what an export declares (`ExportInfo`), JSON
                   bodies in and answers out (`parse_body`, `encode_response`, `dumps`)
    inputs.py      a parsed predict body -> checked arrays for one signature (`decode_request`)
    batcher.py     `Signature` (a SavedModel signature as a call) and `Batcher` (its worker
                   thread, merging requests that queue up)
    repository.py  models and versions under the base, loading, retries, the poller
                   (`Repository`, `Servable`)
    app.py         the endpoints and their errors (`create_app`, `Handlers`, `Options`: the
                   `rnnpipe serve` flags) and the connection rules for uvicorn
    process.py     running servers, the project's one launcher: `serve`, `ServerThread`,
                   `ServerProcess` (`rnnpipe serve` in a fresh process), `local_server` (any
                   other server command: `mlflow models serve`), `HeldServer`, `call`
    guard.py       the guard that ends a helper's whole process group (`python -m`)

A new endpoint is a method of `app.Handlers` (routed in `Handlers.handle` or `create_app`).
"""

from components.serving.app import Handlers, Options, create_app, http_protocol, uvicorn_config
from components.serving.batcher import Batcher, BatchPolicy, Signature
from components.serving.inputs import Request, decode_request, to_array
from components.serving.process import (
    HeldServer,
    Launched,
    ServerProcess,
    ServerThread,
    answers,
    call,
    die_with_parent,
    free_port,
    local_server,
    serve,
    spawn,
    stop_group,
)
from components.serving.protocol import (
    DEFAULT_SIGNATURE,
    EXPORT_INFO,
    MAX_DEPTH,
    ExportInfo,
    Limits,
    ServingError,
    bad_request,
    dumps,
    encode_response,
    jsonable,
    parse_body,
    scrub,
    short,
    text,
)
from components.serving.repository import MAX_LOADED, ModelEntry, Repository, Retry, Servable

__all__ = [
    "DEFAULT_SIGNATURE", "EXPORT_INFO", "MAX_DEPTH", "MAX_LOADED", "BatchPolicy", "Batcher", "ExportInfo",
    "Handlers", "HeldServer", "Launched", "Limits", "ModelEntry", "Options", "Request", "Repository", "Retry",
    "Servable", "ServerProcess", "ServerThread", "ServingError", "Signature", "answers", "bad_request", "call",
    "create_app", "decode_request", "die_with_parent", "dumps", "encode_response", "free_port", "http_protocol",
    "jsonable", "local_server", "parse_body", "scrub", "serve", "short", "spawn", "stop_group", "text", "to_array",
    "uvicorn_config",
]
