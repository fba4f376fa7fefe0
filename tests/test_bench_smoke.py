"""The benchmarks run and return well-formed results (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import pytest

from bench import cells, common, run_all

SUMMARY_KEYS = {"case", "metric", "value", "baseline", "baseline_name", "ratio", "cpu_ratio", "target", "met"}


def well_formed(result: dict, benchmark: str) -> None:
    assert result["benchmark"] == benchmark
    assert result["rows"] and result["summary"]
    for line in result["summary"]:
        assert set(line) == SUMMARY_KEYS
        assert line["value"] > 0 and line["baseline"] > 0 and math.isfinite(line["ratio"])
        assert line["met"] is None or isinstance(line["met"], bool)


def test_interleaved_runs_variants_in_abba_order() -> None:
    order: list[str] = []
    times = common.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 4)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(times.wall("a")) == len(times.cpu("b")) == 4
    assert common.median([3.0, 1.0, 2.0]) == 2.0 and common.spread([1.0, 2.0, 3.0]) == 1.0


def test_summary_line_and_table() -> None:
    line = common.summary_line("case", "ex/s", 97.0, 100.0, "plain", target=0.97, cpu_ratio=1.0)
    assert line["ratio"] == pytest.approx(0.97) and line["met"] is True
    assert common.summary_line("c", "m", 1.0, 2.0, "b", target=0.97)["met"] is False
    text = common.table([{"a": 1.23456, "b": None, "c": True}, {"a": 12345.0, "b": "x", "c": False}])
    assert text.splitlines()[0].split() == ["|", "a", "|", "b", "|", "c", "|"]
    assert "1.23" in text and "12,345" in text and "NO" in text


def test_flop_count_and_peak_table() -> None:
    lstm = cells.train_flops("lstm", seq=10, units=8, features=8, batch=2)
    assert lstm == 6 * 10 * 2 * 4 * 8 * 16
    assert cells.train_flops("gru", 10, 8, 8, 2) / lstm == 0.75
    assert cells.train_flops("simple_rnn", 10, 8, 8, 2) / lstm == 0.25
    assert cells.datasheet_peak("NVIDIA H100 80GB HBM3")["bf16"] == 989.4
    assert cells.datasheet_peak("NVIDIA H100 PCIe")["bf16"] == 756.0
    assert cells.datasheet_peak("NVIDIA H200")["tf32"] == 494.7
    assert cells.datasheet_peak("some CPU") is None


def test_cell_grid_on_gpu_has_cudnn_and_bf16_axes() -> None:
    grid = cells.variants(["simple_rnn", "lstm"], [8], [4], gpu=True, precisions=["float32", "mixed_bfloat16"])
    assert {(v.cell, v.cudnn, v.precision) for v in grid} == {
        ("simple_rnn", None, "float32"), ("simple_rnn", None, "mixed_bfloat16"),
        ("lstm", True, "float32"), ("lstm", False, "float32"),
        ("lstm", True, "mixed_bfloat16"), ("lstm", False, "mixed_bfloat16")}
    assert {v.cudnn for v in cells.variants(["lstm"], [8], [4], gpu=False, precisions=["float32"])} == {None}


@pytest.mark.slow
def test_cells_runs() -> None:
    result = cells.main(["--cells", "simple_rnn", "lstm", "--units", "8", "--seq", "4", "--steps", "1",
                         "--warmup", "1"])
    well_formed(result, "cells")
    assert all(row["step_ms"] > 0 and row["gflops"] > 0 for row in result["rows"])


@pytest.mark.slow
def test_input_pipeline_runs() -> None:
    from bench import input_pipeline

    result = input_pipeline.main(["--quick", "--examples", "64", "--rounds", "1",
                                  "--configs", "names_gender_lstm.yaml"])
    well_formed(result, "input_pipeline")


@pytest.mark.slow
def test_pipeline_overhead_runs() -> None:
    from bench import pipeline_overhead

    result = pipeline_overhead.main(["--quick", "--examples", "64", "--epochs", "2", "--cells", "gru",
                                     "--configs", "names_gender_lstm.yaml"])
    well_formed(result, "pipeline_overhead")
    assert result["rows"][0]["steady_wall_ratio"] > 0


@pytest.mark.slow
def test_data_stages_runs() -> None:
    from bench import data_stages

    result = data_stages.main(["--quick", "--sizes", "500"])
    well_formed(result, "data_stages")
    row = result["rows"][0]
    assert row["windows"] > 0 and "note" not in row  # every variant cut the same number of windows
    assert row["beam_s"] > 0 and row["beam_rss_gb"] > 0  # data.runner: beam measured beside the local runner
    assert set(data_stages.STAGES) <= {k.rsplit("_", 1)[0] for k in row if k.endswith("_mb")}


def test_run_all_reports_results_and_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    ok = types.ModuleType("bench.fake_ok")
    ok.main = lambda argv=None: {"benchmark": "fake_ok", "rows": [{"x": 1}], "summary": [
        common.summary_line("case", "ex/s", 2.0, 1.0, "base", target=0.5)]}
    bad = types.ModuleType("bench.fake_bad")

    def explode(argv: list[str] | None = None) -> dict:
        raise RuntimeError("boom")

    bad.main = explode
    monkeypatch.setitem(sys.modules, "bench.fake_ok", ok)
    monkeypatch.setitem(sys.modules, "bench.fake_bad", bad)
    monkeypatch.setattr(run_all, "BENCHMARKS", ("fake_ok", "fake_bad"))
    out = tmp_path / "results.json"

    assert run_all.main(["--quick", "--only", "fake_ok", "--json", str(out)]) == 0
    assert "fake_ok" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["machine"]["cores"] and saved["machine"]["tensorflow"] and not saved["failures"]
    assert saved["results"]["fake_ok"]["summary"][0]["met"] is True

    assert run_all.main(["--json", str(out)]) == 1  # a benchmark that cannot run fails the command
    assert "boom" in json.loads(out.read_text())["failures"]["fake_bad"]
    assert "FAILED to run: bench.fake_bad" in capsys.readouterr().out
