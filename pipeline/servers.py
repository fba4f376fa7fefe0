"""Local helper servers (`mlflow models serve`, `mlflow server`, `rnnpipe ui`) on loopback ports.

`local_server(argv, health)` starts a command in its own process group on a free 127.0.0.1
port, waits until `GET <health>` answers 200, yields the base URL and ends the whole group
(uvicorn/gunicorn workers included) afterwards. `rnnpipe serve` has its own, race-free start
(`components.serving.ServerProcess`: it binds port 0 and reports the port).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    """Whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def local_server(argv: Sequence[str], health: str, *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
                 log_path: str | Path | None = None, timeout: float = 180) -> Iterator[str]:
    """Run `argv` ("{port}" in it is replaced by a free port); yields http://127.0.0.1:<port>.

    Raises RuntimeError with the tail of its output when it exits or is not up within `timeout`.
    """
    port = free_port()
    if log_path is None:
        handle, log_path = tempfile.mkstemp(prefix="rnnpipe-server-", suffix=".log")
        os.close(handle)
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([a.replace("{port}", str(port)) for a in argv], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not answers(url + health):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(log_path).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"`{' '.join(argv[:4])} ...` did not come up on {url}:\n{tail}")
            time.sleep(0.25)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
