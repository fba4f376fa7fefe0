"""Where this process stands in a tf.distribute cluster, and the strategy it trains under.

`train.distribution`: none (default strategy) | mirrored (all local GPUs, or the CPU) |
multi_worker (TF_CONFIG names the cluster, as TensorFlow documents) | tpu (passed through,
untested). The strategy is created once per process: MultiWorkerMirroredStrategy must exist
before any other TensorFlow op runs, so the runner asks for it first.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any


def task() -> tuple[str, int]:
    """(task type, index) from TF_CONFIG; ('chief', 0) when there is no cluster."""
    spec = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    return spec.get("type", "chief"), int(spec.get("index", 0))


def is_chief() -> bool:
    """The chief logs to MLflow and exports; with no 'chief' task, worker 0 is the chief."""
    kind, index = task()
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)


@cache
def strategy(name: str) -> Any:
    """The tf.distribute strategy for `train.distribution`."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        _fix_keras_multi_worker_mean()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def _fix_keras_multi_worker_mean() -> None:
    """Work around a Keras 3 bug under MultiWorkerMirroredStrategy (tensorflow#72388).

    Keras' TF trainer averages each step's per-replica logs with `strategy.reduce("MEAN", v,
    axis=0)`, which fails for scalar logs such as the loss ("Invalid reduction dimension 0
    for input with 0 dimensions"). Scalars are averaged across replicas with axis=None here;
    everything else goes through Keras unchanged.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "rnnpipe_fixed", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            def mean(v: Any) -> Any:
                rank = len(strategy.experimental_local_results(v)[0].shape)
                return strategy.reduce("MEAN", v, axis=None if rank == 0 else 0)

            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.rnnpipe_fixed = True
    trainer.reduce_per_replica = reduce_per_replica
