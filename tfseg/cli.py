"""The ``tfseg`` command: a thin layer over the Python API.

Each verb lives in ``tfseg/commands/<verb>.py`` with two functions:
``register(subparsers)`` adds its parser, ``run(args) -> int`` does the work by
calling the API. This module only dispatches and turns errors into one line.

Exit codes: 0 success, 2 bad input (:class:`tfseg.errors.TfsegError`, argparse
errors, a full file system, and a file-system refusal that names its path: no
permission, a file where a folder should be, a folder where a file should be, a
missing file), 1 an unexpected internal error (one line; ``TFSEG_DEBUG=1`` shows the
traceback), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Ctrl-C and SIGTERM stop a
command the same way (one line; an interrupted ``train`` resumes with the same command).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
import threading
import traceback

VERBS = ("train", "evaluate", "compare", "predict", "export", "inspect", "prepare")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from tfseg import __version__

    parser = _Parser(
        prog="tfseg",
        description="Semantic segmentation with Keras 3: train, evaluate, compare, predict, export, inspect, "
                    "prepare.",
    )
    parser.add_argument("--version", action="version", version=f"tfseg {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for verb in VERBS:
        verb_parser = importlib.import_module(f"tfseg.commands.{verb}").register(sub)
        # One name on every verb (tfseg/progress.py); train's --verbose 0 means the same.
        verb_parser.add_argument("--quiet", action="store_true",
                                 help="no progress bars or step messages (results and errors still print)")
    return parser


def _quiet_tensorflow():
    # TensorFlow's start-up chatter is noise to a CLI user (see tfseg/_quiet.py).
    from tfseg._quiet import import_quietly

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import_quietly("tensorflow")
    import tfseg

    tfseg._register_keras_objects()  # deferred by ``import tfseg`` under the command (see tfseg/__init__.py)


def as_flags(message: str, args) -> str:
    """A library message that starts with a parameter and its value, shown with the verb's flag.

    ``image_size 7: ...`` -> ``--image-size 7: ...`` when ``image_size`` is an argument of
    the verb and 7 its value (so ``data source 'x': ...`` stays as it is).
    """
    name, _, rest = message.partition(" ")
    value = vars(args).get(name) if name.isidentifier() else None
    if value is None or isinstance(value, bool):
        return message
    if rest.startswith((str(value), repr(value))):
        return f"--{name.replace('_', '-')} {rest}"
    return message


# OSError numbers that mean "the user's file system said no" (the path is in the message), not a bug.
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOENT,
               errno.ENAMETOOLONG, errno.ENOSPC, errno.EDQUOT}
# TensorFlow's file-system errors (tf.io.gfile) that carry the path in their message.
USER_TF_ERRORS = ("PermissionDeniedError", "NotFoundError", "AlreadyExistsError")


def file_system_error(err: BaseException):
    """One line for a file-system refusal that names its path, or ``None`` for anything else.

    A full file system is always one (the write points name their path themselves,
    :func:`tfseg.fileio.disk_full_names`; this is the net under a write that does not).
    """
    from tfseg import fileio

    if fileio.is_disk_full(err):
        named = getattr(err, "filename", None)
        return f"{named}: no space left on the device" if named else \
            f"no space left on the device ({_first_line_of(err)})"
    if isinstance(err, OSError) and not type(err).__module__.startswith("tensorflow"):
        if err.errno in USER_ERRNOS and err.filename is not None:
            return f"{err.filename}: {err.strerror}"
        return None
    tf_errors = getattr(sys.modules.get("tensorflow"), "errors", None)
    if tf_errors is None or not isinstance(err, tf_errors.OpError):
        return None
    from tfseg.saving import first_line

    message = first_line(err)
    directory = isinstance(err, tf_errors.FailedPreconditionError) and "directory" in message
    if type(err).__name__ in USER_TF_ERRORS or directory:
        return message
    return None


def _first_line_of(err: BaseException) -> str:
    from tfseg.saving import first_line

    return first_line(err)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises ``KeyboardInterrupt``, so that a command
    stops as Ctrl-C stops it (a training run stays resumable)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While the block runs, SIGTERM raises :class:`Terminated` (the previous handler is put back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(verb: str, err: KeyboardInterrupt, advice: str = "") -> int:
    """Print the one line of an interrupted command (Ctrl-C or SIGTERM); return its exit code (130 or 143)."""
    what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
    print(f"tfseg {verb}: {what}{advice}", file=sys.stderr)
    return 143 if isinstance(err, Terminated) else 130


def memory_output(args):
    """One line refusing ``--out ram://...``: the command's memory is gone when it ends (else ``None``)."""
    out = getattr(args, "out", None)
    if out is not None and str(out).lower().startswith("ram://"):
        return (f"--out {out}: ram:// is this process's memory and is gone when the command ends, so nothing "
                "would be kept; choose a folder on disk or a bucket (the Python API accepts ram://)")
    return None


def main(argv=None) -> int:
    """The ``tfseg`` command: ``argv`` (default: ``sys.argv[1:]``) -> exit code.

    ``--out ram://...`` is refused on the command line (``argv`` not given: the process ends with
    the command); a Python caller passing ``argv`` keeps its process, and its ``ram://`` files.
    """
    # Parsing first: --help, --version and argument errors answer before TensorFlow loads (seconds).
    parser = build_parser()
    args = parser.parse_args(argv)
    refusal = memory_output(args) if argv is None else None
    if refusal:
        print(f"tfseg {args.verb}: error: {refusal}", file=sys.stderr)
        return 2
    from tfseg import progress

    progress.set_quiet(args.quiet)
    _quiet_tensorflow()
    from tfseg.errors import TfsegError

    try:
        with sigterm_as_interrupt():
            code = args.run(args)
        return 0 if code is None else int(code)
    except TfsegError as err:
        print(f"tfseg {args.verb}: error: {as_flags(str(err), args)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        return interrupted(args.verb, err)
    except Exception as err:  # noqa: BLE001 - the last line of defence for CLI users
        refusal = file_system_error(err)
        if refusal is not None and not os.environ.get("TFSEG_DEBUG"):
            print(f"tfseg {args.verb}: error: {refusal}", file=sys.stderr)
            return 2
        if os.environ.get("TFSEG_DEBUG"):
            traceback.print_exc()
        else:
            print(
                f"tfseg {args.verb}: internal error: {type(err).__name__}: {err} "
                "(set TFSEG_DEBUG=1 for the traceback)",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
