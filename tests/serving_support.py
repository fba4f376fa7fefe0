"""Shared helpers for the evaluation/export/serving/registry tests (not a test module).

- `toy_saved_model`: a hand-made SavedModel with several signatures (float, int, string,
  scalar and slow inputs) whose answers are known exactly, in about a second.
- `blessed_names_run`: the session's tiny names pipeline (tests/conftest.py `names_run`) taken
  on to a blessed, infra-validated, registered export; computed once per session.
- `predict`, `assert_serves`: calls against a running server (a base URL), shared by
  tests/test_serving.py (a ServerProcess) and tests/test_hardening.py (a ServerThread).
- `wait_for`, `wait_available`: poll a condition (a version AVAILABLE) with a deadline (no test sleeps a
  fixed time or asserts on one).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

_CACHE: dict[str, Any] = {}
TOY_ROWS = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]  # serving_default of toy_saved_model answers them exactly


def predict(url: str, body: Any, model: str = "toy", version: int | None = None) -> tuple[int, Any]:
    """POST `body` to `model`'s (or one version's) :predict on the server at `url`."""
    from components.serving import call

    where = f"/versions/{version}" if version is not None else ""
    return call(f"{url}/v1/models/{model}{where}:predict", body)


def assert_serves(url: str) -> None:
    """The toy model at `url` still answers exactly."""
    status, body = predict(url, {"instances": TOY_ROWS})
    assert status == 200, body
    assert body["predictions"][1] == {"y": [4.0, 5.0, 6.5], "total": 15.5}


def wait_for(check: Any, what: str = "the condition", timeout: float = 60) -> None:
    """Poll `check` until it is true; fail after `timeout` s (generous: a loaded CI box)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_available(url: str, model: str, version: int) -> None:
    """Wait until the server at `url` reports `model` `version` AVAILABLE (loaded by its poller)."""
    from components.serving import call

    def available() -> bool:
        status, body = call(f"{url}/v1/models/{model}")
        rows = body.get("model_version_status", []) if status == 200 else []
        return any(r["version"] == str(version) and r["state"] == "AVAILABLE" for r in rows)

    wait_for(available, f"{model} version {version} to be AVAILABLE")


def toy_saved_model(path: Path, scale: float = 1.0) -> Path:
    """A SavedModel: serving_default y = x * scale (+ row sums), `single` (one output),
    `multi` (string, int and scalar inputs), `sleep` (busy-waits `seconds`)."""
    import tensorflow as tf

    class Toy(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = tf.Variable(scale, dtype=tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": x * self.scale, "total": tf.reduce_sum(x, -1) * self.scale}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="v")])
        def single(self, v: Any) -> dict[str, Any]:
            return {"doubled": 2.0 * v * self.scale}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec([None, 2], tf.int32, name="ids"),
                                      tf.TensorSpec([], tf.int32, name="k")])
        def multi(self, text: Any, ids: Any, k: Any) -> dict[str, Any]:
            return {"upper": tf.strings.upper(text), "length": tf.strings.length(text), "ids": ids * k}

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32, name="seconds")])
        def sleep(self, seconds: Any) -> dict[str, Any]:
            start = tf.timestamp()
            waited = tf.while_loop(lambda t: t - start < tf.cast(seconds, tf.float64),
                                   lambda t: [tf.timestamp()], [start])
            return {"slept": tf.cast(waited - start, tf.float32)}

    toy = Toy()
    tf.saved_model.save(toy, str(path), signatures={"serving_default": toy.serve, "single": toy.single,
                                                    "multi": toy.multi, "sleep": toy.sleep})
    return path


def blessed_names_run(names_run: Any, tmp_path_factory: Any) -> tuple[Any, Any]:
    """(config, result) of the session's names pipeline, blessed (compare_to none), exported into
    its own folder, infra-validated and registered as `champion`; upstream stages are cached."""
    if "blessed" not in _CACHE:
        from components.config import with_overrides
        from pipeline import runner

        config, _ = names_run
        exports = tmp_path_factory.mktemp("blessed_exports")
        blessed = with_overrides(config, {"evaluate.compare_to": "none", "evaluate.min_test_examples": 0,
                                          "export.require_blessing": True, "export.dir": str(exports)})
        _CACHE["blessed"] = (blessed, runner.run(blessed, log=lambda _: None))
    return _CACHE["blessed"]
