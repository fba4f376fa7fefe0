"""`rnnpipe sweep`: grid parsing, planning, ranking, the YAML `sweep:` section, and one real sweep
whose trials are nested MLflow runs sharing the cached data stages, with one trial failing."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml

from components.config import ConfigError, SweepConfig, from_dict
from pipeline import sweep, tables
from tests.conftest import CONFIGS, isolated, tiny


def test_grid_values_are_read_as_yaml() -> None:
    grid = sweep.parse_grid(["model.cell=simple_rnn,lstm,gru", "model.units=32, 64",
                               "train.learning_rate=[0.001, 0.01]", "model.bidirectional=true,false"])
    assert grid == {"model.cell": ("simple_rnn", "lstm", "gru"), "model.units": (32, 64),
                    "train.learning_rate": (0.001, 0.01), "model.bidirectional": (True, False)}


@pytest.mark.parametrize("items, message", [
    (["model.cell"], "must look like section.key=value1,value2"),
    (["model.cell="], "must look like"),
    (["model.cell=lstm", "model.cell=gru"], "given twice"),
])
def test_bad_grid_options_are_one_clear_error(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sweep.parse_grid(items)


def test_plan_is_the_full_grid_or_a_seeded_random_draw() -> None:
    grid = {"model.cell": ("lstm", "gru"), "model.units": (8, 16, 32)}
    full = sweep.plan(grid)
    assert full[:2] == [{"model.cell": "lstm", "model.units": 8}, {"model.cell": "lstm", "model.units": 16}]
    assert len(full) == 6 and len({tuple(c.values()) for c in full}) == 6
    drawn = sweep.plan(grid, budget=3, seed=7)
    assert len(drawn) == 3 and all(c in full for c in drawn) and len({tuple(c.values()) for c in drawn}) == 3
    assert drawn == sweep.plan(grid, budget=3, seed=7)  # reproducible
    assert any(sweep.plan(grid, budget=3, seed=s) != drawn for s in range(8))
    assert sweep.plan(grid, budget=50) == full  # a budget above the grid size runs the grid


def test_a_huge_grid_is_sampled_without_being_enumerated_and_refused_without_a_budget() -> None:
    from components.config import MAX_TRIALS, SweepConfig

    grid = {f"model.k{i}": tuple(range(10)) for i in range(30)}  # 10**30 points
    drawn = sweep.plan(grid, budget=4, seed=1)
    assert len(drawn) == 4 and len({tuple(c.values()) for c in drawn}) == 4
    assert all(list(c) == list(grid) and all(v in range(10) for v in c.values()) for c in drawn)
    small = {"model.cell": ("lstm", "gru", "simple_rnn"), "model.units": (8, 16, 32, 64)}
    assert [sweep.combination(small, list(small), i) for i in range(12)] == sweep.plan(small)
    assert SweepConfig(grid=grid, random=MAX_TRIALS).size == 10 ** 30
    SweepConfig(grid=grid, random=MAX_TRIALS).check_trials()
    with pytest.raises(ConfigError, match=rf"{10 ** 30} grid points\) exceed the limit of {MAX_TRIALS}; set"):
        SweepConfig(grid=grid).check_trials()
    with pytest.raises(ConfigError, match="sweep.random=5000"):
        SweepConfig(grid=grid, random=5000).check_trials()


def test_a_yaml_grid_over_the_limit_loads_and_sweeps_with_random() -> None:
    """The limit is the sweep's about to run: `rnnpipe run` reads the config, and `--random` makes it fit."""
    from components.config import from_dict
    from pipeline.sweep import resolve, run_sweep

    config = from_dict({"sweep": {"grid": {"train.seed": list(range(40)), "model.units": list(range(1, 41))}}})
    assert config.sweep.size == 1600
    assert resolve(config, budget=3).random == 3
    with pytest.raises(ConfigError, match="1600 trials"):
        run_sweep(config, resolve(config), log=lambda _: None)  # refused before any work


def test_direction_and_ranking() -> None:
    assert sweep.lower_is_better("val_loss") and sweep.lower_is_better("test_mae")
    assert sweep.lower_is_better("test_perplexity") and not sweep.lower_is_better("test_accuracy")
    # the registry, not a name pattern: error rates and MASE are lower-is-better (the regex said otherwise)
    assert sweep.lower_is_better("test_token_error_rate") and sweep.lower_is_better("test_mase")
    assert sweep.lower_is_better("test_beam_token_error_rate") and sweep.lower_is_better("test_smape")
    assert not sweep.lower_is_better("test_exact_match") and not sweep.lower_is_better("baseline_macro_f1")
    g2p = [sweep.Trial(i, {"model.cell": c}, status="FINISHED", metrics={"test_token_error_rate": v})
           for i, c, v in ((1, "simple_rnn", 0.22), (2, "lstm", 0.16), (3, "gru", 0.15))]
    minimize = sweep.lower_is_better("test_token_error_rate")
    assert [t.index for t in sweep.rank(g2p, "test_token_error_rate", minimize)] == [3, 2, 1]  # lowest first
    trials = [sweep.Trial(1, {"model.cell": "lstm"}, status="FINISHED",
                            metrics={"test_accuracy": 0.7, "val_loss": 0.5}),
              sweep.Trial(2, {"model.cell": "gru"}, status="FAILED", error="boom"),
              sweep.Trial(3, {"model.cell": "simple_rnn"}, status="FINISHED",
                            metrics={"test_accuracy": 0.9, "val_loss": 0.6}),
              sweep.Trial(4, {"model.cell": "lstm"}, status="FINISHED",
                            metrics={"test_accuracy": 0.7, "val_loss": 0.4})]
    assert [t.index for t in sweep.rank(trials, "test_accuracy", minimize=False)] == [3, 4, 1, 2]
    assert [t.index for t in sweep.rank(trials, "val_loss", minimize=True)] == [4, 1, 3, 2]
    headers, rows = sweep.ranking(trials, "test_accuracy", False, ["model.cell"])
    assert headers[:4] == ["rank", "test_accuracy", "val_loss", "cell"]
    assert rows[0][:4] == [1, 0.9, 0.6, "simple_rnn"] and rows[-1][:5] == [None, None, None, "gru", "FAILED"]
    table = tables.format_table(headers, rows)
    assert table.splitlines()[0].startswith("rank  test_accuracy") and "FAILED" in table.splitlines()[-1]
    assert tables.markdown_table(headers, rows).splitlines()[1].startswith("| --- |")
    parsed = list(csv.reader(io.StringIO(tables.csv_table(headers, rows))))
    assert parsed[0] == headers and parsed[1][3] == "simple_rnn" and parsed[-1][0] == ""


def _raw(tmp_path: Path, **extra: str) -> dict:
    from components import config as cfgmod

    raw = isolated(yaml.safe_load((CONFIGS / "names_gender_lstm.yaml").read_text()), tmp_path)
    for key, value in tiny(**extra).items():
        cfgmod.apply_override(raw, f"{key.replace('__', '.')}={value}")
    return raw


def test_yaml_sweep_section_is_validated_and_left_out_of_run_params(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    raw["sweep"] = {"grid": {"model.cell": ["lstm", "gru"], "model.units": 16}, "random": 1, "metric": "val_loss"}
    config = from_dict(raw)
    assert config.sweep.grid == {"model.cell": ("lstm", "gru"), "model.units": (16,)}
    assert not any(k.startswith("sweep") for k in config.flat())
    for bad, message in (({"grid": {"model.cell": []}}, "has no values"),
                         ({"grid": {"cell": ["lstm"]}}, "dotted config key"),
                         ({"random": 0}, "out of range"),
                         ({"goal": "biggest"}, "sweep.goal='biggest' is not allowed"),
                         ({"grids": {}}, "Did you mean 'sweep.grid'")):
        with pytest.raises(ConfigError, match=message):
            from_dict({**raw, "sweep": bad})
    # the command line lays its grid over the YAML's
    resolved = sweep.resolve(config, {"model.units": (4, 8)}, budget=None, seed=3)
    assert resolved.grid == {"model.cell": ("lstm", "gru"), "model.units": (4, 8)}
    assert (resolved.random, resolved.seed, resolved.metric) == (1, 3, "val_loss")
    with pytest.raises(ConfigError, match="nothing to sweep"):
        sweep.resolve(from_dict(_raw(tmp_path)))


def test_a_bad_value_stops_the_sweep_before_any_work(tmp_path: Path) -> None:
    config = from_dict(_raw(tmp_path))
    with pytest.raises(ConfigError, match="model.cell='lstmm' is not allowed. Did you mean 'lstm'"):
        sweep.run_sweep(config, SweepConfig(grid={"model.cell": ("gru", "lstmm")}), log=lambda _: None)
    with pytest.raises(ConfigError, match="unknown config key 'model.celll'"):
        sweep.run_sweep(config, SweepConfig(grid={"model.celll": ("gru",)}), log=lambda _: None)
    with pytest.raises(ConfigError, match="--to 'evaluation' is not a stage"):
        sweep.run_sweep(config, SweepConfig(grid={"model.cell": ("gru",)}), to_stage="evaluation")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()


def test_when_every_trial_fails_the_parent_run_fails_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from pipeline import runner

    def broken(config, **_):
        raise OSError(f"disk full ({config.model.cell})")

    monkeypatch.setattr(runner, "run", broken)
    config = from_dict(_raw(tmp_path))
    with pytest.raises(sweep.SweepFailed, match=r"all 2 trials failed; first error: OSError: disk full \(lstm\)"):
        sweep.run_sweep(config, SweepConfig(grid={"model.cell": ("lstm", "gru")}), log=lambda _: None)
    client = MlflowClient(config.tracking.uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = next(r for r in runs if r.data.tags.get("rnnpipe.sweep"))
    assert parent.info.status == "FAILED" and "all 2 trials failed" in parent.data.tags["error"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.status for r in children) == ["FAILED", "FAILED"]


@pytest.mark.slow
def test_sweep_nests_trials_shares_cached_stages_and_survives_a_failing_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from mlflow import MlflowClient

    import components.training
    from pipeline import cli, stages

    real_train = components.training.run

    def train(*args, **kwargs):  # the simple_rnn trial fails in training; the others go on
        if kwargs["model"].cell == "simple_rnn":
            raise RuntimeError("simulated out-of-memory")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(stages, "STAGES", stages.replace_stage(stages.STAGES, "train", run=train))
    path = tmp_path / "names.yaml"
    path.write_text(yaml.safe_dump(_raw(tmp_path, export__infra_validate="false")))
    code = cli.main(["sweep", str(path), "--grid", "model.cell=lstm,simple_rnn,gru", "--metric", "val_loss"])
    out = capsys.readouterr().out
    assert code == 1  # one trial failed
    assert "sweep: 3 trials (grid 3) over model.cell" in out
    assert "trial 2: RuntimeError: simulated out-of-memory" in out

    table = out[out.index("\nrank "):].splitlines()[1:6]
    assert table[0].split()[:3] == ["rank", "val_loss", "cell"]
    ranked = [line.split() for line in table[2:]]
    assert [r[0] for r in ranked] == ["1", "2", "-"] and ranked[2][2:4] == ["simple_rnn", "FAILED"], out[-3000:]
    assert float(ranked[0][1]) <= float(ranked[1][1])
    best_cell = ranked[0][2]
    assert f"export it (its stages are cached): rnnpipe run {path} --set model.cell={best_cell}" in out

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("rnnpipe.sweep") == "true"]
    assert len(parents) == 1
    parent = parents[0]
    children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                      key=lambda r: int(r.data.tags["sweep.trial"]))
    assert [r.data.params["model.cell"] for r in children] == ["lstm", "simple_rnn", "gru"]
    assert [r.info.status for r in children] == ["FINISHED", "FAILED", "FINISHED"]
    assert "simulated out-of-memory" in children[1].data.tags["error"]
    # the data stages ran once: every later trial found them cached; training ran per trial
    for stage in ("ingest", "validate", "preprocess"):
        assert [r.data.tags[f"stage.{stage}"] for r in children] == ["ran", "cached", "cached"], stage
    assert [children[i].data.tags["stage.train"] for i in (0, 2)] == ["ran", "ran"]
    assert "stage.export" not in children[0].data.tags and not (tmp_path / "exports").exists()  # --to evaluate

    assert parent.info.status == "FINISHED"
    assert parent.data.params["sweep.grid.model.cell"] == "lstm,simple_rnn,gru"
    assert parent.data.metrics["trials_failed"] == 1 and parent.data.metrics["trials_finished"] == 2
    best = next(r for r in children if r.data.params["model.cell"] == best_cell)
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_val_loss"] == pytest.approx(best.data.metrics["val_loss"])
    listed = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert listed == {"ranking.csv", "ranking.md"}
    local = client.download_artifacts(parent.info.run_id, "sweep/ranking.csv", str(tmp_path))
    ranking = list(csv.DictReader(io.StringIO(Path(local).read_text())))
    assert [row["cell"] for row in ranking][2] == "simple_rnn" and ranking[0]["run_id"] == best.info.run_id[:8]
    assert ranking[2]["status"] == "FAILED" and ranking[0]["rank"] == "1"
