"""The file sources ``ph2:PATH``, ``mads:PATH`` and ``folder:PATH``: where each concern lives.

* :mod:`tfseg.data.kinds.folder`, :mod:`tfseg.data.kinds.mads`, :mod:`tfseg.data.kinds.ph2`:
  the folder layouts (one kind each);
* :mod:`tfseg.data.filesource`: listing -> checking every file up front -> decoding;
* :mod:`tfseg.data.filecheck`: byte-level checks (PNG, BMP, JPEG) and each file's size;
* :mod:`tfseg.data.filepixels`: the pixel rules (image -> RGB, mask -> one channel);
* :mod:`tfseg.data.colormap`: colour-coded masks;
* :mod:`tfseg.masks`: what mask values mean (foreground, class ids).

This module keeps the names older code imports from ``tfseg.data.files``.
"""

from tfseg.data.colormap import read_colormap  # noqa: F401
from tfseg.data.filecheck import check_file, png_problem  # noqa: F401
from tfseg.data.filesource import _decode_in_graph  # noqa: F401
from tfseg.data.kinds.mads import MADS_GROUP_PATTERN  # noqa: F401
from tfseg.data.filepixels import mask_array, read_rgb, rgb_array  # noqa: F401
