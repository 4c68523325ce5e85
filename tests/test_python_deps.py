# SPDX-License-Identifier: GPL-3.0-or-later
"""cmake/python_deps.py, configure's check of what the system Python lacks, decides what the
CMake install bundles into gr_argos/_deps: a Debian release's own package must be used when it
is in range and replaced when it is not (Debian 12's 10.4, Debian 13's 15.0.1: both older than
the server needs)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "cmake" / "python_deps.py"
WEBSOCKETS_RANGE = ">=17,<18"  # pyproject.toml's


@pytest.fixture(scope="module")
def python_deps() -> ModuleType:
    spec = importlib.util.spec_from_file_location("python_deps", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("version", "meets"), [
    ("10.4", False),     # Debian 12's python3-websockets: bundled
    ("15.0.1", False),   # Debian 13's python3-websockets: bundled too
    ("16.1.1", False),
    ("17.0", True),
    ("17.4", True),
    ("18.0", False),     # newer than the server was written for: bundled
    ("18.0rc1", False),
])
def test_websockets_releases_against_pyproject_range(python_deps: ModuleType, version: str,
                                                     meets: bool) -> None:
    """Each websockets release a Debian system may have is judged by pyproject's range."""
    assert python_deps.satisfies(version, WEBSOCKETS_RANGE) is meets


def test_pyproject_asks_for_the_range_tested_here(repo_root: Path) -> None:
    """The range above is pyproject.toml's, so the cases test what configure will decide."""
    assert f'"websockets{WEBSOCKETS_RANGE}"' in (repo_root / "pyproject.toml").read_text()


def test_debian_package_versions_are_read(python_deps: ModuleType) -> None:
    """Versions as Debian's packages report them (prometheus-client 0.21.1 on Debian 13,
    0.16.0 on Debian 12) meet ``>=0.16``; a local suffix does not confuse the check."""
    assert python_deps.satisfies("0.21.1", ">=0.16")
    assert python_deps.satisfies("0.16.0", ">=0.16")
    assert python_deps.satisfies("6.0.2+ds1", ">=6")
    assert not python_deps.satisfies("0.15.9", ">=0.16")


def test_check_reports_ok_wrong_and_missing(python_deps: ModuleType) -> None:
    """With what this interpreter really has: an installed package in range is ``ok`` (not
    bundled), one out of range is ``wrong`` and an absent one ``missing``, each with the
    requirement for pip."""
    have = metadata.version("websockets")
    newer = f"{int(have.split('.')[0]) + 1}"
    assert python_deps.check([f"websockets>={have}", f"websockets >= {newer}",
                              "gr-argos-no-such-package>=1"]) == [
        f"ok websockets {have}",
        f"wrong websockets {have} websockets>={newer}",
        "missing gr-argos-no-such-package gr-argos-no-such-package>=1",
    ]


def test_script_reads_pyproject(repo_root: Path) -> None:
    """As configure runs it: one line per pyproject dependency, websockets first."""
    lines = subprocess.run([sys.executable, str(SCRIPT), str(repo_root / "pyproject.toml")],
                           capture_output=True, text=True, check=True,
                           timeout=60).stdout.splitlines()
    assert [line.split()[1] for line in lines] == [
        "websockets", "PyYAML", "pyzmq", "prometheus-client"]
    assert lines[0] == f"ok websockets {metadata.version('websockets')}"
