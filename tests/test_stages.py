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


def test_a_warm_up_starts_when_its_first_stage_builds_and_not_on_a_cached_run(make_config, monkeypatch) -> None:  # noqa: ANN001
    """Issue 16: the validation server is prestarted once, when training starts building (its
    warm_up_from) or else the first later stage before infra_validate that builds; never on a cached
    run or one that stops before infra_validate; the end of a run cancels a warm-up nobody claimed."""
    from pipeline import runner

    events: list[str] = []

    def fake(name: str):  # noqa: ANN202
        def run(inputs, workdir, ctx, **kwargs):  # noqa: ANN001, ANN003, ANN202
            events.append(name)
            return {}
        return run

    pipeline = stages.STAGES
    for stage in stages.STAGE_NAMES:
        pipeline = stages.replace_stage(pipeline, stage, run=fake(stage), after=None)
    pipeline = stages.replace_stage(pipeline, "infra_validate", warm_up=lambda config: events.append("warm_up"),
                                    cancel_warm_up=lambda: events.append("cancel"))
    monkeypatch.setattr(stages, "STAGES", pipeline)
    config = make_config(tracking__enabled="false")
    quiet = {"log": lambda _: None}

    runner.run(config, **quiet)
    assert events == ["ingest", "validate", "preprocess", "warm_up", "train", "evaluate", "export",
                      "infra_validate", "push", "cancel"]
    events.clear()
    runner.run(config, **quiet)  # all cached
    assert events == ["cancel"]
    events.clear()
    runner.run(config, from_stage="export", **quiet)
    assert events == ["warm_up", "export", "infra_validate", "push", "cancel"]
    events.clear()
    runner.run(config, from_stage="train", to_stage="export", **quiet)  # infra_validate will not run
    assert events == ["train", "evaluate", "export", "cancel"]
