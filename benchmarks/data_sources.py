"""What the up-front file check of ``folder:``/``mads:``/``ph2:`` costs, next to one decoding pass.

Writes ``--count`` MADS-sized pairs (512x384 RGB image + 0/255 gray mask; PNG or
JPEG images) to a temporary folder, then measures in this process:

    check (cold)      ``open_source("folder:...")``: list + fully decode every file with Pillow
                      in a thread pool + count mask values (what a first ``tfseg train`` pays)
    check (cached)    the same again: results cached by (path, size, mtime)
    decode pass       one pass of ``source.examples(ids)`` through tf.data (graph decoders)
    prepare           ``write_shards`` to 1 shard (decode, PNG-encode, write)
    tfrecord pass     one pass of ``tfrecord:DIR`` examples

With ``--ph2-cold`` it measures instead what a user meets first on PH2: a cold load
(a fresh process per measurement, imports excluded, the files in the OS page cache
for every loader alike) of ``--count`` PH2-size samples (768x560 24-bit BMP images;
masks 8-bit BMP, every third one 1-bit, as in PH2) at 256 px:

    lesson            the lesson's scikit-image ``imread`` + ``resize`` loop (benchmarks/input_pipeline.py)
    tfseg             ``load_dataset("ph2:DIR", split=s)`` for s = train, val, test, one pass each
                      (the up-front check of every file, three split openings, tracing, decode, resize)
    tfseg check       ``open_source("ph2:DIR")`` alone: the up-front check
    minimal tf.data   file names -> ``map(decode + resize)`` -> batch: no check, no splits, the same
                      decoders and resize as tfseg (equal output)

and the image resize methods' speed next to their quality: PSNR against a
Lanczos resize (Pillow) of the same images. Each loader runs ``--repeats`` times,
interleaved; the table gives medians and the ratios the medians give.

Usage:
    python benchmarks/data_sources.py --count 300 --format png
    python benchmarks/data_sources.py --ph2-cold --out benchmarks/cpu_results/data_sources_cold.json
    python benchmarks/data_sources.py --ph2-cold --baseline OLD_CHECKOUT   # + an older tfseg, same run

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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="image/mask pairs")
    parser.add_argument("--format", choices=("png", "jpg"), default="png", help="image file format")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--ph2-cold", action="store_true", help="the cold PH2 load comparison (see above)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per loader (median)")
    parser.add_argument("--out", default=None, help="--ph2-cold: write the results as JSON here")
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="--ph2-cold: also time the tfseg loader of another checkout (DIR holds its tfseg/)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ph2_cold and "--count" not in (sys.argv if argv is None else argv):
        args.count = 200
    return args


# --------------------------------------------------------------------------- the cold PH2 load
def write_ph2_bmps(root: Path, count: int, width: int = 768, height: int = 560) -> Path:
    """PH2's layout and file kinds: 24-bit BMP images; 8-bit 0/255 BMP masks, every third one 1-bit."""
    import numpy as np
    from PIL import Image

    from input_pipeline import write_ph2_folder

    base = write_ph2_folder(root, count, width, height, seed=0)
    for i, mask in enumerate(sorted(base.glob("PH2 Dataset images/*/*_lesion/*.bmp"))):
        if i % 3 == 0:
            Image.fromarray(np.asarray(Image.open(mask)) > 127).convert("1").save(mask)
    return base


def _minimal_loader(root: Path, size: int, batch_size: int):
    """The least a tf.data loader does for the same output: no check, no splits, no cache."""
    import tensorflow as tf

    from tfseg.data.decode import image_rgb, palette_bmp_mask
    from tfseg.data.pipeline import resize_example

    images = sorted(str(p) for p in root.glob("PH2 Dataset images/*/*_Dermoscopic_Image/*.bmp"))
    masks = sorted(str(p) for p in root.glob("PH2 Dataset images/*/*_lesion/*.bmp"))

    def loader(decode_mask):
        def load(image_path, mask_path):
            return resize_example(image_rgb(tf.io.read_file(image_path)), decode_mask(tf.io.read_file(mask_path)),
                                  size)
        return load

    # Each mask kind with its fastest decoder: TensorFlow's for 8-bit BMPs, the palette lookup for 1-bit ones.
    eight = [open(m, "rb").read(30)[28] == 8 for m in masks]
    parts = [
        tf.data.Dataset.from_tensor_slices(([i for i, e in zip(images, eight) if e == kind],
                                            [m for m, e in zip(masks, eight) if e == kind]))
        .map(loader(decoder), num_parallel_calls=tf.data.AUTOTUNE)
        for kind, decoder in ((True, lambda data: tf.io.decode_bmp(data, channels=0)), (False, palette_bmp_mask))
    ]
    return parts[0].concatenate(parts[1]).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def worker(args) -> None:
    """One cold measurement in this fresh process; prints ``{"seconds", "images"}`` as JSON."""
    import json

    import numpy as np  # noqa: F401 - imported before the clock starts, as every library below
    import tensorflow as tf  # noqa: F401

    from input_pipeline import lesson_loader
    from tfseg.data import load_dataset, open_source

    try:  # the source kinds' modules, imported before the clock starts
        from tfseg.data.sources import source_kinds as import_kinds
    except ImportError:  # a --baseline checkout from before tfseg/data/kinds/
        from tfseg.data.sources import _load_builtin_openers as import_kinds
    import_kinds()
    import skimage.io  # noqa: F401
    import skimage.transform  # noqa: F401

    root, size, text = Path(args.root), args.image_size, f"ph2:{args.root}"
    start, cpu_start = time.perf_counter(), time.process_time()
    if args.worker == "lesson":
        images = len(lesson_loader(root, size)[0])
    elif args.worker == "tfseg":
        images = 0
        for split in ("train", "val", "test"):
            ds = load_dataset(text, split=split, image_size=size, batch_size=args.batch_size, augment=False,
                              shuffle=False)
            images += sum(int(batch.shape[0]) for batch, _ in ds)
    elif args.worker == "check":
        images = len(open_source(text).ids())
    elif args.worker == "minimal":
        images = sum(int(batch.shape[0]) for batch, _ in _minimal_loader(root, size, args.batch_size))
    else:
        raise SystemExit(f"unknown worker {args.worker!r}")
    # CPU seconds of all this process's threads: what the load costs, whatever else runs on the machine.
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
                      "images": images}))


def resize_quality(root: Path, size: int, limit: int = 40):
    """Each TensorFlow resize method's images/s (one thread of calls) and PSNR against Pillow's Lanczos."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    paths = sorted(root.glob("PH2 Dataset images/*/*_Dermoscopic_Image/*.bmp"))[:limit]
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    references = [np.asarray(Image.fromarray(a).resize((size, size), Image.LANCZOS), np.float64) for a in arrays]
    rows = []
    for method, antialias in (("bilinear", True), ("area", False), ("bilinear", False), ("lanczos3", True)):
        @tf.function
        def resize(image):
            out = tf.image.resize(tf.cast(image, tf.float32), (size, size), method=method, antialias=antialias)
            return tf.cast(tf.round(tf.clip_by_value(out, 0.0, 255.0)), tf.uint8)

        resize(arrays[0])  # trace once, outside the clock
        start = time.perf_counter()
        outputs = [resize(a).numpy() for a in arrays]
        seconds = time.perf_counter() - start
        psnr = [10 * np.log10(255.0 ** 2 / np.mean((o - r) ** 2)) for o, r in zip(outputs, references)]
        rows.append({"method": method + (" antialias" if antialias else ""),
                     "images_per_second": round(len(arrays) / seconds), "psnr_db_vs_lanczos": round(
                         float(np.mean(psnr)), 2)})
    return rows


def cold_load(args) -> dict:
    import json
    import subprocess

    from machine import load_average, machine_info

    report = {"command": "python benchmarks/data_sources.py " + " ".join(sys.argv[1:]), "count": args.count,
              "image_size": args.image_size, "batch_size": args.batch_size, "machine": machine_info(),
              "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    kinds = ("lesson", "tfseg", "check", "minimal") + (("baseline",) if args.baseline else ())
    with tempfile.TemporaryDirectory() as tmp:
        root = write_ph2_bmps(Path(tmp), args.count)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        seconds = {kind: [] for kind in kinds}
        cpu = {kind: [] for kind in kinds}
        for _ in range(args.repeats):
            for kind in kinds:  # interleaved: a noisy moment hits every loader alike
                package = os.path.abspath(args.baseline) if kind == "baseline" else here
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([package, os.environ.get("PYTHONPATH", "")])}
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--worker", "tfseg" if kind == "baseline" else kind,
                     "--root", str(root),
                     "--image-size", str(args.image_size), "--batch-size", str(args.batch_size)],
                    capture_output=True, text=True, env=env, check=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                assert result["images"] == args.count, (kind, result)
                seconds[kind].append(result["seconds"])
                cpu[kind].append(result["cpu_seconds"])
        report["resize"] = resize_quality(root, args.image_size)
    medians = {kind: sorted(values)[len(values) // 2] for kind, values in seconds.items()}
    cpu_medians = {kind: sorted(values)[len(values) // 2] for kind, values in cpu.items()}
    report["seconds"] = {kind: [round(v, 3) for v in values] for kind, values in seconds.items()}
    report["cpu_seconds"] = {kind: [round(v, 3) for v in values] for kind, values in cpu.items()}
    report["median_seconds"] = {kind: round(v, 3) for kind, v in medians.items()}
    report["median_cpu_seconds"] = {kind: round(v, 3) for kind, v in cpu_medians.items()}
    report["ratios"] = {
        "tfseg_vs_lesson": round(medians["lesson"] / medians["tfseg"], 2),
        "tfseg_vs_minimal_tf_data": round(medians["minimal"] / medians["tfseg"], 2),
        "check_share_of_tfseg": round(medians["check"] / medians["tfseg"], 2),
        "tfseg_vs_lesson_cpu": round(cpu_medians["lesson"] / cpu_medians["tfseg"], 2),
        "tfseg_vs_minimal_tf_data_cpu": round(cpu_medians["minimal"] / cpu_medians["tfseg"], 2),
        "check_share_of_tfseg_cpu": round(cpu_medians["check"] / cpu_medians["tfseg"], 2),
    }
    if args.baseline:
        report["baseline"] = args.baseline
        report["ratios"]["tfseg_vs_baseline"] = round(medians["baseline"] / medians["tfseg"], 2)
        report["ratios"]["tfseg_vs_baseline_cpu"] = round(cpu_medians["baseline"] / cpu_medians["tfseg"], 2)
    report["load_average_at_end"] = load_average()
    return report


def cold_markdown(report: dict) -> str:
    from machine import header, markdown_table

    med = report["median_seconds"]
    names = {
        "lesson": "lesson: scikit-image imread + resize loop",
        "tfseg": "tfseg: load_dataset for train, val, test (check + 3 openings + decode + resize)",
        "check": "tfseg: open_source alone (the up-front check)",
        "minimal": "minimal tf.data: decode + resize, no check, no splits",
    }
    if "baseline" in med:
        names["baseline"] = f"tfseg loader of {report['baseline']} (same calls as the tfseg row)"
    cpu = report["median_cpu_seconds"]
    rows = [{"loader": names[k], "wall s": med[k], "images/s": round(report["count"] / med[k]),
             "wall vs lesson": round(med["lesson"] / med[k], 2), "CPU s": cpu[k],
             "CPU vs lesson": round(cpu["lesson"] / cpu[k], 2)} for k in names]
    return "\n".join([
        header(report), "", f"`uptime`: {report['uptime']}", "",
        f"Cold load (fresh process each, imports excluded) of {report['count']} PH2-size samples (768x560 BMP, "
        f"every third mask 1-bit) at {report['image_size']} px, median of {len(report['seconds']['lesson'])}:", "",
        markdown_table(rows, ["loader", "wall s", "images/s", "wall vs lesson", "CPU s", "CPU vs lesson"]), "",
        "CPU s: CPU seconds of all the process's threads (less sensitive than wall time to other load "
        "on the machine; the lesson's loop runs on one core, tf.data on all).", "",
        "Ratios: " + ", ".join(f"{k} {v}" for k, v in report["ratios"].items()), "",
        "Image resize methods (768x560 -> 256 px, one thread of calls; PSNR against Pillow's Lanczos):", "",
        markdown_table(report["resize"], ["method", "images_per_second", "psnr_db_vs_lanczos"]),
    ])


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
    if args.worker:
        return worker(args)
    if args.ph2_cold:
        from machine import write_json

        report = cold_load(args)
        print(cold_markdown(report))
        if args.out:
            write_json(args.out, report)
        return None
    import tensorflow as tf  # noqa: F401 - imported before the clock starts: not part of what is measured

    from tfseg.data import open_source
    from tfseg.data.sources import source_kinds
    from tfseg.data.tfrecord import write_shards

    source_kinds()

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
