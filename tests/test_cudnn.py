"""cuDNN eligibility on CPU: the per-layer report (eligible, each reason) and its config-level twin."""

from __future__ import annotations

import dataclasses

import pytest

from components.config import ConfigError, ModelConfig, TrainConfig

keras = pytest.importorskip("keras")

from models import build, cudnn  # noqa: E402
from tests.model_support import io_of  # noqa: E402


def report_for(x: str = "series", **kw: object) -> list[dict]:
    cfg = ModelConfig(**{"topology": "many_to_one", "units": 4, "embedding_dim": 4, **kw})
    return cudnn.report(build.build_model(cfg, io_of(x, "label")))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_defaults_are_eligible(cell: str) -> None:
    (row,) = report_for(cell=cell)
    assert row == {"layer": f"encoder_{cell}_1", "cell": cell.upper(), "eligible": True, "reasons": [],
                   "masked": True}  # series inputs are masked too: an all-NaN step is padding (issue 17)
    assert cudnn.lines([row]) == [f"encoder_{cell}_1: cudnn yes ({cudnn.MASK_NOTE})"]
    assert cudnn.summary([row]) == "yes"


def test_masked_layers_carry_the_right_padding_note() -> None:
    rows = report_for("tokens", num_layers=2, bidirectional=True)
    assert [r["layer"] for r in rows] == ["bi_encoder_lstm_1", "bi_encoder_lstm_2"]
    assert all(r["eligible"] and r["masked"] for r in rows)
    assert cudnn.lines(rows)[0] == f"bi_encoder_lstm_1: cudnn yes ({cudnn.MASK_NOTE})"


REASONS = [
    ("lstm", {"activation": "relu"}, "activation=relu", "model.activation='relu'"),
    ("gru", {"recurrent_activation": "hard_sigmoid"}, "recurrent_activation=hard_sigmoid",
     "model.recurrent_activation='hard_sigmoid'"),
    ("lstm", {"recurrent_dropout": 0.2}, "recurrent_dropout=0.2", "model.recurrent_dropout=0.2"),
    ("gru", {"unroll": True}, "unroll=true", "model.unroll=true"),
    ("lstm", {"use_bias": False}, "use_bias=false", "model.use_bias=false"),
    ("gru", {"reset_after": False}, "reset_after=false", "model.reset_after=false"),
    ("simple_rnn", {}, "SimpleRNN has no cuDNN kernel", "model.cell='simple_rnn'"),
]


@pytest.mark.parametrize("cell,override,reason,field", REASONS, ids=[r[2] for r in REASONS])
def test_each_ineligible_reason_in_report_and_config(cell: str, override: dict, reason: str, field: str) -> None:
    (row,) = report_for(cell=cell, **override)
    assert not row["eligible"] and row["reasons"] == [reason]
    assert cudnn.lines([row]) == [f"encoder_{cell}_1: cudnn no ({reason})"]
    cfg = ModelConfig(topology="many_to_one", cell=cell, use_cudnn="true", **override)
    with pytest.raises(ConfigError, match=r"model\.use_cudnn='true'.*" + field.replace(".", r"\.")):
        build.check(cfg, TrainConfig())


def test_use_cudnn_false_is_reported() -> None:
    (row,) = report_for(use_cudnn="false")
    assert row["reasons"] == ["use_cudnn=false"]


def test_every_blocker_is_named_at_once() -> None:
    cfg = ModelConfig(activation="relu", use_bias=False, use_cudnn="true")
    with pytest.raises(ConfigError) as err:
        build.check(cfg, TrainConfig())
    assert "model.activation='relu'" in str(err.value) and "model.use_bias=false" in str(err.value)


def test_attentive_decoder_is_never_fused_and_summary_is_partial() -> None:
    cfg = ModelConfig(topology="seq2seq", units=4, embedding_dim=4, context="attention", context_feed="every_step")
    rows = cudnn.report(build.build_model(cfg, io_of("tokens", "tokens")))
    by_name = {r["layer"]: r for r in rows}
    assert by_name["encoder_lstm_1"]["eligible"] and by_name["encoder_lstm_1"]["masked"]
    assert by_name["decoder_attentive_lstm"]["reasons"] == ["attention inside the recurrence runs its own loop"]
    assert cudnn.summary(rows) == "partial"
    assert cudnn.summary(report_for(cell="simple_rnn")) == "no"
    with pytest.raises(ConfigError, match="context_feed='every_step'"):
        build.check(dataclasses.replace(cfg, use_cudnn="true"), TrainConfig())


def test_use_cudnn_true_needs_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ModelConfig(cell="gru", use_cudnn="true")
    monkeypatch.setattr(build, "_gpu_visible", lambda: False)
    with pytest.raises(ConfigError, match="needs a visible GPU"):
        build.check(cfg, TrainConfig())
    monkeypatch.setattr(build, "_gpu_visible", lambda: True)
    build.check(cfg, TrainConfig())  # eligible and a GPU: fine


def test_config_blockers_agree_with_the_layer_report() -> None:
    for cell, override, _, _ in REASONS:
        cfg = ModelConfig(topology="many_to_one", cell=cell, units=4, **override)
        assert build.cudnn_blockers(cfg)
    for cell in ("lstm", "gru"):
        assert build.cudnn_blockers(ModelConfig(cell=cell)) == []
        assert report_for(cell=cell)[0]["eligible"]


def test_markdown_table() -> None:
    rows = report_for("tokens") + report_for(cell="gru", recurrent_dropout=0.2)
    text = cudnn.markdown(rows)
    assert "| encoder_lstm_1 | LSTM | yes | - | yes |" in text
    assert "| encoder_gru_1 | GRU | no | recurrent_dropout=0.2 | yes |" in text
    assert "| rnn_lstm_1 | LSTM | yes | - | no |" in cudnn.markdown(cudnn.report(build.build_model(
        ModelConfig(topology="one_to_one", units=4), io_of("vector", "label"))))
