"""``mads:PATH``: the MADS full-body set as unpacked (a ``folder:`` layout grouped by recording).

PATH may be the Kaggle archive's folder with ``images/`` and ``masks/`` one or two
levels down. Id: the file stem; group: the recorded sequence, i.e. the stem without
its camera and frame number (``HipHop_HipHop1_C0_00180`` -> ``HipHop_HipHop1``), so that
frames and camera views of one performance never leak across splits. Override with
``group_pattern``: a regular expression whose first capturing group, matched against
the stem, is the group.
"""

from __future__ import annotations

import re
from typing import Optional

from tfseg import fileio
from tfseg.data.kinds.folder import FolderSource
from tfseg.data.sources import Setting, register_source
from tfseg.data.spec import SourceSpec
from tfseg.errors import ConfigError

MADS_GROUP_PATTERN = r"^(.+?)(?:_C\d+)?[_-]?\d+$"


@register_source
class MadsSource(FolderSource):
    """``mads:PATH``: a folder layout whose group is the recorded sequence (see the module docstring).

    Args:
        group_pattern: regular expression; the group is its first capturing
            group (or the whole match) with ``re.match`` on the file stem.
            Default :data:`MADS_GROUP_PATTERN`. A stem it does not match is
            its own group (and a warning).
    """

    KIND = "mads"
    SETTINGS = FolderSource.SETTINGS + (
        Setting("group_pattern", "regular expression on the file stem; its first group is the sample's group"),)

    def __init__(self, spec: SourceSpec, group_pattern: Optional[str] = None, **options):
        try:
            self.group_pattern = re.compile(group_pattern or MADS_GROUP_PATTERN)
        except re.error as err:
            raise ConfigError(f"group_pattern={group_pattern!r}: not a regular expression ({err})") from None
        self._unmatched = []
        super().__init__(spec, **options)

    def _find_root(self, path: str) -> str:
        # The Kaggle archive nests images/ and masks/ one or two folders down.
        for candidate in (path, *fileio.glob(fileio.join(path, "*")), *fileio.glob(fileio.join(path, "*", "*"))):
            if fileio.isdir(fileio.join(candidate, "images")) and fileio.isdir(fileio.join(candidate, "masks")):
                return candidate
        return super()._find_root(path)

    def group_of(self, stem: str) -> str:
        match = self.group_pattern.match(stem)
        if match is None:
            self._unmatched.append(stem)
            return stem
        return match.group(1) if match.groups() and match.group(1) else match.group(0)

    def _list(self):
        pairs, problems, warnings = super()._list()
        if self._unmatched:
            warnings.append((fileio.join(self.root, "images"), f"{len(self._unmatched)} file name(s) do not match "
                             f"group_pattern {self.group_pattern.pattern!r} and form their own group "
                             f"(e.g. {self._unmatched[0]!r})"))
        return pairs, problems, warnings
