"""Run every benchmark, print one table, write bench/results.json (with machine info).

`python -m bench.run_all [--quick] [--only cells serving ...] [--json PATH]` (or `make bench`).
Each benchmark also runs alone: `python -m bench.<name> [--quick]`. The exit status is
non-zero only when a benchmark failed to run, never because a number was slow.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import common

BENCHMARKS = ("pipeline_overhead", "input_pipeline", "serving", "cells", "fixed_costs", "infra_validation",
              "data_stages")


def run_one(name: str, argv: list[str]) -> dict[str, Any]:
    """Import bench.<name> and call its main(argv); returns its result or raises."""
    main = importlib.import_module(f"bench.{name}").main
    saved = sys.argv
    sys.argv = [f"bench.{name}", *argv]  # for a main() that reads sys.argv itself
    try:
        takes_argv = bool(inspect.signature(main).parameters)
        out = main(argv) if takes_argv else main()
    except SystemExit as exc:  # argparse errors, sys.exit(...) at the end of a main
        if exc.code not in (0, None):
            raise RuntimeError(f"bench.{name} exited with status {exc.code}") from exc
        out = None
    finally:
        sys.argv = saved
    if isinstance(out, int) and not isinstance(out, bool):
        if out != 0:
            raise RuntimeError(f"bench.{name}.main() returned {out}")
        out = None
    if not isinstance(out, dict):
        out = {"benchmark": name, "rows": [], "summary": [], "notes": ["main() returned no result dict"]}
    out.setdefault("benchmark", name)
    return out


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.set_defaults(json=common.RESULTS)
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=None, help="run only these")
    args = p.parse_args(argv)
    sub_argv = ["--quick"] if args.quick else []
    if args.rounds:
        sub_argv += ["--rounds", str(args.rounds)]
    machine = common.machine_info()
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    started = time.time()
    for name in args.only or BENCHMARKS:
        common.log(f"== bench.{name} {' '.join(sub_argv)}")
        t0 = time.time()
        try:
            results[name] = run_one(name, sub_argv)
        except Exception:  # noqa: BLE001 - report it, run the others, exit non-zero at the end
            failures[name] = traceback.format_exc()
            common.log(failures[name])
        else:
            results[name]["seconds"] = round(time.time() - t0, 1)
        _clear_keras()

    rows = [r for res in results.values() for r in common.summary_rows(res)]
    print("\n== all benchmarks ==")
    print(_header(machine, args.quick))
    print(common.table(rows, common.SUMMARY_COLUMNS))
    for name, res in results.items():
        for note in res.get("notes", []):
            print(f"note ({name}): {note}")
    for name in failures:
        print(f"FAILED to run: bench.{name} (traceback above, and in the JSON)")
    machine["loadavg_after"] = common.machine_info()["loadavg_1_5_15"]
    payload = {"command": "python -m bench.run_all " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": machine, "seconds": round(time.time() - started, 1), "results": results,
               "failures": failures}
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=1, default=str))
        print(f"wrote {args.json}")
    return 1 if failures else 0


def _header(machine: dict[str, Any], quick: bool) -> str:
    gpus = ", ".join(g["name"] for g in machine["gpus"]) or "none"
    load = "/".join(f"{x:.1f}" for x in machine["loadavg_1_5_15"] or ())
    return (f"{machine['date']}  {machine['cpu']} x{machine['cores']} (load {load})  "
            f"GPU: {gpus}  python {machine['python']}  tensorflow {machine['tensorflow']}  "
            f"keras {machine['keras']}  mlflow {machine['mlflow']}{'  [--quick]' if quick else ''}")


def _clear_keras() -> None:
    try:
        import keras

        keras.backend.clear_session()
    except Exception:  # noqa: BLE001 - best effort between benchmarks
        pass


if __name__ == "__main__":
    sys.exit(main())
