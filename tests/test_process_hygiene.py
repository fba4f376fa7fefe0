"""Issue 15, processes: every helper dies with its parent (even kill -9), SIGTERM is Ctrl-C.

No timing asserts: each test waits (bounded) for the state it expects.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import ROOT
from tests.serving_support import wait_for


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group(pgid: int) -> list[int]:
    """Live processes in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


wait_until = functools.partial(wait_for, timeout=120)  # wait_until(check, what[, timeout=])


def parent(code: str) -> tuple[subprocess.Popen, int]:
    """A Python parent running `code`, which prints one pid; returns (parent, that pid)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip().isdigit(), (line, proc.poll())
    return proc, int(line)


def killed_parent_takes(proc: subprocess.Popen, left: Callable[[], list[int]], what: str) -> None:
    """kill -9 the parent `proc`; the processes `left()` lists must all die too (cleaned up either way)."""
    try:
        assert left(), f"{what} never ran"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_until(lambda: not left(), f"no orphan left of {what}")
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in left():
            os.kill(pid, signal.SIGKILL)


def killed_parent_takes_child(proc: subprocess.Popen, child: int, what: str) -> None:
    """kill -9 the parent `proc`; its server process `child` must die too."""
    killed_parent_takes(proc, lambda: [child] if alive(child) else [], what)


def test_a_spawned_helper_group_dies_when_its_parent_is_killed_9() -> None:
    """The guard, the helper and the helper's own child (a worker) all go."""
    proc, pgid = parent("""
        import sys, time
        from components.serving import spawn
        helper = spawn([sys.executable, "-c",
                        "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"])
        print(helper.pid, flush=True)
        time.sleep(300)
    """)
    wait_until(lambda: len(group(pgid)) >= 3, "the guard, the helper and its worker")
    assert os.getpgid(proc.pid) != pgid  # its own group: a Ctrl-C in the terminal reaches the parent only
    killed_parent_takes(proc, lambda: group(pgid), f"the helper group {group(pgid)}")


def test_the_serve_child_of_infra_validation_dies_when_its_parent_is_killed_9(tmp_path: Path) -> None:
    from tests.serving_support import toy_saved_model

    toy_saved_model(tmp_path / "toy" / "1")
    proc, child = parent(f"""
        import time
        from components.serving import ServerProcess
        server = ServerProcess({str(tmp_path / "toy")!r})
        server.__enter__()
        print(server.proc.pid, flush=True)
        time.sleep(300)
    """)
    killed_parent_takes_child(proc, child, "the orphaned server")


def test_the_prestarted_validation_server_serves_what_is_linked_in_and_dies_with_its_parent(tmp_path: Path) -> None:
    """Issue 16: the infra-validation server started during training (a thread that outlives the spawn,
    so the parent-death signal is not fired early) runs at a lower CPU priority, picks up the export
    linked in later, and dies on kill -9."""
    from tests.serving_support import toy_saved_model

    toy_saved_model(tmp_path / "toy")
    proc, child = parent(f"""
        import json, time
        from pathlib import Path
        from components import infra_validation as iv
        from components.serving import call
        server = iv.Prestarted(nice=iv.PRESTART_NICE)
        root = server.wait()
        url = iv.serve_candidate(server, Path({str(tmp_path / "toy")!r}))
        iv.wait_available(f"{{url}}/v1/models/{{iv.CANDIDATE}}", 1)
        print(server.server.proc.pid, flush=True)
        time.sleep(300)
    """)
    from components.infra_validation import PRESTART_NICE

    niceness = os.getpriority(os.PRIO_PROCESS, child), os.getpriority(os.PRIO_PROCESS, proc.pid)
    killed_parent_takes_child(proc, child, "the orphaned prestarted server")
    assert niceness[0] == min(19, niceness[1] + PRESTART_NICE)


def test_stop_group_ends_a_helper_and_its_workers() -> None:
    from components.serving import spawn, stop_group

    helper = spawn([sys.executable, "-c", "import subprocess, time; subprocess.Popen(['sleep', '300']); "
                                          "time.sleep(300)"])
    wait_until(lambda: len(group(helper.pid)) >= 3, "the helper and its worker")
    stop_group(helper)
    wait_until(lambda: not group(helper.pid), "the whole group to end")


@pytest.mark.slow
def test_sigterm_during_training_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    """One clean line, the MLflow run KILLED, the epoch checkpoint kept for the next run."""
    from tests.test_reliability import cli, runs_of, write_config

    path = write_config(tmp_path, data__max_examples=300, train__epochs=500, train__batch_size=32,
                        model__units=8, export__infra_validate="false")
    proc = cli(path, env_extra={"PYTHONFAULTHANDLER": "1"})  # SIGABRT prints every thread's stack
    train_dir = tmp_path / "runs" / "names_gender_lstm" / "train"
    try:
        wait_until(lambda: proc.poll() is not None
                   or bool(list(train_dir.glob(".scratch-*/backup/training_metadata.json"))),
                   "the first epoch checkpoint", timeout=300)
        assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, _ = proc.communicate(timeout=60)
            pytest.fail(f"still running 120 s after SIGTERM; where it was:\n{out[-8000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    assert "Traceback" not in out and "rnnpipe: stopped by SIGTERM; run the same command again to resume" in out
    (run,) = runs_of(path)
    assert run.info.status == "KILLED"
    assert list(train_dir.glob(".scratch-*/backup/training_metadata.json"))  # what the next run resumes from


@pytest.mark.slow
def test_rnnpipe_ui_and_its_mlflow_workers_die_when_it_is_killed_9(tmp_path: Path) -> None:
    from components.serving import answers, free_port

    (tmp_path / "m.db").touch()  # a new, empty store: MLflow creates it
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    ui = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "ui", "--backend-store-uri",
                           f"sqlite:///{tmp_path / 'm.db'}", "--port", str(port)], cwd=tmp_path, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    guard = None
    try:
        wait_until(lambda: ui.poll() is not None or answers(f"http://127.0.0.1:{port}/health"), "the MLflow UI",
                   timeout=240)
        assert ui.poll() is None
        children = Path(f"/proc/{ui.pid}/task/{ui.pid}/children").read_text().split()
        (guard,) = [int(pid) for pid in children]
        assert len(group(guard)) >= 3  # the guard, mlflow, its uvicorn workers (and job runners)
        os.kill(ui.pid, signal.SIGKILL)
        ui.wait()
        wait_until(lambda: not group(guard), "no orphan holding the port")
        assert not answers(f"http://127.0.0.1:{port}/health")
    finally:
        if ui.poll() is None:
            ui.kill()
        for pid in group(guard) if guard else []:
            os.kill(pid, signal.SIGKILL)


def test_a_validation_server_closed_while_it_starts_stops_at_once_and_leaves_no_folder() -> None:
    """Issue 16: Ctrl-C during training reaches `discard_prestarted`; closing a server that is still importing
    TensorFlow stops it then (it never becomes ready), removes its private folder, and leaves no process."""
    from components import infra_validation as iv

    server = iv.Prestarted(nice=iv.PRESTART_NICE, start_timeout=iv.PRESTART_TIMEOUT)
    wait_until(lambda: server.server.proc is not None, "the server process")
    pid = server.server.proc.pid
    server.close()
    assert server.url is None  # stopped before it was ready, not waited for
    assert not server.home.exists()
    wait_until(lambda: not alive(pid), "no orphan server")
