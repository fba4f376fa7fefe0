"""`data.runner: beam`: the CSV's per-series ingest, the validation statistics and preprocessing's fit and
encoding as Apache Beam pipelines (DirectRunner, 2 worker processes) give the local runner's windows, counts,
bad rows, statistics, fitted state and encoded arrays."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from components import ingestion, preprocessing, validation
from components.artifacts import Artifact
from components.config import ConfigError, DataConfig
from tests.conftest import ingested
from tests.test_validation import Ctx


def long_csv(path: Path) -> Path:
    """Five stores, daily, shuffled rows; some days missing (filled or left as gaps), one malformed line."""
    rng = random.Random(0)
    rows = []
    for k, store in enumerate(("north", "south", "east", "west", "up")):
        for d in range(60 + 7 * k):
            if (d * (k + 3)) % 17 == 5:
                continue  # a missing day: a gap (or a filled step)
            rows.append(f"{store},2021-{1 + d // 28:02d}-{1 + d % 28:02d},{100 * k + d + rng.random():.3f},{d % 7}")
    rng.shuffle(rows)
    rows.insert(40, "south,2021-01-09")  # too few fields: a bad row, reported by line
    path.write_text("store,date,units,weekday\n" + "\n".join(rows) + "\n")
    return path


def run(tmp_path: Path, name: str, **data: object) -> tuple[Artifact, Artifact]:
    cfg = DataConfig(source="csv", path=str(long_csv(tmp_path / "sales.csv")), time_column="date",
                     id_column="store", target_columns=("units",), window=5, horizon=2, **data)
    ingestion.check(cfg, "seq2seq")
    out = tmp_path / name
    out.mkdir()
    props = ingestion.run({}, out, Ctx(), data=cfg, topology="seq2seq")
    art = Artifact("ingest", out, name, props)
    checked = tmp_path / f"{name}_validate"
    checked.mkdir()
    ctx = Ctx()
    validation.run({"ingest": art}, checked, ctx, data=cfg)
    pre = tmp_path / f"{name}_pre"
    pre.mkdir()
    pre_props = preprocessing.run({"ingest": art}, pre, Ctx(), data=cfg)
    return art, Artifact("preprocess", pre, name, pre_props)


@pytest.mark.parametrize("fill", ["none"])  # gaps: segments end inside shards (ffill is the same shared code)
def test_beam_stages_equal_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fill: str) -> None:
    from components.ingestion import beam as beam_module

    local, local_pre = run(tmp_path, "local", fill_missing=fill)
    tasks: list[str] = []
    real = beam_module.run_tasks
    monkeypatch.setattr(beam_module, "run_tasks", lambda items, fn, data: tasks.append(fn.__name__) or
                        real(items, fn, data))
    beam, beam_pre = run(tmp_path, "beam", fill_missing=fill, runner="beam",
                         beam_options={"direct_num_workers": 2, "direct_running_mode": "multi_processing"})
    # every stage's work ran on Beam: ingest's shards, validation's two passes, preprocessing's fit and encoding
    assert tasks == ["shard_task", "_parts_task", "_counts_task", "shard_moments", "shard_encode"]  # one: all splits
    assert (beam.uri / "train.parquet").is_dir()  # written as shards by the workers
    assert len(list((beam.uri / "train.parquet").glob("part-*.parquet"))) >= 2
    for split in ("train", "validation", "test"):
        assert ingested(beam.uri, split) == ingested(local.uri, split) != []
        ours, theirs = preprocessing.load_split(beam_pre, split), preprocessing.load_split(local_pre, split)
        assert ours.keys() == theirs.keys()
        for key in ours:  # the fit's moments were merged from shards: equal to float precision
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6)
    assert beam.properties["counts"] == local.properties["counts"]
    assert beam.properties["spec"]["series"] == local.properties["spec"]["series"]
    assert json.loads((beam.uri / "bad_rows.json").read_text()) == json.loads((local.uri / "bad_rows.json").read_text())
    assert beam_pre.properties["io"] == local_pre.properties["io"]
    same_numbers(json.loads((beam_pre.uri / "preprocessor.json").read_text()),
                 json.loads((local_pre.uri / "preprocessor.json").read_text()))
    same_numbers(json.loads((tmp_path / "beam_validate" / "statistics.json").read_text()),
                 json.loads((tmp_path / "local_validate" / "statistics.json").read_text()))
    # training reads the Beam split a row shard at a time (a tf.data interleave): the local split's examples
    from components import stage_files, training

    for pre, sharded in ((beam_pre, True), (local_pre, False)):
        arrays = stage_files.load_arrays(pre, "train")
        starts = arrays.pop("starts")
        read = training.shard_elements(pre, "train", starts, arrays, lambda a: (a["x"], a["y"]))
        assert (read is not None) == sharded  # the Beam split is read shard by shard, the local one is one file
    ours, theirs = training_examples(beam_pre), training_examples(local_pre)
    assert ours.shape == theirs.shape and len(ours) > 16
    distance = np.abs(ours[:, None, :] - theirs[None, :, :]).max(axis=2)
    assert sorted(distance.argmin(axis=1).tolist()) == list(range(len(theirs)))  # each local example once
    assert distance.min(axis=1).max() < 1e-4


def training_examples(pre: Artifact) -> np.ndarray:
    """Every example of training's train split (shuffle off) as a row: model inputs, then targets."""
    from components import training
    from components.config import ModelConfig, TrainConfig

    model, train = ModelConfig(topology="seq2seq", id_embedding_dim=2), TrainConfig(batch_size=8)
    rows = []
    for x, y in training.split_dataset(pre, "train", model, train):
        parts = [x[key].numpy().reshape(len(y), -1) for key in sorted(x)] + [y.numpy().reshape(len(y), -1)]
        rows.append(np.concatenate([part.astype("float64") for part in parts], axis=1))
    return np.concatenate(rows)


def same_numbers(a: object, b: object) -> None:
    """Equal, but a float may differ in its last bits (the shards' sums are added in another order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            same_numbers(a[key], b[key])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            same_numbers(x, y)
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-12, abs=1e-12)
    else:
        assert a == b


def test_beam_is_for_the_csv_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.runner='beam' runs the csv source"):
        ingestion.check(DataConfig(source="names", runner="beam"), "many_to_one")
    with pytest.raises(ConfigError, match="set data.runner: beam"):
        ingestion.check(DataConfig(source="csv", path=str(long_csv(tmp_path / "s.csv")), target_columns=("units",),
                                   beam_options={"direct_num_workers": 2}), "many_to_one")


@pytest.mark.parametrize("options,message", [
    ({"runner": "NoSuchRunner"}, "data.beam_options.runner: Unexpected pipeline runner: NoSuchRunner"),
    ({"direct_num_worker": 2}, "data.beam_options.direct_num_worker is not a Beam pipeline option; did you mean "
                               "'direct_num_workers'"),
    ({"temp_location": "/no/such/folder"}, "data.beam_options.temp_location='/no/such/folder' is not a folder"),
])
def test_bad_beam_options_are_one_line(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ingestion.check(DataConfig(source="csv", path=str(long_csv(tmp_path / "s.csv")), target_columns=("units",),
                                   runner="beam", beam_options=options), "many_to_one")


def test_beam_carries_task_numbers_not_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run_tasks` hands Beam only each task's number (its item is a file in the shared temp_location), so the
    pipeline graph stays small whatever the data; results come back in item order and no file is left."""
    import apache_beam as beam

    from components.ingestion.beam import run_tasks

    created: list[object] = []
    real_create = beam.Create
    monkeypatch.setattr(beam, "Create", lambda values, **kw: created.extend(values) or real_create(values, **kw))
    items = [np.arange(n, dtype="float64") for n in (3, 200_000, 0, 5)]
    data = DataConfig(runner="beam", beam_options={"runner": "DirectRunner", "direct_num_workers": 1,
                                                   "direct_running_mode": "in_memory", "temp_location": str(tmp_path)})
    assert run_tasks(items, len, data) == [3, 200_000, 0, 5]
    assert created == [0, 1, 2, 3]
    assert list(tmp_path.iterdir()) == []
