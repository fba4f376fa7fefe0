"""Label targets: classification (one label per example) and tagging (one label per step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from components import kinds
from components import stage_files as files
from components.config import EvaluateConfig, ModelConfig
from components.evaluation.common import _predict, _raw, _short, _state, accuracy_by_position
from components.metrics import Sample, mean_sample
from components.preprocessing import load_split


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


def stratified_random(train_y: np.ndarray, shape: tuple[int, ...], k: int, seed: int = 0) -> np.ndarray:
    """Labels drawn at random with the train class frequencies (a fixed seed: reproducible)."""
    counts = np.bincount(train_y.reshape(-1), minlength=k).astype(float)
    p = counts / counts.sum() if counts.sum() else np.full(k, 1.0 / k)
    return np.random.default_rng(seed).choice(k, size=shape, p=p)


def evaluate_classification(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                            model_cfg: ModelConfig, **_: Any) -> dict[str, Any]:
    """many_to_one / one_to_one: the model vs the majority class and stratified random labels."""
    from components.plots import heatmap

    classes = _state(preprocess)["y"]["classes"]
    k = len(classes)
    test, train = load_split(preprocess, "test"), files.load_arrays(preprocess, "train")  # train: its targets
    y = test["y"]
    probs = _predict(model, test["x"])
    result = classification_metrics(y, probs, classes)
    majority = int(np.bincount(train["y"], minlength=k).argmax())
    predictions = {"model": probs.argmax(-1) if len(y) else y,
                   f"majority class ({classes[majority]})": np.full(len(y), majority),
                   "stratified random": stratified_random(train["y"], y.shape, k)}
    sides = {name: classification_metrics(y, np.eye(k)[p], classes)["metrics"] for name, p in predictions.items()}
    samples = {name: {"accuracy": mean_sample(p == y)} for name, p in predictions.items()}
    heatmap(result["confusion"], workdir / "confusion_matrix.png", "Confusion matrix (test)",
            classes, classes, "predicted", "true")
    rows = [{"input": _short(r["x"]), "target": r["y"], "predicted": classes[int(p.argmax())],
             "confidence": round(float(p.max()), 4)} for r, p in zip(_raw(preprocess)[: cfg.num_examples * 4], probs)]
    extra = [f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['support']} |"
             for c, v in result["per_class"].items()]
    return {
        "main": "accuracy", "gate": ["accuracy"], "examples": len(y),
        "model": sides.pop("model"), "baselines": sides, "samples": samples,
        "rows": rows,
        "report": ["", "## Per class", "", "| class | precision | recall | support |", "|---|---|---|---|", *extra],
    }


def step_mask(x: np.ndarray | None, y: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """Which steps count: real (non-padding) input tokens, or every step of a numeric window."""
    steps = y.shape[1]
    if kinds.of(state["y"]).zero_pads:
        return y != 0
    if kinds.of(state["x"]).zero_pads:
        mask = np.zeros(y.shape, dtype=bool)
        width = min(steps, x.shape[1])
        mask[:, :width] = x[:, :width] != 0
        return mask
    return np.ones(y.shape, dtype=bool)


def _macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    probs = np.eye(k)[pred]
    return classification_metrics(y, probs, [str(i) for i in range(k)])["metrics"]["macro_f1"]


def evaluate_tagging(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                     model_cfg: ModelConfig, **_: Any) -> dict[str, Any]:
    """many_to_many labels: per-step accuracy (padding ignored) vs the majority label and stratified random."""
    state = _state(preprocess)
    classes = state["y"]["classes"]
    k = len(classes)
    # train as stored: its targets, and token inputs (the step mask reads those; a CSV's are not encoded here)
    test, train = load_split(preprocess, "test"), files.load_arrays(preprocess, "train")
    y = test["y"]
    probs = _predict(model, test["x"])[:, : y.shape[1]]
    y = y[:, : probs.shape[1]]
    mask = step_mask(test["x"], y, state)
    pred = probs.argmax(-1)
    train_mask = step_mask(train.get("x"), train["y"], state)
    majority = int(np.bincount(train["y"][train_mask], minlength=k).argmax())
    predictions = {"model": pred, f"majority label ({classes[majority]})": np.full_like(y, majority),
                   "stratified random": stratified_random(train["y"][train_mask], y.shape, k)}

    def metrics(p: np.ndarray) -> dict[str, float]:
        hits = (p == y) & mask
        return {"accuracy": float(hits.sum() / max(mask.sum(), 1)),
                "macro_f1": _macro_f1(y[mask], p[mask], k),
                "sequence_accuracy": float(((p == y) | ~mask).all(1).mean()) if len(y) else 0.0}

    sides = {name: metrics(p) for name, p in predictions.items()}
    samples = {name: {"accuracy": Sample(((p == y) & mask).sum(1).astype(float), mask.sum(1).astype(float))}
               for name, p in predictions.items()}
    accuracy_by_position(workdir / "accuracy_by_position.png",
                         {name.split(" (")[0]: p == y for name, p in predictions.items()}, mask, "Per-step")
    raw = _raw(preprocess)
    rows = []
    for r, p, m in zip(raw[: cfg.num_examples * 2], pred, mask):
        rows.append({"input": _short(r["x"]), "target": " ".join(map(str, r["y"]))[:120],
                     "predicted": " ".join(classes[i] for i in p[m])[:120]})
    return {"main": "accuracy", "gate": ["accuracy"], "examples": len(y), "model": sides.pop("model"),
            "baselines": sides, "samples": samples, "rows": rows, "report": []}
