"""Orchestration: the wiring of the stages, running them with a cache, MLflow, and the CLI.

stages.py (which component runs at each step, with which inputs and config section: the one place the
pipeline's order is written), runner.py (fingerprints, cache, slices, atomic stage outputs),
preflight.py (writable places and a reachable store, checked before any work), tracking.py (the MLflow
run: what each stage returns to log), store.py (the MLflow store), registry.py (registered versions and
the champion), run_queries.py / runs.py / tables.py (`rnnpipe runs`), sweep.py (`rnnpipe sweep`), cli.py.

Layers (pyproject's import-linter contracts, tests/test_architecture.py): pipeline imports components and
models; nothing below imports pipeline.
"""
