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


def test_a_killed_beam_runs_folders_are_removed_by_the_next_and_no_one_elses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 runs no `finally`: the next Beam pipeline of this host removes the shard folders of dead
    processes; a live process's, and another host's in a shared temp_location, stay (host "node" does not
    take host "node-7"'s folders for its own)."""
    import socket

    from components.ingestion.beam import private_folder

    monkeypatch.setattr(socket, "gethostname", lambda: "node-7")
    other = private_folder(str(tmp_path), "rows")  # node-7's, its pid then dead for node's check below
    other_dead = other.with_name(other.name.replace(f"-{os.getpid()}-", "-999999999-"))
    other.rename(other_dead)
    monkeypatch.setattr(socket, "gethostname", lambda: "node")
    mine = private_folder(str(tmp_path), "rows")
    dead = mine.with_name(mine.name.replace(f"-{os.getpid()}-", "-999999999-"))
    mine.rename(dead)
    live = private_folder(str(tmp_path), "tasks")
    assert not dead.exists() and live.exists() and other_dead.exists()
    assert live.parent == tmp_path and f"-{os.getpid()}-tasks-" in live.name


def test_orphan_names_anyone_can_make_neither_crash_nor_match(tmp_path: Path) -> None:
    """A pid too large for kill() or digits int() reads but kill() does not ("²") are no one's: the folder
    stays (or goes, where unreadable names are removed), and nothing raises."""
    names = [".tmp-99999999999999999999-x", ".tmp-\u00b2-x", ".tmp-noid", f".tmp-{os.getpid()}-live"]
    for name in names:
        (tmp_path / name).mkdir()
    assert artifacts.remove_orphans(tmp_path, ".tmp-") == []
    assert sorted(artifacts.remove_orphans(tmp_path, ".tmp-", unreadable=True)) == sorted(names[:3])
    assert [p.name for p in tmp_path.iterdir()] == [names[3]]


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
