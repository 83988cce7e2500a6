"""`tfseg inspect` (placeholder until its issue lands)."""

from tfseg.errors import TfsegError


def register(subparsers):
    parser = subparsers.add_parser("inspect", help="inspect (not yet available)")
    parser.set_defaults(run=run)
    return parser


def run(args):
    raise TfsegError("'tfseg inspect' is not available yet")
