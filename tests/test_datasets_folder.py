"""The top-level datasets/ folder: one page per data set, nothing importable, not in the wheel."""

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "datasets"


def test_every_data_set_has_a_page_with_the_facts_a_user_needs():
    pages = sorted(p.parent.name for p in DATASETS.glob("*/README.md"))
    assert pages == ["folder", "mads", "oxford_iiit_pet", "ph2", "synthetic", "synthetic-large", "tfrecord"]
    index = (DATASETS / "README.md").read_text(encoding="utf-8")
    for name in pages:
        assert f"({name}/README.md)" in index, name
        text = (DATASETS / name / "README.md").read_text(encoding="utf-8").lower()
        for fact in ("source", "licence"):
            assert fact in text, (name, fact)
    for name in ("ph2", "mads", "oxford_iiit_pet", "synthetic", "synthetic-large", "tfrecord"):
        assert "checksums" in (DATASETS / name / "README.md").read_text(encoding="utf-8"), name
    assert "(datasets/README.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_folder_holds_no_python_and_no_package_marker():
    assert not list(DATASETS.rglob("*.py")), "datasets/ holds descriptions only"
    assert not (DATASETS / "__init__.py").exists()


def test_the_wheel_does_not_ship_datasets():
    from setuptools import find_namespace_packages, find_packages

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    find = find_namespace_packages if setup["options"]["packages"].strip() == "find_namespace:" else find_packages
    include = [p.strip() for p in setup["options.packages.find"]["include"].replace(",", " ").split()]
    packages = find(str(ROOT), include=include)
    assert "tfseg.tfds_builders.ph2" in packages and "tfseg.data.kinds" in packages
    assert not [p for p in packages if p.split(".")[0] == "datasets"]


def test_datasets_folder_never_shadows_an_installed_datasets_package(tmp_path):
    # A regular package named `datasets` (e.g. Hugging Face's) later on sys.path still wins over
    # the repository root first on sys.path, as when running from a checkout.
    other = tmp_path / "site" / "datasets"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("WHO = 'installed'\n")
    code = "import datasets; print(datasets.WHO)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path / "site")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "installed"


@pytest.mark.parametrize("name", ["ph2", "mads"])
def test_the_pages_point_to_the_builders_sources(name):
    page = (DATASETS / name / "README.md").read_text(encoding="utf-8")
    assert f"../../tfseg/tfds_builders/{name}/" in page
