"""`rnnpipe runs` (table, sort, limit, experiment, store selection), `rnnpipe runs --compare`,
`rnnpipe ui`'s checks and links, and the closing stage table of `rnnpipe run`.

The store is filled through the MLflow client with runs shaped like the pipeline's (params,
metrics, tags, a sweep parent with two trials), so these tests need no training.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pipeline import cli, runs

T0 = 1_800_000_000_000  # ms; runs start a minute apart


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from mlflow import MlflowClient

    tmp = tmp_path_factory.mktemp("runs_store")
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(uri)
    names = client.create_experiment("names_gender_lstm", artifact_location=(tmp / "artifacts").as_uri())
    weather = client.create_experiment("weather_next_day_gru", artifact_location=(tmp / "artifacts").as_uri())
    ids: dict[str, str] = {}

    def run(key: str, exp: str, minute: int, status: str, params: dict, metrics: dict, tags: dict) -> None:
        r = client.create_run(exp, start_time=T0 + minute * 60_000, run_name=key, tags=tags)
        for k, v in params.items():
            client.log_param(r.info.run_id, k, v)
        for k, v in metrics.items():
            client.log_metric(r.info.run_id, k, v)
        client.set_terminated(r.info.run_id, status, end_time=T0 + minute * 60_000 + 42_000)
        ids[key] = r.info.run_id

    def model(cell: str, units: int) -> dict:
        return {"model.topology": "many_to_one", "model.cell": cell, "model.units": units, "model.num_layers": 1,
                "train.epochs": 2, "data.source": "names"}

    run("names-sweep-aaaa", names, 0, "FINISHED", {"sweep.grid.model.cell": "lstm,gru"}, {"trials_finished": 2},
        {"rnnpipe.sweep": "true", "topology": "many_to_one", "cell": "lstm,gru"})
    run("names-lstm-many_to_one-bbbb", names, 1, "FINISHED", model("lstm", 8),
        {"val_loss": 0.5, "test_accuracy": 0.8, "test_macro_f1": 0.6, "time_train_s": 3.0},
        {"mlflow.parentRunId": ids["names-sweep-aaaa"], "cell": "lstm", "blessed": "true", "export_version": "3",
         "cudnn": "yes"})
    run("names-gru-many_to_one-cccc", names, 2, "FINISHED", model("gru", 8),
        {"val_loss": 0.4, "test_accuracy": 0.7, "test_macro_f1": 0.6, "time_train_s": 2.0},
        {"mlflow.parentRunId": ids["names-sweep-aaaa"], "cell": "gru", "blessed": "false", "cudnn": "yes"})
    run("weather-gru-many_to_one-dddd", weather, 3, "FAILED", {**model("gru", 16), "data.source": "seattle_weather"},
        {"val_loss": 0.9}, {"cell": "gru", "error": "TrainingDiverged: loss is NaN"})
    return {"uri": uri, "ids": ids, "tmp": tmp}


def _runs(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    code = cli.main(["runs", *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _names(out: str) -> list[str]:
    """Run names in table order."""
    return [w for line in out.splitlines()[3:] for w in line.split() if re.match(r"^(names|weather)-[a-z]", w)]


def test_table_lists_recent_runs_with_key_params_metrics_blessing_and_export(store, capsys) -> None:
    code, out = _runs(capsys, "--tracking-uri", store["uri"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("4 runs in all experiments") and "newest first" in lines[0]
    header = lines[1].split()
    assert header == ["experiment", "run", "id", "status", "started", "secs", "topology", "cell", "units", "layers",
                      "val_loss", "test_accuracy", "test_macro_f1", "blessed", "export"]
    # newest first, but a sweep's trials follow their parent (oldest trial first)
    assert _names(out) == ["weather-gru-many_to_one-dddd", "names-sweep-aaaa", "names-lstm-many_to_one-bbbb",
                           "names-gru-many_to_one-cccc"]
    lstm = next(line for line in lines if "names-lstm" in line)
    assert "↳ names-lstm" in lstm
    assert lstm.split()[-9:] == ["many_to_one", "lstm", "8", "1", "0.5", "0.8", "0.6", "true", "3"]
    assert store["ids"]["names-lstm-many_to_one-bbbb"][:8] in lstm and " 42 " in lstm
    failed = next(line for line in lines if "weather" in line)
    assert "FAILED" in failed and "0.9" in failed
    sweep = next(line for line in lines if "names-sweep" in line)
    assert "lstm,gru" in sweep


def test_sort_by_a_metric_picks_the_direction_and_limit_keeps_the_best(store, capsys) -> None:
    code, out = _runs(capsys, "--tracking-uri", store["uri"], "--sort", "val_loss")
    assert code == 0 and "by val_loss (ascending)" in out
    assert _names(out) == ["names-gru-many_to_one-cccc", "names-lstm-many_to_one-bbbb",
                           "weather-gru-many_to_one-dddd", "names-sweep-aaaa"]  # runs without it last
    assert "↳" not in out  # sorted by a metric: a flat list
    _, out = _runs(capsys, "--tracking-uri", store["uri"], "--sort", "test_accuracy", "--limit", "1")
    assert "by test_accuracy (descending)" in out and _names(out) == ["names-lstm-many_to_one-bbbb"]
    _, out = _runs(capsys, "--tracking-uri", store["uri"], "--sort", "test_accuracy", "--asc", "--limit", "1")
    assert _names(out) == ["names-gru-many_to_one-cccc"]


def test_one_experiment_by_name_or_id_and_a_clear_error_for_an_unknown_one(store, capsys) -> None:
    code, out = _runs(capsys, "names_gender_lstm", "--tracking-uri", store["uri"], "--metrics", "val_loss")
    assert code == 0 and out.startswith("3 runs in names_gender_lstm")
    assert out.splitlines()[1].split()[0] == "run"  # one experiment: no experiment column
    assert "test_accuracy" not in out.splitlines()[1]
    code, out = _runs(capsys, "no_such_pipeline", "--tracking-uri", store["uri"])
    assert code == 2 and "no experiment 'no_such_pipeline'" in out and "names_gender_lstm" in out


def test_store_from_environment_and_a_missing_store(store, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    code, out = _runs(capsys, "weather_next_day_gru")
    assert code == 0 and "weather-gru-many_to_one-dddd" in out
    missing = tmp_path / "nothing" / "mlflow.db"
    code, out = _runs(capsys, "--tracking-uri", f"sqlite:///{missing}")
    assert code == 2 and "no MLflow store at" in out and not missing.exists()


def test_compare_shows_what_differs_side_by_side(store, capsys) -> None:
    lstm, gru = store["ids"]["names-lstm-many_to_one-bbbb"], store["ids"]["names-gru-many_to_one-cccc"]
    code, out = _runs(capsys, "--tracking-uri", store["uri"], "--compare", lstm[:6], "names-gru-many_to_one-cccc")
    assert code == 0
    assert lstm in out and gru in out
    params = out[out.index("params that differ"):out.index("metrics (")]
    assert "(1; 5 equal, not shown)" in params
    assert [line.split() for line in params.splitlines()[3:] if line.strip()] == [["model.cell", "lstm", "gru"]]
    metrics = out[out.index("metrics ("):out.index("tags that differ")]
    rows = {line.split()[0]: line.split()[1:] for line in metrics.splitlines()[3:] if line.strip()}
    assert list(rows)[:3] == ["test_accuracy", "test_macro_f1", "val_loss"]  # test_*, then val_*, then others
    # the last column says which run is better, from the metric registry's direction
    assert rows["val_loss"] == ["0.5", "0.4", "-0.1", "B"] and rows["test_macro_f1"] == ["0.6", "0.6", "0", "="]
    assert rows["time_train_s"] == ["3", "2", "-1", "B"]
    tags = out[out.index("tags that differ"):]
    assert [t.split() for t in tags.splitlines()[3:]] == [["cell", "lstm", "gru"], ["blessed", "true", "false"],
                                                          ["export_version", "3", "-"]]


def test_compare_with_an_unknown_run_is_one_clear_error(store, capsys) -> None:
    code, out = _runs(capsys, "--tracking-uri", store["uri"], "--compare", "zzzzzz", "names-sweep-aaaa")
    assert code == 2 and "no run matches 'zzzzzz'" in out


def test_ui_checks_the_store_and_prints_a_link_per_experiment(store, capsys, tmp_path) -> None:
    code = cli.main(["ui", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"])
    assert code == 2 and "no MLflow store" in capsys.readouterr().err
    assert cli.main(["ui", "--tracking-uri", "http://mlflow.example:5000"]) == 0
    assert "tracking server: open http://mlflow.example:5000" in capsys.readouterr().out
    links = runs.ui_links(store["uri"], "http://127.0.0.1:5000")
    assert len(links) == 2 and all("workflowType=machine_learning" in link for link in links)
    assert any(link.strip().startswith("names_gender_lstm: http://127.0.0.1:5000/#/experiments/") for link in links)


def test_run_ends_with_a_table_of_stages(monkeypatch, capsys, tmp_path) -> None:
    from pipeline import runner

    def fake_run(config: Any, **_: Any) -> runner.RunResult:
        return runner.RunResult("abc", tmp_path, {}, {"ingest": True, "validate": True, "preprocess": False,
                                                      "train": False},
                                {"ingest": 0.01, "validate": 0.0, "preprocess": 1.5, "train": 12.25})

    monkeypatch.setattr(runner, "run", fake_run)
    config = Path(__file__).resolve().parent.parent / "configs" / "names_gender_lstm.yaml"
    assert cli.main(["run", str(config)]) == 0
    out = capsys.readouterr().out
    table = [line.split() for line in out[out.index("stage   "):].splitlines()]
    assert table[0] == ["stage", "status", "seconds"]
    assert table[2] == ["ingest", "cached", "0.01"] and table[5] == ["train", "ran", "12.25"]
    assert table[6] == ["evaluate", "not", "run", "-"] and table[-2] == ["total", "2", "ran,", "2", "cached", "13.76"]
