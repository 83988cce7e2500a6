"""inspect_source / `tfseg inspect`: counts, splits, sizes, types, mask values, balance, problems."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from sources_testdata import disc, rgb, write_folder
from tfseg.cli import main
from tfseg.data.inspect import format_report, inspect_source
from tfseg.data.tfrecord import write_shards


@pytest.fixture
def folder(tmp_path):
    """6 PNG pairs (0/255 masks), one image as TIFF, one mask at half size."""
    written = write_folder(tmp_path, count=6)
    Image.open(tmp_path / "images" / "s01.png").save(tmp_path / "images" / "s01.tif")
    (tmp_path / "images" / "s01.png").unlink()
    half = disc(10, 14, 5, 7, 3)
    Image.fromarray((half * 255).astype(np.uint8)).save(tmp_path / "masks" / "s02.png")
    written["s02"] = (written["s02"][0], half.astype(np.uint8))
    return tmp_path, written


def test_report_counts_sizes_types_values_and_balance(folder):
    path, written = folder
    report = inspect_source(f"folder:{path}", seed=0)
    assert report["num_samples"] == report["num_groups"] == 6 and report["num_classes"] == 1
    assert sum(report["splits"].values()) == 6 and all(report["splits"].values())
    assert report["image_sizes"] == {"28x20": 6}
    assert report["image_types"] == {"PNG RGB": 5, "TIFF RGB": 1}
    assert report["mask_types"] == {"PNG L": 6}
    assert report["mask_values"] == {"0": 6, "255": 6}
    foreground = sum(int(m.sum()) for _, m in written.values()) / sum(m.size for _, m in written.values())
    assert report["class_fraction"]["1"] == pytest.approx(foreground, abs=1e-4)
    assert report["warnings"] == [{"path": str(path / "masks" / "s02.png"),
                                   "message": "mask 14x10 differs from image 28x20: resized with nearest neighbour"}]
    assert report["problems"] == [] and not report["fatal"]
    text = format_report(report)
    assert "samples   6 in 6 groups, binary masks" in text and "TIFF RGB x1" in text and "problems  none" in text


def test_problems_are_listed_and_fatal_unless_skip_bad(folder):
    path, _ = folder
    (path / "masks" / "s04.png").unlink()
    report = inspect_source(f"folder:{path}")
    assert report["problems"][0]["path"] == str(path / "images" / "s04.png") and report["fatal"]
    assert report["num_samples"] == 5 and report["skipped"] == 1
    assert not inspect_source(f"folder:{path}", skip_bad=True)["fatal"]


def test_decoded_sources_report_pipeline_values(tmp_path):
    write_folder(tmp_path / "data", count=5)
    write_shards(f"folder:{tmp_path / 'data'}", tmp_path / "shards", progress=False)
    report = inspect_source(f"tfrecord:{tmp_path / 'shards'}", limit=3)
    assert report["num_samples"] == 5 and report["inspected_samples"] == 3
    assert report["mask_values"] == {"0": 3, "1": 3} and report["image_sizes"] == {"28x20": 3}
    with tfds.testing.mock_data(num_examples=4):
        pets = inspect_source("tfds:oxford_iiit_pet", pet_classes="trimap")
    assert pets["num_classes"] == 3 and set(pets["class_fraction"]) <= {"0", "1", "2"}


def test_cli_text_and_json(folder, capsys):
    path, _ = folder
    assert main(["inspect", "--data", f"folder:{path}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"source    folder:{path}\n") and "values    0 (in 6 masks), 255 (in 6 masks)" in out
    assert main(["inspect", "--data", f"folder:{path}", "--json", "--seed", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["seed"] == 3 and report["fractions"] == [0.7, 0.15, 0.15]


def test_cli_bad_data_exits_2_naming_every_file_without_traceback(tmp_path, capsys):
    write_folder(tmp_path, count=5)
    (tmp_path / "images" / "s00.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "masks" / "s03.png").unlink()
    Image.fromarray(rgb(20, 28, 0)[..., 0]).save(tmp_path / "masks" / "s04.png")  # 0..255 noise
    assert main(["inspect", "--data", f"folder:{tmp_path}"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.startswith("tfseg inspect: error: ")
    for name in ("images/s00.png", "images/s03.png", "masks/s04.png"):
        assert str(tmp_path / name) in captured.err and str(tmp_path / name) in captured.out
    assert main(["inspect", "--data", f"folder:{tmp_path}", "--skip-bad"]) == 0
    assert "problems  3  (these samples are skipped)" in capsys.readouterr().out
