"""The model zoo: every topology x cell x {1, 2 layers} x {uni, bidirectional} and each topology's variants.

- build + output shapes: the full topology x cell x layers x direction grid on each topology's
  base io, and every variant x every cell (layers/direction rotating), eager forward on 3 rows;
- train / `.keras` round trip / SavedModel export: a representative subset (every topology, every
  cell, every context/feed/attention kind at least once), one shared test per model;
- golden values: one small model per topology (two for seq2seq), weights set to a fixed pattern,
  expected outputs computed here with NumPy cell equations;
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

X_SPECS: dict[str, dict[str, Any]] = {
    "tokens": {"kind": "tokens", "vocab_size": 9, "length": 6},
    "series": {"kind": "series", "features": 2, "length": 6},
    "vector": {"kind": "vector", "features": 3},
    "category": {"kind": "category", "vocab_size": 4},
}
Y_SPECS: dict[str, dict[str, Any]] = {
    "label": {"kind": "label", "num_classes": 3},
    "labels": {"kind": "labels", "num_classes": 3, "length": 6},
    "lm": {"kind": "tokens", "vocab_size": 9, "length": 6, "language_model": True},
    "tokens": {"kind": "tokens", "vocab_size": 7, "length": 5, "start_id": 2, "end_id": 3},
    "series": {"kind": "series", "features": 2, "length": 4},
    "steps": {"kind": "series", "features": 2, "length": 6},  # per-step series (many_to_many)
}
OUT_SHAPES = {"label": (3,), "labels": (6, 3), "lm": (6, 9), "tokens": (5, 7), "series": (4, 2), "steps": (6, 2)}


def io_of(x: str, y: str) -> dict[str, Any]:
    return {"x": dict(X_SPECS[x]), "y": dict(Y_SPECS[y])}


def make_data(x_kind: str, y_kind: str, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Encoded arrays as preprocessing writes them (right-padded ids, END + 0-padded targets)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 7, n)
    steps = np.arange(6)[None] < lengths[:, None]
    x = {"tokens": lambda: np.where(steps, rng.integers(4, 9, (n, 6)), 0).astype("int32"),
         "series": lambda: rng.normal(size=(n, 6, 2)).astype("float32"),
         "vector": lambda: rng.normal(size=(n, 3)).astype("float32"),
         "category": lambda: rng.integers(1, 4, n).astype("int32")}[x_kind]()
    if y_kind == "label":
        y = rng.integers(0, 3, n)
    elif y_kind == "labels":
        y = np.where(steps, rng.integers(0, 3, (n, 6)), 0)
    elif y_kind == "lm":
        y = np.concatenate([x[:, 1:], np.zeros((n, 1), "int32")], 1)
    elif y_kind == "tokens":
        out_len = rng.integers(1, 5, n)
        y = np.zeros((n, 5), "int32")
        for row, m in enumerate(out_len):
            y[row, :m] = rng.integers(4, 7, m)
            y[row, m] = 3
    else:
        y = rng.normal(size=(n, *OUT_SHAPES[y_kind])).astype("float32")
    return x, y.astype("int32") if y.dtype.kind == "i" else y


def model_cfg(topology: str, cell: str = "lstm", num_layers: int = 1, bidirectional: bool = False,
              **kw: Any) -> ModelConfig:
    return ModelConfig(topology=topology, cell=cell, units=6, embedding_dim=4, num_layers=num_layers,
                       bidirectional=bidirectional, **kw)


# (id, topology, x kind, y kind, extra config)
VARIANTS: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("1v1-vector", "one_to_one", "vector", "label", {}),
    ("1v1-category", "one_to_one", "category", "label", {}),
    ("1vN-init-tokens", "one_to_many", "category", "tokens", {"input_mode": "initial_state"}),
    ("1vN-first-tokens", "one_to_many", "category", "tokens", {"input_mode": "first_step"}),
    ("1vN-every-tokens", "one_to_many", "vector", "tokens", {"input_mode": "every_step"}),
    ("1vN-init-series", "one_to_many", "vector", "series", {"input_mode": "initial_state"}),
    ("1vN-first-series", "one_to_many", "vector", "series", {"input_mode": "first_step"}),
    ("1vN-every-series", "one_to_many", "category", "series", {"input_mode": "every_step"}),
    ("Nv1-last", "many_to_one", "tokens", "label", {"reduce": "last"}),
    ("Nv1-mean", "many_to_one", "tokens", "label", {"reduce": "mean"}),
    ("Nv1-max", "many_to_one", "tokens", "label", {"reduce": "max"}),
    ("Nv1-attention", "many_to_one", "tokens", "label", {"reduce": "attention"}),
    ("Nv1-series-label", "many_to_one", "series", "label", {"reduce": "last"}),
    ("Nv1-series-forecast", "many_to_one", "series", "series", {"reduce": "mean"}),
    ("NvN-tag-tokens", "many_to_many", "tokens", "labels", {}),
    ("NvN-tag-series", "many_to_many", "series", "labels", {}),
    ("NvN-lm", "many_to_many", "tokens", "lm", {}),
    ("NvN-series", "many_to_many", "series", "steps", {}),
    *[(f"s2s-{c}-{f}" + (f"-{a}" if c == "attention" else ""), "seq2seq", "tokens", "tokens",
       {"context": c, "context_feed": f, "attention": a})
      for c in ("last_state", "projected", "attention") for f in ("initial_state", "every_step")
      for a in (("luong", "bahdanau") if c == "attention" else ("luong",))],
    *[(f"s2s-pooled-{p}-{f}", "seq2seq", "tokens", "tokens", {"context": "pooled", "pool": p, "context_feed": f})
      for p in ("mean", "max", "attention") for f in ("initial_state", "every_step")],
    ("s2s-series-pooled", "seq2seq", "series", "series", {"context": "pooled", "pool": "attention"}),
    ("s2s-series-forecast", "seq2seq", "series", "series", {"context": "last_state"}),
    ("s2s-series-attention", "seq2seq", "series", "series", {"context": "attention", "context_feed": "every_step"}),
    ("s2s-tokens-series", "seq2seq", "tokens", "series", {"context": "projected", "context_feed": "every_step"}),
    ("s2s-series-tokens", "seq2seq", "series", "tokens", {"context": "attention", "attention": "bahdanau"}),
]
VARIANT = {v[0]: v for v in VARIANTS}
BASE = {"one_to_one": "1v1-vector", "one_to_many": "1vN-init-tokens", "many_to_one": "Nv1-last",
        "many_to_many": "NvN-tag-tokens", "seq2seq": "s2s-attention-initial_state-luong"}


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
# Golden values: weights set to a fixed pattern, expected outputs from the cell equations in NumPy


def pattern_weights(model: Any) -> None:
    """Every variable := 0.5 * sin(0.7 * i + offset), a fixed, non-symmetric pattern."""
    for offset, var in enumerate(model.weights):
        size = int(np.prod(var.shape))
        var.assign((0.5 * np.sin(0.7 * np.arange(size) + offset)).reshape(var.shape).astype("float32"))


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-v))


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_simple_rnn(x: np.ndarray, state: list, w: list) -> tuple[np.ndarray, list]:
    kernel, recurrent, bias = w
    h = np.tanh(x @ kernel + state[0] @ recurrent + bias)
    return h, [h]


def np_gru(x: np.ndarray, state: list, w: list) -> tuple[np.ndarray, list]:
    kernel, recurrent, bias = w  # reset_after: bias = [input bias, recurrent bias]
    h_prev = state[0]
    xz, xr, xh = np.split(x @ kernel + bias[0], 3, -1)
    hz, hr, hh = np.split(h_prev @ recurrent + bias[1], 3, -1)
    z, r = sigmoid(xz + hz), sigmoid(xr + hr)
    h = z * h_prev + (1 - z) * np.tanh(xh + r * hh)
    return h, [h]


def np_lstm(x: np.ndarray, state: list, w: list) -> tuple[np.ndarray, list]:
    kernel, recurrent, bias = w
    i, f, g, o = np.split(x @ kernel + state[0] @ recurrent + bias, 4, -1)
    c = sigmoid(f) * state[1] + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    return h, [h, c]


NP_CELLS = {"simple_rnn": np_simple_rnn, "gru": np_gru, "lstm": np_lstm}


def np_run(cell: str, xs: np.ndarray, w: list, state: list | None = None, steps: int | None = None,
           reverse: bool = False) -> tuple[np.ndarray, list]:
    """One example [T, D] through a cell over its first `steps` steps; returns outputs [steps, U], state."""
    units = w[1].shape[0]
    state = state or [np.zeros(units)] * (2 if cell == "lstm" else 1)
    order = range(steps if steps is not None else len(xs))
    outs = {}
    for t in (reversed(order) if reverse else order):
        outs[t], state = NP_CELLS[cell](xs[t], state, w)
    return np.stack([outs[t] for t in sorted(outs)]), state


def weights_of(model: Any, name: str) -> list[np.ndarray]:
    return [np.asarray(v) for v in model.get_layer(name).weights]


def golden_model(topology: str, cell: str, x_kind: str, y_kind: str, **extra: Any) -> tuple[Any, Any, Any]:
    cfg = ModelConfig(topology=topology, cell=cell, units=3, embedding_dim=2, **extra)
    io = io_of(x_kind, y_kind)
    model = build.build_model(cfg, io)
    pattern_weights(model)
    x, y = make_data(x_kind, y_kind, n=3, seed=1)
    inputs, _ = build.training_data(cfg, io, x, y)
    return model, inputs, np.asarray(model(inputs, training=False))


def test_golden_one_to_one_gru() -> None:
    model, x, got = golden_model("one_to_one", "gru", "vector", "label")
    w, (dk, db) = weights_of(model, "rnn_gru_1"), weights_of(model, "outputs")
    want = [softmax(np_run("gru", row[None], w)[1][0] @ dk + db) for row in x]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_golden_one_to_many_lstm_initial_state_series() -> None:
    model, x, got = golden_model("one_to_many", "lstm", "category", "series", input_mode="initial_state")
    (emb,), w, (dk, db) = weights_of(model, "embedding"), weights_of(model, "decoder_lstm_1"), weights_of(
        model, "outputs")
    (hk, hb), (ck, cb) = weights_of(model, "initial_state_1_1"), weights_of(model, "initial_state_1_2")
    want = []
    for cat in x:
        e = emb[cat]
        outs, _ = np_run("lstm", np.eye(4), w, state=[np.tanh(e @ hk + hb), np.tanh(e @ ck + cb)])
        want.append(outs @ dk + db)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_golden_one_to_many_gru_first_step_tokens() -> None:
    """input_mode=first_step: step 0 reads W x + b (not the start token), later steps the previous
    target token; the decoder starts from zeros."""
    model, inputs, got = golden_model("one_to_many", "gru", "category", "tokens", input_mode="first_step")
    (emb,), (fk, fb) = weights_of(model, "embedding"), weights_of(model, "first_step_input")
    (demb,), w, (dk, db) = (weights_of(model, "decoder_embedding"), weights_of(model, "decoder_gru_1"),
                            weights_of(model, "outputs"))
    assert not any(layer.name.startswith("initial_state") for layer in model.layers)
    for cat, dec_ids, probs in zip(inputs["inputs"], inputs["decoder_inputs"], got):
        steps = demb[dec_ids]
        steps[0] = emb[cat] @ fk + fb
        outs, _ = np_run("gru", steps, w)
        np.testing.assert_allclose(probs, softmax(outs @ dk + db), rtol=1e-5, atol=1e-6)


def test_golden_one_to_many_simple_rnn_first_step_series() -> None:
    model, x, got = golden_model("one_to_many", "simple_rnn", "vector", "series", input_mode="first_step")
    (fk, fb), w, (dk, db) = (weights_of(model, "first_step_input"), weights_of(model, "decoder_simple_rnn_1"),
                             weights_of(model, "outputs"))
    for row, out in zip(x, got):
        steps = np.eye(4)
        steps[0] = row @ fk + fb  # later steps: their one-hot position (series decoders are not autoregressive)
        outs, _ = np_run("simple_rnn", steps, w)
        np.testing.assert_allclose(out, outs @ dk + db, rtol=1e-5, atol=1e-6)


def np_pool(pool: str, outs: np.ndarray, w: list | None = None) -> np.ndarray:
    """Pool the real steps' outputs [n, D]: mean, max, or attention (w = [kernel, bias, score vector])."""
    if pool == "mean":
        return outs.mean(0)
    if pool == "max":
        return outs.max(0)
    scores = np.tanh(outs @ w[0] + w[1]) @ w[2]
    return softmax(scores) @ outs


@pytest.mark.parametrize("cell,pool,feed,bidirectional", [
    ("simple_rnn", "attention", "initial_state", False),
    ("gru", "max", "every_step", False),
    ("lstm", "mean", "initial_state", True),
])
def test_golden_seq2seq_pooled_context(cell: str, pool: str, feed: str, bidirectional: bool) -> None:
    """context=pooled: c = tanh(W pool(h_1..h_n) + b) over the real encoder steps only, as the decoder's
    initial state(s) (one transform per state) or concatenated to every decoder input."""
    model, inputs, got = golden_model("seq2seq", cell, "tokens", "tokens", context="pooled", pool=pool,
                                      context_feed=feed, bidirectional=bidirectional)
    (emb,), (demb,) = weights_of(model, "embedding"), weights_of(model, "decoder_embedding")
    dec, (dk, db) = weights_of(model, f"decoder_{cell}_1"), weights_of(model, "outputs")
    pool_w = weights_of(model, "context_pool") if pool == "attention" else None
    if bidirectional:
        bi = model.get_layer(f"bi_encoder_{cell}_1")
        fw, bw = ([np.asarray(v) for v in layer.weights] for layer in (bi.forward_layer, bi.backward_layer))
    else:
        enc = weights_of(model, f"encoder_{cell}_1")
    for ids, dec_ids, probs in zip(inputs["inputs"], inputs["decoder_inputs"], got):
        n = int((ids > 0).sum())
        if bidirectional:
            outs = np.concatenate([np_run(cell, emb[ids], fw, steps=n)[0],
                                   np_run(cell, emb[ids], bw, steps=n, reverse=True)[0]], -1)
        else:
            outs, _ = np_run(cell, emb[ids], enc, steps=n)
        pooled = np_pool(pool, outs, pool_w)
        if feed == "initial_state":
            state = [np.tanh(pooled @ k + b) for k, b in (weights_of(model, f"context_state_1_{j + 1}")
                                                          for j in range(2 if cell == "lstm" else 1))]
            steps = demb[dec_ids]
        else:
            tk, tb = weights_of(model, "context_transform")
            state, c = None, np.tanh(pooled @ tk + tb)
            steps = np.concatenate([demb[dec_ids], np.repeat(c[None], len(dec_ids), 0)], -1)
        outs, _ = np_run(cell, steps, dec, state=state)
        np.testing.assert_allclose(probs, softmax(outs @ dk + db), rtol=1e-5, atol=1e-6)


def test_padded_series_steps_are_masked() -> None:
    """A series row right-padded with all-NaN steps gives the same outputs as the row without them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 2)).astype("float32")
    padded = np.concatenate([x, np.full((2, 3, 2), np.nan, "float32")], 1)
    for variant, cell in (("Nv1-series-label", "lstm"), ("Nv1-series-forecast", "gru"),
                          ("s2s-series-attention", "simple_rnn"), ("s2s-series-pooled", "gru")):
        _, topology, x_kind, y_kind, extra = VARIANT[variant]
        for reduce in (("last", "mean", "max", "attention") if topology == "many_to_one" else ("last",)):
            cfg = model_cfg(topology, cell, **{**extra, **({"reduce": reduce} if topology == "many_to_one" else {})})
            model = build.build_model(cfg, io_of(x_kind, y_kind))
            want = np.asarray(model(x, training=False))
            np.testing.assert_allclose(np.asarray(model(padded, training=False)), want, rtol=1e-5, atol=1e-6)


def test_first_step_rename_notice(capsys: pytest.CaptureFixture) -> None:
    build.check(model_cfg("one_to_many", input_mode="initial_state"), TrainConfig())
    assert ModelConfig().input_mode == "initial_state"
    assert build.notices(model_cfg("one_to_many", input_mode="first_step")) == [build.FIRST_STEP_RENAMED]
    build._printed.discard(build.FIRST_STEP_RENAMED)
    build.check(model_cfg("one_to_many", input_mode="first_step"), TrainConfig())
    build.check(model_cfg("one_to_many", input_mode="first_step"), TrainConfig())
    err = capsys.readouterr().err
    assert err.count("now called 'initial_state'") == 1 and len(err.strip().splitlines()) == 1


def test_golden_many_to_one_simple_rnn_masked_mean() -> None:
    model, x, got = golden_model("many_to_one", "simple_rnn", "tokens", "label", reduce="mean")
    (emb,), w, (dk, db) = weights_of(model, "embedding"), weights_of(model, "encoder_simple_rnn_1"), weights_of(
        model, "outputs")
    want = []
    for ids in x:
        outs, _ = np_run("simple_rnn", emb[ids], w, steps=int((ids > 0).sum()))
        want.append(softmax(outs.mean(0) @ dk + db))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_golden_many_to_many_bidirectional_gru_tagger() -> None:
    model, x, got = golden_model("many_to_many", "gru", "tokens", "labels", bidirectional=True)
    (emb,), (dk, db) = weights_of(model, "embedding"), weights_of(model, "outputs")
    bi = model.get_layer("bi_encoder_gru_1")
    fw = [np.asarray(v) for v in bi.forward_layer.weights]
    bw = [np.asarray(v) for v in bi.backward_layer.weights]
    for ids, probs in zip(x, got):
        n = int((ids > 0).sum())
        fwd, _ = np_run("gru", emb[ids], fw, steps=n)
        bwd, _ = np_run("gru", emb[ids], bw, steps=n, reverse=True)
        np.testing.assert_allclose(probs[:n], softmax(np.concatenate([fwd, bwd], -1) @ dk + db), rtol=1e-5, atol=1e-6)


def np_attention_weights(query: np.ndarray, keys: np.ndarray, valid: int, score: list | None = None) -> np.ndarray:
    """Luong: q . k_j; Bahdanau (score = [query_kernel, v]): v . tanh(q W_q + k_j); softmax over valid steps."""
    s = keys @ query if score is None else np.tanh(query @ score[0] + keys) @ score[1]
    s = np.where(np.arange(len(keys)) < valid, s, -np.inf)
    return softmax(s)


def test_golden_seq2seq_lstm_luong_attention() -> None:
    model, inputs, got = golden_model("seq2seq", "lstm", "tokens", "tokens", context="attention",
                                      context_feed="initial_state", attention="luong")
    (emb,), enc = weights_of(model, "embedding"), weights_of(model, "encoder_lstm_1")
    (demb,), dec = weights_of(model, "decoder_embedding"), weights_of(model, "decoder_lstm_1")
    (mk,), (ok, ob), (dk, db) = (weights_of(model, "attention"), weights_of(model, "attention_output"),
                                 weights_of(model, "outputs"))
    for ids, dec_ids, probs in zip(inputs["inputs"], inputs["decoder_inputs"], got):
        n = int((ids > 0).sum())
        memory, state = np_run("lstm", emb[ids], enc, steps=n)
        outs, _ = np_run("lstm", demb[dec_ids], dec, state=state)
        for h, p in zip(outs, probs):
            context = np_attention_weights(h, memory @ mk, n) @ memory
            np.testing.assert_allclose(p, softmax(np.tanh(np.concatenate([context, h]) @ ok + ob) @ dk + db),
                                       rtol=1e-5, atol=1e-6)


def test_golden_seq2seq_gru_bahdanau_every_step() -> None:
    model, inputs, got = golden_model("seq2seq", "gru", "tokens", "tokens", context="attention",
                                      context_feed="every_step", attention="bahdanau")
    (emb,), enc = weights_of(model, "embedding"), weights_of(model, "encoder_gru_1")
    (demb,), (dk, db) = weights_of(model, "decoder_embedding"), weights_of(model, "outputs")
    layer = model.get_layer("decoder_attentive_gru")
    cell = [np.asarray(v) for v in (layer.cells[0].kernel, layer.cells[0].recurrent_kernel, layer.cells[0].bias)]
    att = layer.attention
    mk, score = np.asarray(att.memory_kernel), [np.asarray(att.query_kernel), np.asarray(att.score_vector)]
    ok, ob = weights_of(model, "attention_output")
    for ids, dec_ids, probs in zip(inputs["inputs"], inputs["decoder_inputs"], got):
        n = int((ids > 0).sum())
        memory, state = np_run("gru", emb[ids], enc, steps=n)
        for token, p in zip(dec_ids, probs):
            context = np_attention_weights(state[0], memory @ mk, n, score) @ memory
            h, state = np_gru(np.concatenate([demb[token], context]), state, cell)
            np.testing.assert_allclose(p, softmax(np.tanh(np.concatenate([context, h]) @ ok + ob) @ dk + db),
                                       rtol=1e-5, atol=1e-6)


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
