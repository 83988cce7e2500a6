"""`tfseg export`: a `.keras` model (or a run folder) -> SavedModel / TFLite / ONNX.

Each export is run once against the Keras model on seeded random images at the
model's input size, and the largest absolute difference of the probabilities is
printed, so a broken conversion shows up at export time, not in production.
"""

from __future__ import annotations

import argparse

from tfseg.errors import TfsegError


def register(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="export a model for serving: SavedModel (TF Serving), TFLite or ONNX",
        description="Export a .keras model (or a run folder's model.keras). saved_model: --out is the "
                    "TF Serving model base path and the model goes to --out/<version>; tflite/onnx: "
                    "--out is a folder (-> model[_QUANTIZE].tflite / model.onnx) or a file name.",
    )
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="model.keras file or RUN_DIR (the RUN_DIR of --folds K: one SavedModel averaging "
                             "the folds)")
    parser.add_argument("--out", required=True, metavar="DIR", help="export folder (or .tflite/.onnx file)")
    parser.add_argument("--version", type=int, default=None, metavar="N",
                        help="SavedModel version folder (default: next free number, from 1)")
    parser.add_argument("--format", default="saved_model", choices=("saved_model", "tflite", "onnx"))
    parser.add_argument("--quantize", default="none", choices=("none", "float16", "dynamic"),
                        help="TFLite weight quantization (default: none = float32)")
    parser.add_argument("--threshold", type=float, default=0.5, metavar="T",
                        help="binary mask threshold baked into the SavedModel's 'mask' output (default 0.5)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version or file")
    parser.add_argument("--tiled", action=argparse.BooleanOptionalAction, default=None,
                        help="SavedModel: serve whole images by sliding window in the graph (default: when the "
                             "run folder trained on patches, with its --scale)")
    parser.add_argument("--tta", default="none", choices=("none", "flips"),
                        help="SavedModel: average the image and its left-right and up-down flips in the graph "
                             "(3x the time; default: none)")
    parser.add_argument("--probabilities-png", action="store_true",
                        help="SavedModel: the image signatures also return probabilities_png_bytes (8-bit "
                             "probabilities as PNG; default: masks only in PNG)")
    from tfseg.commands.predict import add_cleanup_flags

    add_cleanup_flags(parser, "SavedModel: stored with it and applied by tfseg predict and tfseg.inference, "
                              "not by the serving graph; default: none")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from tfseg import export
    from tfseg.saving import load_keras_model, resolve_model_path

    if args.quantize != "none" and args.format != "tflite":
        raise TfsegError(f"--quantize {args.quantize}: only applies to --format tflite")
    if args.version is not None and args.format != "saved_model":
        raise TfsegError(f"--version {args.version}: only applies to --format saved_model")
    kind, path = resolve_model_path(args.model)
    if kind != "keras":
        raise TfsegError(f"--model {args.model}: export needs a .keras model (or a run folder with model.keras), "
                         f"found a {kind}")
    model = load_keras_model(path, compile=False)
    from tfseg.commands.predict import cleanup_of
    from tfseg.postprocess import as_cleanup

    cleanup = as_cleanup(cleanup_of(args))
    for flag, value in (("--tiled", args.tiled), ("--tta", args.tta != "none"), (cleanup.describe(), cleanup.enabled),
                        ("--probabilities-png", args.probabilities_png)):
        if value and args.format != "saved_model":
            raise TfsegError(f"{flag}: only applies to --format saved_model ({args.format} holds the bare model)")

    if args.format == "saved_model":
        from tfseg.saving import locate_model

        run_config = locate_model(path)[1]
        patch_trained = run_config is not None and run_config.patch_size is not None
        tiled = patch_trained if args.tiled is None else args.tiled
        scale = run_config.scale if patch_trained and tiled else 1.0
        written = export.export_saved_model(model, args.out, version=args.version, overwrite=args.overwrite,
                                            threshold=args.threshold, tiled=tiled, scale=scale, tta=args.tta,
                                            cleanup=cleanup, probabilities_png=args.probabilities_png,
                                            **(run_config.pixel_options() if run_config is not None else {}))
        if cleanup.enabled:
            print(f"clean-up {cleanup.describe()} stored with the export: tfseg predict and tfseg.inference apply it; "
                  "the serving graph's mask is without it (see docs/guide.md, 'Clean-up of masks')")
        if tiled or args.tta != "none":
            diff, size = export.whole_image_max_abs_diff(model, written)
            print(f"exported {written}")
            _print_serving_files(args.out, written)
            how = (f"by sliding window (window {'x'.join(map(str, export.model_input_size(model)))}, scale {scale:g})"
                   if tiled else "resized to the model's input")
            print(f"serving_default and serving_bytes predict whole images {how}"
                  + (", with flip TTA" if args.tta != "none" else ""))
            print(f"check: max |SavedModel serving_default - tfseg predict's path| probability = {diff:.3g} "
                  f"on a random {size[0]}x{size[1]} image")
            return 0
        diff, what = export.saved_model_max_abs_diff(model, written), "SavedModel serving_default"
    elif args.format == "tflite":
        suffix = "" if args.quantize == "none" else f"_{args.quantize}"
        written = export.export_tflite(model, _file_path(args.out, f"model{suffix}.tflite"),
                                       quantize=args.quantize, overwrite=args.overwrite)
        diff, what = export.tflite_max_abs_diff(model, written), f"TFLite ({args.quantize})"
    else:
        written = export.export_onnx(model, _file_path(args.out, "model.onnx"), overwrite=args.overwrite)
        diff, what = export.onnx_max_abs_diff(model, written), "ONNX (onnxruntime)"
    height, width = export.model_input_size(model)
    print(f"exported {written}")
    if args.format == "saved_model":
        _print_serving_files(args.out, written)
    print(f"check: max |{what} - Keras| probability = {diff:.3g} on 2 random {height}x{width} images")
    return 0


def _print_serving_files(export_dir: str, written: str) -> None:
    from tfseg import export, fileio

    if export.warmup_available():
        print(f"warm-up: {fileio.join(written, 'assets.extra', export.WARMUP_FILE)} (one request per signature)")
    else:
        print(f"warm-up: skipped, tensorflow-serving-api is not installed: {export.SERVING_EXTRA}")
    batching = fileio.join(export_dir, export.BATCHING_FILE)
    if fileio.exists(batching):
        print(f"batching: {batching} (tensorflow_model_server --enable_batching --batching_parameters_file=...)")


def _file_path(out: str, default_name: str) -> str:
    # --out may name the file itself or the folder to put it in.
    if out.endswith((".tflite", ".onnx")):
        return out
    from tfseg import fileio

    return fileio.join(out, default_name)
