"""Real multi-class data: an ignore label (VOC's 255 borders) through the loss, the metrics and
``evaluate``'s per-class table; colour-coded masks with a class-to-colour map."""

import csv
import os

import keras
import numpy as np
import pytest
from PIL import Image

from tfseg import cli
from tfseg.config import LOSSES, TrainConfig
from tfseg.errors import ConfigError, DataError
from tfseg.losses import IgnoreClassLoss, get_loss

IGNORE = 255


def labels_and_two_predictions(num_classes=3, seed=0):
    """Class ids with some 255 pixels, and two predictions that differ only on those pixels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, (2, 6, 6, 1)).astype(np.int32)
    y[:, 2, :, 0] = IGNORE
    p1 = rng.dirichlet(np.ones(num_classes), (2, 6, 6)).astype(np.float32)
    p2 = p1.copy()
    p2[:, 2] = rng.dirichlet(np.ones(num_classes), (2, 6)).astype(np.float32)
    return y, p1, p2


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_ignores_the_pixels_of_the_ignore_class(name):
    y, p1, p2 = labels_and_two_predictions()
    loss = get_loss(name, num_classes=3, ignore_class=IGNORE)
    a, b = float(loss(y, p1)), float(loss(y, p2))
    assert np.isfinite(a) and a == pytest.approx(b, abs=1e-6)
    # ...while the same loss without the ignore class does see them
    plain = get_loss(name, num_classes=3)
    assert float(plain(np.where(y == IGNORE, 0, y), p1)) != pytest.approx(
        float(plain(np.where(y == IGNORE, 0, y), p2)), abs=1e-6)


def test_ignored_pixels_leave_the_dice_loss_as_if_they_were_not_there():
    y, p1, _ = labels_and_two_predictions()
    keep = y[..., 0] != IGNORE
    loss = get_loss("dice", num_classes=3, ignore_class=IGNORE)
    plain = get_loss("dice", num_classes=3)
    # the kept pixels as one row of pixels: the Dice counts are sums, so the layout does not matter
    expected = float(plain(y[keep].reshape(1, 1, -1, 1), p1[keep].reshape(1, 1, -1, 3)))
    assert float(loss(y, p1)) == pytest.approx(expected, abs=1e-6)


def test_ignore_class_loss_round_trips_through_keras_serialization():
    y, p1, _ = labels_and_two_predictions()
    loss = get_loss("cce_dice", num_classes=3, ignore_class=IGNORE)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(again, IgnoreClassLoss) and again.ignore_class == IGNORE
    assert float(again(y, p1)) == pytest.approx(float(loss(y, p1)), abs=1e-7)


def test_ignore_class_needs_class_id_masks(capsys):
    from tfseg.data.sources import open_source

    TrainConfig(ignore_class=IGNORE).validate()  # num_classes 1: the data's count, known when it is opened
    with pytest.raises(ConfigError, match="ignore_class 255: needs class-id masks"):
        open_source("synthetic:8", ignore_class=IGNORE)  # binary masks
    with pytest.raises(ConfigError, match="0..255"):
        TrainConfig(ignore_class=300, num_classes=3).validate()
    assert cli.main(["train", "--ignore-class", "255"]) == 2
    assert "needs class-id masks" in capsys.readouterr().err


# --------------------------------------------------------------------------- evaluate with an ignore label
SIZE = 32


def colour_classifier(path):
    """A saved model whose class is the brightest channel: red -> 0, green -> 1, blue -> 2."""
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Conv2D(3, 1, activation="softmax", dtype="float32")(inputs)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3) * 50, np.zeros(3, np.float32)])
    model.save(path)
    return path


def write_voc_like_folder(root, count=8):
    """Left half red (class 0), right half green (class 1); the mask has a 255 border in columns
    15-16 and row 0 of the right half labelled 2 (the model predicts 1 there)."""
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "masks"))
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:, :16, 0] = 255
    image[:, 16:, 1] = 255
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, 16:] = 1
    mask[0, 17:] = 2
    mask[:, 15:17] = IGNORE
    for i in range(count):
        Image.fromarray(image).save(os.path.join(root, "images", f"v{i}.png"))
        Image.fromarray(mask).save(os.path.join(root, "masks", f"v{i}.png"))
    return f"folder:{root}"


def test_a_255_border_is_a_problem_without_the_ignore_class(tmp_path):
    from tfseg.data.sources import open_source

    data = write_voc_like_folder(str(tmp_path / "voc"))
    with pytest.raises(DataError, match="255"):
        open_source(data, num_classes=3)
    assert len(open_source(data, num_classes=3, ignore_class=IGNORE).ids()) == 8


def test_evaluate_prints_and_writes_the_per_class_table(tmp_path, capsys):
    model = colour_classifier(str(tmp_path / "model.keras"))
    data = write_voc_like_folder(str(tmp_path / "voc"))
    out = str(tmp_path / "eval")
    code = cli.main(["evaluate", "--model", model, "--data", data, "--split", "test", "--ignore-class", "255",
                     "--out", out])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    import json

    result = json.load(open(os.path.join(out, "metrics.json")))
    images = result["test"]["num_images"]
    per_class = result["per_class"]
    # per image: class 0 480 pixels all right; class 1 465 right + 15 predicted where the truth is 2
    expected_iou = [1.0, 465 / 480, 0.0]
    expected_dice = [1.0, 930 / 945, 0.0]
    assert [row["iou"] for row in per_class["classes"]] == pytest.approx(expected_iou)
    assert [row["dice"] for row in per_class["classes"]] == pytest.approx(expected_dice)
    assert [row["true_pixels"] for row in per_class["classes"]] == [480 * images, 465 * images, 15 * images]
    # the means leave the background out (and say so)
    assert per_class["mean_iou"] == pytest.approx(np.mean(expected_iou[1:]))
    assert per_class["mean_dice"] == pytest.approx(np.mean(expected_dice[1:]))
    assert per_class["background_included"] is False and per_class["classes_scored"] == 2
    with open(os.path.join(out, "per_class.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [row["class"] for row in rows] == ["0", "1", "2", "mean"]
    assert float(rows[-1]["iou"]) == pytest.approx(np.mean(expected_iou[1:]))
    assert "mask value 255 ignored" in printed.out and "background (0) left out" in printed.out
    assert f"{465 / 480:.4f}" in printed.out


@pytest.mark.parametrize("mode", ["L", "P"])  # VOC's masks are palette PNGs: the palette index is the class
def test_255_borders_in_grayscale_and_palette_masks_load_as_ids(tmp_path, mode):
    from tfseg.data.sources import open_source

    root = str(tmp_path / "voc")
    data = write_voc_like_folder(root, count=3)
    if mode == "P":
        for name in os.listdir(os.path.join(root, "masks")):
            path = os.path.join(root, "masks", name)
            mask = Image.open(path).convert("L")
            palette = Image.new("P", mask.size)
            palette.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
            palette.putdata(list(mask.getdata()))
            palette.save(path)
    source = open_source(data, num_classes=3, ignore_class=IGNORE)
    masks = [example["mask"][..., 0] for example in source.examples(source.ids()).as_numpy_iterator()]
    expected = np.asarray(Image.open(os.path.join(root, "masks", "v0.png")))
    assert sorted(np.unique(expected).tolist()) == [0, 1, 2, 255]
    for mask in masks:
        np.testing.assert_array_equal(mask, expected)


# --------------------------------------------------------------------------- colour-coded masks
COLOURS = {0: (0, 0, 0), 1: (128, 128, 128), 2: (128, 0, 0), 3: (64, 0, 128)}


def write_colormap(path, colours=COLOURS, header=True, extra=()):
    with open(path, "w") as f:
        if header:
            f.write("class_id,r,g,b,name\n")
        for class_id, (r, g, b) in colours.items():
            f.write(f"{class_id},{r},{g},{b},class{class_id}\n")
        for line in extra:
            f.write(line + "\n")
    return path


def class_ids(seed, size=24):
    rng = np.random.default_rng(seed)
    ids = np.zeros((size, size), np.uint8)
    for class_id in (1, 2, 3):
        y, x = rng.integers(0, size - 8, 2)
        ids[y:y + 8, x:x + 8] = class_id
    return ids


def save_colour_mask(path, ids, fmt, colours=COLOURS):
    rgb = np.zeros(ids.shape + (3,), np.uint8)
    for class_id, colour in colours.items():
        rgb[ids == class_id] = colour
    if fmt == "png-palette":
        image = Image.fromarray(rgb).quantize(colors=len(colours), method=Image.Quantize.FASTOCTREE, dither=0)
        assert np.array_equal(np.asarray(image.convert("RGB")), rgb)
        image.save(path + ".png")
    elif fmt == "png-rgba":
        Image.fromarray(np.dstack([rgb, np.full(ids.shape, 255, np.uint8)])).save(path + ".png")
    elif fmt == "bmp":
        Image.fromarray(rgb).save(path + ".bmp")
    else:
        Image.fromarray(rgb).save(path + ".png")


def write_colour_folder(root, fmt="png", count=6):
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "masks"))
    expected = {}
    for i in range(count):
        ids = class_ids(i)
        image = np.stack([ids * 60, ids * 30, 255 - ids * 50], -1).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(root, "images", f"c{i}.png"))
        save_colour_mask(os.path.join(root, "masks", f"c{i}"), ids, fmt)
        expected[f"c{i}"] = ids
    return expected


@pytest.mark.parametrize("fmt", ["png", "png-palette", "png-rgba", "bmp"])
def test_colour_masks_read_as_class_ids_through_the_colour_map(tmp_path, fmt):
    from tfseg.data import load_dataset
    from tfseg.data.sources import open_source

    root = str(tmp_path / "camvid")
    expected = write_colour_folder(root, fmt)
    colormap = write_colormap(str(tmp_path / "classes.csv"))
    data = f"folder:{root}?colormap={colormap}"
    source = open_source(data)
    assert source.num_classes == 4
    for example in source.examples(source.ids()).as_numpy_iterator():
        np.testing.assert_array_equal(example["mask"][..., 0], expected[example["id"].decode()])
    # the training pipeline: int32 class ids at the image size
    images, masks = next(iter(load_dataset(data, split="train", image_size=24, batch_size=2, augment=False,
                                           shuffle=False)))
    assert masks.dtype.name == "int32" and set(np.unique(masks.numpy())) <= {0, 1, 2, 3}


def test_a_colour_not_in_the_map_names_the_file_and_the_colour(tmp_path):
    from tfseg.data.sources import open_source

    root = str(tmp_path / "camvid")
    write_colour_folder(root)
    bad = os.path.join(root, "masks", "c3.png")
    rgb = np.asarray(Image.open(bad).convert("RGB")).copy()
    rgb[0, 0] = (7, 8, 9)
    Image.fromarray(rgb).save(bad)
    colormap = write_colormap(str(tmp_path / "classes.csv"))
    with pytest.raises(DataError) as raised:
        open_source(f"folder:{root}?colormap={colormap}")
    text = str(raised.value) + " " + " ".join(f"{p}: {m}" for p, m in raised.value.problems)
    assert "c3.png" in text and "(7, 8, 9)" in text and "classes.csv" in text, text


def test_a_colour_mapped_to_the_ignore_value(tmp_path):
    from tfseg.data.sources import open_source

    root = str(tmp_path / "camvid")
    expected = write_colour_folder(root, count=4)
    colours = {**COLOURS}
    del colours[3]
    colormap = write_colormap(str(tmp_path / "classes.csv"), colours, header=False,
                              extra=["# the void colour", "255,64,0,128,void"])
    source = open_source(f"folder:{root}?colormap={colormap}", ignore_class=IGNORE)
    assert source.num_classes == 3
    for example in source.examples(source.ids()).as_numpy_iterator():
        want = np.where(expected[example["id"].decode()] == 3, IGNORE, expected[example["id"].decode()])
        np.testing.assert_array_equal(example["mask"][..., 0], want)


@pytest.mark.parametrize("line, fragment", [
    ("4,1,2", "line 6"), ("4,1,2,300,x", "line 6"), ("5,0,0,0,again", "given twice"),
])
def test_a_damaged_colour_map_names_the_file_and_the_line(tmp_path, line, fragment):
    from tfseg.data.files import read_colormap

    path = write_colormap(str(tmp_path / "classes.csv"), extra=[line])
    with pytest.raises(DataError, match=fragment) as raised:
        read_colormap(path)
    assert "classes.csv" in str(raised.value)


def test_source_options_of_a_folder(tmp_path):
    from tfseg.data.sources import open_source

    root = str(tmp_path / "camvid")
    write_colour_folder(root, count=3)
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        open_source(f"folder:{root}?colour=x.csv")
    with pytest.raises(DataError, match="no such file"):
        open_source(f"folder:{root}?colormap={tmp_path / 'missing.csv'}")


def test_inspect_and_prepare_a_colour_coded_source(tmp_path, capsys):
    from tfseg.data.inspect import inspect_source
    from tfseg.data.sources import open_source

    root = str(tmp_path / "camvid")
    expected = write_colour_folder(root)
    colormap = write_colormap(str(tmp_path / "classes.csv"))
    data = f"folder:{root}?colormap={colormap}"
    report = inspect_source(data)
    assert report["num_classes"] == 4 and report["mask_values"] == {"0": 6, "1": 6, "2": 6, "3": 6}
    assert not report["problems"]
    out = str(tmp_path / "shards")
    assert cli.main(["prepare", "--data", data, "--out", out, "--quiet"]) == 0
    shards = open_source(f"tfrecord:{out}")
    assert shards.num_classes == 4
    for example in shards.examples(shards.ids()).as_numpy_iterator():
        np.testing.assert_array_equal(example["mask"][..., 0], expected[example["id"].decode()])


@pytest.mark.slow
def test_train_and_evaluate_colour_masks_with_an_ignored_colour(tmp_path, capsys):
    import json

    root = str(tmp_path / "camvid")
    write_colour_folder(root, count=24)
    colours = {**COLOURS}
    del colours[3]
    colormap = write_colormap(str(tmp_path / "classes.csv"), colours, extra=["255,64,0,128,void"])
    run = str(tmp_path / "run")
    code = cli.main(["train", "--data", f"folder:{root}?colormap={colormap}", "--num-classes", "3",
                     "--ignore-class", "255", "--image-size", "24", "--base-filters", "4", "--depth", "2",
                     "--epochs", "1", "--out", run, "--verbose", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "3 classes (mask value 255 ignored)" in out.splitlines()[0]
    assert json.load(open(os.path.join(run, "config.json")))["ignore_class"] == IGNORE
    assert cli.main(["evaluate", "--model", run, "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "mask value 255 ignored" in printed
    table = json.load(open(os.path.join(tmp_path, "eval", "metrics.json")))["per_class"]
    # class 3's squares are ignored: no true pixel of a fourth class, three rows
    assert [row["class"] for row in table["classes"]] == [0, 1, 2]
    with open(os.path.join(tmp_path, "eval", "per_image.csv")) as f:
        test_ids = [row["id"] for row in csv.DictReader(f)]
    ignored = sum(int((class_ids(int(i[1:])) == 3).sum()) for i in test_ids)  # masks at their own 24x24 size
    assert ignored > 0
    assert sum(row["true_pixels"] for row in table["classes"]) == len(test_ids) * 24 * 24 - ignored


def test_inspect_prepare_and_shards_with_an_ignore_value(tmp_path, capsys):
    from tfseg.data import load_dataset

    data = write_voc_like_folder(str(tmp_path / "voc"), count=8)
    assert cli.main(["inspect", "--data", data, "--num-classes", "3"]) == 2
    assert "255" in capsys.readouterr().err
    assert cli.main(["inspect", "--data", data, "--num-classes", "3", "--ignore-class", "255"]) == 0
    assert "problems  none" in capsys.readouterr().out
    out = str(tmp_path / "shards")
    assert cli.main(["prepare", "--data", data, "--out", out, "--num-classes", "3", "--ignore-class", "255",
                     "--quiet"]) == 0
    masks = np.concatenate([m.numpy() for _, m in load_dataset(f"tfrecord:{out}", split="train", image_size=SIZE,
                                                              batch_size=4, augment=False, ignore_class=IGNORE)])
    assert sorted(np.unique(masks).tolist()) == [0, 1, 2, IGNORE]
    with pytest.raises(ConfigError, match="needs class-id masks"):
        load_dataset("synthetic:8", split="train", image_size=16, ignore_class=IGNORE)


# --------------------------------------------------------------------------- "ignore" colours, the class count
def test_a_colour_marked_ignore_needs_no_ignore_class(tmp_path):
    from tfseg.data.sources import open_source

    root = str(tmp_path / "camvid")
    expected = write_colour_folder(root, count=3)
    colours = {**COLOURS}
    del colours[3]
    colormap = write_colormap(str(tmp_path / "classes.csv"), colours, extra=["ignore,64,0,128,unlabelled"])
    source = open_source(f"folder:{root}?colormap={colormap}")
    assert (source.num_classes, source.ignore_class) == (3, IGNORE)
    for example in source.examples(source.ids()).as_numpy_iterator():
        want = expected[example["id"].decode()]
        np.testing.assert_array_equal(example["mask"][..., 0], np.where(want == 3, IGNORE, want))
    # with --ignore-class the ignore colours take that value
    source = open_source(f"folder:{root}?colormap={colormap}", ignore_class=200)
    assert (source.num_classes, source.ignore_class) == (3, 200)
    example = next(source.examples(source.ids()).as_numpy_iterator())
    assert set(np.unique(example["mask"])) == {0, 1, 2, 200}
    # an "ignore" line may come first (it is no header)
    first = write_colormap(str(tmp_path / "first.csv"), {}, header=False,
                           extra=["ignore,64,0,128"] + [f"{i},{r},{g},{b}" for i, (r, g, b) in colours.items()])
    assert open_source(f"folder:{root}?colormap={first}").num_classes == 3


def test_a_gap_in_the_colour_map_ids_is_named_not_counted_as_classes(tmp_path):
    from tfseg.data.sources import open_source

    root = str(tmp_path / "camvid")
    write_colour_folder(root, count=3)
    colours = {**COLOURS}
    del colours[3]
    colormap = write_colormap(str(tmp_path / "classes.csv"), colours, extra=["255,64,0,128,void"])
    with pytest.raises(DataError, match=r"class id\(s\) 3\.\.254 have no colour.*'ignore'.*--ignore-class 255"):
        open_source(f"folder:{root}?colormap={colormap}")
    assert open_source(f"folder:{root}?colormap={colormap}", ignore_class=IGNORE).num_classes == 3
    gap = write_colormap(str(tmp_path / "gap.csv"), {0: COLOURS[0], 2: COLOURS[1], 3: COLOURS[2]},
                         extra=["ignore,64,0,128"])
    with pytest.raises(DataError, match=r"class id\(s\) 1 have no colour"):
        open_source(f"folder:{root}?colormap={gap}")


def docs_blocks(name, language):
    """The fenced blocks of ``language`` (``""``: no language given) in ``docs/<name>``."""
    import re

    text = open(os.path.join(os.path.dirname(__file__), "..", "docs", name)).read()
    return [block for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M) if lang == language]


@pytest.mark.slow
def test_every_command_of_docs_multiclass_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/multiclass.md's commands, word for word, on a small CamVid-like folder in ~/data/camvid
    whose classes.csv is the document's own example (its "ignore" colour is class 3's squares)."""
    import json
    import shlex

    home = tmp_path / "home"
    root = str(home / "data" / "camvid")
    write_colour_folder(root, count=12)
    csv_block, = [block for block in docs_blocks("multiclass.md", "") if block.startswith("class_id,r,g,b")]
    with open(os.path.join(root, "classes.csv"), "w") as f:
        f.write(csv_block)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    bash, = [block for block in docs_blocks("multiclass.md", "bash") if "colormap=" in block]
    commands = [shlex.split(line) for line in bash.splitlines() if line.startswith("tfseg ")]
    assert [c[1] for c in commands] == ["inspect", "train", "evaluate"]
    for command in commands:
        assert cli.main(command[1:]) == 0, (command, capsys.readouterr().err)
    printed = capsys.readouterr().out
    assert "3 classes (mask value 255 ignored)" in printed and "background (0) left out" in printed
    result = json.load(open(tmp_path / "runs" / "camvid" / "eval" / "metrics.json"))
    assert result["ignore_class"] == IGNORE and [row["class"] for row in result["per_class"]["classes"]] == [0, 1, 2]


def test_colour_map_headers_blank_lines_and_comments(tmp_path):
    from tfseg.data.files import read_colormap

    # a first line that does not start with a number is a header, whatever follows it
    path = tmp_path / "classes.csv"
    path.write_text("id,0,0,0\n\n , , , \n# a note\n0,0,0,0\n1,9,9,9\n")
    assert read_colormap(str(path)).colours == {(0, 0, 0): 0, (9, 9, 9): 1}
