"""The README starts with the two set-up commands, and every relative link in the docs resolves."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_starts_with_exactly_two_setup_commands():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    first = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(first) == 2
    assert first[0].endswith("tfseg train") and "pip install" in first[0]
    assert ".venv/bin/pytest" in first[1] and '".[test]"' in first[1]
    # the test command is CI's (.ci/run), options included
    options = first[1].split(".venv/bin/pytest", 1)[1].strip()
    assert f"pytest {options} " in open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert len(text.splitlines()) <= 300


def test_every_relative_link_points_to_a_file():
    files = ["README.md", "BENCHMARKS.md", *glob.glob(os.path.join("docs", "*.md"), root_dir=ROOT),
             *glob.glob(os.path.join("datasets", "**", "*.md"), root_dir=ROOT, recursive=True)]
    missing = []
    for name in files:
        folder = os.path.dirname(os.path.join(ROOT, name))
        for target in re.findall(r"\]\(([^)\s]+)\)", open(os.path.join(ROOT, name), encoding="utf-8").read()):
            if re.match(r"^(https?:|mailto:|#)", target):
                continue
            if not os.path.exists(os.path.normpath(os.path.join(folder, target.split("#")[0]))):
                missing.append((name, target))
    assert missing == []
