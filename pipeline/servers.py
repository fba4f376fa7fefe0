"""Local helper servers (`mlflow models serve`, `mlflow server`, `rnnpipe ui`) on loopback ports,
and helper processes that never outlive their parent.

`local_server(argv, health)` starts a command in its own process group on a free 127.0.0.1
port, waits until `GET <health>` answers 200, yields the base URL and ends the whole group
(uvicorn/gunicorn workers included) afterwards. `rnnpipe serve` has its own, race-free start
(`components.serving.ServerProcess`: it binds port 0 and reports the port).

Process hygiene: `spawn(argv)` starts a helper in its own process group under a small guard
(`python -m pipeline.servers --guard -- argv`). The guard gets SIGTERM when its parent dies,
even by `kill -9` (Linux parent-death signal, prctl(PR_SET_PDEATHSIG) in preexec_fn), and
then ends the whole group: the helper and every process it started (uvicorn or gunicorn
workers). `die_with_parent` is the preexec_fn for a single-process child (the `rnnpipe
serve` of infra validation). The death signal follows the thread that started the child:
start helpers from a thread that outlives them (the main thread).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 10.0  # how long the guard waits for the group after SIGTERM before SIGKILL


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A Popen preexec_fn: the child gets `sig` when this process dies (Linux; elsewhere a no-op),
    and exits at once if this process is already gone.

    Everything is looked up here, in the parent: between fork and exec the child only calls
    prctl and getppid (no import, no lock another thread could hold).
    """
    parent = os.getpid()
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    except (OSError, AttributeError):  # not Linux / no libc: nothing to set
        return lambda: None
    number = int(sig)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, number, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def spawn(argv: Sequence[str], **popen: Any) -> subprocess.Popen:
    """Start `argv` under a guard, in a new process group that dies with this process.

    Stop it with `stop_group(proc)` (SIGTERM to the group, SIGKILL after a grace period).
    """
    root = Path(__file__).resolve().parent.parent
    env = dict(popen.pop("env", None) or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "pipeline.servers", "--guard", "--", *argv], env=env,
                            start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM), **popen)


def stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """End a spawned process group: SIGTERM to all, then SIGKILL to whatever is left after `grace` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # stragglers (workers) of a guard that exited
        os.killpg(proc.pid, signal.SIGKILL)


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
        proc = spawn([a.replace("{port}", str(port)) for a in argv], stdout=log, stderr=subprocess.STDOUT,
                     env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout
        while not answers(url + health):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(log_path).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"`{' '.join(argv[:4])} ...` did not come up on {url}:\n{tail}")
            time.sleep(0.25)
        yield url
    finally:
        stop_group(proc)


if __name__ == "__main__" and sys.argv[1:2] == ["--guard"]:
    sys.exit(guard(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]))
