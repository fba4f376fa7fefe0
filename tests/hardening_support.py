"""Shared by the serving hardening tests: a hand-made generator export, the hardened server, raw requests."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from components.serving import EXPORT_INFO, Options, ServerThread
from tests.serving_support import toy_saved_model

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
