"""User sources on small files made here: csv, pairs, labelled, text, tfds; malformed rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components import ingestion, validation
from components.artifacts import Artifact
from components.config import ConfigError, DataConfig
from components.ingestion.sources import DataSourceError
from tests.conftest import ingested
from tests.test_validation import Ctx


def ingest(tmp_path: Path, topology: str, **data: Any) -> tuple[dict, dict[str, list], Artifact, DataConfig]:
    """Run the ingestion stage; returns (properties, examples per split, artifact, data config)."""
    cfg = DataConfig(**data)
    ingestion.check(cfg, topology)
    out = tmp_path / "ingest"
    out.mkdir(exist_ok=True)
    props = ingestion.run({}, out, Ctx(), data=cfg, topology=topology)
    splits = {s: [(e["x"], e["y"]) for e in ingested(out, s)] for s in ("train", "validation", "test")}
    return props, splits, Artifact("ingest", out, "fp", props), cfg


def bad_rows(art: Artifact) -> dict[str, str]:
    return {b["where"]: b["reason"] for b in json.loads(art.path("bad_rows.json").read_text())["bad_rows"]}


def write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def series_csv(n: int = 40, bad: dict[int, str] | None = None) -> str:
    """A daily CSV: t, temp, wind, sky; row i (0-based) replaced by bad[i] if given."""
    lines = ["day,temp,wind,sky"]
    for i in range(n):
        sky = "sun" if i % 3 else "rain"
        lines.append((bad or {}).get(i, f"2020-01-{1 + i // 24:02d} {i % 24:02d}:00,{10 + i},{i % 5},{sky}"))
    return "\n".join(lines) + "\n"


CSV = {"source": "csv", "time_column": "day", "window": 4, "horizon": 2, "stride": 1, "val_fraction": 0.2,
       "test_fraction": 0.2}


def test_csv_seq2seq_windows_split_by_time(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", series_csv())
    props, splits, _, _ = ingest(tmp_path, "seq2seq", path=path, target_columns=["temp"], feature_columns=["wind"],
                                 **CSV)
    assert props["spec"]["x"] == {"kind": "series", "columns": ["temp", "wind"]}
    assert props["spec"]["y"] == {"kind": "series", "columns": ["temp"]}
    assert props["spec"]["columns"]["temp"] == {"type": "numeric", "missing": 0}
    x, y = splits["train"][0]
    assert x == [[10.0, 0.0], [11.0, 1.0], [12.0, 2.0], [13.0, 3.0]] and y == [[14.0], [15.0]]
    assert props["counts"] == {"train": 24 - 5, "validation": 8 - 5, "test": 8 - 5}  # 24/8/8 rows, no crossing
    last_train = splits["train"][-1][1][-1][0]
    assert last_train == 10 + 23 and splits["validation"][0][0][0][0] == 10 + 24  # time order kept


def test_csv_class_target_tagging_and_next_step(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", series_csv())
    props, splits, _, _ = ingest(tmp_path, "many_to_many", path=path, target_columns=["sky"], **CSV)
    assert props["spec"]["x"]["columns"] == ["temp", "wind"] and props["spec"]["y"]["kind"] == "labels"
    x, y = splits["train"][0]
    assert len(x) == len(y) == 4 and y == ["rain", "sun", "sun", "rain"]
    props, splits, _, _ = ingest(tmp_path, "many_to_one", path=path, target_columns=["sky"], **CSV)
    assert props["spec"]["y"] == {"kind": "label"} and splits["train"][0][1] == "sun"  # row 5 = 4 + horizon - 1
    props, splits, _, _ = ingest(tmp_path, "many_to_one", path=path, target_columns=["temp"], feature_columns=["wind"],
                                 **CSV)
    assert splits["train"][0][1] == [[14.0], [15.0]]  # numeric: the next `horizon` steps


def test_csv_malformed_rows_are_recorded_and_windows_skip_gaps(tmp_path: Path) -> None:
    bad = {3: "2020-01-01 03:00,oops,1,sun", 10: "2020-01-01 10:00,20", 17: "2020-01-01 17:00,,2,sun",
           25: "not-a-date,35,1,sun", 30: "2020-01-01 02:00,40,1,sun"}  # 30: same time as row 2 (duplicate)
    path = write(tmp_path / "w.csv", series_csv(40, bad).encode() + b"2021-01-01,\xff\xfe,1,sun\n")
    props, splits, art, cfg = ingest(tmp_path, "seq2seq", path=path, target_columns=["temp"], feature_columns=["wind"],
                                     **CSV)
    reasons = bad_rows(art)
    assert reasons == {
        "w.csv:5": "non-numeric value 'oops' in column 'temp'",
        "w.csv:12": "expected 4 fields, found 2",
        "w.csv:27": "unreadable time 'not-a-date' in column 'day'",
        "w.csv:32": "duplicate time (same as line 4)",
        "w.csv:42": "not valid UTF-8 (byte 0xff at column 12)",
    }
    assert props["total_rows"] == 41 and props["bad_rows"] == 5  # issue 14: a missing value is a gap, not malformed
    assert props["spec"]["series"]["missing_values"] == 1 and props["metrics"]["data_missing_values"] == 1
    for split in splits.values():  # no window contains a hole: temps rise by exactly 1 within a window
        for x, y in split:
            temps = [s[0] for s in x] + [s[0] for s in y]
            assert temps == list(range(int(temps[0]), int(temps[0]) + len(temps)))
    with pytest.raises(validation.DataValidationError,
                       match=r"5 of 41 rows are malformed .* e.g. w.csv:5: non-numeric"):
        validation.run({"ingest": art}, tmp_path, Ctx(), data=cfg)


@pytest.mark.parametrize(("text", "target", "topology", "message"), [
    ("t,a,b\n1,x,2\n2,y,3\n", "b", "seq2seq",
     "wrong column type: feature column 'a' .* holds text \\(e.g. 'x' at d.csv:2\\)"),
    ("t,a,b\n1,1,\n2,2,\n", "b", "seq2seq", "target column 'b' .* is empty in every row"),
    ("t,a\n1,2\n", "zz", "seq2seq", "has no column 'zz' .* its columns are: t, a"),
    ("t,a,b\n1,1,x\n2,2,y\n", "b", "seq2seq", "seq2seq on a CSV forecasts numbers"),
    ("t,b\n1,x\n2,y\n", "b", "many_to_one", "must come from other, numeric columns"),
])
def test_csv_column_problems_are_clear_errors(tmp_path: Path, text: str, target: str, topology: str,
                                              message: str) -> None:
    path = write(tmp_path / "d.csv", text)
    with pytest.raises(DataSourceError, match=message):
        ingest(tmp_path, topology, source="csv", path=path, target_columns=[target], time_column="t")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    ("input\toutput\n".encode("utf-16"), "not UTF-8 text \\(it looks like UTF-16"),
    ("caf\xe9\tx\n".encode("latin-1") * 20, "not UTF-8 text \\(most lines do not decode"),
])
def test_unreadable_files_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = write(tmp_path / "p.tsv", content)
    with pytest.raises(DataSourceError, match=message):
        ingest(tmp_path, "seq2seq", source="pairs", path=path)


@pytest.mark.parametrize(("data", "topology", "message"), [
    ({"source": "pairs", "path": "/nonexistent/p.tsv"}, "seq2seq", "does not exist"),
    ({"source": "labelled"}, "many_to_one", "needs data.path"),
    ({"source": "csv", "path": "/"}, "seq2seq", "needs data.target_columns"),
    ({"source": "tfds"}, "many_to_one", "needs data.name"),
    ({"source": "pairs", "path": "/"}, "one_to_one", "cannot feed model.topology='one_to_one'; it feeds: seq2seq"),
    ({"source": "digits"}, "seq2seq", "cannot feed model.topology='seq2seq'; it feeds: one_to_one"),
    ({"source": "names", "path": "/tmp"}, "many_to_one", "is a bundled dataset that reads no file"),
    ({"source": "nope"}, "many_to_one", "not a known source"),
])
def test_wrong_pairings_and_missing_settings_fail_at_config_time(data: dict, topology: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ingestion.check(DataConfig(**data), topology)


def test_pairs_tsv_and_jsonl_with_malformed_rows(tmp_path: Path) -> None:
    rows = ["input\toutput", "cat\tK AE T", "dog", "\tEH", "elephant\tEH L AH F AH N T", "cat\tK AE T"]
    rows += [f"w{i}\tW {i}" for i in range(40)]
    path = write(tmp_path / "p.tsv", "\n".join(rows) + "\n")
    props, splits, art, _ = ingest(tmp_path, "seq2seq", source="pairs", path=path, target_tokenize="word", max_length=6,
                                   max_bad_fraction=0.1)
    assert bad_rows(art) == {"p.tsv:3": "expected 2 tab-separated fields, found 1", "p.tsv:4": "empty input sequence",
                             "p.tsv:5": "input has 8 tokens > data.max_length=6"}
    assert props["total_rows"] == 45  # the header is not a row
    assert props["spec"]["x"] == {"kind": "tokens", "tokenize": "char"}
    assert props["spec"]["y"] == {"kind": "tokens", "tokenize": "word"}
    found = [s for s, ex in splits.items() if ("cat", "K AE T") in ex]
    assert len(found) == 1  # duplicates share a split
    assert sum(ex.count(("cat", "K AE T")) for ex in splits.values()) == 2
    lines = [json.dumps({"source": "ab", "target": "ba"}), "{not json", json.dumps({"input": "x"}), json.dumps([1]),
             json.dumps({"input": 5, "output": "a"})]
    path = write(tmp_path / "p.jsonl", "\n".join(lines) + "\n")
    _, splits, art, _ = ingest(tmp_path, "seq2seq", source="pairs", path=path, max_bad_fraction=1.0)
    assert sum(map(len, splits.values())) == 1
    assert bad_rows(art) == {"p.jsonl:2": "not valid JSON (Expecting property name enclosed in double quotes at "
                                          "column 2)",
                             "p.jsonl:3": "missing field 'output' (also accepted: target, y)",
                             "p.jsonl:4": "expected a JSON object, found list",
                             "p.jsonl:5": "input is not a string (int)"}


def test_labelled_jsonl_and_seeded_split(tmp_path: Path) -> None:
    lines = [json.dumps({"text": f"review number {i}", "label": i % 2}) for i in range(60)]
    lines.append(json.dumps({"text": "", "label": 1}))
    path = write(tmp_path / "l.jsonl", "\n".join(lines))
    labelled = {"source": "labelled", "path": path, "tokenize": "word", "max_bad_fraction": 0.05}
    props, splits, art, _ = ingest(tmp_path, "many_to_one", **labelled)
    assert props["spec"]["y"] == {"kind": "label"} and bad_rows(art) == {"l.jsonl:61": "empty input sequence"}
    assert all(isinstance(y, str) for ex in splits.values() for _, y in ex)
    assert sum(props["counts"].values()) == 60 and min(props["counts"].values()) > 0
    _, again, _, _ = ingest(tmp_path, "many_to_one", **labelled)
    _, other, _, _ = ingest(tmp_path, "many_to_one", **labelled, split_seed=7)
    assert again == splits and other["test"] != splits["test"]


def test_text_language_model_windows(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "hello world\nthis is text\n" * 20)
    props, splits, _, _ = ingest(tmp_path, "many_to_many", source="text", path=path, window=10, stride=5)
    assert props["spec"]["y"] == {"kind": "tokens", "tokenize": "char", "language_model": True}
    x, y = splits["train"][0]
    assert x == "hello worl" and y == "ello world"
    props, splits, _, _ = ingest(tmp_path, "many_to_many", source="text", path=path, window=3, stride=3,
                                 tokenize="word")
    assert splits["train"][0] == ("hello world this", "world this is")
    assert props["spec"]["x"]["tokenize"] == props["spec"]["y"]["tokenize"] == "word"


@pytest.mark.slow
def test_tfds_source_reads_a_prepared_dataset_offline(tmp_path: Path) -> None:
    from components.ingestion import bundled

    bundled.prepare("digits", tmp_path / "tfds")
    props, splits, _, _ = ingest(tmp_path, "one_to_one", source="tfds", name="digits", data_dir=str(tmp_path / "tfds"),
                                 feature_columns=["pixels"], target_columns=["label"], max_examples=20)
    assert props["spec"]["x"] == {"kind": "vector"} and props["spec"]["y"] == {"kind": "label"}
    assert props["counts"] == {"train": 20, "validation": 20, "test": 20} and len(splits["train"][0][0]) == 64
    with pytest.raises(DataSourceError, match="cannot learn"):
        ingest(tmp_path, "seq2seq", source="tfds", name="digits", data_dir=str(tmp_path / "tfds"),
               feature_columns=["pixels"], target_columns=["label"], max_examples=5)
    with pytest.raises(DataSourceError, match="not prepared in data.data_dir=.*rnnpipe never downloads"):
        ingest(tmp_path, "many_to_one", source="tfds", name="names", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DataSourceError, match="no_such_set.*was not found"):
        ingest(tmp_path, "many_to_one", source="tfds", name="no_such_set", data_dir=str(tmp_path / "tfds"))


def test_cli_prints_a_data_source_error_as_one_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import yaml

    from pipeline import cli

    data = write(tmp_path / "empty.tsv", "")
    config = {"name": "empty", "runs_dir": str(tmp_path / "runs"), "data": {"source": "labelled", "path": data},
              "model": {"topology": "many_to_one"}, "tracking": {"enabled": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert cli.main(["run", str(tmp_path / "c.yaml")]) == cli.EXIT_FAILED
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnpipe: error: data file") and "is empty" in err and "Traceback" not in err
