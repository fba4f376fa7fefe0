"""The evaluation report (`evaluation.md`): metrics table, verdict, gate intervals, examples.
"""

from __future__ import annotations

from typing import Any

from components import metrics as registry
from components.config import EvaluateConfig


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
