# SPDX-License-Identifier: GPL-3.0-or-later
"""The license is stated the way GNU Radio modules state it: COPYING holds the GPL v3 text
pyproject names, and every source file says which license it is under (SPDX)."""

from __future__ import annotations

import subprocess
import tomllib

from helpers import REPO_ROOT

CODE_SUFFIXES = {".py", ".sh", ".cmake", ".yml", ".js", ".mjs", ".ts", ".css", ".html"}
CODE_NAMES = {"CMakeLists.txt", "Makefile", "run"}


def source_files() -> list[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    return [name for name in tracked
            if not name.startswith(("tests/vectors/", "tests/data/", "docs/"))
            and ((REPO_ROOT / name).suffix in CODE_SUFFIXES or name.split("/")[-1] in CODE_NAMES
                 or (name.startswith("apps/") and "." not in name.split("/")[-1]))]


def test_copying_is_the_license_pyproject_names() -> None:
    license_text = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert license_text == {"text": "GPL-3.0-or-later"}
    copying = (REPO_ROOT / "COPYING").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in copying and "Version 3, 29 June 2007" in copying


def test_every_source_file_states_its_license() -> None:
    files = source_files()
    assert len(files) > 100
    missing = [name for name in files
               if "SPDX-License-Identifier: GPL-3.0-or-later" not in
               "".join((REPO_ROOT / name).read_text().splitlines(keepends=True)[:3])]
    assert missing == []
