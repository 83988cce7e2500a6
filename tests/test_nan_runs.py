"""A run that diverges keeps its last finite best model; no verb uses a model with NaN/Inf weights."""

import os

import keras
import numpy as np
import pytest

from tfseg import cli, export
from tfseg.config import TrainConfig
from tfseg.errors import TfsegError
from tfseg.saving import load_keras_model
from tfseg.training import fit as fit_module
from tfseg.training import train

TINY = dict(data="synthetic:24", image_size=16, base_filters=2, depth=1, batch_size=4, patience=20)


def finite(model):
    return all(np.isfinite(w).all() for w in model.get_weights())


class PoisonAtEpoch(keras.callbacks.Callback):
    """Make the weights NaN during epoch ``epoch`` (what a diverging step does), loss left to Keras."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            self.model.set_weights([np.full_like(w, np.nan) for w in self.model.get_weights()])


@pytest.mark.slow
def test_a_run_that_diverges_keeps_its_last_finite_best_model(tmp_path, monkeypatch):
    real = fit_module.make_callbacks

    def with_poison(*args, **kwargs):
        callbacks = real(*args, **kwargs)
        return [PoisonAtEpoch(1), *callbacks]  # before the checkpoint: epoch 2 ends with NaN weights

    monkeypatch.setattr(fit_module, "make_callbacks", with_poison)
    run = str(tmp_path / "run")
    with pytest.raises(TfsegError, match="training stopped at epoch 2: .*NaN/Inf.*model.keras keeps the best finite"):
        train(TrainConfig(**TINY, epochs=3, out=run), verbose=0)
    model = load_keras_model(os.path.join(run, "model.keras"))  # refuses NaN/Inf weights
    assert finite(model)
    monkeypatch.undo()
    # the model of the run is usable by every verb
    assert cli.main(["export", "--model", run, "--out", str(tmp_path / "exports")]) == 0


@pytest.mark.slow
def test_a_huge_learning_rate_stops_with_exit_2_and_no_nan_model(tmp_path, capsys):
    run = str(tmp_path / "run")
    code = cli.main(["train", "--data", "synthetic:24", "--image-size", "16", "--base-filters", "2", "--depth", "1",
                     "--batch-size", "4", "--epochs", "3", "--learning-rate", "1e6", "--verbose", "0", "--out", run])
    err = capsys.readouterr().err
    # the weights diverge while the loss stays finite (batch norm): caught all the same
    assert code == 2 and "NaN/Inf" in err and "no such" not in err, err
    path = os.path.join(run, "model.keras")
    assert not os.path.exists(path) or finite(load_keras_model(path, require_finite=False))


@pytest.fixture(scope="module")
def nan_models(tmp_path_factory):
    """A model.keras, a SavedModel and a .tflite whose weights are NaN."""
    root = tmp_path_factory.mktemp("nan")
    inputs = keras.Input((16, 16, 3), name="images")
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    model.save(str(root / "model.keras"))
    saved = export.export_saved_model(model, str(root / "serving"), version=1)
    tflite = export.export_tflite(model, str(root / "model.tflite"))
    image = root / "a.png"
    keras.utils.save_img(str(image), np.full((20, 30, 3), 100, np.uint8))
    return {"keras": str(root / "model.keras"), "saved_model": saved, "tflite": tflite, "image": str(image)}


@pytest.mark.parametrize("kind", ["keras", "saved_model", "tflite"])
def test_predict_refuses_a_model_with_nan_weights(tmp_path, capsys, nan_models, kind):
    out = tmp_path / "out"
    code = cli.main(["predict", "--model", nan_models[kind], nan_models["image"], "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "NaN/Inf" in err and err.count("\n") == 1, err
    assert not out.exists() or not [n for n in os.listdir(out) if n.endswith(".png")]


@pytest.mark.parametrize("verb", ["export", "export-tflite", "evaluate"])
def test_export_and_evaluate_refuse_a_model_with_nan_weights(tmp_path, capsys, nan_models, verb):
    args = {"export": ["export", "--out", str(tmp_path / "exports")],
            "export-tflite": ["export", "--format", "tflite", "--out", str(tmp_path / "exports")],
            "evaluate": ["evaluate", "--data", "synthetic:8"]}[verb]
    code = cli.main([*args, "--model", nan_models["keras"]])
    err = capsys.readouterr().err
    assert code == 2 and "NaN/Inf" in err and nan_models["keras"] in err, err
    assert not (tmp_path / "exports").exists()
