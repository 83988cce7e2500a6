"""Progress bars with a time estimate for tfseg's long steps (one helper, on tqdm).

Every long step (the up-front file check, ``evaluate``, ``inspect``, ``predict``,
``prepare``, scoring and exporting after training) counts its work through
:func:`bar`, which shows ``desc: 40%|####    | 40/100 [00:12<00:18, 3.3 image/s]``
(elapsed < remaining) on stderr.

When a bar shows:

- never while quiet (``--quiet`` on every verb, ``train --verbose 0``; in Python
  :func:`set_quiet` or the :func:`quiet` context manager);
- otherwise where a person watches: stderr is a terminal, or a notebook runs the
  code. Redirected output (logs, CI, pipes) stays free of carriage-return noise;
  ``TFSEG_PROGRESS=1`` shows bars there too, ``TFSEG_PROGRESS=0`` hides them everywhere.

tqdm ships with TensorFlow Datasets (a tfseg dependency); without it bars are off.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterable, Optional

_QUIET = [False]


def set_quiet(value: bool) -> None:
    """Turn every progress bar of this process off (``True``) or back on."""
    _QUIET[0] = bool(value)


def is_quiet() -> bool:
    """Whether :func:`set_quiet`/:func:`quiet` turned progress off."""
    return _QUIET[0]


@contextlib.contextmanager
def quiet(value: bool = True):
    """``with quiet():`` no progress bars inside the block."""
    saved = _QUIET[0]
    _QUIET[0] = bool(value)
    try:
        yield
    finally:
        _QUIET[0] = saved


def enabled() -> bool:
    """Whether a bar started now would show (see the module docstring)."""
    if _QUIET[0]:
        return False
    forced = os.environ.get("TFSEG_PROGRESS", "").strip()
    if forced:
        return forced not in ("0", "false", "no", "off")
    return _is_terminal() or _in_notebook()


def _in_notebook() -> bool:
    """A Jupyter/Colab kernel runs this code (merely importing ipykernel, as nbclient does, is not one)."""
    if "IPython" not in sys.modules:
        return False
    try:
        shell = sys.modules["IPython"].get_ipython()
    except Exception:  # noqa: BLE001 - any IPython oddity: not a notebook
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _Off:
    """A bar that shows nothing (quiet, no terminal, or no tqdm)."""

    def __init__(self, iterable=None):
        self._iterable = iterable

    def __iter__(self):
        return iter(self._iterable if self._iterable is not None else ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def bar(total: Optional[int] = None, desc: str = "", unit: str = "image", iterable: Optional[Iterable] = None,
        show: Optional[bool] = None):
    """A progress bar: ``with bar(n, "scoring test") as b: ... b.update(k)``, or iterate ``bar(iterable=...)``.

    Args:
        total: the number of units (``None``: ``len(iterable)`` when it has one; no estimate otherwise).
        desc: what is being done, in a few words.
        unit: what one count is (``image``, ``file``, ``batch``, ``sample``).
        iterable: wrap this iterable instead of calling ``update``.
        show: ``False`` hides this bar whatever the settings (a caller's own quiet option);
            ``None``/``True`` follow :func:`enabled`.

    Returns:
        A tqdm bar, or an object with the same ``update``/``close``/iteration that shows nothing.
    """
    if show is False or not enabled():
        return _Off(iterable)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # optional: tqdm comes with tensorflow-datasets
        return _Off(iterable)
    # On a terminal a finished bar clears itself; in a log (TFSEG_PROGRESS=1) its final state stays.
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                leave=not _is_terminal(), mininterval=0.5)


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
