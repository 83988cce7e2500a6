"""Native resolution: resize-to-N training vs N-px patch training with sliding-window prediction.

On ``synthetic-large`` (640-768 x 896-1024 px images of 2-5 px lines and small dots,
see :func:`tfseg.data.synthetic.generate_large_sample`), two ``tfseg train`` runs with
the same model, batch size and number of training steps:

    resize   --image-size N: whole images resized to N x N for training; prediction
             resizes each image to N x N and the probabilities back (``tfseg predict``)
    patch    --patch-size N: random N x N crops at native resolution; prediction by
             sliding window over the whole image (``tfseg.tiling``, overlap 0.25, Gaussian)

Both are scored the same way: global Dice/IoU over the pixels of the whole test images
at their native size (``tfseg.evaluation.score_split``: each image through ``tfseg.segment``,
the path of ``tfseg predict``), with and without flip TTA. Time per image is the mean over the test images after one warm-up image; peak
memory is the rise of the process's peak resident memory (VmHWM) over its memory with the
model loaded, while predicting the largest test image twice, in a fresh subprocess.

Usage:
    python benchmarks/native_resolution.py --out benchmarks/cpu_results/native_resolution.json

Prints a Markdown table (with the command and machine in its header) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import machine  # noqa: E402

METHODS = ("resize", "patch")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40, help="synthetic-large:N (70/15/15 split)")
    parser.add_argument("--size", type=int, default=256, help="N: the resize size and the patch size")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps-per-epoch", type=int, default=40, help="the same step budget for both runs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the script works")
    parser.add_argument("--work", default=None, help="folder for the run folders (default: a temporary one)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--memory-probe", nargs=4, metavar=("MODEL", "TILED", "HEIGHT", "WIDTH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.size, args.epochs, args.steps_per_epoch = 9, 64, 1, 2
        args.batch_size, args.base_filters, args.depth = 2, 4, 2
    return args


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def memory_probe(model_path: str, tiled: bool, height: int, width: int) -> dict:
    """Peak RSS rise (MiB) while predicting one random ``height x width`` image (run in its own process)."""
    import numpy as np

    from tfseg.saving import load_keras_model
    from tfseg.segment import Settings, keras_windows

    model = load_keras_model(model_path, compile=False)
    settings, adapter = Settings.of_model(model, tiled=tiled), keras_windows(model)
    images = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)

    def predict(images):
        return settings.probabilities(adapter, images)

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS: the loaded model and the image
    before = _rss_kib("VmRSS")
    for _ in range(2):  # the first call also traces; the peak is the larger of the two
        predict(images)
    return {"peak_rise_mib": round((_rss_kib("VmHWM") - before) / 1024, 1)}


def probe_memory(model_path: str, tiled: bool, height: int, width: int):
    command = [sys.executable, os.path.abspath(__file__), "--memory-probe", model_path, str(int(tiled)),
               str(height), str(width)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rise_mib"]


def train_config(args, method: str, run_dir: str):
    from tfseg.config import TrainConfig

    common = dict(
        data=f"synthetic-large:{args.samples}", batch_size=args.batch_size, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, patience=args.epochs, base_filters=args.base_filters,
        depth=args.depth, seed=args.seed, precision="float32", out=run_dir,
    )
    if method == "resize":
        return TrainConfig(image_size=args.size, **common)
    return TrainConfig(patch_size=args.size, **common)


def score(model, tiled: bool, tta: str, examples) -> dict:
    """Dice/IoU on whole test images at native size, and seconds per image (after one warm-up image)."""
    from tfseg.evaluation import score_split
    from tfseg.segment import Settings, keras_windows

    settings, predict = Settings.of_model(model, tiled=tiled, tta=tta), keras_windows(model)
    settings.images_probabilities(predict, [next(iter(examples))[0]])  # warm-up
    count = sum(1 for _ in examples)
    start = time.perf_counter()
    scores = score_split(settings, predict, examples, batch_size=1)
    seconds = (time.perf_counter() - start) / count
    return {"dice": machine.rounded(scores["dice"]), "iou": machine.rounded(scores["iou"]),
            "seconds_per_image": machine.rounded(seconds)}


def measure(args) -> dict:
    from tfseg.data.pipeline import native_examples
    from tfseg.saving import load_keras_model
    from tfseg.training import train

    report = {"command": machine.command_line(), "machine": machine.machine_info(), "settings": {
        k: getattr(args, k) for k in ("samples", "size", "epochs", "steps_per_epoch", "batch_size", "base_filters",
                                      "depth", "seed")}, "rows": []}
    work = args.work or tempfile.mkdtemp(prefix="tfseg-native-")
    test = native_examples(f"synthetic-large:{args.samples}", split="test", seed=args.seed, cache="memory")
    sizes = [tuple(int(d) for d in image.shape[:2]) for image, _ in test]
    report["test_images"] = len(sizes)
    for method in METHODS:
        run_dir = os.path.join(work, method)
        with machine.CpuMeter() as share:
            metrics = train(train_config(args, method, run_dir), verbose=0)
        model = load_keras_model(os.path.join(run_dir, "model.keras"), compile=False)
        tiled = method == "patch"
        memory = probe_memory(os.path.join(run_dir, "model.keras"), tiled, *max(sizes))
        for tta in ("none", "flips"):
            row = {"method": method, "tta": tta, **score(model, tiled, tta, test),
                   "peak_memory_mib": memory if tta == "none" else None,
                   "train_seconds": machine.rounded(metrics["seconds"]) if tta == "none" else None,
                   "train_cpu_share_of_others": share.result()["others_share"] if tta == "none" else None,
                   "run_val_dice": machine.rounded(metrics["val"]["dice"]) if tta == "none" else None}
            report["rows"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    base = {row["method"]: row for row in report["rows"] if row["tta"] == "none"}
    report["patch_minus_resize_dice"] = machine.rounded(base["patch"]["dice"] - base["resize"]["dice"])
    report["tta_gain"] = {
        method: {"dice": machine.rounded(next(r for r in report["rows"] if r["method"] == method
                                              and r["tta"] == "flips")["dice"] - base[method]["dice"]),
                 "time_ratio": machine.rounded(next(r for r in report["rows"] if r["method"] == method
                                                    and r["tta"] == "flips")["seconds_per_image"]
                                               / base[method]["seconds_per_image"])}
        for method in METHODS
    }
    report["load_average_at_end"] = machine.load_average()
    return report


def markdown(report: dict) -> str:
    columns = ["method", "tta", "dice", "iou", "seconds_per_image", "peak_memory_mib", "train_seconds",
               "run_val_dice"]
    gain = report["tta_gain"]
    return "\n\n".join([
        machine.header(report),
        f"{report['test_images']} test images of synthetic-large:{report['settings']['samples']}, "
        f"scored at native resolution; settings {report['settings']}",
        machine.markdown_table(report["rows"], columns),
        f"patch - resize Dice: {report['patch_minus_resize_dice']}; flip TTA: "
        + "; ".join(f"{m} Dice {gain[m]['dice']:+} at {gain[m]['time_ratio']}x the time" for m in METHODS),
    ])


def main(argv=None):
    args = parse_args(argv)
    if args.memory_probe:
        model_path, tiled, height, width = args.memory_probe
        print(json.dumps(memory_probe(model_path, bool(int(tiled)), int(height), int(width))))
        return 0
    return machine.run_benchmark(lambda _=None: args, measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
