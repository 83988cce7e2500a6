"""Touching objects: ``tfseg train`` with and without ``--border-weight 10,5`` (the U-Net paper's map), same budget.

A folder data set written by this script (``folder:`` source, binary PNG masks) of "cells": bright
textured discs on a dark noisy background, most of them in pairs that nearly touch across a
1-2 pixel gap, the image blurred (Gaussian, sigma 1.2 px) so that the gap shows only as a faint
darker line. For each loss of ``--losses``, two runs with the same model, seed, epochs and steps:
without and with ``--border-weight``. Each run's model predicts its test split through the one path
of ``tfseg predict`` (:mod:`tfseg.inference`) and is scored on

* ``dice``: the foreground Dice over all test pixels;
* ``gap_recall``: the share of the gap pixels (background pixels with ``d1 + d2 <= 4`` px, the
  distances to the two nearest objects) predicted as background, i.e. gaps kept open;
* ``count_exact``: the share of test images whose predicted mask has as many connected
  components as the true mask (touching objects merged or specks added lower it);
* ``count_error``: the mean absolute difference of those counts per image.

With ``--map-cost``, instead: the time :func:`tfseg.data.borders.border_weight_map` takes per mask
(what every training sample costs per epoch), for mask sides and object counts of ``--map-sides`` and
``--map-objects`` (discs in a grid, each at 2 px from its neighbours; median of 5 calls).

Usage:
    python benchmarks/border_weights.py --out benchmarks/cpu_results/border_weights.json
    python benchmarks/border_weights.py --map-cost --out benchmarks/cpu_results/border_weight_map_cost.json

Prints a Markdown table (with the command and machine in its header) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import machine  # noqa: E402

import numpy as np  # noqa: E402

GAP_DISTANCE = 4.0  # a background pixel with d1 + d2 at most this (pixels) lies in a gap between two objects


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=160, help="images in the folder (70/15/15 split)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (also --image-size)")
    parser.add_argument("--losses", default="bce,bce_dice", help="comma-separated --loss names")
    parser.add_argument("--border-weight", default="10,5", help="W0,SIGMA of the weighted runs")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--map-cost", action="store_true", help="time the weight map per mask instead of training")
    parser.add_argument("--map-sides", default="64,256,512", help="with --map-cost: mask sides")
    parser.add_argument("--map-objects", default="2,16,64", help="with --map-cost: objects per mask")
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the script works")
    parser.add_argument("--work", default=None, help="folder for the data and run folders (default: temporary)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.size, args.epochs, args.losses, args.depth = 24, 32, 1, "bce", 2
    return args


def _disc(yy, xx, cy, cx, r):
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def write_cells_folder(root: str, count: int, size: int, seed: int = 0) -> str:
    """``root/images/c*.png`` and ``root/masks/c*.png`` (0/255); returns the ``folder:`` SOURCE."""
    from PIL import Image
    from scipy import ndimage

    from tfseg.data.borders import objects

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        while True:
            mask = np.zeros((size, size), bool)
            wanted = 0
            for _ in range(int(rng.integers(1, 3))):  # pairs across a 2 px gap
                r1, r2 = rng.uniform(size * 0.07, size * 0.12, 2)
                cy, cx = rng.uniform(r1 + 1, size - r1 - 1, 2)
                angle = rng.uniform(0, 2 * np.pi)
                d = r1 + r2 + 1.5
                y2, x2 = cy + d * np.sin(angle), cx + d * np.cos(angle)
                if not (r2 < y2 < size - r2 and r2 < x2 < size - r2):
                    y2, x2 = 2 * cy - y2, 2 * cx - x2  # the other side keeps the pair inside the image
                mask |= _disc(yy, xx, cy, cx, r1) | _disc(yy, xx, y2, x2, r2)
                wanted += 2
            if rng.random() < 0.5:  # a single cell
                r = rng.uniform(size * 0.07, size * 0.12)
                mask |= _disc(yy, xx, *rng.uniform(r, size - r, 2), r)
                wanted += 1
            if objects(mask.astype(np.float32))[1] == wanted:  # every pair separated, nothing overlapping
                break
        texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 2) * 0.15
        image = 0.15 + mask * (0.65 + texture) + rng.normal(0, 0.06, (size, size))
        image = ndimage.gaussian_filter(image, 1.2)
        rgb = np.stack([image, image * 0.9, image * 1.05], -1)
        Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(os.path.join(root, "images", f"c{i:04d}.png"))
        Image.fromarray((mask * 255).astype(np.uint8)).save(os.path.join(root, "masks", f"c{i:04d}.png"))
    return f"folder:{root}"


def gap_pixels(mask: np.ndarray) -> np.ndarray:
    """Background pixels with ``d1 + d2 <= GAP_DISTANCE`` (the distances to the two nearest objects)."""
    from scipy import ndimage

    from tfseg.data.borders import objects

    labels, count = objects(mask)
    if count < 2:
        return np.zeros(mask.shape, bool)
    distances = np.sort(np.stack([ndimage.distance_transform_edt(labels != k) for k in range(1, count + 1)]), 0)
    return (mask <= 0.5) & (distances[0] + distances[1] <= GAP_DISTANCE)


def score_run(run_dir: str, image_folder: str, mask_folder: str) -> dict:
    from PIL import Image

    from tfseg.data.borders import objects
    from tfseg.inference import load_predictor, predict_images

    test_ids = json.load(open(os.path.join(run_dir, "splits.json")))["test"]
    paths = [os.path.join(image_folder, f"{i}.png") for i in test_ids]
    tp = fp = fn = gaps = gaps_open = exact = 0
    errors = []
    for path, _, predicted in predict_images(load_predictor(run_dir), paths):
        truth = np.asarray(Image.open(os.path.join(mask_folder, os.path.basename(path)))) > 127
        predicted = np.asarray(predicted) > 0
        tp += int((truth & predicted).sum())
        fp += int((~truth & predicted).sum())
        fn += int((truth & ~predicted).sum())
        gap = gap_pixels(truth.astype(np.float32))
        gaps += int(gap.sum())
        gaps_open += int((gap & ~predicted).sum())
        counts = objects(truth.astype(np.float32))[1], objects(predicted.astype(np.float32))[1]
        exact += counts[0] == counts[1]
        errors.append(abs(counts[0] - counts[1]))
    return {"dice": 2 * tp / max(2 * tp + fp + fn, 1), "gap_recall": gaps_open / max(gaps, 1),
            "count_exact": exact / max(len(paths), 1), "count_error": float(np.mean(errors)),
            "test_images": len(paths)}


def grid_of_discs(side: int, count: int) -> np.ndarray:
    """A ``side x side`` {0, 1} mask of ``count`` discs on a grid, 2 px apart."""
    per_row = int(np.ceil(np.sqrt(count)))
    cell = side / per_row
    radius = cell / 2 - 1
    yy, xx = np.mgrid[0:side, 0:side]
    mask = np.zeros((side, side), np.float32)
    for k in range(count):
        cy, cx = (k // per_row + 0.5) * cell, (k % per_row + 0.5) * cell
        mask[_disc(yy, xx, cy, cx, radius)] = 1
    return mask


def measure_map_cost(args) -> dict:
    import time

    from tfseg.data.borders import border_weight_map, objects, parse_border_weight

    w0, sigma = parse_border_weight(args.border_weight)
    report = {"command": machine.command_line(), "machine": machine.machine_info(), "settings": {
        k: getattr(args, k) for k in ("map_sides", "map_objects", "border_weight")}, "rows": []}
    for side in (int(v) for v in args.map_sides.split(",")):
        for count in (int(v) for v in args.map_objects.split(",")):
            mask = grid_of_discs(side, count)
            seconds = []
            for _ in range(5):
                start = time.perf_counter()
                border_weight_map(mask, w0, sigma)
                seconds.append(time.perf_counter() - start)
            report["rows"].append({"side": side, "objects": objects(mask)[1],
                                   "ms_per_mask": machine.rounded(1000 * machine.median(seconds))})
    report["load_average_at_end"] = machine.load_average()
    return report


def measure(args) -> dict:
    if args.map_cost:
        return measure_map_cost(args)
    from tfseg.config import TrainConfig
    from tfseg.training import train

    report = {"command": machine.command_line(), "machine": machine.machine_info(), "settings": {
        k: getattr(args, k) for k in ("samples", "size", "losses", "border_weight", "epochs", "batch_size",
                                      "base_filters", "depth", "seed")}, "rows": []}
    work = args.work or tempfile.mkdtemp(prefix="tfseg-border-weights-")
    root = os.path.join(work, "data")
    data = write_cells_folder(root, args.samples, args.size, args.seed)
    for loss in args.losses.split(","):
        for border in (None, args.border_weight):
            run_dir = os.path.join(work, f"{loss}-{'border' if border else 'none'}")
            config = TrainConfig(data=data, loss=loss, border_weight=border, image_size=args.size,
                                 base_filters=args.base_filters, depth=args.depth, epochs=args.epochs,
                                 batch_size=args.batch_size, seed=args.seed, precision="float32", out=run_dir)
            metrics = train(config, verbose=0)
            scores = score_run(run_dir, os.path.join(root, "images"), os.path.join(root, "masks"))
            row = {"loss": loss, "border_weight": border or "none",
                   **{k: machine.rounded(v) if isinstance(v, float) else v for k, v in scores.items()},
                   "train_seconds": machine.rounded(metrics["seconds"])}
            report["rows"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    report["load_average_at_end"] = machine.load_average()
    return report


def markdown(report: dict) -> str:
    if "map_sides" in report["settings"]:
        return "\n\n".join([machine.header(report), "border_weight_map per mask (median of 5 calls)",
                             machine.markdown_table(report["rows"], ["side", "objects", "ms_per_mask"])])
    columns = ["loss", "border_weight", "dice", "gap_recall", "count_exact", "count_error", "test_images",
               "train_seconds"]
    return "\n\n".join([
        machine.header(report),
        f"test split (15%) of a folder of {report['settings']['samples']} images of nearly touching cells; settings "
        f"{report['settings']}",
        machine.markdown_table(report["rows"], columns),
    ])


def main(argv=None):
    args = parse_args(argv)
    return machine.run_benchmark(lambda _=None: args, measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
