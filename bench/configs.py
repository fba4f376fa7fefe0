"""Every example config, end to end at its default epochs: its main test metric vs its baseline.

For each `configs/*.yaml` (or `--configs`) and each cell in `--cells` (default: the config's
own cell; `all` = simple_rnn, lstm, gru) this runs the whole pipeline in a temporary runs dir
and MLflow store and reports the evaluation's main metric next to the trivial baseline's
(majority class, unigram, last value / seasonal naive), whether the model beats it, and the
wall time. Prints a Markdown table (the README's "Results" table) and writes
`bench/configs.json`.

Run: `python -m bench.configs [--cells all] [--configs configs/a.yaml ...] [--quick]`
(`--quick` caps every split at 300 examples and 2 epochs: a smoke run, not the results).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from models.cells import CELLS  # the built-in cells (the registry in models/cells.py)

OUT = Path(__file__).resolve().parent / "configs.json"


def run_config(path: Path, cell: str | None, store: Path, quick: bool) -> dict[str, Any]:
    """One pipeline run; returns the row for the table."""
    from components import config as cfgmod
    from components import metrics
    from components import stage_files as files
    from pipeline import runner

    sets = [f"runs_dir={store / 'runs'}", f"export.dir={store / 'exports'}",
            f"tracking.uri=sqlite:///{store / 'mlflow.db'}"]
    if cell:
        sets.append(f"model.cell={cell}")
    if quick:
        sets += ["data.max_examples=300", "train.epochs=2"]
    config = cfgmod.load(path, sets)
    started = time.perf_counter()
    result = runner.run(config, to_stage="evaluate", log=lambda line: None)
    seconds = time.perf_counter() - started
    evaluate = result.artifacts["evaluate"].properties
    main = evaluate["main_metric"]
    mine, base = evaluate["metrics"][f"test_{main}"], evaluate["metrics"][f"baseline_{main}"]
    comparisons = evaluate.get("comparisons", [])
    gate = next((c for c in comparisons if c["metric"] == main), comparisons[0] if comparisons else {})
    main = gate.get("metric", main)  # the metric the gate read (e.g. names_generate gates on perplexity)
    scored = json.loads(result.artifacts["evaluate"].path(files.METRICS).read_text())["baselines"]
    return {"config": path.stem, "topology": config.model.topology, "cell": config.model.cell,
            "epochs": config.train.epochs, "metric": main, "model": round(mine, 4), "baseline": round(base, 4),
            "baseline_name": gate.get("reference", ""), "ci": [gate.get("low"), gate.get("high")],
            "baselines": {name: round(m[main], 4) for name, m in scored.items() if main in m},
            "gates": [{k: c.get(k) for k in ("metric", "reference", "mine", "theirs", "low", "high")}
                      for c in evaluate.get("comparisons", [])],
            "season": evaluate.get("season"), "examples": int(evaluate["metrics"].get("test_examples", 0)),
            "beats": metrics.get(main).improvement(mine, base) > 0, "blessed": evaluate["blessed"],
            "reasons": evaluate.get("failures") or [], "seconds": round(seconds, 1)}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| config | topology | cell | epochs | test metric | model | strongest baseline | value | "
             "95% CI of improvement | test n | blessed | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | | {r['cell']} | | FAILED: {r['error']} | | | | | | | |")
            continue
        low, high = r["ci"]
        ci = f"{low:+.4f} .. {high:+.4f}" if low is not None else "-"
        lines.append(f"| {r['config']} | {r['topology']} | {r['cell']} | {r['epochs']} | {r['metric']} | "
                     f"{r['model']:.4f} | {r['baseline_name'].replace('best baseline ', '')} | {r['baseline']:.4f} | "
                     f"{ci} | {r['examples']} | {'yes' if r['blessed'] else 'NO'} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", type=Path, default=sorted(common.CONFIGS.glob("*.yaml")))
    p.add_argument("--cells", nargs="+", default=["default"], help="cells to run, 'default' or 'all'")
    args = p.parse_args(argv)
    cells = CELLS if args.cells == ["all"] else [None if c == "default" else c for c in args.cells]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnpipe-configs-") as tmp:
        for path in args.configs:
            for cell in cells:
                common.log(f"-- {path.stem} {cell or '(default cell)'}")
                try:
                    rows.append(run_config(path, cell, Path(tmp), args.quick))
                except Exception as exc:  # noqa: BLE001 - report it, run the others
                    error = f"{type(exc).__name__}: {exc}"
                    rows.append({"config": path.stem, "cell": cell or "default", "error": error})
                common.log(json.dumps(rows[-1]))
    print(markdown(rows))
    payload = {"machine": common.machine_info(), "quick": args.quick, "rows": rows}
    OUT.write_text(json.dumps(payload, indent=1))
    print(f"wrote {OUT}")
    return {"benchmark": "configs", "rows": rows, "summary": [],
            "failed": [r for r in rows if "error" in r]}


if __name__ == "__main__":
    import sys

    sys.exit(1 if main()["failed"] else 0)
