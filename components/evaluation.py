"""Evaluation stage: task metrics on the test split, the trivial baseline, and the blessing.

inputs -> outputs: preprocess, train -> `metrics.json` (model and baseline side by side),
`evaluation.md` (report), `blessing.json` (blessed + reasons), task plots and
`predictions.csv` (example predictions), by the kind of target (`TASKS`):

- label (one_to_one, many_to_one): accuracy, macro F1, per-class precision/recall,
  confusion-matrix PNG; baseline: the majority class of train.
- labels (many_to_many tagging): per-step accuracy ignoring padding, macro F1, whole-sequence
  accuracy, accuracy-by-position PNG; baseline: the majority label of train.
- tokens, language model: per-token accuracy ignoring padding, perplexity, accuracy-by-position
  PNG, a few temperature-sampled continuations (`samples.md`); baseline: the train unigram.
- tokens, generated (one_to_many, seq2seq): exact match, token edit distance and token error
  rate (edits / reference tokens, e.g. phoneme error rate) with greedy decoding and with beam
  search, attention heat-map PNG when the model attends; baseline: the most frequent train
  target, always.
- series: MAE, RMSE, sMAPE (%), MASE in raw units (de-normalised), error-by-horizon and
  forecast-vs-actual PNGs; baseline: seasonal naive (the last season of the input window
  repeated; the last value when the window is shorter than the horizon; for synced
  many_to_many the aligned input value), or the train mean when the input is no series.
  MASE divides by the in-sample MAE of that naive forecast on train.

The blessing is TFX's Evaluator gate: every `evaluate.thresholds` entry must hold, and with
`compare_to: baseline` the model must beat the trivial baseline on the task's main metric;
with `compare_to: last_blessed` it must not be worse (within `evaluate.tolerance`) than the
pipeline's registered champion, whose metrics the runner passes in as `last_blessed`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from components.preprocessing import END, PAD, START, Codec, load_split, reference
from pipeline.config import EvaluateConfig, ModelConfig

# Metrics where lower is better (every other metric: higher is better).
LOWER_IS_BETTER = {"loss", "mae", "rmse", "smape", "mase", "perplexity", "teacher_forced_perplexity", "edit_distance",
                   "token_error_rate", "beam_edit_distance", "beam_token_error_rate"}
BATCH = 256


def _raw(preprocess: Any, split: str = "test") -> list[dict[str, Any]]:
    return [json.loads(line) for line in preprocess.path(f"{split}_raw.jsonl").read_text().splitlines()]


def _state(preprocess: Any) -> dict[str, Any]:
    return json.loads(preprocess.path("preprocessor.json").read_text())


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's encoded predictions on `x` (every model but a token generator: model(x))."""
    if not len(x):
        return np.zeros((0,))
    return np.asarray(model.predict(x, batch_size=BATCH, verbose=0))


# --------------------------------------------------------------------------------------------
# Classification: one label per example


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


def evaluate_classification(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                            model_cfg: ModelConfig) -> dict[str, Any]:
    """many_to_one / one_to_one: the model vs the majority class."""
    from components.plots import heatmap

    classes = _state(preprocess)["y"]["classes"]
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
    probs = _predict(model, test["x"])
    result = classification_metrics(test["y"], probs, classes)
    majority = np.bincount(train["y"], minlength=len(classes)).argmax()
    baseline = classification_metrics(test["y"], np.eye(len(classes))[np.full(len(test["y"]), majority)], classes)
    heatmap(result["confusion"], workdir / "confusion_matrix.png", "Confusion matrix (test)",
            classes, classes, "predicted", "true")
    rows = [{"input": _short(r["x"]), "target": r["y"], "predicted": classes[int(p.argmax())],
             "confidence": round(float(p.max()), 4)} for r, p in zip(_raw(preprocess)[: cfg.num_examples * 4], probs)]
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


# --------------------------------------------------------------------------------------------
# Per-step targets: tagging and language models


def step_mask(x: np.ndarray, y: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """Which steps count: real (non-padding) input tokens, or every step of a numeric window."""
    steps = y.shape[1]
    if state["y"]["kind"] == "tokens":
        return y != 0
    if state["x"]["kind"] == "tokens":
        mask = np.zeros(y.shape, dtype=bool)
        width = min(steps, x.shape[1])
        mask[:, :width] = x[:, :width] != 0
        return mask
    return np.ones(y.shape, dtype=bool)


def accuracy_by_position(path: Path, correct: dict[str, np.ndarray], mask: np.ndarray, what: str) -> None:
    """Accuracy at each step (model and baseline), counting only unmasked steps."""
    from components.plots import figure

    counts = np.maximum(mask.sum(0), 1)
    with figure(path, f"{what} accuracy by position (test)") as ax:
        for name, hits in correct.items():
            ax.plot(np.arange(1, mask.shape[1] + 1), (hits & mask).sum(0) / counts, marker=".", label=name)
        ax.set_xlabel("position")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend()


def _macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    probs = np.eye(k)[pred]
    return classification_metrics(y, probs, [str(i) for i in range(k)])["metrics"]["macro_f1"]


def evaluate_tagging(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                     model_cfg: ModelConfig) -> dict[str, Any]:
    """many_to_many labels: per-step accuracy (padding ignored) vs the majority label."""
    state = _state(preprocess)
    classes = state["y"]["classes"]
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
    y = test["y"]
    probs = _predict(model, test["x"])[:, : y.shape[1]]
    y = y[:, : probs.shape[1]]
    mask = step_mask(test["x"], y, state)
    pred = probs.argmax(-1)
    train_mask = step_mask(train["x"], train["y"], state)
    majority = int(np.bincount(train["y"][train_mask], minlength=len(classes)).argmax())
    base = np.full_like(y, majority)

    def metrics(p: np.ndarray) -> dict[str, float]:
        hits = (p == y) & mask
        return {"accuracy": float(hits.sum() / max(mask.sum(), 1)),
                "macro_f1": _macro_f1(y[mask], p[mask], len(classes)),
                "sequence_accuracy": float(((p == y) | ~mask).all(1).mean()) if len(y) else 0.0}

    accuracy_by_position(workdir / "accuracy_by_position.png", {"model": pred == y, "baseline": base == y},
                         mask, "Per-step")
    raw = _raw(preprocess)
    rows = []
    for r, p, m in zip(raw[: cfg.num_examples * 2], pred, mask):
        rows.append({"input": _short(r["x"]), "target": " ".join(map(str, r["y"]))[:120],
                     "predicted": " ".join(classes[i] for i in p[m])[:120]})
    return {"main": "accuracy", "model": metrics(pred), "baseline": metrics(base),
            "baseline_name": f"majority label ({classes[majority]})", "rows": rows, "report": []}


def _vocabulary(state: dict[str, Any], side: str = "y") -> list[str]:
    return [PAD, "[UNK]", *state[side]["vocabulary"]]


def next_token_metrics(probs: np.ndarray, y: np.ndarray, train_y: np.ndarray) -> tuple[dict, dict, dict, np.ndarray]:
    """Per-token accuracy and perplexity of next-token probabilities [N, T, V], padding ignored,
    for the model and for the train unigram; plus the hits of each and the mask (by position)."""
    probs = probs[:, : y.shape[1]]
    y = y[:, : probs.shape[1]]
    mask = y != 0
    unigram = np.bincount(train_y[train_y != 0], minlength=probs.shape[-1]).astype(float) + 1.0
    unigram /= unigram.sum()

    def metrics(pred: np.ndarray, p_true: np.ndarray) -> dict[str, float]:
        nll = -np.log(np.clip(p_true[mask], 1e-12, 1.0))
        return {"accuracy": float(((pred == y) & mask).sum() / max(mask.sum(), 1)),
                "perplexity": float(np.exp(nll.mean())) if nll.size else float("nan")}

    pred, base_pred = probs.argmax(-1), np.full_like(y, int(unigram.argmax()))
    p_model = np.take_along_axis(probs, y[..., None], -1)[..., 0]
    return (metrics(pred, p_model), metrics(base_pred, unigram[y]),
            {"model": pred == y, "baseline": base_pred == y}, mask)


def evaluate_language_model(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                            model_cfg: ModelConfig) -> dict[str, Any]:
    """Next-token prediction: per-token accuracy and perplexity vs the train unigram."""
    state = _state(preprocess)
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
    probs = _predict(model, test["x"])
    model_metrics, base_metrics, hits, mask = next_token_metrics(probs, test["y"], train["y"])
    accuracy_by_position(workdir / "accuracy_by_position.png", hits, mask, "Next-token")
    words = _vocabulary(state, "x")
    sep = "" if state["x"].get("tokenize", "char") == "char" else " "
    samples = sample_continuations(model, preprocess, test["x"][:3, :20], words, sep, seed=0)
    (workdir / "samples.md").write_text("# Sampled continuations (temperature)\n\n" + "\n".join(
        f"- T={t}: **{prompt}**{text}" for prompt, t, text in samples) + "\n")
    rows = [{"prompt": _short(p, 40), "temperature": t, "continuation": _short(text, 80)} for p, t, text in samples]
    return {"main": "accuracy", "model": model_metrics, "baseline": base_metrics,
            "baseline_name": "train unigram", "rows": rows,
            "report": ["", "## Samples", "", *(f"- T={t}: **{p}**{text}" for p, t, text in samples)]}


def sample_continuations(model: Any, preprocess: Any, prompts: np.ndarray, words: list[str], sep: str, seed: int,
                         steps: int = 40, temperatures: tuple[float, ...] = (0.5, 1.0)) -> list[tuple[str, float, str]]:
    """Temperature-sampled continuations of encoded prompts: the exported `generate` signature's own
    loop (components/export.continue_text), so the report shows what the served model does."""
    import tensorflow as tf

    from components.export import continue_text

    codec = Codec.load(preprocess)
    sample = tf.function(lambda p, t: continue_text(model, codec, p, steps, t))
    tf.random.set_seed(seed)
    out = []
    for temperature in temperatures:
        texts = sample(tf.constant(prompts), tf.constant(temperature, tf.float32)).numpy()
        for prompt, text in zip(prompts, texts):
            shown = sep.join(words[i] for i in prompt if i > 1)
            out.append((shown, temperature, sep + text.decode() if sep else text.decode()))
    return out


# --------------------------------------------------------------------------------------------
# Generated token sequences


def edit_distance(a: list[Any], b: list[Any]) -> int:
    """Levenshtein distance between two token lists."""
    prev = list(range(len(b) + 1))
    for i, ta in enumerate(a, 1):
        cur = [i]
        for j, tb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ta != tb)))
        prev = cur
    return prev[-1]


def sequence_metrics(refs: list[list[str]], hyps: list[list[str]]) -> dict[str, float]:
    """Exact match, mean token edit distance, token error rate (edits / reference tokens)."""
    edits = [edit_distance(r, h) for r, h in zip(refs, hyps)]
    total = max(sum(len(r) for r in refs), 1)
    return {"exact_match": float(np.mean([r == h for r, h in zip(refs, hyps)])) if refs else 0.0,
            "edit_distance": float(np.mean(edits)) if edits else 0.0,
            "token_error_rate": float(sum(edits) / total)}


def ids_to_tokens(ids: Any, words: list[str]) -> list[str]:
    """Token ids -> tokens, stopping at the end token, skipping padding and start."""
    out = []
    for i in np.asarray(ids).tolist():
        token = words[i] if 0 <= i < len(words) else "[UNK]"
        if token == END:
            break
        if token not in (PAD, START):
            out.append(token)
    return out


def generate_batches(model: Any, preprocess: Any, cfg: ModelConfig, x: np.ndarray, steps: int,
                     beam_width: int) -> dict[str, np.ndarray]:
    """models/decoding.py on encoded inputs, in batches: ids [N, steps] (+ attention [N, steps, T])."""
    import tensorflow as tf

    from models.decoding import make_generator

    generate = make_generator(model, cfg, preprocess.properties["io"])
    fn = tf.function(lambda t: generate(t, steps, beam_width), reduce_retracing=True)
    outs = [fn(tf.constant(x[i:i + BATCH])) for i in range(0, len(x), BATCH)]
    return {k: np.concatenate([np.asarray(o[k]) for o in outs]) for k in (outs[0] if outs else {})}


def evaluate_generation(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                        model_cfg: ModelConfig) -> dict[str, Any]:
    """one_to_many / seq2seq tokens: greedy and beam decoding vs the most frequent train target."""
    from collections import Counter

    state = _state(preprocess)
    words = _vocabulary(state)
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
    refs = [ids_to_tokens(row, words) for row in test["y"]]
    steps = int(model_cfg.max_output_length or state["y"]["length"])
    decoded = generate_batches(model, preprocess, model_cfg, test["x"], steps, 1)
    greedy = [ids_to_tokens(row, words) for row in decoded.get("ids", [])]
    model_metrics = sequence_metrics(refs, greedy)
    width = cfg.beam_width or model_cfg.beam_width
    beam = greedy
    if width > 1:
        beams = generate_batches(model, preprocess, model_cfg, test["x"], steps, width)
        beam = [ids_to_tokens(row, words) for row in beams.get("ids", [])]
        model_metrics.update({f"beam_{k}": v for k, v in sequence_metrics(refs, beam).items()})
    common = Counter(tuple(ids_to_tokens(row, words)) for row in train["y"]).most_common(1)
    constant = list(common[0][0]) if common else []
    base = sequence_metrics(refs, [constant] * len(refs))
    if width > 1:
        base.update({f"beam_{k}": v for k, v in base.items()})
    if len(test["y"]):  # teacher forced: how well the model predicts each next target token
        from models.build import training_data

        inputs, _ = training_data(model_cfg, preprocess.properties["io"], test["x"], test["y"])
        probs = np.asarray(model.predict(inputs, batch_size=BATCH, verbose=0))
        forced, unigram, _, _ = next_token_metrics(probs, test["y"], train["y"])
        model_metrics.update({f"teacher_forced_{k}": v for k, v in forced.items()})
        base.update({f"teacher_forced_{k}": v for k, v in unigram.items()})
    sep = "" if state["y"].get("tokenize", "char") == "char" else " "
    raw = _raw(preprocess)
    rows = [{"input": _short(r["x"]), "target": sep.join(t), "greedy": sep.join(g), f"beam_{width}": sep.join(b)}
            for r, t, g, b in zip(raw[: cfg.num_examples * 2], refs, greedy, beam)]
    if "attention" in decoded:
        _attention_maps(decoded, state, test["x"], raw, workdir)
    return {"main": "token_error_rate", "model": model_metrics, "baseline": base,
            "baseline_name": f"most frequent train target ({_short(sep.join(constant), 30)}); "
                             f"teacher_forced_*: train unigram", "rows": rows,
            "report": []}


def _attention_maps(decoded: dict[str, np.ndarray], state: dict[str, Any], x: np.ndarray, raw: list[dict],
                    workdir: Path, count: int = 3) -> None:
    """Heat maps of the decoder's attention over the input for the first test inputs (greedy)."""
    from components.plots import heatmap

    in_words, out_words = _vocabulary(state, "x"), _vocabulary(state, "y")
    for i in range(min(count, len(x))):
        src = [in_words[t] for t in x[i] if t > 0]
        out = ids_to_tokens(decoded["ids"][i], out_words)
        if not src or not out:
            continue
        heatmap(decoded["attention"][i][: len(out), : len(src)], workdir / f"attention_{i + 1}.png",
                f"Attention: {_short(raw[i]['x'], 40)}", src, out, "input", "output", annotate=False)


# --------------------------------------------------------------------------------------------
# Forecasting: numeric series


def forecast_metrics(actual: np.ndarray, pred: np.ndarray, scale: float) -> dict[str, float]:
    """MAE, RMSE, sMAPE (%), MASE (MAE / the in-sample naive MAE `scale`), raw units."""
    err = pred - actual
    mae = float(np.abs(err).mean()) if err.size else float("nan")
    denom = np.abs(actual) + np.abs(pred)
    smape = np.divide(2 * np.abs(err), denom, out=np.zeros_like(denom), where=denom > 0)
    return {"mae": mae, "rmse": float(np.sqrt((err ** 2).mean())) if err.size else float("nan"),
            "smape": float(100 * smape.mean()) if err.size else float("nan"),
            "mase": mae / scale if scale > 0 else float("nan")}


def naive_forecast(x: np.ndarray, horizon: int, columns: list[int], synced: bool) -> np.ndarray:
    """Seasonal naive (season = horizon) from raw input windows, the last value if the window is
    shorter (preprocessing.reference); for synced steps, persistence step by step."""
    if synced:  # y_t is ahead of x_t by a fixed lag
        return x[:, :horizon][:, :, columns]
    mode = "season" if x.shape[1] >= horizon else "last"
    return np.asarray(reference({"reference": {"mode": mode, "columns": columns}, "length": horizon}, x), "float64")


def evaluate_forecast(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                      model_cfg: ModelConfig) -> dict[str, Any]:
    """Series targets in raw units: model vs seasonal naive (or the train mean)."""
    state = _state(preprocess)
    test = load_split(preprocess, "test")
    raw, raw_train = _raw(preprocess), _raw(preprocess, "train")
    y_state = state["y"]
    actual = np.asarray([r["y"] for r in raw], dtype="float64").reshape(len(raw), *test["y"].shape[1:])
    encoded = _predict(model, test["x"]).reshape(actual.shape).astype("float32")
    raw_x = np.asarray([r["x"] for r in raw], dtype="float32") if y_state.get("reference") else None
    pred = np.asarray(Codec.load(preprocess).decode_series(encoded, raw_x), dtype="float64")  # as the export does
    horizon = actual.shape[1]
    x_cols, y_cols = state["x"].get("columns") or [], y_state.get("columns") or []
    columns = [x_cols.index(c) for c in y_cols] if y_cols and set(y_cols) <= set(x_cols) else None
    synced = model_cfg.topology == "many_to_many"
    if state["x"]["kind"] == "series" and columns is not None:
        x_test = np.asarray([r["x"] for r in raw], dtype="float64")
        x_train = np.asarray([r["x"] for r in raw_train], dtype="float64")
        base = naive_forecast(x_test, horizon, columns, synced)
        season = horizon if x_train.shape[1] > horizon and not synced else 1
        series = x_train[:, :, columns]
        scale = float(np.abs(series[:, season:] - series[:, :-season]).mean()) if series.shape[1] > season else 0.0
        base_name = "persistence (aligned input value)" if synced else \
            f"seasonal naive (season {season})" if season > 1 else "last value"
    else:
        y_train = np.asarray([r["y"] for r in raw_train], dtype="float64").reshape(len(raw_train), *actual.shape[1:])
        base = np.broadcast_to(y_train.mean(0), actual.shape)
        scale = float(np.abs(y_train - y_train.mean(0)).mean())
        base_name = "train mean"
    model_metrics, base_metrics = forecast_metrics(actual, pred, scale), forecast_metrics(actual, base, scale)
    _forecast_plots(workdir, actual, pred, base, raw, columns, y_cols)
    rows = [{"input": _short(r["x"]), "actual": _short(np.round(a[:, 0], 2).tolist()),
             "forecast": _short(np.round(p[:, 0], 2).tolist()), "baseline": _short(np.round(b[:, 0], 2).tolist())}
            for r, a, p, b in zip(raw[: cfg.num_examples], actual, pred, base)]
    return {"main": "mae", "model": model_metrics, "baseline": base_metrics, "baseline_name": base_name,
            "rows": rows, "report": ["", f"Raw units; MASE scale (in-sample naive MAE on train): {scale:.4g}."]}


def _forecast_plots(workdir: Path, actual: np.ndarray, pred: np.ndarray, base: np.ndarray, raw: list[dict],
                    columns: list[int] | None, names: list[str]) -> None:
    from components.plots import figure

    steps = np.arange(1, actual.shape[1] + 1)
    with figure(workdir / "error_by_horizon.png", "Mean absolute error by horizon step (test)") as ax:
        for label, values in (("model", pred), ("baseline", base)):
            ax.plot(steps, np.abs(values - actual).mean(axis=(0, 2)) if len(actual) else steps * 0, marker=".",
                    label=label)
        ax.set_xlabel("step ahead")
        ax.set_ylabel("MAE (raw units)")
        ax.legend()
    with figure(workdir / "forecast_vs_actual.png", f"Forecast vs actual: {names[0] if names else 'target'}",
                size=(8.0, 4.2)) as ax:
        for i in range(min(3, len(actual))):
            offset = 0
            if columns is not None and isinstance(raw[i]["x"], list) and isinstance(raw[i]["x"][0], list):
                history = np.asarray(raw[i]["x"], dtype="float64")[:, columns[0]]
                offset = len(history)
                ax.plot(np.arange(offset), history, color=f"C{i}", alpha=0.5)
            future = np.arange(offset, offset + actual.shape[1])
            ax.plot(future, actual[i, :, 0], color=f"C{i}", label=f"actual {i + 1}")
            ax.plot(future, pred[i, :, 0], color=f"C{i}", linestyle="--", label=f"forecast {i + 1}")
            ax.plot(future, base[i, :, 0], color=f"C{i}", linestyle=":", alpha=0.7)
        ax.set_xlabel("step (input window, then forecast; dotted: baseline)")
        ax.legend(fontsize=7)


# --------------------------------------------------------------------------------------------
# The stage


def evaluate_tokens(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                    model_cfg: ModelConfig) -> dict[str, Any]:
    """Token targets: a language model (next token at each step) or a generated sequence."""
    if preprocess.properties["io"]["y"].get("language_model"):
        return evaluate_language_model(model, preprocess, workdir, cfg, model_cfg)
    return evaluate_generation(model, preprocess, workdir, cfg, model_cfg)


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "label": evaluate_classification,
    "labels": evaluate_tagging,
    "tokens": evaluate_tokens,
    "series": evaluate_forecast,
}


def bless(model_metrics: dict[str, float], baseline: dict[str, float], main: str,
          cfg: EvaluateConfig, last_blessed: dict[str, float] | None = None) -> tuple[bool, list[str], list[str]]:
    """Apply thresholds and the comparison; returns (blessed, every reason, the failed ones).

    Against the baseline the model must be strictly better (equal means it learnt nothing);
    against the last blessed model it must not be worse, both within `cfg.tolerance`.
    """
    reasons, failures = [], []
    for metric, bound in cfg.thresholds.items():
        value = model_metrics.get(metric)
        if value is None:
            failures.append(f"threshold on unknown metric {metric!r} (have: {', '.join(sorted(model_metrics))})")
            continue
        broken = [f"{metric} {value:.2f} < {bound['min']:.2f}"] if "min" in bound and not value >= bound["min"] else []
        if "max" in bound and not value <= bound["max"]:
            broken.append(f"{metric} {value:.2f} > {bound['max']:.2f}")
        failures += broken
        if not broken:
            reasons.append(f"{metric} {value:.4g} within " + ", ".join(f"{k} {v:g}" for k, v in bound.items()))
    if cfg.compare_to == "last_blessed" and not last_blessed:
        reasons.append("no blessed model registered yet: nothing to compare with")
    reference = {"baseline": baseline, "last_blessed": last_blessed}.get(cfg.compare_to)
    if reference and main in reference and main in model_metrics:
        mine, theirs, tol = model_metrics[main], reference[main], cfg.tolerance
        lower = main in LOWER_IS_BETTER
        if cfg.compare_to == "baseline":
            better = mine < theirs + tol if lower else mine > theirs - tol
            verb = "beats" if better else "does not beat"
        else:
            better = mine <= theirs + tol if lower else mine >= theirs - tol
            verb = "is not worse than" if better else "is worse than"
        text = f"{main} {mine:.4g} {verb} {cfg.compare_to} {theirs:.4g}" + (f" (tolerance {tol:g})" if tol else "")
        (reasons if better else failures).append(text)
    return not failures, failures + reasons, failures


def run(inputs: dict, workdir: Path, ctx: Any, *, evaluate: EvaluateConfig, model: ModelConfig,
        last_blessed: dict[str, float] | None = None) -> dict[str, Any]:
    """Score the trained model and its baseline on the test split; decide the blessing."""
    from models import load_model

    preprocess, train = inputs["preprocess"], inputs["train"]
    net = load_model(train.path("model.keras"))
    kind = preprocess.properties["io"]["y"]["kind"]
    result = TASKS[kind](net, preprocess, workdir, evaluate, model)
    main = result["main"]
    blessed, reasons, failures = bless(result["model"], result["baseline"], main, evaluate, last_blessed)
    (workdir / "metrics.json").write_text(json.dumps({k: result[k] for k in ("model", "baseline")}, indent=2))
    (workdir / "blessing.json").write_text(json.dumps({"blessed": blessed, "reasons": reasons,
                                                       "last_blessed": last_blessed}, indent=2))
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
        "failures": failures,
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
    if result["rows"]:
        keys = list(result["rows"][0])
        lines += ["", "## Examples", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r[k]).replace("|", "\\|") for k in keys) + " |" for r in result["rows"][:10]]
    lines += result.get("report", [])
    return "\n".join(lines) + "\n"
