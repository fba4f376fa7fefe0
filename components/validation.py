"""Validation stage (TFDV-style, plain Python): statistics, an inferred schema, anomalies.

inputs -> outputs: ingest -> `statistics.json` (per split), `schema.json` (inferred from
train), `anomalies.json`, `validation.md` (report) and `lengths.png` (length histogram).
Fatal anomalies (an empty split, too many malformed rows, a target that is always missing,
values of the wrong kind) stop the run with a message that names them.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from components.ingestion import read_examples, read_spec
from pipeline.config import DataConfig

SEQUENCE_KINDS = ("tokens", "series", "labels")


class DataValidationError(RuntimeError):
    """The data cannot be trained on; the message lists why."""


def tokens_of(value: str, tokenize: str, lowercase: bool = False) -> list[str]:
    """Split a raw string the way the model's graph does (chars or whitespace words)."""
    value = value.lower() if lowercase else value
    return list(value) if tokenize == "char" else value.split()


def side_stats(values: list[Any], spec: dict[str, Any], lowercase: bool) -> dict[str, Any]:
    """Statistics of one side (x or y) of a split."""
    kind = spec["kind"]
    stats: dict[str, Any] = {"kind": kind, "count": len(values)}
    missing = sum(v is None or v == "" or v == [] for v in values)
    stats["missing"] = missing
    present = [v for v in values if not (v is None or v == "" or v == [])]
    if kind in ("label", "category"):
        stats["classes"] = dict(Counter(map(str, present)).most_common())
    elif kind == "tokens":
        toks = [tokens_of(v, spec.get("tokenize", "char"), lowercase) for v in present]
        stats["lengths"] = [len(t) for t in toks]
        stats["vocabulary"] = dict(Counter(t for seq in toks for t in seq).most_common())
    elif kind == "labels":
        stats["lengths"] = [len(v) for v in present]
        stats["classes"] = dict(Counter(str(t) for seq in present for t in seq).most_common())
    else:  # vector / series: numbers
        rows = [v for v in present]
        if kind == "series":
            stats["lengths"] = [len(v) for v in rows]
            rows = [step for seq in rows for step in seq]
        stats.update(_numeric(rows))
    if "lengths" in stats:
        lengths = stats["lengths"]
        stats["length_min"] = min(lengths, default=0)
        stats["length_max"] = max(lengths, default=0)
        stats["length_mean"] = sum(lengths) / len(lengths) if lengths else 0.0
    return stats


def _numeric(rows: list[list[float]]) -> dict[str, Any]:
    width = len(rows[0]) if rows else 0
    cols = list(zip(*rows)) if rows else []
    out = {"features": width, "columns": []}
    for col in cols:
        finite = [float(v) for v in col if v is not None and math.isfinite(float(v))]
        out["columns"].append({
            "min": min(finite, default=None),
            "max": max(finite, default=None),
            "mean": sum(finite) / len(finite) if finite else None,
            "missing": len(col) - len(finite),
        })
    return out


def split_stats(path: Path, spec: dict[str, Any], lowercase: bool) -> dict[str, Any]:
    examples = read_examples(path)
    xs, ys = [e[0] for e in examples], [e[1] for e in examples]
    return {
        "count": len(examples),
        "x": side_stats(xs, spec["x"], lowercase),
        "y": side_stats(ys, spec["y"], lowercase),
    }


def infer_schema(train: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """What the train split says valid data looks like."""
    schema: dict[str, Any] = {}
    for side in ("x", "y"):
        st = train[side]
        entry: dict[str, Any] = {"kind": st["kind"]}
        if "classes" in st:
            entry["classes"] = sorted(st["classes"])
        if "vocabulary" in st:
            entry["vocabulary_size"] = len(st["vocabulary"])
        if "features" in st:
            entry["features"] = st["features"]
        if "lengths" in st:
            entry["length_max"] = st["length_max"]
        schema[side] = entry
    return schema


def find_anomalies(stats: dict[str, dict], schema: dict[str, Any], bad: dict[str, Any],
                   data: DataConfig) -> list[dict[str, Any]]:
    """Anomalies of every split against the schema; `fatal` ones stop the run."""
    out = []

    def add(split: str, what: str, fatal: bool) -> None:
        out.append({"split": split, "anomaly": what, "fatal": fatal})

    total, n_bad = bad.get("total_rows", 0), len(bad.get("bad_rows", []))
    if total and n_bad / total > data.max_bad_fraction:
        examples = "; ".join(f"{b['where']}: {b['reason']}" for b in bad["bad_rows"][:5])
        add("all", f"{n_bad} of {total} rows are malformed ({n_bad / total:.1%} > "
                   f"data.max_bad_fraction={data.max_bad_fraction:.1%}), e.g. {examples}", True)
    for split, st in stats.items():
        if st["count"] == 0:
            add(split, "the split is empty", split in ("train", "test"))
            continue
        for side in ("x", "y"):
            s, sch = st[side], schema[side]
            if s["missing"] == s["count"]:
                add(split, f"every {side} value is missing", True)
            elif s["missing"]:
                add(split, f"{s['missing']} {side} values are missing", False)
            if split != "train" and "classes" in s and "classes" in sch:
                unseen = sorted(set(s["classes"]) - set(sch["classes"]))
                if unseen:
                    add(split, f"{side} has classes never seen in train: {unseen[:10]}", False)
            if split != "train" and "features" in s and s["features"] != sch.get("features"):
                add(split, f"{side} has {s['features']} features, train has {sch.get('features')}", True)
    if stats["train"]["count"] and len(schema["y"].get("classes", [None, None])) < 2:
        add("train", "the target has a single class: nothing to learn", True)
    return out


def run(inputs: dict, workdir: Path, ctx: Any, *, data: DataConfig) -> dict[str, Any]:
    """Compute statistics, infer the schema, check every split, write the report."""
    ingest = inputs["ingest"]
    spec = read_spec(ingest)
    stats = {
        split: split_stats(ingest.path(f"{split}.jsonl"), spec, data.lowercase)
        for split in ("train", "validation", "test")
    }
    schema = infer_schema(stats["train"], spec)
    bad = json.loads(ingest.path("bad_rows.json").read_text())
    anomalies = find_anomalies(stats, schema, bad, data)
    for name, value in (("statistics", stats), ("schema", schema), ("anomalies", anomalies)):
        (workdir / f"{name}.json").write_text(json.dumps(value, indent=2))
    (workdir / "validation.md").write_text(_report(stats, schema, anomalies, bad))
    _plot_lengths(stats, workdir / "lengths.png")
    for a in anomalies:
        ctx.log(f"{'FATAL' if a['fatal'] else 'warning'} [{a['split']}] {a['anomaly']}")
    fatal = [a for a in anomalies if a["fatal"]]
    if fatal:
        raise DataValidationError(
            "data validation failed: " + "; ".join(f"[{a['split']}] {a['anomaly']}" for a in fatal)
        )
    return {
        "schema": schema,
        "anomalies": len(anomalies),
        "summary": f"{len(anomalies)} anomalies, {len(bad.get('bad_rows', []))} malformed rows",
        "metrics": {"data_anomalies": len(anomalies), "data_bad_rows": len(bad.get("bad_rows", []))},
    }


def _report(stats: dict, schema: dict, anomalies: list, bad: dict) -> str:
    lines = ["# Data validation", "", "| split | examples | x kind | y kind | x length (min/mean/max) |",
             "|---|---|---|---|---|"]
    for split, st in stats.items():
        x = st["x"]
        length = (f"{x['length_min']}/{x['length_mean']:.1f}/{x['length_max']}" if "lengths" in x else "-")
        lines.append(f"| {split} | {st['count']} | {x['kind']} | {st['y']['kind']} | {length} |")
    lines += ["", "## Schema (from train)", "", "```json", json.dumps(schema, indent=2)[:4000], "```", "",
              "## Anomalies", ""]
    lines += [f"- {'**FATAL** ' if a['fatal'] else ''}[{a['split']}] {a['anomaly']}" for a in anomalies] or ["- none"]
    lines += ["", f"## Malformed rows: {len(bad.get('bad_rows', []))} of {bad.get('total_rows', 0)}", ""]
    lines += [f"- {b['where']}: {b['reason']}" for b in bad.get("bad_rows", [])[:50]]
    return "\n".join(lines) + "\n"


def _plot_lengths(stats: dict, path: Path) -> None:
    from components.plots import figure

    sides = [(split, side) for split in stats for side in ("x", "y") if "lengths" in stats[split][side]]
    if not sides:
        return
    with figure(path, "Sequence lengths") as ax:
        for split, side in sides:
            ax.hist(stats[split][side]["lengths"], bins=30, alpha=0.5, label=f"{split} {side}")
        ax.set_xlabel("length (tokens / steps)")
        ax.set_ylabel("examples")
        ax.legend()
