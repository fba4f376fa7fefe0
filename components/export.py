"""Export stage: a SavedModel that takes raw inputs and gives raw outputs, inside the stage output.

inputs -> outputs: preprocess, train, evaluate -> `saved_model/` (saved_model.pb + variables/
as TF Serving expects, plus `model_card.md`), `model_card.md` and `canary.json` (test inputs
with the answers of the in-memory model: what infra validation and the registry's input
example use); the properties carry the SavedModel's `content_hash`. Nothing here is visible to
a server: infra_validate serves this artifact in a fresh process, and only then does the push
stage (components/push.py) publish it as `exports/<name>/<version>/` (TFX order: Evaluator ->
InfraValidator -> Pusher).

Signatures (preprocessing and decoding inside, so clients send and get raw values):
- `serving_default`, by the kind of target:
  label  -> {"label": string [B], "probabilities": float [B, C]}
  labels -> {"labels": string [B, T] ("" past the end of the input), "confidence": float [B, T]}
  tokens -> {"tokens": string [B]} generated greedily (seq2seq / one_to_many: the output
            sequence; language model: the continuation of the prompt)
  series -> {"series": float [B, T, F]} in raw units (de-normalised); a seq2seq forecaster with
            `data.future_columns` also takes `future` float [B, H, n] (those columns' values at the
            horizon steps), one with `model.id_embedding_dim` also `series_id` string [B]
- `generate`, for one_to_many / seq2seq token outputs (models/decoding.py): inputs +
  `max_length` (int32 scalar, 1..the model's maximum) + `beam_width` (int32 scalar, 1 = greedy,
  up to MAX_BEAM_WIDTH; one general beam search serves every width) -> {"tokens": string [B]
  (the best beam), "scores": float [B] (the summed log-probability of exactly those tokens:
  decoding stops at max_length)}; for a language model: inputs (prompts) + `max_length` (1..
  MAX_LM_LENGTH) + `temperature` (float32 scalar, <= 0: greedy) -> {"tokens": string [B]}.
  A value out of range raises InvalidArgumentError (the server answers 400), never a clamp.

Numeric series inputs [B, T, F] take any T in the model's accepted range (`input_contract`):
at least `min_steps` (1, or the horizon for a seasonal-naive reference), at most `max_steps`
(none, or the training window for `model.unroll`); an all-NaN step is padding (trailing only),
masked by the model. Anything else raises InvalidArgumentError with the reason. The accepted
range, the beam/length maxima and the padding rule are written to
`assets.extra/serving_contract.json` in the SavedModel (`files.SERVING_CONTRACT`; see `input_contract`).

Only a blessed model is exported unless `export.require_blessing` is false.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from components import kinds
from components import stage_files as files
from components.config import Config, DataConfig, EvaluateConfig, ExportConfig, ModelConfig, TrainConfig, to_plain
from components.kinds.series import extra_signature
from components.kinds.tokens import (
    MAX_BEAM_WIDTH,
    MAX_LM_LENGTH,
    beam_generate,
    default_length,
    lm_generate,
    max_generate_length,
)
from components.preprocessing import Codec
from components.stage_files import SPLITS

INPUT_NAME = "inputs"
CANARIES = 8


def input_signature(io_x: dict[str, Any], cfg: ModelConfig) -> Any:
    """The raw input TensorSpec for the x side (strings or float32).

    A numeric series has a dynamic time axis ([None, None, F]) unless `model.unroll` fixes it to
    the training window (the unrolled graph has a static length).
    """
    steps = io_x.get("length") if cfg.unroll else None
    return kinds.of(io_x).input_signature(io_x, steps, INPUT_NAME)


def input_contract(codec: Codec, cfg: ModelConfig) -> dict[str, Any]:
    """What the exported signatures accept, as JSON-ready data (written to files.SERVING_CONTRACT).

    {"inputs": {"kind", "features", "min_steps", "max_steps" (None: no limit), "trained_steps",
    "padding"} (series), "generate": {"max_beam_width", "max_length", "default_length"} (seq2seq /
    one_to_many tokens) or {"max_length"} (language model)}.
    """
    from models.io import generates

    x = codec.x
    extra = {spec.name for spec in extra_signature(codec, cfg)}
    future = list(codec.state["future"]["columns"]) if "future" in extra else []
    contract = {"inputs": kinds.of(x).input_contract(codec, cfg, future)}
    if codec.y.get("language_model"):
        contract["generate"] = {"max_length": MAX_LM_LENGTH, "default_length": default_length(codec, cfg)}
    elif generates(cfg.topology, codec.y):
        contract["generate"] = {"max_beam_width": MAX_BEAM_WIDTH, "max_length": max_generate_length(codec, cfg),
                                "default_length": default_length(codec, cfg)}
    if future:  # the decoder's known future values (their past values are `inputs` columns too)
        contract["future"] = {
            "columns": [{"name": str(c), "unit": (x.get("units") or {}).get(c, "")} for c in future],
            "steps": int(codec.state["future"]["length"]), "features": len(future),
            "rule": "float [batch, steps, features]: the values of these columns at each forecast step (the steps "
                    "after the input window), finite numbers, in this column order"}
    if "series_id" in extra:
        contract["series_id"] = {
            "known": len(codec.state["series_id"]["vocabulary"]),
            "rule": "string [batch]: the series id (data.id_column) of each row; an id not seen in training "
                    "uses the shared unseen-id embedding"}
    contract.update(kinds.of(codec.y).output_contract(codec))
    return contract


def contract_markdown(contract: dict[str, Any]) -> list[str]:
    """Model-card lines describing `input_contract` (for the "Serving" section)."""
    lines = kinds.kind(contract["inputs"]["kind"]).contract_lines(contract["inputs"])
    if contract.get("future"):
        f = contract["future"]
        lines.append(f"- `future`: [batch, {f['steps']}, {f['features']}], the known values of "
                     + ", ".join(f"`{c['name']}`" + (f" ({c['unit']})" if c["unit"] else "") for c in f["columns"])
                     + " at each forecast step (after the input window); finite numbers.")
    if contract.get("series_id"):
        lines.append(f"- `series_id`: [batch] strings, each row's series id ({contract['series_id']['known']} "
                     f"known from training; an unseen id gets the shared unseen-id embedding).")
    gen = contract.get("generate")
    if gen and "max_beam_width" in gen:
        lines.append(f"- `generate`: max_length 1..{gen['max_length']} (default {gen['default_length']}), "
                     f"beam_width 1..{gen['max_beam_width']} (1 = greedy); out of range: HTTP 400.")
    elif gen:
        lines.append(f"- `generate`: max_length 1..{gen['max_length']}; out of range: HTTP 400.")
    if contract.get("classes"):
        lines.append("- Classes, in the order of the `probabilities` output: "
                     + ", ".join(f"`{c}`" for c in contract["classes"]) + ".")
    return lines


def is_generative(io: dict[str, Any], topology: str) -> bool:
    """Token outputs produced step by step (seq2seq / one_to_many text, language models)."""
    from models.io import generates

    return generates(topology, io["y"]) or bool(io["y"].get("language_model"))


def serving_function(model: Any, codec: Codec, io: dict[str, Any], cfg: ModelConfig) -> Callable:
    """The raw-in/raw-out function `serving_default` exports for this kind of target."""
    return kinds.of(io["y"]).serve(model, codec, cfg)


def serving_endpoint(model: Any, codec: Codec, io: dict[str, Any], cfg: ModelConfig) -> Any:
    """`serving_default` as the SavedModel holds it: one tf.function with a fixed signature.

    Export calls it on the canaries, then hands it to `write_saved_model`: its body is traced
    for the canaries and once more by TF's save, not a third time for a separate canary function
    (a trace of a decoding loop costs about a second).
    """
    import tensorflow as tf

    return tf.function(serving_function(model, codec, io, cfg), autograph=False,  # as Keras' ExportArchive
                       input_signature=[input_signature(io["x"], cfg), *extra_signature(codec, cfg)])


def write_saved_model(model: Any, codec: Codec, io: dict[str, Any], path: Path, cfg: ModelConfig,
                      serve: Any = None) -> None:
    """Write a SavedModel with `serving_default` (and `generate` for generative models) to `path`.

    `serve` is `serving_endpoint(...)` of this same model, already traced, if the caller has one.
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    for layer in codec.layers.values():
        archive.track(layer)
    spec = input_signature(io["x"], cfg)
    if serve is None:
        serve = serving_endpoint(model, codec, io, cfg)
    serve.get_concrete_function()  # the archive takes a traced tf.function as it is
    archive.add_endpoint(name="serving_default", fn=serve)
    if io["y"].get("language_model"):
        archive.add_endpoint(name="generate", fn=lm_generate(model, codec, cfg), input_signature=[
            spec, tf.TensorSpec([], tf.int32, name="max_length"), tf.TensorSpec([], tf.float32, name="temperature")])
    elif is_generative(io, cfg.topology):
        archive.add_endpoint(name="generate", fn=beam_generate(model, codec, cfg), input_signature=[
            spec, tf.TensorSpec([], tf.int32, name="max_length"), tf.TensorSpec([], tf.int32, name="beam_width")])
    archive.write_out(str(path), verbose=False)
    contract = Path(path) / files.SERVING_CONTRACT
    contract.parent.mkdir(parents=True, exist_ok=True)
    contract.write_text(json.dumps(input_contract(codec, cfg), indent=1))


# --------------------------------------------------------------------------------------------
# Canaries and the model card


def canary_inputs(preprocess: Any, n: int = CANARIES, extra: list[str] = ()) -> Any:
    """The first raw x values of the test split (train if the test split is empty); with `extra`
    names (`future`, `series_id`), {"inputs": [x...], name: [values...]} (columnar, as a request)."""
    for split in ("test", "train"):
        rows = files.raw_examples(preprocess, split, limit=n)
        if rows:
            if not extra:
                return [r["x"] for r in rows]
            meta = {"future": "future", "series_id": "id"}
            return {"inputs": [r["x"] for r in rows], **{name: [r[meta[name]] for r in rows] for name in extra}}
    return []


def raw_inputs(values: Any, io_x: dict[str, Any]) -> list[Any]:
    """Canary inputs (a list, or a dict of named lists) -> the serving function's positional tensors."""
    import tensorflow as tf

    if not isinstance(values, dict):
        return [raw_tensor(values, io_x)]
    out = [raw_tensor(values["inputs"], io_x)]
    for name, column in values.items():
        if name != "inputs":
            out.append(tf.constant([str(v) for v in column]) if name == "series_id"
                       else tf.constant(np.asarray(column, dtype="float32")))
    return out


def raw_tensor(values: list[Any], io_x: dict[str, Any]) -> Any:

    return kinds.of(io_x).raw_tensor(values)


def jsonable(outputs: dict[str, Any]) -> dict[str, Any]:
    """Tensors -> lists (strings decoded), as the REST server answers them."""
    from components.serving import jsonable as answer

    return {key: answer(np.asarray(value)) for key, value in outputs.items()}


def data_stats(preprocess: Any) -> list[str]:
    """Markdown lines: split sizes, vocabularies, classes, target distribution (train)."""
    state = files.preprocessor_state(preprocess)
    lines = ["| split | examples |", "|---|---|"]
    train_y = None
    for split in SPLITS:
        arrays = files.load_arrays(preprocess, split)  # the targets only: no inputs encoded to count them
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
    if train_y is not None and len(train_y):
        lines += kinds.of(state["y"]).distribution(state["y"], train_y)
    return lines


def model_card(name: str, version: int | None, io: dict[str, Any], card: dict[str, Any], preprocess: Any,
               train: Any, evaluate: Any, signatures: list[str], contract: list[str] = ()) -> str:
    """Markdown: what the model is, how it was trained, what it scored, how to call it."""
    import yaml

    props = evaluate.properties
    metrics = props.get("metrics", {})
    rows = sorted({k.split("_", 1)[1] for k in metrics if k.startswith(("test_", "baseline_"))})
    table = ["| metric | model | strongest baseline |", "|---|---|---|"] + [
        f"| {m} | {_fmt(metrics.get(f'test_{m}'))} | {_fmt(metrics.get(f'baseline_{m}'))} |" for m in rows]
    cudnn = train.path(files.CUDNN_REPORT).read_text().replace("# cuDNN eligibility", "").strip() \
        if train.path(files.CUDNN_REPORT).is_file() else "(no report)"
    model = card.get("model", {})
    lines = [
        f"# Model card: {name}" + (f" version {version}" if version else ""), "",
        f"{model.get('topology', '?')} {model.get('cell', '?')} network, {io['x']['kind']} -> "
        f"{io['y']['kind']}; trained on `{card.get('data', {}).get('source', '?')}`.", "",
        "## Serving", "",
        f"Signatures: {', '.join(signatures)}. Raw values in, raw values out (preprocessing inside).",
        f"`rnnpipe serve <export base>` or TF Serving with `--model_base_path=<export base>`; then "
        f"`POST /v1/models/{name}:predict` with `{{\"instances\": [...]}}`.", "", *contract, "",
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


def data_description(data: Any, topology: str, io: dict[str, Any], quantiles: tuple[float, ...],
                     state: dict[str, Any], extra_inputs: list[str] = ()) -> dict[str, Any]:
    """What `rnnpipe predict` needs to read files as training did (stored in the SavedModel): the
    data settings, topology, io kinds, quantile levels, the input / target columns in order and the
    named inputs beside `inputs` (`future`, `series_id`)."""
    from components.config import to_plain

    return {"data": to_plain(data), "topology": topology, "io": io, "quantiles": list(quantiles),
            "columns": {side: list(state[side].get("columns") or []) for side in ("x", "y")},
            "extra_inputs": list(extra_inputs)}



def run(inputs: dict, workdir: Path, ctx: Any, *, export: ExportConfig, name: str, model: ModelConfig,
        data: DataConfig, train: TrainConfig, evaluate: EvaluateConfig) -> dict[str, Any]:
    """Write the blessed model as a SavedModel into this stage's output (`saved_model/`).

    Nothing is published here: infra validation serves this artifact, then the push stage
    copies it into the served base `export.dir/<name>/<version>/`.
    """
    from components import faults
    from components.artifacts import dir_digest
    from models import load_model

    preprocess, trained, evaluated = inputs["preprocess"], inputs["train"], inputs["evaluate"]
    if export.require_blessing and not evaluated.properties.get("blessed"):
        props = evaluated.properties
        reason = "not blessed: " + "; ".join(props.get("failures") or props.get("reasons") or ["no reason recorded"])
        return {"gate": False, "reason": reason, "summary": reason, "tags": {"exported": "false"}}
    cfg = model
    net = load_model(files.model_file(trained), cells=[cfg.cell])
    codec = Codec.load(preprocess)
    io = preprocess.properties["io"]
    extra = extra_signature(codec, cfg)
    canaries = canary_inputs(preprocess, extra=[spec.name for spec in extra])
    serve = serving_endpoint(net, codec, io, cfg)  # the SavedModel's own function
    expected = jsonable(serve(*raw_inputs(canaries, io["x"]))) if canaries else {}
    artifacts_json = {"inputs": canaries, "outputs": expected, "signature_name": "serving_default"}
    files.write_canary(workdir, artifacts_json)
    signatures = ["serving_default"] + (["generate"] if is_generative(io, cfg.topology) else [])
    card_config = Config(name=name, data=data, model=cfg, train=train, evaluate=evaluate, export=export).to_dict()
    card_config.pop("sweep", None)
    card_config.pop("tracking", None)

    path = workdir / files.SAVED_MODEL
    write_saved_model(net, codec, io, path, cfg, serve)

    described = data_description(data, cfg.topology, io, cfg.quantiles, codec.state, [e.name for e in extra])
    # how `rnnpipe predict` reads files
    (path / files.DATA_DESCRIPTION).write_text(json.dumps(described, indent=1, ensure_ascii=False))
    card = model_card(name, None, io, card_config, preprocess, trained, evaluated, signatures,
                      contract_markdown(input_contract(codec, cfg)))
    (path / "model_card.md").write_text(card)
    (workdir / "model_card.md").write_text(card)  # logged to MLflow with the stage's reports
    content = dir_digest(path)
    faults.point("export:written")
    ctx.log(f"SavedModel {content} (signatures: {', '.join(signatures)}); published by push once validated")
    return {
        "saved_model": files.SAVED_MODEL,
        "content_hash": content,
        "signatures": signatures,
        "blessed": bool(evaluated.properties.get("blessed")),
        "input_kind": io["x"]["kind"],
        "summary": f"SavedModel {content} (not yet published)",
    }
