"""Training throughput (images/s) and the Dice it reaches: model x width x image size x precision x XLA.

Every row trains ``build_model(MODEL, SIZE, base_filters=WIDTH)`` with the other settings of a
bare ``tfseg train`` (:class:`tfseg.config.TrainConfig`: depth, BatchNorm, transposed convolutions,
bce_dice loss, Adam and its learning rate, batch size; read at run time and recorded),
compiled exactly as ``tfseg train`` compiles it (:func:`tfseg.training.build_compiled_model`),
under one precision policy, with or without XLA (``jit_compile``). Images/s is measured by
the callback that writes ``train_images_per_second`` into ``metrics.json``
(:class:`tfseg.training.Throughput`): every epoch but the first (tracing, XLA compilation),
from its start to its last batch.

The data are ``synthetic`` lesions, generated once per size and held in memory (no
augmentation), so the rows time the model, not the input pipeline
(``benchmarks/input_pipeline.py`` shows that the pipeline is not the bottleneck).

Quality: the ``--dice-for`` precisions (float32, mixed_bfloat16) without XLA at
``--dice-sizes`` are trained for ``--budget`` steps once per ``--seeds`` seed and scored
(Dice on the synthetic val split); the spread over the seeds is the yardstick of "equal
Dice". The other rows (float16 and XLA on a CPU are several times slower; 256 px) are timed
over a short ``--speed-budget`` and report no Dice. A run during which other processes took
more than ``--max-others`` of the CPU is measured again (``others_share`` in the table).

Two widths by default: ``tfseg train``'s default (8 filters in the first stage) and the
lesson's reference networks (16-32-64-128). float16 rows use
``--float16-budget``: on a CPU they are several times slower.

Every grid also has a ``plain Keras U-Net`` row for each U-Net width, size and precision: the
same U-Net (width, depth, transposed convolutions, BatchNorm, ReLU, sigmoid head) written as the
keras-io examples write it, with ``keras.layers`` only (:func:`plain_keras_unet`), compiled with
the same loss, metrics and optimizer; ``vs_tfseg`` is tfseg's U-Net over it (images/s), measured
side by side in the same run.

``--ablations`` adds U-Net rows at the largest size and width with :class:`tfseg.layers.BatchNorm`
(``batch_norm_layer="bfloat16"``) in place of the default ``keras.layers.BatchNormalization``
(``benchmarks/batch_norm.py`` compares the two interleaved, the fairer measurement); ``--ops``
adds the "why": forward + backward time of each layer type at the U-Net's shapes, float32
vs mixed_bfloat16, and which ops of one mixed_bfloat16 training step still run in float32.
``--train-runs float32,mixed_bfloat16`` adds complete default ``tfseg train`` runs per
precision and seed (minutes each): the Dice a user gets, and ``metrics.json``'s images/s.

Usage (from the repository root)::

    python benchmarks/training_throughput.py --ablations --ops --out benchmarks/results/training_throughput.json
    python benchmarks/training_throughput.py --no-grid --train-runs float32,mixed_bfloat16 \\
        --train-base-filters 16 --seeds 0 --out benchmarks/results/training_runs.json
    python benchmarks/training_throughput.py --quick          # a smoke run: seconds

Prints Markdown tables (with this command and the machine above them) and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import warnings  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # retracing notes: every row builds a new model on purpose
warnings.filterwarnings("ignore", message=".*shuffle=True.*")  # Keras notes that datasets shuffle themselves

from machine import (  # noqa: E402
    CpuMeter, command_line, header, load_average, machine_info, markdown_table, median, rounded, run_benchmark,
    wait_until_quiet,
)

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
ROW_COLUMNS = ("model", "options", "base_filters", "size", "precision", "xla", "steps", "images_per_second", "vs_float32",
               "vs_no_xla", "vs_tfseg", "dice", "dice_spread", "first_epoch_s", "others_share")


def parse_args(argv=None):
    from tfseg.config import TrainConfig

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="unet,segnet", help="comma-separated model names")
    parser.add_argument("--sizes", default="128,256", help="comma-separated image sizes")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--xla-sizes", default="128", help="sizes that also get rows with XLA (jit_compile); "
                                                             "'' for none")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--base-filters", default=f"{defaults.base_filters},16",
                        help="comma-separated widths (filters of the first stage): tfseg train's default and the "
                             "lesson's 16")
    parser.add_argument("--depth", type=int, default=defaults.depth)
    parser.add_argument("--dice-sizes", default="128", help="sizes whose --dice-for rows are trained to --budget "
                                                              "and scored")
    parser.add_argument("--dice-for", default="float32,mixed_bfloat16", help="precisions (without XLA) scored")
    parser.add_argument("--budget", default="10x15", help="EPOCHSxSTEPS of the scored rows")
    parser.add_argument("--speed-budget", default="2x4", help="EPOCHSxSTEPS of the other rows")
    parser.add_argument("--float16-budget", default="2x2", help="EPOCHSxSTEPS of the mixed_float16 rows")
    parser.add_argument("--seeds", default="0,1", help="the scored rows train once per seed (the spread of their "
                                                       "Dice is the noise); the other rows use the first")
    parser.add_argument("--ablations", action="store_true",
                        help="add U-Net rows at the largest size and width with tfseg.layers.BatchNorm "
                             "(--batch-norm-layer bfloat16) instead of keras.layers.BatchNormalization")
    parser.add_argument("--ops", action="store_true", help="add the per-layer float32 vs bfloat16 table")
    parser.add_argument("--train-runs", default="", metavar="PRECISIONS",
                        help="also run a complete default `tfseg train --precision P --seed S` for each of these "
                             "precisions and --seeds (minutes each): Dice after full training")
    parser.add_argument("--train-base-filters", type=int, default=None,
                        help="base_filters of the --train-runs (default: tfseg train's)")
    parser.add_argument("--no-grid", action="store_true", help="skip the grid (e.g. only --train-runs or --ops)")
    parser.add_argument("--samples", type=int, default=400, help="synthetic samples (70%% train, 15%% val)")
    parser.add_argument("--quick", action="store_true", help="a tiny grid that runs in seconds (smoke test)")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                        help="first wait (up to 30 min) until the 1-minute load average is below LOAD")
    parser.add_argument("--max-others", type=float, default=0.1,
                        help="re-measure a run (up to --retries times, after waiting for load < 1.5) when other "
                             "processes took more than this share of the CPU during it")
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.sizes, args.precisions = "unet", "32", "float32,mixed_bfloat16"
        args.xla_sizes, args.dice_sizes, args.seeds = "", "32", "0"
        args.base_filters, args.depth, args.samples, args.batch_size = "4", 2, 24, 4
        args.budget, args.speed_budget, args.float16_budget, args.retries = "2x2", "2x1", "2x1", 0
    return args


def parse_budget(text: str) -> Tuple[int, int]:
    """``"6x12"`` -> ``(6 epochs, 12 steps per epoch)``."""
    epochs, steps = text.lower().split("x")
    return int(epochs), int(steps)


def int_list(text: str) -> List[int]:
    """``"128,256"`` -> ``[128, 256]``; ``""`` -> ``[]``."""
    return [int(item) for item in text.split(",") if item.strip()]


# --------------------------------------------------------------------------- data
def synthetic_arrays(size: int, samples: int, seed: int):
    """``{"train": (images, masks), "val": (images, masks)}`` as numpy arrays, generated once."""
    import numpy as np

    from tfseg.data import load_dataset

    arrays = {}
    for split in ("train", "val"):
        ds = load_dataset(f"synthetic:{samples}", split=split, image_size=size, batch_size=64, augment=False,
                          shuffle=False, cache="none", seed=seed)
        images, masks = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
        arrays[split] = (np.concatenate(images), np.concatenate(masks))
    return arrays


def train_batches(arrays, batch_size: int, seed: int):
    """Shuffled, repeated batches of in-memory arrays: feeding costs next to nothing."""
    import tensorflow as tf

    images, masks = arrays
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- one row
class FirstEpochTimer(keras.callbacks.Callback):
    """Seconds of the first epoch of a ``fit`` (tracing + XLA compilation + its steps)."""

    seconds: Optional[float] = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.seconds is None:
            self.seconds = time.perf_counter() - self._start


PLAIN = "plain Keras U-Net"


def plain_keras_unet(size: int, base_filters: int, depth: int) -> keras.Model:
    """The U-Net of a keras-io example: Conv-BN-ReLU x2 per stage, MaxPool, Conv2DTranspose, concat, sigmoid."""
    layers = keras.layers

    def block(x, filters):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        return x

    inputs = keras.Input((size, size, 3))
    x, skips = inputs, []
    for stage in range(depth):
        x = block(x, base_filters * 2**stage)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = block(x, base_filters * 2**depth)
    for stage in reversed(range(depth)):
        x = layers.Conv2DTranspose(base_filters * 2**stage, 2, strides=2, padding="same")(x)
        x = block(layers.Concatenate()([x, skips[stage]]), base_filters * 2**stage)
    outputs = layers.Activation("sigmoid", dtype="float32")(layers.Conv2D(1, 1)(x))
    return keras.Model(inputs, outputs)


def measure_run(row: Dict[str, Any], data, args, seed: int) -> Dict[str, Any]:
    """Train one configuration for its budget with ``seed``: images/s, Dice (scored rows), CPU share of others."""
    from tfseg.config import TrainConfig
    from tfseg.precision import precision_policy
    from tfseg.training import Throughput, build_compiled_model, training_phases

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    epochs, steps = row["budget"]
    options = dict(row["config"])
    config = TrainConfig(model=row["model"], image_size=row["size"], batch_size=args.batch_size,
                         precision=row["precision"], jit_compile=row["xla"] == "on", seed=seed,
                         base_filters=row["base_filters"], depth=args.depth, **options)
    with precision_policy(config.precision) as policy, CpuMeter() as meter:
        if row["options"] == PLAIN:
            from tfseg.training import compile_model

            model = plain_keras_unet(config.image_size, config.base_filters, config.depth)
            compile_model(model, config, 1, config.learning_rate)
        else:
            model = build_compiled_model(config, 1, training_phases(config)[0])
        throughput, first = Throughput(config.batch_size), FirstEpochTimer()
        model.fit(train_batches(data["train"], config.batch_size, seed), epochs=epochs,
                  steps_per_epoch=steps, callbacks=[throughput, first], verbose=0)
        dice = None
        if row["score"]:
            images, masks = data["val"]
            dice = model.evaluate(images, masks, batch_size=config.batch_size, return_dict=True, verbose=0)["dice"]
    return {"policy": policy, "images_per_second": throughput.images_per_second(), "dice": dice,
            "first_epoch_s": first.seconds, **meter.result()}


def quiet_run(run, label: str, args) -> Dict[str, Any]:
    """``run()`` (a dict with ``others_share``), again after waiting for a quiet machine while other processes
    took more than ``args.max_others`` of the CPU during it (at most ``args.retries`` times)."""
    for attempt in range(args.retries + 1):
        print(f"  measuring {label}", file=sys.stderr, flush=True)
        result = run()
        if result["others_share"] <= args.max_others or attempt == args.retries:
            return {**result, "attempts": attempt + 1}
        print(f"  other processes took {result['others_share']:.0%} of the CPU: again", file=sys.stderr)
        wait_until_quiet(1.5, 600, log=lambda m: print(m, file=sys.stderr, flush=True))


def measure_row(row: Dict[str, Any], data, args) -> Dict[str, Any]:
    """Every seed's run of ``row`` (re-measured when other processes took the CPU), summarised."""
    seeds = int_list(args.seeds) if row["score"] else int_list(args.seeds)[:1]
    label = (f"{row['model']} {row['options']} base_filters={row['base_filters']} {row['size']} {row['precision']} "
             f"xla={row['xla']}")
    runs = [{"seed": seed, **quiet_run(lambda: measure_run(row, data, args, seed), f"{label} seed {seed}", args)}
            for seed in seeds]
    epochs, steps = row["budget"]
    rates = [r["images_per_second"] for r in runs if r["images_per_second"]]
    dice = [r["dice"] for r in runs if r["dice"] is not None]
    return {
        **{k: v for k, v in row.items() if k not in ("budget", "config", "score")},
        "policy": runs[0]["policy"],
        "steps": epochs * steps,
        "timed_steps": (epochs - 1) * steps,
        "images_per_second": rounded(median(rates)) if rates else None,
        "dice": round(sum(dice) / len(dice), 3) if dice else None,
        "dice_spread": round(max(dice) - min(dice), 3) if len(dice) > 1 else None,
        "first_epoch_s": round(median([r["first_epoch_s"] for r in runs]), 1),
        "others_share": max(r["others_share"] for r in runs),
        "runs": runs,
    }


def grid(args) -> List[Dict[str, Any]]:
    """The rows to measure, in order (float32 first in each group: the reference)."""
    budget, speed = parse_budget(args.budget), parse_budget(args.speed_budget)
    float16 = parse_budget(args.float16_budget)
    scored_precisions, scored_sizes = set(args.dice_for.split(",")), set(int_list(args.dice_sizes))
    sizes, xla_sizes, widths = int_list(args.sizes), set(int_list(args.xla_sizes)), int_list(args.base_filters)
    rows = []
    for model in args.models.split(","):
        for width in widths:
            for size in sizes:
                for xla in ("off", "on") if size in xla_sizes else ("off",):
                    for precision in args.precisions.split(","):
                        score = precision in scored_precisions and xla == "off" and size in scored_sizes
                        rows.append({"model": model, "options": "", "base_filters": width, "size": size,
                                     "precision": precision, "xla": xla, "score": score, "config": {},
                                     "budget": budget if score else float16 if precision == "mixed_float16"
                                     else speed})
                        if model == "unet" and xla == "off" and precision != "mixed_float16":
                            rows.append({**rows[-1], "options": PLAIN, "score": False, "budget": speed})
    if args.ablations:
        for precision in ("float32", "mixed_bfloat16"):
            rows.append({"model": "unet", "options": "tfseg.layers.BatchNorm", "base_filters": max(widths),
                         "size": max(sizes), "precision": precision, "xla": "off", "budget": speed, "score": False,
                         "config": {"batch_norm_layer": "bfloat16"}})
    return rows


def add_speedups(rows: List[Dict[str, Any]]) -> None:
    """``vs_float32``: images/s over the float32 row of the same model, options, size and XLA setting;
    ``vs_no_xla``: over the row without XLA of the same model, options, size and precision."""
    for column, key, reference in (("vs_float32", "xla", "precision"), ("vs_no_xla", "precision", "xla")):
        base_value = "float32" if reference == "precision" else "off"
        bases = {(r["model"], r["options"], r.get("base_filters"), r["size"], r[key]): r["images_per_second"]
                 for r in rows if r[reference] == base_value}
        for row in rows:
            base = bases.get((row["model"], row["options"], row.get("base_filters"), row["size"], row[key]))
            rate = row["images_per_second"]
            row[column] = round(rate / base, 2) if base and rate else None
    plain = {(r["base_filters"], r["size"], r["precision"]): r["images_per_second"]
             for r in rows if r["options"] == PLAIN}
    for row in rows:
        base = plain.get((row.get("base_filters"), row["size"], row["precision"]))
        own = row["images_per_second"]
        row["vs_tfseg"] = None
        if row["model"] == "unet" and row["options"] == "" and row["xla"] == "off" and base and own:
            row["vs_tfseg"] = round(own / base, 2)  # tfseg's U-Net over the plain one


# --------------------------------------------------------------------------- full runs of tfseg train
def train_run(precision: str, seed: int, base_filters: Optional[int] = None) -> Dict[str, Any]:
    """``tfseg train --precision P --seed S [--base-filters N]`` with every other default, into a temporary folder."""
    import tempfile

    from tfseg.config import TrainConfig
    from tfseg.training import train

    keras.backend.clear_session()
    with tempfile.TemporaryDirectory() as folder, CpuMeter() as meter:
        options = {} if base_filters is None else {"base_filters": base_filters}
        config = TrainConfig(precision=precision, seed=seed, out=os.path.join(folder, "run"), **options)
        metrics = train(config, verbose=0)
    return {
        "precision": metrics["precision"], "seed": seed, "epochs_completed": metrics["epochs_completed"],
        "best_epoch": metrics.get("best_epoch"), "val_dice": round(metrics["val"]["dice"], 3),
        "test_dice": round(metrics["test"]["dice"], 3), "test_iou": round(metrics["test"]["iou"], 3),
        "train_images_per_second": rounded(metrics["train_images_per_second"] or float("nan")),
        "seconds": round(metrics["seconds"]), **meter.result(),
    }


def train_runs(args) -> Dict[str, Any]:
    from tfseg.config import TrainConfig

    defaults = TrainConfig(**({} if args.train_base_filters is None else {"base_filters": args.train_base_filters}))
    runs = [quiet_run(lambda: train_run(precision, seed, args.train_base_filters),
                      f"tfseg train --precision {precision} --seed {seed} --base-filters {defaults.base_filters}", args)
            for precision in args.train_runs.split(",") for seed in int_list(args.seeds)]
    return {"settings": {k: v for k, v in defaults.to_dict().items()
                         if k in ("data", "model", "image_size", "batch_size", "base_filters", "depth", "epochs",
                                  "patience", "learning_rate", "loss", "augment")},
            "runs": runs}


# --------------------------------------------------------------------------- why: layers and ops
def layer_cases(size: int, batch: int, base: int):
    """``[(name, make_layer(dtype_policy), input shape)]``: the U-Net's layer types at its real shapes."""
    from tfseg.layers import BatchNorm, MaxPoolingWithArgmax2D

    half, quarter = size // 2, size // 4
    return [
        (f"Conv2D 3x3 {base}->{base} @{size}",
         lambda p: keras.layers.Conv2D(base, 3, padding="same", use_bias=False, dtype=p), (batch, size, size, base)),
        (f"Conv2D 3x3 {4 * base}->{4 * base} @{quarter}",
         lambda p: keras.layers.Conv2D(4 * base, 3, padding="same", use_bias=False, dtype=p),
         (batch, quarter, quarter, 4 * base)),
        (f"Conv2DTranspose 2x2/2 {2 * base}->{base} @{half}",
         lambda p: keras.layers.Conv2DTranspose(base, 2, strides=2, padding="same", dtype=p),
         (batch, half, half, 2 * base)),
        (f"keras.layers.BatchNormalization {base} @{size}", lambda p: keras.layers.BatchNormalization(dtype=p),
         (batch, size, size, base)),
        (f"tfseg.layers.BatchNorm {base} @{size}", lambda p: BatchNorm(dtype=p), (batch, size, size, base)),
        (f"ReLU {base} @{size}", lambda p: keras.layers.Activation("relu", dtype=p), (batch, size, size, base)),
        (f"MaxPooling2D {base} @{size}", lambda p: keras.layers.MaxPooling2D(2, dtype=p), (batch, size, size, base)),
        (f"UpSampling2D bilinear {base} @{half}",
         lambda p: keras.layers.UpSampling2D(2, interpolation="bilinear", dtype=p), (batch, half, half, base)),
        (f"MaxPoolingWithArgmax2D {base} @{size}", lambda p: MaxPoolingWithArgmax2D(dtype=p),
         (batch, size, size, base)),
    ]


def layer_milliseconds(make, shape, policy: str, repeats: int) -> float:
    """Median ms of one forward + backward pass (input and weight gradients) of a fresh layer."""
    import numpy as np
    import tensorflow as tf

    layer = make(policy)
    x = tf.cast(np.random.default_rng(0).random(shape, dtype=np.float32), layer.compute_dtype)
    layer(x)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            y = y[0] if isinstance(y, (tuple, list)) else y
            loss = tf.reduce_sum(y)  # in y's dtype (accumulated in float32): no full-size cast in the timing
        return tape.gradient(loss, [x, *layer.trainable_weights])

    times = []
    for i in range(repeats + 2):  # two warm-up calls: tracing, oneDNN primitive creation
        start = time.perf_counter()
        [g.numpy() for g in step(x) if g is not None]
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 1000 * median(times)


def layer_table(size: int, batch: int, base: int, repeats: int) -> List[Dict[str, Any]]:
    rows = []
    for name, make, shape in layer_cases(size, batch, base):
        f32 = layer_milliseconds(make, shape, "float32", repeats)
        bf16 = layer_milliseconds(make, shape, "mixed_bfloat16", repeats)
        rows.append({"layer (forward+backward)": name, "float32_ms": rounded(f32), "bfloat16_ms": rounded(bf16),
                     "bf16_speedup": round(f32 / bf16, 2)})
        print(f"  measured {name}", file=sys.stderr, flush=True)
    return rows


def op_census(model_name: str, size: int, batch: int, base: int, depth: int) -> Dict[str, Any]:
    """Where float32 survives in one training step (forward, loss, backward) under mixed_bfloat16,
    with :class:`tfseg.layers.BatchNorm` (``batch_norm="bfloat16"``, the layer made for this policy).

    Counts the ops of the step's graph whose output is a float32 or bfloat16 feature map
    (rank 4, at least the bottleneck's size), grouped by the Keras layer class they belong
    to (``loss, gradient sums`` for what is outside any layer), plus the Cast ops.

    Returns:
        ``{"model", "feature_map_ops": {layer class: {dtype: count}}, "casts": n}``.
    """
    import numpy as np
    import tensorflow as tf

    from tfseg.losses import get_loss
    from tfseg.models import build_model
    from tfseg.precision import precision_policy

    with precision_policy("mixed_bfloat16"):
        model = build_model(model_name, size, 1, base_filters=base, depth=depth, batch_norm="bfloat16")
    layer_class = {layer.name: type(layer).__name__ for layer in model.layers}
    loss_fn = get_loss("bce_dice")
    x = tf.constant(np.zeros((batch, size, size, 3), np.float32))
    y = tf.constant(np.zeros((batch, size, size, 1), np.float32))

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_weights)

    counts: Dict[str, Dict[str, int]] = {}
    casts = 0
    smallest = size // 2**depth
    for op in _all_ops(step.get_concrete_function(x, y).graph):
        casts += op.type == "Cast"
        if not op.outputs or op.type in ("Const", "Placeholder", "Identity", "Cast", "Reshape", "Shape"):
            continue
        out = op.outputs[0]
        if out.dtype.name not in ("float32", "bfloat16") or out.shape.rank != 4 or (out.shape[1] or 0) < smallest:
            continue
        owner = next((layer_class[name] for name in _scope_names(op.name) if name in layer_class),
                     "loss, gradient sums")
        per_dtype = counts.setdefault(owner, {})
        per_dtype[out.dtype.name] = per_dtype.get(out.dtype.name, 0) + 1
    return {"model": f"{model_name} {size}px base_filters={base} depth={depth}",
            "feature_map_ops": dict(sorted(counts.items())), "casts": casts}


def _scope_names(op_name: str):
    """Candidate layer names in an op's name scope (TensorFlow appends ``_1`` to a reused scope)."""
    for part in op_name.split("/"):
        yield part
        stem, _, suffix = part.rpartition("_")
        if suffix.isdigit():
            yield stem


def _all_ops(graph):
    """Ops of ``graph`` and of the functions it calls (gradients live in nested function graphs)."""
    yield from graph.get_operations()
    for function in getattr(graph, "_functions", {}).values():
        inner = getattr(function, "graph", None)
        if inner is not None:
            yield from _all_ops(inner)


# --------------------------------------------------------------------------- report
def measure(args) -> Dict[str, Any]:
    report: Dict[str, Any] = {
        "command": command_line(), "machine": machine_info(),
        "settings": {k: getattr(args, k) for k in ("batch_size", "base_filters", "depth", "budget", "speed_budget",
                                                    "float16_budget", "dice_sizes", "dice_for", "seeds", "samples")},
    }
    started = time.perf_counter()
    rows, data = [], {}
    for row in [] if args.no_grid else grid(args):
        if row["size"] not in data:
            data = {row["size"]: synthetic_arrays(row["size"], args.samples, int_list(args.seeds)[0])}
        rows.append(measure_row(row, data[row["size"]], args))
    add_speedups(rows)
    report["rows"] = rows
    if args.train_runs:
        report["train_runs"] = train_runs(args)
    if args.ops:
        size = min(int_list(args.sizes))
        width = max(int_list(args.base_filters))
        report["layers"] = {"size": size, "batch": args.batch_size, "base_filters": width,
                            "rows": layer_table(size, args.batch_size, width, 1 if args.quick else 7)}
        report["op_census"] = op_census("unet", size, args.batch_size, width, args.depth)
    report["seconds"] = round(time.perf_counter() - started)
    report["load_average_at_end"] = load_average()
    return report


def markdown(report: Dict[str, Any]) -> str:
    s = report["settings"]
    parts = [header(report), "",
             f"Batch {s['batch_size']}, base_filters (width) {s['base_filters']}, depth {s['depth']}. Scored rows "
             f"({s['dice_for']} without XLA at {s['dice_sizes']} px): {s['budget']} (EPOCHSxSTEPS) per seed "
             f"{s['seeds']}; images/s is the median over the seeds, dice the mean on the synthetic val split, "
             f"dice_spread max - min over the seeds. Other rows: {s['speed_budget']} ({s['float16_budget']} for "
             f"mixed_float16), seed "
             f"{s['seeds'].split(',')[0]}. The first epoch (tracing, XLA compilation) is not timed. others_share: "
             f"the share of the CPU that other processes took (0 = quiet machine). Total {report['seconds']} s.",
             "", markdown_table(report["rows"], ROW_COLUMNS) if report["rows"] else "(no grid)"]
    if "train_runs" in report:
        runs = report["train_runs"]
        parts += ["", f"Complete `tfseg train` runs with these settings ({runs['settings']}), the other defaults, "
                      "one per --precision and --seed; Dice and IoU on the test split, train_images_per_second from metrics.json:",
                  "", markdown_table(runs["runs"], ["precision", "seed", "epochs_completed", "best_epoch", "val_dice",
                                                    "test_dice", "test_iou", "train_images_per_second", "seconds",
                                                    "others_share"])]
    if "layers" in report:
        layers = report["layers"]
        parts += ["", f"Per layer, batch {layers['batch']}, U-Net shapes at {layers['size']} px, base_filters "
                      f"{layers.get('base_filters')} "
                      "(median of forward + backward):", "",
                  markdown_table(layers["rows"], list(layers["rows"][0]))]
        census = report["op_census"]
        rows = [{"layer class": owner, "float32 ops": n.get("float32", 0), "bfloat16 ops": n.get("bfloat16", 0)}
                for owner, n in census["feature_map_ops"].items()]
        parts += ["", f"Ops on feature maps in one mixed_bfloat16 training step ({census['model']}; "
                      f"{census['casts']} Cast ops in all):", "", markdown_table(rows, list(rows[0]))]
    return "\n".join(parts)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_benchmark(parse_args, measure, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
