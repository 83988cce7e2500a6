"""``tfrecord:DIR``: shards written by ``tfseg prepare`` (:func:`tfseg.data.tfrecord.write_shards`).

The manifest says how many classes the masks hold (stored 0/1 or class ids, so
``mask_threshold`` does not apply) and each shard's size and SHA-256: every shard is
verified when the source opens (:func:`tfseg.data.tfrecord.shard_problem`).
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence

from tfseg import fileio
from tfseg.data.bands import Form
from tfseg.data.sources import Source, register_source
from tfseg.data.spec import SourceSpec
from tfseg.data.tfrecord import read_manifest, shard_problem
from tfseg.errors import DataError

logger = logging.getLogger(__name__)


@register_source
class TfrecordSource(Source):
    """``tfrecord:DIR``: shards written by :func:`~tfseg.data.tfrecord.write_shards`.

    Every shard is verified when the source is opened (:func:`~tfseg.data.tfrecord.shard_problem`:
    size and checksum against the manifest), so a truncated, empty or
    corrupted shard stops a run before training, naming the shard.

    Args:
        spec: the parsed ``tfrecord:DIR``.
        num_classes: if given, checked against the manifest's (:func:`tfseg.masks.resolve_num_classes`).
        ignore_class: a mask value allowed beside the class ids (as when the shards were written).
        skip_bad: drop the samples of damaged or missing shards (listed in
            :attr:`skipped`) instead of raising :class:`DataError`.
    """

    KIND = "tfrecord"
    RAW_MASKS = False
    checked = True

    def __init__(self, spec: SourceSpec, num_classes: Optional[int] = None, skip_bad: bool = False,
                 ignore_class: Optional[int] = None, mask_threshold: Optional[int] = None):
        self.spec = spec
        self.folder = fileio.fspath(spec.path)
        self.manifest = read_manifest(self.folder)
        self.set_mask_settings(num_classes, ignore_class, mask_threshold, own_classes=int(self.manifest["num_classes"]))
        self.skip_bad = bool(skip_bad)
        self.skipped = [tuple(item) for item in self.manifest.get("skipped", [])]
        if "image_form" in self.manifest:  # data images (tfseg.data.bands), stored as tensors
            self.image_form = Form(int(self.manifest["image_form"]["channels"]), self.manifest["image_form"]["dtype"],
                                   photo=False)
        shards = self.manifest["shards"]
        found = {index: shard_problem(fileio.join(self.folder, shard["file"]), shard)
                 for index, shard in enumerate(shards)}
        bad = sorted(index for index, why in found.items() if why)
        self._problems = [(fileio.join(self.folder, shards[i]["file"]), found[i]) for i in bad]
        ids, groups = self.manifest["ids"], self.manifest["groups"]
        if self._problems:
            message = f"data source {spec.text!r}: {len(self._problems)} damaged or missing shard(s)"
            if not self.skip_bad:
                raise DataError(message + " (write them again with `tfseg prepare`, or drop their samples "
                                "with --skip-bad)", self._problems)
            if len(bad) == len(shards):
                raise DataError(message + ": no usable samples left", self._problems)
            self.skipped += [(fileio.join(self.folder, shards[i]["file"]),
                              f"{found[i]} ({shards[i]['num_samples']} samples dropped)") for i in bad]
        # Sample i was written to shard i % N (see write_shards).
        keep = [i for i in range(len(ids)) if i % len(shards) not in bad]
        self.files = [fileio.join(self.folder, shard["file"]) for i, shard in enumerate(shards) if i not in bad]
        self._groups = {ids[i]: groups[i] for i in keep}
        self._order = {ids[i]: rank for rank, i in enumerate(keep)}

    def folders(self) -> List[str]:
        return [self.folder]

    def ids(self) -> List[str]:
        return sorted(self._groups)

    def problems(self):
        """Damaged or missing shards: ``[(shard path, why), ...]``."""
        return list(self._problems)

    def group(self, sample_id: str) -> str:
        return self._groups[sample_id]

    def examples(self, ids: Sequence[str]):
        """Examples for ``ids`` in the order they were written (the source's id order)."""
        import tensorflow as tf

        unknown = [i for i in ids if i not in self._groups]
        if unknown:
            raise DataError(f"data source {self.spec.text!r}: unknown sample id(s) {', '.join(unknown[:5])}")
        if [self._order[i] for i in ids] != sorted(self._order[i] for i in ids):
            logger.warning("%s: examples come in the order they were written, not in the order asked",
                           self.spec.text)
        files = tf.data.Dataset.from_tensor_slices(self.files)
        # Round-robin over the shards, one record each, undoes the i % N assignment of write_shards.
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=max(len(self.files), 1), block_length=1,
                                   num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        spec = {
            "id": tf.io.FixedLenFeature([], tf.string),
            "image": tf.io.FixedLenFeature([], tf.string),
            "mask": tf.io.FixedLenFeature([], tf.string),
        }
        parsed = records.map(lambda record: tf.io.parse_single_example(record, spec),
                             num_parallel_calls=tf.data.AUTOTUNE)
        wanted = sorted(set(ids))
        if len(wanted) < len(self._groups):
            table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(wanted + [""], tf.string),
                                                    tf.constant([1] * len(wanted) + [0], tf.int32)),
                default_value=0)
            # Stop reading once every wanted record has gone by.
            parsed = parsed.filter(lambda example: table.lookup(example["id"]) > 0).take(len(wanted))

        form = self.image_form

        def decode(example):
            if form.photo:
                image = tf.ensure_shape(tf.io.decode_png(example["image"], channels=3), [None, None, 3])
            else:
                image = tf.ensure_shape(tf.io.parse_tensor(example["image"], tf.as_dtype(form.storage_dtype)),
                                        [None, None, form.channels])
            mask = tf.ensure_shape(tf.io.decode_png(example["mask"], channels=1), [None, None, 1])
            return {"id": example["id"], "image": image, "mask": mask}

        return parsed.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
