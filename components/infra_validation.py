"""Infra-validation stage (TFX InfraValidator): the export loads and answers in a fresh process.

inputs -> outputs: export, preprocess -> `canary.json` (requests, answers, agreement).

A new Python process that never imports this project loads the SavedModel with
`tf.saved_model.load`, answers canary inputs from the test split through `serving_default`,
and its answers must equal the ones computed here in-process. Any failure fails the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import ExportConfig

CANARIES = 8

LOADER = r"""
import json, sys
import numpy as np, tensorflow as tf
path, inputs = sys.argv[1], json.loads(sys.stdin.read())
fn = tf.saved_model.load(path).signatures["serving_default"]
spec = fn.structured_input_signature[1]["inputs"]
out = fn(inputs=tf.constant(inputs, dtype=spec.dtype))
print(json.dumps({k: (v.numpy().astype(str) if v.dtype == tf.string else v.numpy()).tolist()
                  for k, v in out.items()}))
"""


class InfraValidationError(RuntimeError):
    """The exported model failed to load or to answer like the in-process model."""


def canary_inputs(preprocess: Any, n: int = CANARIES) -> list[Any]:
    lines = preprocess.path("test_raw.jsonl").read_text().splitlines()[:n]
    return [json.loads(line)["x"] for line in lines]


def fresh_process_predict(path: str, inputs: list[Any], timeout: float = 180) -> dict[str, Any]:
    """Load the SavedModel in a new interpreter (no project imports) and predict."""
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, path], input=json.dumps(inputs), capture_output=True,
        text=True, timeout=timeout, cwd="/", env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    if proc.returncode != 0:
        raise InfraValidationError(f"export {path} failed to load or answer: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def in_process_predict(path: str, inputs: list[Any]) -> dict[str, Any]:
    import tensorflow as tf

    fn = tf.saved_model.load(path).signatures["serving_default"]
    spec = fn.structured_input_signature[1]["inputs"]
    out = fn(inputs=tf.constant(inputs, dtype=spec.dtype))
    return {k: (v.numpy().astype(str) if v.dtype == tf.string else v.numpy()).tolist() for k, v in out.items()}


def agree(a: dict[str, Any], b: dict[str, Any], atol: float = 1e-4) -> list[str]:
    """Names of outputs that differ between two answers."""
    bad = []
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b.get(key))
        same = (x.shape == y.shape and (np.allclose(x, y, atol=atol) if x.dtype.kind in "fiu" else (x == y).all()))
        if not same:
            bad.append(key)
    return bad


def run(inputs: dict, workdir: Path, ctx: Any, *, export: ExportConfig) -> dict[str, Any]:
    """Load the new export in a fresh process, send canaries, compare with in-process answers."""
    if not export.infra_validate:
        return {"summary": "skipped (export.infra_validate=false)"}
    path = inputs["export"].properties["path"]
    canaries = canary_inputs(inputs["preprocess"])
    remote = fresh_process_predict(path, canaries)
    local = in_process_predict(path, canaries)
    mismatched = agree(local, remote)
    (workdir / "canary.json").write_text(json.dumps({"inputs": canaries, "answers": remote}, indent=1))
    if mismatched:
        raise InfraValidationError(f"export {path}: fresh-process answers differ on {mismatched}")
    return {"summary": f"{len(canaries)} canaries answered identically in a fresh process",
            "tags": {"infra_validated": "true"}}
