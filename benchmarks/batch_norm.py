"""Training throughput with Keras' BatchNormalization vs tfseg.layers.BatchNorm, side by side, interleaved.

For each ``--precisions`` policy both U-Nets (``batch_norm_layer`` ``keras`` and ``bfloat16``, everything
else as ``tfseg train`` builds and compiles them: :func:`tfseg.training.build_compiled_model`) are built
and traced once, then timed in alternating rounds (keras, bfloat16, keras, bfloat16, ...) of
``--steps`` training steps on the same in-memory batches. Alternating puts any change in the machine's
load on both alike; the figure is the median over rounds of each variant's images/s and of the
per-round ratio bfloat16 / keras. ``others_share`` (the CPU other processes took) is recorded per round.

Usage (from the repository root)::

    python benchmarks/batch_norm.py --out benchmarks/results/batch_norm.json
    python benchmarks/batch_norm.py --quick         # a smoke run: seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402

from machine import (  # noqa: E402
    CpuMeter, command_line, header, load_average, machine_info, markdown_table, median, rounded, run_benchmark,
)

LAYERS = ("keras", "bfloat16")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precisions", default="mixed_bfloat16,float32")
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (alternating)")
    parser.add_argument("--quick", action="store_true", help="a tiny run that finishes in seconds (smoke test)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.base_filters, args.size, args.depth, args.batch_size, args.steps, args.rounds = 4, 32, 2, 4, 2, 2
    return args


def build(layer: str, precision: str, args):
    """The compiled U-Net of ``tfseg train`` with ``batch_norm_layer=layer`` under ``precision``."""
    from tfseg.config import TrainConfig
    from tfseg.precision import precision_policy
    from tfseg.training import build_compiled_model, training_phases

    config = TrainConfig(image_size=args.size, base_filters=args.base_filters, depth=args.depth,
                         batch_size=args.batch_size, batch_norm_layer=layer, precision=precision)
    with precision_policy(precision):
        keras.utils.set_random_seed(0)
        return build_compiled_model(config, 1, training_phases(config)[0])


def batches(args):
    """``args.steps`` fixed batches of synthetic lesions, as NumPy arrays held in memory."""
    import numpy as np

    from tfseg.data import load_dataset

    dataset = load_dataset("synthetic:64", split="train", image_size=args.size, batch_size=args.batch_size,
                           augment=False, shuffle=False, cache="none", seed=0)
    images, masks = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    images, masks = np.concatenate(images), np.concatenate(masks)
    repeats = -(-args.steps * args.batch_size // len(images))
    return np.concatenate([images] * repeats)[: args.steps * args.batch_size], \
        np.concatenate([masks] * repeats)[: args.steps * args.batch_size]


def timed_round(model, images, masks, args) -> Dict[str, float]:
    with CpuMeter() as meter:
        start = time.perf_counter()
        model.fit(images, masks, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
        seconds = time.perf_counter() - start
    return {"images_per_second": len(images) / seconds, **meter.result()}


def measure(args) -> Dict[str, Any]:
    report = {"command": command_line(), "machine": machine_info(), "settings": vars(args), "rows": []}
    images, masks = batches(args)
    for precision in args.precisions.split(","):
        models = {layer: build(layer, precision, args) for layer in LAYERS}
        for layer, model in models.items():  # trace and warm up (oneDNN primitives) before any timing
            model.fit(images, masks, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
            print(f"  traced {precision} {layer}", file=sys.stderr, flush=True)
        rounds: Dict[str, List[Dict[str, float]]] = {layer: [] for layer in LAYERS}
        for index in range(args.rounds):
            for layer in LAYERS:
                rounds[layer].append(timed_round(models[layer], images, masks, args))
            print(f"  round {index + 1}/{args.rounds} {precision}: "
                  + ", ".join(f"{layer} {rounds[layer][-1]['images_per_second']:.1f} img/s" for layer in LAYERS),
                  file=sys.stderr, flush=True)
        rates = {layer: [r["images_per_second"] for r in rounds[layer]] for layer in LAYERS}
        ratios = [b / k for k, b in zip(rates["keras"], rates["bfloat16"])]
        report["rows"].append({
            "precision": precision,
            "keras_img_s": rounded(median(rates["keras"])),
            "bfloat16_img_s": rounded(median(rates["bfloat16"])),
            "bfloat16_over_keras": round(median(ratios), 3),
            "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3),
            "others_share_max": max(r["others_share"] for layer in LAYERS for r in rounds[layer]),
            "rounds": rounds,
        })
        del models
        keras.backend.clear_session()
    report["load_average_at_end"] = load_average()
    return report


def markdown(report: Dict[str, Any]) -> str:
    s = report["settings"]
    columns = ["precision", "keras_img_s", "bfloat16_img_s", "bfloat16_over_keras", "ratio_min", "ratio_max",
               "others_share_max"]
    return "\n".join([
        header(report), "",
        f"U-Net, base_filters {s['base_filters']}, depth {s['depth']}, {s['size']} px, batch {s['batch_size']}; "
        f"{s['rounds']} alternating rounds of {s['steps']} steps per variant (medians):", "",
        markdown_table(report["rows"], columns),
    ])


def main(argv=None) -> int:
    return run_benchmark(parse_args, measure, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
