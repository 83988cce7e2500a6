"""Make the README's example pictures (docs/images/*.png) from real, small runs.

    python notebooks/_pictures.py [--epochs 15] [--image-size 64] [--data synthetic:240]

Trains a U-Net and a SegNet with :func:`tfseg.training.train` (same data, seed and
budget), then draws with :mod:`tfseg.viz` exactly what the notebooks draw:

    docs/images/curves.png          U-Net loss / Dice / IoU per epoch, best epoch marked
    docs/images/comparison.png      U-Net vs SegNet curves
    docs/images/predictions.png     U-Net test images, true (green) and predicted (red) outlines
    docs/images/best_worst.png      U-Net's best and worst test images by Dice
    docs/images/dice_histogram.png  per-image test Dice of both models
    docs/images/chroma_key.png      frame, predicted mask, background replaced

It prints the test metrics and the seconds each run took, for the README's captions.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


def backdrop(height: int, width: int):
    """A made-up scene (sky gradient, sun, hills), the same as notebook 03's."""
    import numpy as np

    y, x = np.mgrid[0:1:complex(0, height), 0:1:complex(0, width)]
    sky = np.stack([0.35 + 0.4 * y, 0.6 + 0.3 * y, np.ones_like(y)], axis=-1)
    sky[(x - 0.75) ** 2 + (y - 0.25) ** 2 < 0.012] = (1.0, 0.85, 0.3)
    sky[y > 0.7 + 0.08 * np.sin(9 * x)] = (0.25, 0.55, 0.2)
    return (sky * 255).astype(np.uint8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic:240")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--runs", default="/tmp/tfseg-pictures")
    parser.add_argument("--out", default=str(REPO / "docs" / "images"))
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    import tfseg
    import tfseg.layers, tfseg.losses, tfseg.metrics  # noqa: E401 - register what model.keras names
    from tfseg import viz
    from tfseg.config import TrainConfig

    out = Path(args.out)
    results, predictions, dice = {}, {}, {}
    for label, name in (("U-Net", "unet"), ("SegNet", "segnet")):
        config = TrainConfig(data=args.data, model=name, image_size=args.image_size, batch_size=16,
                             epochs=args.epochs, base_filters=args.base_filters, depth=3, seed=0,
                             out=os.path.join(args.runs, name))
        results[label] = tfseg.training.train(config, verbose=0)
        r = results[label]
        print(f"{label}: test Dice {r['test']['dice']:.4f} IoU {r['test']['iou']:.4f} "
              f"({r['epochs_completed']} epochs, best {r['best_epoch']}, {r['seconds']:.0f} s)")

    test = tfseg.data.load_dataset(args.data, split="test", image_size=args.image_size, batch_size=64, seed=0)
    images, masks = (np.concatenate(parts) for parts in zip(*[(x.numpy(), y.numpy()) for x, y in test]))
    for label, r in results.items():
        model = keras.models.load_model(os.path.join(r["run_dir"], "model.keras"))
        predictions[label] = model.predict(images, verbose=0)
        dice[label] = viz.per_image_dice(masks, predictions[label])
        print(f"{label}: per-image Dice mean {np.nanmean(dice[label]):.4f} median {np.nanmedian(dice[label]):.4f} "
              f"on {len(images)} test images")

    unet = results["U-Net"]["run_dir"]
    viz.plot_history(os.path.join(unet, "history.csv"), out / "curves.png", title="U-Net on synthetic lesions")
    viz.plot_comparison({label: os.path.join(r["run_dir"], "history.csv") for label, r in results.items()},
                        out / "comparison.png")
    viz.plot_predictions(images, masks, predictions["U-Net"], out / "predictions.png", max_images=8,
                         title="U-Net, test split")
    viz.plot_best_worst(images, masks, predictions["U-Net"], dice["U-Net"], out / "best_worst.png", k=4)
    viz.plot_dice_histogram(dice, out / "dice_histogram.png", title="Per-image test Dice")

    best = np.argsort(-dice["U-Net"], kind="stable")[:3]
    background = backdrop(args.image_size, args.image_size)
    fig = viz.Figure(figsize=(10, 2.7 * len(best)), dpi=viz.DPI, layout="constrained")
    axes = fig.subplots(len(best), 3, squeeze=False)
    for row, i in zip(axes, best):
        probability = predictions["U-Net"][i]
        pictures = [(images[i], "frame"),
                    (viz.tinted_overlay(images[i], probability, color=(255, 0, 255)), "predicted mask"),
                    (viz.chroma_key(images[i], probability, background, soft_edge=1), "chroma key (soft edge)")]
        for ax, (picture, title) in zip(row, pictures):
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(title)
            ax.set_axis_off()
    viz.save_figure(fig, out / "chroma_key.png")
    print("wrote", ", ".join(sorted(p.name for p in out.glob("*.png"))), "to", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
