"""The metric registry: the one place that knows each metric's direction, unit and role.

Every metric an evaluator emits or training logs is registered here with whether higher is
better, its unit, a display name and whether it can gate a blessing. The gate
(components/evaluation.py), the pusher's champion decision (components/push.py), sweep
ranking and `rnnpipe runs --sort/--compare` (pipeline/sweep.py, pipeline/runs.py) and the reports read it;
nothing else decides "lower is better".

Also here: the paired bootstrap that turns per-example results into a confidence interval of
(model - reference), as TFMA's confidence intervals do. A metric is a ratio of sums over
test examples (`Sample`: per-example numerator and denominator, then an optional monotone
transform), so accuracy, token error rate, perplexity and MAE all resample the same way.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Metric:
    """What a metric means: its direction, unit, display name, and whether it may gate."""

    name: str
    higher_is_better: bool
    unit: str = ""
    display: str = ""
    gates: bool = True

    @property
    def goal(self) -> str:
        return "max" if self.higher_is_better else "min"

    def improvement(self, mine: float, theirs: float) -> float:
        """mine - theirs, signed so that positive means `mine` is better."""
        return (mine - theirs) if self.higher_is_better else (theirs - mine)

    def best(self, values: dict[str, float]) -> str | None:
        """The key of the best finite value."""
        finite = {k: v for k, v in values.items() if v is not None and np.isfinite(v)}
        if not finite:
            return None
        return (max if self.higher_is_better else min)(finite, key=finite.get)


def _m(name: str, higher: bool, unit: str = "", display: str = "", gates: bool = True) -> Metric:
    return Metric(name, higher, unit, display or name.replace("_", " "), gates)


_ALL = (
    # classification and per-step labels
    _m("accuracy", True, "fraction"),
    _m("macro_f1", True, "fraction", "macro F1"),
    _m("sequence_accuracy", True, "fraction", "whole-sequence accuracy"),
    # language models and teacher-forced generation
    _m("perplexity", False, "", "perplexity"),
    _m("teacher_forced_accuracy", True, "fraction", "teacher-forced token accuracy"),
    _m("teacher_forced_perplexity", False, "", "teacher-forced perplexity"),
    # generated sequences (greedy and beam)
    _m("exact_match", True, "fraction", "exact match"),
    _m("edit_distance", False, "tokens", "token edit distance"),
    _m("token_error_rate", False, "edits per reference token", "token error rate"),
    _m("beam_exact_match", True, "fraction", "exact match (beam)"),
    _m("beam_edit_distance", False, "tokens", "token edit distance (beam)"),
    _m("beam_token_error_rate", False, "edits per reference token", "token error rate (beam)"),
    _m("empty_output_rate", False, "fraction", "empty outputs", gates=False),
    _m("distinct_output_rate", True, "fraction", "distinct outputs", gates=False),
    # forecasts (raw units of the target)
    _m("mae", False, "target units", "MAE"),
    _m("rmse", False, "target units", "RMSE"),
    _m("smape", False, "%", "sMAPE"),
    _m("mase", False, "", "MASE"),
    _m("quantile_loss", False, "target units", "quantile (pinball) loss"),
    _m("coverage", True, "fraction", "interval coverage (outermost quantiles)", gates=False),
    # training
    _m("loss", False, "", "loss", gates=False),
    _m("token_accuracy", True, "fraction", "token accuracy", gates=False),
    # bookkeeping
    _m("examples", True, "examples", "test examples", gates=False),
)
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}
PREFIXES = re.compile(r"^(test_|val_|baseline_|final_|best_|champion_)+")
TIME_METRIC = re.compile(r"^time_.*_s$")
INTERVAL = re.compile(r"^(?P<metric>.+)_improvement_ci_(low|high)$")  # the gate's bootstrap interval ends


def lookup(name: str) -> Metric | None:
    """The registered metric behind a logged name (`test_mae`, `val_loss`, `baseline_accuracy`...)."""
    if TIME_METRIC.match(name):
        return Metric(name, False, "s", name, gates=False)
    bare = PREFIXES.sub("", name)
    interval = INTERVAL.match(bare)
    if interval and interval["metric"] in METRICS:  # an improvement over the reference: higher is better
        return Metric(bare, True, METRICS[interval["metric"]].unit, f"{bare.replace('_', ' ')}", gates=False)
    return METRICS.get(bare)


def get(name: str) -> Metric:
    """Like lookup, but an unknown metric is an error naming the closest registered one."""
    metric = lookup(name)
    if metric is None:
        close = difflib.get_close_matches(PREFIXES.sub("", name), METRICS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"unknown metric {name!r}.{hint} Known metrics: {', '.join(sorted(METRICS))}.")
    return metric


def lower_is_better(name: str) -> bool:
    """Whether smaller values of `name` are better; unknown metrics count as higher-is-better."""
    metric = lookup(name)
    return metric is not None and not metric.higher_is_better


# --------------------------------------------------------------------------------------------
# Per-example samples and the paired bootstrap


@dataclass(frozen=True)
class Sample:
    """A metric as sum(num) / sum(den) over test examples, then `transform` (e.g. exp)."""

    num: np.ndarray
    den: np.ndarray
    transform: str = "identity"  # identity | exp | sqrt | scale:<divisor>

    def value(self, idx: np.ndarray | None = None) -> Any:
        num, den = (self.num, self.den) if idx is None else (self.num[idx], self.den[idx])
        total = den.sum(-1)
        ratio = np.divide(num.sum(-1), total, out=np.full(np.shape(total), np.nan, dtype="float64"),
                          where=total > 0)
        return TRANSFORMS[self.transform.split(":")[0]](ratio, self.transform)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.num": self.num, f"{prefix}.den": self.den, f"{prefix}.transform": np.asarray(self.transform)}


TRANSFORMS: dict[str, Callable[[np.ndarray, str], np.ndarray]] = {
    "identity": lambda r, _: r,
    "exp": lambda r, _: np.exp(r),
    "sqrt": lambda r, _: np.sqrt(r),
    "scale": lambda r, t: r / float(t.split(":")[1]) if float(t.split(":")[1]) > 0 else r * np.nan,
}


def mean_sample(values: Any) -> Sample:
    """A per-example score averaged over examples (accuracy of one label, edit distance...)."""
    values = np.asarray(values, dtype="float64").reshape(-1)
    return Sample(values, np.ones_like(values))


def save_samples(path: Any, samples: dict[str, dict[str, Sample]]) -> None:
    """samples[side][metric] -> one .npz (what a later champion comparison reads)."""
    arrays: dict[str, np.ndarray] = {}
    for side, by_metric in samples.items():
        for metric, sample in by_metric.items():
            arrays.update(sample.to_arrays(f"{side}/{metric}"))
    np.savez_compressed(path, **arrays)


def load_samples(path: Any) -> dict[str, dict[str, Sample]]:
    out: dict[str, dict[str, Sample]] = {}
    with np.load(path) as data:
        for key in data.files:
            if not key.endswith(".num"):
                continue
            prefix = key[: -len(".num")]
            side, metric = prefix.split("/", 1)
            out.setdefault(side, {})[metric] = Sample(data[key], data[f"{prefix}.den"],
                                                      str(data[f"{prefix}.transform"]))
    return out


BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_CHUNK = 100
BOOTSTRAP_CELLS = 4_000_000  # resampled indices held at once (32 MB)


def bootstrap_interval(metric: Metric, mine: Sample, theirs: Sample, confidence: float, seed: int = 0,
                       resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Paired bootstrap interval of the improvement of `mine` over `theirs` (positive = better).

    Both samples must cover the same test examples in the same order: each resample draws
    example indices once and scores both on them.
    """
    n = len(mine.num)
    if n == 0 or len(theirs.num) != n:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    deltas = []
    chunk = max(1, min(BOOTSTRAP_CHUNK, BOOTSTRAP_CELLS // n))  # memory bounded whatever the test size
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        deltas.append(metric.improvement(mine.value(idx), theirs.value(idx)))
    delta = np.concatenate(deltas)
    delta = delta[np.isfinite(delta)]
    if not delta.size:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(delta, [tail, 100 - tail])
    return float(low), float(high)


def compare(metric: Metric, mine: float, theirs: float, mine_sample: Sample | None, theirs_sample: Sample | None,
            confidence: float, seed: int = 0) -> dict[str, Any]:
    """The model's improvement over a reference on `metric`, with a paired bootstrap interval when
    both sides have per-example results on the same examples (else a point comparison: low/high None)."""
    out: dict[str, Any] = {"metric": metric.name, "mine": float(mine), "theirs": float(theirs),
                           "delta": float(metric.improvement(mine, theirs)), "confidence": confidence,
                           "low": None, "high": None}
    if mine_sample is not None and theirs_sample is not None and len(mine_sample.num) == len(theirs_sample.num):
        out["low"], out["high"] = bootstrap_interval(metric, mine_sample, theirs_sample, confidence, seed)
    return out


def passes(comparison: dict[str, Any], slack: float = 0.0, strict: bool = True) -> bool:
    """Whether the improvement is shown: the interval's low end above -slack (a point comparison:
    the improvement above -slack, or at least -slack when not `strict`)."""
    low = comparison.get("low")
    if low is not None:
        return bool(np.isfinite(low) and low > -slack)
    delta = comparison["delta"]
    return bool(np.isfinite(delta) and (delta > -slack if strict else delta >= -slack))


def why_not(comparison: dict[str, Any], slack: float = 0.0) -> str:
    """One phrase saying why a comparison does not pass."""
    low = comparison.get("low")
    if low is None:
        return "worse than the reference" if comparison["delta"] < 0 else "no improvement"
    if not np.isfinite(low):
        return "no confidence interval could be computed"
    shown = "a positive improvement" if slack == 0 else f"an improvement above {-slack:+g}"
    return f"the {comparison['confidence']:.0%} interval reaches {low:+.4g}, so {shown} is not shown"
