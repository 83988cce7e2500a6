"""tfseg deletes or replaces only what it wrote itself, only with --overwrite, never an input,
and only `tfseg train` writes into a run folder (tfseg/outputs.py, docs/reliability.md)."""

import hashlib
import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from tfseg import outputs
from tfseg.cli import main
from tfseg.config import TrainConfig
from tfseg.errors import ConfigError, TfsegError
from tfseg.training import run_status

SIZE = 16


def tiny_model():
    inputs = keras.Input((SIZE, SIZE, 3), name="images")
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid", name="probabilities")(inputs))


def write_image(path, seed=0, mask=False):
    rng = np.random.default_rng(seed)
    array = (rng.random((20, 30)) > 0.5).astype(np.uint8) * 255 if mask else rng.integers(0, 255, (20, 30, 3), np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def write_folder_source(folder, count=4):
    for i in range(count):
        write_image(os.path.join(folder, "images", f"s{i:02d}.png"), seed=i)
        write_image(os.path.join(folder, "masks", f"s{i:02d}.png"), seed=i, mask=True)


def digest_tree(folder):
    """{relative path: sha256} of every file below ``folder``."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return found


def fake_run_folder(folder):
    """A run folder as tfseg train leaves it (config.json, metrics.json, model.keras, saved_model/)."""
    from tfseg.models import build_model

    os.makedirs(os.path.join(folder, "saved_model"), exist_ok=True)
    config = TrainConfig(data="synthetic:12", image_size=SIZE, base_filters=2, depth=1, out=str(folder))
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(config.to_json())
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump({"epochs_completed": 3, "best_epoch": 2}, f)
    # the model config.json describes (tfseg checks a run's model.keras against it)
    build_model(config.model, SIZE, 1, **config.model_options()).save(os.path.join(folder, "model.keras"))
    return str(folder)


def cli_error(capsys, args):
    code = main(args)
    err = capsys.readouterr().err
    return code, err


# --------------------------------------------------------------------------- prepare
def test_prepare_overwrite_never_deletes_a_folder_holding_its_input(tmp_path, capsys):
    parent = tmp_path / "P"
    write_folder_source(str(parent / "victim"))
    (parent / "notes.txt").write_text("someone else's file")
    before = digest_tree(parent)
    for extra in ([], ["--overwrite"]):
        code, err = cli_error(capsys, ["prepare", "--data", f"folder:{parent / 'victim'}", "--out", str(parent),
                                       "--quiet", *extra])
        assert code == 2 and err.count("\n") == 1 and str(parent) in err, err
        assert "holds the input" in err
    assert digest_tree(parent) == before


def test_prepare_overwrite_replaces_only_a_shard_folder_of_its_own(tmp_path, capsys):
    write_folder_source(str(tmp_path / "data"))
    out = tmp_path / "shards"
    args = ["prepare", "--data", f"folder:{tmp_path / 'data'}", "--out", str(out), "--quiet"]
    assert main(args) == 0
    code, err = cli_error(capsys, args)
    assert code == 2 and "pass --overwrite" in err
    (out / "mine.txt").write_text("not tfseg's")
    before = digest_tree(out)
    code, err = cli_error(capsys, [*args, "--overwrite"])
    assert code == 2 and "mine.txt" in err and "--overwrite" not in err.split(":", 2)[-1], err
    assert digest_tree(out) == before
    # a prepared folder is its own input: re-preparing it onto itself would delete what it reads
    os.remove(out / "mine.txt")
    code, err = cli_error(capsys, ["prepare", "--data", f"tfrecord:{out}", "--out", str(out), "--quiet", "--overwrite"])
    assert code == 2 and "holds the input" in err
    assert main([*args, "--overwrite"]) == 0


def test_prepare_refuses_a_non_empty_folder_that_is_not_a_shard_folder_without_inviting_overwrite(tmp_path, capsys):
    write_folder_source(str(tmp_path / "data"))
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    code, err = cli_error(capsys, ["prepare", "--data", f"folder:{tmp_path / 'data'}", "--out", str(out), "--quiet"])
    assert code == 2 and "not a tfseg shard folder" in err and "pass --overwrite" not in err
    code, err = cli_error(capsys, ["prepare", "--data", f"folder:{tmp_path / 'data'}", "--out", str(out), "--quiet",
                                   "--overwrite"])
    assert code == 2 and (out / "chapter1.tex").read_text() == "years of work"


# --------------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "model.keras")
    tiny_model().save(path)
    return path


def test_predict_never_replaces_a_file_it_did_not_write(tmp_path, capsys, model_file):
    write_folder_source(str(tmp_path / "gt"))
    truth = tmp_path / "gt" / "masks" / "s00_mask.png"
    write_image(str(truth), seed=9, mask=True)  # the user's ground truth, named like a prediction
    before = digest_tree(tmp_path / "gt")
    for extra in ([], ["--overwrite"]):
        code, err = cli_error(capsys, ["predict", "--model", model_file, str(tmp_path / "gt" / "images"),
                                       "--out", str(tmp_path / "gt" / "masks"), *extra])
        assert code == 2 and err.count("\n") == 1 and str(truth) in err and "not written by tfseg" in err, err
    assert digest_tree(tmp_path / "gt") == before


def test_predict_never_writes_over_an_input_even_with_overwrite(tmp_path, capsys, model_file):
    folder = tmp_path / "photos"
    write_image(str(folder / "a.png"), seed=1)
    write_image(str(folder / "a_mask.png"), seed=2, mask=True)
    before = digest_tree(folder)
    # next to an input named like the output
    code, err = cli_error(capsys, ["predict", "--model", model_file, str(folder / "a.png"), "--out", str(folder)])
    assert code == 2 and str(folder / "a_mask.png") in err
    # the output IS an input, even when the marker says tfseg wrote that name before
    outputs.claim(str(folder), ["a_mask.png"], "tfseg predict")
    code, err = cli_error(capsys, ["predict", "--model", model_file, str(folder / "a.png"), str(folder / "a_mask.png"),
                                   "--out", str(folder), "--overwrite"])
    assert code == 2 and "is one of the inputs" in err and str(folder / "a_mask.png") in err, err
    os.remove(folder / outputs.MARKER)
    assert digest_tree(folder) == before


def test_predict_replaces_its_own_outputs_only_with_overwrite(tmp_path, capsys, model_file):
    write_image(str(tmp_path / "in" / "a.png"), seed=1)
    args = ["predict", "--model", model_file, str(tmp_path / "in" / "a.png"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    first = digest_tree(tmp_path / "out")
    code, err = cli_error(capsys, args)
    assert code == 2 and "pass --overwrite" in err and str(tmp_path / "out" / "a_mask.png") in err
    assert digest_tree(tmp_path / "out") == first
    assert main([*args, "--overwrite"]) == 0


@pytest.mark.parametrize("verb", ["predict", "evaluate", "export", "export-tflite", "prepare"])
def test_no_verb_but_train_writes_into_a_run_folder(tmp_path, capsys, verb, model_file):
    run = fake_run_folder(tmp_path / "run")
    write_image(str(tmp_path / "in" / "a.png"))
    before = digest_tree(run)
    args = {
        "predict": ["predict", "--model", run, str(tmp_path / "in" / "a.png")],
        "evaluate": ["evaluate", "--model", run],
        "export": ["export", "--model", run, "--version", "1", "--overwrite"],
        "export-tflite": ["export", "--model", run, "--format", "tflite", "--overwrite"],
        "prepare": ["prepare", "--data", "synthetic:4", "--quiet", "--overwrite"],
    }[verb]
    for out in (run, os.path.join(run, "saved_model"), os.path.join(run, "backup", "x")):
        code, err = cli_error(capsys, [*args, "--out", out])
        assert code == 2 and err.count("\n") == 1 and "only tfseg train writes there" in err, err
    assert digest_tree(run) == before


def test_evaluate_replaces_its_own_outputs_only_with_overwrite(tmp_path, capsys, model_file):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "per_image.csv").write_text("mine\n")
    args = ["evaluate", "--model", model_file, "--data", "synthetic:12", "--out", str(out)]
    code, err = cli_error(capsys, [*args, "--overwrite"])
    assert code == 2 and "per_image.csv" in err and (out / "per_image.csv").read_text() == "mine\n"
    os.remove(out / "per_image.csv")
    assert main(args) == 0
    code, err = cli_error(capsys, args)
    assert code == 2 and "pass --overwrite" in err
    assert main([*args, "--overwrite"]) == 0


# --------------------------------------------------------------------------- export
def test_export_overwrite_replaces_only_what_tfseg_exported(tmp_path, model_file, capsys):
    out = tmp_path / "exports"
    assert main(["export", "--model", model_file, "--out", str(out), "--version", "1"]) == 0
    (out / "1" / "README").write_text("the user's notes")
    code, err = cli_error(capsys, ["export", "--model", model_file, "--out", str(out), "--version", "1", "--overwrite"])
    assert code == 2 and "not written by tfseg" in err and (out / "1" / "README").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.tflite").write_bytes(b"someone else's model")
    code, err = cli_error(capsys, ["export", "--model", model_file, "--out", str(other), "--format", "tflite",
                                   "--overwrite"])
    assert code == 2 and "not written by tfseg" in err
    assert (other / "model.tflite").read_bytes() == b"someone else's model"


# --------------------------------------------------------------------------- train
def test_force_new_refuses_a_run_folder_that_holds_the_data(tmp_path):
    run = tmp_path / "run"
    write_folder_source(str(run / "data"))
    config = TrainConfig(data=f"folder:{run / 'data'}", out=str(run))
    with open(run / "config.json", "w") as f:
        f.write(config.to_json())
    with pytest.raises(ConfigError, match="holds the input data"):
        run_status(config, force_new=True)


def test_train_refuses_another_runs_subfolder(tmp_path):
    run = fake_run_folder(tmp_path / "run")
    with pytest.raises(TfsegError, match="only tfseg train writes there"):
        run_status(TrainConfig(out=os.path.join(run, "backup")))


def test_a_projects_own_config_json_is_not_a_run_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"name": "my project"}')
    assert not outputs.is_run_folder(str(tmp_path))
    assert outputs.is_run_folder(fake_run_folder(tmp_path / "run"))


# --------------------------------------------------------------------------- outputs beside inputs and siblings
def test_a_second_predict_into_the_same_folder_keeps_the_first_ones_claims(tmp_path, capsys, model_file):
    for name in ("a", "b"):
        write_image(str(tmp_path / "in" / f"{name}.png"), seed=1)
    out = str(tmp_path / "out")
    assert main(["predict", "--model", model_file, str(tmp_path / "in" / "a.png"), "--out", out]) == 0
    assert main(["predict", "--model", model_file, str(tmp_path / "in" / "b.png"), "--out", out]) == 0
    assert sorted(outputs.claimed(out)) == ["a_mask.png", "a_overlay.jpg", "b_mask.png", "b_overlay.jpg"]
    assert outputs.unfinished(out) == []
    # the first one's files are still tfseg's: replaced with --overwrite, never called the user's
    code, err = cli_error(capsys, ["predict", "--model", model_file, str(tmp_path / "in" / "a.png"), "--out", out])
    assert code == 2 and "pass --overwrite" in err, err
    assert main(["predict", "--model", model_file, str(tmp_path / "in" / "a.png"), "--out", out, "--overwrite"]) == 0


def test_predict_into_its_input_folder_twice_reads_photos_only(tmp_path, capsys, model_file):
    photos = tmp_path / "photos"
    for name in ("a", "b"):
        write_image(str(photos / f"{name}.png"), seed=1)
    args = ["predict", "--model", model_file, str(photos), "--out", str(photos)]
    assert main(args) == 0
    assert main([*args, "--overwrite"]) == 0
    assert "wrote 2 mask(s) and overlay(s)" in capsys.readouterr().out
    assert sorted(os.listdir(photos)) == sorted([outputs.MARKER, "a.png", "b.png", "a_mask.png", "a_overlay.jpg",
                                                 "b_mask.png", "b_overlay.jpg"])


@pytest.mark.parametrize("path, folder, inside", [
    ("/d/run2", "/d/run", False), ("/d/run-eval/x", "/d/run", False), ("/d/run/x", "/d/run", True),
    ("/d/run", "/d/run", True), ("/d/run/", "/d/run", True), ("/d/ru", "/d/run", False),
    ("gs://b/run2/x", "gs://b/run", False), ("gs://b/run/x", "gs://b/run", True), ("gs://b/run", "gs://b/run/", True),
])
def test_siblings_sharing_a_name_prefix_are_not_inside_each_other(path, folder, inside):
    assert outputs.is_within(path, folder) is inside


def test_a_sibling_of_a_run_or_a_data_folder_sharing_its_prefix_is_not_refused(tmp_path, capsys, model_file):
    run = fake_run_folder(tmp_path / "run")
    data = tmp_path / "data"
    write_folder_source(str(data))
    # run2 beside run; masks2 beside data/masks; data2 beside data
    assert outputs.owning_run_folder(str(tmp_path / "run2")) is None
    assert main(["evaluate", "--model", model_file, "--data", f"folder:{data}", "--out", str(tmp_path / "run2")]) == 0
    assert main(["evaluate", "--model", model_file, "--data", f"folder:{data}",
                 "--out", str(data / "masks2")]) == 0
    assert main(["prepare", "--data", f"folder:{data}", "--out", str(tmp_path / "data2"), "--quiet"]) == 0
    assert main(["export", "--model", run, "--out", str(tmp_path / "run-serving")]) == 0


@pytest.mark.parametrize("verb", ["evaluate", "train", "prepare"])
def test_no_output_inside_a_folder_the_data_source_reads(tmp_path, capsys, model_file, verb):
    data = tmp_path / "data"
    write_folder_source(str(data))
    before = digest_tree(data)
    cases = [(data / "masks", data / "masks"), (data / "images" / "run", data / "images")]
    for inside, read in cases[1:] if verb == "train" else cases:  # (train refuses data/masks as not a run)
        args = {"evaluate": ["evaluate", "--model", model_file, "--data", f"folder:{data}"],
                "train": ["train", "--data", f"folder:{data}", "--image-size", "16", "--base-filters", "2",
                          "--depth", "1", "--epochs", "1"],
                "prepare": ["prepare", "--data", f"folder:{data}", "--quiet"]}[verb]
        code, err = cli_error(capsys, [*args, "--out", str(inside)])
        assert code == 2 and err.count("\n") == 1 and "tfseg writes no output into a data set" in err, err
        assert f"--out {inside}: is inside {read}," in err, err
    assert digest_tree(data) == before
