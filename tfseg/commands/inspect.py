"""`tfseg inspect --data SOURCE [--json]`: counts, splits, sizes, mask values, balance, problems.

Exit code 2 when the source has problems that would stop `tfseg train`
(every offending file is listed on stderr), unless `--skip-bad`.
"""

import json

from tfseg.config import TrainConfig


def register(subparsers):
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "inspect",
        help="describe a data source: counts, splits, sizes, mask values, problems",
        description="Describe a data source before training on it: samples, groups, split sizes, image sizes "
                    "and types, mask values, class balance, and every problem found (exit code 2 when a "
                    "problem would stop training).",
    )
    parser.add_argument("--data", default=defaults.data, metavar="SOURCE",
                        help="synthetic[:N], synthetic-large[:N], ph2:PATH, mads:PATH, folder:PATH, tfrecord:PATH "
                             f"or tfds:NAME[/CONFIG][?KEY=VALUE&...] (default: {defaults.data})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--num-classes", type=int, default=None, metavar="N",
                        help="masks hold class ids 0..N-1 (default: binary masks)")
    parser.add_argument("--ignore-class", type=int, default=None, metavar="V",
                        help="a mask value allowed beside the class ids, e.g. 255 (as train --ignore-class)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report problems without failing (training with --skip-bad drops those samples)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="split seed (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction, metavar="F",
                        help="validation fraction (default: %(default)s)")
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction, metavar="F",
                        help="test fraction (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="tfds/tfrecord/synthetic: pixel statistics over the first N samples only")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from tfseg.data.inspect import format_report, inspect_source
    from tfseg.errors import DataError

    config = TrainConfig(data=args.data, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                         seed=args.seed, num_classes=args.num_classes or 1)
    options = {"num_classes": args.num_classes} if args.num_classes is not None else {}
    if args.ignore_class is not None:
        options["ignore_class"] = args.ignore_class
    report = inspect_source(config.data, seed=config.seed, fractions=config.split_fractions(),
                            skip_bad=args.skip_bad, limit=args.limit, **options)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if report["fatal"]:
        problems = [(p["path"], p["message"]) for p in report["problems"]]
        raise DataError(f"data source {report['source']!r}: {len(problems)} problem(s) would stop training "
                        "(fix them, or drop those samples with --skip-bad)", problems)
    return 0
