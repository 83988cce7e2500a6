"""What a SOURCE holds, before training on it (``tfseg inspect``).

:func:`inspect_source` returns a JSON-ready dict: sample and group counts, split
sizes, image sizes and file types, the raw mask values seen, the class balance,
and every warning and problem. :func:`format_report` renders it for a terminal.

File sources (``ph2``, ``mads``, ``folder``) are described from their up-front
check (no second decode): file types are Pillow's ``FORMAT MODE`` and mask
values are the raw values in the files (e.g. 0 and 255). Other sources are
decoded through ``examples()``: types are ``RGB`` and mask values are those the
pipeline sees (0/1 or class ids). Class balance is the fraction of mask pixels
per class over all inspected masks, after the source's value rule (binary:
class 1 = foreground).

Example:
    >>> from tfseg.data.inspect import inspect_source, format_report  # doctest: +SKIP
    >>> report = inspect_source("folder:my_data")                       # doctest: +SKIP
    >>> report["splits"], report["problems"]                            # doctest: +SKIP
    ({'train': 70, 'val': 15, 'test': 15}, [])
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Dict, Optional

import numpy as np

from tfseg import masks
from tfseg.config import DEFAULT_FRACTIONS, SPLITS
from tfseg.data.filecheck import size_text
from tfseg.data.sources import Source, open_source
from tfseg.errors import ConfigError, TfsegError


def inspect_source(source, seed: int = 0, fractions=DEFAULT_FRACTIONS, skip_bad: bool = False,
                   limit: Optional[int] = None, **options) -> Dict:
    """Describe ``source`` (see the module docstring).

    Args:
        source: a SOURCE string, a ``SourceSpec`` or an opened Source.
        seed, fractions: the split to report (same meaning as in ``load_dataset``).
        skip_bad: when True, problems are reported but not ``fatal``.
        limit: for sources that must decode to be described (not file sources),
            compute pixel statistics over the first ``limit`` samples only.
        **options: source options (``num_classes``, ``group_pattern``...).

    Returns:
        A dict with ``source``, ``kind``, ``num_samples``, ``num_groups``,
        ``num_classes``, ``splits``, ``inspected_samples``, ``image_sizes``,
        ``image_types``, ``mask_types``, ``mask_values`` (value -> number of masks
        holding it), ``class_fraction`` (class -> pixel fraction),
        ``warnings``/``problems`` (lists of ``{"path", "message"}``), ``skipped``
        and ``fatal`` (problems that stop training without ``skip_bad``), ``pixels``
        (:func:`pixel_stats`: channels, dtype, bit depth, per-band percentiles, the default normalisation).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit {limit!r}: must be a positive integer")
    if isinstance(source, Source):
        src = open_source(source, **options)
    else:
        # Collect every problem instead of stopping at the first (kinds that check when opened);
        # the report lists the skipped samples itself.
        with _quiet("tfseg.data.filesource"):
            src = open_source(source, skip_bad=True, **{k: v for k, v in options.items() if k != "skip_bad"})
    ids = src.ids()
    problems = list(src.problems())
    splits = {}
    for split in SPLITS:
        try:
            splits[split] = len(src.split_ids(split, seed=seed, fractions=tuple(fractions)))
        except TfsegError as err:
            problems.append(("splits", str(err)))
            break
    from tfseg.data.filesource import FileSource

    stats = _file_stats(src) if isinstance(src, FileSource) else _decoded_stats(src, ids[:limit] if limit else ids)
    report = {
        "source": src.spec.text,
        "kind": src.spec.kind,
        "num_samples": len(ids),
        "num_groups": len({src.group(i) for i in ids}),
        "num_classes": int(src.num_classes),
        "seed": seed,
        "fractions": [float(f) for f in fractions],
        "splits": splits,
        "split_rule": src.split_rule,
        **stats,
        "pixels": pixel_stats(src, ids),
        "warnings": [{"path": p, "message": m} for p, m in src.warnings],
        "problems": [{"path": p, "message": m} for p, m in problems],
        "skipped": len(src.skipped),
    }
    report["fatal"] = bool(problems) and not skip_bad
    return report


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _balance(pixels: Counter) -> Dict[str, float]:
    total = sum(pixels.values())
    return {str(k): round(v / total, 4) for k, v in sorted(pixels.items())} if total else {}


def _sorted_counts(counter: Counter) -> Dict[str, int]:
    return {str(k): v for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))}


def class_pixels(src, ids) -> Counter:
    """Pixels of each mask value over the masks of ``ids`` (after the source's value rule: binary masks
    count 0/1): what the class balance of :func:`inspect_source` is made of, and what automatic class
    weights (:mod:`tfseg.balance`) are measured on (the training split's ids).

    File sources count from their up-front file check (no decoding); other sources (and masks
    read through a colour map) decode their examples. An ``ignore_class`` value is counted like any other value.
    """
    from tfseg.data.filesource import FileSource

    pixels = Counter()
    if isinstance(src, FileSource) and src.colormap is None:  # a colour map's raw values are not class ids
        for sample_id in ids:
            pixels.update(_pair_pixels(src, src.pairs[sample_id]))
        return pixels
    examples = src.examples(list(ids)).as_numpy_iterator() if len(ids) else []
    for example in examples:
        pixels.update(_mask_pixels(example["mask"]))
    return pixels


def _pair_pixels(src, pair) -> Counter:
    """Pixels of each mask value of one checked file pair (binary: 0/1 by the foreground rule)."""
    mask = pair.mask_info
    if not (src.num_classes == 1 and mask.values):
        return Counter(mask.values)
    found = np.array(list(mask.values))
    foreground = masks.foreground(found, top=found.max(), threshold=src.mask_threshold)
    pixels = Counter()
    for is_foreground, count in zip(foreground.tolist(), mask.values.values()):
        pixels[int(is_foreground)] += count
    return pixels


def _mask_pixels(mask) -> Dict[int, int]:
    counts = np.bincount(np.asarray(mask).ravel().astype(np.int64), minlength=1)
    return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}


def _file_stats(src) -> Dict:
    """From the file check of a FileSource: no decoding."""
    sizes, image_types, mask_types, values, pixels = Counter(), Counter(), Counter(), Counter(), Counter()
    for pair in src.pairs.values():
        image, mask = pair.image_info, pair.mask_info
        sizes[image.size] += 1
        image_types[f"{image.format} {image.mode}"] += 1
        mask_types[f"{mask.format} {mask.mode}"] += 1
        values.update(mask.values.keys())
        pixels.update(_pair_pixels(src, pair))
    return {
        "inspected_samples": len(src.pairs),
        "image_sizes": _sorted_counts(sizes),
        "image_types": _sorted_counts(image_types),
        "mask_types": _sorted_counts(mask_types),
        "mask_values": {str(k): values[k] for k in sorted(values)},
        "class_fraction": _balance(pixels),
    }


# Pixel statistics (inspect) read at most this many images, and at most this many pixels of each.
PIXEL_SAMPLES = 64
PIXELS_PER_IMAGE = 2**16


def pixel_stats(src, ids) -> Dict:
    """What the images' pixels are (:mod:`tfseg.data.bands`): ``{"form", "channels", "dtype", "bit_depth",
    "range", "percentiles": {"1": [per band], "50": [...], "99": [...]}, "images", "normalization"}``.

    Read as training reads them (``src.examples``, storage form) from the first :data:`PIXEL_SAMPLES`
    images (each thinned to at most :data:`PIXELS_PER_IMAGE` pixels). ``bit_depth``: the bits the
    largest value needs (12 for 12-bit values in uint16), 8 for photographs, 0 for floats.
    """
    import numpy as np

    from tfseg.data.bands import bit_depth, default_normalization, percentiles

    form = src.image_form
    chosen = ids[:PIXEL_SAMPLES]
    samples = []
    for example in (src.examples(chosen).as_numpy_iterator() if chosen else []):
        flat = example["image"].reshape(-1, example["image"].shape[-1])
        samples.append(flat[:: max(1, len(flat) // PIXELS_PER_IMAGE)])
    stats = {"form": form.describe(), "channels": form.channels, "dtype": form.dtype, "images": len(samples),
             "normalization": "auto: " + default_normalization(form).describe()}
    if not samples:
        return stats
    values = np.concatenate(samples)
    if np.issubdtype(np.dtype(form.dtype), np.integer):
        values_int = values.astype(np.int64)
        stats["bit_depth"] = 8 if form.photo else bit_depth(values_int)
    else:
        stats["bit_depth"] = 0
    points = percentiles(values)
    stats["range"] = [float(values.min()), float(values.max())]
    stats["percentiles"] = {str(p): [float(v) for v in row] for p, row in zip((1, 50, 99), points)}
    return stats


def _pixels_lines(pixels: Dict) -> list:
    if not pixels:
        return []
    depth = pixels.get("bit_depth")
    bits = ("" if depth is None or pixels["form"].startswith("RGB") else ", float values" if depth == 0
            else f", {depth}-bit values")
    lines = [f"pixels    {pixels['form']}{bits}" + (f", range {pixels['range'][0]:g}..{pixels['range'][1]:g}"
                                                     if "range" in pixels else "")]
    if "percentiles" in pixels:
        bands = zip(*(pixels["percentiles"][p] for p in ("1", "50", "99")))
        lines.append("          percentiles 1/50/99 per band: " + "; ".join(
            f"{i}: {a:g}/{b:g}/{c:g}" for i, (a, b, c) in enumerate(bands)) + f" (over {pixels['images']} images)")
    lines.append(f"          normalization {pixels['normalization']}")
    return lines


def _decoded_stats(src, ids) -> Dict:
    """By decoding through ``src.examples`` (TFDS, TFRecord, synthetic)."""
    from tfseg import progress

    sizes, values, pixels = Counter(), Counter(), Counter()
    examples = src.examples(ids).as_numpy_iterator() if ids else []
    for example in progress.bar(len(ids), "reading samples", unit="sample", iterable=examples):
        height, width = example["image"].shape[:2]
        sizes[size_text(width, height)] += 1
        found = _mask_pixels(example["mask"])
        values.update(found.keys())
        pixels.update(found)
    return {
        "inspected_samples": len(ids),
        "image_sizes": _sorted_counts(sizes),
        "image_types": {"RGB": len(ids)} if ids else {},
        "mask_types": {"class ids" if src.num_classes > 1 else "0/1": len(ids)} if ids else {},
        "mask_values": {str(k): values[k] for k in sorted(values)},
        "class_fraction": _balance(pixels),
    }


def _counts_line(counts: Dict[str, int], limit: int = 6) -> str:
    items = list(counts.items())
    text = ", ".join(f"{k} x{v}" for k, v in items[:limit])
    return text + (f", ... ({len(items) - limit} more)" if len(items) > limit else "") if items else "-"


def format_report(report: Dict) -> str:
    """The report of :func:`inspect_source` as aligned text for a terminal."""
    splits = report["splits"]
    fractions = "/".join(f"{f:.2f}" for f in report["fractions"])
    classes = "binary masks" if report["num_classes"] == 1 else f"{report['num_classes']} classes"
    balance = report["class_fraction"]
    if report["num_classes"] == 1 and balance:
        balance_text = f"foreground {100 * balance.get('1', 0.0):.1f}% of mask pixels"
    else:
        balance_text = ", ".join(f"class {k} {100 * v:.1f}%" for k, v in balance.items()) or "-"
    values = report["mask_values"]
    value_text = ", ".join(f"{k} (in {n} masks)" for k, n in list(values.items())[:8])
    if len(values) > 8:
        value_text += f", ... {len(values)} distinct values"
    lines = [
        f"source    {report['source']}",
        f"samples   {report['num_samples']} in {report['num_groups']} groups, {classes}",
        f"splits    " + "  ".join(f"{k} {v}" for k, v in splits.items())
        + (f"  ({report['split_rule']}; seed {report['seed']}, fractions {fractions})" if report.get("split_rule")
           else f"  (seed {report['seed']}, fractions {fractions})"),
        f"images    {_counts_line(report['image_sizes'])}",
        f"          {_counts_line(report['image_types'])}",
        *_pixels_lines(report.get("pixels")),
        f"masks     {_counts_line(report['mask_types'])}",
        f"values    {value_text or '-'}",
        f"balance   {balance_text}",
    ]
    if report["inspected_samples"] != report["num_samples"]:
        lines.append(f"          (pixel statistics over the first {report['inspected_samples']} samples)")
    for key, title in (("warnings", "warnings"), ("problems", "problems")):
        items = report[key]
        if items:
            note = ""
            if key == "problems":
                note = "  (fatal: training stops; --skip-bad drops these samples)" if report["fatal"] else \
                    "  (these samples are skipped)"
            lines.append(f"{title:<9} {len(items)}{note}")
            lines.extend(f"  {item['path']}: {item['message']}" for item in items)
    if not report["problems"]:
        lines.append("problems  none")
    return "\n".join(lines)
