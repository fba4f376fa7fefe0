"""The blessing: `bless` (thresholds, degenerate outputs, bootstrap intervals against the
strongest baseline or the champion), `strongest_baselines` and the test data digest.
"""

from __future__ import annotations

from typing import Any

from components import metrics as registry
from components.config import EvaluateConfig
from components.stage_files import data_digest  # noqa: F401 - the test data digest, public here too


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
