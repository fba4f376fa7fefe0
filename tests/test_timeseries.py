"""Time-aware CSV series (issue 14, items 1, 2, 9) on small files made here.

Gaps by time, filling, missing values, unsorted input, time formats and frequencies, many
series in one file (`data.id_column`), `feature_columns: []`, and an empty validation split.
"""

from __future__ import annotations

import calendar
import datetime
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components import config as cfgmod
from components import ingestion, preprocessing, validation
from components.config import ConfigError, DataConfig
from components.ingestion.sources import DataSourceError
from components.training import read_epoch_log
from tests.conftest import ingested, raw_rows
from tests.test_sources import bad_rows, ingest, write
from tests.test_validation import Ctx

SPLIT0 = {"val_fraction": 0.0, "test_fraction": 0.0}


def daily(values: dict[int, Any], start: datetime.date = datetime.date(2021, 1, 1), extra: str = "") -> str:
    """A daily CSV `date,y[,extra]` with a row for each day offset in `values` (others absent)."""
    lines = ["date,y" + (",x" if extra else "")]
    for day, value in values.items():
        lines.append(f"{start + datetime.timedelta(days=day)},{value}" + (f",{extra}" if extra else ""))
    return "\n".join(lines) + "\n"


def steps_of(splits: dict[str, list]) -> list[list[float]]:
    """The target values of every window (inputs then outputs), all splits."""
    return [[s[0] for s in x] + [s[0] for s in y] for split in splits.values() for x, y in split]


# --------------------------------------------------------------------------------------------
# 1. Time-aware series


def test_missing_rows_are_gaps_by_time(tmp_path: Path) -> None:
    values = {d: float(d) for d in range(30) if d not in (10, 11, 20)}  # days 10, 11, 20 absent
    path = write(tmp_path / "d.csv", daily(values))
    props, splits, art, _ = ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="date",
                                   target_columns=["y"], window=3, horizon=1, **SPLIT0)
    assert props["frequency"] == "daily" and bad_rows(art) == {}
    windows = steps_of(splits)
    assert windows and all(w == [w[0] + i for i in range(len(w))] for w in windows)  # no window spans a gap
    # segments 0-9, 12-19, 21-29: 10 + 8 + 9 steps -> 7 + 5 + 6 windows of 4 steps
    assert props["counts"]["train"] == 18
    metrics = props["metrics"]
    assert metrics["data_missing_timestamps"] == 3 and metrics["data_gaps"] == 2
    assert metrics["data_filled_timestamps"] == 0 and metrics["data_series"] == 1


@pytest.mark.parametrize("how", ["ffill", "interpolate"])
def test_fill_closes_short_gaps_only(tmp_path: Path, how: str) -> None:
    values: dict[int, Any] = {d: float(d) for d in range(40) if d not in (10, 11, 20, 21, 22)}
    values[30] = "NA"  # a missing value: one step
    values[33], values[34], values[35] = "", "null", "NaN"  # three missing values in a row
    path = write(tmp_path / "d.csv", daily(values))
    props, splits, art, _ = ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="date",
                                   target_columns=["y"], window=3, horizon=1, fill_missing=how, max_fill=2, **SPLIT0)
    assert bad_rows(art) == {}  # missing values are never malformed
    m = props["metrics"]
    assert m["data_missing_timestamps"] == 5 and m["data_missing_values"] == 4
    assert m["data_filled_timestamps"] == 2 and m["data_filled_values"] == 1  # days 10-11 and day 30
    assert m["data_gaps"] == 2  # days 20-22 (3 > max_fill) and 33-35 stay gaps
    windows = steps_of(splits)
    spans = {(w[0], w[-1]) for w in windows}
    if how == "interpolate":  # filled steps continue the line exactly
        assert all(w == [w[0] + i for i in range(len(w))] for w in windows)
        assert (9.0, 12.0) in spans and (29.0, 32.0) in spans
    else:  # the last value is carried forward
        assert [9.0, 9.0, 9.0, 12.0] in windows and [29.0, 29.0, 31.0, 32.0] in windows
    assert not any(w[0] < 20 < w[-1] or w[0] < 21 <= w[-1] for w in windows)  # never across days 20-22
    assert not any(w[0] < 34 < w[-1] for w in windows)
    series = props["spec"]["series"]
    assert series["fill_missing"] == how and series["filled_values"] == 1
    assert "filled 1 values and 2 timestamps" in ingestion.series_line(series)


def test_missing_values_are_gaps_not_malformed_and_pass_validation(tmp_path: Path) -> None:
    values: dict[int, Any] = {d: float(d % 7) for d in range(60)}
    for d, token in zip((5, 17, 29, 41), ("", "NA", "NaN", "null")):
        values[d] = token
    path = write(tmp_path / "d.csv", daily(values))
    props, splits, art, cfg = ingest(tmp_path, "many_to_one", source="csv", path=path, time_column="date",
                                     target_columns=["y"], window=4, horizon=1, val_fraction=0.2, test_fraction=0.2)
    assert props["bad_rows"] == 0 and props["metrics"]["data_missing_values"] == 4
    assert all(None not in w for w in steps_of(splits))
    result = validation.run({"ingest": art}, tmp_path, Ctx(), data=cfg)  # no malformed rows: no failure
    assert result["metrics"]["data_bad_rows"] == 0
    assert "4 missing values" in (tmp_path / "validation.md").read_text()


def test_unsorted_rows_are_sorted_by_time(tmp_path: Path) -> None:
    rows = [f"{datetime.date(2021, 1, 1) + datetime.timedelta(days=d)},{d},{d % 3}" for d in range(30)]
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    common = dict(source="csv", time_column="date", target_columns=["y"], window=4, horizon=2, val_fraction=0.2,
                  test_fraction=0.2)
    sorted_path = write(tmp_path / "s.csv", "date,y,x\n" + "\n".join(rows) + "\n")
    shuffled_path = write(tmp_path / "u.csv", "date,y,x\n" + "\n".join(shuffled) + "\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, expected, _, _ = ingest(tmp_path / "a", "seq2seq", path=sorted_path, **common)
    _, got, art, _ = ingest(tmp_path / "b", "seq2seq", path=shuffled_path, **common)
    assert got == expected and bad_rows(art) == {}
    assert got["train"][0][0][0] == [0.0, 0.0] and got["test"][-1][1][-1] == [29.0]


@pytest.mark.parametrize(("stamps", "fmt", "frequency", "first_time"), [
    ([str(1990 + i) for i in range(20)], None, "yearly", 1993),
    ([f"{d:02d}.03.2021" for d in range(1, 21)], "%d.%m.%Y", "daily", "2021-03-04"),
    ([f"2021-03-01 {h:02d}:00" for h in range(20)], None, "hourly", "2021-03-01T03:00:00"),
    ([str(datetime.date(2021, 1, 4) + datetime.timedelta(weeks=w)) for w in range(20)], None, "weekly",
     "2021-01-25"),
    ([f"{2020 + m // 12}-{m % 12 + 1:02d}-{calendar.monthrange(2020 + m // 12, m % 12 + 1)[1]}"
      for m in range(20)], None, "monthly", "2020-04-30"),
    ([f"{2015 + q // 4}-{3 * (q % 4) + 1:02d}-01" for q in range(20)], None, "quarterly", "2015-10-01"),
    ([str(d) for d in (datetime.date(2021, 3, 1) + datetime.timedelta(days=i) for i in range(28))
      if d.weekday() < 5], None, "business_daily", "2021-03-04"),
    ([f"{i * 15 // 60:02d}:{i * 15 % 60:02d}" for i in range(20)], "%H:%M", "15min", "1900-01-01T00:45:00"),
    ([str(i * 5) for i in range(20)], None, None, 15),
])
def test_time_formats_and_frequencies(tmp_path: Path, stamps: list[str], fmt: str | None, frequency: str | None,
                                      first_time: Any) -> None:
    path = write(tmp_path / "d.csv", "t,y\n" + "".join(f"{s},{i}\n" for i, s in enumerate(stamps)))
    props, splits, art, _ = ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="t", time_format=fmt,
                                   target_columns=["y"], window=4, horizon=1, **SPLIT0)
    assert bad_rows(art) == {} and props["frequency"] == frequency
    assert props["metrics"]["data_missing_timestamps"] == 0 and props["counts"]["train"] == len(stamps) - 4
    first = ingested(tmp_path / "ingest", "train")[0]
    assert first["time"] == first_time  # the time of the window's last input step


@pytest.mark.parametrize("values", [
    ["2021-03-01", "2021-03-02", "7", "8"],  # half numbers: numbers win the tie
    ["2021-03-01", "2021-03-02", "2021-03-03", "7", "8"],
    ["2021-03-01T10:00:00", "2021-03-01T11:00:00", "", "5"],
    ["01.03.2021", "02.03.2021", "3.5"], ["2021.03", "2021.04", "2021.05"],  # a format that reads as numbers
    ["20210301", "20210302", "x"], ["1e3", "2e3", "2021-01-01"], ["Mar 1 2021", "Mar 2 2021", "1", "2", "3"],
])
def test_the_time_rule_is_the_whole_columns_vote(values: list[str]) -> None:
    """Numbers when at least half of the present values read as finite numbers, else datetimes in the guessed
    format; the shortcut (most values in a format no number has) reaches the same rule as reading them all."""
    import pandas as pd
    from pandas.core.tools.datetimes import _guess_datetime_format_for_array as guess

    from components.ingestion import timeseries

    raw = np.array(values, dtype=object)
    absent = timeseries.missing(raw)
    present = raw[~absent]
    numbers = np.isfinite(pd.to_numeric(pd.Series(present, dtype=object), errors="coerce").to_numpy("float64")).sum()
    expected = timeseries.TimeRule(False) if numbers * 2 >= len(present) else \
        timeseries.TimeRule(True, guess(np.where(absent, None, raw)), retry=True)
    assert timeseries.time_rule(raw, None, absent) == expected


def test_time_format_mismatch_is_reported_per_row(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "t,y\n01.03.2021,1\n2021-03-02,2\n03.03.2021,3\n")
    _, _, art, _ = ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="t", time_format="%d.%m.%Y",
                          target_columns=["y"], window=1, horizon=1, **SPLIT0)
    assert bad_rows(art) == {"d.csv:3": "unreadable time '2021-03-02' in column 't' (data.time_format='%d.%m.%Y')"}


def test_bad_time_format_is_one_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "t,y\n2021-03-01,1\n2021-03-02,2\n")
    with pytest.raises(DataSourceError, match=r"data.time_format='%Q-%m' cannot read column 't' .*'Q' is a bad"):
        ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="t", time_format="%Q-%m",
               target_columns=["y"], window=1, horizon=1, **SPLIT0)


def test_filled_timestamps_get_their_grid_time(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "m,y\n2020-01-31,1\n2020-02-29,2\n2020-04-30,4\n2020-05-31,5\n")
    props, splits, _, _ = ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="m", target_columns=["y"],
                                 window=1, horizon=1, fill_missing="interpolate", max_fill=1, **SPLIT0)
    assert props["frequency"] == "monthly" and props["metrics"]["data_filled_timestamps"] == 1
    rows = ingested(tmp_path / "ingest", "train")
    assert [(r["time"], r["x"][0][0]) for r in rows] == [("2020-01-31", 1.0), ("2020-02-29", 2.0),
                                                         ("2020-03-31", 3.0), ("2020-04-30", 4.0)]


# --------------------------------------------------------------------------------------------
# 2. Many series in one file


def long_format(n: dict[str, int], start: int = 0) -> str:
    """`symbol,date,price,volume`: per symbol, n days from a common start, rows interleaved and shuffled."""
    base = {"AAA": 100, "BBB": 200, "CCC": 300}
    rows = [f"{s},{datetime.date(2021, 1, 1) + datetime.timedelta(days=start + d)},{base[s] + d},{d % 5}"
            for s, count in n.items() for d in range(count)]
    random.Random(1).shuffle(rows)
    return "symbol,date,price,volume\n" + "\n".join(rows) + "\n"


def test_many_series_windows_stay_in_one_series_split_by_time_each(tmp_path: Path) -> None:
    path = write(tmp_path / "long.csv", long_format({"AAA": 40, "BBB": 30, "CCC": 50}))
    props, splits, art, _ = ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="date",
                                   id_column="symbol", target_columns=["price"], window=4, horizon=2,
                                   val_fraction=0.2, test_fraction=0.2)
    assert bad_rows(art) == {}  # the same date in several series is not a duplicate
    assert props["spec"]["x"]["columns"] == ["price", "volume"]  # the id column is not a feature
    assert props["metrics"]["data_series"] == 3 and props["frequency"] == "daily"
    for examples in splits.values():
        for x, y in examples:
            prices = [s[0] for s in x] + [s[0] for s in y]
            assert prices == [prices[0] + i for i in range(len(prices))]  # one series, consecutive days
    rows = {s: ingested(tmp_path / "ingest", s)
            for s in ("train", "validation", "test")}
    for symbol, base, n in (("AAA", 100, 40), ("BBB", 200, 30), ("CCC", 300, 50)):
        mine = {s: [r for r in rs if r["id"] == symbol] for s, rs in rows.items()}
        assert all(mine.values()), f"{symbol} has windows in every split"
        last_train = max(r["y"][-1][0] for r in mine["train"])
        first_val = min(r["x"][0][0] for r in mine["validation"])
        last_val = max(r["y"][-1][0] for r in mine["validation"])
        first_test = min(r["x"][0][0] for r in mine["test"])
        assert last_train < first_val <= last_val < first_test  # split by time within the series
        assert last_train == base + round(n * 0.6) - 1


def test_many_series_raw_rows_carry_the_id_and_io_the_frequency(tmp_path: Path) -> None:
    path = write(tmp_path / "long.csv", long_format({"AAA": 30, "BBB": 30}))
    _, _, art, cfg = ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="date", id_column="symbol",
                            target_columns=["price"], feature_columns=[], window=3, horizon=1, test_fraction=0.2)
    out = tmp_path / "pre"
    out.mkdir()
    validate = validation.run({"ingest": art}, tmp_path, Ctx(), data=cfg)
    props = preprocessing.run({"ingest": art, "validate": validate}, out, Ctx(), data=cfg)
    assert props["io"]["frequency"] == "daily"
    assert json.loads((out / "io.json").read_text())["frequency"] == "daily"
    raw = raw_rows(out, "test")
    assert {r["id"] for r in raw} == {"AAA", "BBB"} and all(len(r["x"][0]) == 1 for r in raw)
    assert all(isinstance(r["time"], str) for r in raw)


def test_feature_columns_empty_means_no_features_absent_means_all(tmp_path: Path) -> None:
    path = write(tmp_path / "long.csv", long_format({"AAA": 20, "BBB": 20}))
    common = dict(source="csv", path=path, time_column="date", id_column="symbol", target_columns=["price"],
                  window=3, horizon=1)
    props, splits, _, _ = ingest(tmp_path, "seq2seq", feature_columns=[], **common)
    assert props["spec"]["x"]["columns"] == ["price"] and len(splits["train"][0][0][0]) == 1
    props, _, _, _ = ingest(tmp_path, "seq2seq", **common)
    assert props["spec"]["x"]["columns"] == ["price", "volume"]
    assert cfgmod.from_dict({"data": {"feature_columns": []}}).data.feature_columns == ()
    assert cfgmod.from_dict({"data": {}}).data.feature_columns is None
    with pytest.raises(DataSourceError, match="feature column 'symbol' .* holds text .* data.id_column"):
        ingest(tmp_path, "seq2seq", **{**common, "id_column": None})  # without an id, the text column is a feature


def test_ids_without_a_time_column_keep_each_series_in_file_order(tmp_path: Path) -> None:
    lines = [f"{'ab'[i % 2]},{(100 if i % 2 else 0) + i // 2},{'x' if i == 9 else i % 3}" for i in range(40)]
    path = write(tmp_path / "d.csv", "id,y,f\n" + "\n".join(lines) + "\n")  # row 9 (b, 104) is malformed
    props, splits, art, _ = ingest(tmp_path, "seq2seq", source="csv", path=path, id_column="id", target_columns=["y"],
                                   window=3, horizon=1, **SPLIT0)
    assert bad_rows(art) == {"d.csv:11": "non-numeric value 'x' in column 'f'"} and props["frequency"] is None
    windows = steps_of(splits)
    assert all(w == [w[0] + i for i in range(len(w))] for w in windows)  # one series each, no window over row 9
    assert len(windows) == (20 - 3) + (4 - 3) + (15 - 3) and props["metrics"]["data_gaps"] == 1


def test_class_target_per_series_with_utc_offsets(tmp_path: Path) -> None:
    rows = []
    for sid in ("n", "s"):
        for h in range(24):
            label = "" if h == 5 else ("day" if 6 <= h < 18 else "night")
            rows.append(f"{sid},2021-06-01T{h:02d}:00:00+02:00,{h % 7},{label}")
    path = write(tmp_path / "d.csv", "site,when,temp,sky\n" + "\n".join(reversed(rows)) + "\n")
    props, splits, art, _ = ingest(tmp_path, "many_to_many", source="csv", path=path, time_column="when",
                                   id_column="site", target_columns=["sky"], window=4, fill_missing="ffill",
                                   **SPLIT0)
    assert bad_rows(art) == {} and props["frequency"] == "hourly"
    assert props["spec"]["x"]["columns"] == ["temp"] and props["metrics"]["data_filled_values"] == 2
    assert splits["train"][0][1] == ["night"] * 4 and len(splits["train"]) == 2 * (24 - 4 + 1)
    first = ingested(tmp_path / "ingest", "train")[0]
    assert first["id"] == "n" and first["time"] == "2021-06-01T01:00:00"  # 03:00+02:00 in UTC


def test_several_series_without_an_id_column_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "long.csv", long_format({"AAA": 20, "BBB": 20}))
    with pytest.raises(DataSourceError, match=r"20 of 40 rows .* repeat the time .* Set data.id_column"):
        ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="date", target_columns=["price"],
               feature_columns=[], window=3, horizon=1)


def test_missing_id_is_malformed(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "id,t,y\na,1,1\n,2,2\na,3,3\nb,1,1\n")
    _, _, art, _ = ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="t", id_column="id",
                          target_columns=["y"], window=1, horizon=1, **SPLIT0)
    assert bad_rows(art) == {"d.csv:3": "missing id in column 'id'"}


@pytest.mark.parametrize(("data", "message"), [
    ({"source": "names", "fill_missing": "ffill"}, "data.fill_missing applies to data.source='csv'"),
    ({"source": "names", "id_column": "x"}, "data.id_column applies to data.source='csv'"),
    ({"source": "csv", "path": "/", "target_columns": ["y"], "time_format": "%Y"}, "time_format is set but"),
])
def test_series_keys_fail_at_config_time_where_they_do_not_apply(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ingestion.check(DataConfig(**data), "many_to_one")


def test_bundled_series_declare_their_frequency() -> None:
    assert ingestion.SOURCES["seattle_weather"].frequency == "daily"
    assert ingestion.SOURCES["seattle_temps"].frequency == "hourly"
    assert ingestion.SOURCES["names"].frequency is None


# --------------------------------------------------------------------------------------------
# 9. Short or empty validation split


def test_short_series_empty_split_is_a_clear_message(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", daily({d: float(d) for d in range(30)}))
    _, splits, art, cfg = ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="date",
                                 target_columns=["y"], window=5, horizon=2, val_fraction=0.1, test_fraction=0.3)
    assert splits["validation"] == [] and splits["test"]
    ctx = Ctx()
    validation.run({"ingest": art}, tmp_path, ctx, data=cfg)  # a warning, not a failure
    line = next(x for x in ctx.lines if "[validation] the split is empty" in x)
    assert "3 time steps" in line and "data.window + data.horizon = 7" in line and "without validation" in line
    _, _, art, cfg = ingest(tmp_path, "seq2seq", source="csv", path=path, time_column="date",
                            target_columns=["y"], window=5, horizon=2, val_fraction=0.3, test_fraction=0.1)
    with pytest.raises(validation.DataValidationError, match=r"\[test\] the split is empty: its 3 time steps"):
        validation.run({"ingest": art}, tmp_path, Ctx(), data=cfg)


def test_epoch_log_without_validation_has_no_na_columns(tmp_path: Path) -> None:
    log = tmp_path / "epochs.csv"
    log.write_text("epoch,loss,mae,val_loss,val_mae\n0,1.5,0.9,NA,NA\n1,1.2,0.8,NA,NA\n")
    assert read_epoch_log(log) == {"loss": [1.5, 1.2], "mae": [0.9, 0.8]}


@pytest.mark.slow
def test_val_fraction_zero_trains_without_validation(make_config, tmp_path: Path) -> None:
    """data.val_fraction=0 on a multi-series CSV: a warning, then ingest -> evaluate without a traceback."""
    from pipeline import runner
    from tests.conftest import tiny

    write(tmp_path / "long.csv", long_format({"AAA": 60, "BBB": 60, "CCC": 60}))
    raw = {"name": "ts_noval", "data": {"source": "csv", "path": str(tmp_path / "long.csv"), "time_column": "date",
                                       "id_column": "symbol", "target_columns": ["price"], "feature_columns": [],
                                       "window": 6, "horizon": 2, "val_fraction": 0.0, "test_fraction": 0.2},
           "model": {"topology": "seq2seq", "cell": "gru"}}
    lines: list[str] = []
    config = make_config(raw, **tiny(data__max_examples="null", tracking__enabled="false",
                                     export__infra_validate="false"))
    result = runner.run(config, to_stage="evaluate", log=lines.append)
    assert any("training without validation" in line for line in lines)
    assert "final_loss" in result.artifacts["train"].properties["metrics"]
    assert not any(k.startswith("final_val_") for k in result.artifacts["train"].properties["metrics"])
    assert result.artifacts["evaluate"].properties["metrics"]
    assert {row["id"] for row in raw_rows(result.artifacts["preprocess"].path(), "test")} == {"AAA", "BBB", "CCC"}


# --------------------------------------------------------------------------------------------
# 8. Serving shapes of forecasters


@pytest.mark.slow
@pytest.mark.parametrize(("topology", "horizon"), [("many_to_one", 1), ("seq2seq", 3)])
def test_forecasts_are_named_per_target_and_scalar_for_one_step(tmp_path: Path, topology: str, horizon: int) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    from components import export
    from components.config import ModelConfig
    from components.preprocessing import Codec, io_spec
    from models.build import build_model

    state = {"topology": topology,
             "x": {"kind": "series", "columns": ["temp (F)", "wind"], "mean": [5.0, 1.0], "variance": [9.0, 4.0],
                   "features": 2, "length": 6},
             "y": {"kind": "series", "columns": ["temp (F)"], "mean": [5.0], "variance": [9.0], "features": 1,
                   "length": horizon}}
    cfg = ModelConfig(topology=topology, cell="gru", units=4)
    keras.utils.set_random_seed(0)
    io, codec = io_spec(state), Codec(state)
    export.write_saved_model(build_model(cfg, io), codec, io, tmp_path / "1", cfg)
    fn = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    raw = np.random.default_rng(0).normal(5, 3, size=(4, 6, 2)).astype("float32")
    out = {k: v.numpy() for k, v in fn(inputs=tf.constant(raw)).items()}
    assert set(out) == {"series", "temp_F"} and out["series"].shape == (4, horizon, 1)
    assert out["temp_F"].shape == ((4,) if horizon == 1 else (4, horizon))  # a scalar per row for one step
    np.testing.assert_allclose(out["temp_F"], out["series"][:, 0, 0] if horizon == 1 else out["series"][..., 0])
