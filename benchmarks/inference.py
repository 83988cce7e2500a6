"""Inference speed of one model through each runtime: Keras, SavedModel, TFLite.

Per-image latency (batch 1: median over ``--repeats`` calls after warm-up) and
throughput (batch ``--batch-size``: images / median batch time) of
``build_model(--model, --image-size, base_filters=16)``, other options default (untrained weights:
speed does not depend on them) on this machine's CPU.

Runtimes:
    keras predict          ``model.predict(x, verbose=0)`` on float32 in [0, 1]
    keras predict_on_batch ``model.predict_on_batch(x)`` (no tf.data overhead)
    SavedModel             ``serving_default(images=uint8)``, includes the in-graph
                           cast/resize/scale and the mask, as TF Serving runs it
    TFLite float32/float16 ``Interpreter.invoke()`` (XNNPACK) on float32 in [0, 1]

Usage:
    python benchmarks/inference.py --out benchmarks/inference.json

Prints a Markdown table (with the command and machine in its header) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="unet")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="batch for the throughput column")
    parser.add_argument("--repeats", type=int, default=20, help="timed batch-1 calls (after 3 warm-up calls)")
    parser.add_argument("--throughput-repeats", type=int, default=5, help="timed big-batch calls (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="TFLite interpreter threads")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def median_seconds(call, repeats, warmup):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def runtimes(model, work_dir, threads):
    """``{name: (make_call, file_bytes)}``; ``make_call(uint8 images)`` returns a
    zero-argument function that runs the batch and returns float32 probabilities."""
    import numpy as np
    import tensorflow as tf

    from tfseg import export
    from tfseg.export import tflite_interpreter

    keras_path = os.path.join(work_dir, "model.keras")
    model.save(keras_path)
    saved_model_dir = export.export_saved_model(model, os.path.join(work_dir, "serving"))
    serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]

    def keras_predict(images):
        x = images.astype(np.float32) / 255.0
        return lambda: model.predict(x, verbose=0, batch_size=len(x))

    def keras_predict_on_batch(images):
        x = images.astype(np.float32) / 255.0
        return lambda: model.predict_on_batch(x)

    def saved_model(images):
        x = tf.constant(images)
        return lambda: serve(images=x)["probabilities"].numpy()

    def tflite(path):
        def make(images):
            interpreter = tflite_interpreter(path, threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, list(images.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(index, images.astype(np.float32) / 255.0)
            output = interpreter.get_output_details()[0]["index"]

            def call():
                interpreter.invoke()
                return interpreter.get_tensor(output)

            return call

        return make

    calls = {
        "keras predict": (keras_predict, folder_bytes(keras_path)),
        "keras predict_on_batch": (keras_predict_on_batch, folder_bytes(keras_path)),
        "SavedModel serving_default": (saved_model, folder_bytes(saved_model_dir)),
    }
    for quantize in ("none", "float16"):
        path = export.export_tflite(model, os.path.join(work_dir, f"model_{quantize}.tflite"), quantize=quantize)
        name = "TFLite float32" if quantize == "none" else "TFLite float16 weights"
        calls[name] = (tflite(path), folder_bytes(path))
    return calls


def folder_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def measure(args):
    import keras
    import numpy as np
    import tensorflow as tf

    from tfseg.models import build_model

    # width 16: the model BENCHMARKS.md's figures were measured with (tfseg train's default is 8)
    model = build_model(args.model, args.image_size, base_filters=16)
    rng = np.random.default_rng(0)
    size = (args.image_size, args.image_size, 3)
    one = rng.integers(0, 256, (1, *size), dtype=np.uint8)
    many = rng.integers(0, 256, (args.batch_size, *size), dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as work_dir:
        reference = np.asarray(model.predict_on_batch(many.astype(np.float32) / 255.0))
        for name, (make, file_bytes) in runtimes(model, work_dir, args.threads).items():
            latency = median_seconds(make(one), args.repeats, warmup=3)
            batch_time = median_seconds(make(many), args.throughput_repeats, warmup=1)
            difference = np.max(np.abs(np.asarray(make(many)()) - reference))
            rows.append({
                "runtime": name,
                "latency_ms_batch1": round(1000 * latency, 1),
                f"images_per_second_batch{args.batch_size}": round(args.batch_size / batch_time, 1),
                "max_abs_diff_vs_keras": float(f"{difference:.2g}"),
                "file_mb": round(file_bytes / 2**20, 1),
            })
            print(f"  measured {name}", file=sys.stderr, flush=True)
    return {
        "command": "python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:]),
        "model": f"build_model({args.model!r}, {args.image_size}, base_filters=16), {model.count_params():,} parameters",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tflite_threads": args.threads,
        },
        "repeats": {"batch1": args.repeats, f"batch{args.batch_size}": args.throughput_repeats},
        "results": rows,
    }


def markdown(report):
    machine = report["machine"]
    columns = list(report["results"][0])
    lines = [
        f"`{report['command']}`",
        "",
        f"{report['model']}; {machine['cpu_count']} CPU cores ({machine['processor']}), TensorFlow "
        f"{machine['tensorflow']}, Keras {machine['keras']}; load average at start {machine['load_average_at_start']}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in report["results"]]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    report = measure(args)
    print(markdown(report))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
