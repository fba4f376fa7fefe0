"""Validation stage: statistics, the inferred schema and anomalies (fatal and warnings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components import validation
from components.artifacts import Artifact
from components.config import DataConfig
from components.validation import DataValidationError


class Ctx:
    """A stage context that collects log lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def fake_ingest(root: Path, x: dict[str, Any], y: dict[str, Any], splits: dict[str, list], bad: list | None = None,
                topology: str = "many_to_one", total: int | None = None) -> Artifact:
    """An ingest artifact written by hand: `splits` maps split -> [(x, y), ...]."""
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        rows = splits.get(split, [])
        (root / f"{split}.jsonl").write_text("".join(json.dumps({"x": a, "y": b}) + "\n" for a, b in rows))
    (root / "spec.json").write_text(json.dumps({"x": x, "y": y, "topology": topology, "source": "test"}))
    n = sum(len(v) for v in splits.values())
    (root / "bad_rows.json").write_text(json.dumps({"total_rows": total or n, "bad_rows": bad or []}))
    return Artifact("ingest", root, "fp", {})


def validate(tmp_path: Path, *args: Any, data: DataConfig | None = None, **kwargs: Any) -> tuple[dict, list, Path]:
    ingest = fake_ingest(tmp_path / "ingest", *args, **kwargs)
    out = tmp_path / "validate"
    out.mkdir()
    props = validation.run({"ingest": ingest}, out, Ctx(), data=data or DataConfig())
    return props, json.loads((out / "anomalies.json").read_text()), out


TOKENS, LABEL = {"kind": "tokens", "tokenize": "char"}, {"kind": "label"}
SERIES = {"kind": "series", "columns": ["a", "b"]}


def names_like(n: int = 6) -> dict[str, list]:
    names = [("anna", "f"), ("bob", "m"), ("carl", "m"), ("dora", "f"), ("eve", "f"), ("finn", "m")]
    return {"train": names[:n], "validation": [("nell", "f"), ("rob", "m")], "test": [("ida", "f")]}


def test_statistics_schema_report_and_plots(tmp_path: Path) -> None:
    splits = {"train": [([[1.0, 2.0], [3.0, 4.0]], "up"), ([[0.0, 1.0], [5.0, 6.0]], "down")],
              "validation": [([[1.0, 2.0], [2.0, 2.0]], "up")], "test": [([[2.0, 2.0], [1.0, 1.0]], "down")]}
    props, anomalies, out = validate(tmp_path, SERIES, LABEL, splits)
    assert anomalies == [] and props["anomalies"] == 0
    stats = json.loads((out / "statistics.json").read_text())
    cols = stats["train"]["x"]["columns"]
    assert [c["name"] for c in cols] == ["a", "b"]
    assert (cols[0]["min"], cols[0]["max"], cols[0]["mean"], cols[0]["missing"]) == (0.0, 5.0, 2.25, 0)
    assert sum(cols[0]["histogram"]["counts"]) == 4
    schema = json.loads((out / "schema.json").read_text())
    assert schema["x"]["features"] == 2 and schema["y"]["classes"] == ["down", "up"]
    report = (out / "validation.md").read_text()
    assert "## Numeric columns (train)" in report and "| x | a |" in report
    assert (out / "numeric.png").stat().st_size > 1000
    assert not (out / "lengths.png").exists()  # every sequence has 2 steps: no histogram of one bar


def test_a_length_histogram_only_where_some_side_has_two_lengths(tmp_path: Path) -> None:
    """A CSV's windows: x 24 steps, y 1 step, in every split: nothing to histogram (the report's table says
    it); names of varying length: one outline per split."""
    from components.stage_files import SPLITS
    from components.validation import _plot_lengths

    one_each = {s: {"x": {"length_counts": {"24": 9}}, "y": {"length_counts": {"1": 9}}} for s in SPLITS}
    _plot_lengths(one_each, tmp_path / "one.png")
    assert not (tmp_path / "one.png").exists()
    varied = {s: {"x": {"length_counts": {"3": 2, "7": 5}}, "y": {}} for s in SPLITS}
    _plot_lengths(varied, tmp_path / "varied.png")
    assert (tmp_path / "varied.png").stat().st_size > 1000


def test_tokens_statistics_and_warnings(tmp_path: Path) -> None:
    splits = names_like()
    splits["validation"].append(("zzzzqqqqxxxxyyyy", "x"))  # unseen class, OOV chars, longer than train
    props, anomalies, out = validate(tmp_path, TOKENS, LABEL, splits)
    text = " ".join(a["anomaly"] for a in anomalies)
    assert not any(a["fatal"] for a in anomalies)
    assert "classes never seen in train: ['x']" in text
    assert "never occur in train" in text and "longer than train's 4" in text
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["train"]["x"]["length_max"] == 4 and stats["train"]["x"]["vocabulary"]["a"] == 4


@pytest.mark.parametrize(("x", "y", "splits", "message"), [
    (TOKENS, LABEL, {"train": [("ab", "f"), (7, "m")], "test": [("cd", "f")]}, "wrong type: 1 x values are not tokens"),
    (SERIES, LABEL, {"train": [([[1.0, "a"]], "f"), ([[1.0, 2.0]], "m")], "test": [([[1.0, 2.0]], "m")]},
     "not series values"),
    (TOKENS, {"kind": "labels"}, {"train": [("ab", "fm"), ("cd", ["f", "m"])], "test": [("cd", ["f", "m"])]},
     "are not labels values"),
    (TOKENS, LABEL, {"train": [("ab", ""), ("cd", None)], "test": [("cd", "f")]}, "every y value is missing"),
    (TOKENS, LABEL, {"train": [("ab", "f"), ("cd", "f")], "test": [("cd", "f")]}, "single class"),
    (TOKENS, LABEL, {"train": [("ab", "f"), ("cd", "m")], "test": []}, "[test] the split is empty"),
    (SERIES, LABEL, {"train": [([[1.0, 2.0]], "f"), ([[1.0, 2.0]], "m")], "test": [([[1.0, 2.0, 3.0]], "m")]},
     "x has 3 features, train has 2"),
])
def test_fatal_anomalies_stop_the_run(tmp_path: Path, x: dict, y: dict, splits: dict, message: str) -> None:
    with pytest.raises(DataValidationError, match="data validation failed") as info:
        validate(tmp_path, x, y, splits)
    assert message in str(info.value)


def test_too_many_malformed_rows_fail_with_file_and_line(tmp_path: Path) -> None:
    bad = [{"where": "data.tsv:3", "reason": "empty input sequence"}]
    props, anomalies, _ = validate(tmp_path, TOKENS, LABEL, names_like(), bad, total=200)  # 0.5 %: a warning
    assert [a["fatal"] for a in anomalies] == [False] and "1 of 200 rows" in anomalies[0]["anomaly"]
    with pytest.raises(DataValidationError, match=r"1 of 10 rows are malformed \(10.0% > data.max_bad_fraction=1.0%\)"
                                                  r", e.g. data.tsv:3: empty input sequence"):
        validate(tmp_path / "again", TOKENS, LABEL, names_like(), bad, total=10)
    validate(tmp_path / "lenient", TOKENS, LABEL, names_like(), bad, total=10, data=DataConfig(max_bad_fraction=0.2))


def test_values_far_outside_the_train_range_warn(tmp_path: Path) -> None:
    splits = {"train": [([[0.0, 1.0]], "a"), ([[1.0, 2.0]], "b")], "validation": [([[0.5, 1.5]], "a")],
              "test": [([[50.0, 1.5]], "b")]}
    _, anomalies, _ = validate(tmp_path, SERIES, LABEL, splits)
    assert len(anomalies) == 1
    assert "column 'a' ranges over [50, 50], far outside train's [0, 1]" in anomalies[0]["anomaly"]
