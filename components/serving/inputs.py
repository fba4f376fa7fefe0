"""Request decoding: a parsed predict body -> validated NumPy arrays for one signature.

`decode_request` checks everything that would make a request fail alone (signature, keys,
shapes, dtypes, string sizes, rows, generation settings against the limits and what the export
declares) before it can join a batch, so a request gets the same answer alone or batched.
`to_array` converts one input's JSON value.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from components.serving.protocol import (
    DEFAULT_SIGNATURE,
    MAX_BEAM_WIDTH,
    MAX_DEPTH,
    ExportInfo,
    Limits,
    bad_request,
    short,
)

if TYPE_CHECKING:
    from components.serving.batcher import Signature


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

    def batch_key(self, specs: dict[str, Any]) -> Any:
        """What requests must share to be merged into one batch (None: this one runs alone):
        each input's shape past the batch dimension (or a scalar's value) and its dtype."""
        if self.rows is None:
            return None
        return tuple((k, v.shape[1:] if _rank(specs[k]) != 0 else v.item(), v.dtype.str)
                     for k, v in sorted(self.tensors.items()))


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
    """Per-request checks of values: one batch size, text with no token, and the generation settings."""
    import tensorflow as tf

    batches = {n: a.shape[0] for n, a in tensors.items() if a.ndim and specs[n].shape[0] is None}
    if info.rnnpipe and len(set(batches.values())) > 1:  # every input of ours is one row per example
        raise bad_request("the inputs differ in batch size (" + ", ".join(f"{n}: {b}" for n, b in batches.items())
                          + "): send one row per example in each")

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
    asked = length is not None
    if not asked and info.default_length and "max_length" not in specs:  # `serving_default` of a generating model
        length = info.default_length  # it generates the export's default length per row
    if length is not None:  # the decoding work: rows x beams x steps
        rows = next((int(a.shape[0]) for k, a in tensors.items() if a.ndim and _rank(specs[k]) != 0), 1)
        tokens = rows * width * length
        if tokens > limits.max_generate_tokens:
            work = f"beam_width {width} x max_length {length}" if asked else f"{length} (the export's default length)"
            raise bad_request(f"{rows} rows x {work} = {tokens} tokens is over the limit of "
                              f"{limits.max_generate_tokens} generated tokens per request (--max-generate-tokens); "
                              f"send fewer rows" + (" or a smaller max_length" if asked else ""))
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

