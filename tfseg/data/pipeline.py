"""``load_dataset``: SOURCE -> batched ``tf.data.Dataset`` of (images, masks).

The stages, in order::

    open the source -> ids of the split -> examples(ids) (decode, original size)
    -> resize (image bilinear with antialiasing, mask nearest) to uint8
    -> cache (in memory, after resizing, before augmentation; see ``cache``)
    -> shuffle (train) -> scale to float32 -> augment (train) -> repeat -> batch -> prefetch

Images come out float32 ``[B, H, W, 3]`` in [0, 1]; binary masks float32
``[B, H, W, 1]`` in {0, 1}; multi-class masks int32 class ids ``[B, H, W, 1]``.

Example:
    >>> from tfseg.data import load_dataset
    >>> ds = load_dataset("synthetic:20", split="train", image_size=32, batch_size=4)
    >>> images, masks = next(iter(ds))
    >>> images.shape, masks.dtype.name
    (TensorShape([4, 32, 32, 3]), 'float32')
"""

from __future__ import annotations

import logging
import numbers
import os
from typing import Dict, Optional

import tensorflow as tf

from tfseg import masks
from tfseg.data.augment import augment_config, augment_example
from tfseg.data.bands import Normalization, band_statistics, default_normalization
from tfseg.data.pixels import PIXEL_RANGE, model_inputs, resize_pixels, stored_pixels
from tfseg.data.pixels import RESIZE_ANTIALIAS, RESIZE_METHOD, resize_image  # noqa: F401 - their former home
from tfseg.data.patches import DEFAULT_FOREGROUND_FRACTION, check_patch_options, random_patch, rescale_example
from tfseg.data.sources import Source, check_opened, open_source, source_class
from tfseg.data.spec import parse_source
from tfseg.data.splits import SPLITS, FoldSplit, validate_fractions
from tfseg.config import CACHES, DEFAULT_FRACTIONS, image_hw
from tfseg.errors import ConfigError, TfsegError

log = logging.getLogger(__name__)

# ``cache="auto"`` keeps a split in memory when it needs less than this share of the RAM.
CACHE_RAM_FRACTION = 0.25
# The shuffle buffer holds at most this many bytes of resized samples.
SHUFFLE_BUFFER_BYTES = 256 * 2**20


def load_dataset(
    source,
    split: str = "train",
    image_size=256,
    batch_size: int = 8,
    augment=None,
    seed: Optional[int] = 0,
    shuffle: Optional[bool] = None,
    cache="auto",
    fractions=DEFAULT_FRACTIONS,
    num_classes: Optional[int] = None,
    repeat: bool = False,
    skip_bad: bool = False,
    drop_remainder: bool = False,
    patch_size: Optional[int] = None,
    scale: float = 1.0,
    foreground_fraction: float = DEFAULT_FOREGROUND_FRACTION,
    normalization=None,
    border_weight=None,
    **source_options,
) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of ``(images, masks)`` for one split of a source.

    Args:
        source: a SOURCE string (``"synthetic:200"``, ``"ph2:/data/PH2Dataset"``, ...),
            a :class:`~tfseg.data.spec.SourceSpec` or an opened :class:`~tfseg.data.sources.Source`.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (see :mod:`tfseg.data.splits`).
        image_size: output side ``N`` or ``(height, width)``; ``None``: every image at its own
            size (times ``scale``), one image per batch (``batch_size`` must be 1), as
            whole-image evaluation of a patch-trained model needs.
        batch_size: samples per batch.
        augment: ``None`` = on for train, off otherwise; ``True``/``False``; a dict of
            :class:`~tfseg.data.augment.AugmentConfig` fields or an ``AugmentConfig``.
        seed: fixes the split, the shuffle order and the augmentation. ``None``: the
            split uses seed 0, shuffling and augmentation are not reproducible.
        shuffle: ``None`` = on for train only; reshuffled every epoch.
        cache: ``"auto"`` (in memory when the resized split needs under 25% of the
            RAM, else not cached; logged), ``"memory"`` or ``"none"``.
        fractions: ``(train, val, test)`` fractions, summing to 1.
        num_classes: ``None`` = the source's; 1 gives binary float masks,
            more gives int32 class ids.
        repeat: repeat forever (for ``steps_per_epoch``); batches then span epochs.
        skip_bad: drop samples that fail to decode instead of stopping (sources checked
            when opened, ``checked = True``, drop them there and list them).
        drop_remainder: drop the last incomplete batch (static batch size).
        patch_size: ``N``: native resolution, one random ``N x N`` crop per sample and epoch
            (:mod:`tfseg.data.patches`; ``image_size`` is then only the size ``synthetic`` is
            generated at); augmentation runs on the crop.
        scale: with ``patch_size`` or ``image_size=None``, images (and masks) are first
            resized by this factor (e.g. 0.5 halves each side).
        foreground_fraction: with ``patch_size``, the chance that a crop is centred on a
            random foreground pixel (else uniform over the image).
        normalization: how pixels become model inputs (:class:`tfseg.data.bands.Normalization`, its
            dict or text); ``None``: ``x / 255`` for 8-bit images, else per-band statistics measured
            on the ``train`` split of the same seed and fractions (:func:`resolve_normalization`).
        border_weight: ``(w0, sigma)`` or ``"w0,sigma"``: each sample also carries the U-Net paper's
            border weight map of its (augmented) mask, ``[H, W, 1]``, as ``model.fit``'s pixel
            weights (:mod:`tfseg.data.borders`).
        **source_options: passed to the source's opener (e.g. ``seed`` of ``synthetic``).

    Returns:
        ``tf.data.Dataset`` of ``(images float32 [B,H,W,C], masks [B,H,W,1])``: C = 3 and [0, 1] for
        photographs; a data source's own bands (:attr:`Source.image_form`), normalised (and
        ``weights float32 [B,H,W,1]`` with ``border_weight``).

    Raises:
        TfsegError: bad source, split, size or option (one line naming it);
        DataError: the split is empty.
    """
    if patch_size is not None or image_size is None:
        return _native_dataset(source, split, patch_size, scale, foreground_fraction, batch_size, augment, seed,
                               shuffle, cache, fractions, num_classes, repeat, skip_bad, drop_remainder,
                               source_options, image_size, normalization, border_weight)
    size = image_hw(image_size)
    batch_size = _positive_int("batch_size", batch_size)
    config = augment_config(split == "train" if augment is None else augment)
    shuffle = split == "train" if shuffle is None else bool(shuffle)

    def resized(image, mask, classes, form):
        return resize_example(image, mask, size, classes, form)

    # Plain TensorFlow ops: autograph's source conversion would only add tracing time (a cold start cost).
    plain = tf.autograph.experimental.do_not_convert
    ds, opened, classes, ids, cache = _split_examples(source, split, seed, cache, fractions, num_classes, skip_bad,
                                                      source_options, size, plain(resized))
    sample_bytes = size[0] * size[1] * (_pixel_bytes(opened.image_form) + MASK_DTYPE.size)
    norm = resolve_normalization(normalization, opened, seed, fractions)
    if config is not None and norm.kind != "uint8":
        config = config.without_colour()
    if use_memory_cache(cache, len(ids) * sample_bytes, f"{opened.spec.text} {split}"):
        ds = ds.cache()
    if shuffle:
        buffer = max(1, min(len(ids), SHUFFLE_BUFFER_BYTES // sample_bytes))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(plain(lambda image, mask: scale_example(image, mask, classes, norm)),
                num_parallel_calls=tf.data.AUTOTUNE)
    if config is not None:
        # One [2] seed per sample, new every epoch, reproducible from ``seed``.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, s: augment_example(pair[0], pair[1], s, config), num_parallel_calls=tf.data.AUTOTUNE
        )
    ds = _border_weighted(ds, border_weight, classes, opened.ignore_class)
    return _batched(ds, batch_size, drop_remainder, repeat, seed)


def _native_dataset(source, split, patch_size, scale, foreground_fraction, batch_size, augment, seed, shuffle,
                    cache, fractions, num_classes, repeat, skip_bad, drop_remainder, source_options,
                    image_size=None, normalization=None, border_weight=None):
    """:func:`load_dataset` at native resolution: random patches (``patch_size``) or whole images (batch 1).

    The stages: :func:`native_examples` (storage form, times ``scale``, cached) -> shuffle
    -> random crop (patches) -> float32 -> augment (the crop) -> repeat -> batch.
    """
    check_patch_options(patch_size, scale, foreground_fraction)
    batch_size = _positive_int("batch_size", batch_size)
    if patch_size is None and batch_size != 1:
        raise ConfigError(f"batch_size {batch_size}: whole images of their own sizes are batched one at a time "
                          "(use batch_size=1, or a patch_size)")
    config = augment_config(split == "train" if augment is None else augment)
    if patch_size is None:
        config = None  # whole images are scored as they are
    shuffle = split == "train" if shuffle is None else bool(shuffle)
    ds, opened, classes, count, sample_bytes = _stored_examples(source, split, scale, seed, cache, fractions,
                                                                num_classes, skip_bad, source_options, image_size)
    norm = resolve_normalization(normalization, opened, seed, fractions)
    if config is not None and norm.kind != "uint8":
        config = config.without_colour()
    if shuffle:
        buffer = max(1, min(count, SHUFFLE_BUFFER_BYTES // sample_bytes))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if patch_size is not None:
        # One [4] seed per sample and epoch: two numbers for the crop, two for the augmentation.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4)

        def crop(pair, s):
            image, mask = random_patch(pair[0], pair[1], patch_size, s[:2], foreground_fraction,
                                       ignore_class=opened.ignore_class)
            image, mask = scale_example(image, mask, classes, norm)
            if config is not None:
                image, mask = augment_example(image, mask, s[2:], config)
            return image, mask

        ds = tf.data.Dataset.zip((ds, seeds)).map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda image, mask: scale_example(image, mask, classes, norm), num_parallel_calls=tf.data.AUTOTUNE)
    ds = _border_weighted(ds, border_weight, classes, opened.ignore_class)
    return _batched(ds, batch_size, drop_remainder, repeat, seed)


def _border_weighted(ds, border_weight, num_classes: int, ignore_class):
    """The samples' last stage before batching: with ``border_weight``, the border weight map of each
    (augmented, cropped) mask appended (:func:`tfseg.data.borders.with_border_weights`)."""
    if border_weight is None:
        return ds
    from tfseg.data.borders import with_border_weights

    return with_border_weights(ds, border_weight, num_classes, ignore_class)


def _batched(ds, batch_size: int, drop_remainder: bool, repeat: bool, seed: Optional[int]) -> tf.data.Dataset:
    """The last stages of both pipelines: repeat -> batch -> prefetch, deterministic when seeded."""
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = seed is not None
    return ds.with_options(options)


def native_examples(source, split: str = "test", seed: Optional[int] = 0, fractions=DEFAULT_FRACTIONS,
                    num_classes: Optional[int] = None, scale: float = 1.0, cache="auto", skip_bad: bool = False,
                    image_size=None, **source_options) -> tf.data.Dataset:
    """One split's samples at their own size in the pipeline's storage form, unbatched, in split order.

    What whole-image scoring reads (:mod:`tfseg.evaluation`, training's val/test scores): each
    image goes through :mod:`tfseg.segment` at its own size and is scored against its own mask.

    Args:
        source, split, seed, fractions, num_classes, cache, skip_bad, **source_options: as in
            :func:`load_dataset`.
        scale: resize image (:func:`~tfseg.data.pixels.resize_pixels`) and mask (nearest) by this factor.
        image_size: only the size ``synthetic`` is generated at.

    Returns:
        ``tf.data.Dataset`` of ``(image uint8 [h, w, 3], mask [h, w, 1])`` (a data source: its bands,
        uint8 or float32 raw values, :mod:`tfseg.data.bands`): the mask uint8 {0, 1}
        (binary) or class ids (uint8; int32 above 256 classes), as :func:`native_example` gives them.
    """
    check_patch_options(None, scale, 0.0)
    ds, *_ = _stored_examples(source, split, scale, seed, cache, fractions, num_classes, skip_bad, source_options,
                                image_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def _stored_examples(source, split, scale, seed, cache, fractions, num_classes, skip_bad, source_options,
                     image_size):
    """``(dataset of storage-form samples at native size x scale, the opened source, num_classes, samples,
    bytes of one sample)``.

    The stages: examples (original size) -> storage form (uint8, mask {0,1}/ids) -> ``scale`` -> cache.
    """
    def stored(image, mask, classes, form):
        return rescale_example(*native_example(image, mask, classes, form), scale)

    # image_size only reaches ``synthetic``, which is generated at one size (its native size here).
    ds, opened, classes, ids, cache = _split_examples(source, split, seed, cache, fractions, num_classes, skip_bad,
                                                      source_options, image_size, stored)
    sample_bytes = _native_sample_bytes(opened, ids, scale)
    if use_memory_cache(cache, len(ids) * sample_bytes, f"{opened.spec.text} {split}"):
        ds = ds.cache()
    return ds, opened, classes, len(ids), sample_bytes


def _split_examples(source, split, seed, cache, fractions, num_classes, skip_bad, source_options, image_size,
                    transform):
    """The first stages of both pipelines: ``(dataset, opened source, num_classes, ids, cache)``.

    Checks ``split``, ``fractions`` and ``cache``; opens the source once (every setting reaches its
    kind); lists the split's ids; maps each example's ``(image, mask)`` through
    ``transform(image, mask, num_classes, form)`` after the class-id check (before any resize, which may skip
    the offending pixels); counts the samples (or drops failures with ``skip_bad`` on an unchecked source).
    """
    if split not in SPLITS + ("all",):
        raise ConfigError(f"split {split!r}: choose one of train, val, test, all")
    fractions = validate_fractions(fractions)
    if cache is True or cache is False or cache is None:
        cache = "memory" if cache else "none"
    if cache not in CACHES:
        raise ConfigError(f"cache {cache!r}: choose one of {', '.join(CACHES)}")
    opened = open_dataset_source(source, image_size=image_size, num_classes=num_classes, skip_bad=skip_bad,
                                 **source_options)
    classes = resolve_num_classes(opened, num_classes)
    ids = opened.split_ids(split, seed=0 if seed is None else seed, fractions=fractions)
    if not ids:
        raise TfsegError(f"data source {opened.spec.text!r}: the {split!r} split is empty ({len(opened.ids())} samples)")

    def example_pair(example):
        mask = example["mask"]
        if classes > 1:
            mask = _checked_class_ids(mask, classes, example["id"], opened.ignore_class)
        return transform(example["image"], mask, classes, opened.image_form)

    ds = opened.examples(ids).map(tf.autograph.experimental.do_not_convert(example_pair),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    if skip_bad and not opened.checked:
        ds = ds.ignore_errors(log_warning=True)  # a source not checked up front drops what fails here
    else:
        # Every listed sample is known to decode: say how many, so that Keras counts the steps of an epoch
        # (no "Your input ran out of data" warning) and a sample that went missing is an error, not a silent loss.
        ds = ds.apply(tf.data.experimental.assert_cardinality(len(ids)))
    return ds, opened, classes, ids, cache


def native_example(image, mask, num_classes: int = 1, form=None):
    """:func:`resize_example` without the resizing: ``(uint8 [h, w, 3], mask [h, w, 1])`` at the sample's size
    (a data ``form``'s image as it is)."""
    image = tf.convert_to_tensor(image)
    if _is_data(form):
        pass
    elif not (image.dtype == tf.uint8 and image.shape.rank == 3 and image.shape[-1] == 3):
        image = stored_pixels(_rgb_float(image) * PIXEL_RANGE)
    mask, threshold = _mask_values(tf.convert_to_tensor(mask), num_classes)
    return image, threshold(mask)


def _native_sample_bytes(opened, ids, scale: float) -> int:
    """Bytes of one stored sample, estimated from the first one (for the cache and shuffle sizes)."""
    size = opened.sample_size(ids[0])
    if size is None:  # not known without decoding it
        try:
            first = next(iter(opened.examples(list(ids[:1]))))
            size = tuple(int(d) for d in first["image"].shape[:2])
        except (tf.errors.OpError, StopIteration):  # an unreadable first sample: assume a 1024 px square
            size = (1024, 1024)
    height, width = size
    return max(1, int(height * width * float(scale) ** 2 * (_pixel_bytes(opened.image_form) + MASK_DTYPE.size)))


def _pixel_bytes(form) -> int:
    """Bytes one stored pixel of ``form`` takes (uint8 or float32 per band)."""
    return form.channels * (1 if form.storage_dtype == "uint8" else 4)


def _is_data(form) -> bool:
    return form is not None and not form.photo


def resolve_normalization(normalization, source: Source, seed: Optional[int] = 0,
                          fractions=DEFAULT_FRACTIONS) -> Normalization:
    """``normalization`` for an opened ``source``: ``None`` -> :func:`tfseg.data.bands.default_normalization`
    (``x / 255`` for 8-bit images); ``per_band`` without numbers -> measured on the ``train`` split
    (:func:`tfseg.data.bands.band_statistics`, every pixel at native size); a fold of a
    cross-validation (:class:`~tfseg.data.splits.FoldSplit`) measures every non-test sample (its
    training and validation folds), so that all folds normalise alike and their ensemble takes
    one input (image statistics only: no mask is read).

    Raises:
        ConfigError: per-band numbers for another band count than the source's.
    """
    norm = Normalization.parse(normalization) or default_normalization(source.image_form)
    if not norm.measured:
        fractions = validate_fractions(fractions)
        seed = 0 if seed is None else seed
        ids = source.split_ids("train", seed=seed, fractions=fractions)
        if isinstance(fractions, FoldSplit):  # every fold's run measures the same pixels: its folds' ensemble
            ids = sorted([*ids, *source.split_ids("val", seed=seed, fractions=fractions)])  # takes one input
        norm = band_statistics(example["image"].numpy() for example in source.examples(ids))
    norm.check_channels(source.image_form.channels, f"the images of {source.spec.text!r}")
    return norm


def dataset_summary(source, seed: int = 0, fractions=DEFAULT_FRACTIONS, **source_options) -> Dict:
    """What the trainer needs before building a model, without decoding any image.

    Returns:
        ``{"source": text, "num_classes": int, "counts": {"train": n, "val": n, "test": n}, "total": n}``.

    Example:
        >>> dataset_summary("synthetic:100")["counts"]
        {'train': 70, 'val': 15, 'test': 15}
    """
    fractions = validate_fractions(fractions)
    opened = open_dataset_source(source, **source_options)
    counts = {split: len(opened.split_ids(split, seed=seed, fractions=fractions)) for split in SPLITS}
    return {
        "source": opened.spec.text,
        "num_classes": int(opened.num_classes),
        "counts": counts,
        "total": len(opened.ids()),
    }


def open_dataset_source(source, image_size=None, num_classes=None, skip_bad=False, ignore_class=None,
                        **options) -> Source:
    """Open ``source`` for the pipeline; ``synthetic`` is generated at ``image_size`` directly.

    ``num_classes``, ``skip_bad``, ``ignore_class`` and ``options`` reach every kind (each
    declares what it accepts: :meth:`~tfseg.data.sources.Source.settings`; the file sources
    check every mask with them when opened). An opened :class:`Source` passes through when
    its settings agree (:func:`~tfseg.data.sources.check_opened`).
    """
    settings = {"num_classes": num_classes, "ignore_class": ignore_class, "skip_bad": skip_bad or None, **options}
    if isinstance(source, Source):
        return check_opened(source, **settings)
    spec = parse_source(source)
    if image_size is not None and settings.get("image_size") is None and \
            "image_size" in source_class(spec.kind).settings():
        height, width = image_hw(image_size)
        # Generated square; a non-square request is resized from the larger side.
        settings["image_size"] = max(height, width, 8)
    return open_source(spec, **settings)


def resolve_num_classes(source: Source, num_classes: Optional[int]) -> int:
    """``num_classes`` checked against the source's (``None`` -> the source's): :func:`tfseg.masks.resolve_num_classes`."""
    return masks.resolve_num_classes(num_classes, source.num_classes, f"data source {source.spec.text!r}")


def use_memory_cache(cache: str, nbytes: int, what: str = "data") -> bool:
    """Whether to cache ``nbytes`` of resized samples in memory; ``auto`` decides by RAM and logs it."""
    if cache != "auto":
        return cache == "memory"
    limit = int(_total_ram() * CACHE_RAM_FRACTION)
    fits = nbytes <= limit
    log.info(
        "%s: %s in memory (%.1f MiB resized; limit %.0f MiB = %d%% of RAM)",
        what,
        "caching" if fits else "not caching",
        nbytes / 2**20,
        limit / 2**20,
        CACHE_RAM_FRACTION * 100,
    )
    return fits


def _total_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 4 * 2**30


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} {value!r}: must be a positive integer")
    return int(value)


# Masks in storage form: 0/1 or class ids below tfseg.masks.MAX_CLASSES, four times smaller than int32 in the cache.
MASK_DTYPE = tf.uint8


_IMAGE_DTYPES = {tf.uint8: 255.0, tf.uint16: 65535.0, tf.float16: 1.0, tf.float32: 1.0, tf.float64: 1.0, tf.bool: 1.0}


def resize_example(image, mask, image_size, num_classes: int = 1, form=None):
    """One sample to the pipeline's storage form: ``(image uint8 [h,w,3], mask [h,w,1])``.

    Accepts what sources and users plausibly hand in: images ``[H, W]`` or
    ``[H, W, C]`` with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) of
    dtype uint8, uint16, float (in [0, 1]) or bool; masks ``[H, W]`` or ``[H, W, C]``.
    Binary masks (``num_classes == 1``) may be {0, 1}, {0, 255}, uint16, bool, float,
    or black/white RGB(A): channels become one by the mask rule of
    :func:`tfseg.data.decode.mask_channel` (the maximum over the colour channels, or
    the alpha of a mask drawn only there), then foreground is the rule of
    :func:`tfseg.masks.foreground` (above half the mask's range, > 0.5 for {0, 1}). Multi-class masks must be one
    channel of integer class ids. The image is resized bilinearly with
    antialiasing and rounded to uint8; the mask with nearest neighbour, so its
    values never change. Image and mask may differ in size: each is resized.

    Args:
        image, mask: tensors as above.
        image_size: ``N`` or ``(height, width)``.
        num_classes: 1 for binary masks, else the number of classes.
        form: a data source's :class:`tfseg.data.bands.Form`: the image keeps its bands and values
            (:func:`~tfseg.data.pixels.resize_pixels`: uint8 stays uint8, other values float32).

    Returns:
        ``(uint8 [h, w, 3], uint8 [h, w, 1])`` (data: ``[h, w, channels]`` uint8 or float32).

    Raises:
        TfsegError: a rank, channel count, dtype or size that cannot be an image or mask.
    """
    size = image_hw(image_size)
    image = tf.convert_to_tensor(image)
    if _is_data(form):  # every band, raw values
        image = resize_pixels(image, size) if tuple(image.shape[:2]) != size else image
    else:
        if image.dtype == tf.uint8 and image.shape.rank == 3 and image.shape[-1] == 3:
            image = _image_rank3(image, "image")  # the decoders' output: resize the 0..255 values directly
        else:
            image = _rgb_float(image) * PIXEL_RANGE
        image = resize_pixels(image, size, rounded=True) if tuple(image.shape[:2]) != size else stored_pixels(image)
    mask, threshold = _mask_values(tf.convert_to_tensor(mask), num_classes)
    if tuple(mask.shape[:2]) != size:
        # Nearest neighbour picks pixels, so thresholding after it (at the full mask's rule) is exact and cheaper.
        mask = tf.image.resize(mask, size, method="nearest")
    mask = threshold(mask)
    image.set_shape(size + (image.shape[-1],))
    mask.set_shape(size + (1,))
    return image, mask


def scale_example(image, mask, num_classes: int = 1, normalization=None):
    """Storage form -> model form: image float32 by ``normalization`` (:func:`~tfseg.data.pixels.model_inputs`:
    in [0, 1] for 8-bit images by default); mask float32 {0, 1} (binary) or int32 ids."""
    image = model_inputs(image, normalization)
    mask = tf.cast(mask, tf.float32 if num_classes == 1 else tf.int32)
    return image, mask


def _image_rank3(tensor, what):
    rank = tensor.shape.rank
    if rank is None:
        raise TfsegError(f"{what}: unknown rank; expected [height, width] or [height, width, channels]")
    if rank not in (2, 3):
        raise TfsegError(f"{what} of shape {tensor.shape}: expected [height, width] or [height, width, channels]")
    if rank == 2:
        tensor = tensor[..., None]
    if 0 in tuple(d for d in tensor.shape if d is not None):
        raise TfsegError(f"{what} of shape {tensor.shape}: has no pixels")
    return tensor


def _rgb_float(image):
    if image.dtype not in _IMAGE_DTYPES:
        raise TfsegError(f"image dtype {image.dtype.name}: expected uint8, uint16, float or bool")
    scale = _IMAGE_DTYPES[image.dtype]
    image = _image_rank3(image, "image")
    channels = image.shape[-1]
    if channels is not None and channels > 4:
        raise TfsegError(f"image with {channels} channels: expected 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA)")
    image = tf.cast(image, tf.float32) / scale
    if channels in (1, 2):
        return tf.tile(image[..., :1], [1, 1, 3])
    if channels in (3, 4):
        return image[..., :3]
    return tf.cond(
        tf.shape(image)[-1] >= 3, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3])
    )


def _mask_values(mask, num_classes):
    """``(one-channel mask of raw values, threshold)``: ``threshold(mask)`` gives the storage form.

    The binary rule's cut (:func:`tfseg.masks.binary_cut`) is taken from the whole mask here,
    so applying it after a nearest-neighbour resize is exact.
    """
    mask = _image_rank3(mask, "mask")
    channels = mask.shape[-1]
    if num_classes > 1:
        masks.check_num_classes(num_classes)
        if channels is not None and channels != 1:
            raise TfsegError(f"multi-class mask with {channels} channels: expected one channel of class ids")
        if not (mask.dtype.is_integer or mask.dtype.is_floating):
            raise TfsegError(f"multi-class mask dtype {mask.dtype.name}: expected integer class ids")
        ids = tf.cast(tf.round(tf.cast(mask, tf.float32)) if mask.dtype.is_floating else mask, MASK_DTYPE)
        return ids, lambda resized: resized
    if mask.dtype == tf.bool:
        mask = tf.cast(mask, tf.uint8)
    if not (mask.dtype.is_integer or mask.dtype.is_floating):
        raise TfsegError(f"mask dtype {mask.dtype.name}: expected integers, floats or bool")
    if channels != 1:  # the decoders' channel rule (an opaque alpha is not foreground)
        from tfseg.data.decode import mask_channel

        mask = mask_channel(mask)
    top = tf.cast(tf.reduce_max(mask), tf.float32)
    full_scale = 65535 if mask.dtype == tf.uint16 else masks.MAX_MASK_VALUE

    def threshold(resized):
        foreground = masks.foreground(tf.cast(resized, tf.float32), top=top, full_scale=full_scale, xp=tf)
        return tf.cast(foreground, MASK_DTYPE)

    return mask, threshold


def _checked_class_ids(mask, num_classes, sample_id, ignore_class=None):
    """``mask``, after checking that its ids are below ``num_classes`` or ``ignore_class`` (else the
    error names the sample)."""
    values = tf.cast(mask, tf.int32)
    # The ignored value stays in the mask; the loss and metrics leave it out.
    valid = masks.valid_class_ids(values, num_classes, ignore_class)
    worst = tf.reduce_max(tf.where(valid, -1, values))
    check = tf.debugging.Assert(
        worst < 0, [f"mask class id >= num_classes={num_classes} in sample", sample_id, "max id", worst]
    )
    # The dependency keeps the check in the dataset graph (an unused Assert is pruned).
    with tf.control_dependencies([check]):
        return tf.identity(mask)
