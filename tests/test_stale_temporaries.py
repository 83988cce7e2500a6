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
    here = fileio.host_id()
    dead = plant(folder, f".model.tmp-{DEAD}@{here}-abcdef.keras")
    dead_without_host = plant(folder, f".model.tmp-{DEAD}-abcdef.keras")  # a local disk: this machine's
    dead_dir = plant(folder, f".tmp-{DEAD}-export-q", is_dir=True)
    untagged = plant(folder, ".tmp-x8k2j.png")  # no writer recorded: it may still be written
    live = plant(folder, f".model.tmp-{os.getppid()}@{here}-abcdef.keras")  # another process still writing
    other_host = "0" * 8 if here != "0" * 8 else "1" * 8
    elsewhere = plant(folder, f".model.tmp-{DEAD}@{other_host}-abcdef.keras")  # another machine: cannot tell
    mine = plant(folder, "model.tmp-1-x.keras")  # not hidden: a user's file
    removed = fileio.remove_stale_temporaries(folder)
    assert sorted(removed) == sorted([dead, dead_without_host, dead_dir])
    assert all(os.path.exists(path) for path in (live, untagged, elsewhere, mine))


def test_a_temporary_name_records_this_process_and_host():
    name = os.path.basename(fileio.temp_path("/x/model.keras"))
    assert fileio.temp_writer(name) == (os.getpid(), fileio.host_id())
    assert fileio.is_temporary_of(name, "model.keras") and not fileio.is_temporary_of(name, "model")


@pytest.mark.parametrize("target, sibling", [("shk", "shk.v2"), ("shk", "shk-old"), ("shk.v2", "shk"),
                                             ("1", "10"), ("model.keras", "model.keras.bak")])
def test_siblings_sharing_a_name_prefix_do_not_share_temporaries(tmp_path, target, sibling):
    # A staging folder of "shk" is cleaned by a replacement of "shk", never by one of "shk.v2" (and back).
    stale = plant(str(tmp_path), fileio.basename(fileio.temp_path(str(tmp_path / sibling), f"{DEAD}-abcdef")))
    assert fileio.is_temporary_of(os.path.basename(stale), sibling)
    assert not fileio.is_temporary_of(os.path.basename(stale), target)
    assert fileio.remove_stale_temporaries(str(tmp_path), of=target) == []
    assert fileio.remove_stale_temporaries(str(tmp_path), of=sibling) == [stale]


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
    half_folder = plant(str(tmp_path), f".shards.tmp-{DEAD}-0a1b2c", is_dir=True)
    neighbour = plant(str(tmp_path), f".other.tmp-{DEAD}-abcdef.txt")  # not this folder's: left alone
    sibling = plant(str(tmp_path), f".shards.tmp-{DEAD}-0a1b2c.v2", is_dir=True)  # the staging of shards.v2
    assert cli.main(["prepare", "--data", "synthetic:4", "--out", shards, "--quiet"]) == 0
    assert not os.path.exists(half_folder) and os.path.exists(neighbour) and os.path.exists(sibling)


def test_prepare_into_a_bare_relative_name_cleans_its_staging_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    half_folder = plant(str(tmp_path), f".shk.tmp-{DEAD}-0a1b2c", is_dir=True)
    assert cli.main(["prepare", "--data", "synthetic:4", "--out", "shk", "--quiet"]) == 0
    assert not os.path.exists(half_folder)
    assert sorted(os.listdir(tmp_path)) == ["shk"]


def test_a_running_writers_staging_folder_is_never_removed(tmp_path):
    # Another process (this test's parent) is still writing shards: its staging folder stays.
    live = plant(str(tmp_path), f".shk.tmp-{os.getppid()}@{fileio.host_id()}-0a1b2c", is_dir=True)
    with fileio.replacing_folder(str(tmp_path / "shk"), "manifest.json") as staging:
        fileio.write_text_atomic(os.path.join(staging, "manifest.json"), "{}")
    assert os.path.isdir(live) and os.listdir(tmp_path / "shk") == ["manifest.json"]


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
