"""tf.distribute strategies by name (the recipe's ``[train] strategy``).

``default`` runs on one device, ``mirrored`` on every GPU (or logical device) of one host,
``multiworker`` on the hosts listed in ``TF_CONFIG`` and ``tpu`` on a Cloud TPU. The chief
process (the only one, or worker 0 / the ``chief`` task of a cluster) writes the run directory.

``TF_CONFIG`` is checked here before TensorFlow sees it (one-line errors for malformed JSON,
missing keys, a task outside the cluster, this task's port already in use), and a worker that
never joins ends the run after ``[train] join_timeout`` seconds instead of waiting forever.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lpie_data.errors import ConfigError, DataError
from lpie_model.recipe import Recipe

#: Seconds between the checks that every peer is still alive (TensorFlow's default is 30):
#: a worker that dies is noticed this quickly, and the others stop with an error.
HEALTH_CHECK_SECONDS = 5


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in a ``TF_CONFIG`` cluster."""

    cluster: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def address(self) -> str:
        return self.cluster[self.task_type][self.task_index]

    @property
    def is_chief(self) -> bool:
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def peers(self) -> list[str]:
        """Every task as ``type:index (address)``, for messages."""
        return [f"{job}:{i} ({addr})" for job, addrs in sorted(self.cluster.items())
                for i, addr in enumerate(addrs)]


def read_tf_config(text: str | None = None) -> ClusterTask:
    """Parse and check ``TF_CONFIG`` (``text``, default: the environment variable).

    Raises ConfigError with one line naming what is wrong.
    """
    text = os.environ.get("TF_CONFIG", "") if text is None else text
    where = "TF_CONFIG"
    if not text.strip():
        raise ConfigError(
            "train.strategy = 'multiworker' needs the TF_CONFIG environment variable on every "
            "worker (cluster addresses and this worker's task); see docs/scaling.md"
        )
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: expected a JSON object with 'cluster' and 'task'")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError(f"{where}: 'cluster' must map job names to lists of 'host:port' "
                          'addresses, e.g. {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}')
    for job, addrs in cluster.items():
        if not isinstance(addrs, list) or not addrs or not all(
                isinstance(a, str) and _split_address(a) for a in addrs):
            raise ConfigError(f"{where}: cluster.{job} must be a non-empty list of "
                              f"'host:port' strings, got {json.dumps(addrs)}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(f"{where}: 'task' must give this worker's type and index, e.g. "
                          '{"type": "worker", "index": 0}')
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise ConfigError(f"{where}: task type {task_type!r} is not a job of the cluster "
                          f"({', '.join(sorted(cluster))})")
    if not isinstance(index, int) or isinstance(index, bool) or not (
            0 <= index < len(cluster[task_type])):
        raise ConfigError(f"{where}: task index {index!r} is outside cluster.{task_type} "
                          f"(0..{len(cluster[task_type]) - 1})")
    if "worker" not in cluster and "chief" not in cluster:
        raise ConfigError(f"{where}: the cluster needs a 'worker' (or 'chief') job")
    return ClusterTask({k: list(v) for k, v in cluster.items()}, task_type, index)


def _split_address(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def check_port_free(task: ClusterTask) -> None:
    """ConfigError when this task's own port is already taken on this host."""
    parsed = _split_address(task.address)
    if parsed is None:  # read_tf_config already refused it
        return
    _, port = parsed
    # TensorFlow's server listens on every interface, with SO_REUSEADDR (as gRPC does): only
    # a socket bound to the port, not one in TIME_WAIT, makes it fail.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as e:
            raise ConfigError(
                f"TF_CONFIG: port {port} of this worker ({task.task_type}:{task.task_index}, "
                f"{task.address}) is already in use ({e.strerror}); free it or list another "
                "port for this worker on every worker"
            ) from None


def _default_strategy(recipe: Recipe) -> Any:
    import tensorflow as tf

    return tf.distribute.get_strategy()


def _mirrored_strategy(recipe: Recipe) -> Any:
    import tensorflow as tf

    return tf.distribute.MirroredStrategy()


def _multiworker_strategy(recipe: Recipe) -> Any:
    import tensorflow as tf
    from tensorflow.python.distribute import collective_all_reduce_strategy as cars

    task = read_tf_config()
    check_port_free(task)
    timeout = recipe.train.join_timeout
    # TensorFlow waits for every worker with an all-reduce barrier whose timeout (default:
    # none) and the peer health-check interval are class attributes of its implementation.
    extended = getattr(cars, "CollectiveAllReduceExtended", None)
    if extended is not None:
        extended._check_health_initial_timeout = max(1, round(timeout))
        extended._check_health_interval = HEALTH_CHECK_SECONDS
    wait_for_peers(task, timeout)
    # TensorFlow's own timeout does not always fire (a peer whose port nobody listens on can
    # keep the first collective waiting): a watchdog aborts the collectives after the timeout.
    joined = threading.Event()
    watchdog = threading.Thread(target=_abort_if_not_joined, args=(joined, timeout + 5),
                                daemon=True)
    watchdog.start()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        joined.set()
        return strategy
    except (RuntimeError, tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError) as e:
        joined.set()
        if isinstance(e, RuntimeError) and "Timeout waiting for the cluster" not in str(e):
            raise
        raise DataError(
            f"not every worker joined within train.join_timeout = {timeout:g} s (this is "
            f"{task.task_type}:{task.task_index}; cluster: {', '.join(task.peers)}); start "
            "the same command on every worker listed in TF_CONFIG"
        ) from None


def wait_for_peers(task: ClusterTask, timeout: float, poll: float = 0.2) -> None:
    """Wait until every other task of the cluster listens on its port, while this task holds
    its own port open for them (TensorFlow's start-up waits for unreachable peers forever).
    DataError after ``timeout`` seconds, naming the tasks that never answered."""
    others = [(f"{job}:{i} ({addr})", addr) for job, addrs in sorted(task.cluster.items())
              for i, addr in enumerate(addrs)
              if (job, i) != (task.task_type, task.task_index)]
    parsed = _split_address(task.address)
    port = parsed[1] if parsed else 0
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as own:
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        own.bind(("", port))
        own.listen(16)
        while others:
            missing = []
            for name, addr in others:
                host, peer_port = _split_address(addr) or ("", 0)
                try:
                    socket.create_connection((host, peer_port), timeout=1).close()
                except OSError:
                    missing.append((name, addr))
            others = missing
            if others and time.monotonic() > deadline:
                raise DataError(
                    f"not every worker joined within train.join_timeout = {timeout:g} s (this "
                    f"is {task.task_type}:{task.task_index}; cluster: {', '.join(task.peers)}; "
                    f"never answered: {', '.join(n for n, _ in others)}); start the same "
                    "command on every worker listed in TF_CONFIG"
                )
            if others:
                time.sleep(poll)


def _abort_if_not_joined(joined: threading.Event, timeout: float) -> None:
    """Abort TensorFlow's pending collectives (the join barrier) unless ``joined`` is set
    within ``timeout`` seconds; the waiting call then raises UnavailableError."""
    if joined.wait(timeout):
        return
    from tensorflow.python.eager import context
    from tensorflow.python.framework import errors

    context.context().abort_collective_ops(errors.UNAVAILABLE, "not every worker joined")


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


def writes_run_dir(recipe: Recipe) -> bool:
    """Whether this process will be the chief, known before any strategy exists (from
    ``TF_CONFIG`` under ``multiworker``; always true otherwise)."""
    if recipe.train.strategy != "multiworker":
        return True
    return read_tf_config().is_chief


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
