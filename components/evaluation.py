"""Evaluation stage (TFX Evaluator): task metrics on the test split, several trivial baselines,
a paired-bootstrap confidence interval against the strongest of them, and the blessing.

inputs -> outputs: preprocess, train (+ the champion, when comparing with it) ->
`metrics.json` (model and every baseline), `evaluation.md` (report), `blessing.json` (blessed,
reasons, intervals), `samples.npz` (per-example results of the gate metrics, what a later
champion comparison resamples), task plots and `predictions.csv`, by the kind of target (`TASKS`):

- label (one_to_one, many_to_one): accuracy, macro F1, per-class precision/recall,
  confusion-matrix PNG; baselines: majority class, stratified random (train class frequencies).
- labels (many_to_many tagging): per-step accuracy ignoring padding, macro F1, whole-sequence
  accuracy, accuracy-by-position PNG; baselines: majority label, stratified random.
- tokens, language model: per-token accuracy ignoring padding, perplexity, accuracy-by-position
  PNG, temperature-sampled continuations (`samples.md`); baseline: the train unigram. Gates on
  accuracy and perplexity.
- tokens, generated (one_to_many, seq2seq): exact match, token edit distance and token error
  rate with greedy and beam decoding, teacher-forced token accuracy and perplexity, attention
  heat maps; baselines: empty output, most frequent train target (teacher-forced metrics: the
  train unigram). Gates on token error rate and teacher-forced perplexity; a model whose
  outputs are degenerate (mostly empty, or one output for every input) is never blessed.
- series: MAE, RMSE, sMAPE (%), MASE in raw units, error-by-horizon and forecast-vs-actual
  PNGs; baselines: last value, seasonal naive (season from `data.season`, else the data's
  frequency: hourly 24, daily 7, weekly 52, monthly 12, quarterly 4), drift, window mean (for
  synced many_to_many: persistence; without a numeric input series: the train mean). MASE
  divides by the in-sample one-step seasonal-naive MAE (lag = season, or 1) on train (per series
  and per target when there are several). Also a table per target, `per_series.csv` with an id
  column, every test forecast (`test_predictions.csv`), quantile loss and coverage with
  `model.quantiles`, and with `evaluate.backtest` the metrics at K rolling origins (the gate then
  reads those windows). Several forecast targets (input columns) gate on MASE, else MAE.

The blessing (`bless`): enough test examples (`evaluate.min_test_examples`), every
`evaluate.thresholds` bound holds, outputs not degenerate, and for every gate metric the
paired bootstrap interval (`evaluate.confidence`) of the model's improvement over the strongest
baseline lies above zero (above -`evaluate.tolerance`). With `compare_to: last_blessed` the
reference is the registered champion instead: its per-example results on the same test data
when they exist (same data digest), else its logged metrics. Directions come from
components/metrics.py.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from components import metrics as registry
from components.metrics import Sample, mean_sample
from components.preprocessing import END, PAD, START, Codec, load_split
from pipeline.config import EvaluateConfig, ModelConfig

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
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
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
                     model_cfg: ModelConfig, **_: Any) -> dict[str, Any]:
    """many_to_many labels: per-step accuracy (padding ignored) vs the majority label and stratified random."""
    state = _state(preprocess)
    classes = state["y"]["classes"]
    k = len(classes)
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
    y = test["y"]
    probs = _predict(model, test["x"])[:, : y.shape[1]]
    y = y[:, : probs.shape[1]]
    mask = step_mask(test["x"], y, state)
    pred = probs.argmax(-1)
    train_mask = step_mask(train["x"], train["y"], state)
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


def _vocabulary(state: dict[str, Any], side: str = "y") -> list[str]:
    return [PAD, "[UNK]", *state[side]["vocabulary"]]


def next_token_metrics(probs: np.ndarray, y: np.ndarray, train_y: np.ndarray, prefix: str = "") -> dict[str, Any]:
    """Per-token accuracy and perplexity of next-token probabilities [N, T, V], padding ignored, for
    the model and the train unigram: {"model", "train unigram": metrics, "samples", "hits", "mask"}."""
    probs = probs[:, : y.shape[1]]
    y = y[:, : probs.shape[1]]
    mask = y != 0
    unigram = np.bincount(train_y[train_y != 0], minlength=probs.shape[-1]).astype(float) + 1.0
    unigram /= unigram.sum()
    pred, base_pred = probs.argmax(-1), np.full_like(y, int(unigram.argmax()))
    p_model = np.take_along_axis(probs, y[..., None], -1)[..., 0]
    out: dict[str, Any] = {"samples": {}, "hits": {}, "mask": mask}
    for name, p, p_true in (("model", pred, p_model), ("train unigram", base_pred, unigram[y])):
        nll = np.where(mask, -np.log(np.clip(p_true, 1e-12, 1.0)), 0.0)
        tokens = mask.sum(1).astype(float)
        hits = (p == y) & mask
        samples = {f"{prefix}accuracy": Sample(hits.sum(1).astype(float), tokens),
                   f"{prefix}perplexity": Sample(nll.sum(1), tokens, "exp")}
        out[name] = {k: float(s.value()) for k, s in samples.items()}
        out["samples"][name] = samples
        out["hits"][name.split()[-1]] = p == y
    return out


def evaluate_language_model(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                            model_cfg: ModelConfig, **_: Any) -> dict[str, Any]:
    """Next-token prediction: per-token accuracy and perplexity vs the train unigram."""
    state = _state(preprocess)
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
    probs = _predict(model, test["x"])
    scored = next_token_metrics(probs, test["y"], train["y"])
    accuracy_by_position(workdir / "accuracy_by_position.png", scored["hits"], scored["mask"], "Next-token")
    words = _vocabulary(state, "x")
    sep = "" if state["x"].get("tokenize", "char") == "char" else " "
    samples = sample_continuations(model, preprocess, test["x"][:3, :20], words, sep, seed=0)
    (workdir / "samples.md").write_text("# Sampled continuations (temperature)\n\n" + "\n".join(
        f"- T={t}: **{prompt}**{text}" for prompt, t, text in samples) + "\n")
    rows = [{"prompt": _short(p, 40), "temperature": t, "continuation": _short(text, 80)} for p, t, text in samples]
    return {"main": "accuracy", "gate": ["accuracy", "perplexity"], "examples": len(test["y"]),
            "model": scored["model"], "baselines": {"train unigram": scored["train unigram"]},
            "samples": scored["samples"], "rows": rows,
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


def sequence_samples(refs: list[list[str]], hyps: list[list[str]], prefix: str = "") -> dict[str, Sample]:
    """Per-example exact match, token edit distance and token error rate (edits / reference tokens)."""
    edits = np.asarray([edit_distance(r, h) for r, h in zip(refs, hyps)], dtype="float64")
    return {f"{prefix}exact_match": mean_sample([r == h for r, h in zip(refs, hyps)]),
            f"{prefix}edit_distance": mean_sample(edits),
            f"{prefix}token_error_rate": Sample(edits, np.asarray([len(r) for r in refs], dtype="float64"))}


def sequence_metrics(refs: list[list[str]], hyps: list[list[str]]) -> dict[str, float]:
    """Exact match, mean token edit distance, token error rate."""
    return {k: float(s.value()) for k, s in sequence_samples(refs, hyps).items()}


def degenerate(outputs: list[list[str]]) -> str | None:
    """Why generated outputs are degenerate (mostly empty, or one output for every input), else None."""
    if not outputs:
        return None
    empty = sum(not o for o in outputs) / len(outputs)
    if empty > 0.5:
        return f"degenerate outputs: {empty:.0%} of the test outputs are empty"
    if len(outputs) > 1 and len({tuple(o) for o in outputs}) == 1:
        return f"degenerate outputs: the same output ({' '.join(outputs[0])[:40]!r}) for every test input"
    return None


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
                        model_cfg: ModelConfig, **_: Any) -> dict[str, Any]:
    """one_to_many / seq2seq tokens: greedy and beam decoding vs the empty output and the most
    frequent train target; teacher-forced next-token metrics vs the train unigram."""
    from collections import Counter

    state = _state(preprocess)
    words = _vocabulary(state)
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
    refs = [ids_to_tokens(row, words) for row in test["y"]]
    steps = int(model_cfg.max_output_length or state["y"]["length"])
    decoded = generate_batches(model, preprocess, model_cfg, test["x"], steps, 1)
    greedy = [ids_to_tokens(row, words) for row in decoded.get("ids", [])]
    width = cfg.beam_width or model_cfg.beam_width
    beam = greedy
    if width > 1:
        beams = generate_batches(model, preprocess, model_cfg, test["x"], steps, width)
        beam = [ids_to_tokens(row, words) for row in beams.get("ids", [])]
    common = Counter(tuple(ids_to_tokens(row, words)) for row in train["y"]).most_common(1)
    constant = list(common[0][0]) if common else []
    sep = "" if state["y"].get("tokenize", "char") == "char" else " "
    frequent = f"most frequent train target ({_short(sep.join(constant), 30)})"
    samples: dict[str, dict[str, Sample]] = {}
    for name, hyps, beam_hyps in (("model", greedy, beam), ("empty output", [[]] * len(refs), None),
                                  (frequent, [constant] * len(refs), None)):
        samples[name] = sequence_samples(refs, hyps)
        if width > 1:
            samples[name].update(sequence_samples(refs, beam_hyps if beam_hyps is not None else hyps, "beam_"))
    if len(test["y"]):  # teacher forced: how well the model predicts each next target token
        from models.build import training_data

        inputs, _ = training_data(model_cfg, preprocess.properties["io"], test["x"], test["y"])
        probs = np.asarray(model.predict(inputs, batch_size=BATCH, verbose=0))
        forced = next_token_metrics(probs, test["y"], train["y"], prefix="teacher_forced_")
        samples["model"].update(forced["samples"]["model"])
        samples["train unigram"] = forced["samples"]["train unigram"]
    sides = {name: {k: float(s.value()) for k, s in by_metric.items()} for name, by_metric in samples.items()}
    mine = sides.pop("model")
    mine["empty_output_rate"] = float(np.mean([not g for g in greedy])) if greedy else float("nan")
    mine["distinct_output_rate"] = len({tuple(g) for g in greedy}) / len(greedy) if greedy else float("nan")
    raw = _raw(preprocess)
    rows = [{"input": _short(r["x"]), "target": sep.join(t), "greedy": sep.join(g), f"beam_{width}": sep.join(b)}
            for r, t, g, b in zip(raw[: cfg.num_examples * 2], refs, greedy, beam)]
    if "attention" in decoded:
        _attention_maps(decoded, state, test["x"], raw, workdir)
    return {"main": "token_error_rate", "gate": ["token_error_rate", "teacher_forced_perplexity"],
            "examples": len(refs), "model": mine, "baselines": sides, "samples": samples,
            "degenerate": degenerate(greedy), "rows": rows, "report": []}


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


SEASONS = {"hourly": 24, "daily": 7, "business_daily": 5, "weekly": 52, "monthly": 12, "quarterly": 4}


def season_length(season: int | None, frequency: str | None) -> tuple[int | None, str]:
    """The season length and how it was chosen: `data.season`, else the data's frequency, else none."""
    if season:
        return season, "data.season"
    if frequency in SEASONS:
        return SEASONS[frequency], f"inferred from the {frequency} frequency"
    return None, f"none ({frequency + ' data has no season' if frequency else 'frequency unknown'}; set data.season)"


def forecast_samples(actual: np.ndarray, pred: np.ndarray, scale: Any) -> dict[str, Sample]:
    """Per-window MAE, RMSE, sMAPE (%), MASE (MAE / the in-sample naive MAE `scale`), raw units.

    `scale` is one number, or one per window and target ([N, targets], e.g. each series' and
    each target's own naive MAE): then MASE is the mean of the errors each divided by its scale,
    over the targets that have one.
    """
    err = (pred - actual).reshape(len(actual), -1)
    count = np.full(len(actual), float(err.shape[1]))
    denom = (np.abs(actual) + np.abs(pred)).reshape(err.shape)
    smape = np.divide(2 * np.abs(err), denom, out=np.zeros_like(denom), where=denom > 0)
    abs_sum = np.abs(err).sum(1)
    if np.ndim(scale) == 0:
        mase = Sample(abs_sum, count, f"scale:{float(scale)!r}")
    else:
        per = np.broadcast_to(np.asarray(scale, dtype="float64"), (len(actual), actual.shape[-1]))[:, None, :]
        scaled = per > 0  # a target with no naive scale (constant in train) has no MASE: left out
        ratio = np.divide(np.abs(pred - actual), per, out=np.zeros(np.broadcast_shapes(actual.shape, per.shape)),
                          where=scaled)
        kept = np.broadcast_to(scaled, ratio.shape).reshape(len(actual), -1).sum(1).astype("float64")
        mase = Sample(ratio.reshape(len(actual), -1).sum(1), kept)
    return {"mae": Sample(abs_sum, count), "rmse": Sample((err ** 2).sum(1), count, "sqrt"),
            "smape": Sample(100 * smape.sum(1), count), "mase": mase}


def quantile_samples(actual: np.ndarray, quantiles: np.ndarray, levels: list[float]) -> dict[str, Sample]:
    """Per-window pinball loss averaged over the levels (raw units) and the share of actual values
    inside the outermost quantiles; quantiles [N, H, targets, levels]."""
    err = actual[..., None] - quantiles
    q = np.asarray(levels, dtype="float64")
    pinball = np.maximum(q * err, (q - 1) * err).reshape(len(actual), -1)
    inside = ((actual >= quantiles[..., 0]) & (actual <= quantiles[..., -1])).reshape(len(actual), -1)
    return {"quantile_loss": Sample(pinball.sum(1), np.full(len(actual), float(pinball.shape[1]))),
            "coverage": Sample(inside.sum(1).astype("float64"), np.full(len(actual), float(inside.shape[1])))}


def forecast_metrics(actual: np.ndarray, pred: np.ndarray, scale: Any) -> dict[str, float]:
    return {k: float(s.value()) for k, s in forecast_samples(actual, pred, scale).items()}


def naive_forecasts(x: np.ndarray, horizon: int, columns: list[int], season: int | None) -> dict[str, np.ndarray]:
    """Trivial forecasts [N, horizon, targets] from raw input windows x [N, T, F]: last value,
    seasonal naive (when the window holds a whole season), drift, window mean."""
    series = np.asarray(x, dtype="float64")[:, :, columns]
    length = series.shape[1]
    steps = np.arange(1, horizon + 1)[None, :, None]
    last = series[:, -1:, :]
    out = {"last value": np.repeat(last, horizon, axis=1)}
    if season and season > 1 and length >= season:
        out[f"seasonal naive (season {season})"] = series[:, length - season + (steps[0, :, 0] - 1) % season, :]
    if length > 1:
        out["drift"] = last + steps * (last - series[:, :1, :]) / (length - 1)
    out["window mean"] = np.repeat(series.mean(1, keepdims=True), horizon, axis=1)
    return out


def naive_scale(train_x: np.ndarray, columns: list[int], season: int | None,
                per_column: bool = False) -> tuple[Any, int]:
    """MASE's scale (Hyndman): the in-sample one-step seasonal-naive MAE on the train series
    (lag = season when the windows hold more than a season, else 1), and the lag used; one
    number, or one per target column with `per_column`."""
    series = np.asarray(train_x, dtype="float64").reshape(len(train_x), -1, np.shape(train_x)[-1])[:, :, columns]
    lag = season if season and series.shape[1] > season else 1
    if series.shape[1] <= lag or not len(series):
        return (np.zeros(len(columns)) if per_column else 0.0), lag
    diffs = np.abs(series[:, lag:] - series[:, :-lag])
    return (diffs.mean(axis=(0, 1)) if per_column else float(diffs.mean())), lag


def later_times(label: Any, frequency: str | None, steps: int) -> list[str]:
    """The time labels of the `steps` grid steps after `label` (a window's last input time), or
    blanks when the step is unknown (no time column, or numbers other than years)."""
    if label is None or not frequency:
        return [""] * steps
    import pandas as pd

    text = str(label)
    try:
        if frequency == "yearly" and text.lstrip("-").isdigit():
            return [str(int(text) + k) for k in range(1, steps + 1)]
        start = pd.Timestamp(text)
        offsets = {"hourly": pd.Timedelta(hours=1), "daily": pd.Timedelta(days=1), "weekly": pd.Timedelta(days=7),
                   "business_daily": pd.offsets.BDay(), "monthly": pd.DateOffset(months=1),
                   "quarterly": pd.DateOffset(months=3), "yearly": pd.DateOffset(years=1)}
        step = offsets.get(frequency) or pd.tseries.frequencies.to_offset(frequency)
        stamps = [start + k * step for k in range(1, steps + 1)]
    except (ValueError, TypeError):
        return [""] * steps
    dated = len(text) == 10
    return [t.strftime("%Y-%m-%d") if dated else t.isoformat() for t in stamps]


def backtest_origins(raw: list[dict], origins: int) -> tuple[list[np.ndarray], str]:
    """`origins` rolling forecast origins over the test period: for each series its test windows
    (in time order) at `origins` evenly spaced positions, first to last; origin k = the k-th of
    every series. Fewer when a series has fewer test windows (said in the note)."""
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(raw):
        groups.setdefault(r.get("id"), []).append(i)
    shortest = min((len(g) for g in groups.values()), default=0)
    k = min(origins, shortest)
    note = "" if k == origins else (f" (asked for {origins}, but the shortest series has {shortest} test windows)")
    if k == 0:
        return [], note
    picks = [np.asarray(g)[np.round(np.linspace(0, len(g) - 1, k)).astype(int)] for g in groups.values()]
    return [np.asarray([p[j] for p in picks]) for j in range(k)], note


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_") or "target"


def _select(samples: dict[str, Sample], idx: np.ndarray) -> dict[str, Sample]:
    return {k: Sample(s.num[idx], s.den[idx], s.transform) for k, s in samples.items()}


def evaluate_forecast(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                      model_cfg: ModelConfig, season: int | None = None, **_: Any) -> dict[str, Any]:
    """Series targets in raw units: the model vs last value, seasonal naive, drift and window mean.

    Also: a table and plot per target column, per-series metrics (`per_series.csv`) with an id
    column, every test forecast (`test_predictions.csv`), and, with `evaluate.backtest`, the
    metrics at K rolling origins (`backtest.csv`, `backtest_error_by_origin.png`; the gate then
    reads the backtest windows). With several targets the gate is MASE (scale-free).
    """
    state = _state(preprocess)
    test = load_split(preprocess, "test")
    raw, raw_train = _raw(preprocess), _raw(preprocess, "train")
    y_state = state["y"]
    actual = np.asarray([r["y"] for r in raw], dtype="float64").reshape(len(raw), *test["y"].shape[1:])
    levels = list(getattr(model_cfg, "quantiles", ()) or ())
    encoded = _predict(model, test["x"]).reshape(*actual.shape[:-1], -1).astype("float32")
    raw_x = None
    if y_state.get("reference") or y_state.get("window_scale"):  # the decoding reads the raw input window
        raw_x = np.asarray([r["x"] for r in raw], dtype="float32").reshape(len(raw), *test["x"].shape[1:])
    codec = Codec.load(preprocess)
    quantiles = None
    if levels:  # [N, H, targets, levels] in raw units; the median is the point forecast (as the export does)
        quantiles = np.asarray(codec.decode_quantiles(encoded, raw_x, len(levels)), dtype="float64")
        pred = quantiles[..., levels.index(0.5)]
    else:
        pred = np.asarray(codec.decode_series(encoded, raw_x), dtype="float64")  # as the export does
    horizon, targets = actual.shape[1], actual.shape[-1]
    x_cols, y_cols = state["x"].get("columns") or [], y_state.get("columns") or []
    names = [str(c) for c in y_cols] if len(y_cols) == targets else [f"target_{j}" for j in range(targets)]
    columns = [x_cols.index(c) for c in y_cols] if y_cols and set(y_cols) <= set(x_cols) else None
    frequency = preprocess.properties["io"].get("frequency")
    season, how = season_length(season, frequency)
    notes = [f"Raw units. Season: {season or 'none'} ({how})."]
    ids = [r.get("id") for r in raw]
    many = any(i is not None for i in ids)
    lag = None
    if state["x"]["kind"] == "series" and columns is not None and len(raw):
        x_test = np.asarray([r["x"] for r in raw], dtype="float64")
        x_train = np.asarray([r["x"] for r in raw_train], dtype="float64")
        if model_cfg.topology == "many_to_many":  # synced: y_t is ahead of x_t by a fixed lag
            bases = {"persistence (aligned input value)": x_test[:, :horizon][:, :, columns]}
            lag_season = None
        else:
            bases = naive_forecasts(x_test, horizon, columns, season)
            lag_season = season
            if season and f"seasonal naive (season {season})" not in bases:
                notes.append(f"No seasonal-naive baseline: the input window ({x_test.shape[1]} steps) is shorter "
                             f"than a season ({season}).")
        per_column, lag = naive_scale(x_train, columns, lag_season, per_column=True)
        scale = float(np.mean(per_column))  # every column has as many differences: the overall MAE
        notes.append(f"MASE scale: in-sample naive MAE on train with lag {lag} = {scale:.4g}"
                     + (" (per series and target)." if many or targets > 1 else "."))

        def scale_of(rows: list[dict]) -> np.ndarray:
            train_x = np.asarray([r["x"] for r in rows], dtype="float64")
            return naive_scale(train_x, columns, lag_season, per_column=True)[0] if rows else per_column
    else:
        y_train = np.asarray([r["y"] for r in raw_train], dtype="float64").reshape(len(raw_train), *actual.shape[1:])
        bases = {"train mean": np.broadcast_to(y_train.mean(0), actual.shape)}
        per_column = (np.abs(y_train - y_train.mean(0)).mean(axis=(0, 1)) if len(y_train)
                      else np.zeros(targets))
        scale = float(np.mean(per_column))  # equal counts per target: the overall deviation
        notes.append(f"MASE scale: mean absolute deviation of the train targets = {scale:.4g}.")

        def scale_of(rows: list[dict]) -> np.ndarray:
            ys = np.asarray([r["y"] for r in rows], dtype="float64").reshape(len(rows), *actual.shape[1:])
            return np.abs(ys - ys.mean(0)).mean(axis=(0, 1)) if rows else per_column
    series_scale: dict[Any, np.ndarray] = {}
    if many:
        by_id: dict[Any, list[dict]] = {}
        for r in raw_train:
            by_id.setdefault(r.get("id"), []).append(r)
        series_scale = {i: scale_of(by_id.get(i, [])) for i in dict.fromkeys(ids)}
        series_scale = {i: np.where(s > 0, s, per_column) for i, s in series_scale.items()}
        per_example: Any = np.asarray([series_scale[i] for i in ids]).reshape(len(raw), targets)
    elif targets > 1:
        per_example = np.asarray(per_column)
    else:
        per_example = scale  # one target, one series: one number (as before)
    samples = {"model": forecast_samples(actual, pred, per_example),
               **{name: forecast_samples(actual, b, per_example) for name, b in bases.items()}}
    if quantiles is not None:
        samples["model"].update(quantile_samples(actual, quantiles, levels))
        for name, b in bases.items():  # a point forecast is every quantile
            samples[name]["quantile_loss"] = quantile_samples(
                actual, np.repeat(b[..., None], len(levels), axis=-1), levels)["quantile_loss"]
        notes.append(f"Quantiles {levels}: quantile_loss is the pinball loss averaged over the levels (a baseline's "
                     f"point forecast stands for every level); coverage is the share of actual values inside "
                     f"[q{levels[0]:g}, q{levels[-1]:g}] (nominal {levels[-1] - levels[0]:.0%}).")
    # several forecast targets on their own scales: gate on the scale-free MASE (when every target
    # has a naive scale; e.g. digits rows from a class keep MAE: same units, some constant columns)
    main = "mase" if targets > 1 and columns is not None and bool(np.all(np.asarray(per_column) > 0)) else "mae"
    if main == "mase":
        notes.append(f"{targets} targets on their own scales: the gate reads MASE (each target's errors divided by "
                     f"its own naive scale); MAE and RMSE pool raw units of every target.")
    full = {name: {k: float(s.value()) for k, s in by.items()} for name, by in samples.items()}
    backtest = None
    if cfg.backtest.get("origins"):
        origin_idx, short = backtest_origins(raw, int(cfg.backtest["origins"]))
        if origin_idx:
            backtest = {"origins": origin_idx, "note": short}
            chosen = np.concatenate(origin_idx)
            samples = {side: _select(by, chosen) for side, by in samples.items()}
    sides = {name: {k: float(s.value()) for k, s in by.items()} for name, by in samples.items()}
    mine = sides.pop("model")
    strongest = registry.get(main).best({n: m[main] for n, m in sides.items()}) or next(iter(bases))
    report = ["", *notes]
    report += _per_target(workdir, actual, pred, bases, strongest, names, per_example)
    _forecast_plots(workdir, actual, pred, bases[strongest], raw, columns, names, strongest,
                    per_column if targets > 1 else None,
                    None if quantiles is None else (quantiles[..., 0], quantiles[..., -1], levels))
    if many:
        report += _per_series(workdir, actual, pred, bases[strongest], strongest, ids, series_scale)
    if backtest:
        report += _backtest(workdir, backtest, raw, actual, pred, bases[strongest], strongest, per_example, main)
        examples = int(sum(len(i) for i in backtest["origins"]))
        report += ["", f"Whole test split ({len(actual)} windows): model " + ", ".join(
            f"{k} {v:.4g}" for k, v in full["model"].items()) + f"; {strongest}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in full[strongest].items()) + "."]
    else:
        examples = len(actual)
    _write_test_predictions(workdir / "test_predictions.csv", raw, actual, pred, names, frequency,
                            model_cfg.topology == "many_to_many", quantiles, levels)
    rows = [{"input": _short(r["x"]), "actual": _short(np.round(a[:, 0], 2).tolist()),
             "forecast": _short(np.round(p[:, 0], 2).tolist()), "baseline": _short(np.round(b[:, 0], 2).tolist())}
            for r, a, p, b in zip(raw[: cfg.num_examples], actual, pred, bases[strongest])]
    return {"main": main, "gate": [main], "examples": examples, "model": mine, "baselines": sides,
            "samples": samples, "season": season, "rows": rows, "report": report}


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
              base: np.ndarray, base_name: str, scale: Any, main: str) -> list[str]:
    """Metrics at each rolling origin (`backtest.csv`, `backtest_error_by_origin.png`) and their mean."""
    from components.plots import figure

    table = []
    for k, idx in enumerate(backtest["origins"]):
        per = scale if np.ndim(scale) == 0 else np.broadcast_to(scale, (len(actual), actual.shape[-1]))[idx]
        mine = forecast_metrics(actual[idx], pred[idx], per)
        theirs = forecast_metrics(actual[idx], base[idx], per)
        table.append({"origin": k + 1, "time": raw[idx[0]].get("time", ""), "windows": len(idx),
                      **{f"model_{m}": v for m, v in mine.items()}, **{f"baseline_{m}": v for m, v in theirs.items()}})
    _write_rows(workdir / "backtest.csv", table)
    mean = {m: float(np.mean([r[f"model_{m}"] for r in table])) for m in ("mae", "rmse", "smape", "mase")}
    base_mean = {m: float(np.mean([r[f"baseline_{m}"] for r in table])) for m in ("mae", "rmse", "smape", "mase")}
    with figure(workdir / "backtest_error_by_origin.png", f"Backtest: {main.upper()} by forecast origin") as ax:
        origins = [r["origin"] for r in table]
        ax.plot(origins, [r[f"model_{main}"] for r in table], marker="o", label="model")
        ax.plot(origins, [r[f"baseline_{main}"] for r in table], marker=".", linestyle=":", label=base_name)
        ax.axhline(mean[main], color="C0", alpha=0.4)
        ax.set_xlabel("forecast origin (test period, in time order)")
        ax.set_ylabel(main.upper())
        ax.legend()
    lines = ["", "## Backtest", "", f"{len(table)} rolling forecast origins over the test period{backtest['note']}; "
             f"the gate reads these {sum(r['windows'] for r in table)} windows (`backtest.csv`).", "",
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
    has_id, has_time = any("id" in r for r in raw), any("time" in r for r in raw)
    fields = (["id"] if has_id else []) + (["origin_time"] if has_time else []) + ["window", "step"]
    fields += (["time"] if has_time and not synced else [])
    for name in names:
        fields += [name, f"{name}_forecast"] + [f"{name}_q{q:g}" for q in (levels if quantiles is not None else ())]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for i, r in enumerate(raw):
            times = later_times(r.get("time"), frequency, actual.shape[1]) if has_time and not synced else []
            for step in range(actual.shape[1]):
                row: list[Any] = ([r.get("id", "")] if has_id else []) + ([r.get("time", "")] if has_time else [])
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
    for j, name in enumerate(names):
        path = workdir / ("forecast_vs_actual.png" if j == 0 else f"forecast_vs_actual_{_slug(name)}.png")
        with figure(path, f"Forecast vs actual: {name}", size=(8.0, 4.2)) as ax:
            for i in range(min(3, len(actual))):
                offset = 0
                if columns is not None and isinstance(raw[i]["x"], list) and isinstance(raw[i]["x"][0], list):
                    history = np.asarray(raw[i]["x"], dtype="float64")[:, columns[j]]
                    offset = len(history)
                    ax.plot(np.arange(offset), history, color=f"C{i}", alpha=0.5)
                future = np.arange(offset, offset + actual.shape[1])
                label = f" {raw[i]['id']}" if raw[i].get("id") is not None else f" {i + 1}"
                ax.plot(future, actual[i, :, j], color=f"C{i}", label=f"actual{label}")
                ax.plot(future, pred[i, :, j], color=f"C{i}", linestyle="--", label=f"forecast{label}")
                if band is not None:
                    ax.fill_between(future, band[0][i, :, j], band[1][i, :, j], color=f"C{i}", alpha=0.2,
                                    label=f"q{band[2][0]:g}-q{band[2][-1]:g}{label}")
                ax.plot(future, base[i, :, j], color=f"C{i}", linestyle=":", alpha=0.7)
            ax.set_xlabel(f"step (input window, then forecast; dotted: {base_name})")
            ax.set_ylabel(name)
            ax.legend(fontsize=7)


# --------------------------------------------------------------------------------------------
# The stage


def evaluate_tokens(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                    model_cfg: ModelConfig, **kwargs: Any) -> dict[str, Any]:
    """Token targets: a language model (next token at each step) or a generated sequence."""
    if preprocess.properties["io"]["y"].get("language_model"):
        return evaluate_language_model(model, preprocess, workdir, cfg, model_cfg, **kwargs)
    return evaluate_generation(model, preprocess, workdir, cfg, model_cfg, **kwargs)


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "label": evaluate_classification,
    "labels": evaluate_tagging,
    "tokens": evaluate_tokens,
    "series": evaluate_forecast,
}


def data_digest(preprocess: Any, split: str = "test") -> str:
    """A content hash of one encoded split: equal digests mean the same examples in the same order."""
    digest = hashlib.sha256()
    for key, array in sorted(load_split(preprocess, split).items()):
        digest.update(f"{key}{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _fmt_interval(c: dict[str, Any]) -> str:
    return f"{c['confidence']:.0%} CI {c['low']:+.4g}..{c['high']:+.4g}" if c.get("low") is not None else "no CI"


def bless(result: dict[str, Any], cfg: EvaluateConfig, champion: dict[str, Any] | None = None) -> dict[str, Any]:
    """TFX's Evaluator gate on an evaluator's result; returns blessed, reasons, failures, comparisons.

    Fails on too few test examples, a broken threshold, degenerate outputs, or, for every gate
    metric, a bootstrap interval of the improvement over the reference that is not above
    -tolerance (the strongest baseline; with `compare_to: last_blessed` the champion).
    """
    mine = result["model"]
    reasons: list[str] = []
    failures: list[str] = []
    comparisons: list[dict[str, Any]] = []
    n = result.get("examples", 0)
    if n < cfg.min_test_examples:
        failures.append(f"only {n} test examples (evaluate.min_test_examples is {cfg.min_test_examples}): "
                        f"too few to judge; use more data or larger data.test_fraction")
    for metric, bound in cfg.thresholds.items():
        value = mine.get(metric)
        if value is None:
            failures.append(f"threshold on {metric!r}, which this task does not report "
                            f"(it reports: {', '.join(sorted(mine))})")
            continue
        broken = [f"{metric} {value:.4g} < min {bound['min']:g}"] if "min" in bound and not value >= bound["min"] \
            else []
        if "max" in bound and not value <= bound["max"]:
            broken.append(f"{metric} {value:.4g} > max {bound['max']:g}")
        failures += broken
        if not broken:
            reasons.append(f"{metric} {value:.4g} within " + ", ".join(f"{k} {v:g}" for k, v in bound.items()))
    if result.get("degenerate"):
        failures.append(result["degenerate"])
    gate = list(cfg.gate_metrics) or result["gate"]
    strongest = strongest_baselines(result)
    for name in gate:
        if name not in mine:
            failures.append(f"gate metric {name!r} is not reported by this task "
                            f"(it reports: {', '.join(sorted(mine))})")
            continue
        metric = registry.get(name)
        if cfg.compare_to == "baseline":
            if name not in strongest:
                reasons.append(f"{name}: no baseline reports it")
                continue
            best, value = strongest[name]
            theirs = result["samples"].get(best, {}).get(name)
            reference, slack = f"best baseline '{best}'", cfg.tolerance
        elif cfg.compare_to == "last_blessed":
            if not champion or name not in champion.get("metrics", {}):
                reasons.append(f"{name}: no champion with this metric registered yet: nothing to compare with")
                continue
            theirs = (champion.get("samples") or {}).get(name)
            reference, value, slack = f"champion v{champion.get('version')}", champion["metrics"][name], cfg.tolerance
        else:
            continue
        comparison = registry.compare(metric, mine[name], value, result["samples"]["model"].get(name), theirs,
                                      cfg.confidence)
        comparison.update(reference=reference, examples=n)
        comparisons.append(comparison)
        verb = "beats" if comparison["delta"] > 0 else "does not beat"
        text = (f"{name} {mine[name]:.4g} {verb} {reference} {value:.4g} "
                f"(improvement {comparison['delta']:+.4g}, {_fmt_interval(comparison)}, {n} test examples"
                + (f", tolerance {slack:g})" if slack else ")"))
        ok = registry.passes(comparison, slack, strict=cfg.compare_to == "baseline")
        (reasons if ok else failures).append(text if ok else text + ": " + registry.why_not(comparison, slack))
    return {"blessed": not failures, "reasons": failures + reasons, "failures": failures,
            "comparisons": comparisons}


def run(inputs: dict, workdir: Path, ctx: Any, *, evaluate: EvaluateConfig, model: ModelConfig,
        season: int | None = None, champion: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score the trained model and its baselines on the test split; decide the blessing."""
    from models import load_model

    preprocess, train = inputs["preprocess"], inputs["train"]
    net = load_model(train.path("model.keras"))
    kind = preprocess.properties["io"]["y"]["kind"]
    result = TASKS[kind](net, preprocess, workdir, evaluate, model, season=season)
    digest = data_digest(preprocess)
    if champion and champion.get("samples") and champion.get("data_digest") == digest:
        champion = {**champion, "samples": registry.load_samples(champion["samples"]).get("model", {})}
    elif champion:
        champion = {**champion, "samples": None}
    judged = bless(result, evaluate, champion)
    blessed, reasons = judged["blessed"], judged["reasons"]
    main = result["main"]
    gate = list(evaluate.gate_metrics) or result["gate"]
    registry.save_samples(workdir / "samples.npz", {side: {k: s for k, s in by.items() if k in gate}
                                                    for side, by in result["samples"].items()})
    strongest = strongest_baselines(result)
    (workdir / "metrics.json").write_text(json.dumps({"model": result["model"], "baselines": result["baselines"],
                                                      "strongest_baseline": strongest}, indent=2))
    (workdir / "blessing.json").write_text(json.dumps({**judged, "champion": champion and {
        k: v for k, v in champion.items() if k != "samples"}, "data_digest": digest}, indent=2))
    _write_rows(workdir / "predictions.csv", result["rows"])
    (workdir / "evaluation.md").write_text(_report(result, judged, evaluate))
    metrics = {f"test_{k}": v for k, v in result["model"].items()}
    metrics.update({f"baseline_{k}": v for k, (_, v) in strongest.items()})
    metrics["test_examples"] = float(result["examples"])
    for c in judged["comparisons"]:
        if c.get("low") is not None:
            metrics.update({f"test_{c['metric']}_improvement_ci_low": c["low"],
                            f"test_{c['metric']}_improvement_ci_high": c["high"]})
    ctx.log(" ".join(f"{k}={v:.4f}" for k, v in metrics.items() if not k.endswith(("_low", "_high"))))
    ctx.log(f"{'blessed' if blessed else 'NOT blessed'}: {'; '.join(reasons) or 'no criteria'}")
    base_main = strongest.get(main, ("-", float("nan")))
    return {
        "metrics": metrics,
        "main_metric": main,
        "gate_metrics": gate,
        "blessed": blessed,
        "reasons": reasons,
        "failures": judged["failures"],
        "comparisons": judged["comparisons"],
        "data_digest": digest,
        "season": result.get("season"),
        "tags": {"blessed": str(blessed).lower()},
        "summary": f"test_{main}={result['model'][main]:.4f} (best baseline {base_main[0]}: {base_main[1]:.4f}) "
                   f"{'blessed' if blessed else 'not blessed'}",
    }


def strongest_baselines(result: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """For each metric the model reports: the best baseline's name and value."""
    out = {}
    for name in result["model"]:
        metric = registry.lookup(name)
        options = {b: m[name] for b, m in result["baselines"].items() if name in m}
        best = metric.best(options) if metric else None
        if best is not None:
            out[name] = (best, options[best])
    return out


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _report(result: dict[str, Any], judged: dict[str, Any], cfg: EvaluateConfig) -> str:
    names = list(result["baselines"])
    lines = ["# Evaluation (test split)", "", f"{result['examples']} test examples. Baselines: "
             + ", ".join(f"`{n}`" for n in names) + ". `better`: which direction is better (components/metrics.py).",
             "", "| metric | better | model | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for k, v in result["model"].items():
        metric = registry.lookup(k)
        arrow = ("higher" if metric.higher_is_better else "lower") if metric else "?"
        cells = [f"{result['baselines'][n][k]:.4f}" if k in result["baselines"][n] else "-" for n in names]
        lines.append(f"| {k} | {arrow} | {v:.4f} | " + " | ".join(cells) + " |")
    verdict = "Blessed" if judged["blessed"] else "Not blessed"
    lines += ["", f"## {verdict}", "", *(f"- {r}" for r in judged["reasons"] or ["no criteria"])]
    if judged["comparisons"]:
        lines += ["", f"Paired bootstrap over test examples ({registry.BOOTSTRAP_RESAMPLES} resamples, "
                      f"confidence {cfg.confidence:g}); improvement is signed so that positive favours the model.",
                  "", "| gate metric | reference | model | reference value | improvement | CI low | CI high |",
                  "|---|---|---|---|---|---|---|"]
        for c in judged["comparisons"]:
            low, high = (f"{c['low']:+.4g}", f"{c['high']:+.4g}") if c.get("low") is not None else ("-", "-")
            lines.append(f"| {c['metric']} | {c['reference']} | {c['mine']:.4g} | {c['theirs']:.4g} | "
                         f"{c['delta']:+.4g} | {low} | {high} |")
    if result["rows"]:
        keys = list(result["rows"][0])
        lines += ["", "## Examples", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r[k]).replace("|", "\\|") for k in keys) + " |" for r in result["rows"][:10]]
    lines += result.get("report", [])
    return "\n".join(lines) + "\n"
