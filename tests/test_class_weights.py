"""--class-weights auto|w0,w1,...: the rule (tfseg.balance), the counting it shares with tfseg inspect,
the setting's checks, the loss it reaches, and a run that stores the weights it trained with."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tfseg.balance import describe, median_frequency_weights, parse_class_weights, resolve_class_weights
from tfseg.config import TrainConfig
from tfseg.errors import ConfigError
from tfseg.losses import CCEDiceLoss, CrossEntropyLoss, IgnoreClassLoss, get_loss



def test_median_frequency_weights():
    assert median_frequency_weights([900, 90, 10]) == [0.1, 1.0, 9.0]
    assert median_frequency_weights([50, 50]) == [1.0, 1.0]  # balanced: all 1
    assert median_frequency_weights([1, 3]) == [2.0, 0.6667]  # two classes: the median is their mean frequency
    assert median_frequency_weights([10**7, 100, 1]) == [0.02, 1.0, 50.0]  # clipped to [1/50, 50]
    assert median_frequency_weights([10**7, 100, 1], max_weight=10.0) == [0.1, 1.0, 10.0]
    assert median_frequency_weights([80, 0, 20]) == [0.625, 1.0, 2.5]  # an absent class weighs 1; median of present
    assert median_frequency_weights([0, 1]) == [1.0, 1.0]  # a single pixel is enough to weigh
    with pytest.raises(ConfigError, match="no pixels"):
        median_frequency_weights([0, 0])


@pytest.mark.parametrize("value, parsed", [
    (None, None), ("auto", "auto"), (" AUTO ", "auto"), ("0.1,1,9", [0.1, 1.0, 9.0]), ([1, 0], [1.0, 0.0]),
])
def test_parse_class_weights(value, parsed):
    assert parse_class_weights(value) == parsed


@pytest.mark.parametrize("value", ["", "1", "1,x", "1,-1", "0,0", "1,nan", "1,inf", 3])
def test_a_bad_class_weights_value_is_named(value):
    with pytest.raises(ConfigError, match=f"class_weights {value!r}"):
        parse_class_weights(value)


def test_resolve_counts_only_for_auto_and_checks_the_class_count():
    def never():
        raise AssertionError("counted")

    assert resolve_class_weights(None, 3, never) is None
    assert resolve_class_weights("1,2,3", 3, never) == {"rule": "given", "weights": [1.0, 2.0, 3.0],
                                                        "class_pixels": None}
    assert resolve_class_weights("1,4", 1, never)["weights"] == [1.0, 4.0]  # binary: background, foreground
    with pytest.raises(ConfigError, match="3 weights for 2 classes"):
        resolve_class_weights("1,2,3", 1, never)
    with pytest.raises(ConfigError, match="2 weights for 4 classes"):
        resolve_class_weights("1,2", 4, never)
    counts = {0: 900, 1: 90, 2: 10, 255: 10**6}  # the ignore value counts nowhere
    resolved = resolve_class_weights("auto", 3, lambda: counts, ignore_class=255)
    assert resolved == {"rule": "median frequency", "weights": [0.1, 1.0, 9.0], "class_pixels": [900, 90, 10]}
    assert describe(resolved) == ("class weights (median frequency of the training split's pixels): "
                                  "0: 0.1, 1: 1, 2: 9")
    inside = resolve_class_weights("auto", 3, lambda: counts, ignore_class=1)  # an ignored class id weighs 1
    assert inside["class_pixels"] == [900, 0, 10] and inside["weights"][1] == 1.0


@pytest.mark.parametrize("options, message", [
    (dict(class_weights="auto", loss="focal", num_classes=3), "loss 'focal' takes no class weights"),
    (dict(class_weights="auto"), "only loss 'bce' takes class weights"),
    (dict(class_weights="1,2", loss="dice"), "only loss 'bce'"),
    (dict(class_weights="a,b", num_classes=3), "class_weights 'a,b'"),
])
def test_train_config_refuses_what_no_loss_can_take(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)


def test_train_config_keeps_the_choice_and_the_cli_has_the_flag(capsys):
    from tfseg.cli import main

    config = TrainConfig(class_weights="auto", num_classes=3)
    assert TrainConfig.from_dict(json.loads(config.to_json())).class_weights == "auto"
    assert TrainConfig(class_weights="1,5", loss="bce").class_weights == "1,5"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--class-weights auto|W0,W1,..." in capsys.readouterr().out
    assert main(["train", "--class-weights", "auto", "--loss", "focal", "--num-classes", "3"]) == 2
    assert "--class-weights 'auto': loss 'focal' takes no class weights" in capsys.readouterr().err


def test_get_loss_passes_the_weights_to_the_loss_itself():
    loss = get_loss("bce_dice", 3, class_weights=[0.1, 1.0, 9.0])
    assert isinstance(loss, CCEDiceLoss) and loss.options["class_weights"] == [0.1, 1.0, 9.0]
    binary = get_loss("bce", 1, class_weights=[1.0, 4.0])
    assert isinstance(binary, CrossEntropyLoss) and binary.options["class_weights"] == [1.0, 4.0]
    ignoring = get_loss("cce", 3, ignore_class=255, class_weights=[1, 2, 3])
    assert isinstance(ignoring, IgnoreClassLoss) and ignoring.loss.options["class_weights"] == [1.0, 2.0, 3.0]
    with pytest.raises(ConfigError, match="takes no class weights"):
        get_loss("focal", 3, class_weights=[1, 1, 1])
    with pytest.raises(ConfigError, match="only for num_classes > 1"):
        get_loss("bce_dice", 1, class_weights=[1, 4])
    # weighted: a miss of the rare class costs more than without weights
    y_true = np.zeros((1, 4, 4, 1), np.float32)
    y_true[0, 0, 0, 0] = 2
    y_pred = np.full((1, 4, 4, 3), [0.8, 0.1, 0.1], np.float32)
    plain, weighted = get_loss("cce", 3), get_loss("cce", 3, class_weights=[0.1, 1.0, 9.0])
    assert float(weighted(y_true, y_pred)) > float(plain(y_true, y_pred))


def write_class_folder(root, count=12, size=32):
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[4:20, 4:20] = 1
        mask[24 : 24 + (i % 3), 24:27] = 2  # 0, 3 or 6 pixels
        image = rng.integers(0, 255, (size, size, 3)).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(root, "images", f"c{i:02d}.png"))
        Image.fromarray(mask).save(os.path.join(root, "masks", f"c{i:02d}.png"))
    return f"folder:{root}"


def test_class_pixels_is_inspects_class_balance(tmp_path):
    from tfseg.data.inspect import class_pixels, inspect_source
    from tfseg.data.sources import open_source

    data = write_class_folder(str(tmp_path / "data"))
    source = open_source(data, num_classes=3)
    counts = class_pixels(source, source.ids())
    assert counts == {0: 12 * (32 * 32 - 256) - 36, 1: 12 * 256, 2: 4 * 3 + 4 * 6}
    report = inspect_source(data, num_classes=3)
    total = sum(counts.values())
    assert report["class_fraction"] == {str(c): round(n / total, 4) for c, n in sorted(counts.items())}
    some = source.ids()[:3]  # c00 (0 px of class 2), c01 (3), c02 (6)
    assert class_pixels(source, some)[2] == 9
    binary = open_source("synthetic:6", image_size=16)  # a decoded kind: its examples are counted
    assert sum(class_pixels(binary, binary.ids()).values()) == 6 * 16 * 16


@pytest.mark.slow
def test_a_run_trains_with_the_weights_it_prints_and_stores(tmp_path, capsys):
    from tfseg.cli import main
    from tfseg.evaluation import evaluate

    data = write_class_folder(str(tmp_path / "data"), count=16)
    run = str(tmp_path / "run")
    argv = ["train", "--data", data, "--num-classes", "3", "--class-weights", "auto", "--epochs", "1",
            "--image-size", "32", "--base-filters", "4", "--depth", "2", "--batch-size", "8", "--precision",
            "float32", "--out", run]
    assert main(argv) == 0
    out = capsys.readouterr().out
    stored = json.load(open(os.path.join(run, "class_weights.json")))
    assert stored["rule"] == "median frequency" and len(stored["weights"]) == 3
    assert f"2: {stored['weights'][2]:g}" in out and "class weights (median frequency" in out
    train_ids = json.load(open(os.path.join(run, "splits.json")))["train"]
    assert sum(stored["class_pixels"]) == len(train_ids) * 32 * 32  # the training split only
    assert stored["weights"] == median_frequency_weights(stored["class_pixels"])
    assert json.load(open(os.path.join(run, "config.json")))["class_weights"] == "auto"
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    result = evaluate(run, split="test")  # scored with the run's weighted loss, as training scored it
    assert result["test"]["loss"] == pytest.approx(metrics["test"]["loss"], abs=1e-5)
    unweighted = get_loss("bce_dice", 3)
    assert unweighted.options.get("class_weights") is None
    assert main(argv) == 0  # complete: nothing to do, the same weights
    assert json.load(open(os.path.join(run, "class_weights.json"))) == stored
