"""The ``tf.distribute`` strategy of a run (``--strategy``) and what it changes in training.

==============  ==================================================================
``auto``        ``tpu`` when a TPU is attached, ``mirrored`` when more than one GPU
                is visible, ``default`` otherwise
``default``     TensorFlow's default strategy: one device, no replication
``mirrored``    ``MirroredStrategy``: one replica per local GPU (per logical CPU
                when there is no GPU and several CPU devices are configured)
``multiworker`` ``MultiWorkerMirroredStrategy``: several machines described by the
                ``TF_CONFIG`` environment variable, synchronous all-reduce
``tpu``         ``TPUStrategy`` through ``TPUClusterResolver`` (Colab / Cloud TPU)
==============  ==================================================================

Conventions (see README.md, "Scaling out"):

- ``--batch-size`` is per replica; the pipeline batches the *global* batch
  ``batch_size x strategy.num_replicas_in_sync`` and ``model.fit`` splits it
  (Keras 3's TF trainer calls ``strategy.experimental_distribute_dataset`` itself).
- The learning rate is NOT scaled with the number of replicas: the loss is a mean
  over the global batch, so the same ``--learning-rate`` takes the same step size on
  a larger batch. Raise ``--learning-rate`` yourself (linear scaling rule) if wanted.
- Batch normalisation statistics and batch-level Dice losses are computed per
  replica (over ``--batch-size`` images), as Keras does; cross-entropy matches one
  device up to float32 summation order.
- The final val/test scores, figures and SavedModel come from ``model.keras``
  evaluated on one device by every process (no collectives, same numbers).
- Keras 3.15 needs :func:`tfseg.keras_compat.with_nested_reduce` to ``fit`` with several workers.
- ``multiworker``: input is sharded by FILE for ``tfrecord:`` (needs at least as
  many shards as workers) and by DATA for every other (in-memory) source. Only the
  chief writes RUN_DIR; every other worker writes the same files to
  :func:`worker_dir` (``RUN_DIR.worker-<index>``: its backup survives an
  interruption so that resuming works) and deletes it when the run is complete.
- ``tpu``: static shapes (the training pipeline drops the last partial batch),
  use ``--precision mixed_bfloat16`` and a ``tfrecord:gs://...`` source (TPU
  workers cannot read the Colab VM's local disk).

Example:
    >>> strategy = get_strategy("default")
    >>> strategy_name(strategy), strategy.num_replicas_in_sync
    ('default', 1)
    >>> global_batch_size(16, strategy)
    16
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from tfseg.config import STRATEGIES
from tfseg.errors import ConfigError

# One strategy per name and process: MultiWorkerMirroredStrategy and the TPU system can be set up only once.
_STRATEGIES: Dict[str, Any] = {}


# --------------------------------------------------------------------------- strategies
def get_strategy(name: str = "auto"):
    """The ``tf.distribute.Strategy`` for ``name`` (created once per process, then reused).

    Create ``multiworker`` before any other TensorFlow op of the program (it configures
    the collective ops of the eager context); :func:`tfseg.training.train` does so first.

    Args:
        name: one of :data:`tfseg.config.STRATEGIES`.

    Raises:
        ConfigError: an unknown name, a bad ``TF_CONFIG``, no TPU for ``tpu``, or
            collectives that can no longer be configured.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        name = auto_strategy_name()
    if name not in _STRATEGIES:
        _STRATEGIES[name] = _BUILDERS[name]()
    return _STRATEGIES[name]


def auto_strategy_name() -> str:
    """``tpu`` with a TPU attached, ``mirrored`` with more than one GPU, else ``default``."""
    import tensorflow as tf

    if tpu_address() is not None or tf.config.list_physical_devices("TPU"):
        return "tpu"
    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"


def tpu_address() -> Optional[str]:
    """The TPU named by the environment (``TPU_NAME``, or Colab's ``COLAB_TPU_ADDR``), if any."""
    if os.environ.get("TPU_NAME"):
        return os.environ["TPU_NAME"]
    if os.environ.get("COLAB_TPU_ADDR"):
        return "grpc://" + os.environ["COLAB_TPU_ADDR"]
    return None


def _default_strategy():
    import tensorflow as tf

    return tf.distribute.get_strategy()


def _mirrored_strategy():
    """All GPUs; without a GPU, all logical CPU devices (``MirroredStrategy()`` would take only CPU:0)."""
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)


def _multiworker_strategy():
    import tensorflow as tf

    cluster_spec(os.environ.get("TF_CONFIG"))  # one clear line before TensorFlow reads it
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"strategy multiworker: cannot start ({_first_line(err)}); it must be created "
                          "before any other TensorFlow op of the process") from None
    from tfseg.keras_compat import with_nested_reduce

    return with_nested_reduce(strategy)


def _tpu_strategy():
    """``TPUStrategy`` on the TPU of the environment (Colab: ``tpu=""`` finds it)."""
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address() or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        raise ConfigError(f"strategy tpu: no TPU found ({_first_line(err)}); in Colab choose "
                          "Runtime > Change runtime type > TPU") from None
    return tf.distribute.TPUStrategy(resolver)


_BUILDERS = {
    "default": _default_strategy,
    "mirrored": _mirrored_strategy,
    "multiworker": _multiworker_strategy,
    "tpu": _tpu_strategy,
}


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def strategy_name(strategy) -> str:
    """A short name for ``metrics.json``: ``default``, ``mirrored``, ``multiworker`` or ``tpu``."""
    kind = type(strategy).__name__  # e.g. _DefaultDistributionStrategy, MirroredStrategy
    if "Default" in kind:
        return "default"
    if "MultiWorker" in kind or "CollectiveAllReduce" in kind:
        return "multiworker"
    if "TPU" in kind:
        return "tpu"
    return kind.replace("Strategy", "").lower()


# --------------------------------------------------------------------------- TF_CONFIG
def cluster_spec(tf_config: Optional[str]) -> Dict[str, Any]:
    """The parsed and checked ``TF_CONFIG``: ``{"cluster": {...}, "task": {"type", "index"}}``.

    Raises:
        ConfigError: unset, not JSON, no ``worker`` list, or a task not in the cluster.

    Example:
        >>> spec = cluster_spec('{"cluster": {"worker": ["h1:2222", "h2:2222"]},'
        ...                     ' "task": {"type": "worker", "index": 1}}')
        >>> spec["task"], is_chief_task(spec)
        ({'type': 'worker', 'index': 1}, False)
    """
    if not tf_config:
        raise ConfigError("strategy multiworker: TF_CONFIG is not set (see the README's Scaling out section for an example)")
    try:
        spec = json.loads(tf_config)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({err.msg} at character {err.pos})") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker", []), list) or not (
        cluster.get("worker") or cluster.get("chief")
    ):
        raise ConfigError('TF_CONFIG: needs "cluster": {"worker": ["host:port", ...]} (and optionally "chief")')
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ConfigError(f'TF_CONFIG: cluster "{role}" must be a list of "host:port" strings')
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError('TF_CONFIG: needs "task": {"type": "worker", "index": N}')
    role, index = task["type"], task["index"]
    if role not in cluster or isinstance(index, bool) or not isinstance(index, int) or not (
        0 <= index < len(cluster[role])
    ):
        raise ConfigError(f"TF_CONFIG: task {role}:{index} is not in the cluster "
                          f"({', '.join(f'{r} x{len(a)}' for r, a in cluster.items())})")
    return spec


def is_chief_task(spec: Dict[str, Any]) -> bool:
    """The chief is task ``chief`` when the cluster has one, else ``worker`` 0 (TensorFlow's rule)."""
    role, index = spec["task"]["type"], spec["task"]["index"]
    return role == "chief" or (role == "worker" and index == 0 and "chief" not in spec["cluster"])


def is_chief(strategy) -> bool:
    """Whether this process writes the run folder (always, except a non-chief ``multiworker`` task)."""
    if strategy_name(strategy) != "multiworker":
        return True
    return is_chief_task(cluster_spec(os.environ.get("TF_CONFIG")))


def worker_dir(run_dir: str, strategy) -> str:
    """Where this process writes: ``run_dir`` for the chief, ``run_dir.worker-<index>`` for other workers."""
    if is_chief(strategy):
        return run_dir
    task = cluster_spec(os.environ.get("TF_CONFIG"))["task"]
    return f"{run_dir.rstrip('/' + os.sep)}.{task['type']}-{task['index']}"


def remove_worker_dir(run_dir: str, strategy) -> None:
    """Delete a non-chief worker's folder once the run is complete (the chief's is kept)."""
    from tfseg import fileio

    if not is_chief(strategy) and fileio.isdir(run_dir):
        fileio.rmtree(run_dir)


# --------------------------------------------------------------------------- input pipeline
def global_batch_size(per_replica: int, strategy=None) -> int:
    """``per_replica x num_replicas_in_sync``: the batch the pipeline yields and ``fit`` splits
    (``strategy=None``: one replica)."""
    return int(per_replica) * (1 if strategy is None else int(strategy.num_replicas_in_sync))


def pipeline_options(per_replica: int, strategy=None, split: str = "train") -> Dict[str, Any]:
    """Keyword arguments for :func:`tfseg.data.load_dataset` under ``strategy``.

    ``batch_size`` is the global batch; on a TPU the training batches are static
    (``drop_remainder=True``) so XLA compiles the step once.
    """
    options: Dict[str, Any] = {"batch_size": global_batch_size(per_replica, strategy)}
    if strategy is not None and strategy_name(strategy) == "tpu" and split == "train":
        options["drop_remainder"] = True
    return options


def auto_shard_policy(source: str):
    """``FILE`` for ``tfrecord:`` shards (each worker reads its own files), ``DATA`` otherwise.

    In-memory and single-file sources have nothing to split by file, so every worker
    builds the same batches and keeps its part of each.
    """
    import tensorflow as tf

    from tfseg.data.spec import parse_source

    policy = tf.data.experimental.AutoShardPolicy
    return policy.FILE if parse_source(source).kind == "tfrecord" else policy.DATA


def sharded(dataset, source: str):
    """``dataset`` with the auto-shard policy of :func:`auto_shard_policy` (used by multi-worker strategies)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = auto_shard_policy(source)
    return dataset.with_options(options)


def describe(strategy, per_replica: int) -> str:
    """One log line: strategy, replicas, per-replica and global batch."""
    replicas = strategy.num_replicas_in_sync
    return (f"strategy {strategy_name(strategy)}: {replicas} replica(s), batch {per_replica} per replica, "
            f"global batch {global_batch_size(per_replica, strategy)}")


# --------------------------------------------------------------------------- run folder per worker
def worker_config(config, strategy, run_dir: str):
    """``config`` for this process: a non-chief worker's ``out`` is its :func:`worker_dir` of ``run_dir``."""
    import dataclasses

    own = worker_dir(run_dir, strategy)
    return config if own == run_dir else dataclasses.replace(config, out=own)


def check_workers_agree(strategy, status: str, done: int) -> None:
    """Make every worker start from the epoch the chief starts from, or stop them all.

    Each worker resumes from its own backup (``BackupAndRestore`` of its folder), so a
    worker whose backup is missing or older than the chief's cannot follow it; without
    this check it would wait forever in a collective the chief never reaches.

    Args:
        status: this process' :func:`tfseg.training.run_folder.run_status`.
        done: the epochs this process' backup holds.

    Raises:
        TfsegError: on every worker, when the workers disagree (or, on non-chief
            workers, when the chief's run is already complete: nothing to do).
    """
    from tfseg.errors import TfsegError

    if strategy_name(strategy) != "multiworker":
        return
    mine = -1 if status == "complete" else (done if status == "resume" else 0)
    chief, all_equal = _agreement(strategy, mine)
    if chief == -1 and not is_chief(strategy):
        raise TfsegError("multiworker: the chief's run folder is already complete; nothing to do on this worker")
    if not all_equal and chief != -1:
        raise TfsegError(
            f"multiworker: the workers' backups disagree (chief: {chief} epochs done, this worker: "
            f"{max(mine, 0)}; a worker's folder is removed when a run completes, so a finished run "
            "cannot be extended); rerun every worker with --force-new to start over"
        )


def _agreement(strategy, value: int):
    """``(chief's value, whether every replica holds the same value)`` by one all-reduce."""
    import tensorflow as tf

    chief = 1.0 if is_chief(strategy) else 0.0
    v = float(value)
    mine = tf.constant([v * chief, chief, v, 1.0, v * v], tf.float64)
    # Each local replica adds the same row: ratios of the sums do not depend on the device count.
    s = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(mine)), axis=None).numpy()
    chief_value_ = s[0] / s[1]
    mean, mean_square = s[2] / s[3], s[4] / s[3]
    return int(round(chief_value_)), bool(abs(mean - chief_value_) < 1e-9 and abs(mean_square - mean * mean) < 1e-9)
