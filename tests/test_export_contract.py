"""What an exported SavedModel accepts (issue 17): series windows of any length in a documented
range (padding masked, the rest a clear InvalidArgument -> HTTP 400), and a general beam search
whose width and max_length are checked, never clamped, with scores that belong to the tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components import export
from components.config import ModelConfig
from components.preprocessing import END, START, Codec, io_spec
from components.stage_files import SERVING_CONTRACT

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

SERIES_X = {"kind": "series", "columns": ["a", "b"], "mean": [5.0, 1.0], "variance": [9.0, 4.0], "features": 2,
            "length": 6}


def exported(tmp_path: Path, state: dict[str, Any], cfg: ModelConfig) -> tuple[Any, Any, Codec]:
    from models.build import build_model

    keras.utils.set_random_seed(0)
    codec = Codec(state)
    model = build_model(cfg, io_spec(state))
    export.write_saved_model(model, codec, io_spec(state), tmp_path / "1", cfg)
    return tf.saved_model.load(str(tmp_path / "1")), model, codec


def served_status(fn: Any, **inputs: Any) -> int:
    """The HTTP status `rnnpipe serve` answers for these inputs (200 or the error's)."""
    from components.serving import ServingError, Signature

    try:
        Signature.of("sig", fn)({k: np.asarray(v) for k, v in inputs.items()})
    except ServingError as exc:
        return exc.status
    return 200


@pytest.mark.slow
def test_series_forecast_accepts_the_documented_range_of_window_lengths(tmp_path: Path) -> None:
    state = {"topology": "seq2seq", "x": SERIES_X,
             "y": {"kind": "series", "columns": ["a"], "mean": [0.0], "variance": [4.0], "features": 1, "length": 3,
                   "reference": {"mode": "season", "columns": [0]}}}
    cfg = ModelConfig(topology="seq2seq", cell="gru", units=4, context="pooled", pool="attention")
    loaded, model, codec = exported(tmp_path, state, cfg)
    contract = json.loads((tmp_path / "1" / SERVING_CONTRACT).read_text())
    assert contract["inputs"] == {**contract["inputs"], "min_steps": 3, "max_steps": None, "trained_steps": 6}
    fn = loaded.signatures["serving_default"]
    assert fn.structured_input_signature[1]["inputs"].shape.as_list() == [None, None, 2]
    rng = np.random.default_rng(0)

    def expected(raw: np.ndarray) -> np.ndarray:  # the model on every step, plus the seasonal reference
        values = np.asarray(model((raw - [5.0, 1.0]) / [3.0, 2.0]))
        return values * 2.0 + raw[:, -3:, :1]

    for steps in (3, 4, 6, 10, 40):  # shorter and longer than the training window
        raw = rng.normal(5, 3, size=(2, steps, 2)).astype("float32")
        np.testing.assert_allclose(fn(inputs=tf.constant(raw))["series"].numpy(), expected(raw), atol=1e-4)

    # rows of different lengths in one batch: right-padded with all-NaN steps, each row as if alone
    long, short = rng.normal(5, 3, size=(1, 8, 2)), rng.normal(5, 3, size=(1, 5, 2))
    batch = np.concatenate([long, np.concatenate([short, np.full((1, 3, 2), np.nan)], 1)]).astype("float32")
    got = fn(inputs=tf.constant(batch))["series"].numpy()
    np.testing.assert_allclose(got[0], expected(long.astype("float32"))[0], atol=1e-4)
    np.testing.assert_allclose(got[1], expected(short.astype("float32"))[0], atol=1e-4)

    too_short = rng.normal(size=(2, 2, 2)).astype("float32")
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 3 real steps"):
        fn(inputs=tf.constant(too_short))
    assert served_status(fn, inputs=too_short) == 400
    padded_first = np.concatenate([np.full((2, 1, 2), np.nan), rng.normal(size=(2, 5, 2))], 1).astype("float32")
    with pytest.raises(tf.errors.InvalidArgumentError, match="right-padded"):
        fn(inputs=tf.constant(padded_first))
    missing = rng.normal(size=(1, 6, 2)).astype("float32")
    missing[0, 2, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="missing values"):
        fn(inputs=tf.constant(missing))
    infinite = rng.normal(size=(1, 6, 2)).astype("float32")
    infinite[0, 3, 0] = np.inf
    with pytest.raises(tf.errors.InvalidArgumentError, match="infinite values"):
        fn(inputs=tf.constant(infinite))
    assert export.contract_markdown(contract)[0].startswith("- Input windows: [batch, steps, 2] with at least 3 steps")


@pytest.mark.slow
def test_unrolled_series_classifier_takes_exactly_its_window(tmp_path: Path) -> None:
    state = {"topology": "many_to_one", "x": SERIES_X, "y": {"kind": "label", "classes": ["no", "yes"]}}
    cfg = ModelConfig(topology="many_to_one", cell="lstm", units=4, unroll=True)
    loaded, model, _ = exported(tmp_path, state, cfg)
    contract = json.loads((tmp_path / "1" / SERVING_CONTRACT).read_text())
    assert (contract["inputs"]["min_steps"], contract["inputs"]["max_steps"]) == (6, 6)
    fn = loaded.signatures["serving_default"]
    raw = np.random.default_rng(1).normal(5, 3, size=(2, 6, 2)).astype("float32")
    np.testing.assert_allclose(fn(inputs=tf.constant(raw))["probabilities"].numpy(),
                               np.asarray(model((raw - [5.0, 1.0]) / [3.0, 2.0])), atol=1e-5)
    assert served_status(fn, inputs=raw[:, :4]) == 400  # the signature's fixed shape


def test_export_traces_serving_default_for_canaries_and_saving_only(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Export runs the canaries through `serving_endpoint`, then writes that same tf.function.
    Its body is traced twice: once for the canaries, once by TF under its save context. A second
    function for the canaries made it three (a decoding loop's trace costs about a second)."""
    from models.build import build_model

    traces = []
    plain = export.serving_function

    def counted(*args: Any) -> Any:
        fn = plain(*args)
        return lambda *inputs: traces.append(1) or fn(*inputs)

    monkeypatch.setattr(export, "serving_function", counted)
    state = {"topology": "many_to_one", "x": SERIES_X, "y": {"kind": "label", "classes": ["no", "yes"]}}
    cfg = ModelConfig(topology="many_to_one", cell="gru", units=4)
    keras.utils.set_random_seed(0)
    codec, io = Codec(state), io_spec(state)
    model = build_model(cfg, io)
    serve = export.serving_endpoint(model, codec, io, cfg)
    raw = np.random.default_rng(2).normal(5, 3, size=(3, 6, 2)).astype("float32")
    canaries = serve(tf.constant(raw))["probabilities"].numpy()
    export.write_saved_model(model, codec, io, tmp_path / "1", cfg, serve)
    assert len(traces) <= 2
    loaded = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    np.testing.assert_allclose(loaded(inputs=tf.constant(raw))["probabilities"].numpy(), canaries, atol=1e-6)


@pytest.mark.slow
def test_generate_checks_beam_width_and_max_length_and_scores_the_returned_tokens(tmp_path: Path) -> None:
    from models.decoding import make_generator

    state = {"topology": "seq2seq",
             "x": {"kind": "tokens", "tokenize": "char", "lowercase": True, "vocabulary": list("abc"), "length": 4},
             "y": {"kind": "tokens", "tokenize": "word", "lowercase": False, "generated": True,
                   "vocabulary": [START, END, "AA", "B", "C"], "length": 5}}
    cfg = ModelConfig(topology="seq2seq", cell="gru", units=4, embedding_dim=4, context="attention", beam_width=3)
    loaded, model, codec = exported(tmp_path, state, cfg)
    contract = json.loads((tmp_path / "1" / SERVING_CONTRACT).read_text())
    assert contract["generate"] == {"max_beam_width": export.MAX_BEAM_WIDTH, "max_length": 64, "default_length": 5}
    gen = loaded.signatures["generate"]
    words = tf.constant(["abc", "ba", "c"])
    generate = make_generator(model, cfg, io_spec(state))
    for width in (1, 3, 7, export.MAX_BEAM_WIDTH):  # any width up to the maximum, not only traced ones
        for length in (1, 3):
            got = gen(inputs=words, max_length=tf.constant(length), beam_width=tf.constant(width))
            want = generate(codec.encode(words, "x"), length, width)
            assert [s.decode() for s in got["tokens"].numpy()] == [
                s.decode() for s in codec.join_tokens(want["ids"]).numpy()]
            np.testing.assert_allclose(got["scores"].numpy(), want["scores"].numpy(), rtol=1e-5, atol=1e-6)
    for width, length, what in ((export.MAX_BEAM_WIDTH + 1, 3, "beam_width"), (0, 3, "beam_width"),
                                (2, 0, "max_length"), (2, 65, "max_length")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"{what} must be between"):
            gen(inputs=words, max_length=tf.constant(length), beam_width=tf.constant(width))
    assert served_status(gen, inputs=["abc"], max_length=3, beam_width=99) == 400
