"""Greedy and beam-search decoding: crafted cases, equivalences, and consistency with the trained graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.config import ModelConfig

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from models import build  # noqa: E402
from models.decoding import beam_search, greedy, make_generator  # noqa: E402
from tests.model_support import io_of, make_data  # noqa: E402

PAD, START, END, A, B = 0, 2, 3, 4, 5


def table_step(table: np.ndarray, drift: np.ndarray | None = None) -> Any:
    """A crafted step: next-token log-probs = log(table[previous token]) (+ drift * steps so far).

    Its only state counts the steps, so beam search must carry and reorder states correctly.
    """
    log_table = tf.constant(np.log(table), tf.float32)
    drift = tf.constant(np.zeros(table.shape[1]) if drift is None else drift, tf.float32)

    def step(tokens: Any, states: dict, constants: dict) -> tuple:
        count = states["count"]
        logits = tf.gather(log_table, tokens) + count * drift
        return tf.nn.log_softmax(logits), {"count": count + 1.0}, tf.zeros([tf.shape(tokens)[0], 0])

    return step


def markov_table() -> np.ndarray:
    """START -> A 0.6 | B 0.4; A -> A 0.36 | B 0.34 | END 0.30; B -> END 0.9 | A 0.05 | B 0.05."""
    table = np.full((6, 6), 1e-6)
    table[START, [A, B]] = [0.6, 0.4]
    table[A, [A, B, END]] = [0.36, 0.34, 0.30]
    table[B, [END, A, B]] = [0.9, 0.05, 0.05]
    table[[PAD, 1, END]] = 1 / 6
    return table / table.sum(1, keepdims=True)


def run(search: Any, step: Any, batch: int = 1, max_length: int = 4, **kw: Any) -> dict:
    states = {"count": tf.zeros([batch, 1])}
    out = search(step, states, {}, batch, start_id=START, end_id=END, max_length=max_length, **kw)
    return {k: v.numpy() for k, v in out.items()}


def test_beam_finds_the_better_sequence_greedy_misses() -> None:
    step = table_step(markov_table())
    g = run(greedy, step)
    b = run(beam_search, step, beam_width=2)
    table = markov_table()
    assert g["ids"].tolist() == [[A, A, A, A]]  # never ends: A's best next token is always A
    assert g["scores"][0] == pytest.approx(np.log(table[START, A]) + 3 * np.log(table[A, A]), abs=1e-5)
    assert b["ids"].tolist() == [[B, END, PAD, PAD]]
    assert b["scores"][0] == pytest.approx(np.log(0.4 * 0.9), abs=1e-4)
    assert b["scores"][0] > g["scores"][0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_width_one_equals_greedy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(6, 0.5), size=6)
    step = table_step(table, drift=rng.normal(size=6))
    g = run(greedy, step, batch=3, max_length=7)
    b = run(beam_search, step, batch=3, max_length=7, beam_width=1)
    np.testing.assert_array_equal(g["ids"], b["ids"])
    np.testing.assert_allclose(g["scores"], b["scores"], rtol=1e-6)


def test_ids_stop_at_the_end_token_and_pad_after() -> None:
    table = np.full((6, 6), 0.01)
    table[:, END] = 0.95
    out = run(beam_search, table_step(table / table.sum(1, keepdims=True)), batch=2, max_length=5, beam_width=3)
    assert out["ids"].tolist() == [[END, 0, 0, 0, 0]] * 2


# --------------------------------------------------------------------------------------------
# Real models: the step-wise decoder reuses the trained layers and agrees with the full graph

MODELS = [
    ("s2s-bahdanau-every_step", dict(topology="seq2seq", cell="lstm", num_layers=2, bidirectional=True,
                                     context="attention", context_feed="every_step", attention="bahdanau"), "tokens"),
    ("s2s-luong-initial_state", dict(topology="seq2seq", cell="gru", context="attention", attention="luong"),
     "tokens"),
    ("s2s-projected-every_step", dict(topology="seq2seq", cell="simple_rnn", num_layers=2, bidirectional=True,
                                      context="projected", context_feed="every_step"), "tokens"),
    ("1vN-initial_state", dict(topology="one_to_many", cell="lstm", num_layers=2, input_mode="initial_state"),
     "category"),
    ("1vN-first_step", dict(topology="one_to_many", cell="lstm", num_layers=2, input_mode="first_step"), "category"),
    ("1vN-first_step-gru", dict(topology="one_to_many", cell="gru", input_mode="first_step"), "vector"),
    ("s2s-pooled-attention-initial_state", dict(topology="seq2seq", cell="lstm", num_layers=2, bidirectional=True,
                                                context="pooled", pool="attention"), "tokens"),
    ("s2s-pooled-max-every_step", dict(topology="seq2seq", cell="gru", context="pooled", pool="max",
                                       context_feed="every_step"), "tokens"),
    ("1vN-every_step", dict(topology="one_to_many", cell="gru", input_mode="every_step"), "vector"),
]


def tiny_model(seed: int = 0, **kw: Any) -> tuple[Any, ModelConfig, dict]:
    keras.utils.set_random_seed(seed)
    cfg = ModelConfig(units=6, embedding_dim=4, **kw)
    io = io_of("category" if kw["topology"] == "one_to_many" else "tokens", "tokens")
    return build.build_model(cfg, io), cfg, io


def teacher_forced_scores(model: Any, cfg: ModelConfig, io: dict, x: np.ndarray, ids: np.ndarray) -> tuple:
    """Sum of log p(ids) under the full (teacher-forced) model, up to and including the end id."""
    inputs, _ = build.training_data(cfg, io, x, ids)
    probs = np.asarray(model(inputs, training=False))
    live = np.cumsum(ids == END, 1) - (ids == END) == 0
    picked = np.take_along_axis(probs, ids[..., None], -1)[..., 0]
    return (np.log(picked) * live).sum(1), probs, live


@pytest.mark.parametrize("name,kw,x_kind", MODELS, ids=[m[0] for m in MODELS])
def test_generation_matches_the_teacher_forced_model(name: str, kw: dict, x_kind: str) -> None:
    keras.utils.set_random_seed(0)
    cfg = ModelConfig(units=6, embedding_dim=4, **kw)
    io = io_of(x_kind, "tokens")
    model = build.build_model(cfg, io)
    x, _ = make_data(x_kind, "tokens", n=4, seed=3)
    generate = make_generator(model, cfg, io)
    g = {k: v.numpy() for k, v in generate(x, max_length=5, beam_width=1).items()}
    scores, probs, live = teacher_forced_scores(model, cfg, io, x, g["ids"])
    np.testing.assert_allclose(g["scores"], scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(probs.argmax(-1)[live], g["ids"][live])  # greedy = argmax at every step
    b = {k: v.numpy() for k, v in generate(x, max_length=5, beam_width=3).items()}
    assert b["ids"].shape == (4, 5)
    np.testing.assert_allclose(b["scores"], teacher_forced_scores(model, cfg, io, x, b["ids"])[0], rtol=1e-4,
                               atol=1e-4)  # beam states were reordered with their beams
    assert ("attention" in g) == (cfg.context == "attention" and cfg.topology == "seq2seq")


def test_first_step_generation_feeds_the_vector_only_at_the_first_step() -> None:
    """The one-step decoder's `state_started` gate: the vector at step 0, the previous token after."""
    from models.topologies import generation_models

    model, cfg, io = tiny_model(topology="one_to_many", cell="gru", input_mode="first_step")
    encoder, step_model = generation_models(model, cfg, io)
    assert "first_input" in encoder.output and "state_started" in step_model.input
    x = np.array([1, 2, 3], "int32")
    first = encoder(x)["first_input"]
    zeros = tf.zeros((3, 6))
    out = step_model({"token": tf.fill((3, 1), START), "state_1_1": zeros, "first_input": first,
                      "state_started": tf.zeros((3, 1))})
    np.testing.assert_array_equal(np.asarray(out["state_started"]), 1.0)
    full = np.asarray(model({"inputs": x, "decoder_inputs": np.array([[START, A]] * 3, "int32")}))
    np.testing.assert_allclose(np.asarray(out["probs"])[:, 0], full[:, 0], rtol=1e-5, atol=1e-6)
    later = step_model({"token": tf.fill((3, 1), A), "state_1_1": out["state_1_1"], "first_input": first,
                        "state_started": out["state_started"]})
    np.testing.assert_allclose(np.asarray(later["probs"])[:, 0], full[:, 1], rtol=1e-5, atol=1e-6)


def test_run_time_beam_width_equals_the_traced_width_and_scores_match_truncated_ids() -> None:
    """A tensor beam_width traces one general search (any width); at a max_length cut the score is
    that of exactly the returned (truncated) ids."""
    model, cfg, io = tiny_model(topology="seq2seq", cell="gru", context="attention", seed=2)
    x, _ = make_data("tokens", "tokens", n=3, seed=4)
    generate = make_generator(model, cfg, io)
    traced = tf.function(lambda t, n, k: generate(t, n, k))
    for width in (1, 2, 5, 9):
        for length in (2, 5):
            want = generate(x, length, width)
            got = traced(tf.constant(x), tf.constant(length), tf.constant(width))
            assert got["ids"].shape == (3, length)
            for key in ("ids", "scores"):
                np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got["scores"].numpy(), teacher_forced_scores(
                model, cfg, io, x, got["ids"].numpy())[0], rtol=1e-4, atol=1e-4)


def test_attention_weights_cover_real_encoder_steps_only() -> None:
    model, cfg, io = tiny_model(topology="seq2seq", context="attention", context_feed="every_step")
    x = np.array([[4, 5, 6, 0, 0, 0], [7, 0, 0, 0, 0, 0]], "int32")
    generate = make_generator(model, cfg, io)
    for width in (1, 2):
        out = generate(x, max_length=4, beam_width=width)
        att, ids = out["attention"].numpy(), out["ids"].numpy()
        assert att.shape == (2, 4, 6)
        assert np.allclose(att[:, :, 3:], 0) and np.allclose(att[1, :, 1:], 0)
        emitted = ids != 0
        np.testing.assert_allclose(att.sum(-1)[emitted], 1.0, rtol=1e-5)
        assert np.allclose(att[~emitted], 0)


def test_greedy_generator_equals_beam_search_of_width_one_on_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from models import decoding
    from models.topologies import generation_models

    model, cfg, io = tiny_model(topology="seq2seq", context="attention", attention="bahdanau", seed=1)
    _, step_model = generation_models(model, cfg, io)
    assert step_model.get_layer("outputs") is model.get_layer("outputs")  # the trained layers, shared
    x, _ = make_data("tokens", "tokens", n=4, seed=5)
    generate = make_generator(model, cfg, io)
    g = generate(x, 5, 1)
    monkeypatch.setattr(decoding, "greedy", lambda *a, **k: decoding.beam_search(*a, beam_width=1, **k))
    b = generate(x, 5, 1)
    for key in ("ids", "scores", "attention"):
        np.testing.assert_allclose(g[key].numpy(), b[key].numpy(), rtol=1e-6, atol=1e-7)


def test_series_models_are_not_decoded_step_by_step() -> None:
    cfg = ModelConfig(topology="seq2seq", units=4)
    with pytest.raises(ValueError, match="call the model directly"):
        make_generator(build.build_model(cfg, io_of("series", "series")), cfg, io_of("series", "series"))


@pytest.mark.slow
def test_generate_traces_into_a_saved_model_endpoint(tmp_path: Path) -> None:
    model, cfg, io = tiny_model(topology="seq2seq", cell="gru", context="attention", context_feed="every_step",
                                beam_width=2)
    generate = make_generator(model, cfg, io)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("generate", lambda x: generate(x, 5, 2),
                         input_signature=[tf.TensorSpec([None, None], tf.int32, name="inputs")])
    archive.write_out(str(tmp_path / "saved"), verbose=False)
    x, _ = make_data("tokens", "tokens", n=3, seed=7)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))  # keep it referenced: it owns the variables
    served = loaded.generate(tf.constant(x))
    eager = generate(x, 5, 2)
    assert set(served) == {"ids", "scores", "attention"}
    for key in served:
        np.testing.assert_allclose(served[key].numpy(), eager[key].numpy(), rtol=1e-5, atol=1e-6)


def test_language_model_greedy_continuation_appends_after_the_last_real_token() -> None:
    from models.decoding import continue_ids

    cfg = ModelConfig(topology="many_to_many", units=6, embedding_dim=4)
    model = build.build_model(cfg, io_of("tokens", "lm"))
    prompts, _ = make_data("tokens", "lm", n=3)
    ids = np.asarray(continue_ids(model, tf.constant(prompts), 3, 0.0))
    assert ids.shape == (3, 3) and (ids >= 2).all()  # never padding (0) or unknown (1)
    for row, prompt in zip(ids, prompts):
        seq = [int(t) for t in prompt if t != 0]
        for _ in range(3):  # greedy by hand: the most likely real token after the last one
            probs = np.asarray(model(np.array([seq], "int32"), training=False))[0, -1]
            seq.append(int(np.argmax(probs[2:]) + 2))
        assert list(row) == seq[-3:]
    tf.random.set_seed(0)
    sampled = np.asarray(continue_ids(model, tf.constant(prompts), 5, 1.0))
    assert sampled.shape == (3, 5) and (sampled >= 2).all()
