"""``tfseg train``: flags generated from :class:`tfseg.config.TrainConfig`, work done by :func:`tfseg.training.train`.

Every field is a flag (``image_size`` -> ``--image-size``) with the field's
default, type and help; booleans get ``--flag/--no-flag``. Values are checked by
``TrainConfig.validate`` (one line, exit 2), not by argparse, so that the CLI,
the Python API and ``config.json`` accept and refuse exactly the same things.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from tfseg.config import TrainConfig, flag_name

EXAMPLES = """examples:
  tfseg train                                   # U-Net on the built-in synthetic lesions
  tfseg train --model segnet --epochs 20
  tfseg train --data ph2:~/PH2Dataset --image-size 256 --out runs/ph2-unet
  tfseg train --out runs/ph2-unet ...           # the same command again resumes an interrupted run
"""


METAVARS = {int: "N", float: "X", str: "NAME"}


def field_type(option: dataclasses.Field):
    """The Python type of a TrainConfig field, ``Optional`` removed (``Optional[int]`` -> ``int``)."""
    hint = typing.get_type_hints(TrainConfig)[option.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, with its default, type, choices (in the metavar) and help."""
    for option in dataclasses.fields(TrainConfig):
        if not option.metadata.get("cli", True):  # set from the data (config.json), not a flag
            continue
        kind = field_type(option)
        help_text = option.metadata.get("help", option.name.replace("_", " "))
        flag = flag_name(option.name)
        if kind is bool:
            parser.add_argument(flag, dest=option.name, action=argparse.BooleanOptionalAction,
                                default=option.default, help=f"{help_text} (default: %(default)s)")
            continue
        choices = option.metadata.get("choices")
        metavar = option.metadata.get("metavar") or ("{" + ",".join(choices) + "}" if choices else METAVARS[kind])
        if "default:" not in help_text:
            help_text += " (default: none)" if option.default is None else " (default: %(default)s)"
        parser.add_argument(flag, dest=option.name, type=kind, default=option.default, metavar=metavar,
                            help=help_text)


def register(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train a model into a run folder (resumable)",
        description="Train a segmentation model. Writes RUN_DIR/{config.json, model.keras, history.csv, "
        "metrics.json, curves.png, predictions.png, saved_model/1/}. Running the same command on an "
        "interrupted RUN_DIR resumes it; on a complete one it does nothing.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flags(parser)
    parser.add_argument("--force-new", action="store_true",
                        help="RUN_DIR holds a run: move it aside to RUN_DIR.old-<time> and start over")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                        help="0 quiet (= --quiet), 1 progress bar, 2 one line per epoch (default: 1 on a terminal, else 2)")
    parser.set_defaults(run=run)
    return parser


def config_from_args(args) -> TrainConfig:
    """The :class:`TrainConfig` of parsed arguments (raises ConfigError on impossible values)."""
    return TrainConfig(**{option.name: getattr(args, option.name, option.default)
                          for option in dataclasses.fields(TrainConfig)})


def run(args) -> int:
    from tfseg.training import train

    config = config_from_args(args)
    verbose = 0 if args.quiet else (args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2))
    try:
        metrics = train(config, verbose=verbose, force_new=args.force_new)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM (tfseg.cli.sigterm_as_interrupt)
        from tfseg.cli import interrupted

        return interrupted("train", err, "; run the same command again to resume after the last completed epoch")
    if not verbose and config.folds is not None:  # cross-validation: the folds' table
        from tfseg.training.cv import format_folds

        print(format_folds(metrics))
    elif not verbose:  # the run printed its own summary line otherwise
        from tfseg.training.run import summary_line

        print(summary_line({"run_dir": config.out, **metrics}))
    return 0
