"""``tfseg compare``: two models on the same images, the paired difference in Dice with its 95% interval;
work done by :func:`tfseg.evaluation.compare`."""

from __future__ import annotations

from tfseg.config import SPLITS


def register(subparsers):
    parser = subparsers.add_parser(
        "compare",
        help="two models on the same test images: the difference in Dice with its 95%% interval",
        description="Score two models (model.keras files or run folders) on the same images: one split of "
        "--data (default: RUN_A's data, with RUN_A's split seed and fractions), each image through the one "
        "path of tfseg evaluate. Prints each model's Dice with its 95%% bootstrap interval and the difference "
        "A - B with its paired interval (the same images, or groups, drawn for both; percentile bootstrap, "
        "fixed seed). An interval that holds 0 does not tell the models apart on these images.",
    )
    parser.add_argument("run_a", metavar="RUN_A",
                        help="a model.keras file or a run folder (of --folds K: the folds' ensemble)")
    parser.add_argument("run_b", metavar="RUN_B",
                        help="a model.keras file or a run folder (of --folds K: the folds' ensemble)")
    parser.add_argument("--data", metavar="SOURCE", default=None,
                        help="data SOURCE (default: RUN_A's --data)")
    parser.add_argument("--split", default="test", metavar="{" + ",".join(SPLITS) + "}",
                        help="which split to score (default: %(default)s)")
    parser.add_argument("--resamples", type=int, default=None, metavar="N",
                        help="bootstrap resamples (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="images per batch (default: each run's)")
    parser.add_argument("--ignore-class", type=int, default=None, metavar="V",
                        help="mask value left out of every score (default: RUN_A's)")
    parser.add_argument("--out", metavar="FILE.json", default=None, help="also write the result as JSON")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a FILE.json an earlier tfseg compare wrote")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    from tfseg.commands.evaluate import interval_text, number
    from tfseg.evaluation import compare
    from tfseg.stats import RESAMPLES

    resamples = RESAMPLES if args.resamples is None else args.resamples
    result = compare(args.run_a, args.run_b, data=args.data, split=args.split, batch_size=args.batch_size,
                     ignore_class=args.ignore_class, resamples=resamples, out=args.out, overwrite=args.overwrite)
    units = result["bootstrap"]
    print(f"{args.split} of {result['data']}: {result['num_images']} images, the same for both "
          f"(95% intervals: {units['resamples']} bootstrap resamples of the {units['num_units']} {units['units']})")
    width = max(len(result[key]["model"]) for key in ("a", "b"))
    for key in ("a", "b"):
        side = result[key]
        print(f"  {key.upper()} {side['model']:<{width}}  dice {number(side['dice'])}"
              f"{interval_text(side['dice_ci95'])}")
    difference = result["difference"]
    print(f"  A - B dice {difference['dice']:+.4f}{interval_text(difference['dice_ci95'], signed=True)}; "
          f"per-image mean {_signed(difference['dice_mean'])}"
          f"{interval_text(difference['dice_mean_ci95'], signed=True)}")
    low_high = difference["dice_ci95"]
    if low_high is not None:
        verdict = ("A is better" if low_high[0] > 0 else "B is better" if low_high[1] < 0
                   else "the interval holds 0: these images do not tell A and B apart")
        print(f"  {verdict}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _signed(value) -> str:
    return "-" if value is None else f"{value:+.4f}"
