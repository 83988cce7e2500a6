"""``synthetic-large[:N]``: built-in large images (640-768 x 896-1024 px) of thin lines and small dots.

Made to show native-resolution training (``--patch-size``): see
:func:`tfseg.data.synthetic.generate_large_sample`. Images keep their own sizes (the
``image_size`` a pipeline passes is not used); setting: ``seed``.
"""

from __future__ import annotations

from typing import Optional, Tuple

from tfseg.data.kinds.synthetic import _SEED, SyntheticSource
from tfseg.data.sources import register_source
from tfseg.data.spec import SourceSpec

DEFAULT_SYNTHETIC_LARGE_COUNT = 200


@register_source
class SyntheticLargeSource(SyntheticSource):
    """``synthetic-large[:N]``: N large images of thin and small structures (see the module docstring).

    Args:
        spec: the parsed SOURCE (``spec.count`` samples).
        seed: names the data set (independent of the split/training seed).
    """

    KIND = "synthetic-large"
    DEFAULT_COUNT = DEFAULT_SYNTHETIC_LARGE_COUNT
    SETTINGS = (_SEED,)
    ID_PREFIX = "synthetic-large-"

    def __init__(self, spec: SourceSpec, seed: int = 0, **settings):
        super().__init__(spec, seed=seed, **settings)

    def sample_size(self, sample_id: str) -> Optional[Tuple[int, int]]:
        return None  # each sample is cropped to its own size

    def generator(self):
        from tfseg.data.synthetic import traced_large_generator

        return traced_large_generator()
