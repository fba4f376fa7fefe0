"""Atomic stage artifacts: complete or absent, never half-written; stale temp dirs are cleaned."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components import artifacts


def test_commit_makes_a_complete_artifact(tmp_path: Path) -> None:
    with artifacts.building(tmp_path, "abc") as tmp:
        (tmp / "data.txt").write_text("hello")
        art = artifacts.commit(tmp, "ingest", "abc", {"rows": 3})
    assert art.uri == tmp_path / "abc" and art.path("data.txt").read_text() == "hello"
    assert artifacts.find(tmp_path, "abc").properties == {"rows": 3}
    assert not list(tmp_path.glob(".tmp-*"))


def test_failure_inside_the_stage_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with artifacts.building(tmp_path, "abc") as tmp:
            (tmp / "half.txt").write_text("partial")
            raise RuntimeError("killed halfway")
    assert artifacts.find(tmp_path, "abc") is None
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_dir_without_artifact_json_is_not_complete(tmp_path: Path) -> None:
    (tmp_path / "abc").mkdir()
    (tmp_path / "abc" / "model.keras").write_text("truncated")
    assert artifacts.find(tmp_path, "abc") is None
    with artifacts.building(tmp_path, "abc") as tmp:
        art = artifacts.commit(tmp, "train", "abc", {})
    assert not art.path("model.keras").exists()


def test_stale_temp_dirs_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead, alive = tmp_path / ".tmp-abc-999999999", tmp_path / f".tmp-abc-{os.getpid()}"
    dead.mkdir()
    alive.mkdir()
    artifacts.clean_stale(tmp_path)
    assert not dead.exists() and alive.exists()


def test_a_killed_beam_runs_folders_are_removed_by_the_next_and_no_one_elses(tmp_path: Path) -> None:
    """kill -9 runs no `finally`: the next Beam pipeline of this host removes the shard folders of dead
    processes; a live process's, and another host's in a shared temp_location, stay."""
    import socket

    from components.ingestion.beam import private_folder

    host = socket.gethostname()
    dead = tmp_path / f"rnnpipe-beam-{host}-999999999-rows-x1"
    live = tmp_path / f"rnnpipe-beam-{host}-{os.getpid()}-tasks-x2"
    other_host = tmp_path / "rnnpipe-beam-elsewhere-999999999-rows-x3"
    for folder in (dead, live, other_host):
        (folder / "train").mkdir(parents=True)
    made = private_folder(str(tmp_path), "rows")
    assert not dead.exists() and live.exists() and other_host.exists()
    assert made.parent == tmp_path and made.name.startswith(f"rnnpipe-beam-{host}-{os.getpid()}-rows-")


def test_fingerprint_depends_on_config_inputs_and_stage(tmp_path: Path) -> None:
    up = artifacts.Artifact("ingest", tmp_path, "f1")
    base = artifacts.fingerprint("train", {"epochs": 1}, {"ingest": up})
    assert base == artifacts.fingerprint("train", {"epochs": 1}, {"ingest": up})
    assert base != artifacts.fingerprint("train", {"epochs": 2}, {"ingest": up})
    other = artifacts.Artifact("ingest", tmp_path, "f2")
    assert base != artifacts.fingerprint("train", {"epochs": 1}, {"ingest": other})
    assert base != artifacts.fingerprint("evaluate", {"epochs": 1}, {"ingest": up})


def test_write_json_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    artifacts.write_json(path, {"a": 1})
    assert artifacts.read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
