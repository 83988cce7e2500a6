"""``synthetic[:N]``: the built-in procedural dermoscopy-like lesions (:mod:`tfseg.data.synthetic`).

Generated, not read: no download, masks exact 0/1 (binary), sample ``i`` the same image
on every machine. Settings: ``seed`` (names the data set, independent of the training
seed; ``synthetic:200?seed=3``) and ``image_size`` (the side the images are generated at;
the pipeline passes its own).
"""

from __future__ import annotations

from typing import List, Sequence

from tfseg.data.sources import Setting, Source, register_source
from tfseg.data.spec import SourceSpec
from tfseg.errors import ConfigError, TfsegError

DEFAULT_SYNTHETIC_COUNT = 1000
DEFAULT_IMAGE_SIZE = 256
_SEED = Setting("seed", "names the generated data set (independent of the training seed)", int)


@register_source
class SyntheticSource(Source):
    """``synthetic[:N]``: N procedurally generated dermoscopy-like samples.

    Args:
        spec: the parsed SOURCE (``spec.count`` samples).
        image_size: side of the generated square images (>= 8); the pipeline
            passes its own ``image_size`` so that no resizing is needed.
        seed: names the data set; the same seed gives byte-identical samples.
            Independent of the split/shuffle/augmentation seed of ``load_dataset``,
            so changing the training seed never changes the data.
        num_classes, ignore_class: the masks are binary; ``num_classes`` >= 2 reads them as
            class ids 0/1 (see :func:`tfseg.masks.resolve_num_classes`).
    """

    KIND = "synthetic"
    FORM = "count"
    DEFAULT_COUNT = DEFAULT_SYNTHETIC_COUNT
    SETTINGS = (Setting("image_size", "side of the generated square images (the pipeline's image size)", int,
                        in_string=False), _SEED)
    RAW_MASKS = False
    ID_PREFIX = "synthetic-"

    def __init__(self, spec: SourceSpec, image_size: int = DEFAULT_IMAGE_SIZE, seed: int = 0,
                 num_classes=None, ignore_class=None, mask_threshold=None, skip_bad=False):
        self.spec = spec
        self.count = int(spec.count or self.DEFAULT_COUNT)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise ConfigError(f"synthetic image_size {image_size!r}: must be an integer >= 8")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"synthetic seed {seed!r}: must be an integer")
        self.image_size = image_size
        self.seed = seed
        self.skip_bad = bool(skip_bad)  # nothing to skip: generated samples always decode
        self.set_mask_settings(num_classes, ignore_class, mask_threshold, own_classes=1)
        self._width = max(5, len(str(self.count - 1)))

    def ids(self) -> List[str]:
        return [f"{self.ID_PREFIX}{i:0{self._width}d}" for i in range(self.count)]

    def index_of(self, sample_id: str) -> int:
        """The sample index encoded in ``synthetic-NNNNN``."""
        digits = sample_id[len(self.ID_PREFIX):] if sample_id.startswith(self.ID_PREFIX) else ""
        if not digits.isdigit() or int(digits) >= self.count:
            raise TfsegError(f"sample id {sample_id!r}: not in {self.spec.text or self.KIND} "
                             f"(ids are {self.ids()[0]}...)")
        return int(digits)

    def sample_size(self, sample_id: str):
        return self.image_size, self.image_size

    def generator(self):
        """A traced ``(seed, index) -> (image, mask)`` (:mod:`tfseg.data.synthetic`)."""
        from tfseg.data.synthetic import traced_generator

        return traced_generator(self.image_size)

    def examples(self, ids: Sequence[str]):
        import tensorflow as tf

        indices = [self.index_of(i) for i in ids]
        generate, seed = self.generator(), tf.constant(self.seed, tf.int64)

        def sample(index, sample_id):
            image, mask = generate(seed, index)
            return {"id": sample_id, "image": image, "mask": mask}

        pairs = tf.data.Dataset.from_tensor_slices(
            (tf.constant(indices, tf.int64), tf.constant(list(ids), tf.string))
        )
        return pairs.map(sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
