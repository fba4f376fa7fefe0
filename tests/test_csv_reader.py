"""The CSV source's two readers agree: pandas' C parser (whole file) and the line-by-line reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.config import DataConfig
from components.ingestion import csv_read, csv_source

HEADER = "time,store,sales,promo,weather"
LINES = [f"2024-01-{d:02d},{s},{10 + d + 0.1 * i},{(d + i) % 2},{'sun' if d % 3 else 'rain'}"
         for d in range(1, 29) for i, s in enumerate(("A", "B"))]


def load(path: Path, fast: bool, monkeypatch: pytest.MonkeyPatch, **data: object) -> tuple:
    cfg = DataConfig(source="csv", path=str(path), time_column="time", id_column="store", window=3, **data)
    if not fast:
        monkeypatch.setattr(csv_read, "read_fast", lambda *a: None)
    splits, rows, info = csv_source.load_csv(cfg)
    monkeypatch.undo()
    return splits, rows, info


def same(a: tuple, b: tuple) -> None:
    for split in a[0]:
        x, y = a[0][split], b[0][split]
        assert x.values.keys() == y.values.keys()
        for name in x.values:  # exactly (NaN equals NaN): the same bits from both readers
            assert x.values[name].dtype == y.values[name].dtype
            np.testing.assert_array_equal(x.values[name], y.values[name])
        assert x.segment.tolist() == y.segment.tolist() and x.id.tolist() == y.id.tolist()
        assert x.time.tolist() == y.time.tolist()
    assert a[1].bad == b[1].bad and a[1].total == b[1].total
    assert a[2] == b[2]


@pytest.mark.parametrize("case,lines,data", [
    ("clean numbers", LINES, {"target_columns": ["sales"], "feature_columns": ["promo"]}),
    ("missing-value tokens", [line.replace(",1,", ",NA,", 1) if i % 7 == 0 else
                              line.replace(",0,", ",null,", 1) if i % 11 == 0 else line
                              for i, line in enumerate(LINES)],
     {"target_columns": ["sales"], "feature_columns": ["promo"], "fill_missing": "ffill"}),
    ("a text target", LINES, {"target_columns": ["weather"], "feature_columns": ["sales", "promo"]}),
    ("a stray word in a number column", [line.replace(",0,", ",oops,", 1) if i == 9 else line
                                         for i, line in enumerate(LINES)],
     {"target_columns": ["sales"], "feature_columns": ["promo"]}),
    ("a short line (line reader only)", LINES[:5] + ["2024-02-01,A,3"] + LINES[5:],
     {"target_columns": ["sales"], "feature_columns": ["promo"]}),
    ("a blank line (line reader only)", LINES[:5] + [""] + LINES[5:],
     {"target_columns": ["sales"], "feature_columns": ["promo"]}),
    ("a line with a field too many and one with a field too few (line reader only)",
     [line + ",999" if i == 6 else line.rsplit(",", 1)[0] if i == 13 else line for i, line in enumerate(LINES)],
     {"target_columns": ["sales"], "feature_columns": ["promo"]}),
    ("full-precision floats, and a word", [f"{line.rsplit(',', 3)[0]},{9373.711634780513 + i / 7!r},"
                                           f"{'abc' if i == 9 else i % 2},sun" for i, line in enumerate(LINES)],
     {"target_columns": ["sales"], "feature_columns": ["promo"]}),
    ("Unicode blanks (NBSP, em space, NEL)", [line.replace(",sun", ",sun\xa0").replace(",A,", ",A\u2003,")
                                              .replace(",1,", ",1\x85,") for line in LINES],
     {"target_columns": ["weather"], "feature_columns": ["sales", "promo"]}),
    ("spaces and a tab by the separators", [line.replace(",A,", ", A ,").replace(",sun", ",\tsun") for line in LINES],
     {"target_columns": ["weather"], "feature_columns": ["sales", "promo"]}),
    ("a missing time", [line.replace("2024-01-05", "NA", 1) for line in LINES],
     {"target_columns": ["sales"], "feature_columns": ["promo"]}),
    ("blank cells", [line.replace(",0,", ",,", 1) if i % 5 == 0 else line for i, line in enumerate(LINES)],
     {"target_columns": ["sales"], "feature_columns": ["promo"], "fill_missing": "ffill"}),
    ("true/false text, then a word", [line.replace(",sun", ",true").replace(",rain", ",false") if i < 20 else
                                      line.replace(",rain", ",maybe") for i, line in enumerate(LINES)],
     {"target_columns": ["weather"], "feature_columns": ["sales"]}),
    ("numbers first, then dates", [f"{i}{line[10:]}" if i < 10 else line for i, line in enumerate(LINES)],
     {"target_columns": ["sales"], "feature_columns": ["promo"]}),
])
@pytest.mark.parametrize("chunk", [csv_read.CHUNK_ROWS, 7])
def test_both_readers_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, lines: list[str],
                            data: dict, chunk: int) -> None:
    """Also with the fast reader in chunks of 7 lines (times parsed chunk by chunk by the first chunk's rule)."""
    path = tmp_path / "data.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    taken = []
    real = csv_read.read_fast
    monkeypatch.setattr(csv_read, "read_fast", lambda *a: taken.append(real(*a)) or taken[-1])
    monkeypatch.setattr(csv_read, "CHUNK_ROWS", chunk)
    fast = load(path, True, monkeypatch, **data)
    if chunk == csv_read.CHUNK_ROWS:  # in one chunk, only an irregular line leaves the fast reader
        assert (taken[0] is None) == ("line reader only" in case)
    same(fast, load(path, False, monkeypatch, **data))


def test_the_fast_reader_reads_in_chunks_and_parses_each_chunk_by_the_first_chunks_time_rule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16 (memory bounded by a chunk's strings): a file of 3 chunks is read by the fast reader, and an
    ambiguous day/month in a later chunk is read as the first present value decides (as pandas does for a
    whole column), not as that chunk's own first value would."""
    days = [f"{d:02d}/01/2024" for d in range(13, 32)] + [f"{d:02d}/02/2024" for d in range(1, 29)]  # day first
    path = tmp_path / "d.csv"
    path.write_text("time,y\n" + "".join(f"{t},{i}\n" for i, t in enumerate(days)))
    taken = []
    real = csv_read.read_fast
    monkeypatch.setattr(csv_read, "read_fast", lambda *a: taken.append(real(*a)) or taken[-1])
    monkeypatch.setattr(csv_read, "CHUNK_ROWS", 19)  # the second chunk starts at 01/02: Feb 1, not Jan 2
    splits, rows, info = csv_source.load_csv(DataConfig(source="csv", path=str(path), time_column="time",
                                                        target_columns=["y"], window=3))
    assert taken[0] is not None and rows.bad == []  # read by the fast reader, in 4 chunks
    stamps = np.concatenate([splits[s].time for s in ("train", "validation", "test")])
    assert stamps.tolist() == np.array([f"2024-{t[3:5]}-{t[:2]}" for t in days], "datetime64[ns]").astype(
        "int64").tolist()
    assert info["frequency"] == "daily"


def test_the_time_column_as_a_feature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t,y\n" + "".join(f"{i},{2 * i}\n" for i in range(1, 30)))
    cfg = {"target_columns": ["y"], "feature_columns": ["t"]}
    a = csv_source.load_csv(DataConfig(source="csv", path=str(path), time_column="t", window=3, **cfg))
    monkeypatch.setattr(csv_read, "read_fast", lambda *a: None)
    b = csv_source.load_csv(DataConfig(source="csv", path=str(path), time_column="t", window=3, **cfg))
    assert a[0]["train"].values["t"].tolist() == b[0]["train"].values["t"].tolist() == list(range(1, 24))


def test_a_header_over_a_mebibyte(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    columns = [f"c{i:06d}" for i in range(150_000)]
    path.write_text("t," + ",".join(columns) + ",y\n" + "".join(f"{i}," + ",".join(["1"] * len(columns)) + f",{i}\n"
                                                             for i in range(1, 4)))
    splits, _, _ = csv_source.load_csv(DataConfig(source="csv", path=str(path), time_column="t",
                                                  target_columns=["y"], feature_columns=[], window=1))
    assert splits["train"].values["y"].tolist() == [1.0, 2.0]


def test_the_fast_reader_takes_clean_files_only(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    cfg = DataConfig(source="csv", path=str(path), time_column="time", id_column="store", target_columns=["sales"])
    path.write_text("\n".join([HEADER, *LINES]) + "\n")
    rows = csv_source.Rows(path)
    used = ["sales", "promo", "weather", "time", "store"]
    assert csv_read.read_fast(rows, HEADER.split(","), used, used[:3], cfg) is not None
    for bad in (LINES[:3] + ["2024-02-01,A,3"], LINES[:3] + [""], LINES[:3] + ['2024-02-01,A,"1,5",0,sun']):
        path.write_text("\n".join([HEADER, *bad]) + "\n")
        assert csv_read.read_fast(csv_source.Rows(path), HEADER.split(","), used, used[:3], cfg) is None


def test_the_data_stages_before_preprocess_do_not_import_tensorflow(tmp_path: Path) -> None:
    """Issue 16 (memory): the config checks and ingest + validate of a CSV run without TensorFlow (~0.6 GB,
    ~6 s), which preprocess imports when it needs it."""
    import subprocess
    import sys
    import textwrap

    from tests.conftest import ROOT

    path = tmp_path / "d.csv"
    path.write_text("time,y,a\n" + "".join(f"2024-01-01T{h % 24:02d}:00:00,{h % 7},{h % 3}\n".replace(
        "2024-01-01", f"2024-01-{1 + h // 24:02d}") for h in range(240)))
    code = textwrap.dedent(f"""
        import sys
        from components import config
        from pipeline import runner
        cfg = config.from_dict({{"name": "t", "runs_dir": {str(tmp_path / "runs")!r}, "tracking": {{"enabled": False}},
                                "data": {{"source": "csv", "path": {str(path)!r}, "time_column": "time",
                                         "target_columns": ["y"], "window": 3}},
                                "model": {{"topology": "many_to_one"}}}})
        runner.run(cfg, to_stage="validate", log=lambda _: None)
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_blank_cells_keep_the_fast_reader_and_a_file_without_readable_times_is_no_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blank number or a word in a later chunk is a missing value or a bad row (the file stays on the fast
    reader); times that data.time_format cannot read leave every row bad, not an IndexError."""
    path = tmp_path / "d.csv"
    path.write_text("t,y\n" + "".join(f"{i},{'' if i == 9 else 'oops' if i == 21 else i}\n" for i in range(1, 40)))
    monkeypatch.setattr(csv_read, "CHUNK_ROWS", 4)
    used = ["y", "t"]
    cfg = DataConfig(source="csv", path=str(path), time_column="t", target_columns=["y"], window=3)
    assert csv_read.read_fast(csv_source.Rows(path), ["t", "y"], used, ["y"], cfg) is not None
    _, rows, _ = csv_source.load_csv(cfg)  # the word in a later chunk: a bad row, named as the line reader does
    assert [b["reason"] for b in rows.bad] == ["non-numeric value 'oops' in column 'y'"]
    dates = tmp_path / "dates.csv"
    dates.write_text("time,y\n2024-01-01,1\n2024-01-02,2\n2024-01-03,3\n")
    splits, rows, _ = csv_source.load_csv(DataConfig(source="csv", path=str(dates), time_column="time",
                                                     time_format="%d/%m/%Y", target_columns=["y"], window=1))
    assert sum(len(splits[s]) for s in splits) == 0 and len(rows.bad) == 3
