"""``tfseg evaluate``: score a saved model on a split; work done by :func:`tfseg.evaluation.evaluate`."""

from __future__ import annotations

import math

from tfseg.config import SPLITS


def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice/IoU/loss of a saved model on a data split, per-image CSV and figures",
        description="Evaluate a model.keras (or a run folder) on one split of a data source. Prints Dice, "
        "IoU and loss, and a table of IoU and Dice per class with their means; with --out also writes "
        "metrics.json, per_image.csv (id, dice, iou, hausdorff95, mean_surface_distance), per_class.csv, "
        "dice_histogram.png and best_worst.png. Settings not given are taken "
        "from the run folder's config.json, so the split is the one the run was trained with.",
    )
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="a model.keras file, a run folder, or the run folder of --folds K (the folds' "
                             "ensemble, test split only)")
    parser.add_argument("--data", metavar="SOURCE", default=None,
                        help="data SOURCE (default: the run folder's --data)")
    parser.add_argument("--split", default="test", metavar="{" + ",".join(SPLITS) + "}",
                        help="which split to score (default: %(default)s)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="write metrics.json, per_image.csv and figures here (default: print only)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of an earlier tfseg evaluate in DIR (files tfseg did not "
                             "write are never replaced; DIR may not be a run folder)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="images per batch (default: the run's)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="split seed (default: the run's, else 0)")
    parser.add_argument("--val-fraction", type=float, default=None, metavar="F",
                        help="validation fraction of the split (default: the run's)")
    parser.add_argument("--test-fraction", type=float, default=None, metavar="F",
                        help="test fraction of the split (default: the run's)")
    from tfseg.commands.predict import add_cleanup_flags, add_tiling_flags

    add_tiling_flags(parser)
    add_cleanup_flags(parser, "default: none; the scores are then of the cleaned masks, and the Dice and IoU "
                              "without clean-up are printed and stored beside them")
    parser.add_argument("--ignore-class", type=int, default=None, metavar="V",
                        help="mask value left out of every score, e.g. 255 (default: the run's --ignore-class, "
                             "or the colour map's 'ignore' colours)")
    parser.add_argument("--count-empty", action="store_true",
                        help="count a class absent from an image's truth and prediction as Dice/IoU 1 (default: "
                             "it is left out of that image's mean, and an image with nothing true and nothing "
                             "predicted has no score)")
    parser.add_argument("--include-background", action="store_true",
                        help="the per-class table's means include class 0 (default: left out)")
    parser.add_argument("--resamples", type=int, default=None, metavar="N",
                        help="bootstrap resamples of the 95%% intervals (default: 1000; 0: no intervals)")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    from tfseg.config import TrainConfig
    from tfseg.evaluation import evaluate
    from tfseg.commands.predict import cleanup_of
    from tfseg.stats import RESAMPLES
    from tfseg.saving import locate_model

    fractions = None
    if args.val_fraction is not None or args.test_fraction is not None:
        _, run_config = locate_model(args.model)
        base = run_config or TrainConfig()
        val = base.val_fraction if args.val_fraction is None else args.val_fraction
        test = base.test_fraction if args.test_fraction is None else args.test_fraction
        fractions = TrainConfig(val_fraction=val, test_fraction=test).split_fractions()  # validates them
    result = evaluate(args.model, data=args.data, split=args.split, out=args.out, batch_size=args.batch_size,
                      seed=args.seed, fractions=fractions, tiled=args.tiled, tta=args.tta,
                      overwrite=args.overwrite, ignore_class=args.ignore_class, ignore_empty=not args.count_empty,
                      include_background=args.include_background,
                      resamples=RESAMPLES if args.resamples is None else args.resamples, cleanup=cleanup_of(args))
    scores, per_image = result[args.split], result["per_image"]
    loss = scores.get("loss")
    raw = scores.get("without_cleanup")  # with a clean-up: the scores of the masks before it
    unscored = scores["num_images"] - per_image["scored_images"]
    print(f"{args.split}: dice {number(scores['dice'])}{interval_text(scores.get('dice_ci95'))}"
          + ("" if raw is None else f" (without clean-up {number(raw['dice'])})")
          + f"  iou {number(scores['iou'])}{interval_text(scores.get('iou_ci95'))}"
          + ("" if raw is None else f" (without clean-up {number(raw['iou'])})")
          + ("" if loss is None or math.isnan(loss) else f"  loss {loss:.4f}{interval_text(scores.get('loss_ci95'))}")
          + f"  ({scores['num_images']} {'whole images, sliding window' if result['tiled'] else 'images'}"
          + (", flip TTA" if result["tta"] == "flips" else "")
          + ("" if raw is None else f", clean-up {result['cleanup']['flags']}")
          + f"; per-image dice mean {number(per_image['dice_mean'])}"
          f"{interval_text(per_image.get('dice_mean_ci95'))}, median {number(per_image['dice_median'])}"
          + (f" over {per_image['scored_images']} (the other {unscored}: nothing true, nothing predicted)"
             if unscored else "")
          + f"; hd95 median {per_image['hausdorff95_median']:.2f} px)")
    from tfseg.evaluation import format_per_class

    ignored = "" if result["ignore_class"] is None else f" (mask value {result['ignore_class']} ignored)"
    print(f"per class on {args.split}{ignored}:")
    print(format_per_class(result["per_class"]))
    if "bootstrap" in result:
        units = result["bootstrap"]
        print(f"[low, high]: 95% bootstrap intervals ({units['resamples']} resamples of the {units['num_units']} "
              f"{units['units']}, percentile, seed {units['seed']})")
    if args.out:
        print(f"wrote {args.out}/metrics.json, per_image.csv, per_class.csv, dice_histogram.png, best_worst.png")
    return 0


def number(value) -> str:
    """A score as printed: 4 decimals, ``-`` for none (nothing true and nothing predicted)."""
    return "-" if value is None or value != value else f"{value:.4f}"


def interval_text(interval, signed: bool = False) -> str:
    """`` [low, high]`` of a 95% interval as printed (nothing when there is none)."""
    if interval is None:
        return ""
    form = "{:+.4f}" if signed else "{:.4f}"
    return " [" + ", ".join(form.format(v) for v in interval) + "]"
