"""Training throughput through rnnpipe's tf.data input pipeline vs the same tensors in memory.

One compiled model (`components.training.compiled_model`), one epoch per call, interleaved:
- tf.data: `components.training.split_dataset` on the stored preprocess artifact (load the
  split's .npz, shape it for the topology, cache, shuffle, batch, prefetch), exactly what the
  training stage fits on; built once, like the stage does, and iterated once per call (so the
  calls after the first read the cache, as epochs 2.. of a training do); building it (once per
  training) is timed apart;
- memory: `model.fit(x, y, batch_size, shuffle=True)` on the same arrays already in memory
  (Keras slices and shuffles them itself).
Target: tf.data >= 0.95 of memory. Also measured: the input pipeline alone (iterating the
dataset without training) in examples/s: its headroom over the training rate says whether
the input can be the bottleneck at all.

Run: `python -m bench.input_pipeline [--quick] [--configs a.yaml ...] [--examples N]`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench import common
from bench.pipeline_overhead import default_configs

TARGET = 0.95


def measure(path: str, workdir: Path, *, examples: int, rounds: int, extra: dict[str, Any]) -> dict[str, Any]:
    """One config: interleaved epochs fed both ways, plus the input pipeline alone."""
    from components import training
    from components.preprocessing import load_split
    from models.build import training_data

    config = common.load_config(path, workdir, {"data.max_examples": examples, **extra})
    art = common.preprocess(config)
    io = art.properties["io"]
    arrays = load_split(art, "train")
    x, y = training_data(config.model, io, arrays["x"], arrays["y"])
    n = len(arrays["y"])
    batch = training.global_batch_size(config.train)
    net = training.compiled_model(config.model, config.train, io)

    def dataset() -> Any:
        return training.split_dataset(art, "train", config.model, config.train, shuffle=True)

    build = common.median(common.interleaved({"build": dataset}, 3).wall("build"))
    ds = dataset()

    def input_only() -> None:
        for _ in ds:
            pass

    variants = {
        "tf.data": lambda: net.fit(ds, epochs=1, verbose=0),
        "memory": lambda: net.fit(x, y, batch_size=batch, epochs=1, shuffle=True, verbose=0),
        "input only": input_only,
    }
    common.log(f"input_pipeline: {config.name} n={n} batch={batch} rounds={rounds}")
    for fn in variants.values():  # warm-up: traces the train step for both feeds
        fn()
    times = common.interleaved(variants, rounds)
    row: dict[str, Any] = {"config": config.name, "cell": config.model.cell, "train_examples": n,
                           "batch": batch, "rounds": rounds, "dataset_build_s": build}
    for name in variants:
        key = name.replace(" ", "_").replace(".", "")
        row[f"{key}_ex_s"] = n / common.median(times.wall(name))
        row[f"{key}_cpu_ex_s"] = n / common.median(times.cpu(name))
        row[f"{key}_spread"] = common.spread(times.wall(name))
    row["ratio"] = row["tfdata_ex_s"] / row["memory_ex_s"]
    row["cpu_ratio"] = row["tfdata_cpu_ex_s"] / row["memory_cpu_ex_s"]
    row["input_headroom"] = row["input_only_ex_s"] / row["tfdata_ex_s"]
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=None, help="config paths (default: names + a seq2seq)")
    p.add_argument("--examples", type=int, default=None, help="data.max_examples")
    args = p.parse_args(argv)
    examples = args.examples or (512 if args.quick else 4000)
    rounds = args.rounds or (2 if args.quick else 8)
    extra = {"model.units": 16, "model.embedding_dim": 8} if args.quick else {}
    configs = args.configs or default_configs()[: 1 if args.quick else None]
    result: dict[str, Any] = {"benchmark": "input_pipeline", "rows": [], "summary": [], "notes": []}
    workdir = common.scratch_dir("input")
    try:
        for path in configs:
            row = measure(path, workdir / Path(path).stem, examples=examples, rounds=rounds, extra=extra)
            result["rows"].append(row)
            result["summary"].append(common.summary_line(
                f"{row['config']} {row['cell']}", "train examples/s", row["tfdata_ex_s"], row["memory_ex_s"],
                "fit on in-memory arrays", TARGET, row["cpu_ratio"]))
            result["summary"].append(common.summary_line(
                f"{row['config']} {row['cell']}", "input-only examples/s", row["input_only_ex_s"],
                row["tfdata_ex_s"], "training through tf.data"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return common.finish(result, args.json)


if __name__ == "__main__":
    main()
