"""The ``tfseg`` command: help for every verb, and user mistakes as one line with exit code 2."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest

from tfseg import cli
from tfseg.config import TrainConfig, flag_name
from tfseg.commands import train as train_command

from conftest import write_folder_dataset


def run_cli(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``tfseg argv`` run in this process."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exit:  # argparse: --help and usage errors
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_tfseg_help_lists_every_verb():
    result = subprocess.run([sys.executable, "-m", "tfseg", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for verb in cli.VERBS:
        assert verb in result.stdout


# Prints which heavy modules a `tfseg ARGV` process had imported when it exited (help or argument error).
IMPORTED_AT_EXIT = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: print('IMPORTED', sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules),"
    " file=sys.stderr))\n"
    "sys.argv = ['tfseg', *sys.argv[1:]]\n"
    "runpy.run_module('tfseg', run_name='__main__', alter_sys=True)\n"
)


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0), (["train", "--help"], 0), (["--version"], 0),
    (["train", "--epochs", "many"], 2), (["no-such-verb"], 2), (["predict"], 2),
])
def test_help_and_argument_errors_answer_before_tensorflow_loads(argv, code):
    result = subprocess.run([sys.executable, "-c", IMPORTED_AT_EXIT, *argv], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == code, result.stderr
    assert "IMPORTED []" in result.stderr, result.stderr


def test_python_dash_m_tfseg_help_imports_no_tensorflow():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "tfseg", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "train" in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]
    assert "tfseg.cli" in imported
    assert not [name for name in imported if name.split(".")[0] in ("tensorflow", "keras")], imported


def test_import_tfseg_outside_the_command_still_registers_keras_objects():
    code = "import tfseg, keras; print(keras.saving.get_registered_object('tfseg>DiceLoss') is not None)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["True"], result.stderr


@pytest.mark.parametrize("verb", cli.VERBS)
def test_every_verb_has_help(capsys, verb):
    code, out, _ = run_cli(capsys, verb, "--help")
    assert code == 0 and f"tfseg {verb}" in out


def test_train_has_a_flag_for_every_config_field(capsys):
    _, out, _ = run_cli(capsys, "train", "--help")
    for option in dataclasses.fields(TrainConfig):
        # (channels and input_dtype are read from the data, not flags: config.json stores them)
        assert (flag_name(option.name) in out) == option.metadata["cli"], option.name
    for flag in ("--no-augment", "--force-new", "--out"):
        assert flag in out


def test_train_flags_build_the_config_they_name():
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--image-size", "64", "--no-augment", "--learning-rate", "0.01",
                              "--steps-per-epoch", "5", "--encoder", "mobilenetv2"])
    config = train_command.config_from_args(args)
    assert config == TrainConfig(image_size=64, augment=False, learning_rate=0.01, steps_per_epoch=5,
                                 encoder="mobilenetv2")
    assert train_command.config_from_args(parser.parse_args(["train"])) == TrainConfig()


def test_unknown_model(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--model", "nope", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "--model 'nope'", "unet")
    assert not os.path.exists(tmp_path / "run")


def test_bad_precision(capsys):
    code, _, err = run_cli(capsys, "train", "--precision", "fast")
    assert_one_line_error(code, err, "--precision 'fast'", "mixed_float16")


def test_unknown_data_kind(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--data", "nope:x", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "nope:x")
    assert not os.path.exists(tmp_path / "run")


def test_missing_folder(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--data", "folder:/does/not/exist", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "/does/not/exist")
    assert not os.path.exists(tmp_path / "run")


def test_image_size_not_a_multiple_of_two_to_the_depth(capsys, folder_data, tmp_path):
    code, _, err = run_cli(capsys, "train", "--data", folder_data, "--image-size", "34", "--depth", "2",
                           "--base-filters", "4", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "--image-size 34")
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("argv, fragment", [
    (["--epochs", "0"], "--epochs 0"),
    (["--val-fraction", "0.6", "--test-fraction", "0.5"], "--val-fraction"),
    (["--learning-rate", "-1"], "--learning-rate -1"),
    (["--strategy", "gpu"], "--strategy 'gpu'"),
])
def test_impossible_values(capsys, tmp_path, argv, fragment):
    code, _, err = run_cli(capsys, "train", *argv, "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, fragment)


def test_out_that_is_not_a_run_folder(capsys, tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path))
    assert_one_line_error(code, err, "not a tfseg run folder")
    assert os.listdir(tmp_path) == ["thesis.tex"]


def test_evaluate_missing_model(capsys):
    code, _, err = run_cli(capsys, "evaluate", "--model", "/does/not/exist.keras", "--data", "synthetic:10")
    assert_one_line_error(code, err, "/does/not/exist.keras")


# TensorFlow 2.21's C++ start-up lines ("I0000 ... port.cc] oneDNN ...") ignore TF_CPP_MIN_LOG_LEVEL.
TF_NATIVE_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl::InitializeLog)")


def test_bad_value_in_a_real_process_is_one_line_without_traceback(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-m", "tfseg", "train", "--data", "nope:x", "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=120, env=env)
    ours = "\n".join(line for line in result.stderr.splitlines() if not TF_NATIVE_LOG.match(line))
    assert_one_line_error(result.returncode, ours, "nope:x")
    assert not os.path.exists(tmp_path / "r")


def test_library_parameter_names_become_the_verbs_flags():
    import argparse

    from tfseg.cli import as_flags

    args = argparse.Namespace(image_size=7, data="folder:skin", upsampling="nearest", augment=True)
    assert as_flags("image_size 7: unet needs a multiple of 16", args) == "--image-size 7: unet needs a multiple of 16"
    assert as_flags("upsampling 'nearest': choose one of", args) == "--upsampling 'nearest': choose one of"
    assert as_flags("data folder:skin: the val split is empty", args).startswith("--data folder:skin:")
    # not a parameter followed by its value: left as it is
    assert as_flags("data source 'folder:skin': 2 problem(s)", args) == "data source 'folder:skin': 2 problem(s)"
    assert as_flags("depth 3: must be", args) == "depth 3: must be"  # not an argument of this verb
