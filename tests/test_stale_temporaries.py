"""What a killed command leaves (hidden temporaries, a truncated model) is cleaned up or named."""

import os

import keras
import pytest

from tfseg import cli, fileio

DEAD = 2**22 + 1  # above Linux's largest pid: no such process


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    inputs = keras.Input((16, 16, 3), name="images")
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    path = str(tmp_path_factory.mktemp("model") / "model.keras")
    model.save(path)
    return path


def plant(folder, name, is_dir=False):
    path = os.path.join(folder, name)
    os.makedirs(folder, exist_ok=True)
    if is_dir:
        os.makedirs(path)
    else:
        with open(path, "w") as f:
            f.write("half")
    return path


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    folder = str(tmp_path)
    dead = plant(folder, f".model.tmp-{DEAD}-abcdef.keras")
    untagged = plant(folder, ".tmp-x8k2j.png")
    dead_dir = plant(folder, f".tmp-{DEAD}-export-q", is_dir=True)
    live = plant(folder, f".model.tmp-{os.getppid()}-abcdef.keras")  # another process still writing
    mine = plant(folder, "model.tmp-1-x.keras")  # not hidden: a user's file
    removed = fileio.remove_stale_temporaries(folder)
    assert sorted(removed) == sorted([dead, untagged, dead_dir])
    assert os.path.exists(live) and os.path.exists(mine)


def test_export_predict_and_prepare_clean_what_a_killed_run_left(tmp_path, model_file):
    exports = str(tmp_path / "exports")
    staging = plant(exports, f".tmp-{DEAD}-export-abc", is_dir=True)
    tflite_temp = plant(exports, f".model.tmp-{DEAD}-abcdef.tflite")
    assert cli.main(["export", "--model", model_file, "--out", exports]) == 0
    assert cli.main(["export", "--model", model_file, "--out", exports, "--format", "tflite"]) == 0
    assert not os.path.exists(staging) and not os.path.exists(tflite_temp)

    image = tmp_path / "a.png"
    keras.utils.save_img(str(image), keras.ops.convert_to_numpy(keras.ops.ones((8, 8, 3))) * 100)
    out = str(tmp_path / "predictions")
    half_mask = plant(out, f".a_mask.tmp-{DEAD}-abcdef.png")
    assert cli.main(["predict", "--model", model_file, str(image), "--out", out]) == 0
    assert not os.path.exists(half_mask)

    shards = str(tmp_path / "shards")
    half_folder = plant(str(tmp_path), ".shards.tmp-0a1b2c3d", is_dir=True)
    neighbour = plant(str(tmp_path), f".other.tmp-{DEAD}-abcdef.txt")  # not this folder's: left alone
    assert cli.main(["prepare", "--data", "synthetic:4", "--out", shards, "--quiet"]) == 0
    assert not os.path.exists(half_folder) and os.path.exists(neighbour)


@pytest.mark.parametrize("verb", ["predict", "export", "evaluate"])
def test_a_truncated_keras_file_is_named_as_damaged(tmp_path, capsys, model_file, verb):
    broken = tmp_path / "model.keras"
    with open(model_file, "rb") as f:
        broken.write_bytes(f.read()[:2000])
    image = tmp_path / "a.png"
    keras.utils.save_img(str(image), keras.ops.convert_to_numpy(keras.ops.ones((8, 8, 3))) * 100)
    args = {"predict": ["predict", str(image), "--out", str(tmp_path / "out")],
            "export": ["export", "--out", str(tmp_path / "exports")],
            "evaluate": ["evaluate", "--data", "synthetic:8"]}[verb]
    code = cli.main([*args, "--model", str(broken)])
    err = capsys.readouterr().err
    assert code == 2 and str(broken) in err and "damaged" in err and "not found" not in err.lower(), err
