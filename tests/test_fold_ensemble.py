"""Fold ensembles: a cross-validated run (``tfseg train --folds K``) is evaluated, predicted and exported as
the average of its folds' probabilities, through the one path of tfseg.segment."""

import json
import os
import shutil

import numpy as np
import pytest

from tfseg import cli
from tfseg.errors import TfsegError

from sources_testdata import write_ph2

FOLDS = 3
TINY = ["--image-size", "32", "--base-filters", "4", "--depth", "2", "--epochs", "1", "--batch-size", "8",
        "--verbose", "0"]


def _members(count=3, size=16, classes=1):
    import tfseg.models

    return [tfseg.models.build_model("unet", image_size=size, num_classes=classes, base_filters=2, depth=1)
            for _ in range(count)]


def test_average_models_is_the_mean_of_the_members():
    from tfseg.models.ensemble import average_models

    for classes in (1, 3):
        members = _members(classes=classes)
        images = np.random.default_rng(classes).random((2, 16, 16, 3), np.float32)
        expected = np.mean([member.predict_on_batch(images) for member in members], axis=0)
        ensemble = average_models(members)
        assert ensemble.name == "ensemble_of_3_unet" and ensemble.output.dtype == "float32"
        assert [layer.name for layer in ensemble.layers] == ["images", "member_1", "member_2", "member_3",
                                                             "probabilities"]
        np.testing.assert_allclose(ensemble.predict_on_batch(images), expected, atol=1e-6)
        assert len(ensemble.weights) == sum(len(m.weights) for m in members)  # shared, not copied


def test_average_models_refuses_what_cannot_be_averaged():
    from tfseg.models.ensemble import average_models

    with pytest.raises(ValueError, match="two or more"):
        average_models(_members(1))
    with pytest.raises(ValueError, match="share input shape and classes"):
        average_models([*_members(1, size=16), *_members(1, size=32)])
    with pytest.raises(ValueError, match="share input shape and classes"):
        average_models([*_members(1, classes=1), *_members(1, classes=2)])


def _fake_fold(root, fold, folds=3, complete=True):
    from tfseg.config import TrainConfig

    run = root / f"fold-{fold}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(TrainConfig(folds=folds, fold=fold, out=str(run)).to_dict()))
    if complete:
        (run / "metrics.json").write_text("{}")


def test_what_is_a_cross_validated_run_and_which_folds_it_lacks(tmp_path):
    from tfseg.training.cv import fold_runs, is_cv_run

    assert not is_cv_run(str(tmp_path)) and not is_cv_run(str(tmp_path / "absent"))
    with pytest.raises(TfsegError, match="not a cross-validated run"):
        fold_runs(str(tmp_path))
    (tmp_path / "cv.json").write_text("{}")
    assert is_cv_run(str(tmp_path))  # cv.json alone marks it, but without fold-1 there is nothing to load
    with pytest.raises(TfsegError, match="not a cross-validated run"):
        fold_runs(str(tmp_path))
    root = tmp_path / "run"
    _fake_fold(root, 1, complete=False)
    assert is_cv_run(str(root))  # a first fold started, before any cv.json
    with pytest.raises(TfsegError, match=r"fold\(s\) 1, 2, 3 of its 3-fold .* trained yet; .*--folds 3 --out") as err:
        fold_runs(str(root))
    assert "e.g." not in str(err.value)  # no complete fold to point at
    _fake_fold(root, 3)
    with pytest.raises(TfsegError, match=r"fold\(s\) 1, 2 of .* e\.g\. .*fold-3\)$"):
        fold_runs(str(root))
    (root / "fold-1" / "metrics.json").write_text("{}")
    with pytest.raises(TfsegError, match=r"fold\(s\) 2 of .* e\.g\. .*fold-1\)$"):
        fold_runs(str(root))
    _fake_fold(root, 2)
    assert fold_runs(str(root) + "/") == [str(root / f"fold-{i}") for i in (1, 2, 3)]
    (root / "config.json").write_text("{}")  # a single run's folder is not a cross-validation
    assert not is_cv_run(str(root))


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    """A PH2-layout folder (30 cases) and a 3-fold cross-validated run on it."""
    root = tmp_path_factory.mktemp("fold-ensemble")
    write_ph2(root / "ph2", names=[f"IMD{i:03d}" for i in range(2, 32)], size=(30, 40))
    run = str(root / "cv")
    assert cli.main(["train", "--data", f"ph2:{root / 'ph2'}", "--folds", str(FOLDS), "--out", run, *TINY]) == 0
    return root, run


@pytest.mark.slow
def test_a_cross_validated_run_writes_its_folds_and_cv_json(cv_run):
    _, run = cv_run
    assert sorted(name for name in os.listdir(run) if name.startswith("fold-")) == ["fold-1", "fold-2", "fold-3"]
    summary = json.load(open(os.path.join(run, "cv.json")))
    assert summary["complete"] == [1, 2, 3]
    for key in ("val_dice", "test_dice"):
        values = [row[key] for row in summary["per_fold"]]
        assert summary["mean"][key] == pytest.approx(np.mean(values))
        assert summary["std"][key] == pytest.approx(np.std(values, ddof=1))


@pytest.mark.slow
def test_evaluate_of_a_cross_validated_run_scores_the_ensemble_with_intervals(cv_run, capsys):
    root, run = cv_run
    out = str(root / "eval")
    assert cli.main(["evaluate", "--model", run, "--out", out]) == 0
    printed = capsys.readouterr().out
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    test = metrics["test"]
    low, high = test["dice_ci95"]
    assert low <= test["dice"] <= high and low < high
    assert f"dice {test['dice']:.4f} [{low:.4f}, {high:.4f}]" in printed
    # the ensemble's scores are the average model's, not one fold's: the folds' own test Dice differ from it
    from tfseg.evaluation import evaluate

    folds = [evaluate(os.path.join(run, f"fold-{i}"), resamples=0)["test"]["dice"] for i in range(1, FOLDS + 1)]
    assert test["num_images"] == json.load(open(os.path.join(run, "fold-1", "metrics.json")))["split_sizes"]["test"]
    assert not np.allclose(folds, test["dice"], atol=1e-6)
    # only the test split is unseen by every fold
    assert cli.main(["evaluate", "--model", run, "--split", "val"]) == 2
    assert "scored on the test split only" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("tiled,tta", [(False, "none"), (False, "flips"), (True, "flips")])
def test_the_ensemble_predicts_the_average_of_the_folds_probabilities(cv_run, tiled, tta):
    from tfseg.inference import load_predictor

    _, run = cv_run
    rng = np.random.default_rng(0)
    # narrower than the window, 1 px wide, a size the window's stride does not divide
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(40, 23, 3), (9, 1, 3), (45, 70, 3)]]
    ensemble = load_predictor(run, tiled=tiled, tta=tta)
    assert ensemble.kind == "keras" and ensemble.tiled == tiled and ensemble.tta == tta
    folds = [load_predictor(os.path.join(run, f"fold-{i}"), tiled=tiled, tta=tta).probabilities(images)
             for i in range(1, FOLDS + 1)]
    for i, probabilities in enumerate(ensemble.probabilities(images)):
        assert probabilities.shape == images[i].shape[:2] + (1,)
        np.testing.assert_allclose(probabilities, np.mean([fold[i] for fold in folds], axis=0), atol=1e-5)


@pytest.mark.slow
def test_the_exported_ensemble_serves_the_average_of_the_folds_own_exports(cv_run):
    import tensorflow as tf

    root, run = cv_run
    exports = {}
    for name, model in [("ensemble", run)] + [(f"fold-{i}", os.path.join(run, f"fold-{i}")) for i in (1, 2, 3)]:
        out = str(root / "exports" / name)
        assert cli.main(["export", "--model", model, "--out", out]) == 0
        exports[name] = tf.saved_model.load(os.path.join(out, "1")).signatures["serving_default"]
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (2, 37, 29, 3), dtype=np.uint8))
    served = {name: signature(images=images)["probabilities"].numpy() for name, signature in exports.items()}
    average = np.mean([served[f"fold-{i}"] for i in (1, 2, 3)], axis=0)
    assert served["ensemble"].shape == (2, 37, 29, 1)
    np.testing.assert_allclose(served["ensemble"], average, atol=1e-4)
    assert np.abs(served["fold-1"] - average).max() > 1e-4  # the folds differ: the check can fail


@pytest.mark.slow
def test_the_python_loader_gives_the_ensemble_and_an_incomplete_run_is_refused(cv_run, capsys):
    import tfseg

    root, run = cv_run
    model = tfseg.load_model(run)
    assert model.name == "ensemble_of_3_unet" and [layer.name for layer in model.layers][1:4] == [
        "member_1", "member_2", "member_3"]
    partial = str(root / "partial")
    os.makedirs(partial)
    shutil.copytree(os.path.join(run, "fold-1"), os.path.join(partial, "fold-1"))
    with pytest.raises(TfsegError, match=r"fold\(s\) 2, 3 of its 3-fold cross-validation are not trained yet"):
        tfseg.load_model(partial)
    image = root / "ph2" / "PH2Dataset" / "PH2 Dataset images" / "IMD002" / "IMD002_Dermoscopic_Image" / "IMD002.bmp"
    assert cli.main(["predict", "--model", partial, str(image), "--out", str(root / "pred")]) == 2
    assert "not trained yet" in capsys.readouterr().err
