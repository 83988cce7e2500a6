"""``tfseg.load_model`` is the CLI's checked loader, and a run folder's model.keras must be its config's model."""

import json
import os

import keras
import numpy as np
import pytest

import tfseg
from tfseg import cli
from tfseg.config import TrainConfig
from tfseg.errors import TfsegError
from tfseg.inference import Predictor
from tfseg.models import build_model

SETTINGS = dict(data="synthetic:12", image_size=16, base_filters=2, depth=1, batch_size=4, patience=20, epochs=2)
FLAGS = ["--data", "synthetic:12", "--image-size", "16", "--base-filters", "2", "--depth", "1", "--batch-size", "4",
         "--patience", "20", "--epochs", "2"]
# model.keras replaced by: another architecture, another class count, input size, depth, width
WRONG = {
    "segnet": lambda: build_model("segnet", 16, 1, base_filters=2, depth=1),
    "classes": lambda: build_model("unet", 16, 4, base_filters=2, depth=1),
    "input": lambda: build_model("unet", 32, 1, base_filters=2, depth=1),
    "depth": lambda: build_model("unet", 16, 1, base_filters=2, depth=2),
    "width": lambda: build_model("unet", 16, 1, base_filters=4, depth=1),
}


def make_run(folder, model=None, metrics=True):
    """A run folder as an interrupted (``metrics=False``) or finished ``tfseg train`` of SETTINGS leaves it."""
    config = TrainConfig(**SETTINGS, out=str(folder))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(config.to_json())
    with open(os.path.join(folder, "history.csv"), "w") as f:
        f.write("epoch,loss\n1,0.5\n")
    if metrics:
        with open(os.path.join(folder, "metrics.json"), "w") as f:
            json.dump({"num_classes": 1, "epochs_completed": 2}, f)
    model = model or build_model(config.model, 16, 1, **config.model_options())
    model.save(os.path.join(folder, "model.keras"))
    return str(folder)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A good run folder, its SavedModel base folder and a .tflite of its model."""
    root = tmp_path_factory.mktemp("kinds")
    run = make_run(root / "run")
    assert cli.main(["export", "--model", run, "--out", str(root / "serving")]) == 0
    assert cli.main(["export", "--model", run, "--out", str(root / "lite"), "--format", "tflite"]) == 0
    return run, str(root / "serving"), str(root / "lite" / "model.tflite")


def test_load_model_takes_what_the_cli_takes(exported):
    run, serving, lite = exported
    images = [np.full((20, 24, 3), 100, np.uint8)]
    for path in (run, os.path.join(run, "model.keras")):
        model = tfseg.load_model(path)
        assert isinstance(model, keras.Model) and model.name == "unet"
    for path, kind in [(serving, "saved_model"), (os.path.join(serving, "1"), "saved_model"), (lite, "tflite")]:
        predictor = tfseg.load_model(path)
        assert isinstance(predictor, Predictor) and predictor.kind == kind
        assert predictor.probabilities(images)[0].shape == (20, 24, 1)


def test_load_model_refuses_nan_weights_and_what_is_not_a_model(tmp_path):
    model = build_model("unet", 16, 1, base_filters=2, depth=1)
    model.set_weights([np.full(w.shape, np.nan, np.float32) for w in model.get_weights()])
    model.save(str(tmp_path / "nan.keras"))
    with pytest.raises(TfsegError, match="NaN/Inf"):
        tfseg.load_model(str(tmp_path / "nan.keras"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(TfsegError, match="notes.txt"):
        tfseg.load_model(str(tmp_path / "notes.txt"))


@pytest.mark.parametrize("wrong", sorted(WRONG))
def test_a_run_whose_model_is_not_its_configs_is_refused_naming_both(tmp_path, wrong):
    run = make_run(tmp_path / "run", WRONG[wrong]())
    with pytest.raises(TfsegError) as refused:
        tfseg.load_model(run)
    message = str(refused.value)
    assert os.path.join(run, "model.keras") in message and os.path.join(run, "config.json") in message, message
    assert "unet, input 16x16, 1 class" in message, message  # what config.json describes


@pytest.mark.parametrize("verb, wrong", [("evaluate", "classes"), ("predict", "segnet"), ("export", "input"),
                                         ("export-tflite", "depth"), ("train", "width")])
def test_every_verb_refuses_a_run_whose_model_was_replaced(tmp_path, capsys, verb, wrong):
    run = make_run(tmp_path / "run", WRONG[wrong](), metrics=verb != "train")
    keras.utils.save_img(str(tmp_path / "a.png"), np.full((20, 24, 3), 90, np.uint8))
    args = {"evaluate": ["evaluate", "--model", run, "--out", str(tmp_path / "eval")],
            "predict": ["predict", "--model", run, str(tmp_path / "a.png"), "--out", str(tmp_path / "masks")],
            "export": ["export", "--model", run, "--out", str(tmp_path / "serving")],
            "export-tflite": ["export", "--model", run, "--out", str(tmp_path / "lite"), "--format", "tflite"],
            "train": ["train", *FLAGS, "--out", run]}[verb]  # the same command: a resume
    before = sorted(os.listdir(run))
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not the model of its run folder" in err, err
    assert os.path.join(run, "config.json") in err
    assert sorted(os.listdir(run)) == before and sorted(os.listdir(tmp_path)) == ["a.png", "run"]


def test_the_runs_own_model_passes_the_check(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert cli.main(["export", "--model", run, "--out", str(tmp_path / "serving")]) == 0, capsys.readouterr().err
