"""The built-in synthetic data: how fast it is made, and how hard it is.

1. Speed: the shipped generator (:mod:`tfseg.data.synthetic`) draws each sample
   in TensorFlow ops inside ``Dataset.map(num_parallel_calls=AUTOTUNE)``; this
   times it against a numpy port of the same drawing steps (same layers and
   array sizes; its random numbers differ) fed through ``Dataset.from_generator``,
   as a numpy generator would be. Either runs once per training run (the
   pipeline caches the result): this is the cost of the first epoch.
2. Difficulty: the Dice of the best single darkness threshold, chosen with the
   ground truth over the whole set (an oracle no real method has), and of the
   best threshold chosen per image (a stronger oracle).

    python benchmarks/synthetic_generation.py --out benchmarks/results/synthetic_generation.json
    python benchmarks/synthetic_generation.py --quick        # a smoke run: seconds
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from machine import command_line, header, load_average, machine_info, markdown_table, rounded, wait_until_quiet, write_json  # noqa: E402
from tfseg.data import open_source  # noqa: E402


def _smooth(rng, grid, size):
    # Bilinear upsampling of a grid x grid normal field as two small matrix products.
    weights = _upsampling_matrix(grid, size)
    return weights @ rng.normal(size=(grid, grid)) @ weights.T


@functools.lru_cache(maxsize=None)
def _upsampling_matrix(grid, size):
    return np.stack([np.interp(np.linspace(0, grid - 1, size), np.arange(grid), row) for row in np.eye(grid)], axis=1)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / max(e1 - e0, 1e-6), 0, 1)
    return t * t * (3 - 2 * t)


def numpy_sample(seed, index, size):
    """The numpy port: skin, lesion, structure, freckles, hairs, optics, bubbles, noise."""
    rng = np.random.default_rng((seed, index))
    axis = (np.arange(size) + 0.5) / size * 2 - 1
    v, u = np.meshgrid(axis, axis, indexing="ij")
    base = np.array([0.96, 0.8, 0.72]) * (1 - rng.uniform()) + np.array([0.7, 0.49, 0.37]) * rng.uniform()
    skin = base * (1 + _smooth(rng, 6, size) * 0.04 + _smooth(rng, max(size // 6, 8), size) * 0.02)[..., None]
    skin += np.maximum(_smooth(rng, 5, size), 0)[..., None] * 0.03 * np.array([0.3, -0.5, -0.4])
    centre, radius, aspect, angle = rng.normal(0, 0.18, 2), rng.uniform(0.15, 0.65), rng.uniform(0.65, 1), rng.uniform(0, np.pi)
    du, dv = u - centre[0], v - centre[1]
    along, across = du * np.cos(angle) + dv * np.sin(angle), (-du * np.sin(angle) + dv * np.cos(angle)) / aspect
    theta = np.arctan2(across, along)
    k = np.arange(2, 8)
    wobble = (rng.normal(size=6) * 0.1 / k * np.cos(k * theta[..., None] + rng.uniform(0, 6.3, 6))).sum(-1)
    rho = np.hypot(along, across) / (radius * np.maximum(1 + wobble, 0.3)) + _smooth(rng, 7, size) * 0.06
    colour = base * np.array([0.55, 0.45, 0.4])
    lesion = colour * (1 + _smooth(rng, 12, size) * 0.2 - np.maximum(1 - rho, 0) * 0.3)[..., None]
    a = (u + _smooth(rng, 8, size)) * 30
    b = (v + _smooth(rng, 8, size)) * 30
    network = 0.3 * (1 - _smoothstep(0, 0.3, np.abs(np.sin(a) * np.sin(b))))
    lesion *= (1 - network)[..., None]
    alpha = (rho < 1) * 0.7 * (0.6 + 0.4 * _smoothstep(0, 0.2, 1 - rho))
    image = skin * (1 - alpha[..., None]) + lesion * alpha[..., None]
    freckles = rng.uniform(-0.95, 0.95, (6, 2))
    rel = np.hypot(u[None] - freckles[:, 0, None, None], v[None] - freckles[:, 1, None, None]) / 0.02
    image *= 1 - 0.2 * (1 - _smoothstep(0.6, 1, rel)).max(0)[..., None]
    pixel = 2 / size
    through = rng.uniform(-1, 1, (10, 2))
    direction, bend = rng.uniform(0, 6.3, 10), rng.uniform(1.2, 6, 10)
    cx, cy = through[:, 0] - bend * np.sin(direction), through[:, 1] + bend * np.cos(direction)
    off = np.abs(np.hypot(u[None] - cx[:, None, None], v[None] - cy[:, None, None]) - bend[:, None, None])
    near = 1 - _smoothstep(0.5, 0.55, np.hypot(u[None] - through[:, 0, None, None], v[None] - through[:, 1, None, None]))
    hairs = (np.clip(np.minimum((0.008 + 0.5 * pixel - off) / pixel, 0.016 / pixel), 0, 1) * near).max(0)
    image = image * (1 - hairs[..., None] * 0.8) + 0.1 * hairs[..., None] * 0.8
    r = np.hypot(u, v)
    image *= (1 - 0.5 * _smoothstep(0.8, 1.3, r))[..., None]
    bubbles = rng.uniform(-0.95, 0.95, (3, 2))
    rel = np.hypot(u[None] - bubbles[:, 0, None, None], v[None] - bubbles[:, 1, None, None]) / 0.1
    image += 0.3 * np.exp(-(((rel - 1) / 0.06) ** 2)).max(0)[..., None]
    image += rng.normal(0, 0.01, image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), ((rho < 1) & (r < 1.2)).astype(np.uint8)[..., None]


def darkness_threshold_dice(count, size):
    """``(pooled Dice of the best global threshold, that threshold, mean Dice of the best per-image thresholds)``.

    Darkness is ``1 - mean(R, G, B)``; a pixel is called lesion when darker than the threshold.
    """
    source = open_source(f"synthetic:{count}", image_size=size)
    samples = list(source.examples(source.ids()).as_numpy_iterator())
    darkness = 1.0 - np.stack([s["image"] for s in samples]).mean(-1) / 255.0
    masks = np.stack([s["mask"][..., 0] for s in samples]).astype(bool)
    thresholds = np.linspace(0, 1, 101)
    pooled = []
    per_image = np.zeros((len(samples), len(thresholds)))
    for k, threshold in enumerate(thresholds):
        predicted = darkness > threshold
        overlap = (predicted & masks).sum(axis=(1, 2))
        sizes = predicted.sum(axis=(1, 2)) + masks.sum(axis=(1, 2))
        pooled.append(2 * overlap.sum() / sizes.sum())
        per_image[:, k] = 2 * overlap / np.maximum(sizes, 1)
    best = int(np.argmax(pooled))
    return pooled[best], thresholds[best], per_image.max(axis=1).mean()


def _time(ds):
    start, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in ds)
    return count / (time.perf_counter() - start), (time.process_time() - cpu) / count * 1000


def speed_rows(count, sizes):
    rows = []
    for size in sizes:
        source = open_source(f"synthetic:{count}", image_size=size)
        next(iter(source.examples(source.ids()[:1])))  # trace once, as a training run does
        numpy = tf.data.Dataset.from_generator(
            lambda: (numpy_sample(0, i, size) for i in range(count)),
            output_signature=(tf.TensorSpec([size, size, 3], tf.uint8), tf.TensorSpec([size, size, 1], tf.uint8)),
        )
        for name, ds in (("tf graph ops, map(AUTOTUNE)", source.examples(source.ids())), ("numpy, from_generator", numpy)):
            rate, cpu_ms = _time(ds)
            rows.append({"size": size, "generator": name, "images_per_second": rounded(rate), "cpu_ms_per_image": rounded(cpu_ms)})
    return rows


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200, help="samples timed per size and generator")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--baseline-count", type=int, default=1000, help="samples for the darkness-threshold oracle")
    parser.add_argument("--baseline-size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds (the numbers mean nothing)")
    parser.add_argument("--wait-quiet", type=float, default=None, help="first wait until the load average is below this")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.sizes, args.baseline_count, args.baseline_size = 4, [32], 8, 32
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.wait_quiet is not None:
        wait_until_quiet(args.wait_quiet, 1800, log=lambda m: print(m, file=sys.stderr, flush=True))
    report = {"command": command_line(), "machine": machine_info(), "count": args.count}
    dice, threshold, per_image = darkness_threshold_dice(args.baseline_count, args.baseline_size)
    report["difficulty"] = {
        "count": args.baseline_count,
        "image_size": args.baseline_size,
        "best_global_threshold": round(float(threshold), 2),
        "best_global_threshold_pooled_dice": rounded(dice),
        "best_per_image_threshold_mean_dice": rounded(per_image),
    }
    report["rows"] = speed_rows(args.count, args.sizes)
    report["load_average_at_end"] = load_average()
    d = report["difficulty"]
    print(header(report))
    print(f"\nDifficulty on synthetic:{d['count']} at {d['image_size']} px (oracles chosen with the ground truth):")
    print(f"best global darkness threshold ({d['best_global_threshold']}): pooled Dice {d['best_global_threshold_pooled_dice']}; "
          f"best threshold per image: mean Dice {d['best_per_image_threshold_mean_dice']}\n")
    print(markdown_table(report["rows"], ["size", "generator", "images_per_second", "cpu_ms_per_image"]))
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
