"""The `rnnpipe` command line: run a pipeline, serve an export, open the MLflow UI.

Errors a user can fix (config, data, divergence, ...) print one paragraph and exit non-zero,
with no traceback; RNNPIPE_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
import time

from components import stop
from components.stop import Terminated

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
# a remote tracking store that does not answer fails in seconds, not after MLflow's default
# 7 retries with exponential back-off (about 4 minutes); preflight.check_places tests it first
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

EXIT_CONFIG = 2
EXIT_FAILED = 1


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is the whole story for a user."""
    from components.config import ConfigError
    from pipeline.runner import PipelineError

    errors: list[type[BaseException]] = [ConfigError, PipelineError, FileNotFoundError]
    for module, name in (("components.validation", "DataValidationError"),
                         ("components.training", "TrainingDiverged"),
                         ("components.infra_validation", "InfraValidationError"),
                         ("components.push", "PushError"),
                         ("components.ingestion.sources", "DataSourceError"),
                         ("components.predict", "PredictError"),
                         ("mlflow.exceptions", "MlflowException")):  # the store refused or is unreachable
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def cmd_run(args: argparse.Namespace) -> int:
    from components import config as cfgmod
    from pipeline import runner

    config = cfgmod.load(args.config, args.set)
    _quiet_libraries()
    started = time.time()
    print(f"rnnpipe: pipeline '{config.name}' ({config.model.topology}, {config.model.cell}) "
          f"on {config.data.source}")
    result = runner.run(config, from_stage=args.from_stage, to_stage=args.to_stage)
    print(f"\nMLflow run: {result.run_id or '(tracking disabled)'}  "
          f"experiment: {config.experiment}")
    if result.metrics:
        print("test metrics: " + "  ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()
                                           if k.startswith("test_") and "_improvement_ci_" not in k))
        evaluated = result.artifacts["evaluate"].properties
        for c in evaluated.get("comparisons", []):  # the gate: each metric beside its reference
            interval = f", {c['confidence']:.0%} CI of improvement {c['low']:+.4g}..{c['high']:+.4g}" \
                if c.get("low") is not None else ""
            print(f"gate: {c['metric']} {c['mine']:.4g} vs {c['reference']} {c['theirs']:.4g}"
                  f"{interval} ({c.get('examples', '?')} test examples)")
    if result.export_path:
        print(f"export: {result.export_path}")
    print(f"\n{runner.stage_summary(result)}")
    print(f"done in {time.time() - started:.1f}s")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from components.predict import run

    _quiet_libraries()
    run(args.target, args.input, args.output, args.batch_size)
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from components import config as cfgmod
    from pipeline import runner

    config = cfgmod.load(args.config, args.set)
    _quiet_libraries()
    art = runner.run_stage(config, args.stage, args.run_dir)
    print(f"{args.stage}: {art.uri}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses

    from components import serving
    from components.config import ConfigError

    for flag in ("max_request_bytes", "max_rows", "max_elements", "max_string_bytes", "max_generate_tokens",
                 "max_connections"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}.")
    for flag in ("timeout", "header_timeout", "body_timeout", "keep_alive", "poll_seconds"):
        if not getattr(args, flag) > 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be a positive number of seconds.")
    if args.max_generate_length is not None and args.max_generate_length < 1:
        raise ConfigError(f"--max-generate-length must be at least 1, got {args.max_generate_length}.")
    # every Options field is the flag of the same name (same defaults)
    options = serving.Options(**{f.name: getattr(args, f.name) for f in dataclasses.fields(serving.Options)})
    serving.serve(args.export_base, host=args.host, port=args.port, options=options, ready_file=args.ready_file,
                  access_log=args.access_log)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from components.config import TrackingConfig

    uri = args.backend_store_uri or os.environ.get("MLFLOW_TRACKING_URI") or TrackingConfig().uri
    if uri.startswith(("http://", "https://")):
        print(f"runs are on a tracking server: open {uri} in a browser")
        return 0
    from pipeline.runs import ui_links
    from pipeline.store import store_uri

    store_uri(uri)  # a clear error when there is no store here yet
    print(f"MLflow UI on http://{args.host}:{args.port}  (store: {uri}); Ctrl-C to stop")
    print("\n".join(ui_links(uri, f"http://{args.host}:{args.port}")), flush=True)
    from components.serving import spawn, stop_group

    # its own process group under a guard: Ctrl-C, SIGTERM or even kill -9 of this process ends
    # the MLflow server and its workers too (nothing keeps holding the port)
    proc = spawn([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
                  "--port", str(args.port), "--workers", str(args.workers)])
    try:
        return proc.wait()
    finally:
        stop_group(proc)


def cmd_sweep(args: argparse.Namespace) -> int:
    from components import config as cfgmod
    from pipeline.preflight import check_places
    from pipeline.sweep import sweep_command

    # writable folders and a reachable store before the sweep's parent MLflow run exists
    check_places(cfgmod.load(args.config, args.set), os.environ.get("MLFLOW_TRACKING_URI"))
    _quiet_libraries()
    return sweep_command(args.config, args.set, args.grid, args.random, args.seed, args.metric, args.goal,
                         args.to_stage)


def cmd_runs(args: argparse.Namespace) -> int:
    from pipeline.runs import runs_command

    _quiet_libraries()
    return runs_command(args.experiment, args.tracking_uri, args.sort, args.ascending, args.limit,
                        args.metrics.split(",") if args.metrics else None, args.compare)


def _quiet_libraries() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()
    except ImportError:
        pass


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnnpipe", description="Config-driven RNN pipelines on Keras 3 + MLflow.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline end to end (ingest ... export)")
    run.add_argument("config", help="YAML config, e.g. configs/names_gender_lstm.yaml")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    run.add_argument("--from", dest="from_stage", metavar="STAGE", help="rerun from this stage on")
    run.add_argument("--to", dest="to_stage", metavar="STAGE", help="stop after this stage")
    run.set_defaults(fn=cmd_run)

    predict = sub.add_parser("predict", help="batch inference of an export over a CSV / TSV / JSONL / text file")
    predict.add_argument("target", metavar="EXPORT_OR_CONFIG",
                         help="an export (exports/<name>[/<version>]) or the pipeline's YAML config (latest version)")
    predict.add_argument("--input", required=True, help="file to predict, read as training read its data")
    predict.add_argument("--output", default=None, help="CSV, TSV or JSONL (default: <input>.predictions.csv)")
    predict.add_argument("--batch-size", type=int, default=256, help="rows per model call (default 256)")
    predict.set_defaults(fn=cmd_predict)

    stage = sub.add_parser("stage", help="run one stage alone on the artifacts in --run-dir (orchestrators)")
    stage.add_argument("stage", help="ingest | validate | preprocess | train | evaluate | export | infra_validate"
                                     " | push")
    stage.add_argument("--config", required=True, help="YAML config")
    stage.add_argument("--run-dir", required=True, help="shared folder holding every stage's output")
    stage.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    stage.set_defaults(fn=cmd_stage)

    serve = sub.add_parser("serve", help="TF-Serving-compatible REST API on an export base (exports/<model>)")
    serve.add_argument("export_base", help="folder holding numeric version folders, e.g. exports/names_gender_lstm")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    serve.add_argument("--port", type=int, default=8501, help="port (0: any free one; see --ready-file)")
    serve.add_argument("--max-request-bytes", type=int, default=16 << 20, help="larger bodies get 413")
    serve.add_argument("--timeout", type=float, default=30.0,
                       help="seconds a request waits for inference before 504 (and for a loading version, 503)")
    serve.add_argument("--max-rows", type=int, default=10_000, help="rows per request; more get 400")
    serve.add_argument("--max-elements", type=int, default=1_000_000,
                       help="JSON values (list items, object members) per request; more get 400")
    serve.add_argument("--max-string-bytes", type=int, default=4096, help="UTF-8 bytes per string; longer get 400")
    serve.add_argument("--max-generate-length", type=int, default=None,
                       help="largest max_length of a generate call (default: what the export declares, "
                            "4x its longest training target; else 256)")
    serve.add_argument("--max-generate-tokens", type=int, default=200_000,
                       help="rows x beam_width x max_length of one generate call (rows x the default length "
                            "of a generating model's serving_default); more get 400")
    serve.add_argument("--header-timeout", type=float, default=10.0,
                       help="seconds to send a request's headers; slower or idle connections are closed")
    serve.add_argument("--body-timeout", type=float, default=30.0, help="seconds to send a request's body, else 408")
    serve.add_argument("--keep-alive", type=float, default=5.0, help="seconds an idle keep-alive connection stays open")
    serve.add_argument("--max-connections", type=int, default=512,
                       help="concurrent connections; more get 503 at once")
    serve.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    serve.add_argument("--max-batch-rows", type=int, default=256, help="rows merged from concurrent requests")
    serve.add_argument("--batch-wait-ms", type=float, default=2.0,
                       help="while more requests are arriving, wait this long for them to join a batch")
    serve.add_argument("--intra-op-threads", type=int, default=1,
                       help="TensorFlow threads per op (0: all cores; 1 is fastest for small RNNs)")
    serve.add_argument("--inter-op-threads", type=int, default=0,
                       help="TensorFlow ops run at once (0: one per core; 1 lets one slow call stall all)")
    serve.add_argument("--model-name", default=None, help="name in the URL (default: the folder's name)")
    serve.add_argument("--ready-file", default=None, help="write {host, port, pid} here once listening")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(fn=cmd_serve)

    ui = sub.add_parser("ui", help="open the MLflow UI on the project's store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--backend-store-uri", "--tracking-uri", dest="backend_store_uri", default=None,
                    help="store to show (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    ui.add_argument("--workers", type=int, default=2, help="server worker processes (mlflow default: 4)")
    ui.set_defaults(fn=cmd_ui)

    sweep = sub.add_parser("sweep", help="run a pipeline for every combination of config values, ranked")
    sweep.add_argument("config", help="YAML config (its optional `sweep:` section gives a default grid)")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="values to try, e.g. --grid model.cell=simple_rnn,lstm,gru (repeatable)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value for every trial (repeatable)")
    sweep.add_argument("--random", type=int, default=None, metavar="N",
                       help="random search: run N combinations drawn from the grid (the budget)")
    sweep.add_argument("--seed", type=int, default=None, help="seed of the random draw (default 0)")
    sweep.add_argument("--metric", default=None,
                       help="rank by this metric (default: test_<main metric of the evaluation>)")
    sweep.add_argument("--goal", choices=("auto", "max", "min"), default=None,
                       help="auto: lower is better for losses and errors")
    sweep.add_argument("--to", dest="to_stage", default="evaluate", metavar="STAGE",
                       help="last stage of each trial (default evaluate: trials do not publish exports)")
    sweep.set_defaults(fn=cmd_sweep)

    runs = sub.add_parser("runs", help="table of recent MLflow runs, or --compare two of them")
    runs.add_argument("experiment", nargs="?", default=None, help="experiment name or id (default: all)")
    runs.add_argument("--sort", metavar="METRIC", default=None, help="order by a metric, e.g. test_accuracy")
    order = runs.add_mutually_exclusive_group()
    order.add_argument("--asc", dest="ascending", action="store_true", default=None, help="smallest first")
    order.add_argument("--desc", dest="ascending", action="store_false", help="largest first")
    runs.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20)")
    runs.add_argument("--metrics", default=None, metavar="M1,M2", help="metric columns (default: val_loss, test_*)")
    runs.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                      help="show what differs between two runs (id, id prefix or run name)")
    runs.add_argument("--tracking-uri", default=None,
                      help="store to read (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    runs.set_defaults(fn=cmd_runs, ascending=None)
    return p


def _disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC / EDQUOT error behind `exc` (itself or a cause), if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, stop.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _main(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop.reset()


def _main(args: argparse.Namespace) -> int:
    try:
        return args.fn(args)
    except KeyboardInterrupt as exc:
        how = "stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted"
        again = "; run the same command again to resume" if args.command in ("run", "sweep") else ""
        print(f"\nrnnpipe: {how}{again}", file=sys.stderr)
        return 130 if not isinstance(exc, Terminated) else 143
    except Exception as exc:  # noqa: BLE001 - one paragraph for errors users can fix
        full = _disk_full(exc)
        if full is not None and not os.environ.get("RNNPIPE_DEBUG"):
            where = f" writing {full.filename}" if full.filename else ""
            print(f"rnnpipe: error: no space left on device{where} ({full.strerror or 'ENOSPC'}); free some "
                  f"space (or point runs_dir / export.dir elsewhere) and run the same command again",
                  file=sys.stderr)
            return EXIT_FAILED
        if os.environ.get("RNNPIPE_DEBUG") or not isinstance(exc, _user_errors()):
            raise
        from components.config import ConfigError

        kind = "config error" if isinstance(exc, ConfigError) else "error"
        print(f"rnnpipe: {kind}: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILED


def entry() -> None:
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] == ["serve"]:
        # The HTTP server has drained and stopped. Tearing down an interpreter that holds TensorFlow
        # and loaded SavedModels takes 1-2 s and frees nothing the OS does not: skip it. (A stop
        # was measured at 1.4 s after SIGTERM, most of infra validation's time once the server is warm.)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
