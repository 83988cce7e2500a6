"""`tfseg export` (placeholder until its issue lands)."""

from tfseg.errors import TfsegError


def register(subparsers):
    parser = subparsers.add_parser("export", help="export (not yet available)")
    parser.set_defaults(run=run)
    return parser


def run(args):
    raise TfsegError("'tfseg export' is not available yet")
