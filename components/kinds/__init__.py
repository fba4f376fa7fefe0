"""Data kinds: what a side (x or y) of an example holds, one module per kind, behind `Kind`.

A spec side is a dict such as `{"kind": "tokens", "tokenize": "char"}` (ingestion writes it;
preprocessing adds the fitted state). `of(side)` / `kind(name)` give the kind's object, and the
stages ask it instead of comparing kind names:

- validation: `type_ok` (is a raw value of this kind), `stats` (per-split statistics);
- preprocessing: `fit` (the state from the train values), `io_entry` (what the model builder
  needs, written to io.json), and the codec pieces `layers` (Keras preprocessing layers),
  `encode` (raw -> model input, a TF op also traced into the SavedModel), `encode_targets`
  (raw targets -> training arrays), `shape`, `pad`, `target_filter`;
- export / predict / registry: `strings` (raw values are text), `raw_tensor`, `input_signature`,
  `input_contract` / `contract_lines` / `checked_inputs` (what the SavedModel accepts as this x
  side and how it checks it), `output_contract`, `serve` (the raw-in/raw-out `serving_default` of a
  target of this kind; series.py also declares the named extra inputs, tokens.py the `generate`
  signatures), `distribution` (model card), `window_header` / `window_rows` (`rnnpipe predict` on
  time-series files);
- evaluation: `evaluator` (the name of the components/evaluation evaluator that judges a target of
  this kind with its baselines: kinds are read by the early stages, so they name it rather than
  import it), `zero_pads` (id 0 is padding: such steps do not count).

Modules: tokens.py (text -> token ids; generated sequences, language models), category.py (one
class name as an input), label.py (one class as a target), labels.py (a class per step), vector.py
(fixed-width numbers), series.py (numbers per step: windows, forecasts, `data.scale: window`,
`data.target_reference`).

The Keras side of a kind (its input layer, embedding, head and loss) lives in models/io.py, one
row per kind name: models/ imports nothing from components/ (layering), so the io spec names the
kind and models/io.py says what it is to a network (ids or values, a time axis or not, classes,
tokens or values out). Adding a data kind: a module here (registered in `KINDS` below) and, when
its encoded shape is new, a row in models/io.py (plus the (x, y) pairs it fits in FITS).
"""

from __future__ import annotations

from typing import Any

from components.kinds import category, label, labels, series, tokens, vector
from components.kinds.base import Kind

KINDS: dict[str, Kind] = {k.name: k for k in (tokens.KIND, category.KIND, vector.KIND, series.KIND, label.KIND,
                                             labels.KIND)}

__all__ = ["KINDS", "Kind", "io_spec", "kind", "of"]


def kind(name: str) -> Kind:
    """The kind called `name` (KeyError for an unknown one)."""
    return KINDS[name]


def of(side: dict[str, Any]) -> Kind:
    """The kind of a spec / state / io side ({"kind": name, ...})."""
    return KINDS[side["kind"]]


def io_spec(state: dict[str, Any]) -> dict[str, Any]:
    """What the model builder needs to know about each side."""
    out = {side: {"kind": state[side]["kind"], **of(state[side]).io_entry(state[side], side)}
           for side in ("x", "y")}
    if state.get("future"):  # the decoder's known future values [B, horizon, columns]
        out["future"] = {"features": state["future"]["features"], "length": state["future"]["length"]}
    if state.get("series_id"):  # the series id (model.id_embedding_dim): train ids + 1 unseen bucket
        out["series_id"] = {"vocab_size": len(state["series_id"]["vocabulary"]) + 1}
    return out
