"""Greedy and beam-search decoding for token-generating models (one_to_many, seq2seq with tokens y).

    generate = make_generator(model, model_cfg, io)
    out = generate(encoded_inputs, max_length=24, beam_width=3)
    out["ids"]        int32 [B, max_length]: generated ids, the end id included, then 0-padded
    out["scores"]     float32 [B]: sum of log-probabilities of the ids up to and including the end id
    out["attention"]  float32 [B, max_length, T_enc] (attention models only): the weights per output step

`encoded_inputs` is what the model's "inputs" takes (e.g. `Codec.encode(raw, "x")`). `max_length`
and `beam_width` are Python ints or int32 scalar tensors (the defaults come from
model.max_output_length, io.y.length and model.beam_width). A tensor `beam_width` traces one
general beam search (any width, chosen at run time; 1 runs the greedy loop): the caller checks
its range (components/export.py accepts 1..MAX_BEAM_WIDTH). The search stops at `max_length`, so
the returned score is the score of exactly the returned ids. The loops are `tf.while_loop`s, so
`generate` traces in a `tf.function`, e.g. an `ExportArchive` endpoint:

    archive.track(model)
    archive.add_endpoint("generate", lambda x: generate(codec.encode(x, "x"), 24, 3),
                         input_signature=[tf.TensorSpec([None], tf.string)])

Decoding reuses the trained layers: `topologies.generation_models` rebuilds the encoder and a
one-step decoder around them. Numeric series outputs are not decoded step by step (their decoder
is not autoregressive): `model(x)` is the forecast.

Language models (many_to_many, next-token) are not decoded here but continued: `continue_ids(model,
encoded, steps, temperature)` reruns the causal model on the growing prompt, sampling each next id
(the export's LM `generate` signature and the evaluator's samples run it).

The search itself (`greedy`, `beam_search`) only needs a step function
`step(tokens [N] int32, states: dict, constants: dict) -> (log_probs [N, V], new states, attention
[N, T], T = `attention_width`, 0 without attention)`; `constants` (memory...) never change and are
tiled per beam.
"""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

from models.spec import ModelConfig

NEG = -1e9  # "minus infinity" that stays finite in sums


def make_generator(model: Any, cfg: ModelConfig, io: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """generate(encoded_inputs, max_length=None, beam_width=None) -> {ids, scores[, attention]}."""
    from models.build import generates
    from models.topologies import generation_models

    if not generates(cfg, io):
        raise ValueError(f"{cfg.topology} with {io['y']['kind']} outputs is not decoded step by step; "
                         f"call the model directly")
    encoder, step_model = generation_models(model, cfg, io)
    state_names = [n for n in step_model.input if n.startswith("state_")]
    constant_names = [n for n in ("static", "memory", "memory_mask", "first_input") if n in step_model.input]
    attentive = "attention" in step_model.output
    default_length = cfg.max_output_length or io["y"]["length"]
    start_id, end_id = io["y"].get("start_id", 2), io["y"].get("end_id", 3)
    state_specs = {n: (tuple(step_model.input[n].shape[1:]), step_model.input[n].dtype) for n in state_names}

    def step(tokens: Any, states: dict[str, Any], constants: dict[str, Any]) -> tuple[Any, dict, Any]:
        out = step_model({"token": tokens[:, None], **states, **constants}, training=False)
        log_probs = tf.math.log(tf.maximum(tf.cast(out["probs"][:, 0], tf.float32), 1e-30))
        weights = tf.cast(out["attention"][:, 0], tf.float32) if attentive else tf.zeros([tf.shape(tokens)[0], 0])
        return log_probs, {n: out[n] for n in state_names}, weights

    def generate(inputs: Any, max_length: Any = None, beam_width: Any = None) -> dict[str, Any]:
        encoded = encoder(inputs, training=False)
        batch = tf.shape(tf.nest.flatten(encoded)[0])[0]
        states = {n: encoded.get(n, tf.zeros([batch, *shape], dtype)) for n, (shape, dtype) in state_specs.items()}
        constants = {n: tf.identity(encoded[n]) for n in constant_names}  # drops Keras masks
        width = tf.shape(constants["memory"])[1] if attentive else 0
        search = dict(start_id=start_id, end_id=end_id, max_length=default_length if max_length is None else max_length,
                      attention_width=width)
        beam = cfg.beam_width if beam_width is None else beam_width
        if isinstance(beam, int):
            out = (greedy(step, states, constants, batch, **search) if beam == 1 else
                   beam_search(step, states, constants, batch, beam_width=beam, **search))
        else:  # one traced graph for every width
            out = tf.cond(tf.equal(beam, 1), lambda: greedy(step, states, constants, batch, **search),
                          lambda: beam_search(step, states, constants, batch, beam_width=beam, **search))
        if not attentive:
            out.pop("attention")
        return out

    return generate


def greedy(step: Callable[..., Any], states: dict[str, Any], constants: dict[str, Any], batch: Any, *,
           start_id: int, end_id: int, max_length: int, attention_width: Any = 0) -> dict[str, Any]:
    """Pick the most likely token at every step until every row emitted the end id (or max_length)."""

    def body(t: Any, tokens: Any, states: Any, finished: Any, scores: Any, ids: Any, att: Any) -> tuple:
        log_probs, states, weights = step(tokens, states, constants)
        best = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
        gained = tf.gather(log_probs, best, batch_dims=1)
        best = tf.where(finished, 0, best)
        scores += tf.where(finished, 0.0, gained)
        att = att.write(t, weights * tf.cast(~finished, tf.float32)[:, None])
        return t + 1, best, states, finished | tf.equal(best, end_id), scores, ids.write(t, best), att

    def cond(t: Any, tokens: Any, states: Any, finished: Any, *_: Any) -> Any:
        return (t < max_length) & ~tf.reduce_all(finished)

    loop = (tf.constant(0), tf.fill([batch], tf.constant(start_id, tf.int32)), states, tf.zeros([batch], tf.bool),
            tf.zeros([batch], tf.float32), tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None]),
            tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[None, None]))
    t, _, _, _, scores, ids, att = tf.while_loop(cond, body, loop)
    pad = max_length - t
    ids = tf.pad(tf.transpose(ids.stack()), [[0, 0], [0, pad]])
    att = tf.pad(tf.transpose(att.stack(), [1, 0, 2]), [[0, 0], [0, pad], [0, 0]])
    return {"ids": ids, "scores": scores, "attention": tf.reshape(att, [batch, max_length, attention_width])}


def beam_search(step: Callable[..., Any], states: dict[str, Any], constants: dict[str, Any], batch: Any, *,
                beam_width: int, start_id: int, end_id: int, max_length: int,
                attention_width: Any = 0) -> dict[str, Any]:
    """Keep the `beam_width` best partial sequences (by summed log-probability) at every step.

    A beam that emitted the end id is finished: it only extends with padding at no cost. The
    search stops at max_length or once, in every batch row, the best finished beam outscores all
    unfinished ones (scores never rise); it returns each row's best beam.
    """
    k = beam_width

    def tile(x: Any) -> Any:  # [B, ...] -> [B*K, ...], a row's beams next to each other
        return tf.repeat(x, k, axis=0)

    def regroup(x: Any, parent: Any) -> Any:  # [B*K, ...]: beam j continues beam parent[b, j]
        grouped = tf.reshape(x, tf.concat([[batch, k], tf.shape(x)[1:]], 0))
        return tf.reshape(tf.gather(grouped, parent, batch_dims=1), tf.shape(x))

    constants = {n: tile(v) for n, v in constants.items()}

    def body(t: Any, tokens: Any, states: Any, finished: Any, scores: Any, ids: Any, att: Any) -> tuple:
        log_probs, states, weights = step(tokens, states, constants)
        vocab = tf.shape(log_probs)[-1]
        pad_only = tf.concat([[0.0], tf.fill([vocab - 1], NEG)], 0)
        log_probs = tf.where(finished[..., None], pad_only, tf.reshape(log_probs, [batch, k, vocab]))
        scores, flat = tf.math.top_k(tf.reshape(scores[..., None] + log_probs, [batch, k * vocab]), k=k)
        parent, token = flat // vocab, flat % vocab
        finished = tf.gather(finished, parent, batch_dims=1) | tf.equal(token, end_id)
        here = tf.one_hot(t, max_length, dtype=tf.int32)
        ids = tf.gather(ids, parent, batch_dims=1) + token[..., None] * here
        fresh = regroup(weights, parent) * tf.cast(tf.reshape(token, [-1, 1]) != 0, tf.float32)
        att = tf.gather(att, parent, batch_dims=1) + tf.reshape(fresh, [batch, k, 1, attention_width]) * tf.cast(
            here, tf.float32)[:, None]
        states = {n: regroup(v, parent) for n, v in states.items()}
        return t + 1, tf.reshape(token, [-1]), states, finished, scores, ids, att

    def cond(t: Any, tokens: Any, states: Any, finished: Any, scores: Any, *_: Any) -> Any:
        best_done = tf.reduce_max(tf.where(finished, scores, 2 * NEG), axis=1)
        best_open = tf.reduce_max(tf.where(finished, 2 * NEG, scores), axis=1)
        return (t < max_length) & ~tf.reduce_all(best_done >= best_open)

    first = tf.concat([[0.0], tf.fill([k - 1], NEG)], 0)  # only beam 0 is live at the start
    loop = (tf.constant(0), tf.fill([batch * k], tf.constant(start_id, tf.int32)),
            {n: tile(v) for n, v in states.items()}, tf.zeros([batch, k], tf.bool), tf.tile(first[None], [batch, 1]),
            tf.zeros([batch, k, max_length], tf.int32), tf.zeros([batch, k, max_length, attention_width]))
    _, _, _, _, scores, ids, att = tf.while_loop(cond, body, loop)
    best = tf.argmax(scores, axis=1, output_type=tf.int32)
    return {"ids": tf.gather(ids, best, batch_dims=1), "scores": tf.gather(scores, best, batch_dims=1),
            "attention": tf.gather(att, best, batch_dims=1)}


def continue_ids(model: Any, encoded: Any, steps: Any, temperature: Any) -> Any:
    """A language model (many_to_many, next-token) continues each encoded prompt [B, T] by `steps`
    token ids [B, steps] (sampled at `temperature`; greedy when temperature <= 0; never padding
    or unknown, ids 0 and 1).

    The causal model reruns on the growing sequence; each new token goes right after the row's
    last real token. A `tf.while_loop`: the export's `generate` signature and the evaluator's
    samples both run it.
    """
    import tensorflow as tf

    temperature = tf.convert_to_tensor(temperature, tf.float32)
    batch = tf.shape(encoded)[0]
    lengths = tf.maximum(tf.reduce_sum(tf.cast(encoded != 0, tf.int32), axis=1), 1)
    seq = tf.concat([encoded, tf.zeros([batch, steps], encoded.dtype)], axis=1)
    rows = tf.range(batch)

    def body(i: Any, seq: Any, lengths: Any, out: Any) -> tuple:
        probs = model(seq[:, : tf.reduce_max(lengths)], training=False)
        logits = tf.math.log(tf.maximum(tf.gather(probs, lengths - 1, batch_dims=1), 1e-30))
        logits = tf.concat([tf.fill([batch, 2], -1e9), logits[:, 2:]], axis=1)  # never padding/unknown
        sampled = tf.random.categorical(logits / tf.maximum(temperature, 1e-6), 1, dtype=tf.int32)[:, 0]
        token = tf.cond(temperature > 0, lambda: sampled, lambda: tf.argmax(logits, -1, output_type=tf.int32))
        seq = tf.tensor_scatter_nd_update(seq, tf.stack([rows, lengths], 1), tf.cast(token, seq.dtype))
        return i + 1, seq, lengths + 1, out.write(i, token)

    out = tf.TensorArray(tf.int32, size=steps)
    _, _, _, out = tf.while_loop(lambda i, *_: i < steps, body, (tf.constant(0), seq, lengths, out),
                                 shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None]),
                                                   tf.TensorShape([None]), tf.TensorShape(None)))
    ids = tf.transpose(out.stack())
    return tf.reshape(ids, [batch, -1])
