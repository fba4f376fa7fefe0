"""Forecasting benchmark (issue 14): real series that ship inside pip packages, hourly to yearly.

Each series is written as a `date,value` CSV and run through the pipeline (ingest -> evaluate)
with one default forecasting config (seq2seq, 32 units, `data.scale: window`, a horizon and
window by frequency), once with a GRU and once with an LSTM. Every model is scored by MASE on the
same K rolling forecast origins over the series' test period (`evaluate.backtest`), next to last
value, seasonal naive and AutoETS (statsforecast, refitted on the whole history up to each
origin). MASE's scale is the evaluation's: the in-sample seasonal-naive MAE on train.

    pip install -e .[bench]        # pmdarima, statsmodels, statsforecast (bench only)
    python -m bench.forecast [--quick] [--cells gru,lstm] [--origins 6] [--out bench/forecast.json]
                             [--scale window|global] [--series "co2 Mauna Loa,lynx"]

Prints a Markdown table (the README's) and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# frequency -> (season, horizon, window)
SHAPES = {"hourly": (24, 24, 72), "business_daily": (5, 5, 30), "weekly": (52, 13, 104), "monthly": (12, 6, 24),
          "quarterly": (4, 4, 12), "yearly": (None, 4, 10)}


@dataclass
class Series:
    name: str
    package: str
    frequency: str
    times: list[str]
    values: np.ndarray


def panel(quick: bool = False) -> list[Series]:
    """The benchmark series (none of them is used by configs/)."""
    import pandas as pd
    import pmdarima.datasets as pm
    from statsmodels import datasets as sm

    def stamps(index: Any, fmt: str = "%Y-%m-%d") -> list[str]:
        return [t.strftime(fmt) for t in index]

    out = []
    taylor = pm.load_taylor(as_series=True).to_numpy(dtype="float64")
    hourly = taylor.reshape(-1, 2).sum(1)[-1344:]  # half-hourly demand -> hourly, the last 8 weeks
    out.append(Series("taylor electricity demand", "pmdarima", "hourly",
                      stamps(pd.date_range("2000-07-03", periods=len(hourly), freq="h"), "%Y-%m-%dT%H:%M"), hourly))
    msft = pm.load_msft().tail(1500)
    out.append(Series("msft close", "pmdarima", "business_daily", list(msft["Date"]),
                      msft["Close"].to_numpy(dtype="float64")))
    co2 = sm.co2.load_pandas().data["co2"].iloc[-780:]
    out.append(Series("co2 Mauna Loa", "statsmodels", "weekly", stamps(co2.index), co2.to_numpy(dtype="float64")))
    for loader, name in ((pm.load_wineind, "wineind"), (pm.load_airpassengers, "airpassengers")):
        y = loader(as_series=True).to_numpy(dtype="float64")
        start = "1980-01-01" if name == "wineind" else "1949-01-01"
        out.append(Series(name, "pmdarima", "monthly", stamps(pd.date_range(start, periods=len(y), freq="MS")), y))
    wool = pm.load_woolyrnq(as_series=True).to_numpy(dtype="float64")
    out.append(Series("woolyrnq", "pmdarima", "quarterly",
                      stamps(pd.date_range("1965-01-01", periods=len(wool), freq="QS")), wool))
    gdp = sm.macrodata.load_pandas().data
    out.append(Series("US real GDP", "statsmodels", "quarterly",
                      stamps(pd.date_range("1959-01-01", periods=len(gdp), freq="QS")),
                      gdp["realgdp"].to_numpy(dtype="float64")))
    lynx = pm.load_lynx(as_series=True)
    out.append(Series("lynx", "pmdarima", "yearly", [str(int(i)) for i in lynx.index], lynx.to_numpy("float64")))
    spots = sm.sunspots.load_pandas().data
    out.append(Series("sunspots", "statsmodels", "yearly", [str(int(y)) for y in spots["YEAR"]],
                      spots["SUNACTIVITY"].to_numpy(dtype="float64")))
    return out[::3] if quick else out


def config(series: Series, path: Path, cell: str, origins: int, root: Path, epochs: int,
           scale: str = "window") -> Any:
    from components import config as cfgmod

    season, horizon, window = SHAPES[series.frequency]
    return cfgmod.from_dict({
        "name": f"bench_{series.name.replace(' ', '_')}_{cell}", "runs_dir": str(root / "runs"),
        "data": {"source": "csv", "path": str(path), "time_column": "date", "target_columns": ["value"],
                 "feature_columns": [], "window": window, "horizon": horizon, "scale": scale,
                 "fill_missing": "interpolate", "max_fill": 5, "val_fraction": 0.1, "test_fraction": 0.25},
        "model": {"topology": "seq2seq", "cell": cell, "units": 32},
        "train": {"epochs": epochs, "batch_size": 32, "learning_rate": 0.003, "early_stopping_patience": 5},
        "evaluate": {"backtest": {"origins": origins}, "min_test_examples": 0},
        "export": {"dir": str(root / "exports")}, "tracking": {"enabled": False}})


def autoets(history: np.ndarray, horizon: int, season: int | None) -> np.ndarray:
    from statsforecast.models import AutoETS

    model = AutoETS(season_length=season or 1)
    return np.asarray(model.forecast(y=history.astype("float64"), h=horizon)["mean"], dtype="float64")


def score(series: Series, result: Any, origins: int) -> dict[str, float]:
    """MASE of the model and each reference on the backtest windows."""
    from components import evaluation as ev
    from components import stage_files as files

    pre, evaluated = result.artifacts["preprocess"], result.artifacts["evaluate"]
    raw, train = files.raw_examples(pre, "test"), files.raw_examples(pre, "train")
    season, horizon, _ = SHAPES[series.frequency]
    chosen = np.concatenate(ev.backtest_origins([r.get("id") for r in raw], origins)[0])
    with evaluated.path("test_predictions.csv").open() as handle:
        preds: dict[int, list[float]] = {}
        for row in csv.DictReader(handle):
            preds.setdefault(int(row["window"]), []).append(float(row["value_forecast"]))
    x = np.asarray([raw[i]["x"] for i in chosen], dtype="float64")
    actual = np.asarray([raw[i]["y"] for i in chosen], dtype="float64")[..., 0]
    scale, _ = ev.naive_scale(np.asarray([r["x"] for r in train], dtype="float64"), [0], season)
    naive = ev.naive_forecasts(x, horizon, [0], season)
    import pandas as pd

    stamps = pd.to_datetime(pd.Series(series.times).astype(str), format="mixed").to_numpy()
    known = np.isfinite(series.values)
    ets = []
    for i in chosen:  # refit on everything known up to the origin (the last input step)
        end = int(np.searchsorted(stamps, pd.Timestamp(str(raw[i]["time"])).to_datetime64(), side="right"))
        ets.append(autoets(series.values[:end][known[:end]], horizon, season))
    sides = {"model": np.asarray([preds[i] for i in chosen]), "last value": naive["last value"][..., 0],
             "AutoETS": np.asarray(ets)}
    seasonal = f"seasonal naive (season {season})"
    sides["seasonal naive"] = naive[seasonal][..., 0] if seasonal in naive else naive["last value"][..., 0]
    return {k: float(np.abs(v - actual).mean() / scale) for k, v in sides.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 series, 5 epochs (a smoke run)")
    p.add_argument("--cells", default="gru,lstm")
    p.add_argument("--origins", type=int, default=6)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--out", default="bench/forecast.json")
    p.add_argument("--scale", default="window", choices=("window", "global"), help="data.scale of every run")
    p.add_argument("--series", default="", help="comma-separated series names to run (default: the panel)")
    args = p.parse_args(argv)
    from pipeline import runner

    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnpipe-forecast-") as tmp:
        root = Path(tmp)
        wanted = {n.strip() for n in args.series.split(",") if n.strip()}
        for series in [s for s in panel(args.quick) if not wanted or s.name in wanted]:
            path = root / f"{series.name.replace(' ', '_')}.csv"
            path.write_text("date,value\n" + "".join(f"{t},{float(v)!r}\n" for t, v in zip(series.times, series.values)
                                                     if np.isfinite(v)))
            row: dict[str, Any] = {"series": series.name, "package": series.package, "frequency": series.frequency,
                                   "length": len(series.values), "horizon": SHAPES[series.frequency][1]}
            for cell in args.cells.split(","):
                started = time.time()
                cfg = config(series, path, cell, args.origins, root, 5 if args.quick else args.epochs, args.scale)
                result = runner.run(cfg, to_stage="evaluate", log=lambda _: None)
                got = score(series, result, args.origins)
                row[cell] = got.pop("model")
                row[f"{cell}_s"] = round(time.time() - started, 1)
                row.update(got)
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    cells = args.cells.split(",")
    print("\n| series | package | frequency | horizon | " + " | ".join(f"{c.upper()}" for c in cells)
          + " | last value | seasonal naive | AutoETS |")
    print("|---|---|---|---|" + "---|" * (len(cells) + 3))
    for r in rows:
        print(f"| {r['series']} | {r['package']} | {r['frequency']} | {r['horizon']} | "
              + " | ".join(f"{r[c]:.3f}" for c in cells)
              + f" | {r['last value']:.3f} | {r['seasonal naive']:.3f} | {r['AutoETS']:.3f} |")
    for c in cells:
        median, ets = np.median([r[c] for r in rows]), np.median([r["AutoETS"] for r in rows])
        print(f"{c}: beats seasonal naive on {sum(r[c] < r['seasonal naive'] for r in rows)}/{len(rows)}, "
              f"median MASE {median:.3f} vs AutoETS {ets:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
