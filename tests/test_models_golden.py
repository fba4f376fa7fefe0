"""Golden values: small models with patterned weights against NumPy cell equations (one per topology)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from components.config import ModelConfig, TrainConfig

keras = pytest.importorskip("keras")

from models import build  # noqa: E402
from tests.model_support import VARIANT, io_of, make_data, model_cfg  # noqa: E402


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
