"""tfds: source, offline: ``tfds.testing.mock_data`` for oxford_iiit_pet, and the shipped PH2/MADS builders on their dummy_data."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import tfseg
from sources_testdata import fit_one_step
from tfseg.data import open_source
from tfseg.errors import ConfigError, TfsegError

DATASETS = Path(tfseg.__file__).resolve().parent / "tfds_builders"
PH2_DUMMY = DATASETS / "ph2" / "dummy_data"


@pytest.fixture
def pets():
    with tfds.testing.mock_data(num_examples=5):
        yield lambda **options: open_source("tfds:oxford_iiit_pet", **options)


def test_pets_ids_are_split_and_index_and_examples_follow_the_contract(pets):
    source = pets(tfds_splits=("train", "test"))
    assert source.num_classes == 1
    assert source.ids() == [f"{s}/{i:06d}" for s in ("test", "train") for i in range(5)]
    examples = list(source.examples(["test/000001", "train/000003"]).as_numpy_iterator())
    assert [e["id"].decode() for e in examples] == ["test/000001", "train/000003"]
    for example in examples:
        image, mask = example["image"], example["mask"]
        assert image.dtype == np.uint8 and image.shape[-1] == 3
        assert mask.shape == image.shape[:2] + (1,)  # the mock's mask size differs: resized to the image
        assert set(np.unique(mask)) <= {0, 1}


def test_pet_trimap_mapping_is_the_documented_one(pets):
    trimap = tf.constant([[1, 2, 3], [3, 2, 1]], tf.uint8)[..., None]  # 1 pet, 2 background, 3 border
    binary = pets()._mask(trimap, tf.constant([2, 3]))
    classes = pets(pet_classes="trimap")._mask(trimap, tf.constant([2, 3]))
    np.testing.assert_array_equal(binary.numpy()[..., 0], [[1, 0, 1], [1, 0, 1]])
    np.testing.assert_array_equal(classes.numpy()[..., 0], [[1, 0, 2], [2, 0, 1]])
    assert pets(num_classes=3).pet_classes == "trimap" and pets(num_classes=3).num_classes == 3


def test_official_splits_are_the_default_test_kept_and_val_carved_from_tfds_train(pets):
    source = pets(tfds_splits=("train", "test"))  # a mocked builder lists no splits of its own
    assert source.split_mode == "official"
    train, val, test = (source.split_ids(s, seed=0) for s in ("train", "val", "test"))
    assert test == [f"test/{i:06d}" for i in range(5)]  # TFDS's own test split, as published results use
    assert source.split_rule == "official TFDS splits train, test; val carved from TFDS train"
    assert val and set(train) | set(val) == {f"train/{i:06d}" for i in range(5)} and not set(train) & set(val)


def test_resplit_in_the_source_string_pools_the_tfds_splits_disjointly():
    with tfds.testing.mock_data(num_examples=5):
        source = open_source("tfds:oxford_iiit_pet?splits=resplit&tfds_splits=train,test")
        assert source.split_mode == "resplit" and source.tfds_splits == ["test", "train"]
        assert source.split_rule is None
        parts = {s: set(source.split_ids(s, seed=1)) for s in ("train", "val", "test")}
    assert set().union(*parts.values()) == set(source.ids()) and sum(map(len, parts.values())) == 10
    assert any(i.startswith("test/") for i in parts["train"])  # pooled, not the official split


def test_string_options_reach_the_source_and_agree_with_keyword_options():
    with tfds.testing.mock_data(num_examples=3):
        source = open_source("tfds:oxford_iiit_pet?pet_classes=trimap&tfds_splits=train")
        assert source.num_classes == 3 and source.tfds_splits == ["train"]
        same = open_source("tfds:oxford_iiit_pet?splits=official", splits="official")
        assert same.split_mode == "official"
        with pytest.raises(ConfigError, match="splits='resplit' in the string, but splits='official' given too"):
            open_source("tfds:oxford_iiit_pet?splits=resplit", splits="official")


@pytest.mark.parametrize("source, error, message", [
    ("tfds:ph2?manual_dir", TfsegError, "option 'manual_dir' is not KEY=VALUE"),
    ("tfds:ph2?manual_dir=", TfsegError, "is not KEY=VALUE"),
    ("tfds:ph2?splits=official&splits=resplit", TfsegError, "option 'splits' given twice"),
    ("tfds:?splits=official", TfsegError, "missing NAME"),
    ("tfds:oxford_iiit_pet?num_classes=3", ConfigError, "unknown option 'num_classes'; accepted after '\\?'"),
    ("tfds:oxford_iiit_pet?splits=mine", ConfigError, "choose one of official, resplit"),
])
def test_bad_string_options_raise_one_line(source, error, message):
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(error, match=message) as caught:
            open_source(source)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name, options, error, message", [
    ("no_such_dataset_xyz", {}, TfsegError, "cannot open TFDS dataset"),
    ("mnist", {}, TfsegError, "no segmentation mask feature"),
    ("mnist", {"pet_classes": "trimap"}, ConfigError, "only for tfds:oxford_iiit_pet"),
    ("oxford_iiit_pet", {"pet_classes": "five"}, ConfigError, "choose one of binary, trimap"),
    ("oxford_iiit_pet", {"splits": "mine"}, ConfigError, "choose one of official, resplit"),
    ("oxford_iiit_pet", {"colour": 1}, ConfigError, "unknown option"),
])
def test_bad_names_and_options_raise_one_line(name, options, error, message):
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(error, match=message) as caught:
            open_source(f"tfds:{name}", **options)
    assert "\n" not in str(caught.value)


def test_shipped_ph2_builder_prepares_from_manual_dir_and_serves_tfds_ph2(tmp_path):
    source = open_source(f"tfds:ph2?manual_dir={PH2_DUMMY}&data_dir={tmp_path}")
    assert source.ids() == ["train/000000", "train/000001", "train/000002"]
    examples = list(source.examples(source.ids()).as_numpy_iterator())
    assert all(e["image"].shape == (12, 16, 3) and e["mask"].shape == (12, 16, 1) for e in examples)
    assert all(set(np.unique(e["mask"])) == {0, 1} for e in examples)
    # PH2 has one TFDS split: val and test are carved from it, disjoint, one case each.
    parts = [source.split_ids(s, seed=0) for s in ("train", "val", "test")]
    assert sorted(sum(parts, [])) == source.ids() and all(len(p) == 1 for p in parts)
    again = open_source("tfds:ph2", data_dir=str(tmp_path), download=False)  # prepared: no manual_dir needed
    assert again.ids() == source.ids()


def test_a_missing_manual_dir_says_how_to_give_it(tmp_path):
    with pytest.raises(TfsegError, match=r"add \?manual_dir=DIR, e.g. 'tfds:ph2\?manual_dir=DIR'") as caught:
        open_source("tfds:ph2", data_dir=str(tmp_path), manual_dir=str(tmp_path / "empty"))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("verb", ["inspect", "prepare"])
def test_cli_verbs_pass_manual_dir_and_keep_the_official_split(tmp_path, capsys, verb):
    from tfseg.cli import main

    data = f"tfds:ph2?manual_dir={PH2_DUMMY}&data_dir={tmp_path / 'tfds'}"
    extra = {"inspect": ["--json"], "prepare": ["--out", str(tmp_path / "shards"), "--quiet"]}[verb]
    assert main([verb, "--data", data, *extra]) == 0
    out = capsys.readouterr().out
    if verb == "inspect":
        report = json.loads(out)
        assert report["num_samples"] == 3, report
        assert report["split_rule"] == "official TFDS splits train; val and test carved from TFDS train"
    else:
        assert "wrote 3 samples" in out
    assert (tmp_path / "tfds" / "ph2").is_dir()  # prepared from the dummy manual_dir, in data_dir


def test_shipped_mads_builder_groups_frames_by_sequence(tmp_path):
    source = open_source("tfds:mads", data_dir=str(tmp_path), manual_dir=str(DATASETS / "mads" / "dummy_data"))
    assert source.group_key == "sequence"
    assert sorted(source.group(i) for i in source.ids()) == ["HipHop_HipHop1"] * 2 + ["Taichi_S5"] * 2
    parts = [{source.group(i) for i in source.split_ids(s, seed=0)} for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 2  # each sequence in exactly one split


@pytest.mark.slow
def test_one_fit_step_on_mocked_pets(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        fit_one_step("tfds:oxford_iiit_pet", tfds_splits=("train", "test"))


def test_a_build_is_quiet_and_another_manual_dir_is_told_it_reads_the_build(tmp_path, capfd, caplog):
    source_text = f"tfds:ph2?manual_dir={PH2_DUMMY}&data_dir={tmp_path}"
    open_source(source_text)
    captured = capfd.readouterr()
    printed = captured.out + captured.err
    # No cursor escape codes of TFDS's progress bars (not a terminal), no deprecation warnings.
    assert "\x1b[" not in printed and "eprecat" not in printed and "dataset_info.json" not in printed
    assert not [r for r in caplog.records if r.name.startswith("tfseg") and r.levelname == "WARNING"]
    open_source(source_text)  # the folder it was built from: nothing to say
    assert not [r for r in caplog.records if "not the files in manual_dir" in r.getMessage()]
    other = tmp_path / "ph2_again"
    shutil.copytree(PH2_DUMMY, other)
    source = open_source(f"tfds:ph2?manual_dir={other}&data_dir={tmp_path}")
    [warning] = [r.getMessage() for r in caplog.records if "not the files in manual_dir" in r.getMessage()]
    assert f"prepared from {PH2_DUMMY}" in warning and str(other) in warning and "delete that folder" in warning
    assert source.ids() == ["train/000000", "train/000001", "train/000002"]
