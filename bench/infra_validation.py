"""Infra validation off the critical path (issue 16 item 3): when the fresh validation server starts.

The default `make run` pipeline (configs/names_gender_lstm.yaml, MLflow tracking into a scratch
store) is run whole (`runner.run(config, from_stage="ingest")`: every stage rebuilt), the variants
interleaved (ABBA, medians):
- at train: the runner prestarts the fresh validation server, at a lower CPU priority, when the
  train stage starts building; infra_validate links the export in once it exists (what rnnpipe does);
- at export: the server started at normal priority when the export stage starts building (what
  rnnpipe did at the previous stop: training's idle cycles are not used);
- after export: no warm-up; infra_validate starts the server itself once the export exists.
Reported per variant: each stage's seconds, the stage total against the train stage (the target:
total <= 1.3x train), and the whole call's wall and CPU seconds; CPU includes the server child
processes (RUSAGE_CHILDREN), since a prestarted server's work is moved, not removed. The speed-up
lines compare the whole call's wall time (starting earlier shortens infra_validate by construction;
the question is whether the run got shorter, training included).

Run: `python -m bench.infra_validation [--quick] [--rounds N]` (default 4 rounds).
"""

from __future__ import annotations

import functools
import resource
import time
from typing import Any

from bench import common

TARGET = 1.3  # stage total <= 1.3x the train stage
STAGES = ("train", "evaluate", "export", "infra_validate")


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return common.scratch_main(argv, __doc__, "infra", _measure)


def _measure(workdir: Any, rounds: int, args: Any) -> dict[str, Any]:
    from pipeline import runner, stages

    rounds = args.rounds or (2 if args.quick else 4)
    config = common.load_config("names_gender_lstm.yaml", workdir, {"tracking.enabled": True})
    real = stages.STAGES
    times: dict[str, dict[str, list[float]]] = {}

    def variant(name: str, **changes: Any) -> None:
        stages.STAGES = stages.replace_stage(real, "infra_validate", **changes)
        try:
            wall, cpu = time.perf_counter(), _cpu()
            result = runner.run(config, from_stage="ingest", log=lambda _: None)
            wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        finally:
            stages.STAGES = real
        row = times.setdefault(name, {})
        total = sum(result.seconds.values())
        for stage in STAGES:
            row.setdefault(f"{stage} s", []).append(result.seconds[stage])
        row.setdefault("stage total s", []).append(total)
        row.setdefault("total / train", []).append(total / result.seconds["train"])
        row.setdefault("train share", []).append(result.seconds["train"] / total)
        row.setdefault("whole call wall s", []).append(wall)
        row.setdefault("whole call CPU s (with children)", []).append(cpu)

    from components.infra_validation import prestart

    variants = {"at train": lambda: variant("at train"),  # as the runner wires it: nice 19
                "at export": lambda: variant("at export", warm_up=functools.partial(prestart, nice=0),
                                             warm_up_from="export"),  # as the previous stop did
                "after export": lambda: variant("after export", warm_up=None)}
    variant("warm-up")  # imports, the bundled data's first read
    times.clear()
    common.interleaved(variants, rounds)
    rows = [{"variant": name, **{k: common.median(v) for k, v in row.items()}} for name, row in times.items()]
    new = {k: common.median(v) for k, v in times["at train"].items()}
    summary = [common.summary_line("make run (names_gender_lstm)", "train stage's share of the stage total",
                                   new["train share"], 1.0, "all of it", target=1 / TARGET)]
    for old in ("at export", "after export"):  # the critical path: did the whole run get shorter?
        before = {k: common.median(v) for k, v in times[old].items()}
        summary.append(common.summary_line(
            "make run (names_gender_lstm)", "whole-run speed-up (old wall s / new wall s)",
            before["whole call wall s"], new["whole call wall s"], f"server started {old}",
            cpu_ratio=before["whole call CPU s (with children)"] / new["whole call CPU s (with children)"]))
    notes = [f"stage total {new['stage total s']:.2f} s = {new['total / train']:.2f}x the train stage "
             f"({new['train s']:.2f} s; target <= {TARGET}x); infra_validate {new['infra_validate s']:.2f} s"]
    notes += [f"server started {name}: infra_validate {common.median(row['infra_validate s']):.2f} s, train "
              f"{common.median(row['train s']):.2f} s, stage total {common.median(row['total / train']):.2f}x train"
              for name, row in times.items() if name != "at train"]
    return common.finish({"benchmark": "infra_validation", "rows": rows, "summary": summary, "notes": notes,
                          "rounds": rounds}, args.json)


if __name__ == "__main__":
    main()
