"""tf.distribute strategies by name (the recipe's ``[train] strategy``).

``default`` runs on one device, ``mirrored`` on every GPU of one host, ``multiworker`` on the
hosts listed in ``TF_CONFIG`` and ``tpu`` on a Cloud TPU. The chief process (the only one, or
worker 0 / the ``chief`` task of a cluster) writes the run directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lpie_data.errors import ConfigError
from lpie_model.recipe import Recipe


def _default_strategy(recipe: Recipe) -> Any:
    import tensorflow as tf

    return tf.distribute.get_strategy()


def _mirrored_strategy(recipe: Recipe) -> Any:
    import tensorflow as tf

    return tf.distribute.MirroredStrategy()


def _multiworker_strategy(recipe: Recipe) -> Any:
    import tensorflow as tf

    if not os.environ.get("TF_CONFIG"):
        raise ConfigError(
            "train.strategy = 'multiworker' needs the TF_CONFIG environment variable on every "
            "worker (cluster addresses and this worker's task); see the README, 'Scaling out'"
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def _tpu_strategy(recipe: Recipe) -> Any:
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=recipe.train.tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise ConfigError(f"train.strategy = 'tpu': no TPU found (train.tpu = "
                          f"{recipe.train.tpu!r}): {e}") from None
    return tf.distribute.TPUStrategy(resolver)


STRATEGIES: dict[str, Callable[[Recipe], Any]] = {
    "default": _default_strategy,
    "mirrored": _mirrored_strategy,
    "multiworker": _multiworker_strategy,
    "tpu": _tpu_strategy,
}


def is_chief(strategy: Any) -> bool:
    """True where this process writes the run's files (always, except multi-worker non-chiefs)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    jobs = resolver.cluster_spec().as_dict()
    task_type, task_id = resolver.task_type, resolver.task_id
    if not jobs or task_type is None:
        return True
    if "chief" in jobs:
        return task_type == "chief"
    return task_type == "worker" and task_id == 0
