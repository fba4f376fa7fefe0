"""Fixed costs inside the MLflow run (issue 16 item 4), each next to the path it replaced.

One tiny names -> gender pipeline is run once (tracking on, infra validation on); then, inside one
MLflow run of its store, interleaved (ABBA, medians, wall and process CPU seconds):
- keras_model: `Tracker._log_keras_model` (logs the `model.keras` train wrote, with the signature train
  wrote) vs the old path (load the file, `predict` the input example for the signature, then
  `mlflow.keras.log_model`, which saves the model again);
- pyfunc registration: `registry.log_pyfunc` (the SavedModel copied into the run; no serving-input
  check, which loads the SavedModel again) vs plain `mlflow.pyfunc.log_model` with the same arguments;
- export: `serving_endpoint` run on the canaries, then handed to `write_saved_model` (the function the
  SavedModel holds computes the canaries' answers) vs the old path (a second tf.function for the
  canaries, then `write_saved_model` builds and traces its own);
- plots: what rendering each PNG of that run costs (learning curves, a confusion matrix), to size what
  rendering them lazily could save.

Run: `python -m bench.fixed_costs [--quick] [--rounds N]`.
"""

from __future__ import annotations

import os
from typing import Any

from bench import common


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return common.scratch_main(argv, __doc__, "fixed", _measure)


def _measure(workdir: Any, rounds: int, args: Any) -> dict[str, Any]:
    import itertools

    import keras
    import mlflow
    import mlflow.keras
    import numpy as np
    import tensorflow as tf
    from mlflow.models import infer_signature

    from components import export
    from components import stage_files as files
    from components.plots import heatmap, learning_curves
    from components.preprocessing import Codec
    from models import load_model
    from pipeline import registry, runner, store, tracking

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    config = common.load_config("names_gender_lstm.yaml", workdir, {
        "tracking.enabled": True, "data.max_examples": 300, "train.epochs": 1, "model.units": 16,
        "tracking.artifact_location": str(workdir / "mlruns" / "artifacts"), "export.require_blessing": False})
    result = runner.run(config, log=lambda _: None)
    train, push = result.artifacts["train"], result.artifacts["push"]
    info = push.properties["register"]
    tracker = tracking.Tracker(config, "bench")
    signature, example = registry._pyfunc_signature(info)
    m = config.model

    def keras_old() -> None:  # what _log_keras_model did before issue 16
        model = keras.saving.load_model(files.model_file(train), compile=False, safe_mode=True)
        ex = tracking._example_inputs(train.path(files.INPUT_EXAMPLE))
        mlflow.keras.log_model(model, name="keras_model", signature=infer_signature(ex, model.predict(ex, verbose=0)),
                               pip_requirements=store.requirements(),
                               tags={"pipeline": config.name, "topology": m.topology, "cell": m.cell})

    def pyfunc_old() -> None:
        mlflow.pyfunc.log_model(name=registry.PYFUNC_NAME, python_model=registry.saved_model_pyfunc(),
                                artifacts={"saved_model": info["path"]}, signature=signature,
                                input_example=example, pip_requirements=store.requirements())

    pre = result.artifacts["preprocess"]
    net, codec, io = load_model(files.model_file(train), cells=[m.cell]), Codec.load(pre), pre.properties["io"]
    extra = export.extra_signature(codec, m)
    raw = export.raw_inputs(export.canary_inputs(pre, extra=[spec.name for spec in extra]), io["x"])
    folders = itertools.count()

    def export_new() -> None:
        serve = export.serving_endpoint(net, codec, io, m)
        serve(*raw)
        export.write_saved_model(net, codec, io, workdir / f"sm{next(folders)}", m, serve)

    def export_old() -> None:  # what the export stage did before
        traced = tf.function(export.serving_function(net, codec, io, m),
                             input_signature=[export.input_signature(io["x"], m), *extra])
        traced(*raw)
        export.write_saved_model(net, codec, io, workdir / f"sm{next(folders)}", m)

    history = files.history(train)
    keras_logged = train.properties["log"]["keras_model"]
    variants = {
        "keras_model: log the saved file": lambda: tracker._log_keras_model(train, keras_logged),
        "keras_model: reload, predict, re-save": keras_old,
        "pyfunc: log_pyfunc": lambda: registry.log_pyfunc(info["path"], signature, example),
        "pyfunc: mlflow.pyfunc.log_model": pyfunc_old,
        "export: canaries through the saved function": export_new,
        "export: a second function for the canaries": export_old,
        "plot: learning curves": lambda: learning_curves(history, workdir / "lc.png"),
        "plot: confusion matrix": lambda: heatmap(np.eye(2, dtype=int) * 40, workdir / "cm.png", "Confusion",
                                                  ["female", "male"], ["female", "male"]),
    }
    mlflow.set_tracking_uri(config.tracking.uri)
    with mlflow.start_run(experiment_id=store.experiment_id(config)):
        for fn in variants.values():  # warm-up: imports, first traces
            fn()
        times = common.interleaved(variants, rounds)
    rows = [{"variant": name, "wall_s": common.median(times.wall(name)), "cpu_s": common.median(times.cpu(name)),
             "wall_spread": common.spread(times.wall(name))} for name in variants]
    by = {r["variant"]: r for r in rows}
    summary, notes = [], ["steady state after one warm-up call of each variant (imports excluded; each export call "
                          "builds new tf.functions, so its traces are counted)"]
    for case, new, old in (("keras_model logging", "keras_model: log the saved file",
                            "keras_model: reload, predict, re-save"),
                           ("pyfunc registration", "pyfunc: log_pyfunc", "pyfunc: mlflow.pyfunc.log_model"),
                           ("export (canaries + SavedModel)", "export: canaries through the saved function",
                            "export: a second function for the canaries")):
        summary.append(common.summary_line(
            case, "speed-up (old s / new s)", by[old]["wall_s"] / by[new]["wall_s"], 1.0, old,
            cpu_ratio=by[old]["cpu_s"] / by[new]["cpu_s"]))
        notes.append(f"{case}: saves {by[old]['wall_s'] - by[new]['wall_s']:.2f} s wall, "
                     f"{by[old]['cpu_s'] - by[new]['cpu_s']:.2f} s CPU per run")
    return common.finish({"benchmark": "fixed_costs", "rows": rows, "summary": summary, "notes": notes}, args.json)

if __name__ == "__main__":
    main()
