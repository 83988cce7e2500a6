"""Training speed of each architecture x encoder, as a Markdown table.

Builds every model at ``--image-size`` (default 128) with random weights (speed does
not depend on the weights, and this runs offline), compiles it with Adam and binary
cross-entropy, runs ``--warmup`` training steps (graph tracing) and then times
``--steps`` steps of ``--batch-size`` random images with ``train_on_batch``.

    python benchmarks/encoders.py                       # all rows, 128 px, batch 8
    python benchmarks/encoders.py --only unet:mobilenetv2 deeplabv3plus:resnet50

Prints the table, the command and the machine's load average (the CPU may be shared:
compare rows of one run, not runs on different days).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfseg.models  # noqa: E402

ROWS = (
    ("unet", None),
    ("unet", "mobilenetv2"),
    ("unet", "efficientnetv2b0"),
    ("unet", "resnet50"),
    ("deeplabv3plus", "mobilenetv2"),
    ("deeplabv3plus", "resnet50"),
)


def build(architecture: str, encoder, image_size: int) -> keras.Model:
    """The model of one table row, random init, with the library's default sizes."""
    # width 16 for the U-Nets: the sizes the README's table was measured with (tfseg train's default is 8)
    width = {"base_filters": 16} if architecture in ("unet", "segnet") else {}
    if encoder is None:
        return tfseg.models.build_model(architecture, image_size=image_size, **width)
    return tfseg.models.build_model(architecture, image_size=image_size, encoder=encoder, encoder_weights=None,
                                    **width)


def train_images_per_second(model, image_size: int, batch_size: int, warmup: int, steps: int, seed: int = 0) -> float:
    """Images per second of ``train_on_batch`` after ``warmup`` untimed steps."""
    rng = np.random.default_rng(seed)
    images = rng.random((batch_size, image_size, image_size, 3), dtype=np.float32)
    masks = (rng.random((batch_size, image_size, image_size, 1)) > 0.5).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    for _ in range(warmup):
        model.train_on_batch(images, masks)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, masks)
    return steps * batch_size / (time.perf_counter() - start)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (tracing)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--only", nargs="*", default=None, metavar="ARCH[:ENCODER]",
                        help="rows to run, e.g. unet unet:resnet50 deeplabv3plus:mobilenetv2")
    return parser.parse_args(argv)


def selected_rows(only):
    if not only:
        return ROWS
    return [(item.split(":")[0], item.split(":")[1] if ":" in item else None) for item in only]


def main(argv=None) -> None:
    args = parse_args(argv)
    keras.utils.set_random_seed(0)
    load_before = os.getloadavg()[0]
    lines = [
        f"| architecture | encoder | parameters | train images/s ({args.image_size}x{args.image_size}, batch {args.batch_size}) |",
        "|---|---|---:|---:|",
    ]
    for architecture, encoder in selected_rows(args.only):
        model = build(architecture, encoder, args.image_size)
        speed = train_images_per_second(model, args.image_size, args.batch_size, args.warmup, args.steps)
        lines.append(f"| {architecture} | {encoder or '- (plain, base 16)'} | {model.count_params() / 1e6:.1f}M | {speed:.1f} |")
        print(lines[-1], file=sys.stderr, flush=True)
        keras.backend.clear_session()
    print("\n".join(lines))
    command = "python benchmarks/encoders.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(f"\nCommand: `{command.strip()}`; backend {keras.backend.backend()}, keras {keras.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after.")


if __name__ == "__main__":
    main()
