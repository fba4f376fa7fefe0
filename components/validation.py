"""Validation stage (TFDV-style, plain Python): statistics, an inferred schema, anomalies.

inputs -> outputs: ingest -> `statistics.json` (per split), `schema.json` (inferred from
train), `anomalies.json`, `validation.md` (report), `lengths.png` (length histogram) and
`numeric.png` (a histogram per numeric column, splits overlaid).

Statistics per split and side: counts, missing values, values of the wrong type, lengths
(min/mean/max + histogram), vocabulary / classes, and per numeric column min/max/mean/missing.
The schema (kinds, classes, vocabulary, feature count, length and value ranges) comes from the
train split; validation and test are checked against it. Fatal anomalies (an empty split, too
many malformed rows, a target that is always missing, values of the wrong type, a feature
count that differs from train, a single class) stop the run with a message that names them;
the others (unseen classes, out-of-vocabulary tokens, longer sequences, values outside the
train range, missing values) are warnings in the report.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from components import kinds
from components.config import DataConfig
from components.ingestion import Windows, read_spec, read_split
from components.ingestion.windows import side_columns
from components.kinds.tokens import tokens_of
from components.kinds.vector import numeric_columns, numeric_of
from components.stage_files import BAD_ROWS, SPLITS, rows_file

__all__ = ["DataValidationError", "run", "side_stats", "tokens_of", "type_error"]
OOV_WARNING = 0.05  # share of validation/test tokens unseen in train that deserves a warning


class DataValidationError(RuntimeError):
    """The data cannot be trained on; the message lists why."""


def type_error(value: Any, kind: str) -> str | None:
    """Why `value` is not a valid raw value of `kind` (None when it is, or when it is missing)."""
    if value is None or value == "" or value == []:
        return None
    if kind not in kinds.KINDS:
        return f"unknown kind {kind!r}"
    ok = kinds.kind(kind).type_ok(value)
    return None if ok else f"{type(value).__name__} value {json.dumps(value)[:60]} is not a {kind} value"


def side_stats(values: list[Any], spec: dict[str, Any], lowercase: bool) -> dict[str, Any]:
    """Statistics of one side (x or y) of a split."""
    kind = spec["kind"]
    stats: dict[str, Any] = {"kind": kind, "count": len(values)}
    errors = [(i, e) for i, e in ((i, type_error(v, kind)) for i, v in enumerate(values)) if e]
    stats["wrong_type"] = len(errors)
    if errors:
        stats["wrong_type_example"] = f"example {errors[0][0]}: {errors[0][1]}"
    bad = {i for i, _ in errors}
    missing = sum(v is None or v == "" or v == [] for v in values)
    stats["missing"] = missing
    present = [v for i, v in enumerate(values) if i not in bad and not (v is None or v == "" or v == [])]
    stats.update(kinds.kind(kind).stats(present, spec, lowercase))
    if "lengths" in stats:
        stats.update(length_stats(Counter(stats.pop("lengths"))))
    return stats


def length_stats(counts: Counter) -> dict[str, Any]:
    """Sequence lengths {length: examples} -> their min / mean / max and the counts themselves."""
    n = sum(counts.values())
    return {"length_counts": {str(k): v for k, v in sorted(counts.items())}, "length_min": min(counts, default=0),
            "length_max": max(counts, default=0),
            "length_mean": sum(k * v for k, v in counts.items()) / n if n else 0.0}


def sides(spec: dict[str, Any]) -> tuple[str, ...]:
    """The sides of an example: x, y, and `future` (the known future values, `data.future_columns`)."""
    return ("x", "y", "future") if spec.get("future") else ("x", "y")


def split_stats(examples: Windows | list[Any], spec: dict[str, Any], lowercase: bool,
                numeric: dict[str, Any] | None = None) -> dict[str, Any]:
    """Statistics of one split's x, y (and known future values); `numeric`: a CSV's column statistics per
    side, computed already (`data.runner: beam`)."""
    if isinstance(examples, Windows):
        return window_stats(examples, spec, lowercase, numeric)
    xs, ys = [e[0] for e in examples], [e[1] for e in examples]
    out = {
        "count": len(examples),
        "x": side_stats(xs, spec["x"], lowercase),
        "y": side_stats(ys, spec["y"], lowercase),
    }
    if spec.get("future"):  # numbers, like the other series columns
        out["future"] = side_stats([e[2].get("future") for e in examples], {"kind": "series", **spec["future"]},
                                   lowercase)
    return out


def window_stats(windows: Windows, spec: dict[str, Any], lowercase: bool,
                 numeric: dict[str, Any] | None = None) -> dict[str, Any]:
    """Statistics of a CSV's windows, vectorised: each numeric column over the split's rows, each row once
    (a window's steps are rows; they are typed numbers and complete by construction)."""
    n = len(windows)
    out: dict[str, Any] = {"count": n}
    for side in sides(spec):
        side_spec = {"kind": "series", **spec["future"]} if side == "future" else spec[side]
        if side_spec["kind"] != "series":  # a text target: its labels, per window
            out[side] = side_stats(windows.y(), side_spec, lowercase)
            continue
        out[side] = {"kind": "series", "count": n, "wrong_type": 0, "missing": 0,
                     **(numeric_of(*numeric[side], side_spec.get("columns")) if numeric else
                        numeric_columns(windows.steps(side), side_spec.get("columns"))),
                     **length_stats(Counter({windows.length(side): n} if n else {}))}
    return out


def beam_stats(ingest: Any, spec: dict[str, Any], data: DataConfig) -> dict[str, dict[str, Any]]:
    """A CSV's numeric column statistics per split and side, as a Beam pipeline over its shards."""
    from components.ingestion.beam import column_stats

    sides_of = side_columns(spec["windows"])
    tables = {f"{split}-{side}": (ingest.path(rows_file(split)), columns) for split in SPLITS
              for side, columns in sides_of.items() if side in sides(spec)}
    out = column_stats(tables, data)
    return {split: {side: out[f"{split}-{side}"] for side in sides_of if f"{split}-{side}" in out} for split in SPLITS}


def infer_schema(train: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """What the train split says valid data looks like."""
    schema: dict[str, Any] = {}
    for side in sides(spec):
        st = train[side]
        entry: dict[str, Any] = {"kind": st["kind"]}
        if "classes" in st:
            entry["classes"] = sorted(st["classes"])
        if "vocabulary" in st:
            entry["vocabulary_size"] = len(st["vocabulary"])
            entry["vocabulary"] = sorted(st["vocabulary"])[:20000]
        if "features" in st:
            entry["features"] = st["features"]
            entry["ranges"] = [{"name": c["name"], "min": c["min"], "max": c["max"]} for c in st["columns"]]
        if "length_counts" in st:
            entry["length_min"], entry["length_max"] = st["length_min"], st["length_max"]
        schema[side] = entry
    return schema


def find_anomalies(stats: dict[str, dict], schema: dict[str, Any], bad: dict[str, Any],
                   data: DataConfig, spec: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Anomalies of every split against the schema; `fatal` ones stop the run."""
    out = []

    def add(split: str, what: str, fatal: bool) -> None:
        out.append({"split": split, "anomaly": what, "fatal": fatal})

    total, n_bad = bad.get("total_rows", 0), len(bad.get("bad_rows", []))
    if total and n_bad / total > data.max_bad_fraction:
        examples = "; ".join(f"{b['where']}: {b['reason']}" for b in bad["bad_rows"][:5])
        add("all", f"{n_bad} of {total} rows are malformed ({n_bad / total:.1%} > "
                   f"data.max_bad_fraction={data.max_bad_fraction:.1%}), e.g. {examples}", True)
    elif n_bad:
        add("all", f"{n_bad} of {total} rows are malformed and were skipped (see bad_rows.json)", False)
    for split, st in stats.items():
        if st["count"] == 0:
            add(split, "the split is empty" + _why_empty(split, data, (spec or {}).get("series")),
                split in ("train", "test"))
            continue
        for side in sides(spec or {}):
            _side_anomalies(split, side, st[side], schema[side], add)
    if stats["train"]["count"] and len(schema["y"].get("classes", [None, None])) < 2:
        add("train", "the target has a single class: nothing to learn", True)
    return out


def _why_empty(split: str, data: DataConfig, series: dict[str, Any] | None) -> str:
    """Why a split has no examples and what to change (time series), or ''."""
    fraction = {"validation": data.val_fraction, "test": data.test_fraction}.get(split)
    if fraction == 0:
        reason = f": data.{'val' if split == 'validation' else 'test'}_fraction=0"
    elif series:
        steps, n = series.get("rows", {}).get(split, 0), series["series"]
        where = f"{steps} time steps" + (f" over {n} series (~{steps // max(n, 1)} each)" if n > 1 else "")
        reason = (f": its {where}, gaps removed, hold no window of "
                  f"data.window + data.horizon = {data.window + data.horizon} consecutive steps; use a smaller "
                  f"window/horizon, {_more(split)}or data.fill_missing to close gaps")
    else:
        reason = ""
    if split == "validation":
        return reason + " (training runs without validation: no val_loss; early stopping watches loss)"
    return reason


def _more(split: str) -> str:
    key = {"validation": "data.val_fraction", "test": "data.test_fraction"}.get(split)
    return f"a larger {key}, " if key else "longer series, "


def _side_anomalies(split: str, side: str, s: dict[str, Any], sch: dict[str, Any], add: Any) -> None:
    """Anomalies of one side of one split against the train schema."""
    if s["wrong_type"]:
        add(split, f"wrong type: {s['wrong_type']} {side} values are not {s['kind']} values "
                   f"({s['wrong_type_example']})", True)
    if s["missing"] == s["count"]:
        add(split, f"every {side} value is missing", True)
    elif s["missing"]:
        add(split, f"{s['missing']} {side} values are missing", False)
    if s.get("ragged"):
        add(split, f"{s['ragged']} {side} rows have a different number of features than the rest", True)
    if split == "train":
        return
    if "classes" in s and "classes" in sch:
        unseen = sorted(set(s["classes"]) - set(sch["classes"]))
        if unseen:
            add(split, f"{side} has classes never seen in train: {unseen[:10]}", False)
    if "features" in s and s["features"] != sch.get("features"):
        add(split, f"{side} has {s['features']} features, train has {sch.get('features')}", True)
    elif "features" in s:
        for col, rng in zip(s["columns"], sch["ranges"]):
            lo, hi = rng["min"], rng["max"]
            if None not in (lo, hi, col["min"], col["max"]):
                span = max(hi - lo, 1e-9)
                if col["min"] < lo - span or col["max"] > hi + span:
                    add(split, f"{side} column {col['name']!r} ranges over [{col['min']:.4g}, {col['max']:.4g}], "
                               f"far outside train's [{lo:.4g}, {hi:.4g}]", False)
    if "vocabulary" in s and "vocabulary" in sch:
        known = set(sch["vocabulary"])
        n = sum(s["vocabulary"].values())
        oov = sum(c for t, c in s["vocabulary"].items() if t not in known)
        if n and oov / n > OOV_WARNING:
            add(split, f"{oov / n:.1%} of {side} tokens never occur in train (they become [UNK])", False)
    if "length_counts" in s and sch.get("length_max") is not None and s["length_max"] > sch["length_max"]:
        add(split, f"{side} has sequences of {s['length_max']} steps, longer than train's {sch['length_max']}",
            False)


def run(inputs: dict, workdir: Path, ctx: Any, *, data: DataConfig) -> dict[str, Any]:
    """Compute statistics, infer the schema, check every split, write the report."""
    ingest = inputs["ingest"]
    spec = read_spec(ingest)
    numeric = beam_stats(ingest, spec, data) if data.runner == "beam" and spec.get("windows") else {}
    if numeric:
        ctx.log(f"column statistics: a Beam pipeline ({data.beam_options.get('runner', 'DirectRunner')}) over the "
                f"row shards")
    stats = {split: split_stats(read_split(ingest, split, spec), spec, data.lowercase, numeric.get(split))
             for split in SPLITS}
    schema = infer_schema(stats["train"], spec)
    bad = json.loads(ingest.path(BAD_ROWS).read_text())
    anomalies = find_anomalies(stats, schema, bad, data, spec)
    for name, value in (("statistics", stats), ("schema", schema), ("anomalies", anomalies)):
        (workdir / f"{name}.json").write_text(json.dumps(value, indent=1, ensure_ascii=False))
    (workdir / "validation.md").write_text(_report(stats, schema, anomalies, bad, spec))
    _plot_lengths(stats, workdir / "lengths.png")
    _plot_numeric(stats, workdir / "numeric.png")
    for a in anomalies:
        ctx.log(f"{'FATAL' if a['fatal'] else 'warning'} [{a['split']}] {a['anomaly']}")
    fatal = [a for a in anomalies if a["fatal"]]
    if fatal:
        raise DataValidationError(
            "data validation failed: " + "; ".join(f"[{a['split']}] {a['anomaly']}" for a in fatal)
        )
    return {
        "schema": {side: {k: v for k, v in entry.items() if k != "vocabulary"} for side, entry in schema.items()},
        "anomalies": len(anomalies),
        "summary": f"{len(anomalies)} anomalies, {len(bad.get('bad_rows', []))} malformed rows",
        "metrics": {"data_anomalies": len(anomalies), "data_bad_rows": len(bad.get("bad_rows", []))},
    }


def _describe(side: dict[str, Any]) -> str:
    if "vocabulary" in side:
        return f"vocabulary {len(side['vocabulary'])}"
    if "classes" in side:
        return f"{len(side['classes'])} classes"
    if "features" in side:
        return f"{side['features']} features"
    return "-"


def _report(stats: dict, schema: dict, anomalies: list, bad: dict, spec: dict) -> str:
    lines = [f"# Data validation: {spec.get('source')} -> {spec.get('topology')}", "",
             "| split | examples | x kind | x length (min/mean/max) | x | y kind | y length | y |",
             "|---|---|---|---|---|---|---|---|"]
    for split, st in stats.items():
        cells = []
        for side in ("x", "y"):
            s = st[side]
            length = f"{s['length_min']}/{s['length_mean']:.1f}/{s['length_max']}" if "length_counts" in s else "-"
            cells += [s["kind"], length, _describe(s)]
        lines.append(f"| {split} | {st['count']} | " + " | ".join(cells) + " |")
    numeric = [(side, c) for side in sides(spec) for c in stats["train"][side].get("columns", [])]
    if numeric:
        lines += ["", "## Numeric columns (train)", "", "| side | column | min | max | mean | missing |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {side} | {c['name']} | {_num(c['min'])} | {_num(c['max'])} | {_num(c['mean'])} | "
                  f"{c['missing']} |" for side, c in numeric[:64]]
    for side in ("x", "y"):
        classes = stats["train"][side].get("classes")
        if classes:
            counts = ", ".join(f"{k}: {v}" for k, v in list(classes.items())[:50])
            lines += ["", f"## {side} classes (train)", "", counts]
    if spec.get("columns"):
        lines += ["", "## Source columns", "", "| column | type | missing |", "|---|---|---|"]
        lines += [f"| {k} | {v['type']} | {v['missing']} |" for k, v in spec["columns"].items()]
    if spec.get("series"):
        from components.ingestion import series_line

        rows = spec["series"].get("rows", {})
        lines += ["", "## Time series", "", series_line(spec["series"]) + ".", "",
                  "Time steps kept per split: " + ", ".join(f"{k} {v}" for k, v in rows.items())]
    brief = {side: {k: v for k, v in e.items() if k not in ("vocabulary", "ranges")} for side, e in schema.items()}
    lines += ["", "## Schema (from train)", "", "```json", json.dumps(brief, indent=2)[:4000], "```", "",
              "## Anomalies", ""]
    lines += [f"- {'**FATAL** ' if a['fatal'] else ''}[{a['split']}] {a['anomaly']}" for a in anomalies] or ["- none"]
    lines += ["", f"## Malformed rows: {len(bad.get('bad_rows', []))} of {bad.get('total_rows', 0)}", ""]
    lines += [f"- {b['where']}: {b['reason']}" for b in bad.get("bad_rows", [])[:50]]
    return "\n".join(lines) + "\n"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _plot_lengths(stats: dict, path: Path) -> None:
    import numpy as np

    from components.plots import figure

    sides = [(split, side) for split in stats for side in ("x", "y") if stats[split][side].get("length_counts")]
    if all(len(stats[split][side]["length_counts"]) < 2 for split, side in sides):
        return  # each side one length for every sequence (e.g. a CSV's windows): the report's table says it
    lengths = [int(k) for split, side in sides for k in stats[split][side]["length_counts"]]
    edges = np.histogram_bin_edges(lengths, bins=30)
    with figure(path, "Sequence lengths") as ax:
        for split, side in sides:  # one outline per split and side (one artist each, not a patch per bin)
            counts = stats[split][side]["length_counts"]
            hist, _ = np.histogram([int(k) for k in counts], bins=edges, weights=list(counts.values()))
            ax.stairs(hist, edges, fill=True, alpha=0.4, label=f"{split} {side}")
        ax.set_xlabel("length (tokens / steps)")
        ax.set_ylabel("examples")
        ax.legend()


def _plot_numeric(stats: dict, path: Path) -> None:
    """A histogram per numeric column (up to 16), train / validation / test overlaid."""
    from components.plots import plt

    x_names = [c["name"] for c in stats["train"]["x"].get("columns", [])]
    cols = [(side, j, c["name"]) for side in ("x", "y") for j, c in enumerate(stats["train"][side].get("columns", []))
            if side == "x" or "length_counts" not in stats["train"]["y"] or c["name"] not in x_names]
    if not cols:
        return
    cols = cols[:16]
    ncols = min(4, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), dpi=100, squeeze=False)
    for ax, (side, j, name) in zip(axes.flat, cols):
        for k, split in enumerate(SPLITS):
            columns = stats[split][side].get("columns", [])
            hist = columns[j]["histogram"] if j < len(columns) else {"edges": []}
            if hist["edges"]:
                total = max(sum(hist["counts"]), 1)
                ax.stairs([c / total for c in hist["counts"]], hist["edges"], color=f"C{k}", label=split)
        ax.set_title(f"{side}.{name}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(cols):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Numeric columns (share of values per bin)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
