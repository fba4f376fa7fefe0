"""`tokens`: text split into characters or whitespace words (`tokenize`: char | word | config).

State: `vocabulary` (frequency order), `length` (the longest train sequence, capped by
`data.max_length`; + 1 for the end token of a generated target), `lowercase`, `generated`.
Token ids: 0 = padding, 1 = unknown, then (generated sequences) 2 = start, 3 = end, then the
vocabulary. A target is either generated (one_to_many / seq2seq: ids + end token) or, with
`language_model`, the next token of the input at each step (the input's own vocabulary).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import numpy as np

from components.kinds.base import Kind

PAD, UNK, START, END = "", "[UNK]", "<s>", "</s>"


def tokens_of(value: str, tokenize: str, lowercase: bool = False) -> list[str]:
    """Split a raw string the way the model's graph does (chars or whitespace words)."""
    value = value.lower() if lowercase else value
    return list(value) if tokenize == "char" else value.split()


class Tokens(Kind):
    name = "tokens"
    sequence = True
    zero_pads = True

    def type_ok(self, value: Any) -> bool:
        return isinstance(value, str)

    def stats(self, present: list[Any], spec: dict[str, Any], lowercase: bool) -> dict[str, Any]:
        lower = lowercase and spec.get("lowercase", True)
        toks = [tokens_of(v, spec.get("tokenize", "char"), lower) for v in present]
        return {"lengths": [len(t) for t in toks],
                "vocabulary": dict(Counter(t for seq in toks for t in seq).most_common())}

    def fit(self, values: list[Any], state: dict[str, Any], data: Any, generated: bool) -> None:
        lowercase = data.lowercase and not generated
        toks = [tokens_of(v, state.get("tokenize", "char"), lowercase) for v in values]
        counts = Counter(t for seq in toks for t in seq)
        state["lowercase"] = lowercase
        state["generated"] = generated
        state["vocabulary"] = ([START, END] if generated else []) + [t for t, _ in counts.most_common()]
        longest = max((len(t) for t in toks), default=1) + (1 if generated else 0)
        state["length"] = min(longest, data.max_length + int(generated)) if data.max_length else longest

    def io_entry(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"vocab_size": len(state["vocabulary"]) + 2,  # + padding and unknown
                                 "length": state["length"]}
        if side == "y" and state.get("generated"):
            entry["start_id"], entry["end_id"] = 2, 3
        if state.get("language_model"):
            entry["language_model"] = True  # y = x shifted by one token, same vocabulary
        return entry

    def layers(self, state: dict[str, Any], side: str) -> dict[str, Any]:
        import keras

        return {side: keras.layers.StringLookup(vocabulary=state["vocabulary"], mask_token=PAD, oov_token=UNK,
                                                name=f"{side}_lookup")}

    def encode(self, codec: Any, raw: Any, side: str) -> Any:
        import tensorflow as tf

        return tf.cast(codec.layers[side](codec.tokenize(raw, side)), "int32")

    def encode_targets(self, codec: Any, ys: list[Any], xs: list[Any] | None) -> np.ndarray:
        s = codec.y
        vocab = {t: i + 2 for i, t in enumerate(s["vocabulary"])}
        out = np.zeros((len(ys), s["length"]), dtype="int32")
        for row, value in enumerate(ys):
            ids = [vocab.get(t, 1) for t in tokens_of(value, s.get("tokenize", "char"), s.get("lowercase", False))]
            ids = ids[: s["length"] - 1] + [vocab[END]] if s.get("generated") else ids[: s["length"]]
            out[row, : len(ids)] = ids
        return out

    def shape(self, state: dict[str, Any]) -> tuple[int, ...]:
        return (state["length"],)

    def pad(self, encoded: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        length = state.get("length")
        if not length:
            return encoded
        padded = np.zeros((len(encoded), length), dtype="int32")
        width = min(length, encoded.shape[1])
        padded[:, :width] = encoded[:, :width]
        return padded

    def serve(self, model: Any, codec: Any, cfg: Any) -> Callable[[Any], dict[str, Any]]:
        from components.export import generate_text

        return generate_text(model, codec, cfg)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from components.evaluation.sequences import evaluate_tokens

        return evaluate_tokens(*args, **kwargs)


KIND = Tokens()
