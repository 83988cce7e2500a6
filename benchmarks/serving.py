"""Latency, throughput and REST reply size of an exported SavedModel's serving signatures.

One model (``build_model(--model, --image-size, base_filters=--base-filters)``, untrained weights
seeded with ``--seed``: speed does not depend on them; a mask PNG's size does, an untrained model's
speckled mask being larger than a trained model's blob) is exported with ``tfseg.export.export_saved_model`` and loaded with
``tf.saved_model.load``; its signatures are called in this process, as TF Serving calls them
(without the network and the JSON/gRPC (de)serialisation):

    serving_default   uint8 pixels ``[batch, H, W, 3]`` -> probabilities, mask, mask_png_bytes
    serving_bytes     PNG files ``[batch]`` -> probabilities, mask, mask_png_bytes, height, width
    serving_compact   PNG files ``[batch]`` -> mask_png_bytes, height, width

For each image size (``--sizes``: photo-like PNGs, smooth shading plus noise), batch (``--batches``)
and number of concurrent callers (``--callers``: Python threads calling the same signature), each
caller makes ``--repeats`` calls per round; the signatures take turns round by round
(``--rounds``), so a busy machine slows all three alike. Per row: median (p50) and 99th percentile
(p99, of all calls: with few calls it is close to the slowest one) of a call's latency, images/s
(images of all callers / wall time of the round, summed over rounds), and ``compact_vs_bytes``
(serving_compact's p50 / serving_bytes' p50 of the same size, batch and callers).

The REST reply size is the length of the JSON body TF Serving's REST API returns for one image
(:func:`tfseg.export.rest_json`: outputs named ``*_bytes`` as ``{"b64": ...}``, numbers as JSON
lists), from the outputs of a batch-1 call.

Usage:
    python benchmarks/serving.py --out benchmarks/results/serving.json

Prints a Markdown table (with the command and machine in its header) and writes JSON.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import machine  # noqa: E402

SIGNATURES = ("serving_default", "serving_bytes", "serving_compact")


def size_list(text: str) -> list:
    """``"256x256,768x560"`` -> ``[(256, 256), (560, 768)]``: WIDTHxHEIGHT, as photos are named."""
    sizes = []
    for item in text.split(","):
        width, height = (int(v) for v in item.lower().split("x"))
        sizes.append((height, width))
    return sizes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="unet")
    parser.add_argument("--image-size", type=int, default=256, help="the model's input size")
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--sizes", type=size_list, default=size_list("256x256,768x560"),
                        help="image sizes WIDTHxHEIGHT, comma-separated (default 256x256,768x560)")
    parser.add_argument("--batches", default="1,8", help="images per call, comma-separated")
    parser.add_argument("--callers", default="1,4", help="concurrent callers (threads), comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="the model's initial weights")
    parser.add_argument("--repeats", type=int, default=3, help="calls per caller per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the signatures take turns in each")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                        help="first wait (up to 30 min) until the load average is below LOAD")
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the script works")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    args.batches = [int(v) for v in args.batches.split(",")]
    args.callers = [int(v) for v in args.callers.split(",")]
    if args.quick:
        args.image_size, args.base_filters, args.sizes = 32, 4, size_list("32x32,80x48")
        args.batches, args.callers, args.repeats, args.rounds = [1, 2], [1, 2], 1, 1
    return args


def photo(height: int, width: int, seed: int):
    """A photo-like uint8 image: smooth shading (compresses like a photo), noise and a bright block."""
    import numpy as np

    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows * 200 // height, cols * 200 // width, np.full_like(rows, 90)], -1)
    image = image + np.random.default_rng(seed).integers(0, 40, image.shape)
    image[height // 4 : height * 3 // 4, width // 4 : width * 3 // 4, 0] = 255
    return np.clip(image, 0, 255).astype(np.uint8)


def percentile(values, q: float) -> float:
    """The ``q``-th percentile of ``values`` by nearest rank: the ``ceil(q/100 * n)``-th smallest."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def timed_round(call, callers: int, repeats: int):
    """``callers`` threads each make ``repeats`` calls; returns (latencies, wall seconds)."""
    latencies, lock = [], threading.Lock()

    def caller():
        own = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            own.append(time.perf_counter() - start)
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start


def measure(args) -> dict:
    import numpy as np
    import tensorflow as tf

    from tfseg import export
    from tfseg.models import build_model

    import keras

    work = tempfile.mkdtemp(prefix="tfseg-serving-bench-")
    try:
        keras.utils.set_random_seed(args.seed)
        model = build_model(args.model, args.image_size, base_filters=args.base_filters)
        path = export.export_saved_model(model, os.path.join(work, "export"))
        signatures = tf.saved_model.load(path).signatures
        report = {"command": machine.command_line(), "machine": machine.machine_info(),
                  "settings": {"model": args.model, "image_size": args.image_size,
                               "base_filters": args.base_filters, "seed": args.seed, "repeats": args.repeats, "rounds": args.rounds},
                  "rows": [], "replies": []}
        with machine.CpuMeter() as share:
            for height, width in args.sizes:
                images = np.stack([photo(height, width, seed) for seed in range(max(args.batches))])
                files = np.array([tf.io.encode_png(image).numpy() for image in images], dtype=object)
                inputs = {"serving_default": lambda b: {"images": tf.constant(images[:b])},
                          "serving_bytes": lambda b: {"image_bytes": tf.constant(files[:b])},
                          "serving_compact": lambda b: {"image_bytes": tf.constant(files[:b])}}
                reply = {"size": f"{width}x{height}", "png_request_kB": machine.rounded(len(files[0]) / 1e3)}
                for name in SIGNATURES:
                    outputs = signatures[name](**inputs[name](1))
                    reply[f"{name}_kB"] = machine.rounded(len(export.rest_json(
                        {k: v.numpy() for k, v in outputs.items()})) / 1e3)
                report["replies"].append(reply)
                for batch in args.batches:
                    for callers in args.callers:
                        calls = {name: (lambda n=name: signatures[n](**inputs[n](batch))) for name in SIGNATURES}
                        for call in calls.values():
                            call()  # warm-up: the first call of a shape traces
                        latencies = {name: [] for name in SIGNATURES}
                        walls = {name: 0.0 for name in SIGNATURES}
                        for _ in range(args.rounds):
                            for name in SIGNATURES:
                                seconds, wall = timed_round(calls[name], callers, args.repeats)
                                latencies[name] += seconds
                                walls[name] += wall
                        rows = {}
                        for name in SIGNATURES:
                            rows[name] = {
                                "signature": name, "size": f"{width}x{height}", "batch": batch, "callers": callers,
                                "calls": len(latencies[name]),
                                "p50_ms": machine.rounded(1e3 * percentile(latencies[name], 50)),
                                "p99_ms": machine.rounded(1e3 * percentile(latencies[name], 99)),
                                "images_per_second": machine.rounded(
                                    args.rounds * callers * args.repeats * batch / walls[name]),
                            }
                        rows["serving_compact"]["compact_vs_bytes"] = machine.rounded(
                            percentile(latencies["serving_compact"], 50) / percentile(latencies["serving_bytes"], 50))
                        report["rows"] += rows.values()
        report["others_share"] = share.result()["others_share"]
        report["load_average_at_end"] = machine.load_average()
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def markdown(report: dict) -> str:
    settings = report["settings"]
    return "\n\n".join([
        machine.header(report),
        f"{settings['model']} at {settings['image_size']} px, base_filters {settings['base_filters']}; "
        f"{settings['rounds']} rounds x {settings['repeats']} calls per caller per signature; other processes "
        f"took {report['others_share']} of the CPU meanwhile",
        machine.markdown_table(report["rows"], ["signature", "size", "batch", "callers", "calls", "p50_ms",
                                                "p99_ms", "images_per_second", "compact_vs_bytes"]),
        "REST reply of one image (JSON body, kB):",
        machine.markdown_table(report["replies"], ["size", "png_request_kB", "serving_default_kB",
                                                   "serving_bytes_kB", "serving_compact_kB"]),
    ])


def main(argv=None):
    return machine.run_benchmark(parse_args, measure, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
