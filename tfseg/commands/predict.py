"""`tfseg predict` (placeholder until its issue lands)."""

from tfseg.errors import TfsegError


def register(subparsers):
    parser = subparsers.add_parser("predict", help="predict (not yet available)")
    parser.set_defaults(run=run)
    return parser


def run(args):
    raise TfsegError("'tfseg predict' is not available yet")
