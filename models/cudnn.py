"""Per-layer cuDNN eligibility: will Keras run this LSTM/GRU on the fused cuDNN kernel on a GPU?

Keras falls back to the generic kernel silently, so we say it out loud, per layer, with the
reason ("lstm_1: cudnn yes", "gru_2: cudnn no (recurrent_dropout=0.2)", a custom cell:
"rnn_my_cell_1: cudnn no (MyCell: no fused kernel)"). The rules live in the cell registry
(`models.cells`, `CellSpec.cudnn_rules`) and mirror keras/src/backend/tensorflow/rnn.py
(`cudnn_ok`) and the LSTM/GRU layers. An eligible layer
that reads a padding mask (token inputs; numeric series, whose all-NaN steps are padding) also
gets a note: on the cuDNN kernel the mask must be strictly right-padded with no empty row, or a
run-time tf.Assert fails (preprocessing pads "post", ingestion drops empty sequences, and the
export refuses series padded before their real steps or with too few real steps). The
config-level twin of these rules is `models.build.cudnn_blockers`, used to refuse
`model.use_cudnn: true` before training.
"""

from __future__ import annotations

from typing import Any

import keras

from models import cells
from models.attention import AttentiveRNN

MASK_NOTE = "masked: inputs must be right-padded, no empty rows"


def layer_reasons(layer: Any) -> list[str] | None:
    """Why `layer` cannot use cuDNN ([] = eligible); None if it is not a recurrent layer.

    The rules are the cell's (`models.cells.CellSpec`): SimpleRNN and custom cells have no fused
    kernel; LSTM/GRU need the settings in their `cudnn_rules`.
    """
    if isinstance(layer, keras.layers.Bidirectional):
        return layer_reasons(layer.forward_layer)
    if isinstance(layer, AttentiveRNN):
        return ["attention inside the recurrence runs its own loop"]
    spec = cells.for_layer(layer)
    return None if spec is None else spec.layer_reasons(layer)


def report(model: Any) -> list[dict[str, Any]]:
    """One row per recurrent layer: name, cell, eligible, reasons, masked (reads a padding mask)."""
    rows = []
    for layer in _walk(model):
        reasons = layer_reasons(layer)
        if reasons is None:
            continue
        inner = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
        cell = (f"{inner.cell}_decoder" if isinstance(inner, AttentiveRNN) else
                type(inner.cell).__name__ if cells.for_layer(inner).custom else type(inner).__name__)
        rows.append({"layer": layer.name, "cell": cell, "eligible": not reasons, "reasons": reasons,
                     "masked": _reads_mask(layer)})
    return rows


def _reads_mask(layer: Any) -> bool:
    """Whether the layer's (first) input carries a Keras padding mask in its model's graph."""
    try:
        first = keras.tree.flatten(layer.input)[0]
    except (AttributeError, ValueError, IndexError):  # never called, or called several times
        return False
    return getattr(first, "_keras_mask", None) is not None


def _walk(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(_walk(layer))
        else:
            out.append(layer)
    return out


def lines(rows: list[dict[str, Any]]) -> list[str]:
    """Console lines: 'lstm_1: cudnn yes' / 'gru_2: cudnn no (recurrent_dropout=0.2)'."""
    return [f"{r['layer']}: cudnn yes" + (f" ({MASK_NOTE})" if r.get("masked") else "") if r["eligible"]
            else f"{r['layer']}: cudnn no ({', '.join(r['reasons'])})" for r in rows]


def summary(rows: list[dict[str, Any]]) -> str:
    """'yes' if every recurrent layer is eligible, 'no' if none, else 'partial'."""
    flags = [r["eligible"] for r in rows]
    return "yes" if flags and all(flags) else "no" if not any(flags) else "partial"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The report as a Markdown table (the MLflow artifact)."""
    body = "\n".join(f"| {r['layer']} | {r['cell']} | {'yes' if r['eligible'] else 'no'} | "
                     f"{', '.join(r['reasons']) or '-'} | {'yes' if r.get('masked') else 'no'} |" for r in rows)
    return ("# cuDNN eligibility\n\n| layer | cell | cuDNN | why not | masked (right-padded needed) |\n"
            "|---|---|---|---|---|\n" + body + "\n")
