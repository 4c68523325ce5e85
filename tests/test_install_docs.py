# SPDX-License-Identifier: GPL-3.0-or-later
"""The Debian packages scripts/setup.sh installs are the ones README.md and docs/install.md
list, for running and for the tests."""

from __future__ import annotations

import re

from helpers import REPO_ROOT


def setup_packages(array: str) -> list[str]:
    """The packages of a bash array of scripts/setup.sh (comments left out)."""
    text = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    body = re.search(rf"^{array}=\((.*?)^\)", text, re.MULTILINE | re.DOTALL)
    assert body is not None, array
    return [word for line in body.group(1).splitlines()
            for word in line.split("#", 1)[0].split()]


def listed_after(path: str, words: str) -> list[str]:
    """The packages in the backticks that follow ``words`` in a document."""
    text = " ".join((REPO_ROOT / path).read_text().split())
    found = re.search(re.escape(words) + r"[^`]*`([^`]+)`", text)
    assert found is not None, (path, words)
    return found.group(1).split()


def test_readme_and_install_doc_list_what_setup_installs() -> None:
    """Both documents name the same packages as setup.sh, in its order: for running and
    for the tests (prometheus, for promtool, among them)."""
    run, tests = setup_packages("RUN_PACKAGES"), setup_packages("TEST_PACKAGES")
    assert "prometheus" in tests
    assert listed_after("README.md", "For `make run` it installs what running needs,") == run
    assert listed_after("README.md", "`make test` adds the tools the tests run,") == tests
    assert listed_after("docs/install.md", "for running,") == run
    assert listed_after("docs/install.md", "with `--test` also") == tests
