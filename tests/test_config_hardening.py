"""Issue 15, config side: alias bombs, names that escape the project, ranges that cannot run,
unwritable places, bad or unreachable tracking stores, credentials in logs, a full disk --
each one line before any work, never a hang or a traceback."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from components import config as cfgmod
from pipeline import cli

BASE = """\
name: t
data: {source: names}
model: {topology: many_to_one, cell: lstm}
train: {epochs: 1}
"""

LAUGHS = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10))
BOMB = 'l0: &l0 "lol"\n' + LAUGHS


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# (yaml text, --set args, words the message must contain)
BAD = {
    "alias bomb in a scalar": ("x: &a [1, 2]\nname: *a\n", [], ["aliases (*a)", "not allowed"]),
    "alias in sweep.grid": (BASE + "x: &u [1, 2]\nsweep: {grid: {model.units: *u}}\n", [], ["aliases (*u)"]),
    "negative sweep seed": (BASE, ["sweep.seed=-1"], ["sweep.seed", "out of range"]),
    "name escapes the project": (BASE, ["name=../../x"], ["name='../../x'", "letters, digits"]),
    "absolute name": (BASE, ["name=/tmp/x"], ["name='/tmp/x'"]),
    "hidden name": (BASE, ["name=.x"], ["not first"]),
    "seed too large": (BASE, ["train.seed=4294967296"], ["train.seed", "out of range", "4294967295"]),
    "negative split seed": (BASE, ["data.split_seed=-1"], ["data.split_seed", "out of range"]),
    "units too large": (BASE, ["model.units=65536"], ["model.units", "out of range", "4096"]),
    "too many weights": (BASE, ["model.units=4096", "model.num_layers=16"], ["recurrent weights", "fewer units"]),
    "window too large": (BASE, ["data.window=1000000000"], ["data.window", "out of range"]),
    "batch too large": (BASE, ["train.batch_size=10000000"], ["train.batch_size", "out of range"]),
    "bogus tracking scheme": (BASE, ["tracking.uri=bogus://x"], ["tracking.uri", "unsupported scheme 'bogus:'"]),
    "huge value in a message": (BASE, ["model.cell=" + "x" * 5000], ["model.cell", "..."]),
    "custom cell not importable": (BASE, ["model.cell=no_such_module:Cell"], ["model.cell", "cannot be imported"]),
    "custom cell not a cell": (BASE, ["model.cell=tests.custom_cells:NotACell"], ["model.cell", "state_size"]),
    "custom cell with a huge state": (BASE, ["model.cell=tests.custom_cells:HugeStateCell"],
                                      ["model.cell", "at most 16 states of at most 32768"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_fails_fast_in_one_line(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    text, sets, words = BAD[case]
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, text)
    code = cli.main(["run", str(path)] + [a for s in sets for a in ("--set", s)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG, err
    assert err.startswith("rnnpipe: config error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and len(err) < 600, err[:800]
    for word in words:
        assert word in err, (word, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # no runs/, mlruns/, exports/


def test_a_billion_laughs_is_refused_at_its_first_alias(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + BOMB + "name: *l9\n")
    with pytest.raises(cfgmod.ConfigError, match=r"aliases \(\*l0\) are not allowed") as err:
        cfgmod.load(path)
    assert len(str(err.value)) < 400
    path = write(tmp_path, BASE + BOMB.replace("l0: &l0", "sweep: {grid: {model.units: *l9}}\nl0: &l0"))
    with pytest.raises(cfgmod.ConfigError, match="not allowed"):
        cfgmod.load(path)
    assert cfgmod.load(write(tmp_path, BASE.replace("model: {", "model: &m {"))).name == "t"  # anchors alone: fine


@pytest.mark.parametrize("key", ["export.dir", "runs_dir"])
def test_unwritable_places_are_refused_before_any_work(key: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    path = write(tmp_path, BASE)
    code = cli.main(["run", str(path), "--set", f"{key}={tmp_path / 'afile'}"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG and key in err and "not a folder" in err and "Traceback" not in err, err
    code = cli.main(["run", str(path), "--set", f"{key}={tmp_path / 'afile' / 'below'}"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG and "cannot be created" in err, err
    code = cli.main(["sweep", str(path), "--grid", "model.cell=lstm,gru", "--set", f"{key}={tmp_path / 'afile'}"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG and "not a folder" in err, err  # before the sweep's parent run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "c.yaml"]


def test_unreachable_tracking_store_fails_fast_without_credentials(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, BASE)
    uri = f"http://alice:s3cret@127.0.0.1:{free_port()}/"
    code = cli.main(["run", str(path), "--set", f"tracking.uri={uri}"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG and "cannot be reached" in err and "Traceback" not in err, err
    assert "s3cret" not in err and "alice" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_credentials_in_the_tracking_uri_are_never_logged(tmp_path: Path) -> None:
    cfg = cfgmod.load(write(tmp_path, BASE), ["tracking.uri=postgresql://bob:hunter2@db.example:5432/mlflow?"
                                              "sslmode=require&password=x9&token=abc"])
    assert cfg.tracking.uri.startswith("postgresql://bob:hunter2@")  # the run still connects with them
    logged = cfg.flat()["tracking.uri"] + cfgmod.dump_yaml(cfg)
    for secret in ("hunter2", "bob", "x9", "abc"):
        assert secret not in logged, logged
    assert "db.example:5432/mlflow" in logged and "sslmode=require" in logged
    assert cfgmod.redact_uri("sqlite:///mlruns/mlflow.db") == "sqlite:///mlruns/mlflow.db"


def test_a_full_disk_is_one_clear_message(tmp_path: Path, capsys, monkeypatch) -> None:
    from pipeline import runner

    def full(*args: object, **kwargs: object) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "x.npz"))
        except OSError as exc:
            raise RuntimeError("while saving the split") from exc

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "run", full)
    code = cli.main(["run", str(write(tmp_path, BASE))])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "no space left on device" in err and str(tmp_path / "runs" / "x.npz") in err, err


def test_serve_flags_out_of_range_are_config_errors(tmp_path: Path, capsys) -> None:
    assert cli.main(["serve", str(tmp_path), "--max-rows", "0"]) == cli.EXIT_CONFIG
    assert "--max-rows" in capsys.readouterr().err
    assert cli.main(["serve", str(tmp_path), "--body-timeout", "0"]) == cli.EXIT_CONFIG


def test_every_serving_option_is_a_serve_flag_with_the_same_default(tmp_path: Path) -> None:
    """cmd_serve builds serving.Options from the flags of the same names."""
    import dataclasses

    from components.serving import Options

    args = cli.parser().parse_args(["serve", str(tmp_path)])
    assert {f.name: f.default for f in dataclasses.fields(Options)} == \
        {f.name: getattr(args, f.name) for f in dataclasses.fields(Options)}
