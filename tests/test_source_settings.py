"""The declared Source interface and the mask settings through every kind and verb.

``num_classes``, ``ignore_class``, ``mask_threshold`` and ``colormap`` must reach every source
kind and every path that needs them (train, evaluate, inspect, prepare, the resize and the
patch pipelines), or be refused in one line naming what the user can pass instead.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from sources_testdata import write_folder
from tfseg import cli, masks
from tfseg.config import TrainConfig
from tfseg.data import load_dataset, open_source
from tfseg.data.pipeline import open_dataset_source
from tfseg.data.sources import MASK_SETTINGS, Source, register_source, source_kinds
from tfseg.data.spec import parse_source
from tfseg.data.tfrecord import write_shards
from tfseg.errors import ConfigError, DataError, TfsegError

IGNORE = 255
SIZE = 16


def write_class_id_folder(root, count=12, size=SIZE, classes=4, border=None):
    """``root/images`` + ``root/masks`` of class-id masks ``0..classes-1`` in vertical bands (grey PNGs);
    ``border``: a mask value drawn on row 0 (e.g. 255, an ignored value)."""
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "masks"))
    bands = (np.arange(size)[None, :] * classes // size).repeat(size, 0).astype(np.uint8)
    for i in range(count):
        image = np.zeros((size, size, 3), np.uint8)
        image[..., 0] = bands * (255 // classes)
        image[..., 1] = (i * 20) % 256
        mask = np.roll(bands, i % 3, axis=1)
        if border is not None:
            mask[0] = border
        Image.fromarray(image).save(os.path.join(root, "images", f"c{i:02d}.png"))
        Image.fromarray(mask).save(os.path.join(root, "masks", f"c{i:02d}.png"))
    return f"folder:{root}"


def all_masks(dataset):
    return np.concatenate([m.numpy().ravel() for _, m in dataset])


# --------------------------------------------------------------------------- the declared interface

def test_every_kind_declares_its_form_and_takes_the_mask_settings():
    kinds = source_kinds()
    assert set(kinds) >= {"synthetic", "synthetic-large", "ph2", "mads", "folder", "tfrecord", "tfds"}
    for kind, cls in kinds.items():
        assert cls.KIND == kind and cls.FORM in ("path", "name", "count")
        assert set(s.name for s in MASK_SETTINGS) <= set(cls.settings()), kind
        for attribute in ("checked", "num_classes", "ignore_class", "mask_threshold", "skipped", "warnings"):
            assert hasattr(cls, attribute), (kind, attribute)


def test_a_new_kind_is_one_class_that_parses_opens_and_loads():
    @register_source
    class Memory(Source):
        KIND = "memory-test"
        FORM = "count"
        DEFAULT_COUNT = 6
        RAW_MASKS = False

        def __init__(self, spec, num_classes=None, ignore_class=None, mask_threshold=None, skip_bad=False):
            self.spec = spec
            self.set_mask_settings(num_classes, ignore_class, mask_threshold, own_classes=3)

        def ids(self):
            return [f"m{i}" for i in range(self.spec.count)]

        def examples(self, ids):
            masks_ = [np.full((8, 8, 1), int(i[1:]) % 3, np.uint8) for i in ids]
            return tf.data.Dataset.from_tensor_slices({"id": list(ids), "image": np.zeros((len(ids), 8, 8, 3),
                                                                                         np.uint8),
                                                       "mask": np.stack(masks_)})

    try:
        assert parse_source("memory-test:9").count == 9 and parse_source("memory-test").count == 6
        source = open_source("memory-test:9", ignore_class=IGNORE)
        assert (source.num_classes, source.ignore_class, source.checked) == (3, IGNORE, False)
        _, batch = next(iter(load_dataset("memory-test:9", split="all", image_size=8, batch_size=9)))
        assert sorted(np.unique(batch.numpy()).tolist()) == [0, 1, 2]
        with pytest.raises(ConfigError, match="memory-test:9.* has 3 classes"):
            open_source("memory-test:9", num_classes=2)
        with pytest.raises(ConfigError, match="unknown option 'colormap'; accepted after '\\?': mask_threshold$"):
            open_source("memory-test:9?colormap=x.csv")
    finally:
        from tfseg.data import sources

        sources._KINDS.pop("memory-test")
    with pytest.raises(TfsegError, match="unknown kind 'memory-test'; expected one of .*folder:PATH"):
        parse_source("memory-test:9")


def test_no_source_is_probed_for_its_attributes():
    # The interface declares them: no getattr(source, "checked", ...) left anywhere in the package.
    import tfseg

    root = os.path.dirname(tfseg.__file__)
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                for attribute in ("checked", "ignore_class", "num_classes", "skipped", "warnings", "split_rule"):
                    for holder in ("source", "src", "opened"):
                        assert f'getattr({holder}, "{attribute}"' not in text, (name, attribute)


# --------------------------------------------------------------------------- one rule, one message

@pytest.mark.parametrize("value", [0, 257, -1, 2.5, True, "4"])
def test_one_class_count_bound_and_message_on_every_path(value, tmp_path, capsys):
    message = "num_classes .*: an integer 1..256"
    with pytest.raises(ConfigError, match=message):
        masks.check_num_classes(value)
    with pytest.raises(ConfigError, match=message):
        TrainConfig(num_classes=value)
    if isinstance(value, int) and not isinstance(value, bool):
        data = str(tmp_path / "d")
        write_class_id_folder(data, count=3)
        for opened in (lambda: open_source(f"folder:{data}", num_classes=value),
                       lambda: open_source("synthetic:5", num_classes=value)):
            with pytest.raises(ConfigError, match=message):
                opened()
        assert cli.main(["inspect", "--data", f"folder:{data}", "--num-classes", str(value)]) == 2
        assert "--num-classes" in capsys.readouterr().err


def test_the_bounds_are_inclusive_at_both_ends():
    assert [masks.check_num_classes(n) for n in (1, 256)] == [1, 256]
    assert [masks.check_ignore_class(v, 2) for v in (0, 255)] == [0, 255]
    assert [masks.check_mask_threshold(t, 1) for t in (0, 254)] == [0, 254]
    for bad in (-1, 256):
        with pytest.raises(ConfigError, match=f"ignore_class {bad}: a mask value 0..255"):
            masks.check_ignore_class(bad, 2)
    for bad in (-1, 255):
        with pytest.raises(ConfigError, match=f"mask_threshold {bad}: an integer 0..254"):
            masks.check_mask_threshold(bad, 1)
    # the data's own count is enough, and so is any larger one; binary data reads as ids 0/1 of N classes
    assert masks.resolve_num_classes(3, own=3) == 3 and masks.resolve_num_classes(None, own=3) == 3
    assert masks.resolve_num_classes(2, own=1) == 2 and masks.resolve_num_classes(None) == 1


def test_fewer_classes_than_the_data_declares_is_one_message(tmp_path):
    data = write_class_id_folder(str(tmp_path / "d"), count=6, classes=4)
    shards = str(tmp_path / "shards")
    write_shards(data, shards, progress=False, num_classes=4)
    message = r"num_classes 3: data source 'tfrecord:.*' has 4 classes \(class ids 0..3\); use 4 or more"
    with pytest.raises(ConfigError, match=message):
        open_source(f"tfrecord:{shards}", num_classes=3)
    with pytest.raises(ConfigError, match="num_classes 1: .* has 4 classes"):
        load_dataset(f"tfrecord:{shards}", num_classes=1)
    assert open_source(f"tfrecord:{shards}", num_classes=6).num_classes == 6  # ids 0..3 are ids of 6 classes too


def test_foreground_rule_edges():
    values = np.array([0, 1, 127, 128, 255])
    assert masks.foreground(values, top=255).tolist() == [False, False, False, True, True]
    assert masks.foreground(np.array([0, 1]), top=1).tolist() == [False, True]
    assert masks.foreground(np.array([0.5, 0.51])).tolist() == [False, True]  # model form: > 0.5
    assert masks.foreground(np.array([127, 128]), top=255, threshold=127).tolist() == [False, True]
    assert masks.foreground(np.array([1, 2]), top=2, threshold=1).tolist() == [False, True]
    assert masks.foreground(np.array([32767, 32768]), top=65535, full_scale=65535).tolist() == [False, True]
    assert masks.valid_class_ids(np.array([0, 3, 4, 255]), 4).tolist() == [True, True, False, False]
    assert masks.valid_class_ids(np.array([0, 3, 4, 255]), 4, IGNORE).tolist() == [True, True, False, True]


def test_the_foreground_rule_is_the_same_in_numpy_tensorflow_and_keras_ops():
    import keras

    values = np.array([0, 1, 100, 127, 128, 200, 255], np.float32)
    for top, threshold in ((255.0, None), (1.0, None), (255.0, 99), (None, None)):
        expected = masks.foreground(values, top=top, threshold=threshold).tolist()
        graph = masks.foreground(tf.constant(values), top=None if top is None else tf.constant(top),
                                 threshold=threshold, xp=tf)
        ops = masks.foreground(keras.ops.convert_to_tensor(values), top=top, threshold=threshold, xp=keras.ops)
        assert np.asarray(graph).tolist() == expected and np.asarray(ops).tolist() == expected, (top, threshold)


# --------------------------------------------------------------------------- num_classes reaches every kind

def test_train_opens_class_id_folders_with_num_classes_alone(tmp_path):
    from tfseg.training.run import _class_options

    data = write_class_id_folder(str(tmp_path / "d"))
    source = open_dataset_source(data, skip_bad=False, **_class_options(TrainConfig(data=data, num_classes=4)))
    assert source.num_classes == 4 and source.ignore_class is None and not source.problems()


@pytest.mark.parametrize("verb", ["inspect", "prepare"])
def test_num_classes_alone_reaches_inspect_and_prepare(tmp_path, capsys, verb):
    data = write_class_id_folder(str(tmp_path / "d"))
    extra = ["--out", str(tmp_path / "out"), "--quiet"] if verb == "prepare" else []
    assert cli.main([verb, "--data", data, *extra]) == 2  # binary by default: class ids are refused
    assert "a binary mask holds 0/1 or 0/255" in capsys.readouterr().err
    assert cli.main([verb, "--data", data, "--num-classes", "4", *extra]) == 0, capsys.readouterr().err


@pytest.mark.slow
def test_train_and_evaluate_class_id_folder_with_num_classes_and_no_other_flag(tmp_path, capsys):
    data = write_class_id_folder(str(tmp_path / "d"), count=12)
    run = str(tmp_path / "run")
    code = cli.main(["train", "--data", data, "--num-classes", "4", "--epochs", "1", "--image-size", "16",
                     "--base-filters", "4", "--depth", "2", "--batch-size", "4", "--out", run])
    assert code == 0, capsys.readouterr().err
    assert "4 classes" in capsys.readouterr().out
    assert cli.main(["evaluate", "--model", run]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("kind", ["synthetic", "synthetic-large", "tfds"])
def test_num_classes_and_ignore_class_reach_the_generated_and_tfds_kinds(kind):
    text = {"synthetic": "synthetic:5", "synthetic-large": "synthetic-large:3", "tfds": "tfds:scene_parse150"}[kind]
    with tfds.testing.mock_data(num_examples=3):
        source = open_dataset_source(text, image_size=16, num_classes=3, ignore_class=IGNORE)
        assert (source.num_classes, source.ignore_class) == (3, IGNORE)
        with pytest.raises(ConfigError, match="ignore_class 255: needs class-id masks"):
            open_dataset_source(text, image_size=16, ignore_class=IGNORE)


def test_num_classes_and_ignore_class_reach_ph2_and_mads(tmp_path):
    from sources_testdata import write_mads, write_ph2

    write_ph2(tmp_path / "ph2")  # 0/255 masks: as class ids, 255 is only allowed as the ignore value
    write_mads(tmp_path / "mads")
    for text in (f"ph2:{tmp_path / 'ph2'}", f"mads:{tmp_path / 'mads'}"):
        with pytest.raises(DataError, match=r"mask values \{255\} are not class ids 0..2"):
            open_source(text, num_classes=3)
        source = open_source(text, num_classes=3, ignore_class=IGNORE)
        assert (source.num_classes, source.ignore_class, source.problems()) == (3, IGNORE, [])


# --------------------------------------------------------------------------- mask_threshold and colormap

def write_jpeg_mask_folder(root, count=6):
    write_folder(root, count=count)
    for path in (root / "masks").iterdir():
        with Image.open(path) as mask:
            mask.convert("L").save(path.with_suffix(".jpg"), quality=70)
        path.unlink()


def test_the_jpeg_mask_message_recommends_a_source_string_that_works(tmp_path):
    write_jpeg_mask_folder(tmp_path / "d")
    text = f"folder:{tmp_path / 'd'}"
    with pytest.raises(DataError) as caught:
        open_source(text)
    suggestion = f"'{text}?mask_threshold=127'"
    assert suggestion in str(caught.value)
    source = open_source(suggestion.strip("'"))
    assert source.mask_threshold == 127 and not source.problems()
    # ... and on the command line, as --data
    assert cli.main(["inspect", "--data", suggestion.strip("'")]) == 0


@pytest.mark.parametrize("kind, text", [("synthetic", "synthetic:5"), ("synthetic-large", "synthetic-large:3")])
def test_mask_threshold_and_colormap_on_kinds_without_raw_masks_are_one_line(kind, text, tmp_path):
    with pytest.raises(ConfigError, match="mask_threshold 127: data source .* already 0/1 or class ids"):
        open_source(f"{text}?mask_threshold=127")
    with pytest.raises(ConfigError, match="unknown option 'colormap'; accepted after '\\?'"):
        open_source(f"{text}?colormap={tmp_path / 'c.csv'}")


def test_mask_threshold_reaches_tfrecord_and_tfds(tmp_path):
    data = str(tmp_path / "d")
    write_folder(tmp_path / "d", count=6)
    write_shards(f"folder:{data}", str(tmp_path / "shards"), progress=False)
    with pytest.raises(ConfigError, match="already 0/1 or class ids"):
        open_source(f"tfrecord:{tmp_path / 'shards'}?mask_threshold=127")
    with tfds.testing.mock_data(num_examples=2):
        low = open_source("tfds:scene_parse150?mask_threshold=10&tfds_splits=train")
        high = open_source("tfds:scene_parse150?mask_threshold=200&tfds_splits=train")
        raw = tf.constant([[0, 10, 11, 200, 201]], tf.uint8)[..., None]
        assert low._mask(raw, tf.shape(raw)[:2]).numpy().ravel().tolist() == [0, 0, 1, 1, 1]
        assert high._mask(raw, tf.shape(raw)[:2]).numpy().ravel().tolist() == [0, 0, 0, 0, 1]
        default = open_source("tfds:scene_parse150?tfds_splits=train")  # TFDS masks: a stored value > 0
        assert default._mask(raw, tf.shape(raw)[:2]).numpy().ravel().tolist() == [0, 1, 1, 1, 1]


def test_a_class_count_option_in_the_string_names_the_keyword_to_use(tmp_path):
    write_folder(tmp_path / "d", count=3)
    with pytest.raises(ConfigError, match="unknown option 'num_classes'; accepted after '\\?': mask_threshold, "
                                          "colormap"):
        open_source(f"folder:{tmp_path / 'd'}?num_classes=3")


# --------------------------------------------------------------------------- ignore_class in both pipelines

@pytest.fixture
def shards_with_a_void_border(tmp_path):
    data = write_class_id_folder(str(tmp_path / "d"), count=6, classes=3, border=IGNORE)
    out = str(tmp_path / "shards")
    write_shards(data, out, progress=False, num_classes=3, ignore_class=IGNORE)
    return f"tfrecord:{out}"


@pytest.mark.parametrize("pipeline", [{"image_size": SIZE}, {"patch_size": 8, "image_size": None},
                                      {"image_size": None, "batch_size": 1}])
def test_ignore_class_passes_the_class_id_check_of_every_pipeline(shards_with_a_void_border, pipeline):
    options = {"batch_size": 6, **pipeline}
    # tfrecord masks are not checked when opened: the pipeline's graph check is what stops a bad id.
    found = all_masks(load_dataset(shards_with_a_void_border, split="all", augment=False, ignore_class=IGNORE,
                                   **options))
    assert IGNORE in found and set(found.tolist()) <= {0, 1, 2, IGNORE}
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask class id >= num_classes=3 in sample"):
        all_masks(load_dataset(shards_with_a_void_border, split="all", augment=False, **options))


def test_patches_centre_on_labelled_pixels_not_on_ignored_ones():
    from tfseg.data.patches import random_patch

    mask = np.full((64, 64, 1), IGNORE, np.uint8)
    mask[:8, :8] = 0
    mask[60, 60] = 1  # the one labelled foreground pixel
    image = np.zeros((64, 64, 3), np.uint8)
    for seed in range(12):
        _, crop = random_patch(image, mask, 8, tf.constant([seed, 1]), foreground_fraction=1.0,
                               ignore_class=IGNORE)
        assert 1 in crop.numpy(), seed


def test_a_bad_file_stops_an_opened_source_unless_skip_bad(tmp_path):
    write_folder(tmp_path / "d", count=4)
    (tmp_path / "d" / "images" / "s01.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="s01.png: unreadable image"):
        open_dataset_source(f"folder:{tmp_path / 'd'}")  # the default: stop, as evaluate and dataset_summary need
    assert open_dataset_source(f"folder:{tmp_path / 'd'}", skip_bad=True).ids() == ["s00", "s02", "s03"]


def test_an_opened_source_keeps_its_mask_settings(shards_with_a_void_border):
    source = open_source(shards_with_a_void_border)
    with pytest.raises(ConfigError, match="ignore_class 255: .* was opened with ignore_class=None"):
        load_dataset(source, image_size=SIZE, ignore_class=IGNORE)
    opened = open_source(shards_with_a_void_border, ignore_class=IGNORE)
    assert load_dataset(opened, split="all", image_size=SIZE, ignore_class=IGNORE) is not None


# --------------------------------------------------------------------------- colour maps

def test_two_colours_mapped_to_one_class(tmp_path):
    from tfseg.data.inspect import inspect_source

    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    colours = {0: [(0, 0, 0)], 1: [(200, 0, 0), (0, 0, 200)], 2: [(0, 200, 0)]}  # class 1: red OR blue
    ids = np.zeros((6, 6), np.uint8)
    ids[:, 2:4], ids[:, 4:] = 1, 2
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[:, 2], rgb[:, 3], rgb[:, 4:] = (200, 0, 0), (0, 0, 200), (0, 200, 0)
    for i in range(4):
        Image.fromarray(np.full((6, 6, 3), 9 * i, np.uint8)).save(root / "images" / f"m{i}.png")
        Image.fromarray(rgb).save(root / "masks" / f"m{i}.png")
    colormap = tmp_path / "classes.csv"
    colormap.write_text("class_id,r,g,b\n" + "".join(f"{c},{r},{g},{b}\n" for c, cs in colours.items()
                                                    for r, g, b in cs))
    text = f"folder:{root}?colormap={colormap}"
    source = open_source(text)
    assert source.num_classes == 3
    for example in source.examples(source.ids()).as_numpy_iterator():
        np.testing.assert_array_equal(example["mask"][..., 0], ids)
    report = inspect_source(text)
    assert report["mask_values"] == {"0": 4, "1": 4, "2": 4}
    assert report["class_fraction"] == {"0": round(2 / 6, 4), "1": round(2 / 6, 4), "2": round(2 / 6, 4)}
    with pytest.raises(ConfigError, match="mask_threshold 127: for binary masks only"):
        open_source(f"{text}&mask_threshold=127")


# --------------------------------------------------------------------------- shards corrupted in place

def test_a_shard_corrupted_in_place_at_the_same_size_is_caught_on_the_next_open(tmp_path):
    write_folder(tmp_path / "d", count=4)
    out = tmp_path / "shards"
    write_shards(f"folder:{tmp_path / 'd'}", str(out), shards=2, progress=False)
    assert open_source(f"tfrecord:{out}").ids()  # verified, and remembered for this process
    shard = out / "data-00001-of-00002.tfrecord"
    before = os.stat(shard)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` or `rsync -t` leave it
    assert os.stat(shard).st_size == before.st_size and os.stat(shard).st_mtime_ns == before.st_mtime_ns
    with pytest.raises(DataError, match="data-00001-of-00002.tfrecord: damaged shard: its checksum differs"):
        open_source(f"tfrecord:{out}")


def test_the_worked_example_of_a_new_kind_in_the_architecture_page_runs(tmp_path):
    import re

    from tfseg.data import sources

    page = open(os.path.join(os.path.dirname(__file__), "..", "docs", "ARCHITECTURE.md"), encoding="utf-8").read()
    code = re.search(r"## Adding a SOURCE kind.*?```python\n(.*?)```", page, re.S).group(1)
    rng = np.random.default_rng(0)
    for i in range(5):
        np.savez(tmp_path / f"a{i}.npz", image=rng.integers(0, 256, (6, 8, 3)), mask=rng.integers(0, 3, (6, 8)))
    try:
        exec(compile(code, "ARCHITECTURE.md", "exec"), {"__name__": "tfseg.data.kinds.npz"})
        images, ids = next(iter(load_dataset(f"npz:{tmp_path}?limit=4", split="all", image_size=8, batch_size=4,
                                             num_classes=3, augment=False)))
        assert images.shape == (4, 8, 8, 3) and set(np.unique(ids.numpy())) <= {0, 1, 2}
        assert cli.main(["inspect", "--data", f"npz:{tmp_path}", "--num-classes", "3"]) == 0
    finally:
        sources._KINDS.pop("npz", None)


# --------------------------------------------------------------------------- masks of another size

def write_pair(root, image_size, mask):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros(image_size + (3,), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / "a.png")
    return f"folder:{root}"


def test_a_smaller_class_id_mask_is_resized_by_nearest_neighbour_and_keeps_its_ids(tmp_path):
    ids = np.kron(np.array([[0, 3], [3, 0]]), np.ones((4, 4), int))  # 8x8 blocks of ids 0 and 3
    source = open_source(write_pair(tmp_path / "d", (16, 16), ids), num_classes=4)
    assert source.warnings and "resized with nearest neighbour" in source.warnings[0][1]
    mask = next(source.examples(source.ids()).as_numpy_iterator())["mask"][..., 0]
    np.testing.assert_array_equal(mask, np.repeat(np.repeat(ids, 2, 0), 2, 1))  # no id between 0 and 3


@pytest.mark.parametrize("mask_height, fits", [(9, True), (10, False)])
def test_a_mask_of_another_aspect_ratio_is_tolerated_within_one_pixel_of_rounding(tmp_path, mask_height, fits):
    # image 16x16, mask 8 wide: |8 * 16 - h * 16| <= 16 (the largest side) is a rounding of the same shape
    text = write_pair(tmp_path / "d", (16, 16), np.zeros((mask_height, 8)))
    if fits:
        assert open_source(text).ids() == ["a"]
    else:
        with pytest.raises(DataError, match="does not fit image 16x16 \\(another aspect ratio"):
            open_source(text)


def test_the_smallest_synthetic_images_are_generated_at_8_px():
    assert open_dataset_source("synthetic:5", image_size=4).image_size == 8
    assert open_dataset_source("synthetic:5", image_size=(4, 9)).image_size == 9


def test_a_bare_source_has_the_declared_defaults():
    class Bare(Source):
        def __init__(self):
            self.spec = parse_source("folder:bare")

        def ids(self):
            return [f"b{i:02d}" for i in range(40)]

        def examples(self, ids):
            raise NotImplementedError

    bare = Bare()
    assert (bare.num_classes, bare.ignore_class, bare.mask_threshold, bare.checked, bare.skip_bad) == \
        (1, None, None, False, False)
    assert (list(bare.skipped), list(bare.warnings), bare.split_rule, bare.sample_size("b00")) == ([], [], None, None)
    assert bare.split_ids("train") == bare.split_ids("train", seed=0) != bare.split_ids("train", seed=1)


def write_colour_pair(root, rgb, fmt="png"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    Image.fromarray(np.zeros(rgb.shape, np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(rgb.astype(np.uint8)).save(root / "masks" / f"a.{fmt}")


def test_colour_maps_of_two_classes_gif_masks_and_listed_unknown_colours(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, 3:] = (250, 0, 0)
    colormap = tmp_path / "two.csv"
    colormap.write_text("0,0,0,0\n1,250,0,0\n")
    write_colour_pair(tmp_path / "gif", rgb, "gif")  # GIF masks decode as one frame, not an animation
    source = open_source(f"folder:{tmp_path / 'gif'}?colormap={colormap}")
    assert source.num_classes == 2
    mask = next(source.examples(["a"]).as_numpy_iterator())["mask"][..., 0]
    np.testing.assert_array_equal(mask, (rgb[..., 0] > 0).astype(np.uint8))
    one = tmp_path / "one.csv"
    one.write_text("0,0,0,0\n0,250,0,0\n")
    with pytest.raises(ConfigError, match="maps colours to 1 class; a colour map needs 2 or more"):
        open_source(f"folder:{tmp_path / 'gif'}?colormap={one}")
    for unknown, more in ((4, ""), (5, " and 1 more")):
        many = rgb.copy()
        many[0, :unknown] = [(10 + i, 20, 30) for i in range(unknown)]
        write_colour_pair(tmp_path / f"u{unknown}", many)
        with pytest.raises(DataError) as caught:
            open_source(f"folder:{tmp_path / f'u{unknown}'}?colormap={colormap}")
        listed = str(caught.value).split("colour(s) ")[1]
        assert listed.count(") x1") == 4 and listed.endswith(f"x1{more} not in the colour map {colormap}"), listed
