"""Export and push: the SavedModel inside the export stage, published as atomic, never-reused
versions only after infra validation; raw-in/raw-out signatures per kind of target; the model
card; infra validation catching a broken export before anything is published."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components import export, push
from components.config import ModelConfig, with_overrides
from components.preprocessing import END, START, Codec, io_spec
from pipeline import runner
from tests.serving_support import blessed_names_run


@pytest.fixture(scope="module")
def blessed(names_run: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return blessed_names_run(names_run, tmp_path_factory)


def test_export_layout_canary_and_model_card(blessed: tuple[Any, Any]) -> None:
    config, result = blessed
    path = Path(result.export_path)
    assert path.name.isdigit() and path.parent.name == config.name
    assert {"saved_model.pb", "variables", "model_card.md", push.PUBLISHED_FILE} <= {p.name for p in path.iterdir()}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]
    record = json.loads((path / push.PUBLISHED_FILE).read_text())
    assert record["version"] == int(path.name) and record["validated"] is True
    assert record["content_hash"] == result.artifacts["export"].properties["content_hash"] == \
        result.artifacts["infra_validate"].properties["content_hash"]
    card = (result.artifacts["export"].uri / "model_card.md").read_text()
    for text in (f"# Model card: {config.name}", "| accuracy |", "| train |",
                 "## cuDNN", "topology: many_to_one", "POST /v1/models/"):
        assert text in card, text
    canary = json.loads((result.artifacts["export"].uri / "canary.json").read_text())
    assert len(canary["inputs"]) == export.CANARIES and set(canary["outputs"]) == {"label", "probabilities"}
    props = result.artifacts["export"].properties
    assert props["signatures"] == ["serving_default"] and props["blessed"] is True


def saved_model(tmp_path: Path, content: str) -> Path:
    folder = tmp_path / f"src-{content}"
    folder.mkdir()
    (folder / "saved_model.pb").write_text(content)
    return folder


def test_publish_allocates_increasing_versions_atomically_and_never_twice(tmp_path: Path) -> None:
    from components.artifacts import dir_digest

    base = tmp_path / "model"
    sources = [saved_model(tmp_path, str(i)) for i in range(6)]
    published: dict[Path, int] = {}

    def worker(source: Path) -> None:
        published[source] = push.publish(source, base, dir_digest(source), {})[0]

    threads = [threading.Thread(target=worker, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(published.values()) == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == [str(v) for v in range(1, 7)]
    # the same content again: the version that holds it, nothing new
    again = published[sources[2]]
    assert push.publish(sources[2], base, dir_digest(sources[2]), {}) == (again, base / str(again), False)
    # numbers are never reused, and only plain ASCII numbers count as versions
    import shutil

    shutil.rmtree(base / "6")
    (base / "²").mkdir()
    (base / "12").write_text("an unrelated file")
    (base / "7.bak").mkdir()
    assert push.next_version(base) == 7
    fresh = saved_model(tmp_path, "new")
    assert push.publish(fresh, base, dir_digest(fresh), {})[0] == 7
    # a stale temp folder of a dead process is cleaned up by the next publication
    (base / ".tmp-999999999-abc").mkdir()
    other = saved_model(tmp_path, "other")
    assert push.publish(other, base, dir_digest(other), {})[0] == 8
    assert not list(base.glob(".tmp-*"))


def test_publish_into_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "exports").write_text("not a folder")
    with pytest.raises(push.PushError, match="cannot create the export base"):
        push.publish(saved_model(tmp_path, "x"), tmp_path / "exports" / "m", "x", {})


def test_infra_validation_fails_a_broken_export(blessed: tuple[Any, Any], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An export whose weights differ from the evaluated model: served answers differ -> FAILED,
    and nothing was ever published in the served base."""
    from mlflow import MlflowClient

    from components.infra_validation import InfraValidationError
    from pipeline import registry

    config, result = blessed
    original = export.write_saved_model

    def zero_weights_then_write(model: Any, *args: Any, **kwargs: Any) -> None:
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
        original(model, *args, **kwargs)

    monkeypatch.setattr(export, "write_saved_model", zero_weights_then_write)
    broken = with_overrides(config, {"export.dir": str(tmp_path / "exports")})
    client = MlflowClient(tracking_uri=config.tracking.uri)
    champion = client.get_model_version_by_alias(config.name, registry.CHAMPION).version
    with pytest.raises(InfraValidationError, match="differ from the in-process model"):
        runner.run(broken, from_stage="export", log=lambda _: None)
    assert not (tmp_path / "exports").exists()  # never visible to a server
    exp = client.get_experiment_by_name(config.experiment).experiment_id
    last = client.search_runs([exp], order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert last.info.status == "FAILED" and "InfraValidationError" in last.data.tags["error"]
    assert client.get_model_version_by_alias(config.name, registry.CHAMPION).version == champion


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
    with pytest.raises(tf.errors.InvalidArgumentError, match="beam_width must be between"):
        gen(inputs=words, max_length=tf.constant(3), beam_width=tf.constant(99))  # refused, never clamped


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
