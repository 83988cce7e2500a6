"""Packaging: the distribution name every install line uses, the notebooks' install cell, and a
non-editable install (a wheel) used from another folder."""

import configparser
import io
import json
import re
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
