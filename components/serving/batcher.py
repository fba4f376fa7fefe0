"""Inference on loaded signatures: `Signature` (one callable signature of a SavedModel) and
`Batcher` (runs it on its own thread, merging the requests that queue up meanwhile).

Inference runs off the event loop, on one worker thread per (version, signature), so a long
`generate` call never holds up `serving_default` (the timeout frees its caller). Requests that
queue up while it is busy are merged into one batch (TF Serving's batching, with no added wait:
a lone request runs at once) when the signature is row-independent, i.e. every output has a
leading batch dimension and fixed other dimensions; others run alone. A merged batch that fails
is rerun request by request, so one bad request never fails the others.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from components.serving.protocol import bad_request, scrub


@dataclass
class Signature:
    """One callable signature of a loaded SavedModel, with its input/output specs."""

    name: str
    fn: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    batchable: bool

    @classmethod
    def of(cls, name: str, fn: Any) -> Signature:
        inputs = dict(fn.structured_input_signature[1])
        outputs = dict(fn.structured_outputs)
        return cls(name, fn, inputs, outputs, _row_independent(outputs))

    def __call__(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            result = self.fn(**{k: tf.constant(v) for k, v in tensors.items()})
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError,
                tf.errors.FailedPreconditionError, ValueError, TypeError) as exc:
            text = getattr(exc, "message", None) or str(exc)
            text = scrub(text.strip().splitlines()[0][:2000]) if text.strip() else type(exc).__name__
            raise bad_request(text) from None
        return {k: v.numpy() for k, v in result.items()}


def _row_independent(outputs: dict[str, Any]) -> bool:
    """Rows can be merged and split again: a leading batch dim and fixed other dims."""
    for spec in outputs.values():
        dims = spec.shape.as_list() if spec.shape.rank is not None else None
        if not dims or dims[0] is not None or any(d is None for d in dims[1:]):
            return False
    return True


@dataclass
class BatchPolicy:
    """How requests are merged: at most `max_rows` rows; while more requests are on their way
    (`incoming()` > 0: arrived, not yet queued) wait up to `wait` seconds for them."""

    max_rows: int = 256
    wait: float = 0.002
    incoming: Callable[[], int] = lambda: 0


class Batcher:
    """Runs one signature on its own thread; requests queued meanwhile share one call.

    A lone request runs at once (no added latency); see BatchPolicy for the merging.
    """

    def __init__(self, signature: Signature, policy: BatchPolicy):
        self.signature = signature
        self.max_rows = policy.max_rows
        self.wait, self.incoming = policy.wait, policy.incoming
        self.jobs: collections.deque = collections.deque()
        self.cond = threading.Condition()
        self.stopped = False
        self.stats = {"requests": 0, "batches": 0, "rows": 0}
        self.thread = threading.Thread(target=self._loop, name=f"infer-{signature.name}", daemon=True)
        self.thread.start()

    def submit(self, tensors: dict[str, np.ndarray], rows: int | None, key: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self.cond:
            self.jobs.append((tensors, rows, key, future))
            self.cond.notify()
        return future

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify()

    def _take(self) -> list[tuple] | None:
        with self.cond:
            while not self.jobs and not self.stopped:
                self.cond.wait()
            if self.stopped and not self.jobs:
                return None
            first = self.jobs.popleft()
            batch, rows = [first], first[1] or 0
            if first[2] is None or not self.signature.batchable:
                return batch
            deadline = time.monotonic() + self.wait
            while True:
                keep = collections.deque()
                while self.jobs:
                    job = self.jobs.popleft()
                    if job[2] == first[2] and rows + job[1] <= self.max_rows:
                        batch.append(job)
                        rows += job[1]
                    else:
                        keep.append(job)
                self.jobs = keep
                left = deadline - time.monotonic()
                if left <= 0 or rows >= self.max_rows or keep or self.incoming() <= 0:
                    return batch
                self.cond.wait(left)

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            batch = [job for job in batch if job[3].set_running_or_notify_cancel()]  # timed out: skip
            if not batch:
                continue
            self.stats["requests"] += len(batch)
            self.stats["batches"] += 1
            self.stats["rows"] += sum(job[1] or 0 for job in batch)
            if len(batch) == 1:
                self._run_alone(batch[0])
                continue
            try:
                merged = {k: np.concatenate([job[0][k] for job in batch]) for k in batch[0][0]}
                out = self.signature(merged)
            except BaseException:  # noqa: BLE001 - one bad request must not fail the others: each alone
                for job in batch:
                    self._run_alone(job)
                continue
            start = 0
            for _, rows, _, future in batch:
                future.set_result({k: v[start:start + rows] for k, v in out.items()})
                start += rows

    def _run_alone(self, job: tuple) -> None:
        try:
            job[3].set_result(self.signature(job[0]))
        except BaseException as exc:  # noqa: BLE001 - the waiting request gets the error
            if not job[3].done():
                job[3].set_exception(exc)

