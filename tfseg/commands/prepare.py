"""`tfseg prepare --data SOURCE --out DIR [--shards N]`: TFRecord shards for `--data tfrecord:DIR`."""

from tfseg.config import TrainConfig


def register(subparsers):
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "prepare",
        help="write a data source to TFRecord shards (then use --data tfrecord:DIR)",
        description="Decode every sample of SOURCE once and write PNG-encoded TFRecord shards plus "
                    "manifest.json to DIR; `--data tfrecord:DIR` then reads them with the same samples "
                    "and the same train/val/test split.",
    )
    parser.add_argument("--data", default=defaults.data, metavar="SOURCE",
                        help=f"the source to convert (default: {defaults.data})")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to create")
    parser.add_argument("--shards", type=int, default=None, metavar="N",
                        help="number of shard files (default: one per 1024 samples)")
    parser.add_argument("--image-size", type=int, default=None, metavar="N",
                        help="resize to N x N before writing (default: keep the original size)")
    parser.add_argument("--num-classes", type=int, default=None, metavar="N",
                        help="masks hold class ids 0..N-1 (default: binary masks)")
    parser.add_argument("--ignore-class", type=int, default=None, metavar="V",
                        help="a mask value allowed beside the class ids, e.g. 255 (as train --ignore-class)")
    parser.add_argument("--skip-bad", action="store_true", help="leave out samples with problems (listed)")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it is not empty")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from tfseg.data.tfrecord import write_shards

    options = {"num_classes": args.num_classes} if args.num_classes is not None else {}
    if args.skip_bad:
        options["skip_bad"] = True
    if args.ignore_class is not None:
        options["ignore_class"] = args.ignore_class
    manifest = write_shards(args.data, args.out, shards=args.shards, image_size=args.image_size,
                            progress=not args.quiet, overwrite=args.overwrite, **options)
    skipped = f", {len(manifest['skipped'])} skipped" if manifest["skipped"] else ""
    print(f"wrote {manifest['num_samples']} samples{skipped} in {len(manifest['shards'])} shard(s) to "
          f"{manifest['path']}; train with --data tfrecord:{manifest['path']}")
    return 0
