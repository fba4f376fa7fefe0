"""Infra validation off the critical path (issue 16 item 3): the server prestarted during export vs after it.

A tiny names -> gender pipeline is run once; then `runner.run(config, from_stage="export")` (export,
infra_validate, push rebuilt) is repeated, interleaved (ABBA, medians):
- prestarted: the runner starts the fresh validation server on an empty private base when the export
  stage starts building; infra_validate links the export in and waits for it (what rnnpipe does);
- after export: the infra_validate stage's `warm_up` (`components.infra_validation.prestart`)
  disabled, so infra_validate starts the server itself once the export exists (what rnnpipe did before).
Reported: seconds of export + infra_validate (the critical path), wall and CPU; CPU includes the
server child processes (RUSAGE_CHILDREN), since the prestarted server's work is moved, not removed.

Run: `python -m bench.infra_validation [--quick] [--rounds N]`.
"""

from __future__ import annotations

import resource
import time
from typing import Any

from bench import common


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return common.scratch_main(argv, __doc__, "infra", _measure)


def _measure(workdir: Any, rounds: int, args: Any) -> dict[str, Any]:
    from pipeline import runner, stages

    config = common.load_config("names_gender_lstm.yaml", workdir, {
        "data.max_examples": 300, "train.epochs": 1, "model.units": 16, "export.require_blessing": False})
    runner.run(config, log=lambda _: None)
    real = stages.STAGES
    times: dict[str, dict[str, list[float]]] = {}

    def variant(name: str, prestart: Any) -> None:
        stages.STAGES = stages.replace_stage(real, "infra_validate", warm_up=prestart)
        try:
            wall, cpu = time.perf_counter(), _cpu()
            result = runner.run(config, from_stage="export", log=lambda _: None)
            wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        finally:
            stages.STAGES = real
        row = times.setdefault(name, {"export+infra_validate s": [], "export s": [], "infra_validate s": [],
                                      "whole call wall s": [], "whole call CPU s (with children)": []})
        row["export s"].append(result.seconds["export"])
        row["infra_validate s"].append(result.seconds["infra_validate"])
        row["export+infra_validate s"].append(result.seconds["export"] + result.seconds["infra_validate"])
        row["whole call wall s"].append(wall)
        row["whole call CPU s (with children)"].append(cpu)

    from components.infra_validation import prestart

    variants = {"prestarted during export": lambda: variant("prestarted during export", prestart),
                "started after export": lambda: variant("started after export", lambda _config: None)}
    for fn in variants.values():  # warm-up
        fn()
    times.clear()
    common.interleaved(variants, rounds)
    rows = [{"variant": name, **{k: common.median(v) for k, v in row.items()}} for name, row in times.items()]
    new, old = times["prestarted during export"], times["started after export"]
    key = "export+infra_validate s"
    saved = common.median(old[key]) - common.median(new[key])
    summary = [common.summary_line("names export+infra_validate", "speed-up (old s / new s)",
                                   common.median(old[key]) / common.median(new[key]), 1.0,
                                   "server started after export",
                                   cpu_ratio=common.median(old["whole call CPU s (with children)"])
                                   / common.median(new["whole call CPU s (with children)"]))]
    notes = [f"critical path export+infra_validate: {common.median(old[key]):.2f} s -> "
             f"{common.median(new[key]):.2f} s ({saved:.2f} s saved)"]
    return common.finish({"benchmark": "infra_validation", "rows": rows, "summary": summary, "notes": notes,
                          "rounds": rounds}, args.json)

if __name__ == "__main__":
    main()
