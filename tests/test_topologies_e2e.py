"""End to end, one tiny run per example config (every topology, real bundled data, all cells).

Each config runs ingest -> ... -> export with `data.max_examples` small, one epoch and 8 units,
with a cell other than its default (so every cell meets several topologies), and the export
must answer raw test inputs. `names_gender_lstm` is covered by tests/test_pipeline_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.config import CELLS
from pipeline import runner
from tests.conftest import CONFIGS, tiny

NAMES = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem != "names_gender_lstm")


def other_cell(name: str, default: str) -> str:
    """A deterministic cell that is not the config's default."""
    options = [c for c in CELLS if c != default]
    return options[NAMES.index(name) % len(options)]


def raw_inputs(preprocess_dir: Path, n: int = 2) -> list:
    from tests.conftest import raw_rows

    return [row["x"] for row in raw_rows(preprocess_dir, "test")[:n]]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_config_runs_end_to_end_on_real_data(make_config, name: str) -> None:
    import tensorflow as tf

    base = make_config(name)
    cell = other_cell(name, base.model.cell)
    extra = {"data__max_examples": 48, "export__infra_validate": "false", "model__cell": cell,
             "tracking__enabled": "false"}
    if base.model.topology == "many_to_many" and base.data.source == "pydoc_topics":
        extra["data__window"] = 20
    config = make_config(name, **tiny(**extra))
    result = runner.run(config, log=lambda _: None)
    assert set(result.artifacts) >= {"ingest", "validate", "preprocess", "train", "evaluate", "export"}
    assert result.metrics and all(np.isfinite(v) for v in result.metrics.values())
    assert any(k.startswith("baseline_") for k in result.metrics)
    from components.metrics import lookup

    unregistered = [k for k in result.metrics if lookup(k) is None]
    assert not unregistered, f"metrics without a registered direction: {unregistered}"
    if result.artifacts["evaluate"].properties["main_metric"] == "token_error_rate":  # generation
        assert {"test_teacher_forced_perplexity", "baseline_teacher_forced_perplexity"} <= set(result.metrics)
    export = Path(result.export_path)
    assert (export / "saved_model.pb").is_file()
    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    inputs = raw_inputs(result.artifacts["preprocess"].uri)
    kind = json.loads(result.artifacts["preprocess"].path("io.json").read_text())["x"]["kind"]
    tensor = tf.constant([str(v) for v in inputs]) if kind in ("tokens", "category") else tf.constant(inputs, "float32")
    out = serve(**{next(iter(serve.structured_input_signature[1])): tensor})
    assert out and all(int(v.shape[0]) == len(inputs) for v in out.values())


@pytest.mark.slow
def test_user_csv_runs_end_to_end(make_config, tmp_path: Path) -> None:
    """A user's time-series CSV (with a malformed row) -> many_to_one weather classifier -> export."""
    from components.ingestion.bundled import package_file

    lines = package_file("vega_datasets", "_data", "seattle-weather.csv").read_text().splitlines()[:200]
    lines[50] = "2012/02/19,oops,1,1,1,rain"
    (tmp_path / "weather.csv").write_text("\n".join(lines) + "\n")
    raw = {"name": "user_csv", "data": {"source": "csv", "path": str(tmp_path / "weather.csv"), "time_column": "date",
                                         "target_columns": ["weather"], "window": 7, "max_bad_fraction": 0.02},
           "model": {"topology": "many_to_one", "cell": "gru"}}
    config = make_config(raw, **tiny(data__max_examples="null", export__infra_validate="false",
                                     tracking__enabled="false"))
    result = runner.run(config, log=lambda _: None)
    bad = json.loads(result.artifacts["ingest"].path("bad_rows.json").read_text())
    reason = "non-numeric value 'oops' in column 'precipitation'"
    assert bad["bad_rows"] == [{"where": "weather.csv:51", "reason": reason}]
    spec = result.artifacts["ingest"].properties["spec"]
    assert spec["x"]["columns"] == ["precipitation", "temp_max", "temp_min", "wind"]
    assert Path(result.export_path, "saved_model.pb").is_file()
