"""The encoder-decoder topologies (one_to_many, seq2seq): contexts, the shared decoder, the builder,
and the generation models (the trained layers rebuilt for greedy and beam-search decoding).

- one_to_many: x -> the conditioning vector c (category: embedding; vector: as is).
  `input_mode=initial_state`: c is projected (dense + tanh) to every decoder layer's initial state
  (h0 = tanh(W c); this was called `first_step` before issue 17);
  `first_step`: c, projected (linear dense) to the step input size, IS the first step's input
  (it replaces the start token's embedding, or step 0's one-hot position for a series); the
  decoder starts from zeros and later steps read the previous output token (teacher-forced in
  training, the model's own choice when generating: `FirstStep` gates it in the one-step
  decoder). A series decoder is not autoregressive (below): its later steps read their position.
  `every_step`: c is concatenated to the decoder input at every step.
- seq2seq: encoder stack -> context -> decoder stack -> head. `context` x `context_feed`:
  last_state/projected + initial_state: the decoder layer i starts from the encoder layer i's
  final states (LSTM [h, c], GRU/SimpleRNN h), as they are (last_state) or through a dense+tanh
  (projected); + every_step: the top encoder layer's final h (projected or not) is concatenated to
  every decoder input and the decoder starts from zeros. attention + initial_state: Luong (the
  decoder starts from the encoder's final states; its outputs query the memory);
  attention + every_step: Bahdanau (c_t enters the recurrence, `attention.AttentiveRNN`).
  pooled: c = q(h_1..h_N), one static vector from ALL the top encoder layer's outputs (padding
  masked): `pool` mean | max | attention (a learned query, as many_to_one's reduce), then a
  dense + tanh transform: + initial_state: one transform per decoder layer and state
  (`context_state_<layer>_<k>`); + every_step: `context_transform`, concatenated to every
  decoder input (the decoder starts from zeros).

Bidirectional encoders: each layer's forward and backward final states are concatenated
(width 2*units) and projected back to `units` by a dense "bridge" (linear for last_state and
attention, tanh for projected), so the decoder keeps `units` whatever the encoder and LSTM
passes [h, c] pairs as usual. A context fed at every step needs no bridge: it is the
concatenated [h_fwd; h_bwd] (or its projection). The attention memory is the top layer's merged
outputs (`merge_mode`), projected to keys inside the attention layer.

Decoder inputs: token targets are teacher-forced (`decoder_inputs` = start id + y[:-1]) and
generated autoregressively (models/decoding.py). Numeric series targets are decoded in one pass,
non-autoregressively: step t's input is the one-hot step index t (plus the context for
every_step); the model input is x alone, so `model(x)` is already the forecast. This avoids
exposure bias and needs no special decoding loop in evaluation, export or serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras

from models import cells
from models.attention import Attention, AttentiveRNN
from models.blocks import (
    FUTURE,
    POOLS,
    Parts,
    condition,
    dropout,
    embed_sequence,
    extra_inputs,
    head,
    input_layer,
    model_inputs,
    with_series_id,
)
from models.io import side
from models.layers import ConcatContext, FirstStep, FirstStepGate, PaddingMask, StepIndex
from models.spec import ModelConfig

DECODER_INPUTS = "decoder_inputs"


@dataclass
class Context:
    """What the encoder hands the decoder (any part may be absent)."""

    states: list[list[Any]] | None = None  # initial states per decoder layer
    static: Any = None  # [B, C] concatenated to every decoder input
    memory: Any = None  # [B, T, M] attention memory
    memory_mask: Any = None  # [B, T] bool
    first: Any = None  # [B, D] the first step's input (one_to_many input_mode=first_step)
    started: Any = None  # [B, 1] one-step decoder state: 0 until the first step ran (with `first`)


# --------------------------------------------------------------------------------------------
# Encoder-decoder topologies (one_to_many, seq2seq): contexts, the shared decoder, the builder


def step_width(cfg: ModelConfig, io: dict[str, Any]) -> int:
    """The decoder's per-step input size (before any every-step context): embedding or one-hot position."""
    return cfg.embedding_dim if side(io["y"]).output == "tokens" else int(io["y"]["length"])


def one_to_many_context(cfg: ModelConfig, io: dict[str, Any], parts: Parts, inputs: Any) -> Context:
    """The conditioning vector as initial states, as the first step's input, or as an every-step input."""
    c = condition(cfg, io["x"], parts, inputs)
    if cfg.input_mode == "every_step":
        return Context(static=c)
    if cfg.input_mode == "first_step":
        return Context(first=parts("first_step_input", lambda n: keras.layers.Dense(
            step_width(cfg, io), name=n))(c))
    return Context(states=state_projections(cfg, parts, "initial_state", c))


def state_projections(cfg: ModelConfig, parts: Parts, prefix: str, c: Any) -> list[list[Any]]:
    """c -> one dense + tanh projection per decoder layer and state (`<prefix>_<layer>_<k>`)."""
    return [[parts(f"{prefix}_{i + 1}_{k + 1}", lambda n, w=width: keras.layers.Dense(w, activation="tanh", name=n))(c)
             for k, width in enumerate(cells.state_sizes(cfg))] for i in range(cfg.num_layers)]


def encode(cfg: ModelConfig, parts: Parts, x: Any, return_sequences: bool) -> tuple[Any, list[list[Any]]]:
    """The encoder stack; returns its top outputs and each layer's raw final states.

    Raw: LSTM [h, c], GRU/SimpleRNN [h]; a bidirectional layer gives the forward then the
    backward ones (see `final_state`).
    """
    finals = []
    for i in range(cfg.num_layers):
        top = i == cfg.num_layers - 1
        name = f"encoder_{cells.key(cfg)}_{i + 1}"
        sequences = return_sequences or not top
        layer = parts(f"bi_{name}" if cfg.bidirectional else name, lambda _, nm=name, seq=sequences: cells.rnn(
            cfg, nm, return_sequences=seq, return_state=True))
        x, *final = layer(x)
        finals.append(final)
    return x, finals


def final_state(cfg: ModelConfig, parts: Parts, finals: list[list[Any]], i: int, k: int) -> Any:
    """Encoder layer i's k-th final state; bidirectional: forward and backward concatenated (2 * units)."""
    if not cfg.bidirectional:
        return finals[i][k]
    n = len(cells.state_sizes(cfg))
    return parts(f"encoder_state_{i + 1}_{k + 1}", lambda nm: keras.layers.Concatenate(name=nm))(
        [finals[i][k], finals[i][n + k]])


def seq2seq_context(cfg: ModelConfig, io: dict[str, Any], parts: Parts, inputs: Any) -> Context:
    """Encode x and hand the decoder its context (see the module docstring for each combination)."""
    if cfg.context == "pooled":
        return pooled_context(cfg, io, parts, inputs)
    attention = cfg.context == "attention"
    memory, finals = encode(cfg, parts, embed_sequence(io["x"], cfg, inputs, parts), return_sequences=attention)
    if not attention and cfg.context_feed == "every_step":
        top = final_state(cfg, parts, finals, cfg.num_layers - 1, 0)
        if cfg.context == "projected":
            top = parts("context_projection", lambda n: keras.layers.Dense(cfg.units, activation="tanh", name=n))(top)
        return Context(static=top)
    widths = cells.state_sizes(cfg)
    states = [[final_state(cfg, parts, finals, i, k) for k in range(len(widths))] for i in range(cfg.num_layers)]
    if cfg.context == "projected" or cfg.bidirectional:  # bridge_<layer>_<state>: dense to the state's width
        activation = "tanh" if cfg.context == "projected" else None
        states = [[parts(f"bridge_{i + 1}_{k + 1}", lambda n, w=widths[k]: keras.layers.Dense(
            w, activation=activation, name=n))(s) for k, s in enumerate(layer)]
            for i, layer in enumerate(states)]
    if not attention:
        return Context(states=states)
    mask = parts("memory_mask", lambda n: PaddingMask(name=n))(inputs)
    return Context(states=states, memory=memory, memory_mask=mask)


def pooled_context(cfg: ModelConfig, io: dict[str, Any], parts: Parts, inputs: Any) -> Context:
    """c = q(h_1..h_N): the top encoder layer's outputs at every real step, pooled, then a dense + tanh."""
    outputs, _ = encode(cfg, parts, embed_sequence(io["x"], cfg, inputs, parts), return_sequences=True)
    mask = parts("encoder_mask", lambda n: PaddingMask(name=n))(inputs)
    pooled = parts("context_pool", lambda n: POOLS[cfg.pool](cfg, n))(outputs, mask=mask)
    if cfg.context_feed == "every_step":
        return Context(static=parts("context_transform", lambda n: keras.layers.Dense(
            cfg.units, activation="tanh", name=n))(pooled))
    return Context(states=state_projections(cfg, parts, "context_state", pooled))


CONTEXTS: dict[str, Callable[[ModelConfig, dict[str, Any], Parts, Any], Context]] = {
    "one_to_many": one_to_many_context,
    "seq2seq": seq2seq_context,
}


def decoder_steps(cfg: ModelConfig, io: dict[str, Any], parts: Parts, inputs: Any,
                  tokens: Any = None) -> tuple[Any, Any]:
    """The decoder's per-step inputs: embedded teacher-forced ids, or one-hot step indices for series.

    Returns (the decoder_inputs Input or None, the step tensor [B, L, D]).
    """
    io_y = io["y"]
    if side(io_y).output != "tokens":
        return None, parts("decoder_steps", lambda n: StepIndex(io_y["length"], name=n))(inputs)
    if tokens is None:
        tokens = keras.Input(shape=(io_y["length"] if cfg.unroll else None,), dtype="int32", name=DECODER_INPUTS)
    embedded = parts("decoder_embedding", lambda n: keras.layers.Embedding(io_y["vocab_size"], cfg.embedding_dim,
                                                                           name=n))(tokens)
    return tokens, embedded


def decode(cfg: ModelConfig, io: dict[str, Any], parts: Parts, steps: Any,
           ctx: Context) -> tuple[Any, list[list[Any]], Any, Any]:
    """The decoder stack and head.

    Returns (outputs, final states per layer, attention weights or None, the new `started` state
    or None (one-step decoder of input_mode=first_step)).
    """
    started = None
    if ctx.first is not None and ctx.started is None:
        steps = parts("first_step", lambda n: FirstStep(name=n))(steps, ctx.first)
    elif ctx.first is not None:  # one-step decoder (a weightless layer, not part of the trained model)
        steps, started = FirstStepGate(name="first_step_gate")(steps, ctx.first, ctx.started)
    if ctx.static is not None:
        steps = parts("decoder_context", lambda n: ConcatContext(name=n))(steps, ctx.static)
    weights = None
    if ctx.memory is not None and cfg.context_feed == "every_step":
        steps = dropout(cfg, steps, parts, "decoder_input_dropout")
        layer = parts(f"decoder_attentive_{cells.key(cfg)}", lambda n: AttentiveRNN(
            cfg.cell, cfg.units, cfg.num_layers, cfg.attention, cells.cell_kwargs(cfg), name=n))
        initial = [s for layer_states in ctx.states for s in layer_states]
        x, context, weights, *flat = layer(steps, ctx.memory, ctx.memory_mask, initial)
        k = len(cells.state_sizes(cfg))
        states = [flat[i * k:(i + 1) * k] for i in range(cfg.num_layers)]
    else:
        x, states = steps, []
        for i in range(cfg.num_layers):
            layer = parts(f"decoder_{cells.key(cfg)}_{i + 1}", lambda n: cells.rnn(
                cfg, n, return_sequences=True, return_state=True, bidirectional=False))
            x, *final = layer(x, initial_state=ctx.states[i] if ctx.states else None)
            states.append(final)
        if ctx.memory is not None:
            context, weights = parts("attention", lambda n: Attention(cfg.attention, cfg.units, name=n))(
                x, ctx.memory, ctx.memory_mask)
    if ctx.memory is not None:
        joined = parts("attention_concat", lambda n: keras.layers.Concatenate(name=n))([context, x])
        x = parts("attention_output", lambda n: keras.layers.Dense(cfg.units, activation="tanh", name=n))(joined)
    x = dropout(cfg, x, parts, "head_dropout")
    return head(io["y"], x, parts), states, weights, started


def encoder_decoder(cfg: ModelConfig, io: dict[str, Any]) -> keras.Model:
    """one_to_many / seq2seq: context from x, then the shared decoder (teacher-forced for tokens)."""
    parts = Parts()
    static = cfg.unroll and cfg.topology == "seq2seq"
    inputs, extra = input_layer(io["x"], static_length=static), extra_inputs(cfg, io)
    ctx = CONTEXTS[cfg.topology](cfg, io, parts, with_series_id(cfg, io, parts, inputs, extra))
    tokens, steps = decoder_steps(cfg, io, parts, inputs)
    if FUTURE in extra:  # each horizon step's input: its one-hot position + the known future values there
        steps = parts("decoder_future", lambda n: keras.layers.Concatenate(name=n))([steps, extra[FUTURE]])
    outputs, *_ = decode(cfg, io, parts, steps, ctx)
    named = model_inputs(inputs, extra) if tokens is None else {"inputs": inputs, DECODER_INPUTS: tokens}
    return keras.Model(named, outputs, name=f"{cfg.topology}_{cells.key(cfg)}")


def one_to_many(cfg: ModelConfig, io: dict[str, Any]) -> keras.Model:
    """One vector -> a sequence (tokens: autoregressive; series: one pass)."""
    return encoder_decoder(cfg, io)


def seq2seq(cfg: ModelConfig, io: dict[str, Any]) -> keras.Model:
    """Sequence of N -> sequence of M through an encoder and a decoder."""
    return encoder_decoder(cfg, io)


# --------------------------------------------------------------------------------------------
# Generation: the trained layers rebuilt as an encoder model and a one-step decoder model


def generation_models(model: keras.Model, cfg: ModelConfig, io: dict[str, Any]) -> tuple[keras.Model, keras.Model]:
    """(encoder, step) Keras models sharing `model`'s layers, for token-generating models.

    encoder: x -> {state_<layer>_<k>: [B, units] (when the context gives initial states),
    static: [B, C], memory: [B, T, M], memory_mask: [B, T], first_input: [B, E]} (those the
    context has).
    step: {token: [B, 1] int32, state_<layer>_<k>, static, memory, memory_mask, first_input,
    state_started: [B, 1] (first_input models: 0 before the first step)} -> {probs: [B, 1, V],
    state_<layer>_<k> (the new states), state_started, attention: [B, 1, T] (attention models)}.
    A state the encoder does not give starts at zeros.
    """
    parts = Parts(model)
    inputs = input_layer(io["x"], static_length=cfg.unroll and cfg.topology == "seq2seq")
    ctx = CONTEXTS[cfg.topology](cfg, io, parts, inputs)
    enc_out = {f"state_{i + 1}_{k + 1}": s for i, layer in enumerate(ctx.states or []) for k, s in enumerate(layer)}
    enc_out.update({k: v for k, v in (("static", ctx.static), ("memory", ctx.memory),
                                      ("memory_mask", ctx.memory_mask), ("first_input", ctx.first)) if v is not None})
    encoder = keras.Model(inputs, enc_out, name="generation_encoder")

    dtype = model.get_layer("decoder_embedding").compute_dtype
    token = keras.Input(shape=(1,), dtype="int32", name="token")
    step_in: dict[str, Any] = {"token": token}
    states = [[keras.Input(shape=(width,), dtype=dtype, name=f"state_{i + 1}_{k + 1}")
               for k, width in enumerate(cells.state_sizes(cfg))] for i in range(cfg.num_layers)]
    step_in.update({s.name: s for layer in states for s in layer})
    extra = {name: keras.Input(shape=tuple(enc_out[name].shape[1:]), dtype=enc_out[name].dtype, name=name)
             for name in ("static", "memory", "memory_mask", "first_input") if name in enc_out}
    step_in.update(extra)
    started = None
    if "first_input" in extra:
        started = step_in["state_started"] = keras.Input(shape=(1,), dtype=dtype, name="state_started")
    _, steps = decoder_steps(cfg, io, parts, None, tokens=token)
    probs, new_states, weights, new_started = decode(cfg, io, parts, steps, Context(
        states=states, static=extra.get("static"), memory=extra.get("memory"), memory_mask=extra.get("memory_mask"),
        first=extra.get("first_input"), started=started))
    step_out = {"probs": probs}
    step_out.update({f"state_{i + 1}_{k + 1}": s for i, layer in enumerate(new_states) for k, s in enumerate(layer)})
    if new_started is not None:
        step_out["state_started"] = new_started
    if weights is not None:
        step_out["attention"] = weights
    return encoder, keras.Model(step_in, step_out, name="generation_step")
