"""Shared benchmark plumbing: interleaved timing, medians, machine info, configs, tables.

Every benchmark measures its variants side by side in one process, interleaved
(A, B, B, A, A, B, ...), so that load from other jobs and thermal drift hit all variants
alike; it reports medians and the ratio of medians measured in the same run. A result is a
plain dict: {"benchmark", "rows" (one per measured case), "summary" (the lines for the
combined table: case, metric, value, baseline, ratio, target, met), "notes"}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
RESULTS = Path(__file__).resolve().parent / "results.json"


# --------------------------------------------------------------------------------------------
# Timing


class Timings(dict):
    """name -> {"wall": [seconds...], "cpu": [seconds...]} (cpu: this process, all threads)."""

    def wall(self, name: str) -> list[float]:
        return self[name]["wall"]

    def cpu(self, name: str) -> list[float]:
        return self[name]["cpu"]


def clock() -> tuple[float, float]:
    """(wall, process CPU) seconds now.

    On a machine shared with other jobs the wall time of a variant depends on their load;
    the CPU seconds this process spends depend much less on it, so ratios of both are kept.
    """
    return time.perf_counter(), time.process_time()


def interleaved(variants: dict[str, Callable[[], Any]], rounds: int) -> Timings:
    """Wall and CPU seconds of `rounds` calls of each variant, interleaved in ABBA order.

    Round r runs the variants in order, round r+1 in reverse, so no variant is always first
    (a slow start or a drifting load is shared). Warm-ups are the caller's job.
    """
    names = list(variants)
    times = Timings({name: {"wall": [], "cpu": []} for name in names})
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            wall, cpu = clock()
            variants[name]()
            wall2, cpu2 = clock()
            times[name]["wall"].append(wall2 - wall)
            times[name]["cpu"].append(cpu2 - cpu)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: list[float]) -> float:
    """(max - min) / median: how noisy the repeats were (0.1 = 10%)."""
    if len(values) < 2:
        return 0.0
    return (max(values) - min(values)) / median(values)


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else float("nan")


def summary_line(case: str, metric: str, value: float, baseline: float, baseline_name: str,
                 target: float | None = None, cpu_ratio: float | None = None) -> dict[str, Any]:
    """One line of the combined table (higher is better); `met`: ratio >= target, if any.

    `cpu_ratio` is the same ratio from process CPU seconds instead of wall seconds.
    """
    r = ratio(value, baseline)
    return {"case": case, "metric": metric, "value": value, "baseline": baseline,
            "baseline_name": baseline_name, "ratio": r, "cpu_ratio": cpu_ratio, "target": target,
            "met": None if target is None else bool(r >= target)}


# --------------------------------------------------------------------------------------------
# Machine and environment


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[dict[str, Any]]:
    """Visible GPUs with their names (empty on a CPU-only machine)."""
    import tensorflow as tf

    out = []
    for dev in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(dev)
        except Exception:  # noqa: BLE001 - details are best effort
            details = {}
        out.append({"name": details.get("device_name", dev.name),
                    "compute_capability": details.get("compute_capability")})
    return out


def machine_info() -> dict[str, Any]:
    """CPU, cores, load, library versions, date and GPUs: stored beside every result."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("tensorflow", "keras", "mlflow", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "loadavg_1_5_15": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
        "gpus": gpus(),
    }


# --------------------------------------------------------------------------------------------
# Configs and scratch space


def scratch_dir(prefix: str) -> Path:
    """A fresh temporary folder for runs, checkpoints and stores (removed by the caller)."""
    return Path(tempfile.mkdtemp(prefix=f"rnnpipe-bench-{prefix}-"))


def scratch_main(argv: list[str] | None, doc: str, prefix: str, measure: Any) -> dict[str, Any]:
    """The main of a bench that measures in a scratch folder: parse the common flags, run
    `measure(workdir, rounds, args)` (rounds: --rounds, else 2 with --quick, else 6), clean up."""
    import shutil

    args = parser(doc.splitlines()[0]).parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 6)
    workdir = scratch_dir(prefix)
    try:
        return measure(workdir, rounds, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def load_config(path: str | Path, workdir: Path, overrides: dict[str, Any] | None = None) -> Any:
    """A validated Config from `path` living under `workdir`, with MLflow tracking off."""
    from components import config as cfgmod

    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = CONFIGS / path.name
    items = {"runs_dir": str(workdir / "runs"), "export.dir": str(workdir / "exports"),
             "tracking.enabled": False, "tracking.uri": f"sqlite:///{workdir}/mlruns/mlflow.db",
             **(overrides or {})}
    return cfgmod.load(path, [f"{k}={json.dumps(v)}" for k, v in items.items()])


def preprocess(config: Any) -> Any:
    """The preprocess artifact of `config` (ingest, validate, preprocess through the runner)."""
    from pipeline import runner

    return runner.run(config, to_stage="preprocess", log=lambda _: None).artifacts["preprocess"]


# --------------------------------------------------------------------------------------------
# Command line and output


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a < 1 minute smoke run (tiny sizes, few repeats)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved repeats of each variant")
    p.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")
    return p


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A plain-text table (also valid Markdown) of `rows`."""
    if not rows:
        return "(no rows)"
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda items: "| " + " | ".join(s.ljust(w) for s, w in zip(items, widths)) + " |"  # noqa: E731
    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)


SUMMARY_COLUMNS = ["benchmark", "case", "metric", "value", "baseline", "baseline_name", "ratio", "cpu_ratio",
                   "target", "met"]


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"benchmark": result["benchmark"], **line} for line in result.get("summary", [])]


def finish(result: dict[str, Any], json_path: Path | None = None) -> dict[str, Any]:
    """Print a benchmark's own tables and write its JSON (when asked); returns the result."""
    print(f"\n== {result['benchmark']} ==")
    if result.get("rows"):
        print(table(result["rows"]))
    if result.get("summary"):
        print()
        print(table(summary_rows(result), SUMMARY_COLUMNS))
    for note in result.get("notes", []):
        print(f"note: {note}")
    if json_path:
        json_path.write_text(json.dumps({"machine": machine_info(), **result}, indent=1, default=str))
    sys.stdout.flush()
    return result


def log(message: str) -> None:
    """Progress on stderr, so stdout keeps only the tables."""
    print(message, file=sys.stderr, flush=True)
