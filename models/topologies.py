"""One builder per topology, each parameterised by the cell (never by copy-paste).

A builder takes the model config and the io spec from preprocessing and returns an uncompiled
functional `keras.Model` from encoded inputs to encoded outputs. Layers have stable names and
are made through `Parts`, so `generation_models` can rebuild the encoder and a one-step decoder
around the *trained* layers (shared weights) for greedy and beam-search decoding.

Shapes (B = batch):
- one_to_one: x [B, F] (vector) or [B] (category) -> the RNN reads it as a length-1 sequence.
- one_to_many: x -> the conditioning vector c (category: embedding; vector: as is).
  `input_mode=initial_state`: c is projected (dense + tanh) to every decoder layer's initial state
  (h0 = tanh(W c); this was called `first_step` before issue 17);
  `first_step`: c, projected (linear dense) to the step input size, IS the first step's input
  (it replaces the start token's embedding, or step 0's one-hot position for a series); the
  decoder starts from zeros and later steps read the previous output token (teacher-forced in
  training, the model's own choice when generating: `FirstStep` gates it in the one-step
  decoder). A series decoder is not autoregressive (below): its later steps read their position.
  `every_step`: c is concatenated to the decoder input at every step.
- many_to_one: x [B, T] ids / [B, T, F] -> the RNN stack -> `reduce` (last|mean|max|attention,
  all mask-aware) -> head. A series target [H, F] gets a direct multi-step head (dense H*F).
- Numeric series inputs take any number of steps (the time axis is dynamic unless
  `model.unroll`); a step that is NaN in every feature is padding (trailing, like token
  padding): `SeriesMask` zeroes it and masks it, so the RNNs, reducers and attention skip it.
- many_to_many: an output at every input step. A bidirectional stack is allowed for tagging
  (`labels`) only: a next-token or shifted-series target would be visible to the backward RNN.
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

Named inputs beside x (the model input is then {"inputs": x, ...}): `future` [B, H, n], the known
future values of `data.future_columns` at the horizon steps, concatenated to the seq2seq series
decoder's step inputs (past-only features stay in the encoder); `series_id` [B] (with
`model.id_embedding_dim`), embedded (`id_embedding`, id 0 = unseen in train) and appended to every
real input step of a series encoder (`SeriesContext`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras

from models import cells
from models.attention import Attention, AttentionPooling, AttentiveRNN
from models.io import classes, side
from models.layers import (
    ConcatContext,
    FirstStep,
    FirstStepGate,
    MaskedMaxPooling,
    PaddingMask,
    SeriesContext,
    SeriesMask,
    StepIndex,
)
from models.spec import ConfigError, ModelConfig

DECODER_INPUTS = "decoder_inputs"
FUTURE, SERIES_ID = "future", "series_id"  # the named inputs beside x (see `extra_inputs`)


class Parts:
    """Named layers: made once (training graph) or taken from a trained model (generation graphs)."""

    def __init__(self, model: keras.Model | None = None):
        self.model, self.made = model, {}

    def __call__(self, name: str, make: Callable[[str], keras.layers.Layer]) -> keras.layers.Layer:
        if name not in self.made:
            self.made[name] = self.model.get_layer(name) if self.model is not None else make(name)
        return self.made[name]


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
# Inputs, embeddings, heads


def input_layer(io_x: dict[str, Any], name: str = "inputs", static_length: bool = False) -> keras.KerasTensor:
    """The model input for an encoded x side (time axis fixed only when `static_length`)."""
    facts = side(io_x)
    steps = (io_x.get("length") if static_length else None,) if facts.sequence else ()
    if facts.ids:
        return keras.Input(shape=steps, dtype="int32", name=name)
    return keras.Input(shape=(*steps, io_x["features"]), dtype="float32", name=name)


def extra_names(cfg: ModelConfig, io: dict[str, Any]) -> list[str]:
    """The named inputs beside x: `future` [B, H, n] (`data.future_columns`, the seq2seq series decoder)
    and `series_id` [B] int32 (`model.id_embedding_dim`, with `data.id_column`)."""
    names = []
    if io.get("future") and cfg.topology == "seq2seq" and side(io["y"]).output == "values":
        names.append(FUTURE)
    if getattr(cfg, "id_embedding_dim", None) and io.get("series_id"):
        names.append(SERIES_ID)
    return names


def extra_inputs(cfg: ModelConfig, io: dict[str, Any]) -> dict[str, keras.KerasTensor]:
    """The Keras inputs of `extra_names`."""
    shapes = {FUTURE: ((io.get("future") or {}).get("length"), (io.get("future") or {}).get("features")),
              SERIES_ID: ()}
    return {name: keras.Input(shape=shapes[name], dtype="float32" if name == FUTURE else "int32", name=name)
            for name in extra_names(cfg, io)}


def with_series_id(cfg: ModelConfig, io: dict[str, Any], parts: Parts, inputs: Any, extra: dict[str, Any]) -> Any:
    """x with the embedded series id (`id_embedding`; 0 = unseen) appended to every real step."""
    if SERIES_ID not in extra:
        return inputs
    embedded = parts("id_embedding", lambda n: keras.layers.Embedding(
        io["series_id"]["vocab_size"], cfg.id_embedding_dim, name=n))(extra[SERIES_ID])
    return parts("series_context", lambda n: SeriesContext(name=n))(inputs, embedded)


def model_inputs(inputs: Any, extra: dict[str, Any]) -> Any:
    """x alone, or {"inputs": x, "future": ..., "series_id": ...}."""
    return {"inputs": inputs, **extra} if extra else inputs


def embed_sequence(io_x: dict[str, Any], cfg: ModelConfig, x: Any, parts: Parts | None = None,
                   name: str = "embedding") -> Any:
    """Token ids -> masked embeddings (0 = padding); a numeric series -> `SeriesMask` (all-NaN steps masked)."""
    parts, facts = parts or Parts(), side(io_x)
    if not facts.sequence:
        return x
    if not facts.ids:
        return parts("series_mask", lambda n: SeriesMask(name=n))(x)
    return parts(name, lambda n: keras.layers.Embedding(io_x["vocab_size"], cfg.embedding_dim, mask_zero=True,
                                                        name=n))(x)


def condition(cfg: ModelConfig, io_x: dict[str, Any], parts: Parts, x: Any) -> Any:
    """A fixed input as a vector [B, D]: category -> embedding, vector -> as is."""
    facts = side(io_x)
    if facts.sequence:
        raise ConfigError(f"a {io_x['kind']!r} input is a sequence; this topology takes a fixed vector or category")
    if facts.ids:
        return parts("embedding", lambda n: keras.layers.Embedding(io_x["vocab_size"], cfg.embedding_dim,
                                                                   name=n))(x)
    return x


def head(io_y: dict[str, Any], x: Any, parts: Parts | None = None, name: str = "outputs") -> Any:
    """The output layer, float32 even under mixed precision.

    Classes/tokens: softmax (per step when x is [B, L, D]); series: linear values, one per
    feature and step; a series target from a single vector x [B, D] gets a direct multi-step
    head (dense horizon*features, reshaped to [B, H, F]).
    """
    parts = parts or Parts()
    if side(io_y).output in ("classes", "tokens"):
        size = classes(io_y)
        return parts(name, lambda n: keras.layers.Dense(size, activation="softmax", dtype="float32", name=n))(x)
    features = io_y["features"]
    if len(x.shape) == 2:
        steps = io_y.get("length", 1)
        flat = parts(name + "_flat", lambda n: keras.layers.Dense(steps * features, dtype="float32", name=n))(x)
        return parts(name, lambda n: keras.layers.Reshape((steps, features), dtype="float32", name=n))(flat)
    return parts(name, lambda n: keras.layers.Dense(features, dtype="float32", name=n))(x)


def dropout(cfg: ModelConfig, x: Any, parts: Parts, name: str) -> Any:
    """Dropout before a head (identity when `model.dropout` is 0)."""
    if not cfg.dropout:
        return x
    return parts(name, lambda n: keras.layers.Dropout(cfg.dropout, name=n))(x)


# --------------------------------------------------------------------------------------------
# Topologies without a decoder


def one_to_one(cfg: ModelConfig, io: dict[str, Any]) -> keras.Model:
    """Fixed vector -> label; the RNN reads a length-1 sequence (in effect an MLP)."""
    parts = Parts()
    inputs = input_layer(io["x"])
    x = condition(cfg, io["x"], parts, inputs)
    x = keras.layers.Reshape((1, x.shape[-1]), name="as_sequence")(x)
    x = cells.stack(cfg, x, "rnn", last_sequences=False)
    x = dropout(cfg, x, parts, "head_dropout")
    return keras.Model(inputs, head(io["y"], x), name=f"one_to_one_{cells.key(cfg)}")


# mask-aware poolings: many_to_one's `reduce` and the pooled seq2seq context
POOLS: dict[str, Callable[[ModelConfig, str], keras.layers.Layer]] = {
    "mean": lambda cfg, name: keras.layers.GlobalAveragePooling1D(name=name),
    "max": lambda cfg, name: MaskedMaxPooling(name=name),
    "attention": lambda cfg, name: AttentionPooling(cfg.units, name=name),
}


def many_to_one(cfg: ModelConfig, io: dict[str, Any]) -> keras.Model:
    """Sequence -> one output; the loss sees only the final (reduced) output."""
    parts = Parts()
    inputs, extra = input_layer(io["x"], static_length=cfg.unroll), extra_inputs(cfg, io)
    x = embed_sequence(io["x"], cfg, with_series_id(cfg, io, parts, inputs, extra))
    x = cells.stack(cfg, x, "encoder", last_sequences=cfg.reduce != "last")
    if cfg.reduce != "last":
        x = POOLS[cfg.reduce](cfg, f"reduce_{cfg.reduce}")(x)
    x = dropout(cfg, x, parts, "head_dropout")
    return keras.Model(model_inputs(inputs, extra), head(io["y"], x), name=f"many_to_one_{cells.key(cfg)}")


def many_to_many(cfg: ModelConfig, io: dict[str, Any]) -> keras.Model:
    """Synced sequence -> sequence: an output at every input step.

    Bidirectional only for tagging; `build.check_io` refuses it for next-token / shifted-series targets.
    """
    parts = Parts()
    inputs, extra = input_layer(io["x"], static_length=cfg.unroll), extra_inputs(cfg, io)
    x = embed_sequence(io["x"], cfg, with_series_id(cfg, io, parts, inputs, extra))
    x = cells.stack(cfg, x, "encoder", last_sequences=True)
    x = dropout(cfg, x, parts, "head_dropout")
    return keras.Model(model_inputs(inputs, extra), head(io["y"], x), name=f"many_to_many_{cells.key(cfg)}")


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


BUILDERS: dict[str, Callable[[ModelConfig, dict[str, Any]], keras.Model]] = {
    "one_to_one": one_to_one,
    "one_to_many": one_to_many,
    "many_to_one": many_to_one,
    "many_to_many": many_to_many,
    "seq2seq": seq2seq,
}

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
