"""`rnnpipe runs` (the table of recent runs, or two runs compared) and `rnnpipe ui`'s links.

The runs come from pipeline/run_queries.py; this module formats them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from pipeline import run_queries
from pipeline.store import store_uri
from pipeline.tables import format_table

# Tags and params `rnnpipe runs` shows for every run (column -> where to look).
KEY_COLUMNS = {"topology": "model.topology", "cell": "model.cell", "units": "model.units",
               "layers": "model.num_layers"}


def ui_links(uri: str, base: str) -> list[str]:
    """One link per experiment straight to its training runs.

    MLflow 3's UI opens an experiment on its GenAI views unless the URL (or the "Model training"
    switch at the top left) asks for the model-training ones.
    """
    names = {i: n for i, n in run_queries.experiment_names(uri).items() if n != "Default"}
    return [f"  {name}: {base}/#/experiments/{i}/runs?workflowType=machine_learning" for i, name in names.items()]



def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M") if ms else "-"


def _metric_columns(runs: Sequence[Any], sort: str | None, wanted: Sequence[str] | None) -> list[str]:
    if wanted:
        return list(wanted)
    present = {k for r in runs for k in r.metrics}
    tests = sorted(k for k in present if k.startswith("test_"))[:3]
    columns = [m for m in ["val_loss", *tests] if m in present]
    return [sort, *[c for c in columns if c != sort]] if sort else columns


def runs_table(runs: Sequence[Any], sort: str | None = None, metrics: Sequence[str] | None = None) -> str:
    """The `rnnpipe runs` table; a sweep's trials follow their parent (unless sorted by a metric)."""
    ids = {r.run_id for r in runs}
    if not sort:
        children: dict[str, list[Any]] = {}
        for r in runs:
            if r.parent_id in ids:
                children.setdefault(r.parent_id, []).insert(0, r)
        runs = [x for r in runs if r.parent_id not in ids for x in (r, *children.get(r.run_id, []))]
    show_exp = len({r.experiment for r in runs}) > 1
    columns = _metric_columns(runs, sort, metrics)
    headers = [*(["experiment"] if show_exp else []), "run", "id", "status", "started", "secs", *KEY_COLUMNS,
               *columns, "blessed", "export"]
    rows = []
    for r in runs:
        name = ("↳ " if not sort and r.parent_id in ids else "") + r.name
        keys = [r.params.get(p) or r.params.get(f"sweep.grid.{p}") or r.tags.get(c) for c, p in KEY_COLUMNS.items()]
        rows.append([*([r.experiment] if show_exp else []), name, r.run_id[:8], r.status, _when(r.start_ms),
                     round(r.seconds) if r.seconds is not None else None, *keys,
                     *(r.metrics.get(m) for m in columns), r.tags.get("blessed"), r.tags.get("export_version")])
    return format_table(headers, rows)


def compare_table(a: Any, b: Any) -> str:
    """Two runs side by side: what differs in params, metrics and key tags."""
    def ordered(keys: set[str]) -> list[str]:
        return sorted(keys, key=lambda k: (not k.startswith("test_"), not k.startswith("val_"), k))

    params = [k for k in sorted(set(a.params) | set(b.params)) if a.params.get(k) != b.params.get(k)]
    metrics = [k for k in ordered(set(a.metrics) | set(b.metrics))
               if a.metrics.get(k) != b.metrics.get(k) or k.startswith("test_") or k == "val_loss"]
    tags = [k for k in ("status", "topology", "cell", "dataset", "cudnn", "blessed", "export_version")
            if _tag(a, k) != _tag(b, k)]
    head = ["", "A", "B"]
    out = [format_table(head, [["run", a.name, b.name], ["id", a.run_id, b.run_id],
                               ["experiment", a.experiment, b.experiment]])]
    same = len(set(a.params) & set(b.params)) - len([k for k in params if k in a.params and k in b.params])
    out.append(f"\nparams that differ ({len(params)}; {same} equal, not shown)")
    out.append(format_table(["param", "A", "B"], [[k, a.params.get(k), b.params.get(k)] for k in params])
               if params else "(none)")
    out.append("\nmetrics (test_* and val_loss, then the others that differ; better: which run is better)")
    rows = [[k, a.metrics.get(k), b.metrics.get(k),
             b.metrics[k] - a.metrics[k] if k in a.metrics and k in b.metrics else None, _better(k, a, b)]
            for k in metrics]
    out.append(format_table(["metric", "A", "B", "B - A", "better"], rows) if rows else "(none)")
    if tags:
        out.append("\ntags that differ")
        out.append(format_table(["tag", "A", "B"], [[k, _tag(a, k), _tag(b, k)] for k in tags]))
    return "\n".join(out)


def _better(metric: str, a: Any, b: Any) -> str:
    """'A', 'B', '=' or '' (unknown direction, or a side without the metric)."""
    from components.metrics import lookup

    spec = lookup(metric)
    if spec is None or spec.name == "examples" or metric not in a.metrics or metric not in b.metrics:
        return ""
    delta = spec.improvement(b.metrics[metric], a.metrics[metric])
    return "=" if delta == 0 else ("B" if delta > 0 else "A")


def _tag(run: Any, key: str) -> str | None:
    return run.status if key == "status" else run.tags.get(key)


def runs_command(experiment: str | None, tracking_uri: str | None, sort: str | None, ascending: bool | None,
                 limit: int, metrics: Sequence[str] | None, compare: Sequence[str] | None) -> int:
    """`rnnpipe runs`: the table of recent runs, or two runs compared."""
    from components.metrics import lower_is_better

    uri = store_uri(tracking_uri)
    if compare:
        print(compare_table(*(run_queries.find_run(uri, ref) for ref in compare)))
        return 0
    asc = ascending if ascending is not None else bool(sort and lower_is_better(sort))
    runs = run_queries.search_runs(uri, experiment, sort, asc, limit)
    order = f"by {sort} ({'ascending' if asc else 'descending'})" if sort else "newest first"
    print(f"{len(runs)} run{'' if len(runs) == 1 else 's'} in {experiment or 'all experiments'} ({uri}), {order}")
    if runs:
        print(runs_table(runs, sort, metrics))
    return 0
