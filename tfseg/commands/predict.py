"""`tfseg predict`: masks and outline overlays for image files, at their original sizes."""

from __future__ import annotations

import collections
import concurrent.futures
import io
import os

import numpy as np

from tfseg import fileio
from tfseg.errors import DataError, TfsegError

WRITER = "tfseg predict"
WRITER_THREADS = 2  # PNG/JPEG encoding and file writes, overlapping the model's next batch
OVERLAY_FORMATS = ("jpg", "png")
# JPEG at quality 90 without chroma subsampling: the 1-pixel red outline stays sharp and red,
# a 768x560 photo's overlay is ~5x smaller than its PNG and encodes several times faster.
JPEG_QUALITY = 90
MAX_PENDING_WRITES = 16  # images held for writing at most (bounds memory on large images)


def register(subparsers):
    import argparse

    parser = subparsers.add_parser(
        "predict",
        help="predict masks for images: <stem>_mask.png and <stem>_overlay.jpg",
        description="Predict with a model.keras, a run folder, a SavedModel (version or base folder) or a "
                    ".tflite file. Writes <stem>_mask.png (0/255 for one class, class ids otherwise) and "
                    "<stem>_overlay.jpg (predicted outline in red) at each image's original size.",
    )
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="model.keras | RUN_DIR (of --folds K: the folds' ensemble) | SavedModel folder | "
                             "model.tflite")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    parser.add_argument("--out", default="predictions", metavar="DIR", help="output folder (default: predictions)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per model call (default 8)")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="binary mask = probability >= T (default 0.5; a SavedModel: the threshold it was "
                             "exported with)")
    parser.add_argument("--overlays", action=argparse.BooleanOptionalAction, default=True,
                        help="also write <stem>_overlay.jpg, the image with the predicted outline (default: yes; "
                             "--no-overlays writes the masks only)")
    parser.add_argument("--overlay-format", default="jpg", choices=OVERLAY_FORMATS,
                        help="overlay files: jpg (default; JPEG quality 90, photos) or png (lossless, slower)")
    add_tiling_flags(parser)
    add_cleanup_flags(parser, "default: none; a SavedModel: as it was exported")
    parser.add_argument("--scale", type=float, default=None, metavar="X",
                        help="with sliding windows: resize images by X first (default: the run's --scale, else 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace masks and overlays an earlier tfseg predict wrote in DIR "
                             "(files tfseg did not write, and the inputs, are never replaced)")
    parser.set_defaults(run=run)
    return parser


def add_tiling_flags(parser):
    """``--tiled/--no-tiled`` and ``--tta`` (shared by predict and evaluate)."""
    import argparse

    parser.add_argument("--tiled", action=argparse.BooleanOptionalAction, default=None,
                        help="predict whole images at native resolution by sliding window of the model's input "
                             "size (default: when the model's run folder trained on --patch-size)")
    parser.add_argument("--tta", default=None, choices=("none", "flips"),
                        help="test-time augmentation: flips averages the image and its left-right and up-down "
                             "flips (3x the time; default: none; a SavedModel: as it was exported)")


def add_cleanup_flags(parser, default: str):
    """``--keep-largest``, ``--min-size N``, ``--fill-holes`` (predict, evaluate, export): :func:`cleanup_of`."""
    import argparse

    parser.add_argument("--keep-largest", action=argparse.BooleanOptionalAction, default=None,
                        help="clean-up: keep only the largest 8-connected component of each class (" + default + ")")
    parser.add_argument("--min-size", type=int, default=None, metavar="N",
                        help="clean-up: drop components of each class under N pixels (0: none; " + default + ")")
    parser.add_argument("--fill-holes", action=argparse.BooleanOptionalAction, default=None,
                        help="clean-up: fill background enclosed by one class with that class (" + default + ")")


def cleanup_of(args):
    """The clean-up flags given (``{"keep_largest": ..., "min_size": ..., "fill_holes": ...}``, ``None``: not given)."""
    return {"keep_largest": args.keep_largest, "min_size": args.min_size, "fill_holes": args.fill_holes}


def run(args):
    from tfseg import outputs as outputs_module
    from tfseg.segment import check_threshold
    from tfseg import progress
    from tfseg.inference import list_images, load_predictor, predict_files
    from tfseg.masks import written_mask
    from tfseg.viz import outline_overlay, outline_width

    if args.threshold is not None:
        check_threshold(args.threshold)
    if args.batch_size < 1:
        raise TfsegError(f"--batch-size {args.batch_size}: must be a positive integer")
    paths = list_images(args.inputs)
    _check_unique_stems(paths)
    # Every output checked before the model is even loaded: no input, no file tfseg did not write,
    # nothing of its own replaced without --overwrite, never the run folder.
    outputs = {path: (f"{_stem(path)}_mask.png", f"{_stem(path)}_overlay.{args.overlay_format}") for path in paths}
    names = [name for pair in outputs.values() for name in (pair if args.overlays else pair[:1])]
    outputs_module.check_output_folder(args.out)
    outputs_module.refuse_run_folder(args.out)
    outputs_module.check_targets(args.out, names, args.overwrite, inputs=paths)
    predictor = load_predictor(args.model, tiled=args.tiled, tta=args.tta, scale=args.scale, cleanup=cleanup_of(args))
    counter = progress.bar(len(paths), "predicting", unit="image")

    def write(path, image, mask, num_classes):
        # Runs on a writer thread: PNG/JPEG encoding releases the GIL, so it overlaps the next model call.
        mask_name, overlay_name = outputs[path]
        _write_png(fileio.join(args.out, mask_name), written_mask(mask, num_classes))
        if args.overlays:
            overlay = outline_overlay(image, mask > 0, color=(255, 0, 0), width=outline_width(image.shape))
            fileio.write_bytes_atomic(fileio.join(args.out, overlay_name),
                                      encode_overlay(np.asarray(overlay, dtype=np.uint8), args.overlay_format))

    done, claimed = 0, False
    pending = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=WRITER_THREADS) as pool:
        try:
            for path, image, probabilities, mask in predict_files(predictor, paths, args.batch_size,
                                                                  args.threshold):
                if not claimed:  # every image checked and the first batch predicted: claim the outputs, then write
                    claimed = True
                    outputs_module.begin_set(args.out, names, WRITER)  # the old set goes; marked unfinished
                pending.append(pool.submit(write, path, image, mask, probabilities.shape[-1]))
                while pending and (pending[0].done() or len(pending) > MAX_PENDING_WRITES):
                    pending.popleft().result()  # a failed write raises here, in order
                    done += 1
                    counter.update()
            while pending:
                pending.popleft().result()
                done += 1
                counter.update()
        finally:
            for future in pending:
                future.cancel()
    if claimed:
        outputs_module.finish_set(args.out, names)
    counter.close()
    what = "mask(s) and overlay(s)" if args.overlays else "mask(s)"
    cleaned = "" if not predictor.cleanup.enabled else f", clean-up {predictor.cleanup.describe()}"
    print(f"wrote {done} {what} to {args.out} ({predictor.kind} model {predictor.path}{cleaned})")
    return 0


def _stem(path):
    return os.path.splitext(fileio.basename(path))[0]


def _check_unique_stems(paths):
    # a.png and a.jpg (or two folders with the same names) would overwrite each other's outputs.
    seen, clashes = {}, []
    for path in paths:
        stem = os.path.splitext(fileio.basename(path))[0]
        if stem in seen:
            clashes.append((path, f"same output name '{stem}_mask.png' as {seen[stem]}"))
        seen.setdefault(stem, path)
    if clashes:
        raise DataError(f"{len(clashes)} input(s) would overwrite another's outputs; predict them separately", clashes)


def encode_overlay(rgb, overlay_format: str = "jpg") -> bytes:
    """An overlay (uint8 ``[H, W, 3]``) as a file's bytes: JPEG (:data:`JPEG_QUALITY`, no chroma
    subsampling) or PNG at zlib level 1 (about 2x faster than the default level, about 10% larger)."""
    import tensorflow as tf

    if overlay_format == "jpg":
        return tf.io.encode_jpeg(rgb, quality=JPEG_QUALITY, chroma_downsampling=False).numpy()
    return tf.io.encode_png(rgb, compression=1).numpy()


def _write_png(path, array):
    """``array`` (a mask) as a PNG file."""
    from PIL import Image

    data = io.BytesIO()
    Image.fromarray(array).save(data, format="PNG")
    fileio.write_bytes_atomic(path, data.getvalue())
