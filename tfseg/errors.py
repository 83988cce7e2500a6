"""User-facing errors.

Anything a user can cause (a wrong path, a corrupt file, a bad option value)
raises :class:`TfsegError` with one line that names the file or value and what
is wrong. The CLI prints it on stderr and exits with code 2, with no traceback.

Messages about a setting start with the Python parameter name and the value
(``image_size 7: must be a multiple of 16``); the CLI shows the parameter as its
flag (``--image-size 7: ...``). Library code never speaks of flags.
"""


class TfsegError(Exception):
    """An error caused by user input; its message is shown to the user as is."""

    exit_code = 2


class DataError(TfsegError, ValueError):
    """Bad data: lists every offending file, not only the first.

    Args:
        message: one-line summary.
        problems: ``[(path, what is wrong), ...]``; all are printed.
    """

    def __init__(self, message, problems=()):
        self.problems = list(problems)
        text = message
        if self.problems:
            text += "".join(f"\n  {path}: {why}" for path, why in self.problems)
        super().__init__(text)


class ConfigError(TfsegError, ValueError):
    """A setting that cannot work (unknown name, out-of-range value, changed run config)."""


class DiskFullError(TfsegError, OSError):
    """A write failed because the file system is full; the message names the path and the space missing."""
