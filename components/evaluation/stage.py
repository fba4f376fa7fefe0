"""Evaluation stage (TFX Evaluator): task metrics on the test split, several trivial baselines,
a paired-bootstrap confidence interval against the strongest of them, and the blessing.

inputs -> outputs: preprocess, train (+ the champion, when comparing with it) ->
`metrics.json` (model and every baseline), `evaluation.md` (report), `blessing.json` (blessed,
reasons, intervals), `samples.npz` (per-example results of the gate metrics, what a later
champion comparison resamples), task plots and `predictions.csv`, by the kind of target (its
`evaluate`, components/kinds):

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

import json
from pathlib import Path
from typing import Any

from components import kinds
from components import metrics as registry
from components import stage_files as files
from components.config import EvaluateConfig, ModelConfig
from components.evaluation.classification import evaluate_classification, evaluate_tagging
from components.evaluation.common import _write_rows
from components.evaluation.forecast import evaluate_forecast
from components.evaluation.gate import bless, data_digest, strongest_baselines
from components.evaluation.report import _report
from components.evaluation.sequences import evaluate_tokens

# The evaluator a target's kind names (`Kind.evaluator` in components/kinds): each returns the model's
# and its baselines' metrics and per-example samples for the gate.
EVALUATORS = {"classification": evaluate_classification, "tagging": evaluate_tagging, "tokens": evaluate_tokens,
              "forecast": evaluate_forecast}


def run(inputs: dict, workdir: Path, ctx: Any, *, evaluate: EvaluateConfig, model: ModelConfig,
        season: int | None = None, champion: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score the trained model and its baselines on the test split; decide the blessing."""
    from models import load_model

    preprocess, train = inputs["preprocess"], inputs["train"]
    net = load_model(files.model_file(train), cells=[model.cell])
    judge = kinds.of(preprocess.properties["io"]["y"]).evaluator
    if judge is None:
        raise ValueError(f"a {preprocess.properties['io']['y']['kind']!r} target is not evaluated")
    result = EVALUATORS[judge](net, preprocess, workdir, evaluate, model, season=season)
    digest = data_digest(preprocess)
    if champion and champion.get("samples") and champion.get("data_digest") == digest:
        champion = {**champion, "samples": registry.load_samples(champion["samples"]).get("model", {})}
    elif champion:
        champion = {**champion, "samples": None}
    judged = bless(result, evaluate, champion)
    blessed, reasons = judged["blessed"], judged["reasons"]
    main = result["main"]
    gate = list(evaluate.gate_metrics) or result["gate"]
    registry.save_samples(workdir / files.SAMPLES, {side: {k: s for k, s in by.items() if k in gate}
                                                    for side, by in result["samples"].items()})
    strongest = strongest_baselines(result)
    (workdir / files.METRICS).write_text(json.dumps({"model": result["model"], "baselines": result["baselines"],
                                                      "strongest_baseline": strongest}, indent=2))
    (workdir / files.BLESSING).write_text(json.dumps({**judged, "champion": champion and {
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
        "log": {"files": {files.SAMPLES: files.SAMPLES_RUN_FOLDER}},  # the registry reads a champion's back
        "summary": f"test_{main}={result['model'][main]:.4f} (best baseline {base_main[0]}: {base_main[1]:.4f}) "
                   f"{'blessed' if blessed else 'not blessed'}",
    }
