"""Issue 15, server side: batched answers, readiness, retries, no leaked paths, slow clients, names export."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from components.serving import EXPORT_INFO, Options, ServerThread, call
from tests import hardening_support
from tests.hardening_support import raw
from tests.serving_support import TOY_ROWS, assert_serves, predict, toy_saved_model, wait_for

base, server = hardening_support.base, hardening_support.server  # the shared module-scoped fixtures


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
    assert len(results) == 20  # every client thread finished (an exception in one would lose its answers)
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
        assert len(results) == 16  # every client thread finished
        assert {(text, status) for text, status in results} == {("", 400), ("Anna", 200), ("Bob", 200)}
