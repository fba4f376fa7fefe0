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

from components.kinds.base import Kind, input_checks

PAD, UNK, START, END = "", "[UNK]", "<s>", "</s>"
MAX_BEAM_WIDTH = 64  # the largest `beam_width` the generate signature accepts (= model.beam_width's bound)
MIN_MAX_LENGTH = 64  # seq2seq/one_to_many generate: max_length up to max(2 x default length, this)
MAX_LM_LENGTH = 4096  # language model generate: max_length up to this


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
        return generate_text(model, codec, cfg)

    evaluator = "tokens"


KIND = Tokens()


# --------------------------------------------------------------------------------------------
# Serving: greedy `serving_default`, and the `generate` signatures (beam search; a language model's
# sampled continuation)


def generator(model: Any, codec: Any, cfg: Any) -> Callable[..., dict[str, Any]]:
    """models/decoding.py's generate(encoded, max_length, beam_width) -> {ids, scores[, attention]}."""
    from components.kinds import io_spec
    from models.decoding import make_generator

    return make_generator(model, cfg, io_spec(codec.state))


def default_length(codec: Any, cfg: Any) -> int:
    """Output tokens generated by default: model.max_output_length, else the target length
    (a language model continues its prompt by model.max_output_length or 32 tokens)."""
    if codec.y.get("language_model"):
        return int(cfg.max_output_length or 32)
    return int(cfg.max_output_length or codec.y.get("length") or 32)


def generate_text(model: Any, codec: Any, cfg: Any) -> Callable[[Any], dict[str, Any]]:
    """Raw inputs -> the greedily generated sequence, one string per row."""
    if codec.y.get("language_model"):
        return lambda inputs: {"tokens": continue_text(model, codec, codec.encode(inputs, "x"),
                                                       default_length(codec, cfg), 0.0)}
    generate = generator(model, codec, cfg)
    check = input_checks(codec, cfg)

    def fn(inputs: Any) -> dict[str, Any]:
        inputs, _ = check(inputs)
        return {"tokens": codec.join_tokens(generate(codec.encode(inputs, "x"), default_length(codec, cfg), 1)["ids"])}

    return fn


def max_generate_length(codec: Any, cfg: Any) -> int:
    """The largest `max_length` the seq2seq / one_to_many `generate` signature accepts."""
    return max(2 * default_length(codec, cfg), MIN_MAX_LENGTH)


def check_range(value: Any, name: str, low: int, high: int) -> Any:
    """An int32 scalar checked to lie in [low, high] (InvalidArgumentError naming it otherwise)."""
    import tensorflow as tf

    ok = (value >= low) & (value <= high)
    with tf.control_dependencies([tf.debugging.Assert(ok, [tf.constant(
            f"{name} must be between {low} and {high} for this model, got"), value])]):
        return tf.identity(value)


def beam_generate(model: Any, codec: Any, cfg: Any) -> Callable[..., dict[str, Any]]:
    """The `generate` signature: raw inputs, max_length, beam_width -> {tokens, scores}.

    One general beam search (the width is a run-time value; 1 runs the greedy loop) decodes up
    to `max_length` tokens, so `scores` is the summed log-probability of exactly the returned
    tokens. `beam_width` outside 1..MAX_BEAM_WIDTH or `max_length` outside
    1..max_generate_length raise InvalidArgumentError (HTTP 400), never a silent clamp.
    """
    import tensorflow as tf

    generate = generator(model, codec, cfg)
    cap = max_generate_length(codec, cfg)
    check = input_checks(codec, cfg)

    def fn(inputs: Any, max_length: Any, beam_width: Any) -> dict[str, Any]:
        steps = check_range(max_length, "max_length", 1, cap)
        width = check_range(beam_width, "beam_width", 1, MAX_BEAM_WIDTH)
        inputs, _ = check(inputs)
        out = generate(codec.encode(inputs, "x"), steps, width)
        return {"tokens": codec.join_tokens(out["ids"]), "scores": tf.cast(out["scores"], tf.float32)}

    return fn


def continue_text(model: Any, codec: Any, encoded: Any, steps: Any, temperature: Any) -> Any:
    """A language model continues each prompt by `steps` tokens (`models.decoding.continue_ids`), as strings [B]."""
    from models.decoding import continue_ids

    return codec.join_tokens(continue_ids(model, encoded, steps, temperature))


def lm_generate(model: Any, codec: Any, cfg: Any) -> Callable[..., dict[str, Any]]:
    """A language model's `generate` signature: prompts, max_length, temperature -> continuations."""
    import tensorflow as tf

    def fn(inputs: Any, max_length: Any, temperature: Any) -> dict[str, Any]:
        steps = check_range(tf.convert_to_tensor(max_length, tf.int32), "max_length", 1, MAX_LM_LENGTH)
        return {"tokens": continue_text(model, codec, codec.encode(inputs, "x"), steps, temperature)}

    return fn
