"""A CSV's windows, cut lazily from rows stored once, equal the windows cut one by one in Python."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.ingestion.windows import SeriesRows, Windows, time_labels, window_starts


def python_windows(rows: SeriesRows, spec: dict) -> list[tuple]:
    """The reference: per segment, `range(0, len - window - ahead + 1, stride)`, each window sliced by hand."""
    w, h, topology, text = spec["window"], spec["horizon"], spec["topology"], spec["text"]
    ahead = 0 if topology == "many_to_many" and text else h
    out = []
    seg = rows.segment.tolist()
    begin = 0
    while begin < len(seg):
        end = begin
        while end < len(seg) and seg[end] == seg[begin]:
            end += 1
        for s in range(begin, max(end - w - ahead + 1, begin), spec["stride"]):
            x = [[rows.values[c][i] for c in spec["x"]] for i in range(s, s + w)]
            if text:
                labels = rows.values[spec["y"][0]]
                y = labels[s + w + h - 1] if topology == "many_to_one" else list(labels[s:s + w])
            else:
                first = s + h if topology == "many_to_many" else s + w
                steps = w if topology == "many_to_many" else h
                y = [[rows.values[c][i] for c in spec["y"]] for i in range(first, first + steps)]
            future = [[rows.values[c][i] for c in spec["future"]] for i in range(s + w, s + w + h)] if spec["future"] \
                else None
            out.append((x, y, rows.id[s + w - 1], future))
        begin = end
    return out


def spec_of(window: int, horizon: int, stride: int, topology: str, text: bool) -> dict:
    return {"window": window, "horizon": horizon, "stride": stride, "topology": topology, "text": text,
            "x": ["b"] if text else ["a", "b"], "y": ["label"] if text else ["a"],
            "future": ["b"] if topology == "seq2seq" else [],  # data.future_columns: seq2seq only
            "max_examples": None, "seed": 0, "time": "number"}


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 12), min_size=0, max_size=6), window=st.integers(1, 5),
       horizon=st.integers(1, 3), stride=st.integers(1, 4),
       topology=st.sampled_from(["many_to_one", "many_to_many", "seq2seq"]), text=st.booleans())
def test_lazy_windows_equal_python_windows(lengths: list[int], window: int, horizon: int, stride: int,
                                           topology: str, text: bool) -> None:
    if text and topology == "seq2seq":
        return  # a text target is never a seq2seq CSV target (catalogue.csv_kinds)
    n = sum(lengths)
    segment = np.repeat(np.arange(len(lengths)), lengths).astype("int64")
    rows = SeriesRows({"a": np.arange(n, dtype="float64"), "b": np.arange(n, dtype="float64") * 10,
                       "label": np.array([f"c{i % 3}" for i in range(n)], dtype=object)},
                      segment, np.array([f"s{s}" for s in segment], dtype=object), np.arange(n, dtype="float64"))
    spec = spec_of(window, horizon, stride, topology, text)
    windows = Windows(rows, spec)
    expected = python_windows(rows, spec)
    assert len(windows) == len(expected)
    assert windows.starts.tolist() == sorted(windows.starts.tolist())
    if not expected:
        return
    assert windows.x().tolist() == [e[0] for e in expected]
    y = windows.y()
    assert (y if text else y.tolist()) == [e[1] for e in expected]
    assert windows.ids() == [e[2] for e in expected]
    future = windows.future()
    want = None if expected[0][3] is None else [e[3] for e in expected]
    assert (None if future is None else future.tolist()) == want


def test_window_starts_per_segment() -> None:
    segment = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2], dtype="int64")
    assert window_starts(segment, 2, 1, 1).tolist() == [0, 1, 2, 7, 8]
    assert window_starts(segment, 2, 1, 2).tolist() == [0, 2, 7]
    assert window_starts(segment, 6, 0, 1).tolist() == []


def test_rows_round_trip_through_parquet(tmp_path: Path) -> None:
    rows = SeriesRows({"y": np.array([1.5, 2.0, -3.25]), "kind": np.array(["a", "é", "c"], dtype=object)},
                      np.array([0, 0, 1], dtype="int64"), np.array(["s1", "s1", "s2"], dtype=object),
                      np.array([0, 3_600 * 10**9, 7_200 * 10**9], dtype="int64"))
    rows.write(tmp_path / "train.parquet")
    back = SeriesRows.read(tmp_path / "train.parquet")
    assert back.values["y"].tolist() == [1.5, 2.0, -3.25] and back.values["kind"].tolist() == ["a", "é", "c"]
    assert back.segment.tolist() == [0, 0, 1] and back.id.tolist() == ["s1", "s1", "s2"]
    assert time_labels(back.time, "datetime") == ["1970-01-01T00:00:00", "1970-01-01T01:00:00", "1970-01-01T02:00:00"]


def test_max_examples_is_a_seeded_ordered_sample() -> None:
    n = 200
    rows = SeriesRows({"a": np.arange(n, dtype="float64"), "b": np.zeros(n)}, np.zeros(n, dtype="int64"))
    spec = {**spec_of(4, 1, 1, "many_to_one", False), "future": [], "max_examples": 25, "seed": 7}
    first, again = Windows(rows, spec), Windows(rows, spec)
    assert len(first) == 25 and first.starts.tolist() == again.starts.tolist()
    assert first.starts.tolist() == sorted(first.starts.tolist())
    assert Windows(rows, {**spec, "seed": 8}).starts.tolist() != first.starts.tolist()


@pytest.mark.parametrize("kind,stamps,labels", [("date", [0, 86_400 * 10**9], ["1970-01-01", "1970-01-02"]),
                                                ("number", [3.0, 4.5], [3, 4.5])])
def test_time_labels(kind: str, stamps: list, labels: list) -> None:
    assert time_labels(np.array(stamps), kind) == labels


def test_preprocessing_in_chunks_gives_what_one_chunk_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The targets' encoding, the inputs' encoding (`load_split`) and the residual fit (`data.target_reference`)
    run CHUNK windows at a time; with chunks of 7 windows the state and arrays are those of one chunk."""
    import json

    from components import config, preprocessing
    from pipeline import runner

    path = tmp_path / "d.csv"
    path.write_text("time,y,a\n" + "".join(f"2024-01-{1 + h // 24:02d}T{h % 24:02d}:00:00,{(h * 7) % 11 + h / 50},"
                                         f"{h % 5}\n" for h in range(300)))

    def preprocess(runs: str) -> tuple[dict, dict]:
        cfg = config.from_dict({"name": "t", "runs_dir": str(tmp_path / runs), "tracking": {"enabled": False},
                                "data": {"source": "csv", "path": str(path), "time_column": "time",
                                         "target_columns": ["y"], "window": 6, "horizon": 2,
                                         "target_reference": "last"},
                                "model": {"topology": "seq2seq"}})
        art = runner.run(cfg, to_stage="preprocess", log=lambda _: None).artifacts["preprocess"]
        state = json.loads(art.path("preprocessor.json").read_text())
        return state, {s: preprocessing.load_split(art, s) for s in ("train", "validation", "test")}

    whole = preprocess("one")
    monkeypatch.setattr(preprocessing, "CHUNK", 7)
    chunked = preprocess("seven")
    assert len(whole[1]["train"]["x"]) > 3 * 7  # several chunks
    np.testing.assert_allclose(chunked[0]["y"]["variance"], whole[0]["y"]["variance"], rtol=1e-12)
    for split, arrays in whole[1].items():
        assert arrays.keys() == chunked[1][split].keys()
        for key in arrays:
            np.testing.assert_array_equal(arrays[key], chunked[1][split][key])


def test_a_splits_digest_is_of_its_rows_not_of_the_parquet_bytes(tmp_path: Path) -> None:
    """The same rows written with another compression (or pyarrow version, or as shards) give the same digest;
    other rows do not."""
    import pyarrow.parquet as pq

    from components import stage_files as files

    rows = SeriesRows({"y": np.arange(50, dtype="float64")}, np.repeat([0, 1], 25), np.array(["a"] * 50, object))
    digests = []
    for name, compression, values in (("a", "snappy", rows.values), ("b", "none", rows.values),
                                      ("c", "none", {"y": np.arange(50, dtype="float64") + 1})):
        folder = tmp_path / name
        folder.mkdir()
        np.savez(folder / files.split_file("test"), starts=np.arange(3))
        SeriesRows(values, rows.segment, rows.id).write(folder / "plain.parquet")
        pq.write_table(pq.read_table(folder / "plain.parquet"), folder / files.rows_file("test"),
                       compression=compression)
        (folder / "plain.parquet").unlink()
        digests.append(files.split_digest(folder, "test"))
    written = [(tmp_path / name / files.rows_file("test")).read_bytes() for name in ("a", "b")]
    assert written[0] != written[1]
    assert digests[0] == digests[1] != digests[2]


def test_examples_are_cut_a_block_at_a_time_and_equal_the_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluation reads a CSV split as `Examples`: iterated in blocks, indexed, sliced, or a field at once, each
    equals the windows' example dicts."""
    from components.ingestion.windows import Examples

    n = 40
    segment = np.repeat([0, 1], [25, 15]).astype("int64")
    rows = SeriesRows({"a": np.arange(n, dtype="float64"), "b": np.arange(n, dtype="float64") * 10},
                      segment, np.array([f"s{s}" for s in segment], dtype=object), np.arange(n, dtype="float64"))
    windows = Windows(rows, spec_of(4, 2, 1, "seq2seq", False))
    whole = windows.examples()
    monkeypatch.setattr(Examples, "BLOCK", 3)  # several blocks, the last one short
    examples = Examples(windows)
    assert len(examples) == len(whole) == 20 + 10 and list(examples) == whole
    assert examples[0] == whole[0] and examples[-1] == whole[-1] and examples[5:9] == whole[5:9]
    with pytest.raises(IndexError):
        examples[len(whole)]
    for key in ("x", "y", "future"):  # numbers: an array
        np.testing.assert_array_equal(examples.field(key), [e[key] for e in whole])
    for key in ("id", "time"):
        assert examples.field(key) == [e[key] for e in whole]
    assert examples[2:30:9] == whole[2:30:9] and examples[-3:] == whole[-3:] and examples[40:] == []


def test_training_cuts_a_csvs_windows_per_batch_as_the_arrays_would_be(tmp_path: Path) -> None:
    """Training's tf.data pipeline holds a CSV split's window starts and cuts and encodes each batch's windows
    from its rows: the batches (shuffled, with known future values and series ids) equal those of the arrays
    encoded up front, in the same order."""
    from components import config, preprocessing, stage_files, training
    from models.build import model_inputs, training_data
    from pipeline import runner

    path = tmp_path / "d.csv"
    path.write_text("time,id,y,a\n" + "".join(f"{h},{s},{(h * 7) % 11 + h / 50 + s},{h % 5}\n"
                                             for s in (1, 2) for h in range(120)))
    cfg = config.from_dict({"name": "t", "runs_dir": str(tmp_path / "runs"), "tracking": {"enabled": False},
                            "data": {"source": "csv", "path": str(path), "time_column": "time", "id_column": "id",
                                     "target_columns": ["y"], "window": 6, "horizon": 2, "future_columns": ["a"]},
                            "model": {"topology": "seq2seq", "id_embedding_dim": 2},
                            "train": {"batch_size": 4, "seed": 3}})
    art = runner.run(cfg, to_stage="preprocess", log=lambda _: None).artifacts["preprocess"]
    io, codec = art.properties["io"], preprocessing.Codec.load(art)
    for split, shuffle in (("train", True), ("validation", False)):
        lazy = training.split_dataset(art, split, cfg.model, cfg.train, shuffle=shuffle)
        arrays = stage_files.load_arrays(art, split)  # x encoded up front, from windows cut by NumPy
        arrays.pop("starts")
        arrays["x"] = np.asarray(codec.encode(stage_files.raw_windows(art, split).x(dtype="float32"), "x"))
        np.testing.assert_array_equal(preprocessing.load_split(art, split)["x"], arrays["x"])  # as evaluation reads
        inputs, targets = training_data(cfg.model, io, model_inputs(cfg.model, io, arrays), arrays["y"])
        assert isinstance(inputs, dict) and {"inputs", "future", "series_id"} <= inputs.keys()
        eager = training.make_dataset(inputs, targets, cfg.train.batch_size, shuffle=shuffle, seed=cfg.train.seed)
        batches = 0
        for (got_x, got_y), (want_x, want_y) in zip(lazy, eager, strict=True):
            assert got_x.keys() == want_x.keys()
            for key in want_x:
                np.testing.assert_allclose(got_x[key].numpy(), want_x[key].numpy(), rtol=1e-6)
            np.testing.assert_array_equal(got_y.numpy(), want_y.numpy())
            batches += 1
        assert batches == -(-len(arrays["y"]) // 4) > 1


def test_evaluation_forecasts_a_chunk_at_a_time_as_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CSV split's forecasts (window-scaled, so the decoding reads each raw window; with quantiles, known
    future values and series ids) are predicted and decoded CHUNK windows at a time: with chunks of 5 they
    equal those of one chunk."""
    from components import config, preprocessing
    from components.evaluation import forecast
    from models import load_model
    from pipeline import runner

    path = tmp_path / "d.csv"
    path.write_text("time,id,y,a\n" + "".join(f"{h},{s},{(h * 7) % 11 + h / 50 + s},{h % 5}\n"
                                             for s in (1, 2) for h in range(150)))
    cfg = config.from_dict({"name": "t", "runs_dir": str(tmp_path / "runs"), "tracking": {"enabled": False},
                            "data": {"source": "csv", "path": str(path), "time_column": "time", "id_column": "id",
                                     "target_columns": ["y"], "window": 6, "horizon": 2, "future_columns": ["a"],
                                     "scale": "window"},
                            "model": {"topology": "seq2seq", "id_embedding_dim": 2, "units": 4,
                                      "quantiles": [0.1, 0.5, 0.9]},
                            "train": {"epochs": 1}})
    arts = runner.run(cfg, to_stage="train", log=lambda _: None).artifacts
    art, net = arts["preprocess"], load_model(arts["train"].path("model.keras"), cells=[cfg.model.cell])
    codec, levels = preprocessing.Codec.load(art), list(cfg.model.quantiles)
    whole = forecast._forecasts(net, art, "test", cfg.model, codec, levels)
    monkeypatch.setattr(preprocessing, "CHUNK", 5)
    chunked = forecast._forecasts(net, art, "test", cfg.model, codec, levels)
    assert len(whole[0]) > 2 * 5 and len(whole[0]) % 5 and codec.y.get("window_scale")  # chunks, one partial
    for got, want in zip(chunked[1:], whole[1:], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
