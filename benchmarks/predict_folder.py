"""`tfseg predict` on a folder of PH2-size images vs the model's own `predict` on decoded arrays.

On the images of ``--count`` PH2-size samples (768x560 24-bit BMP, as the PH2 archive holds them), with one
model saved as ``model.keras`` (``build_model(--model, --image-size, base_filters=16)``, default options,
untrained weights: speed does not depend on them), each row times one pass over all images
after a warm-up pass on the first batch:

    model.predict, decoded arrays   ``model.predict(x, batch_size=B)`` on float32 ``[N, s, s, 3]``
                                    already decoded and resized: the model alone
    predict_images (API)            ``tfseg.inference.predict_images``: the up-front check, decode,
                                    resize, the model, probabilities back at 768x560, the mask
    tfseg predict --no-overlays     ``tfseg predict --model M IMAGE... --out DIR --no-overlays``:
                                    the same plus writing ``<stem>_mask.png``
    tfseg predict (CLI)             the same plus ``<stem>_overlay.jpg`` (the image with the outline, JPEG)
    tfseg predict --overlay-format png   the overlay as PNG (lossless), as before JPEG overlays

Each CLI call loads the model and traces its predict function; the same call on the first
batch of images alone measures that fixed cost, and the rate over the other images is
``(N - B) / (seconds - first batch seconds)``.

Usage:
    python benchmarks/predict_folder.py --out benchmarks/cpu_results/predict_folder.json

Prints a Markdown table (with the command and machine in its header) and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import machine  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="PH2-size images")
    parser.add_argument("--model", default="unet")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8, help="images per model call (tfseg predict's default)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per row (median; rows interleaved)")
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the script works")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.image_size, args.repeats, args.batch_size = 6, 64, 1, 2
    return args


def image_files(root: Path, count: int) -> list:
    """The dermoscopic images of ``count`` PH2-size samples (:func:`input_pipeline.write_ph2_folder`)."""
    from input_pipeline import write_ph2_folder

    base = write_ph2_folder(root, count, 768, 560, seed=0)
    return sorted(str(p) for p in base.glob("PH2 Dataset images/*/*_Dermoscopic_Image/*.bmp"))


def measure(args) -> dict:
    import numpy as np

    from tfseg import cli
    from tfseg.inference import load_predictor, predict_images, read_image
    from tfseg.models import build_model
    from tfseg.segment import Settings

    work = Path(tempfile.mkdtemp(prefix="tfseg-predict-"))
    try:
        paths = image_files(work / "data", args.count)
        # width 16: the model BENCHMARKS.md's figures were measured with (tfseg train's default is 8)
        model = build_model(args.model, image_size=args.image_size, base_filters=16)
        model_path = str(work / "model.keras")
        model.save(model_path)
        settings = Settings(window=(args.image_size, args.image_size))
        arrays = np.concatenate([settings.model_inputs(read_image(p)[None]).numpy() for p in paths])

        def keras_predict():
            model.predict(arrays, batch_size=args.batch_size, verbose=0)

        predictor = load_predictor(model_path)

        def api():
            for _ in predict_images(predictor, paths, batch_size=args.batch_size):
                pass

        def command(images, *extra):
            def run():
                out = work / "predictions"
                shutil.rmtree(out, ignore_errors=True)
                with open(os.devnull, "w") as devnull:
                    stdout, sys.stdout = sys.stdout, devnull
                    try:
                        code = cli.main(["predict", "--model", model_path, *images, "--out", str(out),
                                         "--batch-size", str(args.batch_size), "--quiet", *extra])
                    finally:
                        sys.stdout = stdout
                if code != 0:
                    raise SystemExit(f"tfseg predict exited {code}")
            return run

        rows = {"model.predict, decoded arrays": keras_predict, "predict_images (API)": api,
                "tfseg predict --no-overlays (CLI)": command(paths, "--no-overlays"),
                "tfseg predict (CLI)": command(paths),
                "tfseg predict --overlay-format png (CLI)": command(paths, "--overlay-format", "png")}
        # Each CLI call loads the model and traces its predict function: timed alone on one batch of images.
        first = paths[: args.batch_size]
        first_batch = {"tfseg predict --no-overlays (CLI)": command(first, "--no-overlays"),
                       "tfseg predict (CLI)": command(first),
                       "tfseg predict --overlay-format png (CLI)": command(first, "--overlay-format", "png")}
        # warm-up: trace every path once
        model.predict(arrays[: args.batch_size], batch_size=args.batch_size, verbose=0)
        for _ in predict_images(predictor, paths[: args.batch_size], batch_size=args.batch_size):
            pass
        times = {name: [] for name in rows}
        first_times = {name: [] for name in first_batch}
        with machine.CpuMeter() as share:
            for _ in range(args.repeats):
                for name, call in list(rows.items()) + [((name, "first"), call) for name, call in first_batch.items()]:
                    start = time.perf_counter()
                    call()
                    (first_times[name[0]] if isinstance(name, tuple) else times[name]).append(
                        time.perf_counter() - start)
        base = machine.median(times["model.predict, decoded arrays"])
        report = {"command": machine.command_line(), "machine": machine.machine_info(),
                  "settings": {k: getattr(args, k) for k in ("count", "model", "image_size", "batch_size", "repeats")},
                  "others_share": share.result()["others_share"], "rows": []}
        for name, seconds in times.items():
            median = machine.median(seconds)
            row = {"path": name, "seconds": machine.rounded(median),
                   "images_per_second": machine.rounded(args.count / median),
                   "throughput_vs_model_predict": machine.rounded(base / median),
                   "all_seconds": [machine.rounded(s) for s in seconds]}
            if name in first_times:
                # The images after the first batch: the rate once the model is loaded and traced.
                fixed = machine.median(first_times[name])
                rest = (args.count - args.batch_size) / max(median - fixed, 1e-9)
                row.update({"first_batch_seconds": machine.rounded(fixed),
                            "images_per_second_after_first_batch": machine.rounded(rest),
                            "after_first_batch_vs_model_predict": machine.rounded(rest / (args.count / base))})
            report["rows"].append(row)
        report["load_average_at_end"] = machine.load_average()
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def markdown(report: dict) -> str:
    settings = report["settings"]
    return "\n\n".join([
        machine.header(report),
        f"{settings['count']} images of 768x560 (BMP), {settings['model']} at {settings['image_size']} px, "
        f"batch {settings['batch_size']}; median of {settings['repeats']} interleaved passes; other processes "
        f"took {report['others_share']} of the CPU meanwhile",
        machine.markdown_table(report["rows"], ["path", "seconds", "images_per_second",
                                                "throughput_vs_model_predict", "first_batch_seconds",
                                                "images_per_second_after_first_batch",
                                                "after_first_batch_vs_model_predict"]),
    ])


def main(argv=None):
    return machine.run_benchmark(parse_args, measure, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
