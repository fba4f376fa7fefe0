"""The model zoo: every topology x cell x {1, 2 layers} x {uni, bidirectional} and each topology's variants.

- build + output shapes: the full topology x cell x layers x direction grid on each topology's
  base io, and every variant x every cell (layers/direction rotating), eager forward on 3 rows;
- train / `.keras` round trip / SavedModel export: a representative subset (every topology, every
  cell, every context/feed/attention kind at least once), one shared test per model;
- golden values: in tests/test_models_golden.py;
- config errors, teacher forcing, mixed precision, the token loss/metric.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.config import CELLS, TOPOLOGIES, ConfigError, ModelConfig, TrainConfig

keras = pytest.importorskip("keras")

from models import build, load_model  # noqa: E402
from tests.model_support import BASE, OUT_SHAPES, VARIANT, VARIANTS, io_of, make_data, model_cfg  # noqa: E402


def refused(topology: str, y: str, bidirectional: bool) -> bool:
    """Combinations that must fail with a ConfigError naming model.bidirectional."""
    return bidirectional and (topology == "one_to_many" or (topology == "many_to_many" and y in ("lm", "steps")))


def build_and_run(variant: str, cell: str, num_layers: int, bidirectional: bool, n: int = 3) -> Any:
    _, topology, x_kind, y_kind, extra = VARIANT[variant]
    cfg = model_cfg(topology, cell, num_layers, bidirectional, **extra)
    io = io_of(x_kind, y_kind)
    if refused(topology, y_kind, bidirectional):
        with pytest.raises(ConfigError, match="model.bidirectional"):
            build.check(cfg, TrainConfig())
            build.build_model(cfg, io)
        return None
    build.check(cfg, TrainConfig())
    model = build.build_model(cfg, io)
    x, y = make_data(x_kind, y_kind, n=n)
    inputs, _ = build.training_data(cfg, io, x, y)
    out = model(inputs, training=False)
    assert tuple(out.shape) == (n, *OUT_SHAPES[y_kind])
    assert out.dtype == "float32"
    assert np.isfinite(np.asarray(out)).all()
    return model


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["1layer", "2layers"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_topology_cell_depth_direction_builds(topology: str, cell: str, num_layers: int,
                                                    bidirectional: bool) -> None:
    model = build_and_run(BASE[topology], cell, num_layers, bidirectional)
    if model is not None:
        recurrent = [layer for layer in model.layers if "lstm" in layer.name or "gru" in layer.name
                     or "simple_rnn" in layer.name]
        assert recurrent and all(cell in layer.name for layer in recurrent)


ROTATION = list(itertools.product((1, 2), (False, True)))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("variant", [v[0] for v in VARIANTS if v[0] not in BASE.values()])
def test_every_variant_builds_for_every_cell(variant: str, cell: str) -> None:
    index = [v[0] for v in VARIANTS].index(variant) + CELLS.index(cell)
    num_layers, bidirectional = ROTATION[index % len(ROTATION)]
    if refused(VARIANT[variant][1], VARIANT[variant][3], bidirectional):
        bidirectional = False  # refusals are covered by the grid test and test_config_errors
    build_and_run(variant, cell, num_layers, bidirectional)


# --------------------------------------------------------------------------------------------
# Train a few steps, .keras round trip, SavedModel export

OTHER_VARIANTS = [  # (variant, cell, num_layers, bidirectional): the non-base variants, cells rotated
    ("1vN-every-series", "simple_rnn", 1, False),
    ("Nv1-attention", "gru", 2, False),
    ("Nv1-series-forecast", "simple_rnn", 1, False),
    ("NvN-lm", "lstm", 2, False),
    ("s2s-attention-every_step-bahdanau", "gru", 1, True),
    ("s2s-projected-every_step", "simple_rnn", 2, False),
    ("s2s-series-forecast", "gru", 1, True),
    ("1vN-first-tokens", "gru", 2, False),
    ("1vN-first-series", "simple_rnn", 1, False),
    ("s2s-pooled-mean-initial_state", "lstm", 2, True),
    ("s2s-pooled-max-every_step", "gru", 1, True),
    ("s2s-pooled-attention-initial_state", "simple_rnn", 2, False),
    ("s2s-pooled-attention-every_step", "lstm", 1, False),
    ("s2s-pooled-mean-every_step", "simple_rnn", 1, True),
    ("s2s-pooled-max-initial_state", "lstm", 1, False),
    ("s2s-series-pooled", "gru", 2, True),
]


def _serve(path: Path, inputs: Any) -> np.ndarray:
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    feed = inputs if isinstance(inputs, dict) else {next(iter(fn.structured_input_signature[1])): inputs}
    (out,) = fn(**{k: tf.constant(v) for k, v in feed.items()}).values()
    return out.numpy()


# the whole grid (topology x cell x depth x direction, on each topology's base variant) and the
# other variants in a rotation of cells, depths and directions
TRAINED = [(BASE[t], c, n, b) for t in TOPOLOGIES for c in CELLS for n in (1, 2) for b in (False, True)
           if not refused(t, VARIANT[BASE[t]][3], b)] + OTHER_VARIANTS


@pytest.mark.slow
@pytest.mark.parametrize("variant,cell,num_layers,bidirectional", TRAINED,
                         ids=[f"{v}-{c}-{n}-{'bi' if b else 'uni'}" for v, c, n, b in TRAINED])
def test_trains_round_trips_and_exports(tmp_path: Path, variant: str, cell: str, num_layers: int,
                                        bidirectional: bool) -> None:
    _, topology, x_kind, y_kind, extra = VARIANT[variant]
    keras.utils.set_random_seed(0)
    cfg = model_cfg(topology, cell, num_layers, bidirectional, **extra)
    io = io_of(x_kind, y_kind)
    model = build.build_model(cfg, io)
    loss, metrics = build.loss_and_metrics(io)
    # run_eagerly: a few steps on tiny shapes are cheaper than tracing a train function
    model.compile(keras.optimizers.Adam(0.05), loss=loss, metrics=metrics, jit_compile=False, run_eagerly=True)
    x, y = make_data(x_kind, y_kind)
    inputs, targets = build.training_data(cfg, io, x, y)
    losses = [float(model.train_on_batch(inputs, targets)[0]) for _ in range(3)]
    assert losses[-1] < losses[0], losses

    expected = np.asarray(model(inputs, training=False))
    model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(np.asarray(loaded(inputs, training=False)), expected, rtol=1e-6, atol=1e-6)
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]

    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    np.testing.assert_allclose(_serve(tmp_path / "saved", inputs), expected, rtol=1e-5, atol=1e-5)



# --------------------------------------------------------------------------------------------
# Config errors, teacher forcing, loss/metric, mixed precision


@pytest.mark.parametrize("cfg,io,where", [
    (model_cfg("one_to_many", bidirectional=True), io_of("category", "tokens"), "model.bidirectional=true"),
    (model_cfg("many_to_many", bidirectional=True), io_of("tokens", "lm"), "model.bidirectional=true"),
    (model_cfg("many_to_many", bidirectional=True), io_of("series", "steps"), "model.bidirectional=true"),
    (model_cfg("many_to_one"), io_of("vector", "label"), "cannot map vector -> label"),
    (model_cfg("seq2seq"), io_of("tokens", "labels"), "cannot map tokens -> labels"),
    (model_cfg("many_to_one", unroll=True), io_of("tokens", "label"), "model.unroll=true"),
    (model_cfg("seq2seq", context="attention", context_feed="every_step", recurrent_dropout=0.2),
     io_of("tokens", "tokens"), "model.recurrent_dropout=0.2"),
])
def test_config_errors(cfg: ModelConfig, io: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        build.check(cfg, TrainConfig())
        build.build_model(cfg, io)


def test_bidirectional_allowed_where_it_makes_sense() -> None:
    for topology, x, y in (("many_to_many", "tokens", "labels"), ("seq2seq", "tokens", "tokens"),
                           ("many_to_one", "tokens", "label"), ("one_to_one", "vector", "label")):
        cfg = model_cfg(topology, bidirectional=True)
        build.check(cfg, TrainConfig())
        build.build_model(cfg, io_of(x, y))


def test_unrolled_series_model_builds_with_fixed_length() -> None:
    cfg = model_cfg("many_to_one", cell="gru", unroll=True)
    model = build.build_model(cfg, io_of("series", "label"))
    assert model.input_shape == (None, 6, 2)


def test_teacher_forcing_shifts_targets_right_after_the_start_id() -> None:
    cfg, io = model_cfg("seq2seq"), io_of("tokens", "tokens")
    y = np.array([[4, 5, 3, 0, 0], [6, 6, 6, 6, 3]], "int32")
    inputs, targets = build.training_data(cfg, io, np.zeros((2, 6), "int32"), y)
    np.testing.assert_array_equal(inputs["decoder_inputs"], [[2, 4, 5, 3, 0], [2, 6, 6, 6, 6]])
    assert targets is y and set(inputs) == {"inputs", "decoder_inputs"}
    for topology, x, yk in (("many_to_one", "tokens", "label"), ("seq2seq", "series", "series"),
                            ("one_to_many", "vector", "series")):
        xs, ys = make_data(x, yk, n=2)
        assert build.training_data(model_cfg(topology), io_of(x, yk), xs, ys) == (xs, ys)


def test_token_loss_and_accuracy_ignore_padding() -> None:
    loss, (metric,) = build.loss_and_metrics(io_of("tokens", "tokens"))
    y = np.array([[4, 3, 0]])
    good = np.eye(7)[[4, 3, 5]][None] * 0.94 + 0.01  # wrong only at the padded step
    metric.update_state(y, good)
    assert float(metric.result()) == 1.0
    padded_wrong = np.eye(7)[[4, 3, 1]][None] * 0.94 + 0.01
    assert float(loss(y, good)) == pytest.approx(float(loss(y, padded_wrong)))
    assert build.loss_and_metrics(io_of("tokens", "label"))[0] == "sparse_categorical_crossentropy"
    assert build.loss_and_metrics(io_of("series", "series")) == ("mse", ["mae"])


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_outputs_float32(policy: str) -> None:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        for variant in ("s2s-attention-every_step-bahdanau", "Nv1-series-forecast", "Nv1-max"):
            model = build_and_run(variant, "lstm", 1, False)
            assert model.get_layer("outputs").compute_dtype == "float32"
            assert any(layer.compute_dtype == policy.split("_")[1] for layer in model.layers)
    finally:
        keras.config.set_dtype_policy(previous)
