"""``--strategy``: TF_CONFIG checks, sharding and batch rules, mirrored == default, two real workers.

The two end-to-end tests run in fresh processes: logical CPU devices and
``MultiWorkerMirroredStrategy`` must be set up before TensorFlow initialises its devices.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from tfseg import distribute
from tfseg.errors import ConfigError

TWO_WORKERS = {"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, "task": {"type": "worker", "index": 1}}


def subprocess_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


# --------------------------------------------------------------------------- TF_CONFIG
@pytest.mark.parametrize(
    "tf_config, message",
    [
        (None, "TF_CONFIG is not set"),
        ('{"cluster": ', "not valid JSON"),
        ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', '"worker"'),
        ('{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
        ('{"cluster": {"worker": ["h:1"]}}', '"task"'),
        ('{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}}', "worker:2 is not in"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "ps", "index": 0}}', "ps:0 is not in"),
    ],
)
def test_bad_tf_config_is_one_clear_line(tf_config, message):
    with pytest.raises(ConfigError) as info:
        distribute.cluster_spec(tf_config)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_chief_is_worker_0_unless_the_cluster_names_one():
    spec = distribute.cluster_spec(json.dumps(TWO_WORKERS))
    assert not distribute.is_chief_task(spec)
    assert distribute.is_chief_task({**spec, "task": {"type": "worker", "index": 0}})
    with_chief = {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker", "index": 0}}
    assert not distribute.is_chief_task(with_chief)
    assert distribute.is_chief_task({**with_chief, "task": {"type": "chief", "index": 0}})


def test_cli_refuses_a_bad_tf_config_with_exit_2(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "tfseg", "train", "--strategy", "multiworker", "--data", "synthetic:24",
         "--out", str(out)],
        env=subprocess_env(TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker"}}'),
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "TF_CONFIG" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- strategies, batches, sharding
def test_unknown_strategy_and_missing_tpu_are_config_errors():
    with pytest.raises(ConfigError, match="strategy 'gpu'"):
        distribute.get_strategy("gpu")
    if not distribute.tpu_address():
        with pytest.raises(ConfigError, match="strategy tpu: no TPU found"):
            distribute.get_strategy("tpu")


def test_auto_is_default_on_one_cpu():
    strategy = distribute.get_strategy("auto")
    assert distribute.strategy_name(strategy) == "default"
    assert distribute.is_chief(strategy)
    assert distribute.worker_dir("runs/a", strategy) == "runs/a"


def test_batch_size_is_per_replica():
    class TwoReplicas:
        num_replicas_in_sync = 2

    assert distribute.global_batch_size(16, TwoReplicas()) == 32
    assert distribute.global_batch_size(16) == 16
    assert distribute.pipeline_options(8, TwoReplicas(), "train") == {"batch_size": 16}
    assert "drop_remainder" not in distribute.pipeline_options(8, None, "train")


def test_auto_shard_by_file_for_tfrecord_and_by_data_otherwise():
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    assert distribute.auto_shard_policy("tfrecord:/data/shards") == policy.FILE
    assert distribute.auto_shard_policy("synthetic:24") == policy.DATA
    assert distribute.auto_shard_policy("folder:/data/x") == policy.DATA
    dataset = distribute.sharded(tf.data.Dataset.range(4), "synthetic:24")
    assert dataset.options().experimental_distribute.auto_shard_policy == policy.DATA


# --------------------------------------------------------------------------- end to end
MIRRORED_VS_DEFAULT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfseg.config import TrainConfig
    from tfseg.training import train

    # 16 training images = one global batch per epoch: both runs see the same images in each step
    # (Keras draws one extra pass of the shuffled pipeline before fit under a strategy, so with
    # several steps the order would differ). No batch norm and a per-pixel loss: with per-replica
    # statistics BatchNorm and batch-level Dice legitimately differ between 1 x 16 and 2 x 8.
    common = dict(data="synthetic:23", image_size=32, base_filters=4, depth=2, epochs=3, batch_norm=False,
                  loss="bce", augment=False, precision="float32", seed=3)
    out = sys.argv[1]
    results = {}
    for name, batch in (("default", 16), ("mirrored", 8)):
        metrics = train(TrainConfig(**common, strategy=name, batch_size=batch, out=f"{out}/{name}"), verbose=0)
        with open(f"{out}/{name}/history.csv") as f:
            metrics["history"] = f.read().splitlines()
        results[name] = metrics
    print("RESULT " + json.dumps(results))
    """
)


def history_values(lines):
    header = lines[0].split(",")
    return [dict(zip(header, map(float, line.split(",")))) for line in lines[1:]]


@pytest.mark.slow
def test_mirrored_on_two_cpus_matches_the_default_strategy(tmp_path):
    result = subprocess.run([sys.executable, "-c", MIRRORED_VS_DEFAULT, str(tmp_path)], env=subprocess_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    runs = json.loads(line[len("RESULT "):])
    default, mirrored = runs["default"], runs["mirrored"]
    assert (default["replicas"], mirrored["replicas"]) == (1, 2)
    assert default["global_batch_size"] == mirrored["global_batch_size"] == 16
    assert mirrored["strategy"] == "mirrored"
    # Not bit-exact: the mirrored step sums two per-replica mean gradients (all-reduce) instead of
    # averaging 16 images at once, a different float32 summation order (~1e-7 relative, measured),
    # which Adam's normalised steps carry into later epochs. 1e-4 leaves a wide margin.
    rows_default, rows_mirrored = history_values(default["history"]), history_values(mirrored["history"])
    assert len(rows_default) == len(rows_mirrored) == 3
    for a, b in zip(rows_default, rows_mirrored):
        for key in ("loss", "dice", "val_loss", "val_dice"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    for split in ("val", "test"):
        for key in ("loss", "dice", "iou"):
            assert mirrored[split][key] == pytest.approx(default[split][key], rel=1e-4, abs=1e-5), (split, key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_and_only_the_chief_keeps_a_run_folder(tmp_path):
    out = tmp_path / "run"
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    command = [sys.executable, "-m", "tfseg", "train", "--strategy", "multiworker", "--epochs", "1",
               "--data", "synthetic:24", "--image-size", "32", "--base-filters", "4", "--depth", "2",
               "--out", str(out), "--verbose", "2"]
    processes = []
    try:
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            processes.append(subprocess.Popen(command, env=subprocess_env(TF_CONFIG=json.dumps(tf_config)),
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        # A hang (e.g. a worker waiting in a collective) fails the test instead of blocking CI.
        outputs = [process.communicate(timeout=300)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for index, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"worker {index}:\n{output[-3000:]}"
    for name in ("config.json", "model.keras", "history.csv", "metrics.json", "curves.png", "predictions.png"):
        assert (out / name).is_file(), name
    assert (out / "saved_model" / "1" / "saved_model.pb").is_file()
    assert not (tmp_path / "run.worker-1").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["replicas"], metrics["global_batch_size"]) == ("multiworker", 2, 32)
    assert metrics["epochs_completed"] == 1
