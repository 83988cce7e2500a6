"""Files written by tfseg 0.1.0 still load and resume: a run folder kept as test data.

``tests/data/run_0_1`` is a one-epoch run (``synthetic:24``, 16 px, 2 base filters,
depth 1) as tfseg 0.1.0 wrote it, stopped before its final scores: ``config.json``,
``splits.json``, ``history.csv``, ``model.keras`` and ``backup/``.
"""

import json
import os
import shutil

import keras
import numpy as np
import pytest

from tfseg import fileio
from tfseg.config import TrainConfig
from tfseg.training import train

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "run_0_1")


@pytest.fixture
def old_run(tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(FIXTURE, run)
    return run


def test_an_old_model_keras_loads_and_predicts():
    model = keras.models.load_model(os.path.join(FIXTURE, "model.keras"))
    probabilities = model.predict(np.full((1, 16, 16, 3), 0.5, np.float32), verbose=0)
    assert probabilities.shape == (1, 16, 16, 1)
    assert np.isfinite(probabilities).all() and (probabilities >= 0).all() and (probabilities <= 1).all()


@pytest.mark.slow
def test_an_old_run_folder_resumes_and_completes(old_run):
    values = fileio.read_json(os.path.join(old_run, "config.json"))
    config = TrainConfig.from_dict({**values, "out": old_run, "epochs": 2})
    metrics = train(config, verbose=0)
    assert metrics["epochs_completed"] == 2
    with open(os.path.join(old_run, "history.csv")) as f:
        # the 0-based history of tfseg 0.1.0 renumbered from 1 (epoch 1 kept, 2 added)
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["1", "2"]
    assert json.load(open(os.path.join(old_run, "splits.json"))) == json.load(
        open(os.path.join(FIXTURE, "splits.json")))
    assert os.path.isdir(os.path.join(old_run, "saved_model", "1"))
