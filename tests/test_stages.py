"""The pipeline's wiring (pipeline/stages.py): stages are imported objects with explicit inputs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from components import evaluation, push, training
from components.config import from_dict
from pipeline import stages


def test_each_stage_is_its_component_and_reads_only_earlier_stages() -> None:
    names = [s.name for s in stages.STAGES]
    assert tuple(names) == stages.STAGE_NAMES
    assert stages.STAGES[names.index("train")].run is training.run
    assert stages.STAGES[names.index("evaluate")].run is evaluation.run
    assert stages.STAGES[names.index("push")].after is push.register
    for index, stage in enumerate(stages.STAGES):
        assert set(stage.inputs) <= set(names[:index]), stage.name


def test_the_champion_is_an_explicit_evaluate_input_only_for_last_blessed(tmp_path: Path) -> None:
    raw = {"name": "t", "data": {"source": "names"}, "model": {"topology": "many_to_one"},
           "runs_dir": str(tmp_path / "runs"), "tracking": {"enabled": False}}
    assert "champion" not in stages.evaluate_inputs(from_dict(raw))
    chosen = stages.evaluate_inputs(from_dict({**raw, "evaluate": {"compare_to": "last_blessed"}}))
    assert chosen["champion"] is None  # no store: no champion, but the input is there (and fingerprinted)


def test_replace_stage_changes_one_stage_only() -> None:
    def fake(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        return {}

    replaced = stages.replace_stage(stages.STAGES, "train", run=fake)
    assert [s.run for s in replaced if s.name == "train"] == [fake]
    assert [s for s in replaced if s.name != "train"] == [s for s in stages.STAGES if s.name != "train"]


def test_push_registers_through_the_registry_it_is_handed(tmp_path: Path) -> None:
    pushed = SimpleNamespace(properties={"register": {"content_hash": "abc", "blessed": True}})
    assert push.register(pushed, SimpleNamespace(register=None)) is None  # tracking off: no registry
    seen = []

    def registry(info):  # noqa: ANN001, ANN202
        seen.append(info)
        return {"name": "m", "version": "3", "champion": True, "reason": "first registered version"}

    note = push.register(pushed, SimpleNamespace(register=registry))
    assert seen == [pushed.properties["register"]]
    assert note == "registry: m version 3, champion (first registered version)"
    assert push.register(pushed, SimpleNamespace(register=lambda info: None)) is None  # the registry declined
