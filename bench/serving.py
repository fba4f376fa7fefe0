"""Serving: `rnnpipe serve` vs `mlflow models serve` on the same registered model, same run.

For each model (the names -> gender classifier; the cmudict g2p seq2seq when its pipeline
runs) the pipeline is run once into a scratch folder (tracking on, blessed, registered as
`champion`); then both servers start on loopback in fresh processes: rnnpipe's on the export
base, MLflow's scoring server on `models:/<name>@champion` (`--env-manager local`, its pyfunc
wraps the same SavedModel). Both get the same TF-Serving-style body `{"instances": [...]}` of
raw test inputs, over keep-alive HTTP/1.1 connections, one per client thread:

- p50 / p99 latency of batch-1 requests, one client (blocks of requests alternate between
  the servers, ABBA, so load from other jobs hits both alike);
- requests/s at concurrency 1, 8 and 32 (batch 1; a bounded number of requests each; three
  rounds per server in ABBA order, the median reported), with the p99 latency of those same
  requests and a Little's-law check (rate x mean latency = concurrency, `littles_law_c*` ~ 1.0:
  the client kept that many requests in flight; a note names any round where it did not);
- rows/s with batch-64 requests, one client.

Ratios are rnnpipe over MLflow, higher is better (latency: MLflow's over rnnpipe's); issue 7
holds requests/s at concurrency 8 to >= 3x. `python -m bench.serving [--quick]`.
"""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench import common

TARGET_C8 = 3.0
CASES = (
    ("names classifier", "names_gender_lstm.yaml", {"train.epochs": 1}),
    ("g2p seq2seq", "cmudict_g2p_lstm.yaml", {"train.epochs": 1, "data.max_examples": 3000}),
)


class Client:
    """One keep-alive HTTP connection posting JSON bodies."""

    def __init__(self, url: str, path: str):
        parts = urlparse(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        self.path = path

    def post(self, body: bytes) -> float:
        start = time.perf_counter()
        self.conn.request("POST", self.path, body, {"content-type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.path} answered {response.status}: {data[:300]!r}")
        return time.perf_counter() - start

    def close(self) -> None:
        self.conn.close()


def latencies(url: str, path: str, bodies: list[bytes]) -> list[float]:
    client = Client(url, path)
    try:
        return [client.post(b) for b in bodies]
    finally:
        client.close()


def throughput(url: str, path: str, bodies: list[bytes], concurrency: int, total: int,
               seconds: list[float] | None = None) -> float:
    """Requests per second of `concurrency` clients sending `total` requests in all.

    Each request's latency is appended to `seconds` (if given): with the rate they must satisfy
    Little's law, concurrency = rate x mean latency (`littles_law`), else the client itself, not the
    server, was the bottleneck and neither number is the server's.
    """
    counter = iter(range(total))
    lock = threading.Lock()
    errors: list[BaseException] = []
    seconds = [] if seconds is None else seconds

    def worker() -> None:
        client = Client(url, path)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                seconds.append(client.post(bodies[i % len(bodies)]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return total / (time.perf_counter() - start)


def littles_law(concurrency: int, rate: float, seconds: list[float]) -> float:
    """rate x mean latency / concurrency: 1.0 when the client kept `concurrency` requests in flight."""
    return rate * statistics.fmean(seconds) / concurrency if seconds else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def prepare(config_name: str, overrides: dict[str, Any], workdir: Path, quick: bool) -> tuple[Any, Any, list[Any]]:
    """Run the pipeline (blessed, registered) and return (config, result, raw test inputs)."""
    from components import stage_files as files
    from pipeline import runner

    items = {"tracking.enabled": True, "evaluate.compare_to": "none", "evaluate.thresholds": {}, **overrides}
    if quick:
        items.update({"data.max_examples": 300, "train.epochs": 1})
    config = common.load_config(config_name, workdir, items)
    result = runner.run(config, log=lambda _: None)
    if not result.export_path:
        raise RuntimeError(f"{config_name}: no export ({result.artifacts['evaluate'].properties.get('reasons')})")
    rows = files.raw_examples(result.artifacts["preprocess"], "test", limit=256)
    return config, result, [row["x"] for row in rows]


def measure(name: str, urls: dict[str, tuple[str, str]], inputs: list[Any], quick: bool) -> dict[str, Any]:
    """Every measurement for both servers; returns {server: {metric: value}}."""
    singles = [json.dumps({"instances": [x]}).encode() for x in inputs]
    batches = [json.dumps({"instances": [inputs[(i + j) % len(inputs)] for j in range(64)]}).encode()
               for i in range(8)]
    n_lat, block = (40, 10) if quick else (300, 25)
    totals = {1: 40, 8: 96, 32: 128} if quick else {1: 200, 8: 600, 32: 960}
    n_batch = 8 if quick else 40
    out: dict[str, dict[str, Any]] = {s: {"lat": []} for s in urls}
    for url, path in urls.values():  # warm-up: graphs traced, connections, caches
        latencies(url, path, singles[:10] + batches[:2])
    for r in range(n_lat // block):  # ABBA blocks of batch-1 requests
        for server in list(urls) if r % 2 == 0 else reversed(list(urls)):
            url, path = urls[server]
            start = (r * block) % len(singles)
            out[server]["lat"] += latencies(url, path, [singles[(start + i) % len(singles)] for i in range(block)])
    rounds = 1 if quick else 3
    for concurrency, total in totals.items():  # rounds in ABBA order, the median of each server's
        rates: dict[str, list[float]] = {server: [] for server in urls}
        lats: dict[str, list[float]] = {server: [] for server in urls}
        laws: dict[str, list[float]] = {server: [] for server in urls}
        for r in range(rounds):
            for server in list(urls) if r % 2 == 0 else reversed(list(urls)):
                url, path = urls[server]
                seconds: list[float] = []
                rates[server].append(throughput(url, path, singles, concurrency, total, seconds))
                laws[server].append(littles_law(concurrency, rates[server][-1], seconds))
                lats[server] += seconds
        for server in urls:
            out[server][f"rps_c{concurrency}"] = statistics.median(rates[server])
            out[server][f"p99_ms_c{concurrency}"] = 1000 * percentile(lats[server], 0.99)
            out[server][f"littles_law_c{concurrency}"] = statistics.median(laws[server])
            common.log(f"   {name} {server} c={concurrency}: {' '.join(f'{x:.0f}' for x in rates[server])} req/s")
    for server, (url, path) in urls.items():
        seconds = latencies(url, path, [batches[i % len(batches)] for i in range(n_batch)])
        out[server]["rows_per_s_b64"] = 64 * len(seconds) / sum(seconds)
    for values in out.values():
        lat = values.pop("lat")
        values["p50_ms"], values["p99_ms"] = 1000 * statistics.median(lat), 1000 * percentile(lat, 0.99)
    return out


def bench_case(name: str, config_name: str, overrides: dict[str, Any], quick: bool) -> dict[str, Any]:
    from components.serving import ServerProcess
    from pipeline import registry, store

    workdir = common.scratch_dir("serving")
    try:
        common.log(f"== {name}: running the pipeline ({config_name})")
        config, result, inputs = prepare(config_name, overrides, workdir, quick)
        base = Path(result.export_path).parent
        with ServerProcess(base) as ours, registry.serve_registered(store.tracking_uri(config), config.name) \
                as theirs:
            urls = {"rnnpipe": (ours, f"/v1/models/{base.name}:predict"), "mlflow": (theirs, "/invocations")}
            return measure(name, urls, inputs, quick)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    rows, summary, notes = [], [], []
    for name, config_name, overrides in CASES:  # a failure propagates: run_all reports it and exits 1
        numbers = bench_case(name, config_name, overrides, args.quick)
        ours, theirs = numbers["rnnpipe"], numbers["mlflow"]
        for server, values in numbers.items():
            rows.append({"model": name, "server": server, **{k: round(v, 2) for k, v in values.items()}})
        for metric in ("p50_ms", "p99_ms"):
            line = common.summary_line(name, f"{metric[:3]} latency speed-up (batch 1)", theirs[metric],
                                       ours[metric], "rnnpipe ms (value: mlflow ms)")
            summary.append(line)
        for key in ("rps_c1", "rps_c8", "rps_c32", "rows_per_s_b64"):
            target = TARGET_C8 if key == "rps_c8" else None
            summary.append(common.summary_line(name, key.replace("_", " "), ours[key], theirs[key],
                                               "mlflow models serve", target))
        summary.append(common.summary_line(name, "p99 latency speed-up at concurrency 8", theirs["p99_ms_c8"],
                                           ours["p99_ms_c8"], "rnnpipe ms (value: mlflow ms)"))
        for server, values in numbers.items():
            off = {k: v for k, v in values.items() if k.startswith("littles_law") and abs(v - 1) > 0.1}
            if off:
                notes.append(f"{name} {server}: rate x mean latency / concurrency = {off}, not 1: the client, "
                             "not the server, limited these rounds; their rate and latency are not the server's")
    notes.append("same machine, same run; rnnpipe: uvicorn+starlette, one process, requests merged into "
                 "batches while the model is busy; mlflow: its scoring server (uvicorn, 1 worker) + pyfunc")
    return common.finish({"benchmark": "serving", "rows": rows, "summary": summary, "notes": notes}, args.json)


if __name__ == "__main__":
    main()
