"""ph2:, mads:, folder: sources on tiny folders in the real layouts: listing, pixels, masks, splits, bad data."""

import io
import logging
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from sources_testdata import disc, fit_one_step, palette_mask, rgb, write_folder, write_mads, write_ph2
from tfseg.data import open_source
from tfseg.data.files import MADS_GROUP_PATTERN, _decode_in_graph, check_file, mask_array, rgb_array
from tfseg.errors import ConfigError, DataError


def decoded(source, ids=None):
    """``{id: (image, mask [H, W])}`` through ``source.examples``."""
    ids = source.ids() if ids is None else ids
    return {ex["id"].decode(): (ex["image"], ex["mask"][..., 0]) for ex in source.examples(ids).as_numpy_iterator()}


# --------------------------------------------------------------------------- the three layouts

def test_ph2_accepts_the_three_documented_paths_and_decodes_exact_pixels(tmp_path):
    written = write_ph2(tmp_path)
    for path in (tmp_path, tmp_path / "PH2Dataset", tmp_path / "PH2Dataset" / "PH2 Dataset images"):
        source = open_source(f"ph2:{path}")
        assert source.ids() == ["IMD002", "IMD003", "IMD004", "IMD005"]
        assert [source.group(i) for i in source.ids()] == source.ids()
    samples = decoded(source)
    for name, (image, mask) in written.items():
        np.testing.assert_array_equal(samples[name][0], image)
        np.testing.assert_array_equal(samples[name][1], mask)  # 0/255 BMP -> 0/1


def test_mads_finds_the_kaggle_nesting_and_groups_frames_by_sequence(tmp_path):
    written = write_mads(tmp_path)
    source = open_source(f"mads:{tmp_path}")
    assert source.ids() == sorted(written)
    assert source.group("HipHop_HipHop1_C1_00180") == "HipHop_HipHop1"  # camera and frame stripped
    assert source.group("Sports_Badminton3_C0_00015") == "Sports_Badminton3"
    samples = decoded(source)
    for stem, (image, mask) in written.items():
        np.testing.assert_array_equal(samples[stem][0], image)
        np.testing.assert_array_equal(samples[stem][1], mask)  # RGBA white on black -> 0/1


def test_mads_group_pattern_option_overrides_the_rule(tmp_path):
    write_mads(tmp_path, nested=False)
    by_activity = open_source(f"mads:{tmp_path}", group_pattern=r"([A-Za-z]+)_")
    assert by_activity.group("Taichi_S5_C2_00585") == "Taichi"
    # the documented default: camera and frame number stripped
    assert re.match(MADS_GROUP_PATTERN, "Taichi_S5_C2_00585").group(1) == "Taichi_S5"
    assert re.match(MADS_GROUP_PATTERN, "Kata_F1-0042").group(1) == "Kata_F1"
    with pytest.raises(ConfigError, match="group_pattern"):
        open_source(f"mads:{tmp_path}", group_pattern="(")


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_splits_never_separate_a_mads_sequence(tmp_path, split):
    write_mads(tmp_path)
    source = open_source(f"mads:{tmp_path}")
    parts = {s: set(source.split_ids(s, seed=3)) for s in ("train", "val", "test")}
    assert set().union(*parts.values()) == set(source.ids())
    groups = {s: {source.group(i) for i in ids} for s, ids in parts.items()}
    others = set().union(*(g for s, g in groups.items() if s != split))
    assert parts[split] and not groups[split] & others


def test_folder_handles_rgba_palette_tiff_gray_suffix_and_size_mismatch(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    h, w = 16, 20
    lesion = disc(h, w, 8, 10, 5)
    expected = {}
    # RGBA image (alpha dropped) + 0/255 mask carrying a `_mask` suffix.
    rgba = np.dstack([rgb(h, w, 1), np.full((h, w), 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "images" / "a_rgba.png")
    Image.fromarray((lesion * 255).astype(np.uint8)).save(tmp_path / "masks" / "a_rgba_mask.png")
    expected["a_rgba"] = (rgba[..., :3], lesion)
    # TIFF image (Pillow fallback) + palette mask whose colours are not its indices.
    image = rgb(h, w, 2)
    Image.fromarray(image).save(tmp_path / "images" / "b_tiff.tif")
    palette_mask(lesion.astype(np.uint8)).save(tmp_path / "masks" / "b_tiff_segmentation.png")
    expected["b_tiff"] = (image, lesion)
    # Grayscale JPEG-free image (repeated to 3 channels) + RGB black/white mask.
    gray = rgb(h, w, 3)[..., 0]
    Image.fromarray(gray).save(tmp_path / "images" / "c_gray.png")
    Image.fromarray(np.repeat((lesion * 255).astype(np.uint8)[..., None], 3, -1)).save(tmp_path / "masks" / "c_gray.bmp")
    expected["c_gray"] = (np.repeat(gray[..., None], 3, -1), lesion)
    # Grayscale image + 0/1 mask at HALF the size (resized, nearest). (A 16-bit image is data, which keeps
    # its values and cannot share a source with photographs: tests/test_bands.py.)
    Image.fromarray(gray).save(tmp_path / "images" / "d_half.png")
    small = lesion[::2, ::2]
    Image.fromarray(small.astype(np.uint8)).save(tmp_path / "masks" / "d_half.png")
    expected["d_half"] = (np.repeat(gray[..., None], 3, -1), np.repeat(np.repeat(small, 2, 0), 2, 1))

    source = open_source(f"folder:{tmp_path}")
    assert source.ids() == ["a_rgba", "b_tiff", "c_gray", "d_half"]
    assert not source.pairs["b_tiff"].image_info.graph and not source.pairs["b_tiff"].mask_info.graph
    assert source.pairs["a_rgba"].image_info.graph and source.pairs["c_gray"].mask_info.graph
    assert [why for _, why in source.warnings] == ["mask 10x8 differs from image 20x16: resized with nearest neighbour"]
    samples = decoded(source, ["d_half", "c_gray", "b_tiff", "a_rgba"])  # Pillow and graph branches interleaved
    for name, (image, mask) in expected.items():
        np.testing.assert_array_equal(samples[name][0], image, err_msg=name)
        np.testing.assert_array_equal(samples[name][1], mask.astype(np.uint8), err_msg=name)


def test_examples_come_back_in_the_order_asked_across_decoder_branches(tmp_path):
    write_folder(tmp_path, count=4)
    Image.fromarray(rgb(20, 28, 9)).save(tmp_path / "images" / "s01.tif")
    (tmp_path / "images" / "s01.png").unlink()
    source = open_source(f"folder:{tmp_path}")
    order = ["s03", "s01", "s00", "s02"]
    assert [ex["id"].decode() for ex in source.examples(order).as_numpy_iterator()] == order


@pytest.mark.parametrize("mode, suffix", [("L", ".png"), ("LA", ".png"), ("RGB", ".png"), ("RGBA", ".png"),
                                          ("1", ".png"), ("RGB", ".bmp"), ("L", ".bmp")])
def test_graph_decoder_matches_the_pillow_rule_for_the_files_it_takes(tmp_path, mode, suffix):
    values = (disc(12, 14, 6, 7, 4) * 255).astype(np.uint8)
    gray, other = Image.fromarray(values), Image.fromarray(values // 3)
    black = Image.new("L", gray.size, 0)
    image = {  # colour channels differ, so "max over R, G, B" differs from "first channel"
        "L": gray, "1": gray.convert("1"), "LA": Image.merge("LA", [gray, Image.new("L", gray.size, 9)]),
        "RGB": Image.merge("RGB", [black, gray, other]), "RGBA": Image.merge("RGBA", [other, black, gray, gray]),
    }[mode]
    path = tmp_path / f"m{suffix}"
    image.save(path)
    assert check_file(path, is_mask=True).graph
    _, graph_mask = _decode_in_graph(str(path), str(path))
    with Image.open(path) as reopened:
        np.testing.assert_array_equal(graph_mask.numpy()[..., 0], mask_array(reopened))


def test_palette_and_half_masks_keep_their_values_and_skip_the_graph_decoder(tmp_path):
    ids = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    palette_mask(ids).save(tmp_path / "p.png")
    Image.fromarray(ids.astype(np.uint16)).save(tmp_path / "i16.png")
    for name in ("p.png", "i16.png"):
        info = check_file(tmp_path / name, is_mask=True)
        assert not info.graph and set(info.values) == {0, 1, 2}
        with Image.open(tmp_path / name) as image:
            np.testing.assert_array_equal(mask_array(image), ids)
    with Image.open(tmp_path / "p.png") as image:
        assert rgb_array(image)[0, 1].tolist() == [200, 30, 30]  # as an image: the colour


def test_multi_class_folder_keeps_class_ids_and_rejects_ids_out_of_range(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    ids = np.zeros((8, 8), np.uint8)
    ids[:4], ids[6:] = 1, 2
    for name in ("x", "y"):
        Image.fromarray(rgb(8, 8, 5)).save(tmp_path / "images" / f"{name}.png")
        palette_mask(ids).save(tmp_path / "masks" / f"{name}.png")
    source = open_source(f"folder:{tmp_path}", num_classes=3)
    assert source.num_classes == 3
    np.testing.assert_array_equal(decoded(source)["x"][1], ids)
    with pytest.raises(DataError, match=r"(?s)values \{2\} are not class ids 0\.\.1.*y\.png"):
        open_source(f"folder:{tmp_path}", num_classes=2)


def test_mask_threshold_accepts_noisy_jpeg_masks(tmp_path):
    write_folder(tmp_path, count=3)
    lesion = disc(20, 28, 10, 14, 6)
    Image.fromarray((lesion * 255).astype(np.uint8)).save(tmp_path / "masks" / "s00.jpg", quality=60)
    (tmp_path / "masks" / "s00.png").unlink()
    with pytest.raises(DataError, match=r"unexpected mask values .*mask_threshold=127"):
        open_source(f"folder:{tmp_path}")
    source = open_source(f"folder:{tmp_path}", mask_threshold=127)
    mask = decoded(source, ["s00"])["s00"][1]
    assert set(np.unique(mask)) <= {0, 1} and np.mean(mask == lesion) > 0.97


# --------------------------------------------------------------------------- splits

def test_split_ignores_listing_order_and_the_folder_name(tmp_path):
    write_folder(tmp_path / "first", count=12)
    write_folder(tmp_path / "renamed copy", count=12, order=list(reversed(range(12))))
    a, b = open_source(f"folder:{tmp_path / 'first'}"), open_source(f"folder:{tmp_path / 'renamed copy'}")
    for split in ("train", "val", "test"):
        assert a.split_ids(split, seed=5) == b.split_ids(split, seed=5)
    parts = [set(a.split_ids(s, seed=5)) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == 12 and set().union(*parts) == set(a.ids())


# --------------------------------------------------------------------------- bad data

def make_bad_folder(root):
    """Five problems: corrupt, truncated, image without mask, mask without image, 3-valued binary mask."""
    write_folder(root, count=8)
    (root / "images" / "s00.png").write_bytes(b"not an image at all")
    data = (root / "masks" / "s01.png").read_bytes()
    (root / "masks" / "s01.png").write_bytes(data[: len(data) // 2])
    (root / "masks" / "s02.png").unlink()
    (root / "images" / "s03.png").unlink()
    three = np.zeros((20, 28), np.uint8)
    three[2:5], three[8:12] = 128, 255
    Image.fromarray(three).save(root / "masks" / "s04.png")
    return {
        str(root / "images" / "s00.png"), str(root / "masks" / "s01.png"), str(root / "images" / "s02.png"),
        str(root / "masks" / "s03.png"), str(root / "masks" / "s04.png"),
    }


def test_bad_folder_raises_one_data_error_naming_every_offending_file(tmp_path):
    bad = make_bad_folder(tmp_path)
    with pytest.raises(DataError) as caught:
        open_source(f"folder:{tmp_path}")
    assert {path for path, _ in caught.value.problems} == bad
    assert all(path in str(caught.value) for path in bad)
    reasons = " ".join(why for _, why in caught.value.problems)
    for expected in ("unreadable image", "unreadable mask", "no mask", "no image for this mask",
                     "unexpected mask values {0, 128, 255}"):
        assert expected in reasons


def test_skip_bad_drops_the_bad_samples_and_lists_them(tmp_path, caplog):
    bad = make_bad_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tfseg.data.filesource"):
        source = open_source(f"folder:{tmp_path}", skip_bad=True)
    assert source.ids() == ["s05", "s06", "s07"]
    assert {path for path, _ in source.skipped} == bad
    assert "skipped 5 problem(s)" in caplog.text
    assert len(list(source.examples(source.ids()))) == 3


def test_ph2_case_without_lesion_mask_is_reported(tmp_path):
    write_ph2(tmp_path)
    lesion = tmp_path / "PH2Dataset" / "PH2 Dataset images" / "IMD003" / "IMD003_lesion"
    shutil.rmtree(lesion)
    with pytest.raises(DataError, match="IMD003_lesion.bmp: missing mask"):
        open_source(f"ph2:{tmp_path}")
    assert open_source(f"ph2:{tmp_path}", skip_bad=True).ids() == ["IMD002", "IMD004", "IMD005"]


@pytest.mark.parametrize("layout, message", [
    ("missing", "is not a folder"),
    ("no_masks", "has no masks folder"),
    ("empty", "no images found"),
    ("ph2_empty", "no 'PH2 Dataset images' folder"),
])
def test_wrong_paths_and_empty_folders_raise_one_line(tmp_path, layout, message):
    kind = "ph2" if layout.startswith("ph2") else "folder"
    if layout == "no_masks":
        (tmp_path / "images").mkdir()
    if layout == "empty":
        (tmp_path / "images").mkdir()
        (tmp_path / "masks").mkdir()
    path = tmp_path / "nowhere" if layout == "missing" else tmp_path
    with pytest.raises(DataError, match=message) as caught:
        open_source(f"{kind}:{path}")
    assert "\n" not in str(caught.value)


def test_rechecking_an_unchanged_folder_is_cached_and_a_changed_file_is_rechecked(tmp_path):
    write_folder(tmp_path, count=3)
    open_source(f"folder:{tmp_path}")
    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 28), 7, np.uint8)).save(buffer, "PNG")
    (tmp_path / "masks" / "s01.png").write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match=r"unexpected mask values \{7\}"):
        open_source(f"folder:{tmp_path}")


def test_unknown_option_is_a_config_error(tmp_path):
    write_folder(tmp_path, count=3)
    with pytest.raises(ConfigError, match="unknown option.*colour"):
        open_source(f"folder:{tmp_path}", colour="red")


# --------------------------------------------------------------------------- one training step each

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ph2", "mads", "folder"])
def test_one_fit_step_on_each_layout(tmp_path, kind):
    {"ph2": write_ph2, "mads": write_mads, "folder": write_folder}[kind](tmp_path)
    fit_one_step(f"{kind}:{tmp_path}")


@pytest.mark.slow
def test_one_fit_step_on_a_multi_class_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(6):
        ids = np.zeros((24, 24), np.uint8)
        ids[disc(24, 24, 12, 12, 6 + i)] = 1
        ids[disc(24, 24, 12, 12, 3)] = 2
        Image.fromarray(rgb(24, 24, i)).save(tmp_path / "images" / f"m{i}.png")
        palette_mask(ids).save(tmp_path / "masks" / f"m{i}.png")
    # An opened Source: load_dataset(num_classes=3) does not forward num_classes to the opener (yet).
    fit_one_step(open_source(f"folder:{tmp_path}", num_classes=3), num_classes=3)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP"])
def test_truncated_images_are_unreadable_whatever_the_format(tmp_path, fmt):
    write_folder(tmp_path, count=3)
    suffix = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp"}[fmt]
    (tmp_path / "images" / "s01.png").unlink()
    buffer = io.BytesIO()
    Image.fromarray(rgb(20, 28, 4)).save(buffer, fmt)
    (tmp_path / "images" / f"s01{suffix}").write_bytes(buffer.getvalue()[:-200])
    with pytest.raises(DataError, match=rf"s01\{suffix}: unreadable image"):
        open_source(f"folder:{tmp_path}")
