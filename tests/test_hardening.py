"""Issue 15: no request can hang, exhaust or crash `rnnpipe serve` (bounded work, JSON 4xx for
any client input, consistent answers alone or batched, readiness, retries, no leaked paths,
slow clients closed), plus a property-based fuzz test over paths and bodies.

One in-process server (components.serving.ServerThread) on hand-made SavedModels: the toy
model of tests/serving_support.py and a tiny "generator" export that declares its contract
(classes, generate limits, token input) the way components/export.py writes it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from components.serving import EXPORT_INFO, Options, ServerThread, call
from tests.serving_support import TOY_ROWS, assert_serves, predict, toy_saved_model, wait_for

LIMITS = {"max_rows": 50, "max_elements": 5000, "max_string_bytes": 64}
CONTRACT = {"inputs": {"kind": "tokens"}, "classes": ["short", "long"],
            "generate": {"max_beam_width": 4, "max_length": 64, "default_length": 5}}


def generator_saved_model(path: Path) -> Path:
    """serving_default: text -> {label, probabilities} (fails on an all-empty batch, as an RNN
    with zero steps does); generate: text, max_length, beam_width -> {tokens, scores};
    sample: text, max_length, temperature -> {tokens}; with its serving contract."""
    import tensorflow as tf

    class Gen(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def serve(self, inputs: Any) -> dict[str, Any]:
            length = tf.cast(tf.strings.length(inputs), tf.float32)
            check = tf.debugging.assert_greater(tf.reduce_max(length), 0.0, message="zero-length sequences")
            with tf.control_dependencies([check]):
                probs = tf.stack([1.0 / (1.0 + length), length / (1.0 + length)], -1)
            return {"label": tf.gather(tf.constant(["short", "long"]), tf.argmax(probs, -1)), "probabilities": probs}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs"),
                                      tf.TensorSpec([], tf.int32, name="max_length"),
                                      tf.TensorSpec([], tf.int32, name="beam_width")])
        def generate(self, inputs: Any, max_length: Any, beam_width: Any) -> dict[str, Any]:
            tokens = tf.strings.substr(tf.strings.join([inputs, inputs, inputs, inputs]), 0, max_length)
            return {"tokens": tokens, "scores": tf.cast(tf.strings.length(tokens) * beam_width, tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs"),
                                      tf.TensorSpec([], tf.int32, name="max_length"),
                                      tf.TensorSpec([], tf.float32, name="temperature")])
        def sample(self, inputs: Any, max_length: Any, temperature: Any) -> dict[str, Any]:
            return {"tokens": tf.strings.substr(inputs, 0, max_length)}

    gen = Gen()
    tf.saved_model.save(gen, str(path), signatures={"serving_default": gen.serve, "generate": gen.generate,
                                                    "sample": gen.sample})
    (path / EXPORT_INFO).parent.mkdir(parents=True, exist_ok=True)
    (path / EXPORT_INFO).write_text(json.dumps(CONTRACT))
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hardened")
    toy_saved_model(root / "toy" / "1")
    generator_saved_model(root / "gen" / "1")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    return root


@pytest.fixture(scope="module")
def server(base: Path) -> Any:
    options = Options(timeout=5, poll_seconds=0.2, header_timeout=1, body_timeout=1, keep_alive=1, **LIMITS)
    thread = ServerThread(base, options)
    with thread as url:
        thread.url = url
        yield thread


class RawConnection(http.client.HTTPConnection):
    """Sends the request line as UTF-8 bytes (http.client insists on ASCII)."""

    def _encode_request(self, request: str) -> bytes:
        return request.encode("utf-8", "surrogatepass")


def raw(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, str]:
    """One request with an arbitrary (ASCII) path and raw body -> (status, body, content type)."""
    parsed = urllib.parse.urlsplit(url)
    conn = RawConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("content-type") or ""
    finally:
        conn.close()


def assert_json_4xx(status: int, payload: bytes, kind: str) -> dict[str, Any]:
    assert 400 <= status < 500, (status, payload[:300])
    assert kind.startswith("application/json"), (kind, payload[:300])
    answer = json.loads(payload)
    assert set(answer) == {"error"}, answer
    return answer


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
# Consistent answers: alone or batched


def test_empty_text_gets_the_same_400_alone_and_batched(server: Any) -> None:
    alone = predict(server.url, {"instances": [""]}, model="gen")
    assert alone[0] == 400 and "empty or blank" in alone[1]["error"], alone
    results: list[tuple[int, Any]] = []

    def client(body: dict[str, Any]) -> None:
        for _ in range(5):
            results.append((body["instances"][0], predict(server.url, body, model="gen")))

    threads = [threading.Thread(target=client, args=({"instances": [text]},)) for text in ("", "ab", " ", "abc")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for text, (status, answer) in results:
        if text.strip():
            assert status == 200 and answer["predictions"][0]["label"] == "long", (text, answer)
        else:
            assert status == 400 and "empty or blank" in answer["error"], (text, answer)


def test_a_failing_batch_is_rerun_request_by_request() -> None:
    """A request that fails inside a merged batch fails alone; the others still get their answer."""
    import numpy as np

    from components.serving import Batcher, BatchPolicy, ServingError

    gate, entered = threading.Event(), threading.Event()
    calls: list[int] = []

    class Fake:
        name, batchable = "fake", True

        def __call__(self, tensors: dict[str, Any]) -> dict[str, Any]:
            calls.append(len(tensors["x"]))
            entered.set()
            gate.wait(30)
            if (tensors["x"] < 0).any():
                raise ServingError(400, "negative")
            return {"y": tensors["x"] * 2}

    batcher = Batcher(Fake(), BatchPolicy())
    first = batcher.submit({"x": np.array([1.0])}, 1, "k")
    assert entered.wait(30)  # the worker runs `first` alone; the next two queue up behind it
    bad = batcher.submit({"x": np.array([-1.0])}, 1, "k")
    good = batcher.submit({"x": np.array([3.0])}, 1, "k")
    gate.set()
    assert first.result(30)["y"].tolist() == [2.0]
    with pytest.raises(ServingError, match="negative"):
        bad.result(30)
    assert good.result(30)["y"].tolist() == [6.0]
    assert calls == [1, 2, 1, 1]  # first; bad+good merged (fails); then each alone
    batcher.stop()


# --------------------------------------------------------------------------------------------
# Readiness, retries, class names, no server paths in errors


def test_metadata_and_classifier_answers_name_the_classes(server: Any) -> None:
    status, meta = call(f"{server.url}/v1/models/gen/metadata")
    assert status == 200 and meta["metadata"]["classes"] == ["short", "long"], meta
    assert meta["metadata"]["limits"]["max_generate_length"] == 20
    assert meta["metadata"]["limits"]["max_beam_width"] == 4
    status, answer = predict(server.url, {"instances": ["a", "abcdef"]}, model="gen")
    assert status == 200 and answer["classes"] == ["short", "long"], answer
    assert [p["label"] for p in answer["predictions"]] == ["short", "long"]
    assert set(answer["predictions"][0]) == {"label", "probabilities"}
    assert "classes" not in predict(server.url, {"instances": TOY_ROWS})[1]


def test_errors_never_show_server_paths(server: Any, base: Path) -> None:
    status, body = call(f"{server.url}/v1/models/broken")
    message = body["model_version_status"][0]["status"]["error_message"]
    assert message and str(base) not in message and "/tmp" not in message, message
    status, body = predict(server.url, {"instances": TOY_ROWS}, model="broken")
    assert status == 404 and str(base) not in body["error"] and "/tmp" not in body["error"], body


def test_a_version_whose_load_failed_is_retried(server: Any, base: Path, tmp_path: Path) -> None:
    flaky = base / "flaky" / "1"
    flaky.mkdir(parents=True)
    (flaky / "saved_model.pb").write_bytes(b"half copied")

    def state() -> str:
        status, body = call(f"{server.url}/v1/models/flaky")
        return body["model_version_status"][0]["state"] if status == 200 else ""

    wait_for(lambda: state() == "END")
    good = toy_saved_model(tmp_path / "good", scale=3.0)
    shutil.copytree(good / "variables", flaky / "variables")
    shutil.copy(good / "saved_model.pb", flaky / "saved_model.pb")  # the copy finishes in place
    wait_for(lambda: state() == "AVAILABLE")
    assert predict(server.url, {"inputs": [[1, 1, 1]]}, model="flaky")[1]["outputs"]["total"] == [9.0]


def test_predict_waits_for_a_loading_version_then_503(server: Any, base: Path, monkeypatch: Any) -> None:
    from components import serving

    release = threading.Event()
    real = serving.Servable.load

    def slow(cls: Any, name: str, *args: Any) -> Any:
        if name == "late":
            release.wait(60)
        return real(name, *args)

    monkeypatch.setattr(serving.Servable, "load", classmethod(slow))
    toy_saved_model(base / ".late-staging")
    (base / "late").mkdir()
    os.rename(base / ".late-staging", base / "late" / "1")
    try:
        wait_for(lambda: call(f"{server.url}/v1/models/late")[0] == 200)
        wait_for(lambda: call(f"{server.url}/v1/models/late")[1]["model_version_status"][0]["state"] == "LOADING")
        status, answer = predict(server.url, {"instances": TOY_ROWS}, model="late")  # waits --timeout, then 503
        assert status == 503 and "LOADING" in answer["error"], answer
        assert_serves(server.url)  # other models are not held up
    finally:
        release.set()
    wait_for(lambda: call(f"{server.url}/v1/models/late")[1]["model_version_status"][0]["state"] == "AVAILABLE")
    assert predict(server.url, {"instances": TOY_ROWS}, model="late")[0] == 200


def test_unknown_versions_leave_nothing_behind(server: Any) -> None:
    repo = server.app.state.repository
    for version in range(1000, 1300):
        assert predict(server.url, {"instances": TOY_ROWS}, version=version)[0] == 404
    assert not repo.pending and all(key[1] < 1000 for key in repo.retries)


# --------------------------------------------------------------------------------------------
# Connection hygiene: idle, header-trickling and slow-body clients are closed


def closed_by_server(sock: socket.socket, trickle: bytes = b"") -> bytes:
    """Read (sending `trickle` one byte at a time meanwhile) until the server closes; what it sent."""
    sock.settimeout(0.2)
    received, deadline = b"", time.monotonic() + 60
    for byte in [trickle[i:i + 1] for i in range(len(trickle))] + [b""] * 10_000:
        assert time.monotonic() < deadline, "the server kept a slow client open"
        try:
            if byte:
                sock.sendall(byte)
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return received
    raise AssertionError("the server kept a slow client open")


@pytest.mark.parametrize("kind", ["idle", "header trickle", "slow body"])
def test_slow_clients_are_closed(server: Any, kind: str) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        if kind == "idle":
            got = closed_by_server(sock)
        elif kind == "header trickle":
            headers = b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 500
            got = closed_by_server(sock, headers)
        else:
            sock.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\ncontent-length: 1000\r\n\r\n{\"in")
            got = closed_by_server(sock)
            assert b" 408 " in got.split(b"\r\n")[0] and b"--body-timeout" in got, got[:300]
    assert_serves(server.url)


def test_connections_over_the_limit_get_a_json_503(base: Path) -> None:
    with ServerThread(base / "toy", Options(max_connections=3, header_timeout=60)) as url:
        port = int(url.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            deadline, seen = time.monotonic() + 60, None
            while seen is None:
                assert time.monotonic() < deadline, "never refused"
                status, payload, kind = raw(url, "GET", "/v1/models/toy")
                assert status in (200, 503) and kind.startswith("application/json"), (status, payload)
                if status == 503:
                    seen = json.loads(payload)
            assert "--max-connections" in seen["error"], seen
        finally:
            for sock in held:
                sock.close()
        wait_for(lambda: raw(url, "GET", "/v1/models/toy")[0] == 200)


def test_huge_headers_get_a_json_400_and_a_closed_connection(server: Any) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(60)
        head = b"GET /v1/models/toy HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n"
        try:
            sock.sendall(head)
        except (ConnectionResetError, BrokenPipeError):
            pass
        got = closed_by_server(sock)
    assert got.startswith(b"HTTP/1.1 400") and b"application/json" in got and b"over 65536 bytes" in got, got[:300]
    assert_serves(server.url)


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


# --------------------------------------------------------------------------------------------
# The real names export: class names, empty names alone and batched


def test_names_export_declares_its_classes_and_refuses_empty_names(names_run: Any, tmp_path: Path) -> None:
    base = tmp_path / "names"
    shutil.copytree(names_run[1].export_path, base / "1")
    contract = json.loads((base / "1" / EXPORT_INFO).read_text())
    assert contract["classes"] == sorted(contract["classes"]) and len(contract["classes"]) == 2
    card = (base / "1" / "model_card.md").read_text()
    assert "Classes, in the order of the `probabilities` output: " + ", ".join(
        f"`{c}`" for c in contract["classes"]) in card
    with ServerThread(base, Options(timeout=30)) as url:
        status, meta = call(f"{url}/v1/models/names/metadata")
        assert status == 200 and meta["metadata"]["classes"] == contract["classes"], meta
        status, answer = predict(url, {"instances": ["Mary", "John"]}, model="names")
        assert status == 200 and answer["classes"] == contract["classes"], answer
        for row in answer["predictions"]:
            best = max(range(2), key=lambda i: row["probabilities"][i])
            assert row["label"] == answer["classes"][best]
        results: list[tuple[str, int]] = []

        def client(text: str) -> None:
            for _ in range(4):
                results.append((text, predict(url, {"instances": [text]}, model="names")[0]))

        threads = [threading.Thread(target=client, args=(t,)) for t in ("", "Anna", "", "Bob")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {(text, status) for text, status in results} == {("", 400), ("Anna", 200), ("Bob", 200)}
