"""Config loading, overrides and every validation error path (through the real CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from components import config as cfgmod
from components.config import ConfigError
from pipeline import cli

ROOT = Path(__file__).resolve().parent.parent
BASE = """\
name: t
data: {source: names}
model: {topology: many_to_one, cell: lstm}
train: {epochs: 1}
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


def test_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = cfgmod.load(write(tmp_path, BASE), ["train.epochs=3", "model.cell=gru", "train.learning_rate=1e-2"])
    assert (cfg.train.epochs, cfg.model.cell, cfg.train.learning_rate) == (3, "gru", 0.01)
    assert cfg.tracking.uri == "sqlite:///mlruns/mlflow.db" and cfg.export.dir == "exports"
    flat = cfg.flat()
    assert flat["model.topology"] == "many_to_one" and flat["train.epochs"] == 3
    assert cfgmod.from_dict(cfg.to_dict()) == cfg  # round trip
    assert cfgmod.with_overrides(cfg, {"model.units": 7}).model.units == 7


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    cfg = cfgmod.load(write(tmp_path, "model: {cell: gru}\n", "my_pipe.yaml"))
    assert cfg.name == "my_pipe"


def test_bundled_configs_load() -> None:
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfgmod.load(path)


# Each malformed config: (yaml text or bytes, extra --set args, words the message must contain)
BAD = {
    "unknown_section": ("name: t\nmodle: {cell: lstm}\n", [], ["modle", "Did you mean 'model'"]),
    "typo_key": ("model: {untis: 8}\n", [], ["model.untis", "model.units"]),
    "unknown_key_no_match": ("train: {zzz: 1}\n", [], ["train.zzz", "Allowed keys"]),
    "bad_topology": ("model: {topology: many_to_few}\n", [], ["many_to_few", "many_to_one", "seq2seq"]),
    "bad_cell": ("model: {cell: lstmm}\n", [], ["lstmm", "Did you mean 'lstm'", "simple_rnn"]),
    "wrong_type_int": ("model: {units: sixty}\n", [], ["model.units", "whole number"]),
    "float_for_int": ("train: {epochs: 2.5}\n", [], ["train.epochs", "whole number"]),
    "wrong_type_bool": ("model: {bidirectional: maybe}\n", [], ["model.bidirectional", "true or false"]),
    "negative_units": ("model: {units: -4}\n", [], ["model.units", "out of range"]),
    "zero_epochs": ("train: {epochs: 0}\n", [], ["train.epochs", "out of range"]),
    "dropout_too_big": ("model: {dropout: 1.5}\n", [], ["model.dropout", "0.95"]),
    "nan_learning_rate": ("train: {learning_rate: .nan}\n", [], ["train.learning_rate", "finite"]),
    "string_learning_rate": ("train: {learning_rate: fast}\n", [], ["train.learning_rate", "number"]),
    "section_not_mapping": ("model: lstm\n", [], ["model", "mapping"]),
    "top_level_list": ("- a\n- b\n", [], ["mapping"]),
    "bad_yaml": ("model: {cell: lstm\n", [], ["not valid YAML", "line"]),
    "empty_file": ("", [], ["empty"]),
    "not_utf8": (b"name: \xff\xfe\n", [], ["UTF-8"]),
    "bad_set_syntax": (BASE, ["train.epochs"], ["--set", "section.key=value"]),
    "bad_set_key": (BASE, ["train.epoch=3"], ["train.epoch", "train.epochs"]),
    "bad_set_value": (BASE, ["model.cell=transformer"], ["transformer", "gru"]),
    "unknown_source": ("data: {source: imagenet}\n", [], ["data.source", "imagenet", "names"]),
    "wrong_pairing": ("data: {source: names}\nmodel: {topology: seq2seq}\n", [], ["names", "seq2seq"]),
    "missing_data_file": ("data: {source: csv, path: /nonexistent/x.csv}\nmodel: {topology: many_to_one}\n",
                          [], ["/nonexistent/x.csv"]),
    "bad_mixed_precision": ("train: {mixed_precision: fp8}\n", [], ["train.mixed_precision", "bfloat16"]),
    "bidirectional_language_model": ("data: {source: pydoc_topics}\nmodel: {topology: many_to_many, "
                                     "bidirectional: true}\n", [], ["model.bidirectional", "language model"]),
    "bidirectional_one_to_many": ("data: {source: names}\nmodel: {topology: one_to_many, bidirectional: true}\n",
                                  [], ["model.bidirectional", "one_to_many"]),
    "bad_threshold_shape": ("evaluate: {thresholds: {accuracy: 0.7}}\n", [], ["evaluate.thresholds.accuracy"]),
    "threshold_bound_typo": ("evaluate: {thresholds: {accuracy: {minimun: 0.99}}}\n", [],
                             ["evaluate.thresholds.accuracy.minimun", "Did you mean 'min'", "max, min"]),
    "threshold_bound_upper_case": ("evaluate: {thresholds: {accuracy: {MIN: 0.9}}}\n", [],
                                   ["evaluate.thresholds.accuracy.MIN", "Did you mean 'min'"]),
    "threshold_unknown_metric": ("evaluate: {thresholds: {acuracy: {min: 0.9}}}\n", [],
                                 ["evaluate.thresholds.acuracy", "Did you mean 'accuracy'"]),
    "threshold_without_bound": ("evaluate: {thresholds: {accuracy: {}}}\n", [],
                                ["evaluate.thresholds.accuracy", "min"]),
    "threshold_not_finite": ("evaluate: {thresholds: {mae: {max: .inf}}}\n", [],
                             ["evaluate.thresholds.mae.max", "finite"]),
    "gate_metric_unknown": ("evaluate: {gate_metrics: [token_eror_rate]}\n", [],
                            ["evaluate.gate_metrics", "Did you mean 'token_error_rate'"]),
    "confidence_out_of_range": ("evaluate: {confidence: 1.5}\n", [], ["evaluate.confidence", "out of range"]),
    "season_zero": ("data: {season: 0}\n", [], ["data.season", "out of range"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_one_paragraph_and_writes_nothing(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    text, sets, words = BAD[case]
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, text)
    argv = ["run", str(path)] + [a for s in sets for a in ("--set", s)]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG, err
    assert err.startswith("rnnpipe: config error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    for word in words:
        assert word in err, (word, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # no runs/, mlruns/, exports/


def test_missing_config_file(tmp_path: Path, capsys) -> None:
    assert cli.main(["run", str(tmp_path / "nope.yaml")]) == cli.EXIT_CONFIG
    assert "does not exist" in capsys.readouterr().err


def test_cli_error_has_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    path = write(tmp_path, "model: {cell: lstmm}\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "lstmm" in proc.stderr


def test_config_error_names_field_value_and_allowed() -> None:
    with pytest.raises(ConfigError) as err:
        cfgmod.from_dict({"model": {"merge_mode": "avg"}})
    message = str(err.value)
    assert "model.merge_mode='avg'" in message and "concat" in message and "ave" in message


def config_keys(cls: type = cfgmod.Config, prefix: str = "") -> list[str]:
    """Every dotted key a config accepts (the dataclass fields, sections walked)."""
    import dataclasses

    keys = []
    for f in dataclasses.fields(cls):
        section = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        keys += config_keys(section, f"{f.name}.") if dataclasses.is_dataclass(section) else [prefix + f.name]
    return keys


def test_every_config_key_is_in_the_readme() -> None:
    """A key a user cannot find in the README is a key they cannot use: each is named there, dotted
    (`model.units`), as a key in a section's list or table (`units`), or in YAML (`units:`)."""
    import re

    readme = (ROOT / "README.md").read_text()
    keys = config_keys()
    assert len(keys) > 80 and "data.beam_options" in keys and "sweep.goal" in keys
    leaf = {k: k.rsplit(".", 1)[-1] for k in keys}
    missing = [k for k in keys if k not in readme and not re.search(rf"`{leaf[k]}\b|\b{leaf[k]}\s*[:=]", readme)]
    assert not missing, f"config keys the README does not name: {missing}"
