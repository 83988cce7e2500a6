"""TFRecord shards: :func:`write_shards` (``tfseg prepare``) and the ``tfrecord:DIR`` source.

Decoding JPEG/BMP/TIFF files and walking folders costs more than reading a few
large files sequentially; shards also copy well to a cloud bucket. A prepared
folder holds::

    DIR/data-00000-of-00004.tfrecord ... data-00003-of-00004.tfrecord
    DIR/manifest.json

Each record is a ``tf.train.Example`` with ``id`` and ``group`` (bytes),
``image`` (PNG, RGB; for data images, :mod:`tfseg.data.bands`, the stored tensor itself,
``tf.io.serialize_tensor`` of its uint8 or float32 bands, so no value is rounded; the manifest's
``image_form`` says which) and ``mask`` (PNG, one channel, already in the source's
convention: 0/1 for binary, class ids otherwise), ``height`` and ``width``
(int64). Sample ``i`` of the source's sorted ids goes to shard ``i % N``, so
reading the shards with a deterministic round-robin ``interleave`` gives the
samples back in id order. ``manifest.json`` keeps the source text, the number
of classes, each shard's sample count, size in bytes and SHA-256 (verified
when the source is opened: a truncated, emptied or corrupted shard is named
before training, or its samples are dropped with ``skip_bad``), and the
id -> group lists: the ``tfrecord:``
source splits by them, so train/val/test are the same as the original
source's for the same seed and fractions.

Example:
    >>> from tfseg.data.tfrecord import write_shards            # doctest: +SKIP
    >>> manifest = write_shards("ph2:/data/PH2", "shards/ph2", shards=4)  # doctest: +SKIP
    >>> manifest["num_samples"]                                  # doctest: +SKIP
    200
    >>> # then: tfseg train --data tfrecord:shards/ph2
"""

from __future__ import annotations

import hashlib
import json
from typing import Dict, Optional, Sequence

from tfseg import fileio
from tfseg.data.filecheck import file_version
from tfseg.progress import bar as progress_bar
from tfseg.data.sources import open_source
from tfseg.errors import ConfigError, DataError, TfsegError

MANIFEST = "manifest.json"
FORMAT = "tfseg.tfrecord"
FORMAT_VERSION = 2  # 2: data images (manifest "image_form", serialized tensors); version 1 folders still read
PHOTO_FORMAT_VERSION = 1  # what a folder of photographs is written as (readable by earlier tfseg)
SAMPLES_PER_SHARD = 1024  # default --shards: about this many samples per file
PNG_COMPRESSION = 1


def shard_name(index: int, count: int) -> str:
    """``data-00003-of-00008.tfrecord``."""
    return f"data-{index:05d}-of-{count:05d}.tfrecord"


def _encode(example, image_size: Optional[int], photo: bool = True):
    """Serialise one sample (resized first when ``image_size`` is set, by the pipeline's storage rule
    :func:`tfseg.data.pixels.resize_pixels`); a data image as its tensor (``photo=False``)."""
    import tensorflow as tf

    from tfseg.data.pixels import resize_pixels

    image, mask = example["image"], example["mask"]
    if image_size:
        size = (image_size, image_size)
        image = resize_pixels(image, size)
        mask = tf.image.resize(mask, size, method="nearest")
    shape = tf.shape(image)
    # zlib level 1: ~7x faster than the default level 6 for ~20% larger files (measured on 512x384 RGB).
    encoded = tf.io.encode_png(image, compression=PNG_COMPRESSION) if photo else tf.io.serialize_tensor(image)
    return (example["id"], encoded, tf.io.encode_png(mask, compression=PNG_COMPRESSION), shape[0], shape[1])


def _feature_bytes(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _feature_int(value: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _check_out_dir(out: str, overwrite: bool, inputs: Sequence[str] = (), source=None):
    """Refuse an ``out`` that is not safe to write or replace (see :mod:`tfseg.outputs`).

    A non-empty ``out`` is replaced only with ``overwrite``, and only when it is a shard
    folder this function's writer made: ``manifest.json`` and the shards it names, nothing else.
    It may not hold an input nor lie inside a folder ``source`` reads.
    """
    from tfseg import outputs

    outputs.check_output_folder(out)
    outputs.refuse_run_folder(out)
    for path in inputs:
        if outputs.is_within(path, out):
            raise TfsegError(f"out {out}: holds the input {path}; tfseg never deletes or replaces an input "
                             "(choose another folder)")
    if source is not None:
        outputs.refuse_inside_source(out, source)
    if not (fileio.isdir(out) and fileio.listdir(out)):
        return
    if not fileio.isfile(fileio.join(out, MANIFEST)):
        raise TfsegError(f"out {out}: folder is not empty and is not a tfseg shard folder (no {MANIFEST}); "
                         "it is left alone (choose another folder)")
    try:
        own = {MANIFEST, *(str(shard.get("file")) for shard in read_manifest(out)["shards"])}
    except DataError as err:
        raise TfsegError(f"out {out}: not recognisable as a tfseg shard folder ({str(err).splitlines()[0]}); "
                         "it is left alone (choose another folder)") from None
    foreign = [name for name in fileio.listdir(out) if name not in own and not fileio.is_temporary(name)]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise TfsegError(f"out {out}: holds {foreign[0]}{more}, which tfseg prepare did not write; the folder is "
                         "left alone (choose another folder)")
    if not overwrite:
        raise TfsegError(f"out {out}: holds shards written by tfseg prepare; pass --overwrite (overwrite=True) "
                         "to replace them")


def write_shards(source, out_dir, shards: Optional[int] = None, image_size: Optional[int] = None,
                 progress: bool = True, overwrite: bool = False, **source_options) -> Dict:
    """Write every sample of ``source`` to TFRecord shards plus ``manifest.json``.

    Written to a hidden staging folder next to ``out_dir`` and published by
    :func:`tfseg.fileio.replacing_folder` (staging folders a killed ``prepare`` left are
    removed first): an interrupted run leaves no half-written ``out_dir``. On an object
    store (``gs://``) the rename is a copy; ``manifest.json`` is moved last, so a folder
    without it is unfinished (and refused by the ``tfrecord:`` source).

    Args:
        source: a SOURCE string, a :class:`~tfseg.data.spec.SourceSpec` or an opened Source.
        out_dir: the folder to create; refused if it exists and is not empty, unless ``overwrite``.
        shards: number of files (default: one per :data:`SAMPLES_PER_SHARD` samples); at most one per sample.
        image_size: resize to ``image_size`` x ``image_size`` (image bilinear with antialiasing,
            mask nearest neighbour) before encoding; default: keep the original size.
        progress: ``False`` hides the progress bar (otherwise shown as :mod:`tfseg.progress` decides).
        overwrite: replace a non-empty ``out_dir`` that is a shard folder written by this function
            (and holds nothing else); any other non-empty folder is refused, and so is an ``out_dir``
            that holds the input.
        **source_options: passed to :func:`~tfseg.data.sources.open_source` (``num_classes``, ``skip_bad``, ``ignore_class``...).

    Returns:
        The manifest (also written to ``out_dir/manifest.json``), with ``"path"`` added.
    """
    import tensorflow as tf

    src = open_source(source, **source_options)
    if shards is not None and (isinstance(shards, bool) or not isinstance(shards, int) or shards < 1):
        raise ConfigError(f"shards {shards!r}: must be a positive integer")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"image_size {image_size!r}: must be a positive integer")
    out = fileio.fspath(out_dir).rstrip("/") if fileio.is_url(out_dir) else fileio.fspath(out_dir)
    _check_out_dir(out, overwrite, inputs=[src.spec.path] if src.spec.path else [], source=src)
    ids = src.ids()
    count = min(shards or -(-len(ids) // SAMPLES_PER_SHARD), len(ids))
    names = [shard_name(i, count) for i in range(count)]
    # Staged next to out, manifest.json published last (tfseg.fileio.replacing_folder: the one folder rule).
    with fileio.replacing_folder(out, MANIFEST) as tmp:
        groups = [src.group(i) for i in ids]
        counts = [0] * count
        form = src.image_form
        written = src.examples(ids).map(lambda ex: _encode(ex, image_size, form.photo),
                                        num_parallel_calls=tf.data.AUTOTUNE)
        bar = progress_bar(len(ids), f"writing {len(ids)} samples to {count} shard(s)", unit="sample",
                           show=progress)
        writers = [tf.io.TFRecordWriter(fileio.join(tmp, name)) for name in names]
        try:
            for index, (sample_id, image, mask, height, width) in enumerate(written.as_numpy_iterator()):
                if sample_id.decode() != ids[index]:
                    raise DataError(f"{src.spec.text}: examples came out of order ({sample_id!r} for {ids[index]!r})")
                record = tf.train.Example(features=tf.train.Features(feature={
                    "id": _feature_bytes(sample_id),
                    "group": _feature_bytes(groups[index].encode()),
                    "image": _feature_bytes(image),
                    "mask": _feature_bytes(mask),
                    "height": _feature_int(height),
                    "width": _feature_int(width),
                }))
                writers[index % count].write(record.SerializeToString())
                counts[index % count] += 1
                bar.update()
        finally:
            for writer in writers:
                writer.close()
            bar.close()
        manifest = {
            "format": FORMAT,
            "format_version": PHOTO_FORMAT_VERSION if form.photo else FORMAT_VERSION,
            "source": src.spec.text,
            "num_samples": len(ids),
            "num_classes": int(src.num_classes),
            "image_size": image_size,
            "shards": [{"file": name, "num_samples": n, **shard_digest(fileio.join(tmp, name))}
                       for name, n in zip(names, counts)],
            "ids": list(ids),
            "groups": groups,
            "skipped": [list(item) for item in src.skipped],
        }
        if not form.photo:
            manifest["image_form"] = {"channels": form.channels, "dtype": form.dtype}
        with fileio.open_file(fileio.join(tmp, MANIFEST), "w") as f:
            f.write(json.dumps(manifest, indent=1) + "\n")
    return {**manifest, "path": out}


def shard_digest(path) -> Dict:
    """``{"bytes": size, "sha256": hex digest}`` of one shard file (kept in the manifest, verified on open)."""
    digest, size = hashlib.sha256(), 0
    with fileio.open_file(path, "rb") as f:
        for block in iter(lambda: f.read(4 * 2**20), b""):
            digest.update(block)
            size += len(block)
    return {"bytes": size, "sha256": digest.hexdigest()}


_VERIFIED: Dict[tuple, str] = {}


def shard_problem(path: str, shard: Dict) -> str:
    """Why a shard differs from what the manifest recorded (``""`` when it is intact).

    Manifests with ``bytes``/``sha256`` are checked by size, then by checksum
    (once per process for an unchanged file: :func:`~tfseg.data.filecheck.file_version`
    sees a rewrite in place at the same size, even with its mtime set back); older ones by reading every
    record (TFRecord's own CRCs) and counting them against ``num_samples``.
    """
    import tensorflow as tf

    if not fileio.exists(path):
        return "missing shard"
    version = file_version(path)
    key = version + (shard.get("sha256"),)
    if key in _VERIFIED:
        return _VERIFIED[key]
    if "sha256" in shard:
        length = version[1]
        if length != shard.get("bytes"):
            why = f"damaged shard: {length} bytes, the manifest says {shard.get('bytes')} (truncated or replaced)"
        elif shard_digest(path)["sha256"] != shard["sha256"]:
            why = "damaged shard: its checksum differs from the manifest's (corrupted)"
        else:
            why = ""
    else:
        try:
            found = int(tf.data.TFRecordDataset(path).reduce(0, lambda n, _: n + 1))
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as err:
            return f"damaged shard: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        expected = shard.get("num_samples")
        why = "" if found == expected else f"damaged shard: {found} records, the manifest says {expected}"
    _VERIFIED[key] = why
    return why


def read_manifest(folder) -> Dict:
    """The manifest of a prepared folder; :class:`DataError` naming the file when it is missing or wrong."""
    import tensorflow as tf

    folder = fileio.fspath(folder)
    path = fileio.join(folder, MANIFEST)
    if not fileio.isdir(folder):
        raise DataError(f"{folder}: no such folder (write one with `tfseg prepare --data SOURCE --out DIR`)")
    if not fileio.exists(path):
        # on an object store the manifest is copied last: a folder without it is unfinished
        raise DataError(f"{path}: missing; {folder} was not written (or not finished) by `tfseg prepare`")
    try:
        manifest = json.loads(fileio.read_text(path))
    except (OSError, tf.errors.OpError, ValueError) as err:
        raise DataError(f"{path}: unreadable ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a tfseg shard manifest (format {FORMAT!r} expected)")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(f"{path}: written by a newer tfseg (format_version {manifest['format_version']})")
    if len(manifest.get("ids", [])) != len(manifest.get("groups", [])):
        raise DataError(f"{path}: ids and groups differ in length")
    shards = manifest.get("shards")
    if (not isinstance(shards, list) or not shards
            or sum(int(shard.get("num_samples", -1)) for shard in shards) != len(manifest["ids"])):
        raise DataError(f"{path}: the per-shard sample counts do not add up to its {len(manifest['ids'])} ids")
    return manifest
