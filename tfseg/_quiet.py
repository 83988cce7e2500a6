"""Keep TensorFlow's native start-up chatter off a CLI user's terminal.

TensorFlow's C++ library writes a few INFO lines ("oneDNN custom operations are
on", "Could not find cuda drivers", ...) to file descriptor 2 while it loads,
before absl logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot stop
them. For the ``tfseg`` command (and whenever the user set
``TF_CPP_MIN_LOG_LEVEL`` >= 2) the first import of Keras/TensorFlow runs with
fd 2 pointed at /dev/null, and the command defaults ``TF_CPP_MIN_LOG_LEVEL``
to 3 (TensorFlow errors reach a CLI user as Python exceptions, turned into
one line by :mod:`tfseg.cli`). ``TFSEG_DEBUG=1`` shows everything.
"""

import contextlib
import importlib
import os
import sys


def running_as_cli() -> bool:
    """True inside the ``tfseg`` console script or ``python -m tfseg``."""
    prog = os.path.basename(sys.argv[0]) if sys.argv else ""
    if prog == "tfseg":
        return True
    original = list(getattr(sys, "orig_argv", ()))  # Python >= 3.10: the interpreter's own arguments
    if original:
        # ``python -m tfseg`` (and not ``python -m other`` whose code imports tfseg)
        return any(a == "-m" and b in ("tfseg", "tfseg.cli") for a, b in zip(original, original[1:]))
    return prog == "-m" or (prog == "__main__.py" and "tfseg" in sys.argv[0])


def wanted() -> bool:
    if os.environ.get("TFSEG_DEBUG") or "tensorflow" in sys.modules:
        return False
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "")
    return running_as_cli() or (level.isdigit() and int(level) >= 2)


@contextlib.contextmanager
def native_stderr_silenced():
    """Point fd 2 at /dev/null inside the block (no-op where fd 2 is not a real file)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. a captured stream in tests
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def import_quietly(name: str = "keras") -> None:
    """``import name`` (Keras or TensorFlow), without TensorFlow's native start-up lines where :func:`wanted`.

    A failing import is not hidden: the silenced attempt's error is dropped and the plain
    import after it raises it again, visibly (a no-op when the first attempt succeeded).
    """
    if running_as_cli():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if wanted():
        try:
            with native_stderr_silenced():
                importlib.import_module(name)
        except Exception:  # noqa: BLE001 - raised again by the plain import below
            pass
    importlib.import_module(name)
