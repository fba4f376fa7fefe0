"""The Keras face of each data kind: how an encoded side enters a model and how a target leaves it.

The data kinds themselves (raw values, statistics, codecs, serving) live in components/kinds/;
models/ imports nothing from components/, so the io spec (io.json: {"x": {"kind": ..., sizes},
"y": {...}}) names the kind and `SIDES` below says what that kind is to a network, as shape facts
the builders use instead of kind names:

- `ids`: the encoded side is integer ids (embedded; 0 = padding), else float values;
- `sequence`: it has a time axis (tokens, series, labels), else one item per example;
- `output`: what a head predicts for it: "classes" (softmax over `num_classes`), "tokens"
  (softmax over `vocab_size`, padding id 0 ignored by the loss; teacher-forced and generated
  step by step by one_to_many / seq2seq decoders), "values" (linear numbers, `features` per step);
- `shifted`: a many_to_many target of this kind is the input shifted forward (next token,
  forecast), so a backward RNN would see it.

Adding a data kind with a new encoded shape: a row here, its module in components/kinds/, and the
(x, y) pairs it fits in FITS below.

Nothing here imports Keras: the config checks run before any TensorFlow import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DECODER_TOPOLOGIES = ("one_to_many", "seq2seq")


@dataclass(frozen=True)
class Side:
    ids: bool = False
    sequence: bool = False
    output: str | None = None  # classes | tokens | values; None: not a target
    shifted: str = ""  # what a many_to_many target of this kind is ("" = aligned, e.g. tags)


SIDES: dict[str, Side] = {
    "tokens": Side(ids=True, sequence=True, output="tokens", shifted="next-token (language model)"),
    "category": Side(ids=True),
    "vector": Side(),
    "series": Side(sequence=True, output="values", shifted="shifted-series (forecast)"),
    "label": Side(output="classes"),
    "labels": Side(sequence=True, output="classes"),
}


def side(io_side: dict[str, Any]) -> Side:
    """The shape facts of an io side ({"kind": ..., ...})."""
    return SIDES[io_side["kind"]]


def generates(topology: str, io_y: dict[str, Any]) -> bool:
    """True when the model emits tokens one step at a time (a decoder topology with token targets:
    teacher-forced in training, start/end tokens in the target vocabulary)."""
    return topology in DECODER_TOPOLOGIES and side(io_y).output == "tokens"


def classes(io_y: dict[str, Any]) -> int:
    """The softmax width of a classes/tokens target."""
    return io_y["vocab_size"] if side(io_y).output == "tokens" else io_y["num_classes"]


# Which (x kind, y kind) pairs each topology can learn: the one compatibility table (ingestion
# checks a source's examples against it, `build.check_io` a model's io). Every pair builds, trains,
# evaluates and exports end to end (checked through the pipeline with a stub source for
# one_to_one category -> label, many_to_one and many_to_many tokens -> series). Not
# many_to_many series -> tokens: a token y that is not a language model's shifted x is
# evaluated by generation, which a synced many_to_many model does not do.
FITS: dict[str, set[tuple[str, str]]] = {
    "one_to_one": {("vector", "label"), ("category", "label")},
    "one_to_many": {(x, y) for x in ("vector", "category") for y in ("tokens", "series")},
    "many_to_one": {("tokens", "label"), ("series", "label"), ("series", "series"), ("tokens", "series")},
    "many_to_many": {("tokens", "labels"), ("series", "labels"), ("tokens", "tokens"), ("series", "series"),
                     ("tokens", "series")},
    "seq2seq": {(x, y) for x in ("tokens", "series") for y in ("tokens", "series")},
}


def fit_error(topology: str, x: str, y: str, source: str | None = None) -> str | None:
    """None if `topology` can learn x -> y examples, else the one-line reason (naming `source` when given)."""
    if (x, y) in FITS[topology]:
        return None
    allowed = ", ".join(f"{a} -> {b}" for a, b in sorted(FITS[topology]))
    if source is None:
        return f"model.topology={topology!r} cannot map {x} -> {y}; it takes {allowed}."
    return (f"data.source={source!r} gives {x} -> {y} examples, which model.topology={topology!r} cannot learn; "
            f"it takes: {allowed}.")
