"""Packaging: the distribution name every install line uses, the notebooks' install cell, and a
non-editable install (a wheel) used from another folder."""

import configparser
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def distribution_name() -> str:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    return setup["metadata"]["name"]


def text_files():
    """Every file a user reads an install line in: docs, messages in the code, notebooks, CI."""
    patterns = ("*.md", "docs/**/*.md", "benchmarks/**/*.md", "benchmarks/**/*.py", "tfseg/**/*.py",
                "tfseg/**/*.md", "notebooks/*.py", "notebooks/*.ipynb", "tests/*.py", ".ci/*")
    for pattern in patterns:
        yield from (p for p in ROOT.glob(pattern) if p.is_file())


# `pip install ... tfseg[extra]` / `"tfseg @ git+..."`: the bare import name used as a requirement.
SHELL_END = re.compile(r"&&|;|\||`|#")
BARE_REQUIREMENT = re.compile(r"""^['"]?tfseg(\[[^\]]*\])?(['"]|$)""")
QUOTED_REQUIREMENT = re.compile(r"""['"]tfseg(\[[^\]]*\])?\s*@""")


def wrong_install_lines(text: str):
    wrong = []
    for line in text.splitlines():
        if QUOTED_REQUIREMENT.search(line):
            wrong.append(line.strip())
            continue
        for _, _, rest in [line.partition("pip install")] if "pip install" in line else []:
            arguments = SHELL_END.split(rest)[0].split()
            if any(BARE_REQUIREMENT.match(argument) for argument in arguments):
                wrong.append(line.strip())
    return wrong


def test_the_wrong_install_lines_are_recognised():
    assert wrong_install_lines("pip install 'tfseg[onnx]'   # tf2onnx")
    assert wrong_install_lines('%pip install -q "tfseg @ git+https://example.org/x"')
    assert wrong_install_lines('["-m", "pip", "install", "-q", "tfseg @ git+https://example.org/x"]')
    assert wrong_install_lines("needs onnxruntime: pip install tfseg")
    assert not wrong_install_lines(".venv/bin/pip install -e . && .venv/bin/tfseg train")
    assert not wrong_install_lines("pip install 'tfseg-keras[onnx]' && tfseg export")


def test_every_install_line_names_the_distribution_not_the_import_package():
    name = distribution_name()
    assert name != "tfseg"  # `tfseg` on the package index is an unrelated project
    wrong = {str(path.relative_to(ROOT)): lines for path in text_files()
             if path.name != "test_packaging.py"
             for lines in [wrong_install_lines(path.read_text(errors="replace"))] if lines}
    assert not wrong, f"install lines naming 'tfseg' instead of {name!r}: {wrong}"
    onnx_hint = (ROOT / "tfseg" / "export.py").read_text()
    assert f"pip install '{name}[onnx]'" in onnx_hint


def install_cell(name="01_quickstart") -> str:
    notebook = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    return "".join(notebook["cells"][1]["source"])


@pytest.mark.parametrize("name", ["01_quickstart", "02_ph2_unet_vs_segnet", "03_body_segmentation_mads"])
def test_notebooks_install_the_distribution_from_the_one_repository_url(name):
    build = (ROOT / "notebooks" / "_build.py").read_text()
    urls = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", build + install_cell(name)))
    assert len(re.findall(r'^REPOSITORY = "', build, flags=re.M)) == 1
    assert len(urls) == 1  # one repository, named once in the generator
    assert f'"{distribution_name()} @ git+{urls.pop()}"' in install_cell(name)


def test_notebook_install_cell_finds_the_checkout_it_runs_in(tmp_path):
    namespace = {}
    with redirect_stdout(io.StringIO()) as printed:
        exec(install_cell(), namespace)  # tfseg imports here: the cell installs nothing
    assert printed.getvalue().startswith("tfseg ")
    find = namespace["tfseg_checkout"]
    assert find(str(ROOT / "notebooks")) == str(ROOT)  # Jupyter starts in notebooks/
    assert find(str(ROOT)) == str(ROOT)
    assert find(str(tmp_path)) is None  # e.g. Colab's /content: install from the repository


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_finds_tfds_ph2_trains_evaluates_and_predicts(tmp_path):
    # Build from a copy of the sources, so no build/ or *.egg-info is left in the checkout.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "tfseg", source / "tfseg", ignore=shutil.ignore_patterns("__pycache__"))
    # The installed setuptools when it meets pyproject.toml's ">=64" (no download); else pip's isolated one.
    setuptools = importlib.util.find_spec("setuptools") and int(importlib.metadata.version("setuptools")
                                                                .split(".")[0]) >= 64
    isolation = ["--no-build-isolation"] if setuptools else []
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, str(source), "-w", str(tmp_path)])
    wheel, = tmp_path.glob("*.whl")
    assert wheel.name.startswith(distribution_name().replace("-", "_") + "-")
    # Installed without dependencies (those of this environment are reused) into a folder of its own.
    site = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)])
    manual = tmp_path / "PH2"  # a manual_dir made from the builder's dummy data, as shipped in the wheel
    shutil.copytree(site / "tfseg" / "tfds_builders" / "ph2" / "dummy_data", manual)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "TFDS_DATA_DIR": str(tmp_path / "tfds"),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    tfseg = [str(site / "bin" / "tfseg")]

    where = run([sys.executable, "-c", "import tfseg; print(tfseg.__file__)"], cwd=elsewhere, env=env)
    assert where.stdout.strip() == str(site / "tfseg" / "__init__.py")  # the wheel's, not the checkout's
    assert "train" in run(tfseg + ["--help"], cwd=elsewhere, env=env).stdout
    report = json.loads(run(tfseg + ["inspect", "--json", "--data", f"tfds:ph2?manual_dir={manual}"],
                            cwd=elsewhere, env=env).stdout)
    assert report["num_samples"] == 3
    run(tfseg + ["train", "--data", "tfds:ph2", "--epochs", "1", "--image-size", "32", "--batch-size", "1",
                 "--base-filters", "4", "--depth", "2", "--out", "run", "--verbose", "0"], cwd=elsewhere, env=env)
    metrics = json.loads((elsewhere / "run" / "metrics.json").read_text())
    assert metrics["test"]["num_images"] == 1 and (elsewhere / "run" / "saved_model" / "1").is_dir()
    assert "test: dice" in run(tfseg + ["evaluate", "--model", "run"], cwd=elsewhere, env=env).stdout
    image, = manual.glob("*/*/IMD002/IMD002_Dermoscopic_Image/IMD002.bmp")
    run(tfseg + ["predict", "--model", "run", str(image), "--out", "masks"], cwd=elsewhere, env=env)
    assert (elsewhere / "masks" / "IMD002_mask.png").is_file()
