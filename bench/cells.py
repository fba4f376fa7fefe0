"""SimpleRNN vs LSTM vs GRU training-step time and achieved FLOP/s (cuDNN and bf16 on a GPU).

Model per variant: `Input(seq, features) -> <Cell>(units) -> Dense(1)`, MSE, Adam,
`jit_compile=False` (as rnnpipe compiles), batch 64, features = units, random normal inputs
and targets (never zeros). Step time: the median of `--steps` single `train_on_batch` calls
after warm-up; each call returns the loss to the host, so it is synchronised, and it pays the
same per-step dispatch Keras' `fit` pays (on the TF backend `fit` also reads each step's logs).
The steps of all variants are interleaved (one step of each, round after round).

FLOPs counted (matrix products only; biases, activations, gate arithmetic, the head, the loss
and the optimizer update are left out; they are O(units) per step against O(units^2)):

    gates g:   SimpleRNN 1, GRU 3, LSTM 4
    forward, per time step: input product  x_t [B, D] @ W [D, g*U]  ->  2*B*D*g*U
                            recurrent product h [B, U] @ R [U, g*U]  ->  2*B*U*g*U
    forward, whole sequence:  F = 2 * T * B * g * U * (D + U)
    training step (forward + backward, the backward does two products per forward one:
    gradients w.r.t. inputs and w.r.t. weights):  ~3 * F = 6 * T * B * g * U * (D + U)

Achieved FLOP/s = that count / median step time. It is compared with a ceiling measured in the
same run: square float32 / bfloat16 matrix products of several sizes on the same device, each
timed as one more variant interleaved with the RNN steps (so they share the machine's load), the
ceiling being the best size's median rate (what the BLAS really delivers here; issue 16: a single
1024 product timed once before the steps overstated the fraction reached); on a known GPU also
the datasheet peak (PEAK_TFLOPS below).

On a GPU the grid also covers `use_cudnn=True` vs `False` (LSTM and GRU; SimpleRNN has no
cuDNN kernel) and float32 vs the `mixed_bfloat16` policy, and reports the cuDNN speed-up and
the bf16 speed-up as ratios measured in the same run. On a CPU the cuDNN and bf16 axes are
skipped (no cuDNN; bf16 matmuls on a CPU without AMX are emulated, not a speed-up to measure).

Run: `python -m bench.cells [--quick] [--units 128 256 512] [--seq 50 200] [--steps N]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench import common
from models.cells import BUILTIN, CELLS

GATES = {name: spec.gates for name, spec in BUILTIN.items()}  # from the cell registry (models/cells.py)
BATCH = 64

# Dense (no 2:4 sparsity) datasheet peaks in TFLOP/s. "tf32" is the tensor-core rate TF uses for
# float32 matmuls on Ampere and later (TF32 is on by default in TF), "fp32" the CUDA-core rate.
# Sources: NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100/; its tensor
# figures are "with sparsity", halved here), NVIDIA H200 datasheet
# (nvidia.com/en-us/data-center/h200/; same SM array and clocks as H100 SXM), NVIDIA A100
# datasheet (nvidia.com/en-us/data-center/a100/), NVIDIA L4 datasheet
# (nvidia.com/en-us/data-center/l4/). Keys are matched in order against the device name.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}),
    ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5}),
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    ("H100", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
)


def train_flops(cell: str, seq: int, units: int, features: int, batch: int = BATCH) -> float:
    """Matrix-product FLOPs of one training step (see the module docstring)."""
    return 6.0 * seq * batch * GATES[cell] * units * (features + units)


def datasheet_peak(device_name: str) -> dict[str, float] | None:
    """Datasheet peaks (TFLOP/s) of a GPU by name, or None if it is not in the table."""
    for key, peaks in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peaks
    return None


@dataclass(frozen=True)
class Variant:
    """One benchmarked configuration."""

    cell: str
    units: int
    seq: int
    cudnn: bool | None = None  # None: Keras' "auto" (and SimpleRNN)
    precision: str = "float32"  # or "mixed_bfloat16"

    @property
    def name(self) -> str:
        kernel = "" if self.cudnn is None else (" cudnn" if self.cudnn else " generic")
        return f"{self.cell} u{self.units} t{self.seq}{kernel} {self.precision}"


def variants(cells: list[str], units: list[int], seqs: list[int], gpu: bool,
             precisions: list[str]) -> list[Variant]:
    """The grid: on a GPU, LSTM/GRU with cuDNN on and off, for every precision."""
    out = []
    for u in units:
        for t in seqs:
            for cell in cells:
                for precision in precisions if gpu else ["float32"]:
                    fused = not BUILTIN[cell].no_kernel  # SimpleRNN has no cuDNN kernel
                    kernels: list[bool | None] = [True, False] if gpu and fused else [None]
                    out += [Variant(cell, u, t, k, precision) for k in kernels]
    return out


def build(v: Variant, seed: int) -> tuple[Any, Any, Any]:
    """(compiled model, x, y) for one variant; x and y live on the default device."""
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    kwargs: dict[str, Any] = {} if v.cudnn is None else {"use_cudnn": v.cudnn}
    inputs = keras.Input((v.seq, v.units), name="x")
    h = BUILTIN[v.cell].layer_class()(v.units, dtype=v.precision, name=v.cell, **kwargs)(inputs)
    out = keras.layers.Dense(1, dtype="float32", name="head")(h)
    model = keras.Model(inputs, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=False)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal((BATCH, v.seq, v.units), dtype="float32"))
    y = tf.constant(rng.standard_normal((BATCH, 1), dtype="float32"))
    return model, x, y


def matmul_step(dtype: str, n: int) -> Any:
    """One synchronised n x n x n matrix product in `dtype` (2 n^3 FLOPs), warmed up."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.standard_normal((n, n), dtype="float32")), dtype)
    b = tf.cast(tf.constant(rng.standard_normal((n, n), dtype="float32")), dtype)
    product = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b), "float32")))
    float(product(a, b))  # warm-up (and the GPU's cuBLAS handle)
    return lambda: float(product(a, b))  # returning the sum synchronises


def matmul_ceiling(dtype: str, n: int, repeats: int = 10) -> float:
    """Measured FLOP/s of an n x n x n matrix product in `dtype`, alone (see `matmul_step` for the interleaved one)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.standard_normal((n, n), dtype="float32")), dtype)
    b = tf.cast(tf.constant(rng.standard_normal((n, n), dtype="float32")), dtype)
    product = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b), "float32")))
    float(product(a, b))  # warm-up (and the GPU's cuBLAS handle)
    times = []
    for _ in range(repeats):
        start = common.clock()[0]
        float(product(a, b))  # returning the sum synchronises
        times.append(common.clock()[0] - start)
    return 2.0 * n**3 / common.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=list(CELLS))
    p.add_argument("--units", nargs="+", type=int, default=None)
    p.add_argument("--seq", nargs="+", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant (the first traces)")
    p.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"], help="GPU only")
    args = p.parse_args(argv)

    devices = common.gpus()
    gpu = bool(devices)
    if args.quick:
        units, seqs, steps = args.units or [128], args.seq or [50], args.steps or 3
    elif gpu:
        units, seqs, steps = args.units or [128, 256, 512], args.seq or [50, 200], args.steps or 20
    else:  # CPU: the large sizes take a second or more per step; few steps keep it to minutes
        units, seqs, steps = args.units or [128, 256, 512], args.seq or [50, 200], args.steps or 4
    steps = args.rounds or steps
    grid = variants(args.cells, units, seqs, gpu, args.precisions)
    device = devices[0]["name"] if gpu else common.machine_info()["cpu"]
    result: dict[str, Any] = {"benchmark": "cells", "device": device, "rows": [], "summary": [], "notes": []}
    if not gpu:
        result["notes"].append("no GPU visible: CPU numbers; cuDNN and bf16 comparisons need a GPU "
                               "(run `python -m bench.cells` there)")

    sizes = ([1024, 2048, 4096, 8192] if gpu else [256, 512, 1024, 2048])[: 2 if args.quick else None]
    dtypes = {"float32": "float32"}
    if gpu and "mixed_bfloat16" in args.precisions:
        dtypes["mixed_bfloat16"] = "bfloat16"
    matmuls = {f"matmul {dtype} {n}": (precision, n, matmul_step(dtype, n))
               for precision, dtype in dtypes.items() for n in sizes}
    peaks = datasheet_peak(device) if gpu else None
    if gpu and peaks is None:
        result["notes"].append(f"{device}: no datasheet peak in PEAK_TFLOPS; compared with the measured ceiling only")
    built: dict[Variant, tuple[Any, Any, Any]] = {}
    errors: dict[Variant, str] = {}
    common.log(f"cells: {len(grid)} variants, {args.warmup} warm-up + {steps} timed steps each, on {device}")
    for v in grid:
        try:
            built[v] = build(v, seed=0)
            for _ in range(args.warmup):
                built[v][0].train_on_batch(built[v][1], built[v][2])
        except Exception as exc:  # noqa: BLE001 - one failing kernel must not hide the others
            errors[v] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            built.pop(v, None)
    step_fns: dict[Any, Any] = {v: (lambda m=m, x=x, y=y: m.train_on_batch(x, y)) for v, (m, x, y) in built.items()}
    step_fns.update({key: fn for key, (_, _, fn) in matmuls.items()})  # the ceiling, interleaved with the steps
    times = common.interleaved(step_fns, steps)
    ceilings: dict[str, float] = {}
    result["matmul"] = []
    for key, (precision, n, _) in matmuls.items():
        rate = 2.0 * n**3 / common.median(times.wall(key))
        result["matmul"].append({"precision": precision, "n": n, "gflops": rate / 1e9,
                                 "spread": common.spread(times.wall(key))})
        ceilings[precision] = max(ceilings.get(precision, 0.0), rate)
    result["ceilings_gflops"] = {k: v / 1e9 for k, v in ceilings.items()}

    tf32 = _tf32_enabled()
    medians: dict[Variant, float] = {}
    for v in grid:
        row: dict[str, Any] = {"cell": v.cell, "units": v.units, "seq": v.seq, "batch": BATCH,
                               "kernel": "auto" if v.cudnn is None else ("cudnn" if v.cudnn else "generic"),
                               "precision": v.precision}
        if v in errors:
            row["error"] = errors[v]
            result["rows"].append(row)
            continue
        step = medians[v] = common.median(times.wall(v))
        flops = train_flops(v.cell, v.seq, v.units, v.units)
        row.update(step_ms=step * 1e3, spread=common.spread(times.wall(v)), gflop_per_step=flops / 1e9,
                   gflops=flops / step / 1e9, of_ceiling=flops / step / ceilings[v.precision])
        if peaks:
            key = "bf16" if "bfloat16" in v.precision else ("tf32" if tf32 else "fp32")
            row["of_peak"] = flops / step / (peaks[key] * 1e12)
            row["peak_kind"] = key
        result["rows"].append(row)
    _summaries(result, grid, medians)
    return common.finish(result, args.json)


def _tf32_enabled() -> bool:
    import tensorflow as tf

    return bool(tf.config.experimental.tensor_float_32_execution_enabled())


def _summaries(result: dict[str, Any], grid: list[Variant], medians: dict[Variant, float]) -> None:
    """Table lines: each cell vs LSTM, cuDNN vs generic, bf16 vs float32 (speed-ups)."""
    for v in grid:
        if v not in medians:
            continue
        if v.cell != "lstm" and v.cudnn in (None, True) and v.precision == "float32":
            lstm = Variant("lstm", v.units, v.seq, v.cudnn, v.precision)
            if lstm in medians:
                result["summary"].append(common.summary_line(
                    f"{v.cell} u{v.units} t{v.seq}", "steps/s", 1 / medians[v], 1 / medians[lstm], "lstm"))
        if v.cudnn is True:
            generic = Variant(v.cell, v.units, v.seq, False, v.precision)
            if generic in medians:
                result["summary"].append(common.summary_line(
                    f"{v.cell} u{v.units} t{v.seq} {v.precision}", "steps/s cudnn", 1 / medians[v],
                    1 / medians[generic], "use_cudnn=False"))
        if v.precision == "mixed_bfloat16":
            fp32 = Variant(v.cell, v.units, v.seq, v.cudnn, "float32")
            if fp32 in medians:
                result["summary"].append(common.summary_line(
                    f"{v.name}", "steps/s bf16", 1 / medians[v], 1 / medians[fp32], "float32"))
    rates = [r["gflops"] for r in result["rows"] if "gflops" in r]
    if rates:
        best = max((r for r in result["rows"] if "gflops" in r), key=lambda r: r["gflops"])
        result["summary"].append(common.summary_line(
            f"best: {best['cell']} u{best['units']} t{best['seq']} {best['kernel']} {best['precision']}",
            "GFLOP/s (matmul)", best["gflops"], result["ceilings_gflops"][best["precision"]],
            "matmul ceiling (best of several sizes, interleaved)"))


if __name__ == "__main__":
    main()
