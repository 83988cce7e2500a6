"""Imbalance: a rare, small class trained with and without ``--class-weights auto``, same budget.

A folder data set written by this script (``folder:`` source, class-id PNG masks, 3 classes)::

    class 0  background: noisy grey, ~90% of the pixels
    class 1  one large dark ellipse in most images (~10% of the pixels)
    class 2  two to four small bright 2-4 px squares in half the images (~0.3% of the pixels)

For each loss of ``--losses``, two ``tfseg train`` runs with the same model, seed, epochs and
steps: without class weights, and with ``--class-weights auto`` (median-frequency balancing
measured on the training split, :mod:`tfseg.balance`). Each run's model is scored by
``tfseg.evaluation.evaluate`` on its test split (whole images through the one path of
``tfseg predict``): the Dice of each class over all test pixels, and their mean.

Usage:
    python benchmarks/class_weights.py --out benchmarks/cpu_results/class_weights.json

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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=240, help="images in the folder (70/15/15 split)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (also --image-size)")
    parser.add_argument("--losses", default="cce,cce_dice", help="comma-separated --loss names")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the script works")
    parser.add_argument("--work", default=None, help="folder for the data and run folders (default: temporary)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.size, args.epochs, args.losses, args.depth = 24, 32, 1, "cce", 2
    return args


def write_rare_class_folder(root: str, count: int, size: int, seed: int = 0) -> str:
    """``root/images/r*.png`` and ``root/masks/r*.png`` (class ids 0, 1, 2); returns the ``folder:`` SOURCE."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        image = np.full((size, size, 3), 150.0) + rng.normal(0, 18, (size, size, 3))
        mask = np.zeros((size, size), np.uint8)
        if rng.random() < 0.8:  # class 1: a large ellipse
            cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
            ry, rx = rng.uniform(size * 0.1, size * 0.22, 2)
            mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = 1
        if rng.random() < 0.5:  # class 2: a few small squares, anywhere (also on the ellipse)
            for _ in range(rng.integers(2, 5)):
                side = int(rng.integers(2, 5))
                top, left = rng.integers(0, size - side, 2)
                mask[top : top + side, left : left + side] = 2
        image[mask == 1] *= 0.55
        image[mask == 2] = image[mask == 2] * 0.4 + np.array([210.0, 200.0, 90.0]) * 0.6
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(os.path.join(root, "images", f"r{i:04d}.png"))
        Image.fromarray(mask).save(os.path.join(root, "masks", f"r{i:04d}.png"))
    return f"folder:{root}"


def measure(args) -> dict:
    from tfseg.config import TrainConfig
    from tfseg.evaluation import evaluate
    from tfseg.training import train

    report = {"command": machine.command_line(), "machine": machine.machine_info(), "settings": {
        k: getattr(args, k) for k in ("samples", "size", "losses", "epochs", "batch_size", "base_filters", "depth",
                                      "seed")}, "rows": []}
    work = args.work or tempfile.mkdtemp(prefix="tfseg-class-weights-")
    data = write_rare_class_folder(os.path.join(work, "data"), args.samples, args.size, args.seed)
    for loss in args.losses.split(","):
        for weights in (None, "auto"):
            run_dir = os.path.join(work, f"{loss}-{weights or 'none'}")
            config = TrainConfig(data=data, num_classes=3, loss=loss, class_weights=weights, image_size=args.size,
                                 base_filters=args.base_filters, depth=args.depth, epochs=args.epochs,
                                 batch_size=args.batch_size, seed=args.seed, precision="float32", out=run_dir)
            metrics = train(config, verbose=0)
            result = evaluate(run_dir, split="test")
            dice = {row["class"]: row["dice"] for row in result["per_class"]["classes"]}
            stored = os.path.join(run_dir, "class_weights.json")
            used = json.load(open(stored))["weights"] if os.path.exists(stored) else None
            row = {"loss": loss, "class_weights": weights or "none", "weights_used": used,
                   **{f"dice_class_{c}": None if dice.get(c) is None else machine.rounded(dice[c]) for c in range(3)},
                   "mean_dice": machine.rounded(result["per_class"]["mean_dice"]),
                   "train_seconds": machine.rounded(metrics["seconds"])}
            report["rows"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    report["load_average_at_end"] = machine.load_average()
    return report


def markdown(report: dict) -> str:
    columns = ["loss", "class_weights", "weights_used", "dice_class_0", "dice_class_1", "dice_class_2", "mean_dice",
               "train_seconds"]
    return "\n\n".join([
        machine.header(report),
        f"test split (15%) of a folder of {report['settings']['samples']} images with a rare small class 2; settings "
        f"{report['settings']}",
        machine.markdown_table(report["rows"], columns),
    ])


def main(argv=None):
    args = parse_args(argv)
    return machine.run_benchmark(lambda _=None: args, measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
