"""Generate the Colab notebooks from this file, so they stay reviewable as code.

    python notebooks/_build.py            # rewrite notebooks/*.ipynb (no outputs)
    python notebooks/_build.py --check    # exit 1 if a committed notebook differs

Each notebook: an "Open in Colab" badge, a cell that installs tfseg where
``import tfseg`` fails (from the checkout the notebook sits in, else from
:data:`REPOSITORY`, e.g. in Colab), a cell tagged ``parameters``
with ``QUICK = False`` (tests inject ``QUICK = True``: tiny images, few samples
and epochs, about a minute or two on a laptop CPU), then the work through the
public API only.
"""

from __future__ import annotations

import configparser
import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
# The GitHub repository (owner/name) the badges open and Colab installs from: the one place to change it.
REPOSITORY = "tfseg/tfseg"
REPO_URL = f"https://github.com/{REPOSITORY}"
COLAB_URL = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{{name}}.ipynb"
# The distribution name pip installs (setup.cfg's; the import package is `tfseg`).
_SETUP = configparser.ConfigParser()
_SETUP.read(HERE.parent / "setup.cfg")
DISTRIBUTION = _SETUP["metadata"]["name"]
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(*parts: str, tags=()):
    """A code cell from ``parts``, each dedented on its own, separated by a blank line."""
    cell = new_code_cell("\n\n".join(textwrap.dedent(part).strip() for part in parts))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def badge(name: str) -> str:
    return BADGE.format(url=COLAB_URL.format(name=name))


INSTALL = f'''
    # Installs tfseg where it is missing: from the checkout this notebook sits in (Jupyter starts in
    # notebooks/), else from the project's repository (Colab). Where tfseg imports, it does nothing.
    import importlib, importlib.util, os, subprocess, sys

    def tfseg_checkout(folder):
        """The tfseg checkout that is ``folder`` or its parent, else None."""
        for root in (folder, os.path.dirname(folder)):
            if (os.path.isfile(os.path.join(root, "setup.cfg"))
                    and os.path.isfile(os.path.join(root, "tfseg", "__init__.py"))):
                return root
        return None

    if importlib.util.find_spec("tfseg") is None:
        checkout = tfseg_checkout(os.path.abspath(os.getcwd()))
        if checkout:  # editable, and importable at once (an editable install is seen after a restart)
            subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", checkout])
            sys.path.insert(0, checkout)
        else:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "{DISTRIBUTION} @ git+{REPO_URL}"])
        importlib.invalidate_caches()
    import tfseg
    print("tfseg", tfseg.__version__, "from", os.path.dirname(tfseg.__file__))
'''


def setup_cells(name: str, title: str, intro: str):
    """Title + badge, the Colab install cell and the ``parameters`` cell."""
    return [
        md(f"# {title}\n\n{badge(name)}\n\n" + textwrap.dedent(intro).strip()),
        code(INSTALL),
        code('''
            # QUICK = True: tiny images, few samples, 6 epochs (a minute or two on a CPU).
            # It shows that every step works; the masks it learns are poor. Keep False for real results.
            QUICK = False
        ''', tags=["parameters"]),
    ]


IMPORTS = '''
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's start-up chatter

    import keras
    import matplotlib.pyplot as plt
    import numpy as np
    import tensorflow as tf

    import tfseg
    import tfseg.layers, tfseg.losses, tfseg.metrics  # register the custom objects model.keras files name
    from tfseg import viz
'''

BATCH_TO_NUMPY = '''
    def to_numpy(dataset):
        """All (images, masks) of a batched dataset as two numpy arrays."""
        images, masks = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
        return np.concatenate(images), np.concatenate(masks)
'''


# --------------------------------------------------------------------------------------------
def quickstart():
    name = "01_quickstart"
    cells = setup_cells(name, "tfseg quickstart: a U-Net from data to TF Serving", """
        Segmentation is classification of every pixel. This notebook walks through each piece
        of tfseg on the built-in `synthetic` data (dermoscopy-like skin lesions drawn on the fly,
        no download):

        1. **data**: `tfseg.data.load_dataset` gives a `tf.data` pipeline of (image, mask) batches;
        2. **model**: `tfseg.models.build_model("unet")`, a functional Keras model;
        3. **loss and metrics**: `tfseg.losses` (BCE + Dice) and `tfseg.metrics` (Dice, IoU);
        4. **training**: plain `model.fit`, then curves and predictions with `tfseg.viz`;
        5. **serving**: `tfseg.export.export_saved_model` and calling the SavedModel the way
           TF Serving does;
        6. the same run in one call: `tfseg.training.train(TrainConfig(...))` (= `tfseg train`).

        For the full run, pick a GPU runtime (Runtime > Change runtime type).
    """)
    cells += [
        code(IMPORTS, '''
            if QUICK:  # a smoke run: every step works, the masks are poor
            # Quick mode turns batch normalisation off: after a dozen steps its running statistics are
            # still near their start values and the validation masks come out empty.
                DATA, IMAGE_SIZE, BATCH_SIZE, EPOCHS = "synthetic:64", 64, 8, 6
                BASE_FILTERS, DEPTH, BATCH_NORM, LEARNING_RATE = 8, 3, False, 3e-3
            else:
                DATA, IMAGE_SIZE, BATCH_SIZE, EPOCHS = "synthetic", 128, 16, 30
                BASE_FILTERS, DEPTH, BATCH_NORM, LEARNING_RATE = 16, 4, True, 1e-3
            SEED = 0  # same seed -> same split, same weights at start, same numbers
            keras.utils.set_random_seed(SEED)
            print(f"data={DATA} image_size={IMAGE_SIZE} epochs={EPOCHS} backend={keras.backend.backend()}")
        '''),
        md("""
            ## 1. Data

            `load_dataset` splits the samples deterministically (by sample id and seed: 70% train,
            15% validation, 15% test), resizes images bilinearly and masks with nearest neighbour,
            scales images to [0, 1] and, for the training split only, augments image and mask
            together. Batches are `(images float32 [B,H,W,3], masks float32 [B,H,W,1])`.
        """),
        code('''
            def split(name):
                return tfseg.data.load_dataset(DATA, split=name, image_size=IMAGE_SIZE,
                                               batch_size=BATCH_SIZE, seed=SEED)

            train_ds, val_ds, test_ds = split("train"), split("val"), split("test")
            images, masks = next(iter(train_ds))
            print("images", images.shape, images.dtype, "masks", masks.shape, masks.dtype)

            fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
            for ax, image, mask in zip(axes, images.numpy(), masks.numpy()):
                ax.imshow(viz.outline_overlay(image, mask, color=(0, 200, 0)))
                ax.set_axis_off()
            fig.suptitle("a training batch (augmented) with the lesion outline")
            plt.show()
        '''),
        md("""
            ## 2. Model

            A U-Net: an encoder that halves the resolution `DEPTH` times, a decoder that brings it
            back, and skip connections that hand the encoder's fine detail to the decoder. The
            model takes images in [0, 1] and returns per-pixel probabilities (sigmoid).
        """),
        code('''
            model = tfseg.models.build_model("unet", image_size=IMAGE_SIZE, num_classes=1,
                                             base_filters=BASE_FILTERS, depth=DEPTH, batch_norm=BATCH_NORM)
            print(model.name, "input", model.input.shape, "output", model.output.shape,
                  f"{model.count_params():,} parameters")
        '''),
        md(r"""
            ## 3. Loss and metrics

            Binary cross-entropy alone rewards the large, easy background. `bce_dice` adds the Dice
            loss $1 - \frac{2|P \cap T| + s}{|P| + |T| + s}$, which measures overlap with the
            lesion directly. `Dice` and `IoU` threshold the probabilities at 0.5.
        """),
        code('''
            model.compile(
                optimizer=keras.optimizers.Adam(LEARNING_RATE),
                loss=tfseg.losses.get_loss("bce_dice"),
                metrics=tfseg.metrics.default_metrics(num_classes=1),
            )
            history = model.fit(train_ds, validation_data=val_ds, epochs=EPOCHS, verbose=2)
        '''),
        code('''
            viz.plot_history(history.history, "curves.png", title="U-Net on synthetic lesions")
        '''),
        md("""
            ## 4. Predictions on the test split

            Green: the true outline; red: the predicted one; yellow: where they agree. The title
            of each image gives its own Dice.
        """),
        code(BATCH_TO_NUMPY, '''

            print({k: round(v, 4) for k, v in model.evaluate(test_ds, verbose=0, return_dict=True).items()})
            test_images, test_masks = to_numpy(test_ds)
            probabilities = model.predict(test_images, verbose=0)
            viz.plot_predictions(test_images, test_masks, probabilities, "predictions.png", max_images=8)
        '''),
        md("""
            ## 5. Export for TF Serving and call it

            The SavedModel takes raw `uint8` pixels of **any** size; resizing, scaling and the
            threshold happen inside the graph, and it needs TensorFlow only (no tfseg) to load.
            `serving_default` returns `probabilities` and a `uint8` `mask` at the input's size.
        """),
        code('''
            export_path = tfseg.export.export_saved_model(model, "export/unet", version=1, overwrite=True)
            served = tf.saved_model.load(export_path)
            print(export_path, list(served.signatures))

            pixels = np.round(test_images[:4] * 255).astype(np.uint8)
            big = tf.image.resize(pixels, (2 * IMAGE_SIZE, 3 * IMAGE_SIZE), method="nearest")  # any size works
            outputs = served.signatures["serving_default"](images=tf.cast(big, tf.uint8))
            print({name: (value.shape, value.dtype.name) for name, value in outputs.items()})

            keras_mask = probabilities[:4, ..., 0] >= 0.5
            served_small = served.signatures["serving_default"](images=tf.constant(pixels))["mask"].numpy()
            print(f"served mask == Keras mask on {np.mean(served_small == keras_mask):.2%} of the pixels")
            plt.figure(figsize=(6, 3))
            plt.imshow(viz.outline_overlay(big[0].numpy(), outputs["mask"][0].numpy(), width=2))
            plt.title(f"served at {big.shape[1]}x{big.shape[2]}: predicted outline"); plt.axis("off")
            plt.show()
        '''),
        md("""
            ## 6. The same in one call

            `tfseg.training.train` does all of the above and writes a run folder: `config.json`,
            `model.keras` (best epoch by validation Dice), `history.csv`, `metrics.json`,
            `curves.png`, `predictions.png` and `saved_model/1/`. Running it again on an
            interrupted folder resumes it. On the command line: `tfseg train --out runs/unet`.
        """),
        code('''
            from tfseg.config import TrainConfig

            config = TrainConfig(data=DATA, model="unet", image_size=IMAGE_SIZE, batch_size=BATCH_SIZE,
                                 epochs=EPOCHS, base_filters=BASE_FILTERS, depth=DEPTH, batch_norm=BATCH_NORM,
                                 learning_rate=LEARNING_RATE, seed=SEED,
                                 out="runs/unet-quickstart")
            metrics = tfseg.training.train(config, verbose=0)
            print("test", metrics["test"], "in", round(metrics["seconds"]), "s")
            print(sorted(os.listdir(config.out)))
        '''),
    ]
    return name, cells


# --------------------------------------------------------------------------------------------
def ph2_unet_vs_segnet():
    name = "02_ph2_unet_vs_segnet"
    cells = setup_cells(name, "U-Net vs SegNet on PH2 skin lesions", """
        The original lesson trained a SegNet and a U-Net on the PH2 dermoscopy database and
        compared their final losses. This notebook runs that experiment **done right**:

        * a split by sample id and seed, with validation and test kept apart (the lesson
          validated on its test set);
        * Dice and IoU, not only the loss; probabilities thresholded at 0.5 (not logits);
        * augmentation of image and mask together, the best epoch kept by validation Dice;
        * SegNet as in the paper (unpooling with the pooling indices), U-Net with skip connections,
          both trained with the same data, seed, loss and budget;
        * the distribution of per-image Dice and the best and worst cases, not only a mean;
        * both models on the same test images, the difference in Dice with its 95% interval
          (`tfseg compare`): on 30 test images a difference of a few points may be chance.

        **Data.** PH2 (200 images, 768x560) is distributed by its authors on request. Upload
        or mount the unpacked archive and set `PH2_PATH` to the folder that holds
        `PH2 Dataset images/`. Without it, the notebook falls back to the built-in `synthetic`
        lesions and says so.
    """)
    cells += [
        code('''
            # Where the unpacked PH2 archive is, e.g. after mounting Google Drive:
            #   from google.colab import drive; drive.mount("/content/drive")
            #   !unzip -q "/content/drive/MyDrive/PH2Dataset.zip" -d /content
            import os

            PH2_PATH = os.environ.get("PH2_PATH", "/content/PH2Dataset")
        '''),
        code(IMPORTS, '''
            if os.path.isdir(os.path.join(PH2_PATH, "PH2 Dataset images")):
                DATA = f"ph2:{PH2_PATH}"
            else:
                DATA = "synthetic:64" if QUICK else "synthetic:400"
                print(f"PH2 not found at {PH2_PATH!r}: using the built-in {DATA!r} lesions instead")

            if QUICK:  # a smoke run: every step works, the comparison means nothing
            # Quick mode turns batch normalisation off: after a dozen steps its running statistics are
            # still near their start values and the validation masks come out empty.
                IMAGE_SIZE, BATCH_SIZE, EPOCHS, BASE_FILTERS, DEPTH, BATCH_NORM, LEARNING_RATE = 64, 8, 6, 8, 3, False, 3e-3
            else:
                IMAGE_SIZE, BATCH_SIZE, EPOCHS, BASE_FILTERS, DEPTH, BATCH_NORM, LEARNING_RATE = 256, 16, 60, 16, 4, True, 1e-3
            SEED = 0
            MODELS = {"U-Net": "unet", "SegNet": "segnet"}
            print(f"data={DATA} image_size={IMAGE_SIZE} epochs={EPOCHS}")
        '''),
        md("""
            ## A look at the data

            The test split is the same for both models (same source, seed and fractions).
        """),
        code(BATCH_TO_NUMPY, '''

            test_ds = tfseg.data.load_dataset(DATA, split="test", image_size=IMAGE_SIZE,
                                              batch_size=BATCH_SIZE, seed=SEED)
            test_images, test_masks = to_numpy(test_ds)
            print(f"{len(test_images)} test images")
            fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
            for ax, image, mask in zip(axes, test_images, test_masks):
                ax.imshow(viz.outline_overlay(image, mask, color=(0, 200, 0), width=max(1, IMAGE_SIZE // 128)))
                ax.set_axis_off()
            fig.suptitle("test images with the dermatologist's outline")
            plt.show()
        '''),
        md("""
            ## Train both models

            `tfseg.training.train` writes each run folder (`runs/<model>-ph2/`): the best model by
            validation Dice, `history.csv`, `metrics.json`, and a SavedModel. Running the cell
            again resumes an interrupted run instead of starting over.
        """),
        code('''
            from tfseg.config import TrainConfig

            results = {}
            for label, model_name in MODELS.items():
                config = TrainConfig(data=DATA, model=model_name, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE,
                                     epochs=EPOCHS, base_filters=BASE_FILTERS, depth=DEPTH, batch_norm=BATCH_NORM,
                                 learning_rate=LEARNING_RATE, seed=SEED,
                                     out=f"runs/{model_name}-ph2")
                results[label] = tfseg.training.train(config, verbose=0)
                print(f"{label}: {results[label]['epochs_completed']} epochs in {results[label]['seconds']:.0f} s")
        '''),
        md("## Curves side by side"),
        code('''
            viz.plot_comparison({label: os.path.join(r["run_dir"], "history.csv") for label, r in results.items()},
                                "comparison.png")
        '''),
        md("""
            ## Test Dice and IoU

            Measured on the test split with the best checkpoint of each model (global Dice: all
            test pixels pooled).
        """),
        code('''
            print(f"{'model':8} {'test Dice':>10} {'test IoU':>9} {'val Dice':>9} {'best epoch':>11} {'img/s':>7}")
            for label, r in results.items():
                rate = "-" if r["train_images_per_second"] is None else f"{r['train_images_per_second']:.0f}"
                print(f"{label:8} {r['test']['dice']:10.4f} {r['test']['iou']:9.4f} {r['val']['dice']:9.4f} "
                      f"{str(r['best_epoch']):>11} {rate:>7}")
        '''),
        md("""
            ## Is the difference real?

            A test split of a small data set gives a Dice that another draw of images would move.
            `tfseg compare` (here its Python form, `tfseg.evaluation.compare`) scores both models on the
            same test images and bootstraps the difference: it draws the test images again, with
            replacement, 1000 times, the same draw for both models, and reports the middle 95% of the
            differences. An interval that holds 0 does not tell the models apart on these images. From a
            shell: `tfseg compare runs/unet-ph2 runs/segnet-ph2`.
        """),
        code('''
            from tfseg.evaluation import compare

            comparison = compare(results["U-Net"]["run_dir"], results["SegNet"]["run_dir"],
                                 resamples=200 if QUICK else 1000, out="compare.json", overwrite=True)
            for key, label in (("a", "U-Net"), ("b", "SegNet")):
                low, high = comparison[key]["dice_ci95"]
                print(f"{label:7} test Dice {comparison[key]['dice']:.4f}  95% interval [{low:.4f}, {high:.4f}]")
            difference = comparison["difference"]
            low, high = difference["dice_ci95"]
            print(f"U-Net - SegNet: {difference['dice']:+.4f}  95% interval [{low:+.4f}, {high:+.4f}] "
                  f"({comparison['num_images']} test images)")
            print("U-Net is better here" if low > 0 else "SegNet is better here" if high < 0
                  else "the interval holds 0: these test images do not tell U-Net and SegNet apart")
        '''),
        md("""
            ## Per-image Dice

            A mean hides the failures: the histogram shows how many lesions each model segments
            well and how many it misses. Per image, Dice = 2|T∩P| / (|T| + |P|) (no score when both
            are empty).
        """),
        code('''
            predictions, dice = {}, {}
            for label, r in results.items():
                best = keras.models.load_model(os.path.join(r["run_dir"], "model.keras"))
                predictions[label] = best.predict(test_images, verbose=0)
                dice[label] = viz.per_image_dice(test_masks, predictions[label])
                print(f"{label}: per-image Dice mean {np.nanmean(dice[label]):.4f}, median {np.nanmedian(dice[label]):.4f}, "
                      f"below 0.5 on {int((dice[label] < 0.5).sum())} of {len(dice[label])} images")
            viz.plot_dice_histogram(dice, "dice_histogram.png", title="Per-image test Dice")
        '''),
        md("## Best and worst cases"),
        code('''
            for label in results:  # viz returns figures: display() shows them from inside a loop
                display(viz.plot_best_worst(test_images, test_masks, predictions[label], dice[label],
                                            f"best_worst_{MODELS[label]}.png", k=4,
                                            title=f"{label}: best (top) and worst (bottom) test images"))
        '''),
        code('''
            # The same test images, both models on one picture each
            for label in results:
                display(viz.plot_predictions(test_images, test_masks, predictions[label], max_images=4,
                                             columns=4, title=label))
        '''),
    ]
    return name, cells


# --------------------------------------------------------------------------------------------
def body_segmentation():
    name = "03_body_segmentation_mads"
    cells = setup_cells(name, "A learned chroma key: person segmentation on MADS", """
        The lesson's lab: segment the person in full-body video frames (the MADS dataset) and use
        the mask as a **chroma key**, replacing the background without a green screen.

        **Data.** Download the Kaggle set `segmentation_full_body_mads_dataset_1192_img` and set
        `MADS_PATH` to the folder holding `images/` and `masks/`. Frames come from videos, so
        tfseg splits by sequence: near-identical frames never end up in both train and test.
        Without the data, the notebook falls back to the built-in `synthetic` lesions (the
        chroma key then keeps the lesion) and says so.
    """)
    cells += [
        code('''
            # e.g. in Colab: upload kaggle.json, then
            #   !kaggle datasets download -d tapakah68/segmentation-full-body-mads-dataset -p /content --unzip
            import os

            MADS_PATH = os.environ.get("MADS_PATH", "/content/segmentation_full_body_mads_dataset_1192_img")
        '''),
        code(IMPORTS, '''
            if os.path.isdir(os.path.join(MADS_PATH, "images")):
                DATA = f"mads:{MADS_PATH}"
            else:
                DATA = "synthetic:64" if QUICK else "synthetic:400"
                print(f"MADS not found at {MADS_PATH!r}: using the built-in {DATA!r} lesions instead")

            if QUICK:  # a smoke run: every step works, the masks are poor
            # Quick mode turns batch normalisation off: after a dozen steps its running statistics are
            # still near their start values and the validation masks come out empty.
                IMAGE_SIZE, BATCH_SIZE, EPOCHS, BASE_FILTERS, DEPTH, BATCH_NORM, LEARNING_RATE = 64, 8, 6, 8, 3, False, 3e-3
            else:
                IMAGE_SIZE, BATCH_SIZE, EPOCHS, BASE_FILTERS, DEPTH, BATCH_NORM, LEARNING_RATE = 256, 16, 40, 16, 4, True, 1e-3
            SEED = 0
            print(f"data={DATA} image_size={IMAGE_SIZE} epochs={EPOCHS}")
        '''),
        md("## Train a U-Net"),
        code('''
            from tfseg.config import TrainConfig

            config = TrainConfig(data=DATA, model="unet", image_size=IMAGE_SIZE, batch_size=BATCH_SIZE,
                                 epochs=EPOCHS, base_filters=BASE_FILTERS, depth=DEPTH, batch_norm=BATCH_NORM,
                                 learning_rate=LEARNING_RATE, seed=SEED,
                                 out="runs/unet-mads")
            metrics = tfseg.training.train(config, verbose=0)
            print("test", {k: round(v, 4) for k, v in metrics["test"].items()})
            viz.plot_history(os.path.join(config.out, "history.csv"))
        '''),
        md("""
            ## Predict with the exported SavedModel

            The run folder holds `saved_model/1/`, the model as TF Serving would run it: raw
            `uint8` frames of any size in, a `uint8` mask of the same size out.
        """),
        code(BATCH_TO_NUMPY, '''

            test_ds = tfseg.data.load_dataset(DATA, split="test", image_size=IMAGE_SIZE,
                                              batch_size=BATCH_SIZE, seed=SEED)
            test_images, test_masks = to_numpy(test_ds)
            frames = np.round(test_images * 255).astype(np.uint8)

            serve = tf.saved_model.load(os.path.join(config.out, "saved_model", "1")).signatures["serving_default"]
            outputs = serve(images=tf.constant(frames))
            predicted, probabilities = outputs["mask"].numpy(), outputs["probabilities"].numpy()
            viz.plot_predictions(frames, test_masks, predicted, max_images=8, title="test frames")
        '''),
        md("""
            ## The chroma key

            `viz.chroma_key(frame, mask, background)` keeps the pixels of the mask and takes the
            rest from the new background. `soft_edge` blends over a few pixels at the border, which
            hides the staircase of a low-resolution mask.
        """),
        code('''
            def backdrop(height, width):
                """A made-up scene: sky gradient, sun, hills (no file needed)."""
                y, x = np.mgrid[0:1:complex(0, height), 0:1:complex(0, width)]
                sky = np.stack([0.35 + 0.4 * y, 0.6 + 0.3 * y, np.ones_like(y)], axis=-1)
                sun = (x - 0.75) ** 2 + (y - 0.25) ** 2 < 0.012
                sky[sun] = (1.0, 0.85, 0.3)
                hills = y > 0.7 + 0.08 * np.sin(9 * x)
                sky[hills] = (0.25, 0.55, 0.2)
                return (sky * 255).astype(np.uint8)

            background = backdrop(IMAGE_SIZE, IMAGE_SIZE)
            order = np.argsort(-viz.per_image_dice(test_masks, predicted))[:3]  # the 3 best frames
            fig, axes = plt.subplots(len(order), 4, figsize=(12, 3.1 * len(order)), squeeze=False)
            for row, i in zip(axes, order):
                pictures = [
                    (frames[i], "frame"),
                    (viz.tinted_overlay(frames[i], predicted[i], color=(255, 0, 255)), "predicted mask"),
                    (viz.chroma_key(frames[i], predicted[i], background), "chroma key"),
                    (viz.chroma_key(frames[i], probabilities[i], background, soft_edge=max(1, IMAGE_SIZE // 128)),
                     "chroma key, soft edge"),
                ]
                for ax, (picture, title) in zip(row, pictures):
                    ax.imshow(picture); ax.set_title(title); ax.set_axis_off()
            fig.tight_layout()
            fig.savefig("chroma_key.png", dpi=100)
            plt.show()
        '''),
        md("""
            ## How fast is the key?

            Frames per second of the SavedModel on this runtime, for one frame at a time (a
            video call) and for a batch; compare a CPU and a GPU runtime.
        """),
        code('''
            import time

            def frames_per_second(batch, repeats=3):
                serve(images=tf.constant(batch))  # warm-up: tracing and memory allocation
                start = time.perf_counter()
                for _ in range(repeats):
                    serve(images=tf.constant(batch))["mask"].numpy()
                return repeats * len(batch) / (time.perf_counter() - start)

            device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
            print(f"{IMAGE_SIZE}x{IMAGE_SIZE} frames on {device}: "
                  f"{frames_per_second(frames[:1]):.1f} frames/s one at a time, "
                  f"{frames_per_second(frames):.1f} frames/s in a batch of {len(frames)}")
        '''),
    ]
    return name, cells


NOTEBOOKS = (quickstart, ph2_unet_vs_segnet, body_segmentation)


def build(make) -> tuple:
    name, cells = make()
    notebook = new_notebook(cells=cells)
    notebook.metadata.update({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": [], "toc_visible": True},
        "accelerator": "GPU",
    })
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{name[:2]}-{index:02d}"  # stable ids: a rebuild is an empty diff
    nbformat.validate(notebook)
    return HERE / f"{name}.ipynb", nbformat.writes(notebook) + "\n"


def main(argv) -> int:
    stale = []
    for make in NOTEBOOKS:
        path, text = build(make)
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print("wrote", path)
    if stale:
        print("out of date (run python notebooks/_build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
