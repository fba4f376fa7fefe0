"""Evaluation stage (TFX Evaluator); the runner calls `components.evaluation.run`.

What lives where (stage.py's docstring describes the metrics, baselines and blessing):

- stage.py: `run` (the stage); each kind of target picks its evaluator (`evaluate` in components/kinds).
- common.py: helpers every evaluator shares (preprocessed rows and state, batched prediction,
  table cells, vocabulary, accuracy-by-position plot, CSV tables).
- classification.py: label targets: classification and tagging.
- sequences.py: token targets: language models and generated sequences (edit distance,
  degenerate outputs, decoding, attention maps).
- series_metrics.py: forecast metrics, naive baselines, MASE scale, seasons, time labels,
  backtest origins.
- forecast.py: the forecast evaluator; forecast_tables.py: its per-target, per-series and
  backtest tables, `test_predictions.csv` and plots.
- gate.py: the blessing (`bless`, `strongest_baselines`) and the test data digest.
- report.py: `evaluation.md`.
"""

from components.evaluation.classification import (
    classification_metrics,
    evaluate_classification,
    evaluate_tagging,
    step_mask,
    stratified_random,
)
from components.evaluation.common import BATCH, accuracy_by_position
from components.evaluation.forecast import evaluate_forecast
from components.evaluation.gate import bless, data_digest, strongest_baselines
from components.evaluation.sequences import (
    degenerate,
    edit_distance,
    evaluate_generation,
    evaluate_language_model,
    evaluate_tokens,
    generate_batches,
    ids_to_tokens,
    next_token_metrics,
    sample_continuations,
    sequence_metrics,
    sequence_samples,
)
from components.evaluation.series_metrics import (
    SEASONS,
    backtest_origins,
    forecast_metrics,
    forecast_samples,
    naive_forecasts,
    naive_scale,
    quantile_samples,
    season_length,
)
from components.evaluation.stage import run

__all__ = [
    "BATCH", "SEASONS", "accuracy_by_position", "backtest_origins", "bless", "classification_metrics",
    "data_digest", "degenerate", "edit_distance", "evaluate_classification", "evaluate_forecast",
    "evaluate_generation", "evaluate_language_model", "evaluate_tagging", "evaluate_tokens", "forecast_metrics",
    "forecast_samples", "generate_batches", "ids_to_tokens", "naive_forecasts", "naive_scale",
    "next_token_metrics", "quantile_samples", "run", "sample_continuations", "season_length", "sequence_metrics",
    "sequence_samples", "step_mask", "stratified_random", "strongest_baselines",
]
