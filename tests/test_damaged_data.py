"""Damaged or ambiguously encoded data is found before training, named, and refused (or dropped with skip_bad).

Each case writes a real file of the kind users meet: a PNG whose chunk CRCs are valid but whose compressed
pixel data is broken, truncated JPEG/BMP files, a BMP with a bad header, masks drawn only in the alpha channel,
colour-coded and 16-bit masks that would read as one value, a rotated mask, damaged TFRecord shards.
"""

import io
import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sources_testdata import disc, rgb, write_folder
from tfseg.cli import main
from tfseg.data import open_source
from tfseg.data.files import png_problem
from tfseg.data.inspect import inspect_source
from tfseg.data.tfrecord import write_shards
from tfseg.errors import DataError


def png_bytes(array, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", **options)
    return buffer.getvalue()


def with_valid_crcs(data: bytes, edit) -> bytes:
    """``data`` (a PNG) with ``edit(kind, body) -> body`` applied to each chunk and every CRC recomputed."""
    out, pos = [data[:8]], 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = edit(kind, data[pos + 8: pos + 8 + length])
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
        pos += 12 + length
    return b"".join(out)


def broken_zlib_png(seed=0) -> bytes:
    """A PNG whose chunks all have valid CRCs but whose IDAT stream does not inflate."""
    def edit(kind, body):
        if kind != b"IDAT":
            return body
        middle = len(body) // 2
        return body[:middle] + bytes(b ^ 0x5A for b in body[middle: middle + 40]) + body[middle + 40:]
    return with_valid_crcs(png_bytes(rgb(20, 28, seed)), edit)


def bad_filter_png() -> bytes:
    """Valid CRCs and a valid zlib stream, but a row filter byte of 9 (libpng rejects it)."""
    def edit(kind, body):
        if kind != b"IDAT":
            return body
        raw = bytearray(zlib.decompress(body))
        raw[(28 * 3 + 1) * 5] = 9
        return zlib.compress(bytes(raw))
    return with_valid_crcs(png_bytes(rgb(20, 28, 1)), edit)


def bmp_bytes(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "BMP")
    return buffer.getvalue()


# --------------------------------------------------------------------------- pixel data checked up front

def test_broken_png_pixel_data_with_valid_crcs_is_caught():
    data = broken_zlib_png()
    Image.open(io.BytesIO(data)).verify()  # the structure alone looks fine
    assert "corrupted" in png_problem(data) or "cut short" in png_problem(data)
    assert "invalid row filter" in png_problem(bad_filter_png())
    assert png_problem(png_bytes(rgb(20, 28, 2))) == ""
    assert png_problem(png_bytes(rgb(21, 29, 3), optimize=False, interlace=1)) == ""  # Adam7 sizes


DAMAGED_IMAGES = {
    "zlib.png": lambda: broken_zlib_png(),
    "filter.png": lambda: bad_filter_png(),
    "short.jpg": lambda: (lambda d: d[: len(d) // 2])(
        (lambda b: (Image.fromarray(rgb(40, 56, 5)).save(b, "JPEG"), b.getvalue())[1])(io.BytesIO())),
    "header.bmp": lambda: (lambda d: d[:14] + b"\xff" * 8 + d[22:])(bmp_bytes(rgb(20, 28, 6))),
    "pixels.bmp": lambda: bmp_bytes(rgb(20, 28, 7))[:-100],
}


def write_damaged_folder(root):
    """write_folder's 8 samples; s00..s04 get a damaged image, s05 a rotated mask, s06 a colour-coded mask."""
    write_folder(root, count=8)
    damaged = []
    for i, (name, make) in enumerate(DAMAGED_IMAGES.items()):
        (root / "images" / f"s{i:02d}.png").unlink()
        path = root / "images" / f"s{i:02d}{name[name.index('.'):]}"
        path.write_bytes(make())
        damaged.append(str(path))
    Image.fromarray((disc(28, 20, 14, 10, 5) * 255).astype(np.uint8)).save(root / "masks" / "s05.png")
    coded = np.zeros((20, 28, 3), np.uint8)
    coded[..., 1] = 255  # green background
    coded[disc(20, 28, 10, 14, 5)] = (255, 0, 0)  # red lesion: max(R, G, B) = 255 everywhere
    Image.fromarray(coded).save(root / "masks" / "s06.png")
    return damaged + [str(root / "masks" / "s05.png"), str(root / "masks" / "s06.png")]


def test_every_damaged_file_is_named_in_one_data_error(tmp_path):
    bad = write_damaged_folder(tmp_path)
    with pytest.raises(DataError) as caught:
        open_source(f"folder:{tmp_path}")
    assert sorted(path for path, _ in caught.value.problems) == sorted(bad)
    reasons = dict(caught.value.problems)
    assert "another aspect ratio" in reasons[bad[5]] and "colour-coded mask" in reasons[bad[6]]
    assert "truncated" in reasons[bad[4]] and "truncated" in reasons[bad[2]]


def test_skip_bad_drops_damaged_samples_so_every_listed_sample_decodes(tmp_path):
    write_damaged_folder(tmp_path)
    source = open_source(f"folder:{tmp_path}", skip_bad=True)
    assert source.ids() == ["s07"]
    assert [e["id"] for e in source.examples(source.ids()).as_numpy_iterator()] == [b"s07"]


def test_skip_bad_list_is_logged_once_however_often_the_source_is_opened(tmp_path, caplog):
    write_damaged_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tfseg.data.filesource"):
        for _ in range(4):  # train opens the source, then each split
            open_source(f"folder:{tmp_path}", skip_bad=True)
    assert caplog.text.count("skipped 7 problem(s)") == 1


def test_inspect_names_every_problem_in_one_run_and_exits_2(tmp_path, capsys):
    bad = write_damaged_folder(tmp_path)
    assert main(["inspect", "--data", f"folder:{tmp_path}"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    for path in bad:
        assert path in captured.out and path in captured.err


# --------------------------------------------------------------------------- how masks are encoded

def test_mask_drawn_only_in_the_alpha_channel_is_read_from_alpha(tmp_path):
    written = write_folder(tmp_path, count=3)
    for stem, (_, mask) in written.items():
        rgba = np.zeros(mask.shape + (4,), np.uint8)  # RGB black everywhere, as some annotation tools save
        rgba[..., 3] = mask * 255
        Image.fromarray(rgba, "RGBA").save(tmp_path / "masks" / f"{stem}.png")
    gray_alpha = np.stack([np.full_like(written["s01"][1], 255), written["s01"][1] * 255], axis=-1)
    Image.fromarray(gray_alpha, "LA").save(tmp_path / "masks" / "s01.png")
    source = open_source(f"folder:{tmp_path}")
    for example in source.examples(source.ids()).as_numpy_iterator():
        np.testing.assert_array_equal(example["mask"][..., 0], written[example["id"].decode()][1])
    # inspect says so, and counts the lesion as foreground (it reported 0% before)
    report = inspect_source(f"folder:{tmp_path}")
    assert sum("alpha channel" in w["message"] for w in report["warnings"]) == 3
    expected = np.mean([mask.mean() for _, mask in written.values()])
    assert abs(report["class_fraction"]["1"] - expected) < 1e-3


@pytest.mark.parametrize("values, message", [
    ((0, 256), "do not fit 8 bits"),
    ((0, 1000, 2000), "do not fit 8 bits"),
])
def test_16bit_masks_that_would_read_as_one_value_are_refused(tmp_path, values, message):
    write_folder(tmp_path, count=3)
    mask = np.full((20, 28), values[0], np.uint16)
    for k, value in enumerate(values[1:]):
        mask[disc(20, 28, 10, 14, 6 - 2 * k)] = value
    Image.fromarray(mask).save(tmp_path / "masks" / "s01.png")
    with pytest.raises(DataError, match=rf"s01.png: 16-bit mask values .*{message}"):
        open_source(f"folder:{tmp_path}")
    # A 16-bit mask scaled from 8 bits (0/65535) still reads.
    written = write_folder(tmp_path / "scaled", count=3)
    tmp_path = tmp_path / "scaled"
    Image.fromarray(written["s01"][1].astype(np.uint16) * 65535).save(tmp_path / "masks" / "s01.png")
    source = open_source(f"folder:{tmp_path}")
    masks = {e["id"].decode(): e["mask"][..., 0] for e in source.examples(source.ids()).as_numpy_iterator()}
    np.testing.assert_array_equal(masks["s01"], written["s01"][1])


# --------------------------------------------------------------------------- TFRecord shards

@pytest.fixture
def shards(tmp_path):
    write_folder(tmp_path / "data", count=9)
    write_shards(f"folder:{tmp_path / 'data'}", tmp_path / "out", shards=3, progress=False)
    return tmp_path / "out"


def damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # same size, one byte flipped in the middle of a record
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])


@pytest.mark.parametrize("how", ["truncated", "empty", "corrupted"])
def test_damaged_shard_is_refused_naming_it_and_dropped_with_skip_bad(shards, how):
    damage(shards / "data-00001-of-00003.tfrecord", how)
    with pytest.raises(DataError, match=r"data-00001-of-00003.tfrecord: damaged shard") as caught:
        open_source(f"tfrecord:{shards}")
    assert len(caught.value.problems) == 1
    source = open_source(f"tfrecord:{shards}", skip_bad=True)
    assert source.ids() == ["s00", "s02", "s03", "s05", "s06", "s08"]  # sample i went to shard i % 3
    assert [e["id"].decode() for e in source.examples(source.ids()).as_numpy_iterator()] == source.ids()


def test_inspect_reports_every_damaged_shard_and_exits_2(shards, capsys):
    damage(shards / "data-00000-of-00003.tfrecord", "empty")
    damage(shards / "data-00002-of-00003.tfrecord", "corrupted")
    assert main(["inspect", "--data", f"tfrecord:{shards}"]) == 2
    captured = capsys.readouterr()
    for name in ("data-00000-of-00003.tfrecord", "data-00002-of-00003.tfrecord"):
        assert f"{name}: damaged shard" in captured.out and name in captured.err
    assert "Traceback" not in captured.err


# --------------------------------------------------------------------------- a whole training run

@pytest.mark.slow
def test_train_skip_bad_drops_a_damaged_png_from_every_split_and_reports_it_once(tmp_path, capsys, caplog):
    import json

    write_folder(tmp_path / "data", count=12, size=(32, 32))
    damaged = tmp_path / "data" / "images" / "s03.png"
    damaged.write_bytes(broken_zlib_png())
    args = ["train", "--data", f"folder:{tmp_path / 'data'}", "--out", str(tmp_path / "run"), "--epochs", "1",
            "--image-size", "32", "--batch-size", "4", "--base-filters", "4", "--depth", "2"]
    assert main(args) == 2  # refused before training, naming the file
    assert f"{damaged}: unreadable image (PNG pixel data is corrupted" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with caplog.at_level(logging.WARNING, logger="tfseg.data.filesource"):
        assert main(args + ["--skip-bad"]) == 0
    assert caplog.text.count(str(damaged)) == 1
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert sorted(sum(splits.values(), [])) == [f"s{i:02d}" for i in range(12) if i != 3]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["num_images"] == len(splits["test"])
