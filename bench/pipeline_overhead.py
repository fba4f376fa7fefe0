"""rnnpipe's training stage vs a minimal hand-written `model.fit`, same model, data and epochs.

(a) `components.training.run` on a real preprocess artifact (made by
    `pipeline.runner.run(config, to_stage="preprocess")`), with everything that stage does:
    tf.data input, BackupAndRestore epoch checkpoints, CSV log, NaN guard, cuDNN report, and
    saving the model, history and learning-curve plot; MLflow tracking is off.
(b) `models.build.build_model` + the same compile, then `model.fit` fed by the same tf.data
    pipeline the stage uses (`components.training.split_dataset`), same epochs and validation
    data, and nothing else: the like-for-like baseline (the target is held against it: parity);
(c) the same plain `model.fit` on in-memory NumPy arrays (Keras' own array adapter) with the
    same batch size, epochs, shuffling and validation data: most of (a)'s lead over (c) is
    tf.data against Keras' NumPy adapter, not anything rnnpipe adds (issue 16).

Both get one epoch-level timing callback (a clock read per epoch). Reported per case:
- steady examples/s: training examples per second over the epochs after the first (which
  traces the graphs): the stage's training throughput. The ratio a/b is held to the target
  (rnnpipe >= 0.97 of plain Keras on the same tf.data pipeline); the NumPy ratio is shown beside it;
- end-to-end examples/s: epochs x examples over the whole call (build, fit, save...), and the
  seconds each spends outside its epochs (fixed costs, which a longer training amortises).
Every figure comes from wall seconds and, as `cpu`, from this process's CPU seconds (steadier
when other jobs share the machine).

Each case's note says how far the ratio can be trusted, from two measurements taken in the same run:
- `ratio_ci95`: a bootstrap 95% interval of the steady wall ratio, resampling calls and then epochs within
  them (epochs of the same work vary by 2x on a shared 2-core machine, and a call's epochs vary together);
  an interval that holds the target means a miss is within the noise;
- `hooks_share`: the stage's own per-step work, timed alone: its callbacks' batch hooks (the only code the
  stage adds inside an epoch) against plain `fit`'s, per step, as a share of a steady step.

Cases: one many_to_one config (names -> gender) and one seq2seq config, each with LSTM and GRU
(`--set model.cell=...`), `data.max_examples` and a few epochs to keep it short.
Run: `python -m bench.pipeline_overhead [--quick] [--configs a.yaml b.yaml] [--cells lstm gru]`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from bench import common

TARGET = 0.97
MANY_TO_ONE = "names_gender_lstm.yaml"
# seattle-temps first: its encoder-decoder trains in seconds; cmudict's attention model takes
# minutes per variant on a 2-core CPU (pass `--configs configs/cmudict_g2p_lstm.yaml` for it)
SEQ2SEQ = ("seattle_temps_forecast_gru.yaml", "cmudict_g2p_lstm.yaml")


def default_configs() -> list[str]:
    """One many_to_one config and the first seq2seq config that exists."""
    seq2seq = [name for name in SEQ2SEQ if (common.CONFIGS / name).is_file()][:1]
    return [MANY_TO_ONE, *seq2seq]


def epoch_clock() -> Any:
    """A callback keeping the (wall, CPU) seconds of each epoch in `.seconds`."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[tuple[float, float]] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start = common.clock()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            now = common.clock()
            self.seconds.append((now[0] - self._start[0], now[1] - self._start[1]))

    return EpochClock()


def rnnpipe_stage(config: Any, art: Any, workdir: Path) -> list[tuple[float, float]]:
    """Run the training stage once in a fresh folder; returns its epoch seconds."""
    from components import training
    from pipeline.runner import StageContext

    out, scratch = workdir / "out", workdir / "scratch"
    shutil.rmtree(workdir, ignore_errors=True)
    out.mkdir(parents=True)
    scratch.mkdir()
    clock = epoch_clock()
    ctx = StageContext("train", log=lambda _: None, scratch=scratch, callbacks=[clock])
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # its per-epoch log lines
        training.run({"preprocess": art}, out, ctx, model=config.model, train=config.train)
    return clock.seconds


def plain_keras(config: Any, art: Any, feed: str = "numpy") -> list[tuple[float, float]]:
    """The hand-written baseline: build, compile, fit on NumPy arrays (`feed="numpy"`) or on the
    stage's own tf.data pipeline (`feed="tf.data"`); returns epoch seconds."""
    import keras

    from components.preprocessing import load_split
    from components.training import optimizer, split_dataset
    from models.build import build_model, loss_and_metrics, training_data

    io = art.properties["io"]
    train, val = load_split(art, "train"), load_split(art, "validation")
    x, y = training_data(config.model, io, train["x"], train["y"])
    vx, vy = training_data(config.model, io, val["x"], val["y"])
    keras.utils.set_random_seed(config.train.seed)
    net = build_model(config.model, io)
    loss, metrics = loss_and_metrics(io)
    net.compile(optimizer=optimizer(config.train), loss=loss, metrics=metrics, jit_compile=False)
    clock = epoch_clock()
    if feed == "tf.data":
        train_ds = split_dataset(art, "train", config.model, config.train, shuffle=True)
        val_ds = split_dataset(art, "validation", config.model, config.train) if len(vy) else None
        net.fit(train_ds, epochs=config.train.epochs, shuffle=False, validation_data=val_ds, callbacks=[clock],
                verbose=0)
    else:
        net.fit(x, y, batch_size=config.train.batch_size, epochs=config.train.epochs, shuffle=True,
                validation_data=(vx, vy) if len(vy) else None, callbacks=[clock], verbose=0)
    return clock.seconds


def hook_seconds(config: Any, art: Any, workdir: Path, stage: bool, steps: int = 2000) -> tuple[float, float]:
    """(wall, CPU) seconds per step of the per-batch callback dispatch alone, with the stage's callbacks (and its
    verbose=2 progress logger) or plain `fit`'s (the clock and History): `fit`'s own batch-hook calls, fed
    one real step's logs, `steps` times."""
    import keras

    from components.training import compiled_model, fit_callbacks, split_dataset
    from pipeline.runner import StageContext

    net = compiled_model(config.model, config.train, art.properties["io"])
    logs = net.train_on_batch(*next(iter(split_dataset(art, "train", config.model, config.train))), return_dict=True)
    logs = {k: keras.ops.convert_to_tensor(v) for k, v in logs.items()}  # as `fit` hands them: tensors
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    own = fit_callbacks(StageContext("train", log=lambda _: None, scratch=workdir), config.train, True) if stage else []
    # verbose=2: the stage's progress logger when its output is not a terminal (as here); on one, verbose=1 also
    # redraws a progress bar each step
    hooks = keras.callbacks.CallbackList([*own, epoch_clock()], add_history=True, add_progbar=stage,
                                         verbose=2 if stage else 0, epochs=1, steps=steps, model=net)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        hooks.on_train_begin()
        hooks.on_epoch_begin(0)
        start = common.clock()
        for step in range(steps):
            hooks.on_train_batch_begin(step)
            hooks.on_train_batch_end(step, logs)
        hooks.on_train_end()  # waits for the async hooks still running
        end = common.clock()
    return (end[0] - start[0]) / steps, (end[1] - start[1]) / steps


def ratio_interval(stage: list[list[float]], plain: list[list[float]], draws: int = 2000) -> tuple[float, float]:
    """Bootstrap 95% interval of median(plain) / median(stage) (a throughput ratio) from per-epoch seconds
    grouped by call: each draw resamples the calls, then the epochs within each drawn call."""
    import numpy as np

    rng = np.random.default_rng(0)

    def draw(calls: list[list[float]]) -> float:
        picked = [calls[i] for i in rng.integers(len(calls), size=len(calls))]
        return float(np.median(np.concatenate([rng.choice(c, len(c)) for c in picked])))

    ratios = [draw(plain) / draw(stage) for _ in range(draws)]
    return float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


def measure(path: str, cell: str, workdir: Path, *, examples: int, epochs: int, rounds: int,
            extra: dict[str, Any], warm_up: bool) -> dict[str, Any]:
    """One (config, cell) case: interleaved rounds of both variants."""
    from components.preprocessing import load_split

    config = common.load_config(path, workdir, {"model.cell": cell, "data.max_examples": examples,
                                                "train.epochs": epochs, **extra})
    art = common.preprocess(config)
    n = len(load_split(art, "train")["y"])
    runs: dict[str, list[list[tuple[float, float]]]] = {"rnnpipe": [], "keras": [], "numpy": []}  # epochs per call
    variants = {  # keras: plain fit on the same tf.data pipeline; numpy: plain fit on arrays
        "rnnpipe": lambda: runs["rnnpipe"].append(rnnpipe_stage(config, art, workdir / "stage")),
        "keras": lambda: runs["keras"].append(plain_keras(config, art, "tf.data")),
        "numpy": lambda: runs["numpy"].append(plain_keras(config, art, "numpy")),
    }
    common.log(f"pipeline_overhead: {config.name} cell={cell} n={n} epochs={epochs} rounds={rounds}")
    if warm_up:  # imports and one-time set-up (matplotlib, h5py...), once per process
        for fn in variants.values():
            fn()
        for values in runs.values():
            values.clear()
    times = common.interleaved(variants, rounds)
    row: dict[str, Any] = {"config": config.name, "topology": config.model.topology, "cell": cell,
                           "train_examples": n, "epochs": epochs, "rounds": rounds}
    for name in variants:
        for kind, k in (("wall", 0), ("cpu", 1)):
            steady = [e[k] for call in runs[name] for e in call[1:]]  # the first epoch traces the graphs
            row[f"{name}_{kind}_steady_ex_s"] = n / common.median(steady)
            row[f"{name}_{kind}_e2e_ex_s"] = n * epochs / common.median(times[name][kind])
        row[f"{name}_first_epoch_s"] = common.median([call[0][0] for call in runs[name]])
        row[f"{name}_outside_fit_s"] = common.median(
            [w - sum(e[0] for e in call) for w, call in zip(times.wall(name), runs[name])])
        row[f"{name}_spread"] = common.spread([e[0] for call in runs[name] for e in call[1:]])
    lo, hi = ratio_interval([[e[0] for e in call[1:]] for call in runs["rnnpipe"]],
                            [[e[0] for e in call[1:]] for call in runs["keras"]])
    row["ratio_ci95"] = f"{lo:.3f}-{hi:.3f}"
    stage_hooks, plain_hooks = (hook_seconds(config, art, workdir / "hooks", stage) for stage in (True, False))
    row["stage_hooks_us"], row["plain_hooks_us"] = stage_hooks[0] * 1e6, plain_hooks[0] * 1e6
    step = common.median([e[0] for call in runs["keras"] for e in call[1:]]) / -(-n // config.train.batch_size)
    row["hooks_share"] = (stage_hooks[0] - plain_hooks[0]) / step  # of a steady step's wall time
    for what in ("steady", "e2e"):
        for kind in ("wall", "cpu"):
            row[f"{what}_{kind}_ratio"] = row[f"rnnpipe_{kind}_{what}_ex_s"] / row[f"keras_{kind}_{what}_ex_s"]
            row[f"{what}_{kind}_numpy_ratio"] = row[f"rnnpipe_{kind}_{what}_ex_s"] / row[f"numpy_{kind}_{what}_ex_s"]
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=None, help="config paths (default: names + a seq2seq)")
    p.add_argument("--cells", nargs="+", default=["lstm", "gru"])
    p.add_argument("--examples", type=int, default=None, help="data.max_examples")
    p.add_argument("--epochs", type=int, default=None)
    args = p.parse_args(argv)
    quick = args.quick
    examples = args.examples or (256 if quick else 4000)  # epochs of ~1 s: shorter ones are noise on 2 cores
    epochs = args.epochs or (2 if quick else 6)
    rounds = args.rounds or (1 if quick else 3)
    extra = {"model.units": 16, "model.embedding_dim": 8} if quick else {}
    configs = args.configs or default_configs()[: 1 if quick else None]
    result: dict[str, Any] = {"benchmark": "pipeline_overhead", "rows": [], "summary": [], "notes": []}
    workdir = common.scratch_dir("overhead")
    try:
        for path in configs:
            for cell in args.cells:
                row = measure(path, cell, workdir / Path(path).stem, examples=examples, epochs=epochs,
                              rounds=rounds, extra=extra, warm_up=not quick and not result["rows"])
                result["rows"].append(row)
                case = f"{row['config']} {cell}"
                result["summary"].append(common.summary_line(
                    case, "train examples/s (steady epochs)", row["rnnpipe_wall_steady_ex_s"],
                    row["keras_wall_steady_ex_s"], "plain model.fit, same tf.data", TARGET, row["steady_cpu_ratio"]))
                result["notes"].append(
                    f"{case}: steady wall ratio {row['steady_wall_ratio']:.3f} (95% CI {row['ratio_ci95']}, "
                    f"resampling calls, then their epochs); the stage's batch hooks {row['stage_hooks_us']:.0f} "
                    f"us/step vs plain fit's {row['plain_hooks_us']:.0f} us = {row['hooks_share']:+.2%} of a step")
                result["summary"].append(common.summary_line(
                    case, "train examples/s (steady epochs)", row["rnnpipe_wall_steady_ex_s"],
                    row["numpy_wall_steady_ex_s"], "plain model.fit, NumPy arrays", None,
                    row["steady_cpu_numpy_ratio"]))
                result["summary"].append(common.summary_line(
                    case, f"examples/s end-to-end ({epochs} epochs)", row["rnnpipe_wall_e2e_ex_s"],
                    row["keras_wall_e2e_ex_s"], "plain model.fit, same tf.data", None, row["e2e_cpu_ratio"]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return common.finish(result, args.json)


if __name__ == "__main__":
    main()
