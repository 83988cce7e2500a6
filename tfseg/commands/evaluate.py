"""`tfseg evaluate` (placeholder until its issue lands)."""

from tfseg.errors import TfsegError


def register(subparsers):
    parser = subparsers.add_parser("evaluate", help="evaluate (not yet available)")
    parser.set_defaults(run=run)
    return parser


def run(args):
    raise TfsegError("'tfseg evaluate' is not available yet")
