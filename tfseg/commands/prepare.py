"""`tfseg prepare` (placeholder until its issue lands)."""

from tfseg.errors import TfsegError


def register(subparsers):
    parser = subparsers.add_parser("prepare", help="prepare (not yet available)")
    parser.set_defaults(run=run)
    return parser


def run(args):
    raise TfsegError("'tfseg prepare' is not available yet")
