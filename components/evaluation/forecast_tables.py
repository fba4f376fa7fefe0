"""The forecast evaluator's outputs: per-target, per-series and backtest tables, every test
forecast (`test_predictions.csv`) and the forecast plots.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from components.evaluation.common import _field, _write_rows
from components.evaluation.series_metrics import forecast_metrics
from components.ingestion.timeseries import later_times


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_") or "target"


def _per_target(workdir: Path, actual: np.ndarray, pred: np.ndarray, bases: dict[str, np.ndarray],
                strongest: str, names: list[str], scales: Any) -> list[str]:
    """Metrics per target column (`per_target.csv` and a report table)."""
    lines = ["", "## Per target (whole test split)", "",
             f"| target | model MAE | {strongest} MAE | model RMSE | model sMAPE | model MASE | {strongest} MASE |",
             "|---|---|---|---|---|---|---|"]
    table = []
    for j, name in enumerate(names):
        scale = scales if np.ndim(scales) == 0 else np.broadcast_to(scales, (len(actual), len(names)))[:, j:j + 1]
        mine = forecast_metrics(actual[..., j:j + 1], pred[..., j:j + 1], scale)
        theirs = forecast_metrics(actual[..., j:j + 1], bases[strongest][..., j:j + 1], scale)
        table.append({"target": name, **{f"model_{k}": v for k, v in mine.items()},
                      **{f"baseline_{k}": v for k, v in theirs.items()}, "baseline": strongest})
        lines.append(f"| {name} | {mine['mae']:.4g} | {theirs['mae']:.4g} | {mine['rmse']:.4g} | "
                     f"{mine['smape']:.4g} | {mine['mase']:.4g} | {theirs['mase']:.4g} |")
    _write_rows(workdir / "per_target.csv", table)
    return lines


def _per_series(workdir: Path, actual: np.ndarray, pred: np.ndarray, base: np.ndarray, base_name: str,
                ids: list[Any], scales: dict[Any, np.ndarray]) -> list[str]:
    """Metrics per series (`per_series.csv`), and the worst and best series by MASE in the report."""
    table = []
    ids_arr = np.asarray([str(i) for i in ids])
    for series, scale in scales.items():
        idx = np.flatnonzero(ids_arr == str(series))
        mine = forecast_metrics(actual[idx], pred[idx], scale[None, :])
        theirs = forecast_metrics(actual[idx], base[idx], scale[None, :])
        table.append({"id": series, "windows": len(idx), **{f"model_{k}": v for k, v in mine.items()},
                      **{f"baseline_{k}": v for k, v in theirs.items()},
                      "model_better": bool(mine["mase"] < theirs["mase"])})
    table.sort(key=lambda r: (-r["model_mase"] if np.isfinite(r["model_mase"]) else float("-inf")))
    _write_rows(workdir / "per_series.csv", table)
    better = sum(r["model_better"] for r in table)
    head = f"| series | windows | model MAE | model MASE | {base_name} MASE |"
    fmt = lambda r: (f"| {r['id']} | {r['windows']} | {r['model_mae']:.4g} | {r['model_mase']:.4g} | "  # noqa: E731
                     f"{r['baseline_mase']:.4g} |")
    count = min(3, len(table))
    return ["", "## Per series (whole test split)", "",
            f"{len(table)} series (`per_series.csv`); the model's MASE beats `{base_name}` on {better} of them.",
            "", f"Worst {count} by MASE:", "", head, "|---|---|---|---|---|",
            *map(fmt, table[:count]), "", f"Best {count} by MASE:", "", head, "|---|---|---|---|---|",
            *map(fmt, table[::-1][:count])]


def _backtest(workdir: Path, backtest: dict[str, Any], raw: list[dict], actual: np.ndarray, pred: np.ndarray,
              base: np.ndarray, base_name: str, scale: Any, main: str, period: str = "test") -> list[str]:
    """Metrics at each rolling origin (`backtest.csv`, `backtest_error_by_origin.png`) and their mean;
    for the validation period `backtest_validation.csv` / `backtest_validation_error_by_origin.png`."""
    from components.plots import figure

    stem = "backtest" if period == "test" else f"backtest_{period}"

    table = []
    for k, idx in enumerate(backtest["origins"]):
        per = scale if np.ndim(scale) == 0 else np.broadcast_to(scale, (len(actual), actual.shape[-1]))[idx]
        mine = forecast_metrics(actual[idx], pred[idx], per)
        theirs = forecast_metrics(actual[idx], base[idx], per)
        table.append({"origin": k + 1, "time": raw[idx[0]].get("time", ""), "windows": len(idx),
                      **{f"model_{m}": v for m, v in mine.items()}, **{f"baseline_{m}": v for m, v in theirs.items()}})
    _write_rows(workdir / f"{stem}.csv", table)
    mean = {m: float(np.mean([r[f"model_{m}"] for r in table])) for m in ("mae", "rmse", "smape", "mase")}
    base_mean = {m: float(np.mean([r[f"baseline_{m}"] for r in table])) for m in ("mae", "rmse", "smape", "mase")}
    with figure(workdir / f"{stem}_error_by_origin.png",
                f"Backtest ({period} period): {main.upper()} by forecast origin") as ax:
        origins = [r["origin"] for r in table]
        ax.plot(origins, [r[f"model_{main}"] for r in table], marker="o", label="model")
        ax.plot(origins, [r[f"baseline_{main}"] for r in table], marker=".", linestyle=":", label=base_name)
        ax.axhline(mean[main], color="C0", alpha=0.4)
        ax.set_xlabel(f"forecast origin ({period} period, in time order)")
        ax.set_ylabel(main.upper())
        ax.legend()
    gate = (f"the gate reads these {sum(r['windows'] for r in table)} windows" if period == "test"
            else "reported only: the gate reads test windows")
    lines = ["", "## Backtest" + ("" if period == "test" else f" ({period} period)"), "",
             f"{len(table)} rolling forecast origins over the {period} period{backtest['note']}; "
             f"{gate} (`{stem}.csv`).", "",
             f"| origin | time | windows | model MAE | model MASE | {base_name} MAE |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['origin']} | {r['time']} | {r['windows']} | {r['model_mae']:.4g} | {r['model_mase']:.4g} | "
              f"{r['baseline_mae']:.4g} |" for r in table]
    lines.append(f"| mean | | | {mean['mae']:.4g} | {mean['mase']:.4g} | {base_mean['mae']:.4g} |")
    return lines


def _write_test_predictions(path: Path, raw: list[dict], actual: np.ndarray, pred: np.ndarray, names: list[str],
                            frequency: str | None, synced: bool, quantiles: np.ndarray | None = None,
                            levels: list[float] = ()) -> None:
    """Every test forecast, untruncated: one row per window and step (id, origin time, step, time,
    then actual and forecast per target, and each quantile `<target>_q<level>`)."""
    ids, stamps = _field(raw, "id"), _field(raw, "time")
    has_id, has_time = any(i is not None for i in ids), any(s is not None for s in stamps)
    fields = (["id"] if has_id else []) + (["origin_time"] if has_time else []) + ["window", "step"]
    fields += (["time"] if has_time and not synced else [])
    for name in names:
        fields += [name, f"{name}_forecast"] + [f"{name}_q{q:g}" for q in (levels if quantiles is not None else ())]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for i, (series, stamp) in enumerate(zip(ids, stamps)):
            times = later_times(stamp, frequency, actual.shape[1]) if has_time and not synced else []
            for step in range(actual.shape[1]):
                row: list[Any] = [v if v is not None else "" for v, has in ((series, has_id), (stamp, has_time)) if has]
                row += [i, step + 1] + ([times[step]] if times else [])
                for j in range(len(names)):
                    row += [f"{actual[i, step, j]:.6g}", f"{pred[i, step, j]:.6g}"]
                    if quantiles is not None:
                        row += [f"{v:.6g}" for v in quantiles[i, step, j]]
                writer.writerow(row)


def _forecast_plots(workdir: Path, actual: np.ndarray, pred: np.ndarray, base: np.ndarray, raw: list[dict],
                    columns: list[int] | None, names: list[str], base_name: str, scales: Any = None,
                    band: tuple[np.ndarray, np.ndarray, list[float]] | None = None) -> None:
    """Error by horizon (per target, in MASE units, with several targets) and forecast vs actual per
    target (`forecast_vs_actual.png` for the first, `forecast_vs_actual_<target>.png` for the others)."""
    from components.plots import figure

    steps = np.arange(1, actual.shape[1] + 1)
    with figure(workdir / "error_by_horizon.png", "Mean absolute error by horizon step (test)") as ax:
        if scales is None:
            for label, values in (("model", pred), (base_name, base)):
                ax.plot(steps, np.abs(values - actual).mean(axis=(0, 2)) if len(actual) else steps * 0, marker=".",
                        label=label)
            ax.set_ylabel("MAE (raw units)")
        else:
            for j, name in enumerate(names):
                s = float(scales[j]) if scales[j] > 0 else 1.0
                for label, values, style in (("model", pred, "-"), (base_name, base, ":")):
                    ax.plot(steps, np.abs(values - actual)[..., j].mean(0) / s if len(actual) else steps * 0,
                            marker=".", linestyle=style, color=f"C{j}", label=f"{name}: {label}")
            ax.set_ylabel("MAE / naive scale (per target)")
        ax.set_xlabel("step ahead")
        ax.legend(fontsize=7)
    head = raw[:3]  # the plotted windows, read once
    for j, name in enumerate(names):
        path = workdir / ("forecast_vs_actual.png" if j == 0 else f"forecast_vs_actual_{_slug(name)}.png")
        with figure(path, f"Forecast vs actual: {name}", size=(8.0, 4.2)) as ax:
            for i in range(min(3, len(actual))):
                offset = 0
                if columns is not None and isinstance(head[i]["x"], list) and isinstance(head[i]["x"][0], list):
                    history = np.asarray(head[i]["x"], dtype="float64")[:, columns[j]]
                    offset = len(history)
                    ax.plot(np.arange(offset), history, color=f"C{i}", alpha=0.5)
                future = np.arange(offset, offset + actual.shape[1])
                label = f" {head[i]['id']}" if head[i].get("id") is not None else f" {i + 1}"
                ax.plot(future, actual[i, :, j], color=f"C{i}", label=f"actual{label}")
                ax.plot(future, pred[i, :, j], color=f"C{i}", linestyle="--", label=f"forecast{label}")
                if band is not None:
                    ax.fill_between(future, band[0][i, :, j], band[1][i, :, j], color=f"C{i}", alpha=0.2,
                                    label=f"q{band[2][0]:g}-q{band[2][-1]:g}{label}")
                ax.plot(future, base[i, :, j], color=f"C{i}", linestyle=":", alpha=0.7)
            ax.set_xlabel(f"step (input window, then forecast; dotted: {base_name})")
            ax.set_ylabel(name)
            ax.legend(fontsize=7)
