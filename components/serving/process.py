"""Running servers: the one launcher of the project, for `rnnpipe serve` and for helper servers.

- `serve`: `rnnpipe serve` in this process (uvicorn, until interrupted).
- `ServerThread`: an in-process server on a free loopback port (tests, benchmarks).
- `Launched`: a server in a fresh process, in its own process group, that dies with this
  process (even if it is killed with -9: a parent-death signal), waited for until it is ready,
  ended with its whole group. `ServerProcess` is `rnnpipe serve` launched so (it binds port 0
  and reports the port in a ready file: race-free); `local_server` is any other server command
  (`mlflow models serve`, `mlflow server`) on a free port, ready when a health URL answers 200.
- `HeldServer`: a launched server started now by a thread that lives as long as it (infra
  validation starts its server while the export is still being written).
- `spawn`, `stop_group`, `die_with_parent`: the process-group mechanics. A helper with worker
  processes runs under a guard (components/serving/guard.py) that ends its whole group; a
  single-process server gets SIGKILL directly. The death signal follows the *thread* that
  started the child: start servers from a thread that outlives them (see HeldServer).
- `call`: a small JSON-over-HTTP client; `free_port`, `answers`.

Production path: an export base is exactly what the official TensorFlow Serving image loads,
so the same folder can be served by it unchanged, e.g.

    docker run -p 8501:8501 -v "$PWD/exports/names_gender_lstm:/models/names_gender_lstm" \\
        -e MODEL_NAME=names_gender_lstm tensorflow/serving
    # = tensorflow_model_server --rest_api_port=8501 --model_name=names_gender_lstm \\
    #       --model_base_path=/models/names_gender_lstm

(`--model_base_path` is the export base, without the version folder.) `rnnpipe serve` is the
dependency-free equivalent for development, CI and infra validation. Like TF Serving it has
no authentication: keep it on loopback (the default) or behind an authenticating proxy, and
serve only SavedModels you exported yourself (a SavedModel is a program).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from components.serving.app import Options, create_app, uvicorn_config
from components.serving.protocol import text

ROOT = Path(__file__).resolve().parents[2]  # the repository: on the children's PYTHONPATH, their cwd
GUARD = "components.serving.guard"
PR_SET_PDEATHSIG = 1


# --------------------------------------------------------------------------------------------
# In this process


def serve(base: str | Path, host: str = "127.0.0.1", port: int = 8501, options: Options = Options(),
          ready_file: str | Path | None = None, log: Any = print, access_log: bool = False) -> None:
    """Serve `base` until interrupted; `port=0` takes a free port (written to `ready_file`)."""
    import uvicorn

    app = create_app(base, options)
    server = uvicorn.Server(uvicorn_config(app, host, port, options, access_log))

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        repo = app.state.repository
        names = ", ".join(f"{n} (versions {sorted(e.on_disk) or 'none yet'})" for n, e in repo.models.items())
        log(f"rnnpipe serve: {names} on http://{host}:{bound}/v1/models/<name>  (Ctrl-C to stop)")
        if ready_file:
            from components.artifacts import write_json

            write_json(Path(ready_file), {"host": host, "port": bound, "pid": os.getpid(),
                                          "models": sorted(repo.models)})

    threading.Thread(target=announce, daemon=True).start()
    server.run()


class ServerThread:
    """An in-process server on a free loopback port (tests, benchmarks): `with ServerThread(base) as url:`."""

    def __init__(self, base: str | Path, options: Options = Options(), host: str = "127.0.0.1"):
        import uvicorn

        self.app = create_app(base, options)
        self.server = uvicorn.Server(uvicorn_config(self.app, host, 0, options))
        self.host = host
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


# --------------------------------------------------------------------------------------------
# Process groups that die with this process


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


def spawn(argv: Sequence[str], guarded: bool = True, nice: int = 0, **popen: Any) -> subprocess.Popen:
    """Start `argv` in a new process group that dies with this process.

    guarded: under the guard (SIGTERM when this process dies; the guard ends the whole group,
    workers included); else `argv` itself gets SIGKILL (a single-process server). Stop it with
    `stop_group(proc)` (SIGTERM to the group, SIGKILL after a grace period). nice: added to the
    child's niceness (a lower CPU priority: it runs on cycles the rest of the machine leaves idle).
    """
    env = dict(popen.pop("env", None) or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", GUARD, "--", *argv] if guarded else list(argv)
    tie = die_with_parent(signal.SIGTERM if guarded else signal.SIGKILL)

    def preexec() -> None:
        tie()
        if nice:
            os.nice(nice)

    return subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=preexec, **popen)


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


# --------------------------------------------------------------------------------------------
# The launcher


class Launched:
    """A server command in a fresh process group: `with Launched(argv, ready) as url:`.

    `ready()` gives the server's URL once it takes requests (else None) and is polled every
    `poll` s; a server that exits first, or is not ready within `start_timeout` s, is stopped and
    raises RuntimeError with the tail of its log (`failure` words the first line). The group is
    stopped on exit.
    """

    def __init__(self, argv: Sequence[str], ready: Callable[[], str | None], *, guarded: bool = True,
                 log_path: str | Path, env: dict[str, str] | None = None, cwd: str | Path | None = None,
                 start_timeout: float = 180, poll: float = 0.05,
                 failure: Callable[[subprocess.Popen], str] | None = None, nice: int = 0):
        self.argv, self.ready, self.guarded, self.nice = list(argv), ready, guarded, nice
        self.log_path, self.env, self.cwd = Path(log_path), env, cwd
        self.start_timeout, self.poll, self.failure = start_timeout, poll, failure or self.not_ready
        self.proc: Any = None
        self.cancelled = threading.Event()  # set by another thread: stop waiting for readiness, stop the server

    def not_ready(self, proc: subprocess.Popen) -> str:
        if proc.poll() is not None:
            return f"the server exited with code {proc.returncode} before it was ready"
        return f"the server was not ready after {self.start_timeout:g} s"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> str:
        with open(self.log_path, "wb") as log:
            self.proc = spawn(self.argv, guarded=self.guarded, nice=self.nice, stdout=log, stderr=subprocess.STDOUT,
                              env=self.env, cwd=self.cwd)
        deadline = time.monotonic() + self.start_timeout
        try:
            while (url := self.ready()) is None:
                if self.cancelled.is_set():
                    raise RuntimeError("stopped before it was ready")
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.failure(self.proc)}:\n{self.log_tail()}")
                self.cancelled.wait(self.poll)
        except BaseException:  # not ready, a failing readiness check or Ctrl-C while waiting: no orphan
            self.__exit__(None, None, None)
            raise
        return url

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            stop_group(self.proc)


class ServerProcess(Launched):
    """`rnnpipe serve` in a fresh interpreter on a free loopback port: `with ServerProcess(base) as url:`.

    The child binds port 0 and writes the port to a ready file once it listens (and has
    loaded the latest versions); a child that exits first raises with the tail of its log.
    It runs in its own process group and dies with this process, even if this one is killed
    with -9 (parent-death signal, die_with_parent).
    """

    def __init__(self, base: str | Path, *args: str, log_path: str | Path | None = None, start_timeout: float = 180,
                 env: dict[str, str] | None = None, nice: int = 0, tmp_dir: str | Path | None = None):
        self.base, self.args = str(base), args
        self.tmp = tempfile.TemporaryDirectory(prefix="rnnpipe-serve-", dir=tmp_dir)
        self.ready_file = Path(self.tmp.name) / "ready.json"
        command = [sys.executable, "-m", "pipeline.cli", "serve", self.base, "--port", "0",
                   "--ready-file", str(self.ready_file), *args]
        super().__init__(command, self.listening, guarded=False,
                         log_path=log_path or Path(self.tmp.name) / "server.log",
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}, cwd=ROOT,
                         start_timeout=start_timeout, nice=nice)

    def listening(self) -> str | None:
        if not self.ready_file.is_file():
            return None
        info = json.loads(self.ready_file.read_text())
        return f"http://{info['host']}:{info['port']}"

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self.tmp.cleanup()


@contextlib.contextmanager
def local_server(argv: Sequence[str], health: str, *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
                 log_path: str | Path | None = None, timeout: float = 180) -> Iterator[str]:
    """Run `argv` ("{port}" in it is replaced by a free port) under a guard; yields http://127.0.0.1:<port>
    once GET <health> answers 200.

    Raises RuntimeError with the tail of its output when it exits or is not up within `timeout`.
    """
    port = free_port()
    if log_path is None:
        handle, log_path = tempfile.mkstemp(prefix="rnnpipe-server-", suffix=".log")
        os.close(handle)
    url = f"http://127.0.0.1:{port}"
    server = Launched([a.replace("{port}", str(port)) for a in argv], lambda: url if answers(url + health) else None,
                      log_path=log_path, env=env, cwd=cwd, start_timeout=timeout, poll=0.25,
                      failure=lambda proc: f"`{' '.join(argv[:4])} ...` did not come up on {url}")
    with server:
        yield url


class HeldServer:
    """A launched server (e.g. a ServerProcess) started now by a thread that lives as long as it.

    The parent-death signal fires when the *thread* that spawned the child ends, so that thread
    starts the server, waits for it to be ready, then holds it until `close()`. `wait()` gives
    its URL (or raises what stopped it from starting).
    """

    def __init__(self, server: Launched, name: str = "held-server"):
        self.server = server
        self.url: str | None = None
        self.error: BaseException | None = None
        self.ready, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, name=name, daemon=True)
        self.thread.start()

    def _hold(self) -> None:
        try:
            self.url = self.server.__enter__()
        except BaseException as exc:  # noqa: BLE001 - reported by wait()
            self.error = exc
            return
        finally:
            self.ready.set()
        self.done.wait()
        self.server.__exit__(None, None, None)

    def wait(self) -> str:
        """The server's root URL once it listens; raises what stopped it from starting."""
        self.ready.wait()
        if self.error is not None:
            raise self.error
        return str(self.url)

    def close(self) -> None:
        """Stop the server, at once even while it is still starting."""
        self.server.cancelled.set()
        self.done.set()
        self.thread.join()


# --------------------------------------------------------------------------------------------
# Clients


def call(url: str, body: Any = None, method: str | None = None, timeout: float = 60) -> tuple[int, Any]:
    """One HTTP request with a JSON (or raw bytes) body -> (status, decoded JSON answer)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, text(payload)


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
