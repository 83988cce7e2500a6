"""tfseg.viz (overlays, plots) and tfseg.tensorboard (prediction images)."""

import csv
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from tfseg import viz
from tfseg.errors import TfsegError

DPI = viz.DPI


# ---------------------------------------------------------------- helpers
def reference_outline(mask, width=1):
    """mask & ~eroded(mask), eroded by explicit loops (outside = background)."""
    mask = np.asarray(mask, bool)
    eroded = mask
    for _ in range(width):
        h, w = eroded.shape
        nxt = np.zeros_like(eroded)
        for i in range(h):
            for j in range(w):
                neighbours = [(i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)]
                nxt[i, j] = eroded[i, j] and all(0 <= a < h and 0 <= b < w and eroded[a, b] for a, b in neighbours)
        eroded = nxt
    return mask & ~eroded


def disc(size, cy, cx, r):
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def png_size(path):
    with Image.open(path) as image:
        return image.size  # (width, height)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (6, 32, 32, 3)).astype("float32")
    true = np.stack([disc(32, 16, 16, 4 + i) for i in range(6)])[..., None].astype("float32")
    pred = np.stack([disc(32, 15, 17, 6) for _ in range(6)])[..., None].astype("float32")
    return images, true, pred


HISTORY = {
    "loss": [0.9, 0.6, 0.5, 0.45], "val_loss": [1.0, 0.7, 0.65, 0.66],
    "dice": [0.3, 0.55, 0.6, 0.7], "val_dice": [0.2, 0.61, 0.58, 0.6],
    "iou": [0.2, 0.4, 0.45, 0.55], "val_iou": [0.1, 0.44, 0.41, 0.43],
}


# ---------------------------------------------------------------- overlays
@settings(max_examples=40, deadline=None)
@given(mask=arrays(bool, (9, 11)), width=st.integers(1, 3))
def test_outline_overlay_changes_exactly_the_outline_pixels(mask, width):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 200, (9, 11, 3), dtype=np.uint8)  # never pure red
    out = viz.outline_overlay(image, mask, color=(255, 0, 0), width=width)
    changed = np.any(out != image, axis=-1)
    np.testing.assert_array_equal(changed, reference_outline(mask, width))
    assert (out[changed] == (255, 0, 0)).all()
    assert out.dtype == np.uint8 and out.shape == image.shape


def test_outline_is_the_inner_boundary_of_a_square():
    mask = np.zeros((7, 7), bool)
    mask[2:5, 2:5] = True
    line = viz.mask_outline(mask)
    assert line.sum() == 8 and not line[3, 3]
    assert not (line & ~mask).any()  # never outside the mask


@pytest.mark.parametrize("width", [1, 2, 3])
def test_outline_of_any_width_matches_the_loop_reference(width):
    rng = np.random.default_rng(width)
    mask = rng.uniform(size=(13, 17)) < 0.6
    mask[4:10, 5:14] = True  # a solid part, so wider lines differ from thin ones
    np.testing.assert_array_equal(viz.mask_outline(mask, width), reference_outline(mask, width))


def test_box_blur_is_the_mean_over_each_box_with_edges_replicated():
    alpha = np.random.default_rng(0).uniform(size=(7, 9)).astype(np.float32)
    radius = 2
    padded = np.pad(alpha, radius, mode="edge")
    expected = np.array([[padded[i:i + 2 * radius + 1, j:j + 2 * radius + 1].mean() for j in range(9)]
                         for i in range(7)])
    np.testing.assert_allclose(viz._box_blur(alpha, radius), expected, atol=1e-6)


def test_overlay_accepts_float_images_and_hw1_masks():
    image = np.full((8, 8, 3), 0.5, np.float32)
    mask = np.zeros((8, 8, 1), np.float32)
    mask[2:6, 2:6] = 1.0
    out = viz.outline_overlay(image, mask, color=(0, 0, 255))
    expected = np.full((8, 8, 3), 128, np.uint8)  # round(0.5 * 255)
    line = reference_outline(mask[..., 0] > 0.5)
    expected[line] = (0, 0, 255)
    np.testing.assert_array_equal(out, expected)


def test_grey_image_becomes_rgb():
    out = viz.outline_overlay(np.zeros((5, 5), np.uint8), np.ones((5, 5), bool))
    assert out.shape == (5, 5, 3)


def test_mask_of_another_size_is_a_one_line_error():
    with pytest.raises(TfsegError, match="does not match"):
        viz.outline_overlay(np.zeros((8, 8, 3), np.uint8), np.ones((4, 4)))


def test_tinted_overlay_blends_inside_and_keeps_outside():
    image = np.full((6, 6, 3), 100, np.uint8)
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:4] = True
    out = viz.tinted_overlay(image, mask, color=(200, 0, 0), alpha=0.5)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert (out[mask] == (150, 50, 50)).all()


def test_compare_overlay_colours_true_pred_and_both():
    image = np.full((12, 12, 3), 90, np.uint8)
    true = np.zeros((12, 12), bool)
    true[2:8, 2:8] = True
    pred = np.zeros((12, 12), bool)
    pred[2:8, 4:10] = True
    out = viz.compare_overlay(image, true, pred)
    t, p = reference_outline(true), reference_outline(pred)
    assert (out[t & ~p] == viz.TRUE_COLOR).all()
    assert (out[p & ~t] == viz.PRED_COLOR).all()
    assert (out[t & p] == viz.BOTH_COLOR).all() and (t & p).any()
    np.testing.assert_array_equal(out[~(t | p)], image[~(t | p)])


# ---------------------------------------------------------------- chroma key
def test_chroma_key_keeps_foreground_and_replaces_background_exactly():
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)
    backdrop = rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)
    person = np.zeros((20, 16, 1), np.float32)
    person[4:18, 5:11] = 1.0
    inside = person[..., 0] > 0
    out = viz.chroma_key(frame, person, backdrop)
    np.testing.assert_array_equal(out[inside], frame[inside])
    np.testing.assert_array_equal(out[~inside], backdrop[~inside])
    flat = viz.chroma_key(frame, person, (0, 177, 64))
    assert (flat[~inside] == (0, 177, 64)).all()
    np.testing.assert_array_equal(flat[inside], frame[inside])


def test_chroma_key_resizes_a_background_of_another_size():
    backdrop = np.full((7, 9, 3), 33, np.uint8)
    out = viz.chroma_key(np.zeros((20, 16, 3), np.uint8), np.zeros((20, 16)), backdrop)
    assert out.shape == (20, 16, 3) and (out == 33).all()


def test_chroma_key_soft_edge_blends_only_near_the_edge():
    frame = np.full((30, 30, 3), 200, np.uint8)
    person = disc(30, 15, 15, 9)
    out = viz.chroma_key(frame, person, (0, 0, 0), soft_edge=2)
    # The blur is a 5x5 box: a pixel stays exact when no other-side pixel is in its box,
    # i.e. when it is more than 2 * 2 city-block steps from the other side.
    far_inside = ~reference_outline(person, 4) & person
    far_outside = ~reference_outline(~person, 4) & ~person
    assert far_inside.any() and far_outside.any()
    assert (out[far_inside] == 200).all() and (out[far_outside] == 0).all()
    edge = out[reference_outline(person, 1)][:, 0]
    assert ((edge > 0) & (edge < 200)).all()


# ---------------------------------------------------------------- dice
def test_per_image_dice_formula_and_empty_convention():
    true = np.zeros((3, 4, 4, 1), np.float32)
    pred = np.zeros((3, 4, 4, 1), np.float32)
    true[0, :2] = 1
    pred[0, :1] = 1  # |T|=8, |P|=4, overlap 4 -> 8/12
    true[1, :2] = 1  # prediction empty -> 0
    # image 2: both empty -> no score
    np.testing.assert_allclose(viz.per_image_dice(true, pred), [8 / 12, 0.0, np.nan], rtol=1e-6)


def test_per_image_dice_thresholds_probabilities_at_half():
    true = np.ones((1, 2, 2))
    assert viz.per_image_dice(true, np.full((1, 2, 2), 0.51))[0] == 1.0
    assert viz.per_image_dice(true, np.full((1, 2, 2), 0.49))[0] == 0.0


# ---------------------------------------------------------------- plots
def best_line_epochs(fig):
    return [line.get_xdata()[0] for ax in fig.axes for line in ax.get_lines()
            if line.get_label().startswith("best epoch")]


def test_plot_history_writes_a_png_and_marks_the_best_val_dice(tmp_path):
    path = tmp_path / "curves.png"
    fig = viz.plot_history(HISTORY, path)
    assert png_size(path) == (round(3 * 4.2 * DPI), round(3.6 * DPI))
    assert [ax.get_title() for ax in fig.axes] == ["Loss", "Dice", "IoU"]
    best = int(np.argmax(HISTORY["val_dice"])) + 1
    assert best_line_epochs(fig) == [best] * 3
    assert sorted(os.listdir(tmp_path)) == ["curves.png"]  # no temp file left


def write_history_csv(path, history):
    keys = sorted(history)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        for epoch in range(len(history["loss"])):
            writer.writerow([epoch, *(history[k][epoch] for k in keys)])


def test_plot_history_reads_a_csv_logger_file(tmp_path):
    history = {"loss": [0.8, 0.5, 0.4, 0.3, 0.35], "val_loss": [0.9, 0.6, 0.5, 0.55, 0.6],
               "dice": [0.2, 0.4, 0.6, 0.7, 0.71], "val_dice": [0.1, 0.3, 0.5, 0.72, 0.7]}
    write_history_csv(tmp_path / "history.csv", history)
    fig = viz.plot_history(tmp_path / "history.csv", tmp_path / "curves.png")
    assert viz.best_epoch(tmp_path / "history.csv") == 4
    assert best_line_epochs(fig) == [4, 4]
    val_dice = [line for line in fig.axes[1].get_lines() if line.get_label() == "validation"][0]
    np.testing.assert_allclose(val_dice.get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(val_dice.get_ydata(), history["val_dice"])
    assert png_size(tmp_path / "curves.png") == (round(2 * 4.2 * DPI), round(3.6 * DPI))


def test_best_epoch_falls_back_to_lowest_val_loss():
    assert viz.best_epoch({"loss": [3, 2, 1], "val_loss": [2.0, 1.0, 1.5]}) == 2


def test_missing_history_file_is_a_one_line_error(tmp_path):
    with pytest.raises(TfsegError, match="no such history file"):
        viz.plot_history(tmp_path / "nope.csv")


def test_plot_comparison_draws_every_run(tmp_path):
    other = {k: [v * 0.9 for v in vals] for k, vals in HISTORY.items()}
    fig = viz.plot_comparison({"unet": HISTORY, "segnet": other}, tmp_path / "cmp.png")
    labels = {line.get_label() for line in fig.axes[1].get_lines()}
    assert {"unet validation", "segnet validation", "unet train", "segnet train"} <= labels
    assert png_size(tmp_path / "cmp.png") == (round(3 * 4.4 * DPI), round(3.8 * DPI))


def test_plot_predictions_grid_titles_show_per_image_dice(tmp_path, batch):
    images, true, pred = batch
    fig = viz.plot_predictions(images, true, pred, tmp_path / "p.png", max_images=5, columns=3)
    assert png_size(tmp_path / "p.png") == (round(3 * 2.6 * DPI), round((2 * 2.6 + 0.6) * DPI))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    dice = viz.per_image_dice(true[:5], pred[:5])
    assert titles == [f"#{i}  Dice {d:.3f}" for i, d in enumerate(dice)]


def test_plot_best_worst_orders_by_dice(tmp_path, batch):
    images, true, pred = batch
    dice = viz.per_image_dice(true, pred)
    fig = viz.plot_best_worst(images, true, pred, dice, tmp_path / "bw.png", k=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    best, worst = int(np.argmax(dice)), int(np.argmin(dice))
    assert titles[0].startswith(f"best 1: #{best} ") and titles[2].startswith(f"worst 1: #{worst} ")
    assert png_size(tmp_path / "bw.png") == (round(2 * 2.6 * DPI), round((2 * 2.6 + 0.9) * DPI))


def test_plot_dice_histogram_counts_every_value(tmp_path):
    values = np.array([0.1, 0.5, 0.52, 0.9, 0.95])
    fig = viz.plot_dice_histogram({"unet": values, "segnet": values / 2}, tmp_path / "h.png", bins=10)
    heights = [patch.get_height() for patch in fig.axes[0].patches]
    assert sum(heights) == 2 * len(values)
    assert png_size(tmp_path / "h.png") == (round(7.5 * DPI), round(3.8 * DPI))


def test_plots_leave_no_pyplot_figures_and_keep_the_backend(tmp_path, batch):
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    before = plt.get_fignums()
    viz.plot_history(HISTORY, tmp_path / "a.png")
    viz.plot_predictions(*batch, path=tmp_path / "b.png")
    assert plt.get_fignums() == before
    assert matplotlib.get_backend() == backend


# ---------------------------------------------------------------- tensorboard
def image_summaries(log_dir):
    """{step: [decoded images]} of every 'predictions' image summary under log_dir."""
    import tensorflow as tf

    found = {}
    for root, _, files in os.walk(log_dir):
        for name in files:
            if not name.startswith("events.out.tfevents"):
                continue
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                for value in event.summary.value:
                    if value.tag == "predictions":
                        assert value.metadata.plugin_data.plugin_name == "images"  # TensorBoard's IMAGES tab
                        blob = tf.make_ndarray(value.tensor)  # [width, height, png, png, ...]
                        found[event.step] = [tf.io.decode_png(png).numpy() for png in blob[2:]]
    return found


def test_prediction_images_writes_overlays_to_tensorboard(tmp_path):
    import keras

    from tfseg.tensorboard import PredictionImages

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (6, 32, 32, 3)).astype("float32")
    masks = (images[..., :1] > 0.5).astype("float32")
    inputs = keras.Input((32, 32, 3), name="images")
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="probabilities")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy")
    callback = PredictionImages((images, masks), tmp_path / "tb", max_images=3, every_n_epochs=2)
    model.fit(images, masks, epochs=3, batch_size=3, verbose=0, callbacks=[callback])

    found = image_summaries(tmp_path / "tb")
    assert sorted(found) == [2, 3]  # every 2nd epoch, plus the last one
    assert [img.shape for img in found[3]] == [(32, 32, 3)] * 3
    expected = callback.overlays()[0]  # same weights as at the end of training
    np.testing.assert_array_equal(np.stack(found[3]), expected)


def test_prediction_images_takes_examples_from_a_dataset(tmp_path):
    import tensorflow as tf

    from tfseg.tensorboard import PredictionImages

    images = np.zeros((5, 16, 16, 3), np.float32)
    masks = np.zeros((5, 16, 16, 1), np.float32)
    data = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    callback = PredictionImages(data, tmp_path, max_images=3)
    assert callback.images.shape == (3, 16, 16, 3) and callback.masks.shape == (3, 16, 16, 1)


def test_prediction_images_rejects_arguments_in_the_wrong_order(tmp_path):
    from tfseg.tensorboard import PredictionImages

    images, masks = np.zeros((2, 16, 16, 3)), np.zeros((2, 16, 16, 1))
    with pytest.raises(TfsegError, match="PredictionImages: expected"):
        PredictionImages(str(tmp_path), images, masks)  # log_dir first: a common slip
