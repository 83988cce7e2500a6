"""The benchmark scripts run (``--quick``), write their JSON and table, and their helpers compute right.

The numbers themselves are not asserted (they depend on the machine); what is
asserted is what a reader of BENCHMARKS.md relies on: every row measured, the
command recorded, ratios computed from the rows, the PH2 files readable by ``ph2:``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import input_pipeline  # noqa: E402
import training_throughput  # noqa: E402


def run_quick(script: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{script}.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", "--out", str(out), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["command"].startswith(f"python benchmarks/{script}.py --quick")
    assert report["command"] in done.stdout  # the table's header names the command that reproduces it
    assert report["machine"]["cores"] == os.cpu_count()
    assert isinstance(report["load_average_at_end"], float)
    return report


@pytest.mark.slow
def test_training_throughput_quick_measures_every_row(tmp_path):
    report = run_quick("training_throughput", tmp_path, "--ops")
    rows = [r for r in report["rows"] if r["options"] == ""]
    plain = [r for r in report["rows"] if r["options"] == training_throughput.PLAIN]
    assert [(r["model"], r["precision"]) for r in rows] == [("unet", "float32"), ("unet", "mixed_bfloat16")]
    # the plain Keras U-Net measured beside each tfseg U-Net row, and tfseg's rate over it
    assert [r["precision"] for r in plain] == ["float32", "mixed_bfloat16"]
    for own, other in zip(rows, plain):
        assert other["images_per_second"] > 0
        assert own["vs_tfseg"] == pytest.approx(own["images_per_second"] / other["images_per_second"], abs=0.01)
    for row in rows:
        assert row["images_per_second"] > 0
        assert isinstance(row["dice"], float)  # scored (a benchmark figure: its value is not a contract)
        assert row["steps"] == 4 and row["timed_steps"] == 2
        assert row["policy"] == row["precision"]
    assert rows[0]["vs_float32"] == 1.0
    assert rows[1]["vs_float32"] == pytest.approx(rows[1]["images_per_second"] / rows[0]["images_per_second"],
                                                  abs=0.01)
    layers = report["layers"]["rows"]
    assert all(r["float32_ms"] > 0 and r["bfloat16_ms"] > 0 for r in layers)
    census = report["op_census"]["feature_map_ops"]
    # tfseg's BatchNorm keeps bfloat16 feature maps in bfloat16 (Keras' own computes them in float32)
    assert census["BatchNorm"].get("bfloat16", 0) > 0 and census["BatchNorm"].get("float32", 0) == 0
    assert census["Conv2D"].get("bfloat16", 0) > 0 and census["Conv2D"].get("float32", 0) == 0
    names = [r["layer (forward+backward)"] for r in layers]
    assert any(n.startswith("keras.layers.BatchNormalization") for n in names)
    assert any(n.startswith("tfseg.layers.BatchNorm") for n in names)


@pytest.mark.slow
def test_input_pipeline_quick_compares_the_loaders(tmp_path):
    report = run_quick("input_pipeline", tmp_path)
    rows = report["rows"]
    assert len(rows) == 8
    assert rows[0]["loader"].startswith("lesson") and rows[0]["images"] == report["count"]
    assert all(row["images_per_second"] > 0 for row in rows)
    ratios = report["ratios"]
    # ratios are rounded to 2 decimals, rates to 3 significant digits
    assert ratios["uncached_pipeline_vs_lesson"] == pytest.approx(
        rows[2]["images_per_second"] / rows[0]["images_per_second"], rel=0.01, abs=0.01)
    assert ratios["training_input_vs_model"] == pytest.approx(
        rows[5]["images_per_second"] / rows[6]["images_per_second"], rel=0.01, abs=0.01)


def test_ph2_folder_is_read_by_the_ph2_source_and_the_lesson_loader(tmp_path):
    from tfseg.data import open_source

    root = input_pipeline.write_ph2_folder(tmp_path, count=3, width=40, height=30, seed=1)
    source = open_source(f"ph2:{root}")
    assert source.ids() == ["IMD002", "IMD003", "IMD004"]
    assert source.problems() == []
    images, masks = input_pipeline.lesson_loader(root, 16)
    assert images.shape == (3, 16, 16, 3) and masks.shape == (3, 16, 16, 1)
    assert masks.dtype == bool and masks.any() and not masks.all()


def test_grid_scores_only_the_requested_rows():
    args = training_throughput.parse_args(["--models", "unet", "--sizes", "128,256", "--xla-sizes", "128",
                                           "--dice-sizes", "128", "--budget", "6x12", "--speed-budget", "2x3",
                                           "--float16-budget", "2x1", "--base-filters", "8,16", "--ablations"])
    rows = training_throughput.grid(args)
    plain = [r for r in rows if r["options"] == training_throughput.PLAIN]
    # a plain Keras U-Net beside every U-Net row without XLA, except float16
    assert [(r["base_filters"], r["size"], r["precision"]) for r in plain] == [
        (w, s, p) for w in (8, 16) for s in (128, 256) for p in ("float32", "mixed_bfloat16")]
    assert not any(r["score"] for r in plain)
    rows = [r for r in rows if r["options"] != training_throughput.PLAIN]
    per_width = [(128, "off")] * 3 + [(128, "on")] * 3 + [(256, "off")] * 3
    assert [(r["size"], r["xla"]) for r in rows[:18]] == per_width * 2
    assert [r["base_filters"] for r in rows[:18]] == [8] * 9 + [16] * 9
    scored = {(r["base_filters"], r["size"], r["precision"], r["xla"]) for r in rows if r["score"]}
    assert scored == {(w, 128, p, "off") for w in (8, 16) for p in ("float32", "mixed_bfloat16")}
    assert all(r["budget"] == ((6, 12) if r["score"] else (2, 1) if r["precision"] == "mixed_float16" else (2, 3))
               for r in rows)
    # the ablation: tfseg's own BatchNorm (the default is Keras' BatchNormalization) at the largest size
    # and width, float32 and bfloat16
    assert [(r["options"], r["base_filters"], r["size"], r["precision"], r["config"]) for r in rows[18:]] == [
        ("tfseg.layers.BatchNorm", 16, 256, p, {"batch_norm_layer": "bfloat16"})
        for p in ("float32", "mixed_bfloat16")]


def test_grid_defaults_follow_tfseg_train():
    from tfseg.config import TrainConfig

    args = training_throughput.parse_args([])
    defaults = TrainConfig()
    widths = training_throughput.int_list(args.base_filters)
    assert (args.batch_size, widths[0], args.depth) == (defaults.batch_size, defaults.base_filters, defaults.depth)
    assert 16 in widths  # the lesson's reference width (16-32-64-128)


def test_speedups_compare_with_the_matching_float32_and_no_xla_rows():
    def row(precision, xla, rate):
        return {"model": "unet", "options": "", "size": 128, "precision": precision, "xla": xla,
                "images_per_second": rate}

    rows = [row("float32", "off", 10.0), row("mixed_bfloat16", "off", 15.0),
            row("float32", "on", 5.0), row("mixed_bfloat16", "on", None)]
    training_throughput.add_speedups(rows)
    assert [r["vs_float32"] for r in rows] == [1.0, 1.5, 1.0, None]
    assert [r["vs_no_xla"] for r in rows] == [1.0, 1.0, 0.5, None]


def test_cpu_bf16_flags_read_from_cpuinfo(tmp_path):
    from tfseg.precision import cpu_bf16_flags, cpu_supports_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx2\n")
    assert cpu_bf16_flags(str(info)) == ["avx512_bf16"]
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert not cpu_supports_bf16(str(info))
    assert cpu_bf16_flags(str(tmp_path / "missing")) == []


def test_markdown_table_prints_missing_values_as_dash():
    from machine import markdown_table

    table = markdown_table([{"a": 1.23456, "b": None}, {"a": 1234.4, "b": "x"}], ["a", "b"])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1.23 | - |", "| 1234 | x |"]


@pytest.mark.slow
def test_native_resolution_quick_scores_both_methods_with_and_without_tta(tmp_path):
    report = run_quick("native_resolution", tmp_path)
    rows = report["rows"]
    assert [(row["method"], row["tta"]) for row in rows] == [
        ("resize", "none"), ("resize", "flips"), ("patch", "none"), ("patch", "flips")]
    for row in rows:
        assert row["seconds_per_image"] > 0 and row["dice"] >= 0
    base = {row["method"]: row for row in rows if row["tta"] == "none"}
    assert all(isinstance(base[m]["peak_memory_mib"], float) for m in base)
    assert report["patch_minus_resize_dice"] == pytest.approx(base["patch"]["dice"] - base["resize"]["dice"],
                                                              abs=2e-3)
    flips = {row["method"]: row for row in rows if row["tta"] == "flips"}
    assert report["tta_gain"]["patch"]["dice"] == pytest.approx(flips["patch"]["dice"] - base["patch"]["dice"],
                                                                abs=2e-3)


@pytest.mark.slow
def test_predict_folder_quick_times_the_model_the_api_and_the_cli(tmp_path):
    rows = run_quick("predict_folder", tmp_path)["rows"]
    assert [row["path"] for row in rows] == ["model.predict, decoded arrays", "predict_images (API)",
                                             "tfseg predict --no-overlays (CLI)", "tfseg predict (CLI)",
                                             "tfseg predict --overlay-format png (CLI)"]
    base = rows[0]["seconds"]
    for row in rows:
        assert row["seconds"] > 0
        assert row["throughput_vs_model_predict"] == pytest.approx(base / row["seconds"], rel=0.02)
    assert all(row["first_batch_seconds"] > 0 for row in rows[2:])


@pytest.mark.slow
def test_serving_quick_times_every_signature_size_batch_and_caller_count(tmp_path):
    report = run_quick("serving", tmp_path)
    rows = report["rows"]
    assert [(r["size"], r["batch"], r["callers"]) for r in rows[::3]] == [
        (size, batch, callers) for size in ("32x32", "80x48") for batch in (1, 2) for callers in (1, 2)]
    assert [r["signature"] for r in rows[:3]] == ["serving_default", "serving_bytes", "serving_compact"]
    for row in rows:
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["images_per_second"] > 0
        assert row["calls"] == row["callers"]  # 1 round x 1 call per caller in --quick
    for bytes_row, compact in zip(rows[1::3], rows[2::3]):
        assert compact["compact_vs_bytes"] == pytest.approx(compact["p50_ms"] / bytes_row["p50_ms"], rel=0.02)
    for reply in report["replies"]:  # the compact reply is a PNG in b64, the others carry float32 lists
        assert reply["serving_compact_kB"] < reply["serving_bytes_kB"] / 10


def test_serving_percentile_is_the_nearest_rank():
    import serving

    values = list(range(1, 101))
    assert [serving.percentile(values, q) for q in (50, 99, 100)] == [50, 99, 100]
    assert serving.percentile([3.0], 99) == 3.0 and serving.percentile([1, 2], 50) == 1
    assert serving.size_list("256x256,768x560") == [(256, 256), (560, 768)]


@pytest.mark.slow
def test_batch_norm_quick_compares_both_layers_per_precision(tmp_path):
    report = run_quick("batch_norm", tmp_path)
    assert [row["precision"] for row in report["rows"]] == ["mixed_bfloat16", "float32"]
    for row in report["rows"]:
        assert row["keras_img_s"] > 0 and row["bfloat16_img_s"] > 0
        assert [len(row["rounds"][layer]) for layer in ("keras", "bfloat16")] == [2, 2]
        assert row["ratio_min"] <= row["bfloat16_over_keras"] <= row["ratio_max"]


@pytest.mark.slow
def test_class_weights_quick_trains_without_and_with_auto_weights(tmp_path):
    report = run_quick("class_weights", tmp_path, "--work", str(tmp_path / "work"))
    rows = report["rows"]
    assert [(row["loss"], row["class_weights"]) for row in rows] == [("cce", "none"), ("cce", "auto")]
    assert rows[0]["weights_used"] is None and len(rows[1]["weights_used"]) == 3
    stored = json.loads((tmp_path / "work" / "cce-auto" / "class_weights.json").read_text())
    assert rows[1]["weights_used"] == stored["weights"] and stored["weights"][2] > stored["weights"][1]
    masks = sorted((tmp_path / "work" / "data" / "masks").iterdir())
    assert len(masks) == 24 and set(np.unique(np.asarray(Image.open(masks[0])))) <= {0, 1, 2}


@pytest.mark.slow
def test_border_weights_quick_trains_without_and_with_the_map(tmp_path):
    report = run_quick("border_weights", tmp_path, "--work", str(tmp_path / "work"))
    rows = report["rows"]
    assert [(row["loss"], row["border_weight"]) for row in rows] == [("bce", "none"), ("bce", "10,5")]
    assert all(0 <= row[k] <= 1 for row in rows for k in ("dice", "gap_recall", "count_exact"))
    config = json.loads((tmp_path / "work" / "bce-border" / "config.json").read_text())
    assert config["border_weight"] == "10,5"


def test_border_weights_helpers_find_the_gaps_and_time_the_map(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import border_weights
    finally:
        sys.path.remove(str(BENCHMARKS))
    from tfseg.data.borders import objects

    mask = np.zeros((6, 9), np.float32)
    mask[:, :4] = mask[:, 5:] = 1
    assert border_weights.gap_pixels(mask)[:, 4].all() and border_weights.gap_pixels(mask).sum() == 6
    assert objects(border_weights.grid_of_discs(64, 16))[1] == 16
    root = tmp_path / "cells"
    border_weights.write_cells_folder(str(root), 3, 48)
    for mask_file in sorted((root / "masks").iterdir()):
        values = np.asarray(Image.open(mask_file))
        assert set(np.unique(values)) <= {0, 255} and objects(values / 255.0)[1] >= 2


@pytest.mark.slow
def test_fold_ensemble_quick_scores_every_fold_and_the_ensemble(tmp_path):
    report = run_quick("fold_ensemble", tmp_path)
    models = [row["model"] for row in report["rows"]]
    assert models == ["fold 1", "fold 2", "mean of the folds", "ensemble of 2"]
    folds = [row["test_dice"] for row in report["rows"][:2]]
    assert report["rows"][2]["test_dice"] == pytest.approx(np.mean(folds), abs=1e-4)
    ensemble = report["rows"][3]
    assert ensemble["dice_ci95"][0] <= ensemble["test_dice"] <= ensemble["dice_ci95"][1]
    assert report["ensemble_minus_mean_fold_dice"] == pytest.approx(ensemble["test_dice"] - np.mean(folds), abs=2e-4)
    assert report["cost_ratio_ensemble_to_fold"] > 0 and report["test_images"] > 0
