"""Export stage (TFX Pusher): a versioned SavedModel that takes raw inputs and gives raw outputs.

inputs -> outputs: preprocess, train, evaluate -> `exports/<name>/<version>/` (saved_model.pb +
variables/ as TF Serving expects, plus `model_card.md`; version = previous highest + 1,
allocated under a lock, written atomically) and, in the stage folder, `model_card.md`,
`canary.json` (test inputs with the answers of the in-memory model: what infra validation
and the registry's input example use).

Signatures (preprocessing and decoding inside, so clients send and get raw values):
- `serving_default`, by the kind of target:
  label  -> {"label": string [B], "probabilities": float [B, C]}
  labels -> {"labels": string [B, T] ("" past the end of the input), "confidence": float [B, T]}
  tokens -> {"tokens": string [B]} generated greedily (seq2seq / one_to_many: the output
            sequence; language model: the continuation of the prompt)
  series -> {"series": float [B, T, F]} in raw units (de-normalised)
- `generate` (generative models): inputs + `max_length` (int32 scalar) + `beam_width` (int32
  scalar, 1 = greedy) -> {"tokens": string [B, beam_width] best first, "scores": float [B, K]}.

Only a blessed model is exported unless `export.require_blessing` is false.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from components.preprocessing import Codec, load_split
from pipeline.config import Config, DataConfig, EvaluateConfig, ExportConfig, ModelConfig, TrainConfig, to_plain

INPUT_NAME = "inputs"
START_ID, END_ID = 2, 3  # preprocessing's ids of the start and end tokens of generated sequences
CANARIES = 8
MAX_BEAM = 8
GENERATIVE = ("one_to_many", "seq2seq")


def input_signature(io_x: dict[str, Any]) -> Any:
    """The raw input TensorSpec for the x side (strings or float32)."""
    import tensorflow as tf

    kind = io_x["kind"]
    if kind in ("tokens", "category"):
        return tf.TensorSpec([None], tf.string, name=INPUT_NAME)
    if kind == "vector":
        return tf.TensorSpec([None, io_x["features"]], tf.float32, name=INPUT_NAME)
    return tf.TensorSpec([None, io_x.get("length"), io_x["features"]], tf.float32, name=INPUT_NAME)


def is_generative(io: dict[str, Any], topology: str) -> bool:
    """Token outputs produced step by step (seq2seq / one_to_many text, language models)."""
    return io["y"]["kind"] == "tokens" and (topology in GENERATIVE or bool(io["y"].get("language_model")))


# --------------------------------------------------------------------------------------------
# Raw-in / raw-out functions, one per kind of target


def classify(model: Any, codec: Codec, cfg: ModelConfig) -> Callable[[Any], dict[str, Any]]:
    """Raw inputs -> {label, probabilities}."""
    import tensorflow as tf

    def fn(inputs: Any) -> dict[str, Any]:
        probs = model(codec.encode(inputs, "x"), training=False)
        return {"label": tf.gather(codec.class_names(), tf.argmax(probs, -1)), "probabilities": probs}

    return fn


def tag(model: Any, codec: Codec, cfg: ModelConfig) -> Callable[[Any], dict[str, Any]]:
    """Raw sequences -> one label per step ('' past the end of a token input)."""
    import tensorflow as tf

    def fn(inputs: Any) -> dict[str, Any]:
        encoded = codec.encode(inputs, "x")
        probs = model(encoded, training=False)
        labels = tf.gather(codec.class_names(), tf.argmax(probs, -1))
        confidence = tf.reduce_max(probs, -1)
        if codec.x["kind"] == "tokens":
            valid = tf.not_equal(encoded, 0)
            labels = tf.where(valid, labels, "")
            confidence = tf.where(valid, confidence, 0.0)
        return {"labels": labels, "confidence": confidence}

    return fn


def forecast(model: Any, codec: Codec, cfg: ModelConfig) -> Callable[[Any], dict[str, Any]]:
    """Raw inputs -> numbers in raw units (the model predicts normalised values)."""
    import tensorflow as tf

    def fn(inputs: Any) -> dict[str, Any]:
        values = forward(model, codec.encode(inputs, "x"), cfg)
        return {"series": tf.cast(codec.denormalize(tf.cast(values, "float32")), "float32")}

    return fn


def forward(model: Any, encoded: Any, cfg: ModelConfig) -> Any:
    """The model's encoded prediction; every model but a token generator answers with model(x)
    (numeric series decoders are not autoregressive, see models/topologies.py)."""
    return model(encoded, training=False)


def generate_text(model: Any, codec: Codec, cfg: ModelConfig) -> Callable[[Any], dict[str, Any]]:
    """Raw inputs -> the greedily generated token sequence as one string per row."""

    def fn(inputs: Any) -> dict[str, Any]:
        ids, _ = decode(model, codec, cfg, codec.encode(inputs, "x"), max_length(codec, cfg), 1)
        return {"tokens": codec.join_tokens(ids[:, 0], "y")}

    return fn


def beam_generate(model: Any, codec: Codec, cfg: ModelConfig) -> Callable[..., dict[str, Any]]:
    """The `generate` signature: raw inputs, max_length, beam_width -> best sequences and scores."""
    import tensorflow as tf

    def fn(inputs: Any, max_length: Any, beam_width: Any) -> dict[str, Any]:
        encoded = codec.encode(inputs, "x")
        steps = tf.clip_by_value(max_length, 1, 4 * max_length_default(codec, cfg))
        width = tf.clip_by_value(beam_width, 1, MAX_BEAM)
        branches = [_beam_branch(model, codec, cfg, encoded, steps, k) for k in range(1, MAX_BEAM + 1)]
        tokens, scores = tf.switch_case(width - 1, branches)
        return {"tokens": tokens, "scores": scores}

    return fn


def _beam_branch(model: Any, codec: Codec, cfg: ModelConfig, encoded: Any, steps: Any, k: int) -> Callable:
    import tensorflow as tf

    def branch() -> tuple[Any, Any]:
        ids, scores = decode(model, codec, cfg, encoded, steps, k)  # [B, k, T], [B, k]
        shape = tf.shape(ids)
        flat = tf.reshape(ids, [shape[0] * k, shape[2]])
        text = tf.reshape(codec.join_tokens(flat, "y"), [shape[0], k])
        pad = MAX_BEAM - k  # every branch returns [B, MAX_BEAM]; the server trims nothing
        return (tf.pad(text, [[0, 0], [0, pad]], constant_values=""),
                tf.pad(tf.cast(scores, "float32"), [[0, 0], [0, pad]], constant_values=float("-inf")))

    return branch


def max_length_default(codec: Codec, cfg: ModelConfig) -> int:
    return int(cfg.max_output_length or codec.y.get("length") or 32)


def max_length(codec: Codec, cfg: ModelConfig) -> int:
    return max_length_default(codec, cfg)


def decode(model: Any, codec: Codec, cfg: ModelConfig, encoded: Any, steps: Any, beam_width: int) -> tuple[Any, Any]:
    """Token ids [B, K, T] and scores [B, K] from models/decoding.py (greedy when K = 1)."""
    from models import decoding

    return decoding.generate(model, encoded, cfg, max_length=steps, beam_width=beam_width,
                             start_id=START_ID, end_id=END_ID)


def decode_batches(model: Any, state: dict[str, Any], cfg: ModelConfig, x: np.ndarray, steps: int,
                   beam_width: int, batch: int = 256) -> np.ndarray:
    """Decode encoded inputs in batches: token ids [N, K, T] (T padded with 0)."""
    from models import decoding

    parts = []
    for i in range(0, len(x), batch):
        ids, _ = decoding.generate(model, x[i:i + batch], cfg, max_length=steps, beam_width=beam_width,
                                   start_id=START_ID, end_id=END_ID)
        parts.append(np.asarray(ids))
    if not parts:
        return np.zeros((0, beam_width, 1), dtype="int32")
    width = max(p.shape[-1] for p in parts)
    return np.concatenate([np.pad(p, [(0, 0), (0, 0), (0, width - p.shape[-1])]) for p in parts])


def attention_weights(model: Any, state: dict[str, Any], cfg: ModelConfig, x: np.ndarray) -> list | None:
    """[(weights [T_out, T_in], greedy ids)] per input, when models/decoding.py can give them."""
    from models import decoding

    if not hasattr(decoding, "attention_weights"):
        return None
    return decoding.attention_weights(model, x, cfg, start_id=START_ID, end_id=END_ID,
                                      max_length=int(cfg.max_output_length or state["y"]["length"]))


SERVERS: dict[str, Callable[[Any, Codec, ModelConfig], Callable[[Any], dict[str, Any]]]] = {
    "label": classify, "labels": tag, "series": forecast, "tokens": generate_text,
}


def serving_function(model: Any, codec: Codec, io: dict[str, Any], cfg: ModelConfig) -> Callable:
    """The raw-in/raw-out function `serving_default` exports for this kind of target."""
    return SERVERS[io["y"]["kind"]](model, codec, cfg)


def write_saved_model(model: Any, codec: Codec, io: dict[str, Any], path: Path,
                      cfg: ModelConfig | None = None) -> None:
    """Write a SavedModel with `serving_default` (and `generate` for generative models) to `path`."""
    import keras
    import tensorflow as tf

    cfg = cfg or ModelConfig()
    archive = keras.export.ExportArchive()
    archive.track(model)
    for layer in codec.layers.values():
        archive.track(layer)
    archive.add_endpoint(name="serving_default", fn=serving_function(model, codec, io, cfg),
                         input_signature=[input_signature(io["x"])])
    if is_generative(io, cfg.topology):
        archive.add_endpoint(name="generate", fn=beam_generate(model, codec, cfg), input_signature=[
            input_signature(io["x"]), tf.TensorSpec([], tf.int32, name="max_length"),
            tf.TensorSpec([], tf.int32, name="beam_width")])
    archive.write_out(str(path), verbose=False)


# --------------------------------------------------------------------------------------------
# Versioned, atomic publication


def next_version(base: Path) -> int:
    versions = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


def publish(build: Callable[[Path], None], base: Path) -> tuple[int, Path]:
    """Build into a temp dir, then rename to the next free version under an exclusive lock."""
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{os.getpid()}-{os.urandom(3).hex()}"
    try:
        build(tmp)
        with open(base / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            version = next_version(base)
            final = base / str(version)
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return version, final


# --------------------------------------------------------------------------------------------
# Canaries and the model card


def canary_inputs(preprocess: Any, n: int = CANARIES) -> list[Any]:
    """The first raw x values of the test split (train if the test split is empty)."""
    for split in ("test", "train"):
        lines = preprocess.path(f"{split}_raw.jsonl").read_text().splitlines()[:n]
        if lines:
            return [json.loads(line)["x"] for line in lines]
    return []


def raw_tensor(values: list[Any], io_x: dict[str, Any]) -> Any:
    import tensorflow as tf

    if io_x["kind"] in ("tokens", "category"):
        return tf.constant([str(v) for v in values])
    return tf.constant(np.asarray(values, dtype="float32"))


def jsonable(outputs: dict[str, Any]) -> dict[str, Any]:
    """Tensors -> lists (strings decoded), as the REST server answers them."""
    out = {}
    for key, value in outputs.items():
        arr = np.asarray(value)
        out[key] = (np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(arr).tolist()
                    if arr.dtype == object and arr.size else arr.tolist())
    return out


def data_stats(preprocess: Any) -> list[str]:
    """Markdown lines: split sizes, vocabularies, classes, target distribution (train)."""
    state = json.loads(preprocess.path("preprocessor.json").read_text())
    lines = ["| split | examples |", "|---|---|"]
    train_y = None
    for split in ("train", "validation", "test"):
        arrays = load_split(preprocess, split)
        lines.append(f"| {split} | {len(arrays['y'])} |")
        if split == "train":
            train_y = arrays["y"]
    lines.append("")
    for side in ("x", "y"):
        s = state[side]
        facts = [f"kind {s['kind']}"]
        if "vocabulary" in s:
            facts.append(f"vocabulary {len(s['vocabulary'])} tokens ({s.get('tokenize', 'char')})")
        if "classes" in s:
            facts.append(f"{len(s['classes'])} classes")
        if "length" in s:
            facts.append(f"length {s['length']}")
        if "features" in s:
            facts.append(f"{s['features']} features")
        lines.append(f"- {side}: " + ", ".join(facts))
    y = state["y"]
    if y["kind"] == "label" and train_y is not None and len(train_y):
        counts = np.bincount(train_y, minlength=len(y["classes"]))
        lines.append("- train target distribution: " + ", ".join(
            f"{c} {n / counts.sum():.1%}" for c, n in zip(y["classes"], counts)))
    return lines


def model_card(name: str, version: int | None, io: dict[str, Any], card: dict[str, Any], preprocess: Any,
               train: Any, evaluate: Any, signatures: list[str]) -> str:
    """Markdown: what the model is, how it was trained, what it scored, how to call it."""
    import yaml

    props = evaluate.properties
    metrics = props.get("metrics", {})
    rows = sorted({k.split("_", 1)[1] for k in metrics if k.startswith(("test_", "baseline_"))})
    table = ["| metric | model | baseline |", "|---|---|---|"] + [
        f"| {m} | {_fmt(metrics.get(f'test_{m}'))} | {_fmt(metrics.get(f'baseline_{m}'))} |" for m in rows]
    cudnn = train.path("cudnn.md").read_text().replace("# cuDNN eligibility", "").strip() \
        if train.path("cudnn.md").is_file() else "(no report)"
    model = card.get("model", {})
    lines = [
        f"# Model card: {name}" + (f" version {version}" if version else ""), "",
        f"{model.get('topology', '?')} {model.get('cell', '?')} network, {io['x']['kind']} -> "
        f"{io['y']['kind']}; trained on `{card.get('data', {}).get('source', '?')}`.", "",
        "## Serving", "",
        f"Signatures: {', '.join(signatures)}. Raw values in, raw values out (preprocessing inside).",
        f"`rnnpipe serve <export base>` or TF Serving with `--model_base_path=<export base>`; then "
        f"`POST /v1/models/{name}:predict` with `{{\"instances\": [...]}}`.", "",
        "## Evaluation (test split)", "",
        f"Blessed: **{str(props.get('blessed', False)).lower()}** ({'; '.join(props.get('reasons', [])) or '-'})",
        "", *table, "",
        "## Data", "", *data_stats(preprocess), "",
        "## cuDNN", "", cudnn, "",
        "## Configuration", "", "```yaml", yaml.safe_dump(to_plain(card), sort_keys=False).rstrip(), "```", "",
    ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


# --------------------------------------------------------------------------------------------
# The stage


def run(inputs: dict, workdir: Path, ctx: Any, *, export: ExportConfig, name: str,
        model: ModelConfig | None = None, data: DataConfig | None = None, train: TrainConfig | None = None,
        evaluate: EvaluateConfig | None = None) -> dict[str, Any]:
    """Export the blessed model as the next version under `export.dir/<name>/`."""
    import keras

    preprocess, trained, evaluated = inputs["preprocess"], inputs["train"], inputs["evaluate"]
    if export.require_blessing and not evaluated.properties.get("blessed"):
        props = evaluated.properties
        reason = "not blessed: " + "; ".join(props.get("failures") or props.get("reasons") or ["no reason recorded"])
        return {"gate": False, "reason": reason, "summary": reason, "tags": {"exported": "false"}}
    cfg = model or ModelConfig()
    net = keras.saving.load_model(trained.path("model.keras"), safe_mode=True)
    codec = Codec.load(preprocess)
    io = preprocess.properties["io"]
    canaries = canary_inputs(preprocess)
    expected = jsonable(serving_function(net, codec, io, cfg)(raw_tensor(canaries, io["x"]))) if canaries else {}
    artifacts_json = {"inputs": canaries, "outputs": expected, "signature_name": "serving_default"}
    (workdir / "canary.json").write_text(json.dumps(artifacts_json, ensure_ascii=False))
    signatures = ["serving_default"] + (["generate"] if is_generative(io, cfg.topology) else [])
    card_config = Config(name=name, data=data or DataConfig(), model=cfg, train=train or TrainConfig(),
                         evaluate=evaluate or EvaluateConfig(), export=export).to_dict()
    card_config.pop("sweep", None)
    card_config.pop("tracking", None)

    def build(tmp: Path) -> None:
        write_saved_model(net, codec, io, tmp, cfg)
        (tmp / "model_card.md").write_text(model_card(name, None, io, card_config, preprocess, trained,
                                                      evaluated, signatures))

    version, path = publish(build, Path(export.dir) / name)
    (workdir / "model_card.md").write_text(
        model_card(name, version, io, card_config, preprocess, trained, evaluated, signatures))
    ctx.log(f"SavedModel version {version} -> {path} (signatures: {', '.join(signatures)})")
    return {
        "path": str(path.resolve()),
        "base_path": str(path.parent.resolve()),
        "version": version,
        "signatures": signatures,
        "blessed": bool(evaluated.properties.get("blessed")),
        "input_kind": io["x"]["kind"],
        "tags": {"export_version": str(version), "exported": "true"},
        "summary": str(path),
    }
