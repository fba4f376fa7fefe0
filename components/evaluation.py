"""Evaluation stage: task metrics on the test split, the trivial baseline, and the blessing.

inputs -> outputs: preprocess, train -> `metrics.json` (model and baseline side by side),
`evaluation.md` (report), `blessing.json` (blessed + reasons), task plots (confusion matrix...)
and `predictions.csv` (example predictions).

The blessing is TFX's Evaluator gate: every `evaluate.thresholds` entry must hold, and with
`compare_to: baseline` the model must beat the trivial baseline on the task's main metric.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from components.preprocessing import load_split
from pipeline.config import EvaluateConfig, ModelConfig

# Metrics where lower is better (every other metric: higher is better).
LOWER_IS_BETTER = {"loss", "mae", "rmse", "smape", "mase", "perplexity", "edit_distance",
                   "token_error_rate"}


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro F1, per-class precision/recall, confusion matrix."""
    y_pred = probs.argmax(-1)
    k = len(classes)
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros(k), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros(k), where=cm.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = cm.sum(1) > 0
    metrics = {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
    }
    per_class = {c: {"precision": float(precision[i]), "recall": float(recall[i]), "support": int(cm.sum(1)[i])}
                 for i, c in enumerate(classes)}
    return {"metrics": metrics, "per_class": per_class, "confusion": cm}


def evaluate_classification(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig) -> dict[str, Any]:
    """many_to_one / one_to_one: the model vs the majority class."""
    from components.plots import heatmap

    state = json.loads(preprocess.path("preprocessor.json").read_text())
    classes = state["y"]["classes"]
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
    probs = model.predict(test["x"], verbose=0)
    result = classification_metrics(test["y"], probs, classes)
    majority = np.bincount(train["y"], minlength=len(classes)).argmax()
    baseline = classification_metrics(test["y"], np.eye(len(classes))[np.full(len(test["y"]), majority)], classes)
    heatmap(result["confusion"], workdir / "confusion_matrix.png", "Confusion matrix (test)",
            classes, classes, "predicted", "true")
    raw = [json.loads(line) for line in preprocess.path("test_raw.jsonl").read_text().splitlines()]
    rows = [{"input": r["x"], "target": r["y"], "predicted": classes[int(p.argmax())],
             "confidence": round(float(p.max()), 4)} for r, p in zip(raw[: cfg.num_examples * 4], probs)]
    extra = [f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['support']} |"
             for c, v in result["per_class"].items()]
    return {
        "main": "accuracy",
        "model": result["metrics"],
        "baseline": baseline["metrics"],
        "baseline_name": f"majority class ({classes[majority]})",
        "rows": rows,
        "report": ["", "## Per class", "", "| class | precision | recall | support |", "|---|---|---|---|", *extra],
    }


TASKS: dict[str, Callable[..., dict[str, Any]]] = {"label": evaluate_classification}


def bless(model_metrics: dict[str, float], baseline: dict[str, float], main: str,
          cfg: EvaluateConfig, last_blessed: dict[str, float] | None = None) -> tuple[bool, list[str]]:
    """Apply thresholds and the comparison; returns (blessed, reasons)."""
    reasons, ok = [], True
    for metric, bound in cfg.thresholds.items():
        value = model_metrics.get(metric)
        if value is None:
            ok = False
            reasons.append(f"threshold on unknown metric {metric!r} (have: {', '.join(sorted(model_metrics))})")
            continue
        if "min" in bound and value < bound["min"]:
            ok = False
            reasons.append(f"{metric} {value:.4g} < {bound['min']:.4g}")
        if "max" in bound and value > bound["max"]:
            ok = False
            reasons.append(f"{metric} {value:.4g} > {bound['max']:.4g}")
    reference = {"baseline": baseline, "last_blessed": last_blessed}.get(cfg.compare_to)
    if reference and main in reference and main in model_metrics:
        mine, theirs = model_metrics[main], reference[main]
        better = mine < theirs + cfg.tolerance if main in LOWER_IS_BETTER else mine > theirs - cfg.tolerance
        if not better:
            ok = False
            reasons.append(f"{main} {mine:.4g} does not beat {cfg.compare_to} {theirs:.4g}")
        else:
            reasons.append(f"{main} {mine:.4g} beats {cfg.compare_to} {theirs:.4g}")
    return ok, reasons


def run(inputs: dict, workdir: Path, ctx: Any, *, evaluate: EvaluateConfig, model: ModelConfig) -> dict[str, Any]:
    """Score the trained model and its baseline on the test split; decide the blessing."""
    import keras

    preprocess, train = inputs["preprocess"], inputs["train"]
    net = keras.saving.load_model(train.path("model.keras"), safe_mode=True)
    kind = preprocess.properties["io"]["y"]["kind"]
    result = TASKS[kind](net, preprocess, workdir, evaluate)
    main = result["main"]
    blessed, reasons = bless(result["model"], result["baseline"], main, evaluate)
    (workdir / "metrics.json").write_text(json.dumps({k: result[k] for k in ("model", "baseline")}, indent=2))
    (workdir / "blessing.json").write_text(json.dumps({"blessed": blessed, "reasons": reasons}, indent=2))
    _write_rows(workdir / "predictions.csv", result["rows"])
    (workdir / "evaluation.md").write_text(_report(result, blessed, reasons))
    metrics = {f"test_{k}": v for k, v in result["model"].items()}
    metrics.update({f"baseline_{k}": v for k, v in result["baseline"].items()})
    ctx.log(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    ctx.log(f"{'blessed' if blessed else 'NOT blessed'}: {'; '.join(reasons) or 'no criteria'}")
    return {
        "metrics": metrics,
        "main_metric": main,
        "blessed": blessed,
        "reasons": reasons,
        "tags": {"blessed": str(blessed).lower()},
        "summary": f"test_{main}={result['model'][main]:.4f} (baseline {result['baseline'][main]:.4f}) "
                   f"{'blessed' if blessed else 'not blessed'}",
    }


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _report(result: dict[str, Any], blessed: bool, reasons: list[str]) -> str:
    lines = ["# Evaluation (test split)", "", f"| metric | model | baseline: {result['baseline_name']} |",
             "|---|---|---|"]
    for k, v in result["model"].items():
        lines.append(f"| {k} | {v:.4f} | {result['baseline'].get(k, float('nan')):.4f} |")
    lines += ["", f"**{'Blessed' if blessed else 'Not blessed'}**: {'; '.join(reasons) or 'no criteria'}"]
    lines += result.get("report", [])
    return "\n".join(lines) + "\n"
