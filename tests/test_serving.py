"""`rnnpipe serve` over loopback with real HTTP: TF Serving's REST API, its errors, hot loading.

One server process (the CLI, as users start it) serves a folder of models: hand-made toy
SavedModels whose answers are known exactly, the session's tiny names export, a broken
version and a symlink pointing out of the folder.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.serving import ServerProcess, call
from tests.serving_support import TOY_ROWS, assert_serves, predict, toy_saved_model, wait_available, wait_for


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, names_run: Any) -> Path:
    base = tmp_path_factory.mktemp("served")
    toy_saved_model(base / "toy" / "1")
    shutil.copytree(base / "toy" / "1", base / "hot" / "1")
    shutil.copytree(names_run[1].export_path, base / "names" / "1")
    (base / "broken" / "1").mkdir(parents=True)
    (base / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    outside = tmp_path_factory.mktemp("outside")
    shutil.copytree(base / "toy" / "1", outside / "9")
    os.symlink(outside / "9", base / "toy" / "9")  # points out of the base: never served
    return base


@pytest.fixture(scope="module")
def server(served: Path) -> Any:
    with ServerProcess(served, "--timeout", "3", "--max-request-bytes", "200000", "--poll-seconds", "0.2") as url:
        yield url


# --------------------------------------------------------------------------------------------
# Status and metadata


def test_version_status(server: str) -> None:
    status, body = call(f"{server}/v1/models/toy")
    assert status == 200
    assert body == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert call(f"{server}/v1/models/toy/versions/1")[1] == body
    status, body = call(f"{server}/v1/models/broken")
    assert status == 200 and body["model_version_status"][0]["state"] == "END"
    assert body["model_version_status"][0]["status"]["error_message"]


def test_metadata_lists_signatures(server: str) -> None:
    status, body = call(f"{server}/v1/models/toy/metadata")
    assert status == 200 and body["model_spec"] == {"name": "toy", "signature_name": "", "version": "1"}
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"serving_default", "single", "multi", "sleep"}
    multi = defs["multi"]["inputs"]
    assert multi["text"]["dtype"] == "DT_STRING" and multi["ids"]["dtype"] == "DT_INT32"
    assert multi["ids"]["tensor_shape"]["dim"] == [{"size": "-1"}, {"size": "2"}]
    assert defs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    status, body = call(f"{server}/v1/models/names/versions/1/metadata")
    names = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert names["inputs"]["inputs"]["dtype"] == "DT_STRING"
    assert set(names["outputs"]) == {"label", "probabilities"}


# --------------------------------------------------------------------------------------------
# Both request formats


def test_row_and_columnar_formats(server: str) -> None:
    assert_serves(server)
    rows = predict(server, {"instances": [{"x": TOY_ROWS[0]}]})[1]
    assert rows == {"predictions": [{"y": [1.0, 2.0, 3.0], "total": 6.0}]}
    cols = predict(server, {"inputs": TOY_ROWS})[1]
    assert cols == {"outputs": {"y": TOY_ROWS, "total": [6.0, 15.5]}}
    assert predict(server, {"inputs": {"x": TOY_ROWS}})[1] == cols
    assert predict(server, {"inputs": TOY_ROWS}, version=1)[1] == cols
    single = {"signature_name": "single"}
    assert predict(server, {**single, "instances": [1, 2.5]})[1] == {"predictions": [2.0, 5.0]}
    assert predict(server, {**single, "inputs": [1, 2.5]})[1] == {"outputs": [2.0, 5.0]}


def test_strings_ints_scalars_and_b64(server: str) -> None:
    b64 = base64.b64encode("né".encode()).decode()
    body = {"signature_name": "multi", "instances": [
        {"text": {"b64": b64}, "ids": [1, 2], "k": 3}, {"text": "ab", "ids": [3, 4], "k": 3}]}
    status, answer = predict(server, body)
    assert status == 200, answer
    assert answer["predictions"] == [{"upper": "Né", "length": 3, "ids": [3, 6]},
                                     {"upper": "AB", "length": 2, "ids": [9, 12]}]
    status, answer = predict(server, {"signature_name": "multi",
                                      "inputs": {"text": ["x"], "ids": [[5, 6]], "k": -1}})
    assert answer == {"outputs": {"upper": ["X"], "length": [1], "ids": [[-5, -6]]}}


def test_names_export_answers_like_in_process(server: str, names_run: Any) -> None:
    import tensorflow as tf

    names = ["Mary", "john", "Zoë", "x"]
    wait_available(server, "names", 1)  # loaded by the poller, not on demand within --timeout
    status, body = predict(server, {"instances": names}, model="names")
    assert status == 200, body
    fn = tf.saved_model.load(names_run[1].export_path).signatures["serving_default"]
    local = fn(inputs=tf.constant(names))
    assert [p["label"] for p in body["predictions"]] == [s.decode() for s in local["label"].numpy()]
    np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]], local["probabilities"].numpy(),
                               atol=1e-5)
    assert predict(server, {"inputs": names}, model="names")[1]["outputs"]["label"] == \
        [p["label"] for p in body["predictions"]]


# --------------------------------------------------------------------------------------------
# Errors: status, {"error": ...}, and the server still answers right after


def nested(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = [value]
    return value


BAD_REQUESTS = {
    "malformed json": (b'{"instances": [[1, 2', 400, "JSON Parse error"),
    "not an object": (b"[[1, 2, 3]]", 400, "JSON object"),
    "invalid utf-8": (b'{"instances": ["\xff"]}', 400, "JSON Parse error"),
    "wrong shape": ({"instances": [[1, 2]]}, 400, "shape"),
    "wrong rank": ({"instances": [1, 2, 3]}, 400, "shape"),
    "ragged rows": ({"instances": [[1, 2, 3], [1, 2]]}, 400, "unequal lengths"),
    "strings for floats": ({"instances": [["a", "b", "c"]]}, 400, "expects float32"),
    "booleans for floats": ({"instances": [[True, False, True]]}, 400, "expects float32"),
    "null value": ({"instances": [[1, None, 3]]}, 400, "expects float32"),
    "both formats": ({"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, 400, "not both"),
    "neither format": ({"signature_name": "serving_default"}, 400, "found neither"),
    "NaN": (b'{"instances": [[NaN, 1, 2]]}', 400, "NaN"),
    "Infinity": (b'{"instances": [[1, -Infinity, 2]]}', 400, "NaN and Infinity"),
    "too big for float32": ({"instances": [[1e39, 1, 2]]}, 400, "too large"),
    "empty instances": ({"instances": []}, 400, "empty"),
    "empty inputs": ({"inputs": []}, 400, "empty"),
    "nested too deep": ({"instances": nested(40)}, 400, "nested too deep"),
    "nested past the parser": (b"[" * 60000 + b"]" * 60000, 400, "nested too deep"),
    "unknown signature": ({"signature_name": "nope", "instances": [[1, 2, 3]]}, 400, "not found"),
    "signature name not a string": ({"signature_name": 3, "instances": [[1, 2, 3]]}, 400, "must be a string"),
    "unknown key": ({"instance": [[1, 2, 3]]}, 400, "exactly one of"),
    "missing input": ({"signature_name": "multi", "instances": [{"text": "a", "ids": [1, 2]}]}, 400, "missing"),
    "unnamed multi-input": ({"signature_name": "multi", "instances": ["a"]}, 400, "several inputs"),
    "differing scalars": ({"signature_name": "multi", "instances": [{"text": "a", "ids": [1, 2], "k": 1},
                                                                    {"text": "b", "ids": [1, 2], "k": 2}]},
                          400, "same value"),
    "floats for ints": ({"signature_name": "multi", "inputs": {"text": ["a"], "ids": [[1.5, 2]], "k": 1}},
                        400, "expects int32"),
    "int out of range": ({"signature_name": "multi", "inputs": {"text": ["a"], "ids": [[1, 2 ** 40]], "k": 1}},
                         400, "out of range"),
    "numbers for strings": ({"signature_name": "multi", "inputs": {"text": [7], "ids": [[1, 2]], "k": 1}},
                            400, "expects strings"),
    "bad base64": ({"signature_name": "multi", "inputs": {"text": [{"b64": "!!"}], "ids": [[1, 2]], "k": 1}},
                   400, "base64"),
    "unsupported verb": ("classify", 400, "not supported"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_400_and_the_server_keeps_serving(server: str, case: str) -> None:
    body, code, text = BAD_REQUESTS[case]
    if body == "classify":
        status, answer = call(f"{server}/v1/models/toy:classify", {"instances": TOY_ROWS})
    else:
        status, answer = predict(server, body)
    assert status == code, answer
    assert set(answer) == {"error"} and text in answer["error"], answer
    assert_serves(server)


@pytest.mark.parametrize("path", [
    "/v1/models/nope:predict", "/v1/models/toy/versions/5:predict", "/v1/models/toy/versions/9:predict",
    "/v1/models/toy/versions/abc:predict", "/v1/models/toy/versions/..:predict",
    "/v1/models/..%2F..%2Fetc:predict", "/v1/models/%2e%2e/versions/1:predict", "/v1/models/broken:predict",
    "/v2/models/toy:predict"])
def test_unknown_model_or_version_gets_404(server: str, path: str) -> None:
    status, answer = call(server + path, {"instances": TOY_ROWS})
    assert status == 404 and set(answer) == {"error"}, answer
    assert_serves(server)


def test_status_of_unknown_things_is_404_and_wrong_method_405(server: str) -> None:
    assert call(f"{server}/v1/models/nope")[0] == 404
    assert call(f"{server}/v1/models/toy/versions/9")[0] == 404  # the symlink out of the base
    assert call(f"{server}/v1/models/toy:predict")[0] == 405  # GET
    assert call(f"{server}/v1/models/toy", {"instances": TOY_ROWS})[0] == 405  # POST on status


def test_body_over_the_limit_gets_413(server: str) -> None:
    big = {"instances": [[1.0, 2.0, 3.0]] * 20000}
    status, answer = predict(server, big)
    assert status == 413 and "--max-request-bytes" in answer["error"]
    assert_serves(server)


def test_slow_request_gets_504_and_others_are_still_served(server: str) -> None:
    status, answer = predict(server, {"signature_name": "sleep", "inputs": 12.0})  # --timeout 3
    assert status == 504 and "Timed out" in answer["error"], answer  # only the timeout answers 504
    assert_serves(server)  # another signature, another worker: not stuck behind the slow one
    # the same signature answers again once the slow call is done (waited for, not timed)
    wait_for(lambda: predict(server, {"signature_name": "sleep", "inputs": 0.0})[0] == 200,
             "the sleep signature to answer again", timeout=120)


# --------------------------------------------------------------------------------------------
# Hot loading and concurrency


def test_new_version_is_picked_up_without_restart(server: str, served: Path, tmp_path: Path) -> None:
    staged = toy_saved_model(served / "hot" / ".staging", scale=2.0)
    os.rename(staged, served / "hot" / "2")  # atomic, as the export stage publishes

    wait_available(server, "hot", 2)
    assert predict(server, {"inputs": [[1, 2, 3]]}, model="hot")[1]["outputs"]["y"] == [[2.0, 4.0, 6.0]]
    assert predict(server, {"inputs": [[1, 2, 3]]}, model="hot", version=1)[1]["outputs"]["y"] == [[1.0, 2.0, 3.0]]
    shutil.rmtree(served / "hot" / "2")  # removed on disk: unloaded, version 1 answers again
    wait_for(lambda: [r["version"] for r in call(f"{server}/v1/models/hot")[1]["model_version_status"]] == ["1"])
    assert predict(server, {"inputs": [[1, 2, 3]]}, model="hot")[1]["outputs"]["y"] == [[1.0, 2.0, 3.0]]


def test_concurrent_clients_each_get_their_own_answer(server: str) -> None:
    errors: list[str] = []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(6):
            rows = rng.integers(-50, 50, size=(int(rng.integers(1, 5)), 3)).astype(float).tolist()
            status, body = predict(server, {"instances": rows} if seed % 2 else {"inputs": rows})
            got = [p["y"] for p in body["predictions"]] if seed % 2 else body["outputs"]["y"]
            if status != 200 or got != rows:
                errors.append(f"{status} {rows} -> {body}")
            values = rng.integers(0, 9, size=int(rng.integers(1, 4))).astype(float).tolist()
            status, body = predict(server, {"signature_name": "single", "instances": values})
            if status != 200 or body["predictions"] != [2 * v for v in values]:
                errors.append(f"single {values} -> {body}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def test_prometheus_metrics_count_responses_and_batches(server: str) -> None:
    import re

    def scrape() -> dict[str, float]:
        status, text = call(f"{server}/monitoring/prometheus/metrics")
        assert status == 200, text
        return {key: float(value) for key, value in re.findall(r"^(\S+\}) (\S+)$", text, re.M)}

    toy = 'model="toy",version="1",signature="serving_default"}'
    before = scrape()
    for _ in range(5):  # one after another: each runs as its own batch
        assert predict(server, {"instances": TOY_ROWS})[0] == 200
    assert predict(server, {"instances": [[1, 2]]})[0] == 400
    after = scrape()

    def grew(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew('rnnpipe_http_responses_total{code="400"}') == 1
    assert grew('rnnpipe_http_responses_total{code="200"}') >= 5
    assert grew("rnnpipe_batched_requests_total{" + toy) == 5
    assert grew("rnnpipe_batched_batches_total{" + toy) == 5
    assert grew("rnnpipe_batched_rows_total{" + toy) == 5 * len(TOY_ROWS)


def test_serve_binds_loopback_by_default() -> None:
    from pipeline.cli import parser

    args = parser().parse_args(["serve", "exports/x"])
    assert (args.host, args.port, args.timeout) == ("127.0.0.1", 8501, 30.0)


def test_missing_base_is_a_clear_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pipeline.cli import main

    assert main(["serve", str(tmp_path / "nothing")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_repository_only_sees_numeric_folders_with_a_saved_model(tmp_path: Path) -> None:
    from components.serving import Repository

    base = tmp_path / "m"
    for name in ("1", "12", "x3", ".tmp-4", "5"):
        (base / name).mkdir(parents=True)
    for name in ("1", "12", "x3", ".tmp-4"):
        (base / name / "saved_model.pb").write_bytes(b"")
    repo = Repository(base)
    assert list(repo.models) == ["m"] and sorted(repo.models["m"].on_disk) == [1, 12]
    parent = Repository(tmp_path)  # a folder of model bases: one model per child
    assert list(parent.models) == ["m"]
    assert json.loads(json.dumps(parent.status("m", None)))["model_version_status"][0]["version"] == "12"
