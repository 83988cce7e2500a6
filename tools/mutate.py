"""Mutation testing for tfseg: plant one small bug at a time and check that a test fails.

Each mutant changes one token of one module (the operators, constants and names a
plausible slip would change), in a scratch copy of the repository; the module's own
test files then run against that copy. A mutant is *killed* when a test fails, and
*survives* when every test passes: then either a test is missing or the mutant is
equivalent (it cannot change any observable result). See docs/testing.md.

Mutations (one token each):
    comparisons   < <=  > >=  == !=  (each to its neighbour)
    arithmetic    + -   * /          (binary; ``*`` in ``*args`` and ``f(*, x)`` is left alone)
    booleans      and or  (swapped); ``not`` dropped; True False (swapped)
    constants     integers n -> n + 1 (0 -> 1, 1 -> 2, 2 -> 1, so also axis numbers);
                  floats x -> 2x (0.0 -> 1.0); floats below 1e-3 (round-off guards) are left alone
    names         round floor ceil (round <-> floor, ceil -> floor); maximum <-> minimum; max <-> min
    strings       "nearest" <-> "bilinear" (any case); "big" <-> "little"

Usage (from the repository root; one process, tests run one mutant at a time):
    python tools/mutate.py                       # every target, every mutant
    python tools/mutate.py --sample 40 --seed 0  # at most 40 mutants per target, drawn at random
    python tools/mutate.py --targets splits,augment --json mutants.json
    python tools/mutate.py --list                # the mutants, without running anything

The runner imports TensorFlow and Keras once, then forks one child per mutant, which
imports tfseg from the scratch copy and runs pytest (``-x``: the first failure kills).
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import tokenize
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

# target name -> (module file, functions and constants to mutate (None = the whole module), test files,
#                 extra pytest args)
TARGETS: Dict[str, Tuple[str, Optional[Sequence[str]], Sequence[str], Sequence[str]]] = {
    "metrics": ("tfseg/metrics.py", None, ["tests/test_metrics.py"], ["-k", "not jax"]),
    "losses": ("tfseg/losses.py", None, ["tests/test_losses.py"], []),
    "layers": ("tfseg/layers.py", None, ["tests/test_layers.py", "tests/test_batchnorm.py"], []),
    "splits": ("tfseg/data/splits.py", None, ["tests/test_splits.py"], []),
    "ensemble": ("tfseg/models/ensemble.py", None, ["tests/test_fold_ensemble.py"], ["-m", "not slow"]),
    "cv_runs": ("tfseg/training/cv.py", ["is_cv_run", "fold_runs"], ["tests/test_fold_ensemble.py"],
                ["-m", "not slow"]),
    "augment": ("tfseg/data/augment.py", None, ["tests/test_augment.py"], []),
    "pipeline_resize": (
        "tfseg/data/pipeline.py",
        ["resize_example", "scale_example", "native_example", "_rgb_float", "_mask_values", "_image_rank3"],
        ["tests/test_pipeline.py"],
        # the tests that resize (the others stream whole data sets: minutes per mutant on 2 cores)
        ["-k", "resize or resizes or nearest or antialias or pass_through or encoding or impossible or "
               "multi_class or odd_sized or folder_of_png or synthetic_batches or scale_example or cut_at or cut_on"],
    ),
    # The one path from an image to its mask, module by module (docs/ARCHITECTURE.md), with the tests
    # of each step: the parity matrix (tests/test_segment.py) on the Keras kind where the step is kind-blind.
    "pixels": (
        "tfseg/data/pixels.py", None,
        ["tests/test_segment.py", "tests/test_pipeline.py", "tests/test_patches.py", "tests/test_bands.py"],
        ["-k", "keras or resize or resizes or antialias or pass_through or scale_example or rescale or scale "
               "or normalisation or raw_values"],
    ),
    # Data images: which files keep their bands, reading them, normalisation and band statistics.
    "bands": ("tfseg/data/bands.py", None, ["tests/test_bands.py"], ["-m", "not slow"]),
    "pipeline_normalization": ("tfseg/data/pipeline.py", ["resolve_normalization"], ["tests/test_bands.py"],
                               ["-m", "not slow"]),
    "config_models": ("tfseg/config.py", ["model_options", "normalization_kind"],
                      ["tests/test_encoder_bands.py", "tests/test_models.py"],
                      ["-k", "standardized or train_config or foreign or model_setting or old_run_config"]),
    "tiling": ("tfseg/tiling.py", None, ["tests/test_tiling.py", "tests/test_segment.py"],
               ["-k", "not jax and (not every_model_kind or keras)"]),
    "patches": ("tfseg/data/patches.py", None, ["tests/test_patches.py"], []),
    "segment": ("tfseg/segment.py", None, ["tests/test_segment.py"], ["-k", "not every_model_kind or keras"]),
    "inference": ("tfseg/inference.py", None, ["tests/test_segment.py", "tests/test_predict.py"],
                  ["-k", "not every_model_kind or not keras"]),
    # what issue 26 changed in metrics, losses and layers: the class count read from y_pred, the compile names,
    # the size check of a model of any size
    "metrics_classes": (
        "tfseg/metrics.py",
        ["prediction_classes", "_check_num_classes", "_CountMetric._build", "_CountMetric.update_state",
         "_CountMetric.result", "_CountMetric._selected_classes", "_compile_names"],
        ["tests/test_metrics.py", "tests/test_keras_native.py"],
        ["-k", "not jax and not script and not three_class_model and not old_metric"],
    ),
    "losses_classes": (
        "tfseg/losses.py",
        ["_check", "bce_dice_loss", "cce_dice_loss", "_at_least_two", "_FunctionLoss._validate",
         "_FunctionLoss.call", "_FunctionLoss.get_config", "get_loss", "_compile_names", "IgnoreClassLoss.__call__"],
        ["tests/test_losses.py", "tests/test_keras_native.py"],
        ["-k", "not script and not three_class_model and not old_metric"],
    ),
    "layers_size_check": (
        "tfseg/layers.py",
        ["SizeCheck.__init__", "SizeCheck._check_static", "SizeCheck.build", "SizeCheck.call",
         "SizeCheck.compute_output_shape", "SizeCheck.get_config"],
        ["tests/test_keras_native.py"],
        ["-k", "size or round_trips_through_its_config"],
    ),
    # training phases: the learning-rate schedule of each phase, the freeze schedule, resuming into a phase
    "training_phases": (
        "tfseg/training/fit.py",
        ["learning_rate_schedule", "training_phases", "remaining_phases", "steps_per_epoch", "compile_model"],
        ["tests/test_training.py", "tests/test_training_phases.py", "tests/test_plain_keras.py"],
        ["-k", "freeze or cosine or lr_schedule or infinite or learning_rate or compiles_it_back or one_epoch or steps_per_epoch or final"],
    ),
    # the phase loop and the callback list: a (slow) two-phase run exercises them
    "training_fit_phases": (
        "tfseg/training/fit.py",
        ["fit_phases", "make_callbacks"],
        ["tests/test_training_phases.py"],
        ["-m", "slow or not slow", "-k", "early_stop or callback_list"],
    ),
    "training_callbacks": (
        "tfseg/training/callbacks.py",
        ["not_finite", "weights_finite", "inference_model", "BestCheckpoint.on_epoch_end", "LearningRateLog.on_epoch_end",
         "HistoryLog.on_epoch_end", "_csv_value", "NaNGuard.on_train_batch_end", "NaNGuard.on_epoch_end",
         "Throughput.on_train_begin", "Throughput.on_epoch_begin", "Throughput.on_train_batch_end",
         "Throughput.on_epoch_end", "Throughput.images_per_second", "Throughput.get_state", "Throughput.set_state",
         "CALLBACK_STATE", "RunBackup.on_train_begin", "RunBackup.on_epoch_end", "RunBackup.save",
         "restore_weights", "_plain"],
        ["tests/test_training.py", "tests/test_training_phases.py", "tests/test_resume.py", "tests/test_keras_compat.py",
         "tests/test_plain_keras.py"],
        ["-k", "throughput or truncate or infinite or backup or callback_state or compile_state or checkpoint or nan_guard or final_phase or resuming"],
    ),
    "export_serving": (
        "tfseg/export.py",
        ["serving_functions", "signatures", "saved_model_settings", "keras_export_archive", "SERVING_DEFAULT",
         "SERVING_BYTES", "SERVING_WINDOWS", "SETTINGS_COLLECTION"],
        ["tests/test_segment.py", "tests/test_serving_parity.py", "tests/test_export.py"],
        ["-k", "(not every_model_kind or saved_model) and not onnx"],
    ),
    # The clean-up of predicted masks (its rules at their edges; the paths that call it are integration tests).
    "postprocess": ("tfseg/postprocess.py", None, ["tests/test_postprocess.py"],
                    ["-k", "not cli and not evaluate and not export and not multiclass_predictions"]),
    # --class-weights: parsing, the median-frequency rule and the counting it shares with inspect
    "balance": ("tfseg/balance.py", None, ["tests/test_class_weights.py"], ["-m", "not slow"]),
    "borders": ("tfseg/data/borders.py", ["parse_border_weight", "objects", "border_weight_map"],
                ["tests/test_border_weights.py"], ["-m", "not slow", "-k", "not pipeline and not reach"]),
    "encoder_bands": (
        "tfseg/models/encoders.py",
        ["band_statistics", "_per_band", "preprocessing_layer", "adapt_first_kernel", "copy_adapted_weights",
         "check_channels", "_backbone", "imagenet_statistics_layer"],
        ["tests/test_encoder_bands.py"],
        ["-k", "not round_trips and not build_and_predict"],
    ),
    "export_tfserving": (
        "tfseg/export.py",
        ["probability_levels", "stack_planes", "png_per_image", "input_specs", "COMPACT_OUTPUTS",
         "warmup_requests", "write_warmup_requests", "rest_json", "batching_parameters", "batching_parameters_text",
         "write_batching_parameters", "BATCH_PIXELS", "MAX_BATCH_SIZE"],
        ["tests/test_serving.py"],
        ["-m", "not slow"],
    ),
    # The data side's one-place rules: mask values, class ids and the ignore value, colour maps, pixels, files.
    "masks": (
        "tfseg/masks.py",
        None,
        ["tests/test_source_settings.py", "tests/test_pipeline.py", "tests/test_multiclass_data.py"],
        ["-k", "foreground or bound or fewer or uint16 or ids_beyond or int32_ids or needs_class_id or 255_border "
               "or without_raw_masks or two_colours or jpeg_mask or ignore_class_reach"],
    ),
    "pipeline_classes": (
        "tfseg/data/pipeline.py",
        ["_checked_class_ids", "resolve_num_classes", "open_dataset_source", "MASK_DTYPE"],
        ["tests/test_source_settings.py", "tests/test_pipeline.py"],
        ["-k", "ignore_class_passes or ids_beyond or int32_ids or fewer or generated_and_tfds or opened_source "
               "or generated_at_the_pipeline_size or train_opens or smallest_synthetic or bad_file_stops"],
    ),
    "patch_centre": (
        "tfseg/data/patches.py",
        ["random_patch"],
        ["tests/test_patches.py", "tests/test_source_settings.py"],
        ["-k", "foreground or uniform or padded or same_seed or centre_on_labelled"],
    ),
    # issue 27: classes absent from truth and prediction (one rule), the bootstrap, the scores that use them
    "metrics_empty": (
        "tfseg/metrics.py",
        ["mean_over_classes", "_CountMetric._reduce", "_CountMetric.update_state", "_CountMetric.result",
         "_CountMetric.score_counts", "PixelAccuracy._reduce"],
        ["tests/test_metrics.py"],
        ["-k", "not jax and not script"],
    ),
    "stats": ("tfseg/stats.py", None, ["tests/test_stats.py"], []),
    "splits_folds": ("tfseg/data/splits.py", ["FoldSplit.__new__", "check_folds", "validate_fractions",
                                              "assign_splits", "assign_folds"],
                     ["tests/test_cross_validation.py", "tests/test_splits.py"], []),
    "evaluation_scores": (
        "tfseg/evaluation.py",
        ["ImageRows.__init__", "ImageRows.add", "per_class_scores", "summarize_rows", "write_rows_csv", "_no_score",
         "_count_values", "_split_score", "bootstrap_info", "confidence_intervals", "compare", "_json_target"],
        ["tests/test_evaluation.py"],
        ["-k", "one_rule or no_score or never_true or interval or compare"],
    ),
    "colormap": (
        "tfseg/data/colormap.py",
        None,
        ["tests/test_multiclass_data.py", "tests/test_source_settings.py"],
        ["-k", "colour or colormap"],
    ),
    "filepixels": (
        "tfseg/data/filepixels.py",
        None,
        ["tests/test_pixel_rules.py", "tests/test_decode_formats.py", "tests/test_sources_files.py",
         "tests/test_damaged_data.py"],
        ["-k", "not fit and not train and not split"],
    ),
    # EXIF orientation: the graph's reading of the tag and its turn, and the Pillow side's rule
    "exif_graph": (
        "tfseg/data/decode.py",
        ["_read", "_exif_segment", "exif_orientation", "orient", "upright"],
        ["tests/test_exif_orientation.py"],
        ["-k", "graph_decoders or reads_the_tag or other_bytes or walks_segments"],
    ),
    "exif_pillow": (
        "tfseg/data/filepixels.py",
        ["orientation", "displayed_size", "exif_block_orientation", "graph_orients", "upright"],
        ["tests/test_exif_orientation.py"],
        ["-k", "pillow_side or mask_files or load_aligned or invalid_orientation"],
    ),
    "filecheck": (
        "tfseg/data/filecheck.py",
        None,
        ["tests/test_pixel_rules.py", "tests/test_damaged_data.py", "tests/test_sources_files.py",
         "tests/test_source_settings.py"],
        ["-k", "damaged or broken or truncated or 16bit or graph_decoder or rechecking or palette_and or in_place "
               "or handles_rgba or interlaced or colour_bmp or jpegs_of_any_size or opaque_rgba"],
    ),
    "filesource": (
        "tfseg/data/filesource.py",
        ["mask_value_problem", "_finish", "_same_shape", "is_image_file", "is_ignored"],
        ["tests/test_sources_files.py", "tests/test_multiclass_data.py", "tests/test_source_settings.py"],
        ["-k", "handles_rgba or mask_threshold or multi_class_folder or 255 or jpeg_mask or ph2_and_mads "
               "or bad_folder or order_asked or smaller_class_id_mask or aspect_ratio"],
    ),
    "sources": (
        "tfseg/data/sources.py",
        None,
        ["tests/test_source_settings.py", "tests/test_sources_tfds.py"],
        ["-k", "not worked and not fit and not train and not shipped and not cli"],
    ),
    # what tfseg may write and replace, the one folder rule, temporaries, a full disk, the run lock
    "fileio": ("tfseg/fileio.py", None, ["tests/test_fileio.py", "tests/test_stale_temporaries.py"],
               ["-k", "not truncated and not killed_run_left and not bare_relative"]),
    "outputs": ("tfseg/outputs.py", None, ["tests/test_fileio.py"], []),
    "locks": ("tfseg/locks.py", None, ["tests/test_fileio.py", "tests/test_run_lock.py"],
              ["-k", "not two_trains and not force_new and not fails_before_writing"]),
}

SWAPS = {
    "<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==",
    "+": "-", "-": "+", "*": "/", "/": "*",
    "and": "or", "or": "and", "True": "False", "False": "True",
    "round": "floor", "floor": "round", "ceil": "floor",
    "maximum": "minimum", "minimum": "maximum", "max": "min", "min": "max",
}
STRING_SWAPS = {"nearest": "bilinear", "bilinear": "nearest", "NEAREST": "BILINEAR", "BILINEAR": "NEAREST",
                "big": "little", "little": "big"}
TIMEOUT_S = 600


@dataclass
class Mutant:
    target: str
    path: str
    line: int
    col: int
    original: str
    replacement: str
    source_line: str
    outcome: str = ""
    seconds: float = 0.0

    def label(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.original!s} -> {self.replacement or '(dropped)'}"


def function_lines(tree: ast.AST, names: Optional[Sequence[str]]) -> Optional[List[Tuple[int, int]]]:
    """Line ranges of the named functions, methods (``Class.method``) and module constants (None: the
    whole module)."""
    if names is None:
        return None
    ranges = [(node.lineno, node.end_lineno) for node in ast.walk(tree)
              if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names]
    methods = {f"{cls.name}.{node.name}": node for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef)
               for node in cls.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    ranges += [(methods[name].lineno, methods[name].end_lineno) for name in names if name in methods]
    constants = {target.id: node for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)}
    ranges += [(constants[name].lineno, constants[name].end_lineno) for name in names if name in constants]
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)} | set(constants) | set(methods)
    missing = set(names) - defined
    if missing:
        raise SystemExit(f"mutate: functions not found: {', '.join(sorted(missing))}")
    return ranges


def docstring_lines(tree: ast.AST) -> set:
    """Lines of every docstring (never mutated)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def number_mutant(text: str) -> Optional[str]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, bool) or isinstance(value, complex):
        return None
    if isinstance(value, int):
        return {0: "1", 1: "2", 2: "1"}.get(value, str(value + 1))
    if value == 0.0:
        return "1.0"
    if abs(value) < 1e-3:
        return None
    return repr(value * 2.0)


def find_mutants(target: str, root: str = ".") -> List[Mutant]:
    path, functions, _, _ = TARGETS[target]
    with open(os.path.join(root, path), encoding="utf-8") as handle:
        source = handle.read()
    tree = ast.parse(source)
    ranges = function_lines(tree, functions)
    skip = docstring_lines(tree)
    lines = source.splitlines()
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    mutants = []
    for index, token in enumerate(tokens):
        line, col = token.start
        if line > len(lines) or line in skip or (ranges is not None and not any(a <= line <= b for a, b in ranges)):
            continue
        text = lines[line - 1]
        stripped = text.strip()
        if stripped.startswith(("import ", "from ", "@", "raise ", "__all__")):
            continue
        previous = tokens[index - 1].string if index else ""
        replacement = None
        if token.type == tokenize.OP and token.string in SWAPS:
            if token.string in ("*", "-", "+") and previous in ("(", ",", "[", "=", "", ":"):
                if token.string == "*":
                    continue  # *args / keyword-only marker
                if token.string == "+":
                    continue
            replacement = SWAPS[token.string]
        elif token.type == tokenize.NAME and token.string in SWAPS:
            if token.string in ("round", "floor", "ceil", "maximum", "minimum") and previous != ".":
                if token.string != "round":  # round() the builtin may also be swapped
                    continue
            if token.string in ("max", "min") and previous == ".":
                continue  # a method, e.g. array.max()
            replacement = SWAPS[token.string]
        elif token.type == tokenize.NAME and token.string == "not":
            replacement = ""
        elif token.type == tokenize.NUMBER:
            replacement = number_mutant(token.string)
        elif token.type == tokenize.STRING:
            inner = token.string.strip("\"'")
            if inner in STRING_SWAPS and token.string[0] in "\"'":
                replacement = token.string.replace(inner, STRING_SWAPS[inner])
        if replacement is None:
            continue
        mutants.append(Mutant(target, path, line, col, token.string, replacement, stripped))
    return mutants


def mutated_source(source: str, mutant: Mutant) -> str:
    lines = source.splitlines(keepends=True)
    text = lines[mutant.line - 1]
    end = mutant.col + len(mutant.original)
    assert text[mutant.col:end] == mutant.original, (mutant.label(), text)
    new = text[: mutant.col] + mutant.replacement + text[end:]
    if mutant.replacement == "":  # dropped `not `: also drop the space after it
        new = text[: mutant.col] + text[end:].lstrip(" ")
    lines[mutant.line - 1] = new
    return "".join(lines)


def run_tests(copy: str, tests: Sequence[str], extra: Sequence[str]) -> str:
    """Fork, run pytest on the scratch copy; ``killed``/``survived``/``timeout``."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.chdir(copy)
            sys.path.insert(0, copy)
            sys.path.insert(0, os.path.join(copy, "tests"))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest

            code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *extra, *tests])
        except BaseException:  # noqa: BLE001 - an import error of the mutant is a failing test too
            code = 1
        os._exit(int(code))
    deadline = time.time() + TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.05)
    code = os.waitstatus_to_exitcode(status)
    if code == 5:  # nothing collected: a broken selection, not a result
        return "error"
    return "survived" if code == 0 else "killed"


def scratch_copy(root: str) -> str:
    copy = tempfile.mkdtemp(prefix="tfseg-mutate-")
    for name in ("tfseg", "tests", "setup.cfg"):
        source = os.path.join(root, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(copy, name), ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy)
    return copy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated of {', '.join(TARGETS)}")
    parser.add_argument("--sample", type=int, default=None, help="at most N mutants per target, drawn with --seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="run only mutants whose label contains one of these comma-separated texts "
                        "(e.g. tfseg/metrics.py:206:9:)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--json", default=None, help="write every mutant and its outcome to this file")
    args = parser.parse_args(argv)
    root = os.getcwd()
    chosen = []
    for target in args.targets.split(","):
        if target not in TARGETS:
            parser.error(f"--targets: unknown {target!r}")
        found = find_mutants(target, root)
        if args.sample is not None and len(found) > args.sample:
            picked = sorted(random.Random(f"{args.seed}:{target}").sample(range(len(found)), args.sample))
            sampled = [found[i] for i in picked]
        else:
            sampled = found
        if args.only:
            wanted = args.only.split(",")
            sampled = [m for m in sampled if any(text in m.label() for text in wanted)]
        print(f"{target}: {len(found)} mutants, running {len(sampled)}", flush=True)
        chosen.extend(sampled)
    if args.list:
        for mutant in chosen:
            print(f"  {mutant.label():70s}  | {mutant.source_line[:70]}")
        return 0

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # noqa: F401  (imported once here; every forked child reuses it)
    import tensorflow  # noqa: F401

    copy = scratch_copy(root)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # `kill` still removes the scratch copy
    try:
        for number, mutant in enumerate(chosen, 1):
            _, _, tests, extra = TARGETS[mutant.target]
            target_file = os.path.join(copy, mutant.path)
            with open(target_file, encoding="utf-8") as handle:
                original = handle.read()
            new_source = mutated_source(original, mutant)
            start = time.time()
            try:
                compile(new_source, mutant.path, "exec")
            except SyntaxError:
                mutant.outcome = "invalid"
            else:
                with open(target_file, "w", encoding="utf-8") as handle:
                    handle.write(new_source)
                try:
                    mutant.outcome = run_tests(copy, tests, extra)
                finally:
                    with open(target_file, "w", encoding="utf-8") as handle:
                        handle.write(original)
            mutant.seconds = round(time.time() - start, 1)
            print(f"[{number}/{len(chosen)}] {mutant.outcome:8s} {mutant.seconds:6.1f}s  {mutant.label()}"
                  f"  | {mutant.source_line[:60]}", flush=True)
    finally:
        shutil.rmtree(copy, ignore_errors=True)

    print("\ntarget              tried  killed  survived  other")
    for target in dict.fromkeys(m.target for m in chosen):
        rows = [m for m in chosen if m.target == target and m.outcome != "invalid"]
        count = {o: sum(m.outcome == o for m in rows) for o in ("killed", "survived")}
        other = len(rows) - count["killed"] - count["survived"]
        print(f"{target:18s} {len(rows):6d}  {count['killed']:6d}  {count['survived']:8d}  {other:5d}")
    survivors = [m for m in chosen if m.outcome == "survived"]
    if survivors:
        print("\nsurvivors:")
        for mutant in survivors:
            print(f"  {mutant.label()}  | {mutant.source_line}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(m) for m in chosen], handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
