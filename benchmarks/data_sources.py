"""What the up-front file check of ``folder:``/``mads:``/``ph2:`` costs, next to one decoding pass.

Writes ``--count`` MADS-sized pairs (512x384 RGB image + 0/255 gray mask; PNG or
JPEG images) to a temporary folder, then measures in this process:

    check (cold)      ``open_source("folder:...")``: list + fully decode every file with Pillow
                      in a thread pool + count mask values (what a first ``tfseg train`` pays)
    check (cached)    the same again: results cached by (path, size, mtime)
    decode pass       one pass of ``source.examples(ids)`` through tf.data (graph decoders)
    prepare           ``write_shards`` to 1 shard (decode, PNG-encode, write)
    tfrecord pass     one pass of ``tfrecord:DIR`` examples

Usage:
    python benchmarks/data_sources.py --count 300 --format png

Prints a Markdown table with the command and the machine in its header.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="image/mask pairs")
    parser.add_argument("--format", choices=("png", "jpg"), default="png", help="image file format")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    return parser.parse_args(argv)


def write_pairs(root: Path, count: int, fmt: str, width: int, height: int):
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:height, :width]
    for i in range(count):
        # Smooth content (random noise would make PNGs unrealistically large and slow).
        base = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((width, height), Image.BILINEAR)
        image.save(root / "images" / f"frame_{i:05d}.{fmt}")
        mask = ((y - height / 2) ** 2 + (x - width / 2 - i % 50) ** 2 < (60 + i % 40) ** 2).astype(np.uint8) * 255
        Image.fromarray(mask).save(root / "masks" / f"frame_{i:05d}.png")


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main(argv=None):
    args = parse_args(argv)
    from tfseg.data import open_source
    from tfseg.data.sources import _load_builtin_openers
    from tfseg.data.tfrecord import write_shards

    _load_builtin_openers()  # imports TensorFlow: not part of what is measured

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_pairs(root, args.count, args.format, args.width, args.height)
        text = f"folder:{root}"
        rows = []
        seconds, source = timed(lambda: open_source(text))
        rows.append(("check (cold)", seconds))
        rows.append(("check (cached)", timed(lambda: open_source(text))[0]))
        rows.append(("decode pass", timed(lambda: sum(1 for _ in source.examples(source.ids())))[0]))
        rows.append(("prepare (1 shard)", timed(lambda: write_shards(source, Path(tmp) / "shards", shards=1,
                                                                      progress=False))[0]))
        shards = open_source(f"tfrecord:{Path(tmp) / 'shards'}")
        rows.append(("tfrecord pass", timed(lambda: sum(1 for _ in shards.examples(shards.ids())))[0]))
    command = "python benchmarks/data_sources.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"`{command}` on {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}:\n")
    print(f"| step ({args.count} pairs, {args.width}x{args.height} {args.format.upper()} + PNG mask) "
          "| seconds | ms / pair |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {1000 * seconds / args.count:.1f} |")


if __name__ == "__main__":
    main()
