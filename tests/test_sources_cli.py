"""Bad data through the CLI: exit code 2, every offending file named on stderr, no traceback, nothing written."""

import pytest

from sources_testdata import write_folder, write_ph2
from tfseg.cli import main


@pytest.fixture
def bad_folder(tmp_path):
    """A folder with three problems: a corrupt image, an image without a mask, a mask without an image."""
    root = tmp_path / "data"
    write_folder(root, count=8)
    (root / "images" / "s00.png").write_bytes(b"junk, not a PNG")
    (root / "masks" / "s03.png").unlink()
    (root / "images" / "s05.png").unlink()
    return root, [root / "images" / "s00.png", root / "images" / "s03.png", root / "masks" / "s05.png"]


@pytest.mark.parametrize("verb", ["inspect", "prepare", "train"])
def test_every_bad_file_is_named_and_the_exit_code_is_2(bad_folder, tmp_path, capsys, verb):
    root, bad = bad_folder
    extra = {"inspect": [], "prepare": ["--out", str(tmp_path / "out"), "--quiet"],
             "train": ["--out", str(tmp_path / "run"), "--epochs", "1"]}[verb]
    assert main([verb, "--data", f"folder:{root}", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfseg {verb}: error: data source 'folder:{root}': 3 problem(s)")
    assert "Traceback" not in err
    for path in bad:
        assert str(path) in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("verb", ["inspect", "train"])
def test_a_wrong_path_is_one_line(tmp_path, capsys, verb):
    assert main([verb, "--data", f"ph2:{tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere is not a folder" in err


def test_prepare_skip_bad_writes_the_good_samples_and_lists_the_rest(bad_folder, tmp_path, capsys):
    root, _ = bad_folder
    assert main(["prepare", "--data", f"folder:{root}", "--out", str(tmp_path / "out"), "--skip-bad",
                 "--quiet"]) == 0
    assert "wrote 5 samples, 3 skipped in 1 shard(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_train_skip_bad_trains_on_the_good_samples(tmp_path, capsys):
    write_ph2(tmp_path / "ph2", names=[f"IMD{i:03d}" for i in range(2, 12)])
    (tmp_path / "ph2" / "PH2Dataset" / "PH2 Dataset images" / "IMD004" / "IMD004_lesion" / "IMD004_lesion.bmp").unlink()
    code = main(["train", "--data", f"ph2:{tmp_path / 'ph2'}", "--skip-bad", "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--image-size", "32", "--batch-size", "2", "--base-filters", "4", "--depth", "2"])
    assert code == 0, capsys.readouterr().err
