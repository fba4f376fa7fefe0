"""Push after validation: kill -9 at every step of export, infra validation, push and registration
leaves only validated versions in the served base and no duplicate registry version; damaged
cached outputs and a vanished published export are detected and rebuilt; the MLflow store is
never silently recreated."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import faults
from components.config import ConfigError, from_dict, with_overrides
from pipeline import runner
from tests.test_reliability import cli, write_config

QUIET = {"log": lambda _: None}
NAME = "names_gender_lstm"


def served_versions(base: Path) -> dict[str, str]:
    """Published version folder -> the content hash it holds."""
    if not base.is_dir():
        return {}
    return {p.name: json.loads((p / "rnnpipe.json").read_text())["content_hash"]
            for p in base.iterdir() if p.name.isdigit()}


def validated_hashes(runs: Path) -> set[str]:
    """Content hashes that infra validation passed (its committed outputs)."""
    out = set()
    for record in (runs / NAME / "infra_validate").glob("*/artifact.json"):
        props = json.loads(record.read_text())["properties"]
        if props.get("validated"):
            out.add(props["content_hash"])
    return out


def registry_versions(config: Any) -> list[Any]:
    from mlflow import MlflowClient

    from pipeline import registry

    client = MlflowClient(tracking_uri=config.tracking.uri)
    try:
        return [v for v in client.search_model_versions(f"name = '{NAME}'") if registry.CONTENT_TAG in v.tags]
    except Exception:  # noqa: BLE001 - no registered model yet
        return []


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


@pytest.mark.slow
def test_kill_9_at_each_point_of_export_validation_and_push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, data__max_examples=300, train__epochs=1, train__batch_size=32, model__units=8,
                        model__embedding_dim=8, evaluate__compare_to="none", evaluate__min_test_examples=0)
    config = from_dict(yaml.safe_load(path.read_text()))
    base = Path(config.export.dir) / NAME
    runs = Path(config.runs_dir)
    for point in faults.POINTS:
        monkeypatch.setenv(faults.ENV, point)
        code, out = finish(cli(path))
        assert code == -signal.SIGKILL, f"{point}: {out[-2000:]}"
        published = served_versions(base)
        assert set(published.values()) <= validated_hashes(runs), point  # nothing unvalidated is ever served
        assert not registry_versions(config), point
    monkeypatch.delenv(faults.ENV)
    code, out = finish(cli(path))
    assert code == 0, out[-3000:]
    assert "registry: names_gender_lstm version 1, champion (first registered version)" in out
    (only,) = served_versions(base).values()
    assert only in validated_hashes(runs) and not list(base.glob(".tmp-*"))
    (version,) = registry_versions(config)
    from pipeline import registry

    assert version.tags[registry.CONTENT_TAG] == only

    # a forced re-export is validated again (its fingerprint follows the content), and published
    again = runner.run(config, from_stage="export", **QUIET)
    new_hash = again.artifacts["export"].properties["content_hash"]
    assert again.cached["infra_validate"] is (new_hash == only)
    assert again.artifacts["infra_validate"].properties["content_hash"] == new_hash
    assert served_versions(base)[Path(again.export_path).name] == new_hash

    # `rm -rf exports`, then a different model: published as version 1 again and registered by content
    shutil.rmtree(config.export.dir)
    other = runner.run(with_overrides(config, {"train.epochs": 2}), **QUIET)
    assert Path(other.export_path).name == "1"
    hashes = {v.tags[registry.CONTENT_TAG] for v in registry_versions(config)}
    assert other.artifacts["push"].properties["content_hash"] in hashes
    assert len(hashes) == len(registry_versions(config))  # one registry version per model, never two


def test_damaged_cache_is_reported_and_rebuilt(make_config: Any) -> None:
    from tests.conftest import tiny

    config = make_config(**tiny(export__infra_validate="false"))
    first = runner.run(config, **QUIET)
    split = first.artifacts["preprocess"].path("train.npz")
    split.write_bytes(split.read_bytes()[: split.stat().st_size // 2])  # truncated
    first.artifacts["train"].path("model.keras").unlink()
    lines: list[str] = []
    second = runner.run(config, log=lines.append)
    damaged = [line for line in lines if "cached output is damaged" in line]
    assert any(str(split) in line and "bytes" in line for line in damaged), lines
    assert any("model.keras is missing" in line for line in damaged), lines
    assert not second.cached["preprocess"] and not second.cached["train"] and second.cached["ingest"]
    assert second.artifacts["preprocess"].path("train.npz").stat().st_size > split.stat().st_size // 2

    # a published export that vanished is published again (push reruns), never reported as present
    shutil.rmtree(second.export_path)
    third = runner.run(config, log=lines.append)
    assert not third.cached["push"] and Path(third.export_path, "saved_model.pb").is_file()

    # a truncated artifact.json is damaged too (named), not a JSONDecodeError
    record = third.artifacts["validate"].path("artifact.json")
    record.write_text(record.read_text()[:20])
    lines.clear()
    fourth = runner.run(config, log=lines.append)
    assert any(str(record) in line and "unreadable" in line for line in lines) and not fourth.cached["validate"]


def test_an_emptied_or_half_created_store_is_an_error_not_a_fresh_start(make_config: Any) -> None:
    import sqlite3

    from pipeline import store
    from tests.conftest import tiny

    config = make_config(**tiny(export__infra_validate="false"))
    runner.run(config, to_stage="ingest", **QUIET)
    db = Path(config.tracking.uri[len("sqlite:///"):])
    db.write_bytes(b"")  # truncated to 0 bytes
    with pytest.raises(ConfigError, match=r"is empty \(0 bytes\), but a store with run history was created there"):
        runner.run(config, to_stage="ingest", **QUIET)
    with pytest.raises(ConfigError, match="is empty"):
        store.store_uri(config.tracking.uri)
    db.unlink()
    with pytest.raises(ConfigError, match="is missing"):
        runner.run(config, to_stage="ingest", **QUIET)

    db.with_name(db.name + ".created").unlink()  # the user chose a new store; now interrupt its creation
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE spans (id INTEGER)")
    with pytest.raises(ConfigError, match="half-created"):
        runner.run(config, to_stage="ingest", **QUIET)


def test_a_copy_that_differs_from_the_validated_export_is_not_published(tmp_path: Path) -> None:
    """push publishes only the bytes infra validation checked: a changed export is refused, nothing appears."""
    from components.artifacts import dir_digest
    from components.push import PushError, publish

    source = tmp_path / "saved_model"
    source.mkdir()
    (source / "saved_model.pb").write_bytes(b"validated")
    validated = dir_digest(source)
    (source / "saved_model.pb").write_bytes(b"changed after validation")
    base = tmp_path / "exports" / "m"
    with pytest.raises(PushError, match="does not match the validated export"):
        publish(source, base, validated, {})
    assert [p.name for p in base.iterdir() if not p.name.startswith(".")] == []
    assert publish(source, base, dir_digest(source), {})[:1] == (1,)  # the unchanged bytes publish as version 1
