"""Export: versioned atomic SavedModels, raw-in/raw-out signatures per kind of target, the model
card; infra validation catching a broken export."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components import export
from components.preprocessing import END, START, Codec, io_spec
from pipeline import runner
from pipeline.config import ModelConfig, with_overrides
from tests.serving_support import blessed_names_run


@pytest.fixture(scope="module")
def blessed(names_run: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return blessed_names_run(names_run, tmp_path_factory)


def test_export_layout_canary_and_model_card(blessed: tuple[Any, Any]) -> None:
    config, result = blessed
    path = Path(result.export_path)
    assert path.name.isdigit() and path.parent.name == config.name
    assert {"saved_model.pb", "variables", "model_card.md"} <= {p.name for p in path.iterdir()}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]
    card = (result.artifacts["export"].uri / "model_card.md").read_text()
    for text in (f"# Model card: {config.name} version {path.name}", "| accuracy |", "| train |",
                 "## cuDNN", "topology: many_to_one", "POST /v1/models/"):
        assert text in card, text
    canary = json.loads((result.artifacts["export"].uri / "canary.json").read_text())
    assert len(canary["inputs"]) == export.CANARIES and set(canary["outputs"]) == {"label", "probabilities"}
    props = result.artifacts["export"].properties
    assert props["signatures"] == ["serving_default"] and props["blessed"] is True


def test_publish_allocates_increasing_versions_atomically(tmp_path: Path) -> None:
    base = tmp_path / "model"
    versions: list[int] = []

    def build(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "saved_model.pb").write_bytes(b"x")

    def worker() -> None:
        versions.append(export.publish(build, base)[0])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == [str(v) for v in range(1, 7)]

    def broken(tmp: Path) -> None:
        tmp.mkdir()
        raise RuntimeError("killed half way")

    with pytest.raises(RuntimeError):
        export.publish(broken, base)
    assert export.next_version(base) == 7 and not list(base.glob(".tmp-*"))


def test_infra_validation_fails_a_broken_export(blessed: tuple[Any, Any], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An export whose weights differ from the evaluated model: served answers differ -> FAILED."""
    from mlflow import MlflowClient

    from components.infra_validation import InfraValidationError
    from pipeline import tracking

    config, result = blessed
    original = export.write_saved_model

    def zero_weights_then_write(model: Any, *args: Any, **kwargs: Any) -> None:
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
        original(model, *args, **kwargs)

    monkeypatch.setattr(export, "write_saved_model", zero_weights_then_write)
    broken = with_overrides(config, {"export.dir": str(tmp_path / "exports")})
    client = MlflowClient(tracking_uri=config.tracking.uri)
    champion = client.get_model_version_by_alias(config.name, tracking.CHAMPION).version
    with pytest.raises(InfraValidationError, match="differ from the in-process model"):
        runner.run(broken, log=lambda _: None)
    base = tmp_path / "exports" / config.name
    assert not [p for p in base.iterdir() if p.name.isdigit()]  # quarantined: no server loads it
    assert [p.name for p in base.iterdir() if p.name.startswith(".invalid-1-")]
    exp = client.get_experiment_by_name(config.experiment).experiment_id
    last = client.search_runs([exp], order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert last.info.status == "FAILED" and "InfraValidationError" in last.data.tags["error"]
    assert client.get_model_version_by_alias(config.name, tracking.CHAMPION).version == champion


# --------------------------------------------------------------------------------------------
# Signatures of every kind of generative / numeric target, on small untrained models


def exported(tmp_path: Path, state: dict[str, Any], cfg: ModelConfig) -> tuple[Any, Any, Codec, Any]:
    import keras
    import tensorflow as tf

    from models.build import build_model

    keras.utils.set_random_seed(0)
    io = io_spec(state)
    codec = Codec(state)
    model = build_model(cfg, io)
    export.write_saved_model(model, codec, io, tmp_path / "1", cfg)
    return tf.saved_model.load(str(tmp_path / "1")), model, codec, io


def strings(tensor: Any) -> list[str]:
    return [s.decode() for s in np.asarray(tensor).ravel()]


@pytest.mark.slow
def test_seq2seq_tokens_serving_default_and_generate(tmp_path: Path) -> None:
    import tensorflow as tf

    state = {"topology": "seq2seq",
             "x": {"kind": "tokens", "tokenize": "char", "lowercase": True, "vocabulary": list("abc"), "length": 4},
             "y": {"kind": "tokens", "tokenize": "word", "lowercase": False, "generated": True,
                   "vocabulary": [START, END, "AA", "B"], "length": 5}}
    cfg = ModelConfig(topology="seq2seq", cell="gru", units=4, embedding_dim=4, context="attention", beam_width=3)
    loaded, *_ = exported(tmp_path, state, cfg)
    assert set(loaded.signatures) == {"serving_default", "generate"}
    words = tf.constant(["abc", "Ba"])
    greedy = strings(loaded.signatures["serving_default"](inputs=words)["tokens"])
    assert len(greedy) == 2 and all(set(g.split()) <= {"AA", "B", "[UNK]"} and len(g.split()) <= 5 for g in greedy)
    gen = loaded.signatures["generate"]
    cut = gen(inputs=words, max_length=tf.constant(2), beam_width=tf.constant(1))
    assert strings(cut["tokens"]) == [" ".join(g.split()[:2]) for g in greedy]  # greedy, cut at 2 tokens
    beam = gen(inputs=words, max_length=tf.constant(10), beam_width=tf.constant(3))
    assert np.all(beam["scores"].numpy() <= 0) and beam["scores"].shape == (2,)
    assert gen(inputs=words, max_length=tf.constant(3), beam_width=tf.constant(99))["tokens"].shape == (2,)


@pytest.mark.slow
def test_language_model_continues_prompts(tmp_path: Path) -> None:
    import tensorflow as tf

    x = {"kind": "tokens", "tokenize": "char", "lowercase": True, "vocabulary": list("ab "), "length": 6}
    state = {"topology": "many_to_many", "x": x, "y": {**x, "language_model": True}}
    cfg = ModelConfig(topology="many_to_many", cell="lstm", units=4, embedding_dim=4)
    loaded, *_ = exported(tmp_path, state, cfg)
    prompts = tf.constant(["ab", "b a b"])
    greedy = strings(loaded.signatures["serving_default"](inputs=prompts)["tokens"])
    assert [len(g) for g in greedy] == [32, 32] and set("".join(greedy)) <= set("ab ")
    gen = loaded.signatures["generate"]
    three = strings(gen(inputs=prompts, max_length=tf.constant(3), temperature=tf.constant(0.0))["tokens"])
    assert three == [g[:3] for g in greedy]
    sampled = strings(gen(inputs=prompts, max_length=tf.constant(5), temperature=tf.constant(1.0))["tokens"])
    assert [len(s) for s in sampled] == [5, 5]


@pytest.mark.slow
def test_series_outputs_are_in_raw_units(tmp_path: Path) -> None:
    import tensorflow as tf

    state = {"topology": "seq2seq",
             "x": {"kind": "series", "mean": [5.0], "variance": [9.0], "features": 1, "length": 6},
             "y": {"kind": "series", "mean": [10.0], "variance": [4.0], "features": 1, "length": 3}}
    cfg = ModelConfig(topology="seq2seq", cell="simple_rnn", units=4)
    loaded, model, codec, _ = exported(tmp_path, state, cfg)
    raw = np.arange(12, dtype="float32").reshape(2, 6, 1)
    served = loaded.signatures["serving_default"](inputs=tf.constant(raw))["series"].numpy()
    expected = np.asarray(model((raw - 5.0) / 3.0)) * 2.0 + 10.0
    assert served.shape == (2, 3, 1)
    np.testing.assert_allclose(served, expected, atol=1e-4)
