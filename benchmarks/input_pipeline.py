"""Input pipeline speed on PH2-sized files: tfseg's tf.data vs the lesson's loader vs the model.

Writes ``--count`` synthetic samples in the PH2 layout (768x560 24-bit BMP images, 8-bit
0/255 BMP masks, so ``ph2:PATH`` reads them) to a temporary folder, then measures on
those same files, in one process, one after the other:

1. the lesson's loader: ``os.walk``, scikit-image ``imread``
   of every file, ``resize(image, (256, 256), mode="constant", anti_aliasing=True)`` and
   ``resize(mask, ..., anti_aliasing=False) > 0.5`` in a Python loop;
2. ``open_source("ph2:PATH")``: tfseg's up-front check of every file (paid once per process);
3. ``load_dataset("ph2:PATH", split="all", image_size=256, batch_size=16, augment=False,
   cache="none")``: one full pass = decode + resize speed (median of ``--repeats`` passes);
4. the same with ``cache="memory"``: the first epoch (decodes and fills the cache) and the
   second (from memory);
5. the training input of ``tfseg train``: the ``train`` split, cached, shuffled, augmented:
   its second epoch;
6. the model's own step rate: U-Net at 256 with ``tfseg train``'s defaults (precision
   ``auto``) fed from in-memory batches, and the same model fed by (5) with
   ``steps_per_epoch`` (both timed by :class:`tfseg.training.Throughput`, first epoch
   excluded). Equal rates mean the pipeline is not the bottleneck, even while its
   threads share the CPU with the model.

``--train-profile`` also runs ``tfseg train --epochs N`` with every other default and
reports each epoch's training time and ``metrics.json``'s ``train_images_per_second`` next
to the same model outside ``tfseg train`` (one epoch's steps), fed from memory and fed by
the training input: what the pipeline and what the training loop cost.

The files are read from the OS page cache (just written) by every loader alike.

Usage (from the repository root)::

    python benchmarks/input_pipeline.py --train-profile --out benchmarks/results/input_pipeline.json
    python benchmarks/input_pipeline.py --quick        # a smoke run: seconds

Prints Markdown tables (with this command and the machine above them) and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from machine import (  # noqa: E402
    CpuMeter, command_line, header, load_average, machine_info, markdown_table, median, rounded, run_benchmark,
)

tf.get_logger().setLevel("ERROR")
warnings.filterwarnings("ignore", message=".*shuffle=True.*")  # Keras notes that datasets shuffle themselves


def parse_args(argv=None):
    from tfseg.config import TrainConfig

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="samples written (PH2 has 200)")
    parser.add_argument("--source-size", default="768x560", help="WIDTHxHEIGHT of the written files")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--repeats", type=int, default=3, help="uncached tf.data passes (median)")
    parser.add_argument("--model-steps", type=int, default=10, help="timed training steps per model rate")
    parser.add_argument("--base-filters", type=int, default=defaults.base_filters)
    parser.add_argument("--depth", type=int, default=defaults.depth)
    parser.add_argument("--data-dir", default=None, help="use this PH2-layout folder instead of writing one")
    parser.add_argument("--train-profile", action="store_true", help="also profile `tfseg train --epochs N`")
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny files and model: a smoke run in seconds")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                        help="first wait (up to 30 min) until the 1-minute load average is below LOAD")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.source_size, args.image_size, args.batch_size = 12, "96x70", 32, 4
        args.repeats, args.model_steps, args.base_filters, args.depth = 1, 2, 4, 2
        args.train_profile = False
    return args


# --------------------------------------------------------------------------- the files
def write_ph2_folder(root: Path, count: int, width: int, height: int, seed: int) -> Path:
    """``count`` samples in the PH2 layout under ``root/PH2Dataset``; returns that folder.

    Images: a smooth random skin-like background with a darker elliptical lesion and
    pixel noise (24-bit BMP); masks: the ellipse, 0/255 (8-bit BMP), like PH2's.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = root / "PH2Dataset"
    y, x = np.mgrid[:height, :width].astype(np.float32)
    for i in range(count):
        name = f"IMD{i + 2:03d}"
        case = base / "PH2 Dataset images" / name
        (case / f"{name}_Dermoscopic_Image").mkdir(parents=True)
        (case / f"{name}_lesion").mkdir()
        (case / f"{name}_roi").mkdir()
        coarse = rng.uniform(150, 230, (9, 12, 3)).astype(np.uint8)
        skin = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
        cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
        ry, rx = rng.uniform(0.1, 0.35) * height, rng.uniform(0.1, 0.35) * width
        lesion = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1.0
        image = skin * np.where(lesion, rng.uniform(0.3, 0.6), 1.0)[..., None] + rng.normal(0, 6, skin.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            case / f"{name}_Dermoscopic_Image" / f"{name}.bmp")
        Image.fromarray((lesion * 255).astype(np.uint8)).save(case / f"{name}_lesion" / f"{name}_lesion.bmp")
    return base


# --------------------------------------------------------------------------- the loaders
def lesson_loader(root: Path, size: int):
    """The lesson's in-memory loader, as written there: ``(images [N,s,s,3] float64, masks [N,s,s,1] bool)``."""
    from skimage.io import imread
    from skimage.transform import resize

    images, masks = [], []
    for folder, _, files in sorted(os.walk(root / "PH2 Dataset images")):
        if folder.endswith("_Dermoscopic_Image"):
            images.append(imread(os.path.join(folder, files[0])))
        if folder.endswith("_lesion"):
            masks.append(imread(os.path.join(folder, files[0])))
    images = np.array([resize(image, (size, size), mode="constant", anti_aliasing=True) for image in images])
    masks = np.expand_dims(
        np.array([resize(mask, (size, size), mode="constant", anti_aliasing=False) > 0.5 for mask in masks]), 3)
    return images, masks


def timed(function, *args, **kwargs):
    """``(result, seconds, others_share)``: wall time, and the share of the CPU other processes took meanwhile."""
    with CpuMeter() as meter:
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds = time.perf_counter() - start
    return result, seconds, meter.result()["others_share"]


def images_in(dataset) -> int:
    """Iterate ``dataset`` once (pulling every batch to the host); return the number of images."""
    return sum(int(images.shape[0]) for images, _ in dataset)


def rate_row(what: str, images: int, seconds: float, others_share: float) -> Dict[str, Any]:
    return {"loader": what, "images": images, "seconds": round(seconds, 2),
            "images_per_second": rounded(images / seconds), "others_share": others_share}


def pipeline_rows(source_text: str, args) -> List[Dict[str, Any]]:
    """Items 2-5 of the module docstring."""
    from tfseg.data import load_dataset, open_source

    common = dict(image_size=args.image_size, batch_size=args.batch_size, seed=args.seed)
    rows = []
    source, seconds, others = timed(open_source, source_text)
    count = len(source.ids())
    rows.append(rate_row("tfseg open_source (checks every file once per process)", count, seconds, others))

    passes = []
    for _ in range(args.repeats):
        ds = load_dataset(source_text, split="all", augment=False, shuffle=False, cache="none", **common)
        passes.append(timed(images_in, ds)[1:])
    seconds, others = sorted(passes)[len(passes) // 2]
    rows.append(rate_row(f"tfseg load_dataset, no cache: decode + resize (median of {args.repeats})", count,
                         seconds, others))

    ds = load_dataset(source_text, split="all", augment=False, shuffle=False, cache="memory", **common)
    rows.append(rate_row("tfseg load_dataset, cache: epoch 1 (decode + fill the cache)", count,
                         *timed(images_in, ds)[1:]))
    rows.append(rate_row("tfseg load_dataset, cache: epoch 2 (from memory)", count, *timed(images_in, ds)[1:]))

    train = load_dataset(source_text, split="train", augment=True, cache="memory", **common)
    train_count = images_in(train)
    rows.append(rate_row("tfseg training input: train split, cached, shuffled, augmented (epoch 2)", train_count,
                         *timed(images_in, train)[1:]))
    return rows


# --------------------------------------------------------------------------- the model
def model_rate(config, dataset, steps: int):
    """``(images/s, others_share)`` of training ``config``'s model on ``dataset`` (repeated).

    Two epochs of ``steps`` steps; :class:`tfseg.training.Throughput` times the second.
    """
    from tfseg.precision import precision_policy
    from tfseg.training import Throughput, build_compiled_model, training_phases

    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    with precision_policy(config.precision), CpuMeter() as meter:
        model = build_compiled_model(config, 1, training_phases(config)[0])
        throughput = Throughput(config.batch_size)
        model.fit(dataset, epochs=2, steps_per_epoch=steps, callbacks=[throughput], verbose=0)
    return throughput.images_per_second(), meter.result()["others_share"]


def in_memory(dataset, batch_size: int):
    """The batches of one pass of ``dataset`` held in memory, repeated: feeding costs next to nothing."""
    images, masks = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    ds = tf.data.Dataset.from_tensor_slices((np.concatenate(images), np.concatenate(masks)))
    return ds.repeat().batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def model_rows(source_text: str, args) -> List[Dict[str, Any]]:
    """Item 6 of the module docstring: the model fed from memory, and fed by the training input."""
    from tfseg.config import TrainConfig
    from tfseg.data import load_dataset
    from tfseg.precision import resolve_precision

    config = TrainConfig(data=source_text, image_size=args.image_size, batch_size=args.batch_size,
                         base_filters=args.base_filters, depth=args.depth, seed=args.seed)
    common = dict(image_size=args.image_size, batch_size=args.batch_size, seed=args.seed)
    plain = load_dataset(source_text, split="train", augment=False, shuffle=False, cache="memory", **common)
    fed = load_dataset(source_text, split="train", augment=True, cache="memory", repeat=True, **common)
    what = (f"U-Net {args.image_size} px training, base_filters {args.base_filters}, depth {args.depth}, "
            f"precision {resolve_precision(config.precision)}")
    memory_rate, memory_others = model_rate(config, in_memory(plain, args.batch_size), args.model_steps)
    pipeline_rate, pipeline_others = model_rate(config, fed, args.model_steps)
    images = args.model_steps * args.batch_size
    return [
        rate_row(f"{what}: fed from memory", images, images / memory_rate, memory_others),
        rate_row(f"{what}: fed by the training input above", images, images / pipeline_rate, pipeline_others),
    ]


def train_profile(args) -> Dict[str, Any]:
    """``tfseg train --epochs N`` with every other default; per-epoch training time and images/s."""
    from tfseg.config import TrainConfig
    from tfseg.data import load_dataset
    import tfseg.training as training

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: List[Dict[str, float]] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = self._last = time.perf_counter()
            self._steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self._steps += 1
            self._last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append({"epoch": epoch + 1, "train_seconds": round(self._last - self._start, 1),
                                "steps": self._steps,
                                "validation_seconds": round(time.perf_counter() - self._last, 1)})

    timer = EpochTimer()
    from tfseg.training import fit

    original = fit.make_callbacks

    def with_timer(*a, **k):
        return [timer, *original(*a, **k)]

    with tempfile.TemporaryDirectory() as run_dir:
        config = TrainConfig(epochs=args.train_epochs, out=os.path.join(run_dir, "run"))
        fit.make_callbacks = with_timer  # the benchmark's instrument: one more callback, nothing else
        try:
            metrics, seconds, others = timed(training.train, config, verbose=0)
        finally:
            fit.make_callbacks = original
    train_images = metrics["split_sizes"]["train"]
    for epoch in timer.epochs:
        epoch["images_per_second"] = rounded(train_images / epoch["train_seconds"])
    # The same model and steps per epoch outside `tfseg train`: from memory, then fed by the training input.
    common = dict(split="train", image_size=config.image_size, batch_size=config.batch_size, seed=config.seed)
    plain = load_dataset(config.data, augment=False, shuffle=False, cache="memory", **common)
    fed = load_dataset(config.data, augment=True, cache="memory", repeat=True, **common)
    steps = max(1, train_images // config.batch_size)
    memory_rate, memory_others = model_rate(config, in_memory(plain, config.batch_size), steps)
    fed_rate, fed_others = model_rate(config, fed, steps)
    return {
        "command": f"tfseg train --epochs {args.train_epochs} (every other setting default: {config.data}, "
                   f"{config.image_size} px, batch {config.batch_size}, {config.model}, base_filters "
                   f"{config.base_filters})",
        "seconds": round(seconds, 1),
        "others_share": max(others, memory_others, fed_others),
        "epochs": timer.epochs,
        "metrics_train_images_per_second": rounded(metrics["train_images_per_second"] or float("nan")),
        "precision": metrics["precision"],
        "model_fed_from_memory_images_per_second": rounded(memory_rate),
        "model_fed_by_training_input_images_per_second": rounded(fed_rate),
        "steps_per_epoch": steps,
        "test_dice": round(metrics["test"]["dice"], 3),
    }


# --------------------------------------------------------------------------- report
def measure(args) -> Dict[str, Any]:
    width, height = (int(v) for v in args.source_size.lower().split("x"))
    report: Dict[str, Any] = {"command": command_line(), "machine": machine_info(), "count": args.count,
                              "source_size": f"{width}x{height}", "image_size": args.image_size,
                              "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as scratch:
        if args.data_dir:
            root = Path(args.data_dir)
        else:
            root, seconds, _ = timed(write_ph2_folder, Path(scratch), args.count, width, height, args.seed)
            report["write_seconds"] = round(seconds, 1)
        source_text = f"ph2:{root}"
        (images, _), seconds, others = timed(lesson_loader, root, args.image_size)
        rows = [rate_row("lesson: skimage imread + resize(anti_aliasing=True) in a Python loop", len(images),
                         seconds, others)]
        rows += pipeline_rows(source_text, args)
        rows += model_rows(source_text, args)
    report["rows"] = rows
    report["ratios"] = ratios(rows)
    if args.train_profile:
        report["train_profile"] = train_profile(args)
    report["load_average_at_end"] = load_average()
    return report


def ratios(rows: List[Dict[str, Any]]) -> Dict[str, float]:
    """The comparisons the issue asks for, from the rows' images/s (in the rows' order)."""
    rate = [row["images_per_second"] for row in rows]
    lesson, check, uncached, _, cached, training_input, model_memory, model_fed = rate
    return {
        "uncached_pipeline_vs_lesson": round(uncached / lesson, 2),
        "check_plus_uncached_pipeline_vs_lesson": round((1 / (1 / check + 1 / uncached)) / lesson, 2),
        "cached_epoch_vs_lesson": round(cached / lesson, 2),
        "training_input_vs_model": round(training_input / model_memory, 2),
        "uncached_pipeline_vs_model": round(uncached / model_memory, 2),
        "model_fed_by_pipeline_vs_from_memory": round(model_fed / model_memory, 2),
    }


def markdown(report: Dict[str, Any]) -> str:
    rows = [{"#": i + 1, **row} for i, row in enumerate(report["rows"])]
    parts = [header(report), "",
             f"{report['count']} PH2-layout samples, {report['source_size']} BMP -> {report['image_size']}x"
             f"{report['image_size']}, batch {report['batch_size']}.", "",
             markdown_table(rows, ["#", "loader", "images", "seconds", "images_per_second", "others_share"]), "",
             "others_share: the share of the CPU that other processes took during the row (0 = quiet machine).", "",
             "Ratios: " + ", ".join(f"{k} {v}" for k, v in report["ratios"].items())]
    profile = report.get("train_profile")
    if profile:
        parts += ["", f"`{profile['command']}`: {profile['seconds']} s in all; metrics.json "
                      f"train_images_per_second {profile['metrics_train_images_per_second']} "
                      f"(precision {profile['precision']}); the same model, {profile['steps_per_epoch']} steps "
                      f"per epoch, fed from memory: {profile['model_fed_from_memory_images_per_second']} images/s, "
                      f"fed by the training input: {profile['model_fed_by_training_input_images_per_second']} "
                      f"images/s; test Dice {profile['test_dice']}; others_share {profile['others_share']}.", "",
                  markdown_table(profile["epochs"], list(profile["epochs"][0]))]
    return "\n".join(parts)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_benchmark(parse_args, measure, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
