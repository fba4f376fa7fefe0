"""Preprocessing: fitted on train only; raw -> encoded -> raw round trips for every kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components import preprocessing
from components.artifacts import Artifact
from components.config import ConfigError, DataConfig
from components.preprocessing import Codec
from tests.test_validation import Ctx, fake_ingest


def preprocess(tmp_path: Path, x: dict, y: dict, splits: dict, topology: str, **data: Any) -> tuple[Artifact, Codec]:
    ingest = fake_ingest(tmp_path / "ingest", x, y, splits, topology=topology)
    out = tmp_path / "preprocess"
    out.mkdir()
    props = preprocessing.run({"ingest": ingest, "validate": None}, out, Ctx(), data=DataConfig(**data))
    art = Artifact("preprocess", out, "fp", props)
    return art, Codec.load(art)


def strings(tensor: Any) -> list[str]:
    return [s.decode() for s in np.asarray(tensor)]


def test_seq2seq_tokens_round_trip_and_train_only_vocabulary(tmp_path: Path) -> None:
    splits = {"train": [("cat", "K AE T"), ("dog", "D AO G"), ("Act", "AE K T")],
              "validation": [("tad", "T AE D")], "test": [("zed", "Z EH D")]}
    art, codec = preprocess(tmp_path, {"kind": "tokens", "tokenize": "char"}, {"kind": "tokens", "tokenize": "word"},
                            splits, "seq2seq")
    io = art.properties["io"]
    assert io["y"]["start_id"] == 2 and io["y"]["end_id"] == 3 and io["x"]["length"] == 3
    train = preprocessing.load_split(art, "train")
    assert strings(codec.join_tokens(train["y"], "y")) == ["K AE T", "D AO G", "AE K T"]
    assert strings(codec.join_tokens(train["x"], "x")) == ["cat", "dog", "act"]  # x lowercased
    test = preprocessing.load_split(art, "test")
    assert test["x"][0].tolist()[0] == 1  # 'z' never in train -> [UNK]
    assert strings(codec.join_tokens(test["y"], "y")) == ["[UNK] [UNK] D"]  # Z, EH unseen in train
    state = json.loads(art.path("preprocessor.json").read_text())
    assert "z" not in state["x"]["vocabulary"] and "EH" not in state["y"]["vocabulary"]


def test_sequences_are_right_padded(tmp_path: Path) -> None:
    splits = {"train": [("abcd", "f"), ("ab", "m")], "validation": [], "test": [("a", "m")]}
    art, _ = preprocess(tmp_path, {"kind": "tokens", "tokenize": "char"}, {"kind": "label"}, splits, "many_to_one")
    x = preprocessing.load_split(art, "train")["x"]
    assert x.shape == (2, 4) and x[1, 2:].tolist() == [0, 0] and (x[1, :2] > 1).all()
    assert preprocessing.load_split(art, "test")["x"].shape == (1, 4)


def test_language_model_targets_share_the_input_vocabulary(tmp_path: Path) -> None:
    text = "the cat sat on the mat"
    splits = {"train": [(text[i:i + 6], text[i + 1:i + 7]) for i in range(0, 14, 2)], "validation": [],
              "test": [(text[14:20], text[15:21])]}
    lm = {"kind": "tokens", "tokenize": "char", "language_model": True}
    art, codec = preprocess(tmp_path, {"kind": "tokens", "tokenize": "char"}, lm, splits, "many_to_many")
    io = art.properties["io"]
    assert io["y"]["language_model"] and "start_id" not in io["y"] and io["x"]["vocab_size"] == io["y"]["vocab_size"]
    train = preprocessing.load_split(art, "train")
    assert train["x"].shape == train["y"].shape == (7, 6)
    assert (train["x"][:, 1:] == train["y"][:, :-1]).all()  # y is x shifted by one token, same ids
    assert strings(codec.join_tokens(train["y"][:1], "y")) == [text[1:7]]


def test_labels_per_step_round_trip(tmp_path: Path) -> None:
    steps = [[[0.1], [0.2], [0.3]], [[1.0], [0.0], [2.0]]]
    splits = {"train": [(steps[0], ["sun", "rain", "sun"]), (steps[1], ["fog", "sun", "rain"])],
              "validation": [], "test": [(steps[0], ["sun", "sun", "snow"])]}
    art, codec = preprocess(tmp_path, {"kind": "series"}, {"kind": "labels"}, splits, "many_to_many")
    y = preprocessing.load_split(art, "train")["y"]
    assert y.shape == (2, 3)
    names = [strings(np.asarray(codec.class_names())[row]) for row in y]
    assert names == [["sun", "rain", "sun"], ["fog", "sun", "rain"]]
    assert len(preprocessing.load_split(art, "test")["y"]) == 0  # 'snow' never seen in train: left out
    assert art.properties["dropped"]["test"] == 1


def test_series_normalised_with_train_statistics_and_denormalised_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def make(n: int) -> list:
        return [(rng.normal(50, 10, (4, 2)).round(3).tolist(), rng.normal(20, 5, (3, 1)).round(3).tolist())
                for _ in range(n)]

    splits = {"train": make(16), "validation": make(2), "test": make(2)}
    art, codec = preprocess(tmp_path, {"kind": "series"}, {"kind": "series"}, splits, "seq2seq")
    train = preprocessing.load_split(art, "train")
    assert abs(train["x"].mean()) < 1e-5 and abs(train["x"].std() - 1) < 1e-3
    back = np.asarray(codec.denormalize(train["y"], "y"))
    assert np.allclose(back, np.asarray([e[1] for e in splits["train"]]), atol=1e-3)
    assert art.properties["io"]["y"] == {"kind": "series", "features": 1, "length": 3}


def test_category_input_and_constant_features(tmp_path: Path) -> None:
    splits = {"train": [("3", [[0.0, 1.0], [0.0, 3.0]]), ("5", [[0.0, 2.0], [0.0, 5.0]])], "validation": [],
              "test": [("7", [[0.0, 1.0], [0.0, 2.0]])]}
    art, codec = preprocess(tmp_path, {"kind": "category"}, {"kind": "series"}, splits, "one_to_many")
    assert preprocessing.load_split(art, "train")["x"].tolist() == [1, 2]
    assert preprocessing.load_split(art, "test")["x"].tolist() == [0]  # unseen class -> OOV id
    state = json.loads(art.path("preprocessor.json").read_text())
    assert state["y"]["variance"][0] == 1.0  # constant in train: centred, never divided by ~0
    vector = {"kind": "vector"}
    art2, codec2 = preprocess(tmp_path / "v", vector, {"kind": "label"},
                              {"train": [([0.0, 1.0], "a"), ([0.0, 3.0], "b")], "test": [([4.0, 2.0], "a")]},
                              "one_to_one")
    assert np.abs(preprocessing.load_split(art2, "test")["x"]).max() < 10


@pytest.mark.parametrize("tokenize", ["char", "word"])
def test_graph_tokenizer_matches_python_tokenizer(tmp_path: Path, tokenize: str) -> None:
    from components.validation import tokens_of

    values = ["Hello wide world", "a b  c"]
    splits = {"train": [(v, "x" if i else "y") for i, v in enumerate(values)], "test": [(values[0], "x")]}
    art, codec = preprocess(tmp_path, {"kind": "tokens", "tokenize": tokenize}, {"kind": "label"}, splits,
                            "many_to_one")
    ids = np.asarray(codec.encode(np.asarray(values), "x"))
    vocab = ["", "[UNK]", *codec.state["x"]["vocabulary"]]
    for row, value in zip(ids, values):
        assert [vocab[i] for i in row if i] == tokens_of(value, tokenize, lowercase=True)


def test_target_reference_learns_the_difference_from_the_seasonal_naive_forecast(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)

    def example() -> tuple[list, list]:
        temps = (50 + rng.normal(0, 5) + 5 * np.sin(np.arange(6) * np.pi / 2) + rng.normal(0, 0.1, 6)).round(3)
        x = [[t, float(i)] for i, t in enumerate(temps[:4])]
        return x, [[t] for t in temps[4:]]

    splits = {"train": [example() for _ in range(12)], "test": [example() for _ in range(3)]}
    x_spec, y_spec = {"kind": "series", "columns": ["temp", "hour"]}, {"kind": "series", "columns": ["temp"]}
    art, codec = preprocess(tmp_path, x_spec, y_spec, splits, "seq2seq", target_reference="season")
    state = codec.state["y"]
    assert state["reference"] == {"mode": "season", "columns": [0]} and state["mean"] == [0.0]
    test = preprocessing.load_split(art, "test")
    raw_x = np.asarray([e[0] for e in splits["test"]], dtype="float32")
    back = np.asarray(codec.decode_series(test["y"], raw_x))
    assert np.allclose(back, np.asarray([e[1] for e in splits["test"]]), atol=1e-3)  # raw -> encoded -> raw
    naive = np.asarray(codec.decode_series(np.zeros_like(test["y"]), raw_x))
    assert np.allclose(naive, raw_x[:, -2:, :1])  # a zero output is the seasonal-naive forecast
    last = preprocessing.reference({**state, "reference": {"mode": "last", "columns": [0]}}, raw_x)
    assert np.allclose(np.asarray(last), np.repeat(raw_x[:, -1:, :1], 2, axis=1))
    with pytest.raises(ConfigError, match="needs numeric series targets whose columns are also input columns"):
        preprocess(tmp_path / "bad", {"kind": "series"}, y_spec, splits, "seq2seq", target_reference="last")
