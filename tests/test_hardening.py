"""Issue 15: no request can hang, exhaust or crash `rnnpipe serve` (bounded work, JSON 4xx for
any client input, consistent answers alone or batched, readiness, retries, no leaked paths,
slow clients closed), plus a property-based fuzz test over paths and bodies.

One in-process server (components.serving.ServerThread) on hand-made SavedModels: the toy
model of tests/serving_support.py and a tiny "generator" export that declares its contract
(classes, generate limits, token input) the way components/export.py writes it.
"""
from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests import hardening_support
from tests.hardening_support import assert_json_4xx, raw
from tests.serving_support import TOY_ROWS, assert_serves, predict

base, server = hardening_support.base, hardening_support.server  # the shared module-scoped fixtures


# --------------------------------------------------------------------------------------------
# Malformed paths, encodings, nesting: a JSON 4xx, never a 5xx


@pytest.mark.parametrize("path", [
    "/v1/models/toy/versions/%C2%B2:predict", "/v1/models/toy/versions/%C2%B2", "/v1/models/toy/versions/²",
    "/v1/models/toy/versions/" + "9" * 5000 + ":predict", "/v1/models/toy/versions/" + "1" * 19,
    "/v1/models/toy/versions/-1:predict", "/v1/models/toy/versions/0x1:predict", "/v1/models/%ED%A0%80:predict",
    "/v1/models/toy/versions/1/metadata/x", "/v1/models/:predict", "/v1/models/toy:%ff", "/v1/models/toy/versions/%00",
    "/v1/models/toy/versions/1%20:predict", "/v1/models/" + "a" * 5000 + ":predict"])
def test_malformed_paths_get_a_json_4xx(server: Any, path: str) -> None:
    status, payload, kind = raw(server.url, "POST", path, json.dumps({"instances": TOY_ROWS}).encode())
    assert_json_4xx(status, payload, kind)
    assert_serves(server.url)


def nested(depth: int) -> Any:
    value: Any = "a"
    for _ in range(depth):
        value = [value]
    return value


SURROGATE = b'"\\ud800"'
BAD_BODIES = {
    "surrogate signature name": (b'{"signature_name": ' + SURROGATE + b', "instances": [[1, 2, 3]]}', "not found"),
    "surrogate top-level key": (b'{' + SURROGATE + b': 1, "instances": [[1, 2, 3]]}', "unknown key"),
    "surrogate instance key": (b'{"signature_name": "multi", "instances": [{' + SURROGATE + b': 1}]}', "missing"),
    "surrogate input key": (b'{"signature_name": "multi", "inputs": {' + SURROGATE + b': 1}}', "missing"),
    "surrogate string value": (b'{"signature_name": "multi", "inputs": {"text": [' + SURROGATE
                               + b'], "ids": [[1, 2]], "k": 1}}', "not valid Unicode"),
    "deep nesting after a first element": (json.dumps({"signature_name": "multi", "inputs": {
        "text": ["a", nested(900)], "ids": [[1, 2]], "k": 1}}).encode(), "nested too deep"),
    "deep nesting in a scalar": (json.dumps({"signature_name": "multi", "instances": [
        {"text": "a", "ids": [1, 2], "k": nested(900)}, {"text": "a", "ids": [1, 2], "k": nested(900)}]}).encode(),
        "nested too deep"),
    "deep nesting in an object": (b'{"instances": ' + b'{"a": ' * 900 + b"1" + b"}" * 900 + b"}", "nested too deep"),
    "true as a float": (b'{"instances": [[1, true, 3]]}', "booleans"),
    "true as a scalar": (b'{"signature_name": "multi", "inputs": {"text": ["a"], "ids": [[1, 2]], "k": true}}',
                         "booleans"),
    "true as a scalar in rows": (b'{"signature_name": "multi", "instances": [{"text": "a", "ids": [1, 2], "k": 1},'
                                 b' {"text": "a", "ids": [1, 2], "k": true}]}', "same value"),
    "too many rows": (json.dumps({"instances": [[1, 2, 3]] * 51}).encode(), "--max-rows"),
    "too many columnar rows": (json.dumps({"inputs": [[1, 2, 3]] * 51}).encode(), "--max-rows"),
    "too many values": (json.dumps({"signature_name": "single", "inputs": [1.0] * 6000}).encode(), "--max-elements"),
    "string too long": (json.dumps({"signature_name": "multi", "inputs": {"text": ["x" * 65], "ids": [[1, 2]],
                                                                         "k": 1}}).encode(), "--max-string-bytes"),
    "b64 too long": (json.dumps({"signature_name": "multi", "inputs": {"text": [{"b64": "QUFB" * 40}],
                                                                       "ids": [[1, 2]], "k": 1}}).encode(),
                     "--max-string-bytes"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_hostile_bodies_get_a_json_400(server: Any, case: str) -> None:
    body, text = BAD_BODIES[case]
    status, payload, kind = raw(server.url, "POST", "/v1/models/toy:predict", body)
    answer = assert_json_4xx(status, payload, kind)
    assert status == 400 and text in answer["error"], answer
    assert_serves(server.url)


def test_a_huge_body_of_tiny_rows_is_refused_and_memory_comes_back(server: Any) -> None:
    """~12 MB, 1.5M rows: refused (rows limit) and the process does not stay much larger."""

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    body = b'{"signature_name": "single", "instances": [' + b",".join([b"1.5e0"] * 1_500_000) + b"]}"
    assert len(body) > 8_000_000
    before = rss()
    for _ in range(2):
        status, payload, kind = raw(server.url, "POST", "/v1/models/toy:predict", body)
        answer = assert_json_4xx(status, payload, kind)
        assert "--max-elements" in answer["error"] or "--max-rows" in answer["error"], answer
    assert_serves(server.url)
    assert rss() - before < 400 << 20  # the issue saw 1.1 GB stay


# --------------------------------------------------------------------------------------------
# Generation is bounded; settings out of range are a 400 naming the limit


@pytest.mark.parametrize("settings,text", [
    ({"max_length": 100000, "beam_width": 1}, "allowed 1..20"), ({"max_length": 0, "beam_width": 1}, "1..20"),
    ({"max_length": -5, "beam_width": 1}, "1..20"), ({"max_length": 5, "beam_width": 8}, "allowed 1..4"),
    ({"max_length": 5, "beam_width": 0}, "1..4"), ({"max_length": 5, "beam_width": True}, "booleans"),
])
def test_generate_settings_out_of_range_get_400(server: Any, settings: dict[str, Any], text: str) -> None:
    status, answer = predict(server.url, {"signature_name": "generate", "inputs": {"inputs": ["abc"], **settings}},
                             model="gen")
    assert status == 400 and text in answer["error"], answer
    status, answer = predict(server.url, {"signature_name": "generate", "inputs": {
        "inputs": ["abc"], "max_length": 20, "beam_width": 4}}, model="gen")
    assert status == 200 and answer["outputs"]["tokens"] == ["abcabcabcabc"], answer


def test_generation_work_per_request_is_bounded(base: Path) -> None:
    import tensorflow as tf

    from components.serving import ExportInfo, Limits, ServingError, Signature, decode_request

    signatures = {k: Signature.of(k, fn) for k, fn in tf.saved_model.load(str(base / "gen" / "1")).signatures.items()}
    info = ExportInfo.read(base / "gen" / "1")
    body = {"signature_name": "generate", "inputs": {"inputs": ["ab"] * 50, "max_length": 20, "beam_width": 4}}
    with pytest.raises(ServingError, match=r"50 rows x beam_width 4 x max_length 20 = 4000 tokens .*"
                                           r"--max-generate-tokens"):
        decode_request(body, signatures, Limits(max_generate_tokens=3999), info)
    assert decode_request(body, signatures, Limits(max_generate_tokens=4000), info).rows == 50
    # serving_default generates the export's default length per row: that work is bounded too
    default = {"inputs": {"inputs": ["ab"] * 50}}
    tokens = 50 * info.default_length
    with pytest.raises(ServingError, match=rf"50 rows x {info.default_length} \(the export's default length\) = "
                                           rf"{tokens} tokens .*--max-generate-tokens"):
        decode_request(default, signatures, Limits(max_generate_tokens=tokens - 1), info)
    assert decode_request(default, signatures, Limits(max_generate_tokens=tokens), info).rows == 50


def test_inputs_of_different_batch_sizes_get_a_clear_400(tmp_path: Path) -> None:
    """An rnnpipe export's named inputs (a forecaster's `inputs`, `future`, `series_id`) are one row
    per example: columnar inputs of different lengths are refused by name, not left to the graph."""
    import tensorflow as tf

    from components.serving import ExportInfo, ServingError, Signature, decode_request
    from tests.serving_support import toy_saved_model

    path = toy_saved_model(tmp_path / "1")
    signatures = {k: Signature.of(k, fn) for k, fn in tf.saved_model.load(str(path)).signatures.items()}
    body = {"signature_name": "multi", "inputs": {"text": ["a", "b"], "ids": [[1, 2]], "k": 3}}
    with pytest.raises(ServingError, match=r"differ in batch size \(text: 2, ids: 1\)"):
        decode_request(body, signatures, info=ExportInfo(rnnpipe=True))
    assert decode_request(body, signatures).rows is None  # another SavedModel: as TF Serving, the graph decides


def test_temperature_must_not_be_negative(server: Any) -> None:
    body = {"signature_name": "sample", "inputs": {"inputs": ["abc"], "max_length": 2, "temperature": -1}}
    status, answer = predict(server.url, body, model="gen")
    assert status == 400 and "temperature=-1 must be >= 0" in answer["error"], answer
    for temperature in (0, 0.7):  # 0 is greedy (documented by the export)
        body["inputs"]["temperature"] = temperature
        assert predict(server.url, body, model="gen") == (200, {"outputs": ["ab"]})


def test_max_generate_length_flag_lowers_the_limit(base: Path) -> None:
    from components.serving import ExportInfo, Limits, decode_request

    info = ExportInfo.read(base / "gen" / "1")
    assert (info.max_length, info.default_length, info.generate_length(None)) == (64, 5, 20)
    assert info.generate_length(10) == 10 and info.generate_length(1000) == 64  # never above the export's
    assert ExportInfo().generate_length(None) == 256  # a SavedModel that declares nothing
    import tensorflow as tf

    sigs = tf.saved_model.load(str(base / "gen" / "1")).signatures
    from components.serving import Signature

    signatures = {k: Signature.of(k, fn) for k, fn in sigs.items()}
    body = {"signature_name": "generate", "inputs": {"inputs": ["a"], "max_length": 11, "beam_width": 1}}
    from components.serving import ServingError

    with pytest.raises(ServingError, match="allowed 1..10"):
        decode_request(body, signatures, Limits(max_generate_length=10), info)
    assert decode_request(body, signatures, Limits(max_generate_length=11), info).tensors["max_length"] == 11


# --------------------------------------------------------------------------------------------
# Property-based fuzzing: paths and bodies never get a 5xx, the server keeps answering right


def _fuzz_strategies() -> tuple[Any, Any]:
    from hypothesis import strategies as st

    text = st.text(alphabet=st.characters(codec=None, blacklist_categories=()), max_size=12)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                        st.floats(allow_nan=False, allow_infinity=False), text)
    values = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(text, st.sampled_from(
            ["b64", "x", "v", "text", "ids", "k", "inputs", "max_length", "beam_width", "temperature"])),
            inner, max_size=3)), max_leaves=20)
    bodies = st.one_of(
        st.fixed_dictionaries({}, optional={
            "signature_name": st.one_of(st.sampled_from(["serving_default", "single", "multi", "sleep", "generate",
                                                         "sample"]), text, scalars),
            "instances": values, "inputs": values}),
        values)
    segment = st.one_of(st.sampled_from(["toy", "gen", "broken", "versions", "1", "0", "metadata", ":predict",
                                         "%C2%B2", "%ED%A0%80", "%2e%2e", "..", "9" * 30]), text)
    paths = st.builds(lambda parts, verb: "/v1/models/" + "/".join(parts) + verb,
                      st.lists(segment, max_size=4), st.sampled_from(["", ":predict", ":classify", "/metadata", ":"]))
    return paths, bodies


def test_fuzz_paths_and_bodies_never_get_a_5xx(server: Any) -> None:
    from hypothesis import HealthCheck, given, settings

    paths, bodies = _fuzz_strategies()
    tried = [0]

    @settings(max_examples=250, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(path=paths, body=bodies, model=st_models())
    def check(path: str, body: Any, model: str) -> None:
        tried[0] += 1
        quoted = urllib.parse.quote(path, safe="/:%", errors="surrogatepass")
        payload = json.dumps(body).encode()
        for method, where in (("POST", quoted), ("GET", quoted), ("POST", f"/v1/models/{model}:predict")):
            status, answer, kind = raw(server.url, method, where, payload if method == "POST" else None)
            assert status < 500, (method, where, body, answer[:300])
            assert kind.startswith("application/json"), (where, kind, answer[:300])
            json.loads(answer)
        assert_serves(server.url)

    check()
    assert tried[0] >= 100


def st_models() -> Any:
    from hypothesis import strategies as st

    return st.sampled_from(["toy", "gen"])


def test_fuzz_raw_bytes_never_get_a_5xx(server: Any) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    fragments = st.sampled_from([b"{", b"}", b"[", b"]", b",", b":", b'"instances"', b'"inputs"', b'"b64"', b"1e999",
                                 b"NaN", b"-0", b"true", b"null", b'"\\ud800"', b'"\\udfff\\ud800"', b"\xff", b"\xc3",
                                 b'"signature_name"', b'"multi"', b"1", b"2.5", b'"a"', b" ", b"\x00"])
    bodies = st.one_of(st.binary(max_size=64), st.lists(fragments, max_size=40).map(b"".join))

    @settings(max_examples=250, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=bodies, model=st_models())
    def check(body: bytes, model: str) -> None:
        status, answer, kind = raw(server.url, "POST", f"/v1/models/{model}:predict", body)
        assert status < 500 and kind.startswith("application/json"), (body, status, answer[:300])
        json.loads(answer)
        assert_serves(server.url)

    check()
