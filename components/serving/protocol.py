"""The wire format of TF Serving's REST API: errors, limits, the export's declared contract,
JSON bodies in, JSON answers out (no HTTP, no TensorFlow at import).

- `ServingError` (an HTTP status and a TF-Serving-style message), `scrub` (no server paths in
  messages), `short` (a bounded repr of client input), `text` (bytes -> str, one place).
- `Limits`: the bounds on the work one request may ask for (the `rnnpipe serve` flags).
- `ExportInfo`: what an rnnpipe export declares (`assets.extra/serving_contract.json`).
- `parse_body`: bytes -> the request object (NaN/Infinity, depth and size refused before
  anything else walks it); `parse_version`: the URL's version.
- `jsonable`, `encode_response`, `dumps`: output arrays -> the answer TF Serving would give.

Turning a parsed body into arrays for one signature is components/serving/inputs.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.stage_files import MAX_VERSION_DIGITS, SERVING_CONTRACT

DEFAULT_SIGNATURE = "serving_default"
MAX_DEPTH = 32  # JSON nesting deeper than this is refused before any conversion
PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                  r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$")
MAX_BEAM_WIDTH = 64  # beam_width cap when the export does not declare one (model.beam_width's bound)
DEFAULT_GENERATE_LENGTH = 256  # max_length cap when neither --max-generate-length nor the export says
EXPORT_INFO = SERVING_CONTRACT  # what an rnnpipe export declares (written by components/export.py)
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


def text(value: Any) -> str:
    """A model's string output as JSON text: UTF-8 bytes decoded (bad bytes replaced), others str()."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one request may ask for (the `rnnpipe serve` flags of the same names).

    max_rows: rows (instances, or the batch dimension of columnar inputs); max_elements: JSON
    values in the whole body (list items and object members); max_string_bytes: UTF-8 bytes of
    one string input; max_generate_length: the largest `max_length` of a generate signature
    (None: what the export declares, else DEFAULT_GENERATE_LENGTH); max_generate_tokens: rows x
    beam_width x max_length of one generate call, or rows x the default length of a generating
    model's serving_default (the decoding work a request may ask for).
    """

    max_rows: int = 10_000
    max_elements: int = 1_000_000
    max_string_bytes: int = 4096
    max_generate_length: int | None = None
    max_generate_tokens: int = 200_000


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


# --------------------------------------------------------------------------------------------
# Requests: URL and body


def parse_version(value: str | None) -> int | None:
    """The version named in a URL (None: the latest); 404 for what cannot be a version of ours."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise ServingError(404, f"Malformed request: version '{value[:40]}' is not a number")
    if len(value) > MAX_VERSION_DIGITS:
        raise ServingError(404, f"Servable not found for request: version '{value[:40]}...' is too large")
    return int(value)


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


# --------------------------------------------------------------------------------------------
# Responses


def jsonable(arr: np.ndarray) -> Any:
    """One output array -> JSON values (strings decoded), as the REST server answers them."""
    if arr.dtype == object or arr.dtype.kind == "S":
        flat = [text(v) for v in arr.ravel().tolist()]
        return np.asarray(flat, dtype=object).reshape(arr.shape).tolist() if arr.ndim else flat[0]
    return arr.tolist()


def encode_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """Outputs -> {"predictions": rows} or {"outputs": columns}, as TF Serving shapes them."""
    values = {k: jsonable(v) for k, v in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    batched = {k: v for k, v in values.items() if outputs[k].ndim}
    rows = len(next(iter(batched.values()))) if batched else 1
    scalars = {k: v for k, v in values.items() if k not in batched}
    return {"predictions": [{**{k: v[i] for k, v in batched.items()}, **scalars} for i in range(rows)]}


def dumps(data: Any) -> bytes:
    encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    try:
        return encoded.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from the request: JSON escapes instead
        return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii")
