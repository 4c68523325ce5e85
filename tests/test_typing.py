# SPDX-License-Identifier: GPL-3.0-or-later
"""The package type-checks: mypy --strict on gr_argos/, with the settings in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy comes with the test extras: pip install -e '.[test]'")


@pytest.mark.slow
def test_the_package_is_clean_under_mypy_strict(repo_root: Path) -> None:
    """mypy reports no error on gr_argos/ (strict; GNU Radio's bindings are untyped)."""
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=repo_root,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
