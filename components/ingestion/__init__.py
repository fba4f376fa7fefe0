"""Ingestion stage: a data source -> train/validation/test examples + their spec.

inputs -> outputs: (none) -> `<split>.jsonl` (one {"x": ..., "y": ...} per line), `spec.json`
(the kind of x and y, see below) and `bad_rows.json` (malformed rows with file:line).

Kinds of x / y (raw values; all encoding happens in preprocessing, inside the exported model):
- `tokens`: a string, split into chars or words (`tokenize`) by the model's own graph
- `category`: a string naming one class used as an input (one_to_many)
- `vector`: a fixed-length list of floats
- `series`: a list of time steps, each a list of floats (features)
- `label`: a string class (output of classifiers)
- `labels`: a list of string classes, one per time step (synced tagging)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from pipeline.config import ConfigError, DataConfig

from . import bundled

Example = tuple[Any, Any]


@dataclass(frozen=True)
class Task:
    """How one source feeds one topology: the kinds of x and y and how records become examples."""

    x: dict[str, Any]
    y: dict[str, Any]
    make: Callable[[list[dict[str, Any]], DataConfig], list[Example]]


@dataclass
class Loaded:
    """A source's records per split and the rows it had to skip."""

    splits: dict[str, list[dict[str, Any]]]
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    total_rows: int = 0


@dataclass(frozen=True)
class Source:
    """A named data source: how to load it and which topologies it can feed."""

    load: Callable[[DataConfig], Loaded]
    tasks: dict[str, Task]
    bundled: bool = True


def _pairs(x_key: str, y_key: str) -> Callable[[list[dict[str, Any]], DataConfig], list[Example]]:
    return lambda records, cfg: [(r[x_key], r[y_key]) for r in records]


def _load_bundled(name: str) -> Callable[[DataConfig], Loaded]:
    def load(cfg: DataConfig) -> Loaded:
        splits = bundled.prepare(name, cfg.data_dir)
        return Loaded(splits, [], sum(len(v) for v in splits.values()))

    return load


CHAR_TOKENS = {"kind": "tokens", "tokenize": "char"}

SOURCES: dict[str, Source] = {
    "names": Source(
        load=_load_bundled("names"),
        tasks={
            "many_to_one": Task(CHAR_TOKENS, {"kind": "label"}, _pairs("name", "gender")),
            "one_to_many": Task({"kind": "category"}, CHAR_TOKENS, _pairs("gender", "name")),
        },
    ),
}


def check(data: DataConfig, topology: str) -> None:
    """Fail before any work if the source is unknown or cannot feed this topology."""
    source = SOURCES.get(data.source)
    if source is None:
        raise ConfigError(
            f"data.source={data.source!r} is not a known source. "
            f"Allowed values: {', '.join(sorted(SOURCES))}."
        )
    if topology not in source.tasks:
        raise ConfigError(
            f"data.source={data.source!r} cannot feed model.topology={topology!r}; "
            f"it feeds: {', '.join(source.tasks)}."
        )
    if not source.bundled and not data.path and data.source != "tfds":
        raise ConfigError(f"data.source={data.source!r} needs data.path (the file to read).")
    if data.path and not Path(data.path).exists():
        raise ConfigError(f"data.path={data.path!r} does not exist.")


def run(inputs: dict, workdir: Path, ctx: Any, *, data: DataConfig, topology: str) -> dict[str, Any]:
    """Load the source, shape it for the topology, cap each split and write it out."""
    source = SOURCES[data.source]
    task = source.tasks[topology]
    loaded = source.load(data)
    counts = {}
    for split, records in loaded.splits.items():
        examples = task.make(records, data)
        if data.max_examples is not None and len(examples) > data.max_examples:
            examples = _sample(examples, data.max_examples, data.split_seed)
        write_examples(workdir / f"{split}.jsonl", examples)
        counts[split] = len(examples)
    spec = {"x": task.x, "y": task.y, "topology": topology, "source": data.source}
    (workdir / "spec.json").write_text(json.dumps(spec, indent=2))
    (workdir / "bad_rows.json").write_text(
        json.dumps({"total_rows": loaded.total_rows, "bad_rows": loaded.bad_rows}, indent=2)
    )
    ctx.log(f"{data.source}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return {
        "counts": counts,
        "spec": spec,
        "bad_rows": len(loaded.bad_rows),
        "total_rows": loaded.total_rows,
        "summary": " ".join(f"{k}={v}" for k, v in counts.items()),
        "metrics": {f"examples_{k}": v for k, v in counts.items()},
    }


def _sample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """A seeded sample of n examples that keeps their original order (time order survives)."""
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def write_examples(path: Path, examples: Iterable[Example]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for x, y in examples:
            handle.write(json.dumps({"x": x, "y": y}, ensure_ascii=False) + "\n")


def read_examples(path: Path) -> list[Example]:
    """The (x, y) examples of one split."""
    with Path(path).open(encoding="utf-8") as handle:
        return [(row["x"], row["y"]) for row in map(json.loads, handle)]


def read_spec(artifact: Any) -> dict[str, Any]:
    return json.loads(artifact.path("spec.json").read_text())
