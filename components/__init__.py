"""The pipeline's stages (TFX's components) and what they share.

Stages, in order (each `run(inputs, workdir, ctx, **config) -> properties`): ingestion/, validation.py,
preprocessing.py (+ preprocessing_beam.py: its `data.runner: beam` tasks), training.py, evaluation/,
export.py, infra_validation.py, push.py. No stage imports a stage that runs after it (import-linter contract).

Shared: config.py (the config schema every stage reads its section of; config_load.py loads and
validates it, config_plain.py flattens and redacts it), kinds/ (one module per data
kind: type checks, statistics, encoding, serving functions, which evaluator judges it), stage_files.py
(the file names stages hand each other, and their readers), artifacts.py (atomic, fingerprinted,
verified stage outputs; file locks), metrics.py (the metric registry: direction, unit; the bootstrap),
plots.py, cluster.py (tf.distribute), faults.py (kill points for tests), stop.py (a stop a signal
asked for, checked at safe points). Tools beside the stages:
serving/ (the TF-Serving-compatible REST server), predict.py (`rnnpipe predict`, batch inference).

Layers: components imports models, never pipeline.
"""
