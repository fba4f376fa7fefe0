"""Token targets: language models (next-token metrics, sampled continuations) and generated
sequences (greedy/beam decoding, edit distance, degenerate outputs, attention maps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from components.config import EvaluateConfig, ModelConfig
from components.evaluation.common import BATCH, _predict, _raw, _short, _state, _vocabulary, accuracy_by_position
from components.metrics import Sample, mean_sample
from components.preprocessing import END, PAD, START, Codec, load_split


def next_token_metrics(probs: np.ndarray, y: np.ndarray, train_y: np.ndarray, prefix: str = "") -> dict[str, Any]:
    """Per-token accuracy and perplexity of next-token probabilities [N, T, V], padding ignored, for
    the model and the train unigram: {"model", "train unigram": metrics, "samples", "hits", "mask"}."""
    probs = probs[:, : y.shape[1]]
    y = y[:, : probs.shape[1]]
    mask = y != 0
    unigram = np.bincount(train_y[train_y != 0], minlength=probs.shape[-1]).astype(float) + 1.0
    unigram /= unigram.sum()
    pred, base_pred = probs.argmax(-1), np.full_like(y, int(unigram.argmax()))
    p_model = np.take_along_axis(probs, y[..., None], -1)[..., 0]
    out: dict[str, Any] = {"samples": {}, "hits": {}, "mask": mask}
    for name, p, p_true in (("model", pred, p_model), ("train unigram", base_pred, unigram[y])):
        nll = np.where(mask, -np.log(np.clip(p_true, 1e-12, 1.0)), 0.0)
        tokens = mask.sum(1).astype(float)
        hits = (p == y) & mask
        samples = {f"{prefix}accuracy": Sample(hits.sum(1).astype(float), tokens),
                   f"{prefix}perplexity": Sample(nll.sum(1), tokens, "exp")}
        out[name] = {k: float(s.value()) for k, s in samples.items()}
        out["samples"][name] = samples
        out["hits"][name.split()[-1]] = p == y
    return out


def evaluate_language_model(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                            model_cfg: ModelConfig, **_: Any) -> dict[str, Any]:
    """Next-token prediction: per-token accuracy and perplexity vs the train unigram."""
    state = _state(preprocess)
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
    probs = _predict(model, test["x"])
    scored = next_token_metrics(probs, test["y"], train["y"])
    accuracy_by_position(workdir / "accuracy_by_position.png", scored["hits"], scored["mask"], "Next-token")
    words = _vocabulary(state, "x")
    sep = "" if state["x"].get("tokenize", "char") == "char" else " "
    samples = sample_continuations(model, preprocess, test["x"][:3, :20], words, sep, seed=0)
    (workdir / "samples.md").write_text("# Sampled continuations (temperature)\n\n" + "\n".join(
        f"- T={t}: **{prompt}**{text}" for prompt, t, text in samples) + "\n")
    rows = [{"prompt": _short(p, 40), "temperature": t, "continuation": _short(text, 80)} for p, t, text in samples]
    return {"main": "accuracy", "gate": ["accuracy", "perplexity"], "examples": len(test["y"]),
            "model": scored["model"], "baselines": {"train unigram": scored["train unigram"]},
            "samples": scored["samples"], "rows": rows,
            "report": ["", "## Samples", "", *(f"- T={t}: **{p}**{text}" for p, t, text in samples)]}


def sample_continuations(model: Any, preprocess: Any, prompts: np.ndarray, words: list[str], sep: str, seed: int,
                         steps: int = 40, temperatures: tuple[float, ...] = (0.5, 1.0)) -> list[tuple[str, float, str]]:
    """Temperature-sampled continuations of encoded prompts: the exported `generate` signature's own
    loop (models.decoding.continue_ids), so the report shows what the served model does."""
    import tensorflow as tf

    from models.decoding import continue_ids

    codec = Codec.load(preprocess)
    sample = tf.function(lambda p, t: codec.join_tokens(continue_ids(model, p, steps, t)))
    tf.random.set_seed(seed)
    out = []
    for temperature in temperatures:
        texts = sample(tf.constant(prompts), tf.constant(temperature, tf.float32)).numpy()
        for prompt, text in zip(prompts, texts):
            shown = sep.join(words[i] for i in prompt if i > 1)
            out.append((shown, temperature, sep + text.decode() if sep else text.decode()))
    return out


def edit_distance(a: list[Any], b: list[Any]) -> int:
    """Levenshtein distance between two token lists."""
    prev = list(range(len(b) + 1))
    for i, ta in enumerate(a, 1):
        cur = [i]
        for j, tb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ta != tb)))
        prev = cur
    return prev[-1]


def sequence_samples(refs: list[list[str]], hyps: list[list[str]], prefix: str = "") -> dict[str, Sample]:
    """Per-example exact match, token edit distance and token error rate (edits / reference tokens)."""
    edits = np.asarray([edit_distance(r, h) for r, h in zip(refs, hyps)], dtype="float64")
    return {f"{prefix}exact_match": mean_sample([r == h for r, h in zip(refs, hyps)]),
            f"{prefix}edit_distance": mean_sample(edits),
            f"{prefix}token_error_rate": Sample(edits, np.asarray([len(r) for r in refs], dtype="float64"))}


def sequence_metrics(refs: list[list[str]], hyps: list[list[str]]) -> dict[str, float]:
    """Exact match, mean token edit distance, token error rate."""
    return {k: float(s.value()) for k, s in sequence_samples(refs, hyps).items()}


def degenerate(outputs: list[list[str]]) -> str | None:
    """Why generated outputs are degenerate (mostly empty, or one output for every input), else None."""
    if not outputs:
        return None
    empty = sum(not o for o in outputs) / len(outputs)
    if empty > 0.5:
        return f"degenerate outputs: {empty:.0%} of the test outputs are empty"
    if len(outputs) > 1 and len({tuple(o) for o in outputs}) == 1:
        return f"degenerate outputs: the same output ({' '.join(outputs[0])[:40]!r}) for every test input"
    return None


def ids_to_tokens(ids: Any, words: list[str]) -> list[str]:
    """Token ids -> tokens, stopping at the end token, skipping padding and start."""
    out = []
    for i in np.asarray(ids).tolist():
        token = words[i] if 0 <= i < len(words) else "[UNK]"
        if token == END:
            break
        if token not in (PAD, START):
            out.append(token)
    return out


def generate_batches(model: Any, preprocess: Any, cfg: ModelConfig, x: np.ndarray, steps: int,
                     beam_width: int) -> dict[str, np.ndarray]:
    """models/decoding.py on encoded inputs, in batches: ids [N, steps] (+ attention [N, steps, T])."""
    import tensorflow as tf

    from models.decoding import make_generator

    generate = make_generator(model, cfg, preprocess.properties["io"])
    fn = tf.function(lambda t: generate(t, steps, beam_width), reduce_retracing=True)
    outs = [fn(tf.constant(x[i:i + BATCH])) for i in range(0, len(x), BATCH)]
    return {k: np.concatenate([np.asarray(o[k]) for o in outs]) for k in (outs[0] if outs else {})}


def evaluate_generation(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                        model_cfg: ModelConfig, **_: Any) -> dict[str, Any]:
    """one_to_many / seq2seq tokens: greedy and beam decoding vs the empty output and the most
    frequent train target; teacher-forced next-token metrics vs the train unigram."""
    from collections import Counter

    state = _state(preprocess)
    words = _vocabulary(state)
    test, train = load_split(preprocess, "test"), load_split(preprocess, "train")
    refs = [ids_to_tokens(row, words) for row in test["y"]]
    steps = int(model_cfg.max_output_length or state["y"]["length"])
    decoded = generate_batches(model, preprocess, model_cfg, test["x"], steps, 1)
    greedy = [ids_to_tokens(row, words) for row in decoded.get("ids", [])]
    width = cfg.beam_width or model_cfg.beam_width
    beam = greedy
    if width > 1:
        beams = generate_batches(model, preprocess, model_cfg, test["x"], steps, width)
        beam = [ids_to_tokens(row, words) for row in beams.get("ids", [])]
    common = Counter(tuple(ids_to_tokens(row, words)) for row in train["y"]).most_common(1)
    constant = list(common[0][0]) if common else []
    sep = "" if state["y"].get("tokenize", "char") == "char" else " "
    frequent = f"most frequent train target ({_short(sep.join(constant), 30)})"
    samples: dict[str, dict[str, Sample]] = {}
    for name, hyps, beam_hyps in (("model", greedy, beam), ("empty output", [[]] * len(refs), None),
                                  (frequent, [constant] * len(refs), None)):
        samples[name] = sequence_samples(refs, hyps)
        if width > 1:
            samples[name].update(sequence_samples(refs, beam_hyps if beam_hyps is not None else hyps, "beam_"))
    if len(test["y"]):  # teacher forced: how well the model predicts each next target token
        from models.build import training_data

        inputs, _ = training_data(model_cfg, preprocess.properties["io"], test["x"], test["y"])
        probs = np.asarray(model.predict(inputs, batch_size=BATCH, verbose=0))
        forced = next_token_metrics(probs, test["y"], train["y"], prefix="teacher_forced_")
        samples["model"].update(forced["samples"]["model"])
        samples["train unigram"] = forced["samples"]["train unigram"]
    sides = {name: {k: float(s.value()) for k, s in by_metric.items()} for name, by_metric in samples.items()}
    mine = sides.pop("model")
    mine["empty_output_rate"] = float(np.mean([not g for g in greedy])) if greedy else float("nan")
    mine["distinct_output_rate"] = len({tuple(g) for g in greedy}) / len(greedy) if greedy else float("nan")
    raw = _raw(preprocess)
    rows = [{"input": _short(r["x"]), "target": sep.join(t), "greedy": sep.join(g), f"beam_{width}": sep.join(b)}
            for r, t, g, b in zip(raw[: cfg.num_examples * 2], refs, greedy, beam)]
    if "attention" in decoded:
        _attention_maps(decoded, state, test["x"], raw, workdir)
    return {"main": "token_error_rate", "gate": ["token_error_rate", "teacher_forced_perplexity"],
            "examples": len(refs), "model": mine, "baselines": sides, "samples": samples,
            "degenerate": degenerate(greedy), "rows": rows, "report": []}


def _attention_maps(decoded: dict[str, np.ndarray], state: dict[str, Any], x: np.ndarray, raw: list[dict],
                    workdir: Path, count: int = 3) -> None:
    """Heat maps of the decoder's attention over the input for the first test inputs (greedy)."""
    from components.plots import heatmap

    in_words, out_words = _vocabulary(state, "x"), _vocabulary(state, "y")
    for i in range(min(count, len(x))):
        src = [in_words[t] for t in x[i] if t > 0]
        out = ids_to_tokens(decoded["ids"][i], out_words)
        if not src or not out:
            continue
        heatmap(decoded["attention"][i][: len(out), : len(src)], workdir / f"attention_{i + 1}.png",
                f"Attention: {_short(raw[i]['x'], 40)}", src, out, "input", "output", annotate=False)


def evaluate_tokens(model: Any, preprocess: Any, workdir: Path, cfg: EvaluateConfig,
                    model_cfg: ModelConfig, **kwargs: Any) -> dict[str, Any]:
    """Token targets: a language model (next token at each step) or a generated sequence."""
    if preprocess.properties["io"]["y"].get("language_model"):
        return evaluate_language_model(model, preprocess, workdir, cfg, model_cfg, **kwargs)
    return evaluate_generation(model, preprocess, workdir, cfg, model_cfg, **kwargs)
