"""The guard of a spawned helper (`python -m components.serving.guard -- argv`; see process.spawn).

It runs `argv` in its own process group and ends the whole group (the helper and every process
it started, e.g. uvicorn or gunicorn workers) when it gets SIGTERM/SIGINT/SIGHUP, which its
parent-death signal sends when the process that spawned it dies, even by `kill -9`.
Standard library only: it is started for every helper server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Sequence

GRACE_SECONDS = 10.0  # how long the guard waits for the group after SIGTERM before SIGKILL


def guard(argv: Sequence[str]) -> int:
    """Run `argv` in this process group; on SIGTERM/SIGINT/SIGHUP (or when `argv` exits) end the group."""
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    child = subprocess.Popen(list(argv))
    while child.poll() is None and not stopping:
        time.sleep(0.05)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(0, signal.SIGTERM)  # the child and everything it started
    deadline = time.monotonic() + GRACE_SECONDS
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if stopping:
        time.sleep(0.2)  # the group's other members (workers) react to SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.killpg(0, signal.SIGKILL)  # nothing of the group survives, the guard included
    return child.returncode if child.returncode is not None else 128 + stopping[0]


if __name__ == "__main__":
    sys.exit(guard(sys.argv[2:] if sys.argv[1:2] == ["--"] else sys.argv[1:]))
