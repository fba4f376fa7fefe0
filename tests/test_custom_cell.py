"""A user's Keras RNN cell as `model.cell: module:Class` (tests/custom_cells.py): every topology builds
and trains with it (attention decoding and generation included), a saved model reloads in a fresh
process, the cuDNN report says "no fused kernel", and a bad `model.cell` is a one-line config error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.spec import ConfigError, ModelConfig

keras = pytest.importorskip("keras")

from models import build, cells, cudnn, load_model  # noqa: E402
from tests.model_support import io_of, make_data, model_cfg  # noqa: E402

MINIMAL = "tests.custom_cells:MinimalRNNCell"  # one state, units wide
PAIR = "tests.custom_cells:LeakyPairCell"  # two states, units and 2 * units wide
ROOT = Path(__file__).resolve().parent.parent

# (id, topology, x kind, y (a tests.model_support.Y_SPECS key), extra config): every topology and
# every way a decoder gets its states
CASES: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("1v1", "one_to_one", "vector", "label", {}),
    ("1vN-tokens", "one_to_many", "category", "tokens", {"input_mode": "initial_state"}),
    ("1vN-series", "one_to_many", "vector", "series", {"input_mode": "every_step"}),
    ("Nv1", "many_to_one", "tokens", "label", {"reduce": "attention", "num_layers": 2}),
    ("NvN", "many_to_many", "series", "steps", {}),
    ("s2s-bi-projected", "seq2seq", "tokens", "tokens", {"context": "projected", "bidirectional": True}),
    ("s2s-luong", "seq2seq", "tokens", "tokens", {"context": "attention"}),
    ("s2s-bahdanau", "seq2seq", "tokens", "tokens", {"context": "attention", "context_feed": "every_step",
                                                     "attention": "bahdanau", "num_layers": 2}),
    ("s2s-pooled-series", "seq2seq", "series", "series", {"context": "pooled", "pool": "max"}),
]


def fit_one_epoch(cfg: ModelConfig, x_kind: str, y_key: str) -> tuple[Any, Any, dict[str, Any]]:
    """Build, compile and fit one epoch on 8 synthetic rows; (model, its inputs, io)."""
    io = io_of(x_kind, y_key)
    model = build.build_model(cfg, io)
    loss, metrics = build.loss_and_metrics(io, cfg)
    model.compile(optimizer="adam", loss=loss, metrics=metrics)
    inputs, targets = build.training_data(cfg, io, *make_data(x_kind, y_key))
    history = model.fit(inputs, targets, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    return model, inputs, io


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_topology_trains_with_a_custom_cell(case: tuple) -> None:
    _, topology, x_kind, y_key, extra = case
    cfg = model_cfg(topology, cell=PAIR, **extra)
    build.check(cfg)
    model, inputs, io = fit_one_epoch(cfg, x_kind, y_key)
    recurrent = [layer for layer in cudnn._walk(model) if cudnn.layer_reasons(layer) is not None]
    assert recurrent and all("leaky_pair_cell" in layer.name for layer in recurrent)
    if build.generates(cfg, io):  # the one-step decoder carries the cell's two states of their own widths
        from models.decoding import make_generator

        out = make_generator(model, cfg, io)(inputs["inputs"], max_length=4, beam_width=2)
        assert out["ids"].shape == (len(inputs["inputs"]), 4)


def test_a_one_state_custom_cell_in_the_attentive_decoder() -> None:
    cfg = model_cfg("seq2seq", cell=MINIMAL, context="attention", context_feed="every_step")
    model, _, _ = fit_one_epoch(cfg, "tokens", "tokens")
    assert model.get_layer("decoder_attentive_minimal_rnn_cell").states_per_layer == 1


def test_cudnn_report_calls_a_custom_cell_no_fused_kernel() -> None:
    cfg = model_cfg("many_to_one", cell=MINIMAL, bidirectional=True)
    rows = cudnn.report(build.build_model(cfg, io_of("series", "label")))
    assert rows == [{"layer": "bi_encoder_minimal_rnn_cell_1", "cell": "MinimalRNNCell", "eligible": False,
                     "reasons": ["MinimalRNNCell: no fused kernel"], "masked": True}]
    assert cudnn.lines(rows) == ["bi_encoder_minimal_rnn_cell_1: cudnn no (MinimalRNNCell: no fused kernel)"]
    assert cudnn.summary(rows) == "no"
    assert "| bi_encoder_minimal_rnn_cell_1 | MinimalRNNCell | no | MinimalRNNCell: no fused kernel |" in \
        cudnn.markdown(rows)
    assert build.cudnn_blockers(cfg) == [f"model.cell='{MINIMAL}' (MinimalRNNCell: no fused kernel)"]
    with pytest.raises(ConfigError, match=r"model\.use_cudnn='true'.*no fused kernel"):
        build.check(model_cfg("many_to_one", cell=MINIMAL, use_cudnn="true"))


def test_the_registry_reads_the_cells_declared_state_size() -> None:
    assert cells.state_sizes(model_cfg("seq2seq", cell=PAIR)) == [6, 12]
    assert cells.state_sizes(model_cfg("seq2seq", cell=MINIMAL)) == [6]
    assert cells.state_sizes(model_cfg("seq2seq", cell="lstm")) == [6, 6]
    assert cells.get(PAIR).custom and not cells.get("gru").custom
    assert keras.saving.get_registered_object(f"{cells.CUSTOM_PACKAGE}.tests.custom_cells>LeakyPairCell") is not None


def test_a_saved_custom_cell_model_reloads_in_a_fresh_process(tmp_path: Path) -> None:
    cfg = model_cfg("seq2seq", cell=PAIR, context="attention", context_feed="every_step")
    model, inputs, _ = fit_one_epoch(cfg, "tokens", "tokens")
    path = tmp_path / "model.keras"
    model.save(path)
    expected = np.asarray(model(inputs, training=False))
    np.save(tmp_path / "x.npy", inputs["inputs"])
    np.save(tmp_path / "d.npy", inputs["decoder_inputs"])
    reloaded = load_model(path, cells=[PAIR])
    np.testing.assert_allclose(np.asarray(reloaded(inputs, training=False)), expected, rtol=1e-5, atol=1e-6)
    code = ("import sys, numpy as np\n"
            "from models import load_model\n"  # nothing imports tests.custom_cells: load_model finds it
            "m = load_model(sys.argv[1] + '/model.keras', cells=[sys.argv[2]])\n"
            "x = {'inputs': np.load(sys.argv[1] + '/x.npy'), 'decoder_inputs': np.load(sys.argv[1] + '/d.npy')}\n"
            "np.save(sys.argv[1] + '/out.npy', np.asarray(m(x, training=False)))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), PAIR], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="did not name as trusted"):  # a file never picks what is imported
        load_model(path)


@pytest.mark.parametrize("cell,words", [
    ("no_such_module:Cell", ["model.cell='no_such_module:Cell'", "cannot be imported"]),
    ("tests.custom_cells:Nope", ["model.cell='tests.custom_cells:Nope'", "has no 'Nope'"]),
    ("tests.custom_cells:NotACell", ["model.cell='tests.custom_cells:NotACell'", "state_size"]),
    ("json:JSONDecoder", ["model.cell='json:JSONDecoder'", "not a Keras RNN cell"]),
    ("tests.custom_cells:", ["model.cell='tests.custom_cells:'", "module:Class"]),
    ("lstn", ["model.cell='lstn'", "Did you mean 'lstm'", "module:Class"]),
])
def test_a_bad_cell_is_one_config_error_naming_model_cell(cell: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        ModelConfig(cell=cell)
    message = str(err.value)
    assert "\n" not in message and len(message) < 600
    for word in words:
        assert word in message, (word, message)


def test_an_option_the_custom_cell_does_not_take_is_an_error_not_dropped() -> None:
    """MinimalRNNCell(units, activation): model.activation reaches it; model.dropout would be dropped."""
    assert cells.get("tests.custom_cells:MinimalRNNCell").cell_options(
        ModelConfig(cell="tests.custom_cells:MinimalRNNCell", activation="relu")) == {"activation": "relu"}
    with pytest.raises(ConfigError) as err:
        ModelConfig(cell="tests.custom_cells:MinimalRNNCell", dropout=0.3)
    message = str(err.value)
    assert "\n" not in message
    for word in ("model.dropout=0.3", "MinimalRNNCell does not take 'dropout'", "names activation", "leave"):
        assert word in message, (word, message)
    # a subclass of a built-in cell that hands **kwargs on takes what its base class takes
    cfg = ModelConfig(cell="tests.custom_cells:SubclassedSimpleCell", dropout=0.3, activation="relu")
    options = cells.get(cfg.cell).cell_options(cfg)
    assert options["dropout"] == 0.3 and options["activation"] == "relu"
    assert cells.make_cell(cfg.cell, 4, **options).dropout == 0.3


@pytest.mark.slow
def test_a_pipeline_trains_evaluates_and_exports_a_custom_cell(make_config) -> None:
    """names -> gender with `model.cell: module:Class`: the stages save, reload and export it."""
    import json

    import tensorflow as tf

    from pipeline import runner
    from tests.conftest import tiny

    config = make_config(**tiny(model__cell=MINIMAL, model__dropout=0.0,  # MinimalRNNCell takes no dropout
                                export__infra_validate="false", tracking__enabled="false"))
    result = runner.run(config, log=lambda _: None)
    assert "encoder_minimal_rnn_cell_1 | MinimalRNNCell | no | MinimalRNNCell: no fused kernel |" in \
        result.artifacts["train"].path("cudnn.md").read_text()
    assert "test_accuracy" in result.metrics
    serve = tf.saved_model.load(result.export_path).signatures["serving_default"]
    out = serve(inputs=tf.constant(["Mary", "John"]))
    assert int(out["label"].shape[0]) == 2
    assert json.loads(result.artifacts["preprocess"].path("io.json").read_text())["x"]["kind"] == "tokens"
