"""Fold ensemble vs one fold: test Dice and prediction cost of a ``tfseg train --folds K`` run.

One cross-validated run (``tfseg.training.train`` with ``folds=K``) on the built-in synthetic
lesions, then on the fixed test split (the same images for every fold):

* each fold's model (``tfseg.evaluation.evaluate`` of ``RUN/fold-i``) and their mean;
* the fold ensemble (``evaluate`` of ``RUN``: the mean of the folds' probabilities), with its
  95% bootstrap interval;
* the cost of a prediction: milliseconds per image of ``tfseg.inference`` with one fold and
  with the ensemble on the test images (median of ``--repeats`` passes, same process, so the
  ratio is measured under the same load).

Usage:
    python benchmarks/fold_ensemble.py --out benchmarks/cpu_results/fold_ensemble.json

Prints a Markdown table (with the command and machine in its header) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import machine  # noqa: E402

import numpy as np  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="synthetic:240", help="SOURCE (default: %(default)s)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="--image-size")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the test images")
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the script works")
    parser.add_argument("--work", default=None, help="folder for the run (default: temporary)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.folds, args.size, args.epochs, args.depth, args.repeats = "synthetic:30", 2, 32, 1, 2, 1
    return args


def ms_per_image(predictor, images, repeats: int) -> float:
    predictor.probabilities(images[:2])  # traced once, outside the timing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.probabilities(images)
        times.append(time.perf_counter() - start)
    return 1000.0 * machine.median(times) / len(images)


def measure(args) -> dict:
    from tfseg.config import TrainConfig
    from tfseg.data.pipeline import native_examples, open_dataset_source
    from tfseg.evaluation import evaluate
    from tfseg.inference import load_predictor
    from tfseg.training import train

    report = {"command": machine.command_line(), "machine": machine.machine_info(), "settings": {
        k: getattr(args, k) for k in ("data", "folds", "size", "epochs", "batch_size", "base_filters", "depth",
                                      "seed")}, "load_average_at_start": machine.load_average(), "rows": []}
    run = os.path.join(args.work or tempfile.mkdtemp(prefix="tfseg-fold-ensemble-"), "cv")
    config = TrainConfig(data=args.data, folds=args.folds, image_size=args.size, base_filters=args.base_filters,
                         depth=args.depth, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         precision="float32", out=run)
    train(config, verbose=0)
    fold_config = TrainConfig.from_dict(json.load(open(os.path.join(run, "fold-1", "config.json"))))
    source = open_dataset_source(args.data, image_size=args.size)
    images = [np.asarray(image) for image, _ in native_examples(
        source, split="test", seed=args.seed, fractions=fold_config.split_fractions(), cache="none")]
    single = load_predictor(os.path.join(run, "fold-1"))
    ensemble = load_predictor(run)
    cost = {"fold-1": ms_per_image(single, images, args.repeats), "ensemble": ms_per_image(ensemble, images,
                                                                                          args.repeats)}
    fold_dice = []
    for fold in range(1, args.folds + 1):
        result = evaluate(os.path.join(run, f"fold-{fold}"), split="test")
        fold_dice.append(result["test"]["dice"])
        report["rows"].append({"model": f"fold {fold}", "test_dice": machine.rounded(result["test"]["dice"], 4),
                               "dice_ci95": [machine.rounded(v, 4) for v in result["test"]["dice_ci95"]],
                               "test_iou": machine.rounded(result["test"]["iou"], 4),
                               "ms_per_image": machine.rounded(cost["fold-1"], 2) if fold == 1 else None})
    report["rows"].append({"model": "mean of the folds", "test_dice": machine.rounded(float(np.mean(fold_dice)), 4),
                           "dice_ci95": None, "test_iou": None, "ms_per_image": None})
    result = evaluate(run, split="test")
    report["rows"].append({"model": f"ensemble of {args.folds}", "test_dice": machine.rounded(result["test"]["dice"], 4),
                           "dice_ci95": [machine.rounded(v, 4) for v in result["test"]["dice_ci95"]],
                           "test_iou": machine.rounded(result["test"]["iou"], 4),
                           "ms_per_image": machine.rounded(cost["ensemble"], 2)})
    report["test_images"] = len(images)
    report["ensemble_minus_mean_fold_dice"] = machine.rounded(result["test"]["dice"] - float(np.mean(fold_dice)), 4)
    report["cost_ratio_ensemble_to_fold"] = machine.rounded(cost["ensemble"] / cost["fold-1"], 2)
    report["load_average_at_end"] = machine.load_average()
    print(json.dumps(report["rows"]), file=sys.stderr, flush=True)
    return report


def markdown(report: dict) -> str:
    return "\n\n".join([
        machine.header(report),
        f"test split of {report['settings']['data']} ({report['test_images']} images, the same for every fold); "
        f"settings {report['settings']}; load average {report['load_average_at_start']} at start, "
        f"{report['load_average_at_end']} at end",
        machine.markdown_table(report["rows"], ["model", "test_dice", "dice_ci95", "test_iou", "ms_per_image"]),
        f"ensemble - mean fold Dice: {report['ensemble_minus_mean_fold_dice']:+.4f}; prediction cost of the ensemble: "
        f"{report['cost_ratio_ensemble_to_fold']}x one fold's",
    ])


def main(argv=None):
    args = parse_args(argv)
    return machine.run_benchmark(lambda _=None: args, measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
