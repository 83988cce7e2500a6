"""`tfseg prepare` / write_shards and the tfrecord: source: same samples, same pixels, same split."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sources_testdata import fit_one_step, rgb, write_folder, write_mads
from tfseg.cli import main
from tfseg.data import open_source
from tfseg.data.tfrecord import MANIFEST, write_shards
from tfseg.errors import DataError, TfsegError


def samples(source, ids=None):
    ids = source.ids() if ids is None else ids
    return {e["id"].decode(): (e["image"], e["mask"]) for e in source.examples(ids).as_numpy_iterator()}


def test_round_trip_gives_the_same_ids_groups_pixels_and_split(tmp_path):
    write_mads(tmp_path / "mads")
    # A TIFF frame: the original decodes it through the Pillow branch, the shards through PNG.
    frame = tmp_path / "mads" / "segmentation_full_body_mads_dataset_1192_img" / \
        "segmentation_full_body_mads_dataset_1192_img" / "images" / "Kata_S1_C0_00400"
    Image.open(frame.with_suffix(".png")).save(frame.with_suffix(".tif"))
    frame.with_suffix(".png").unlink()
    original = open_source(f"mads:{tmp_path / 'mads'}")
    manifest = write_shards(original, tmp_path / "shards", shards=3, progress=False)
    assert manifest["num_samples"] == 11 and [s["num_samples"] for s in manifest["shards"]] == [4, 4, 3]
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "data-00000-of-00003.tfrecord", "data-00001-of-00003.tfrecord", "data-00002-of-00003.tfrecord", MANIFEST]
    records = [sum(1 for _ in tf.data.TFRecordDataset(str(tmp_path / "shards" / s["file"]))) for s in manifest["shards"]]
    assert records == [4, 4, 3]
    shards = open_source(f"tfrecord:{tmp_path / 'shards'}")
    assert shards.ids() == original.ids() and shards.num_classes == 1
    in_order = [e["id"].decode() for e in shards.examples(shards.ids()).as_numpy_iterator()]
    assert in_order == original.ids()
    assert [shards.group(i) for i in shards.ids()] == [original.group(i) for i in original.ids()]
    for seed in (0, 7):
        for split in ("train", "val", "test"):
            assert shards.split_ids(split, seed=seed) == original.split_ids(split, seed=seed)
    before, after = samples(original), samples(shards)
    for sample_id, (image, mask) in before.items():
        np.testing.assert_array_equal(after[sample_id][0], image)
        np.testing.assert_array_equal(after[sample_id][1], mask)
    subset = ["HipHop_HipHop1_C1_00180", "Kata_S1_C0_00400", "Taichi_S5_C2_00585"]
    assert list(samples(shards, subset)) == subset


def test_image_size_resizes_before_writing(tmp_path):
    write_folder(tmp_path / "data", count=4)
    manifest = write_shards(f"folder:{tmp_path / 'data'}", tmp_path / "out", image_size=16, progress=False)
    assert manifest["image_size"] == 16 and len(manifest["shards"]) == 1
    for image, mask in samples(open_source(f"tfrecord:{tmp_path / 'out'}")).values():
        assert image.shape == (16, 16, 3) and mask.shape == (16, 16, 1) and set(np.unique(mask)) <= {0, 1}


def test_cli_prepare_refuses_a_non_empty_out_dir_unless_overwrite(tmp_path, capsys):
    write_folder(tmp_path / "data", count=5)
    args = ["prepare", "--data", f"folder:{tmp_path / 'data'}", "--out", str(tmp_path / "out"), "--shards", "2",
            "--quiet"]
    assert main(args) == 0
    assert "wrote 5 samples in 2 shard(s)" in capsys.readouterr().out
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "holds shards written by tfseg prepare; pass --overwrite" in err and "Traceback" not in err
    assert main(args[:-2] + ["1", "--quiet", "--overwrite"]) == 0
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert len(manifest["shards"]) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp or old folders left


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path):
    write_folder(tmp_path / "data", count=4)
    source = open_source(f"folder:{tmp_path / 'data'}")
    (tmp_path / "data" / "images" / "s02.png").write_bytes(b"corrupted after the check")
    with pytest.raises(Exception):
        write_shards(source, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_missing_shard_or_manifest_is_a_data_error_naming_the_file(tmp_path):
    write_folder(tmp_path / "data", count=4)
    write_shards(f"folder:{tmp_path / 'data'}", tmp_path / "out", shards=2, progress=False)
    (tmp_path / "out" / "data-00001-of-00002.tfrecord").unlink()
    with pytest.raises(DataError, match="data-00001-of-00002.tfrecord: missing shard"):
        open_source(f"tfrecord:{tmp_path / 'out'}")
    (tmp_path / "out" / MANIFEST).unlink()
    with pytest.raises(DataError, match="manifest.json: missing"):
        open_source(f"tfrecord:{tmp_path / 'out'}")
    with pytest.raises(TfsegError, match="shards 0"):
        write_shards(f"folder:{tmp_path / 'data'}", tmp_path / "other", shards=0, progress=False)


@pytest.mark.slow
def test_one_fit_step_on_shards(tmp_path):
    write_folder(tmp_path / "data", count=6)
    Image.fromarray(rgb(20, 28, 1)).save(tmp_path / "data" / "images" / "s05.tif")
    (tmp_path / "data" / "images" / "s05.png").unlink()
    assert main(["prepare", "--data", f"folder:{tmp_path / 'data'}", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    fit_one_step(f"tfrecord:{tmp_path / 'out'}")
