"""Bundled datasets: TFDS builders read package files, split deterministically and leak-free."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import ingestion
from components.config import DataConfig
from components.ingestion import bundled, stage
from tests.test_sources import ingest


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[dict]]]:
    """Every builder's split records straight from `records()` (no TFDS files written)."""
    root = tmp_path_factory.mktemp("tfds")
    out = {}
    for name, cls in bundled.BUILDERS.items():
        out[name] = {split: [r for _, r in rows] for split, rows in cls(data_dir=str(root)).records().items()}
    return out


def keys(split_records: dict[str, list[dict]], key: str) -> dict[str, set]:
    return {split: {str(r[key]) for r in rows} for split, rows in split_records.items()}


@pytest.mark.parametrize(("name", "key"), [("names", "name"), ("cmudict", "word"), ("digits", "pixels")])
def test_iid_builders_never_share_a_key_across_splits(records: dict, name: str, key: str) -> None:
    k = keys(records[name], key)
    assert k["train"] and k["validation"] and k["test"]
    assert not (k["train"] & k["validation"]) and not (k["train"] & k["test"]) and not (k["validation"] & k["test"])
    total = sum(map(len, records[name].values()))
    assert 0.05 < len(records[name]["test"]) / total < 0.15


@pytest.mark.parametrize("name", ["seattle_weather", "seattle_temps"])
def test_time_series_are_split_by_time(records: dict, name: str) -> None:
    splits = records[name]
    dates = {s: [r["date"] for r in rows] for s, rows in splits.items()}
    for s in dates:
        assert dates[s] == sorted(dates[s])
    assert dates["train"][-1] < dates["validation"][0] and dates["validation"][-1] < dates["test"][0]
    assert abs(len(dates["test"]) / sum(map(len, dates.values())) - 0.15) < 0.01


def test_cmudict_subset_first_pronunciation_without_stress(records: dict) -> None:
    rows = [r for split in records["cmudict"].values() for r in split]
    assert 19000 < len(rows) < 21000
    assert all("(" not in r["word"] and not any(c.isdigit() for c in r["phonemes"]) for r in rows)
    words = {r["word"]: r["phonemes"] for r in rows}
    if "cat" in words:
        assert words["cat"] == "K AE T"


def test_pydoc_topics_split_within_each_topic_by_position(records: dict) -> None:
    splits = records["pydoc_topics"]
    topics = {s: {r["topic"] for r in rows} for s, rows in splits.items()}
    assert topics["train"] == topics["test"] and len(topics["train"]) > 70
    assert all(len(r["text"]) <= bundled.PydocTopics.CHUNK and "  " not in r["text"] for r in splits["train"])
    train = sum(len(r["text"]) for r in splits["train"])
    assert 0.75 < train / sum(len(r["text"]) for rows in splits.values() for r in rows) < 0.85


def test_prepare_builds_once_and_keeps_order(tmp_path: Path, records: dict) -> None:
    prepared = bundled.prepare("seattle_weather", tmp_path)
    assert prepared == records["seattle_weather"]  # same records, same (time) order, clean floats
    assert (tmp_path / "seattle_weather" / "1.0.0" / "dataset_info.json").is_file()
    again = bundled.prepare("seattle_weather", tmp_path)  # cached: read back, not rebuilt
    assert again == prepared


CASES = [
    ("names", "many_to_one", {}, "tokens", "label"),
    ("names", "one_to_many", {}, "category", "tokens"),
    ("digits", "one_to_one", {}, "vector", "label"),
    ("digits", "one_to_many", {}, "category", "series"),
    ("digits", "many_to_one", {}, "series", "label"),
    ("seattle_weather", "many_to_one", {"window": 30}, "series", "label"),
    ("seattle_weather", "many_to_many", {"window": 14, "stride": 7}, "series", "labels"),
    ("seattle_temps", "seq2seq", {"window": 24, "horizon": 24, "stride": 24}, "series", "series"),
    ("pydoc_topics", "many_to_many", {"window": 50, "stride": 50}, "tokens", "tokens"),
    ("cmudict", "seq2seq", {}, "tokens", "tokens"),
]


@pytest.mark.parametrize(("source", "topology", "extra", "x_kind", "y_kind"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_every_bundled_task_writes_examples_of_its_kinds(tmp_path: Path, source: str, topology: str, extra: dict,
                                                        x_kind: str, y_kind: str) -> None:
    props, splits, _, cfg = ingest(tmp_path, topology, source=source, max_examples=8, **extra)
    spec = props["spec"]
    assert (spec["x"]["kind"], spec["y"]["kind"]) == (x_kind, y_kind)
    assert props["counts"] == {"train": 8, "validation": 8, "test": 8}
    x, y = splits["train"][0]
    if x_kind == "series":
        assert len(x) == extra.get("window", 8) and len(x[0]) == len(spec["x"]["columns"])
    if y_kind == "series" and topology == "seq2seq":
        assert len(y) == cfg.horizon
    if y_kind == "labels":
        assert len(y) == len(x) and set(y) <= set(bundled.WEATHER)
    if spec["y"].get("language_model"):
        assert x[1:] == y[:-1] and len(x) == len(y) == 50


def test_weather_windows_see_only_the_past(tmp_path: Path) -> None:
    records = bundled.prepare("seattle_weather")["test"]
    cfg = DataConfig(source="seattle_weather", window=3, horizon=2)
    x, y = ingestion.weather_next_day(records, cfg)[0]
    assert y == records[3 + 2 - 1]["weather"] and x[-1][:4] == [records[2][k] for k in ingestion.WEATHER_MEASURES]
    one_hot = x[0][len(ingestion.WEATHER_COLUMNS):]
    assert one_hot[bundled.WEATHER.index(records[0]["weather"])] == 1.0 and sum(one_hot) == 1.0


def test_empty_inputs_are_left_out_and_recorded() -> None:
    loaded = ingestion.Loaded({})
    kept = stage._drop_empty([("ab", "x"), ("", "y"), ("  ", "z"), ([], "w")], "train", loaded,
                                 {"kind": "tokens", "tokenize": "word"})
    assert kept == [("ab", "x")]
    assert [b["where"] for b in loaded.bad_rows] == ["train example 2", "train example 3", "train example 4"]


def test_one_compatibility_table_for_sources_and_models() -> None:
    """Ingestion reads the models' table (no copy of its own), every declared source task fits it, and
    every topology in it has a builder."""
    from models import io, topologies

    assert set(io.FITS) == set(topologies.BUILDERS)
    assert not hasattr(ingestion, "FITS")
    assert set(ingestion.SOURCES["tfds"].tasks) == set(io.FITS)
    for name, source in ingestion.SOURCES.items():
        for topology, task in source.tasks.items():
            if task.x and task.y:
                assert io.fit_error(topology, task.x["kind"], task.y["kind"]) is None, (name, topology)
    assert "cannot learn" in io.fit_error("seq2seq", "vector", "label", source="tfds")
    assert "cannot map vector -> label" in io.fit_error("seq2seq", "vector", "label")
