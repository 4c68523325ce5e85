"""Shared pytest helpers for gr-argos. Keep this small; add fixtures below as needed."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The repository root (the directory holding pyproject.toml).
REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: takes seconds (builds, installs or runs real flowgraphs)"
    )


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root as a Path."""
    return REPO_ROOT
