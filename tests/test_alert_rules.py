# SPDX-License-Identifier: GPL-3.0-or-later
"""alerts/argos.rules.yml with Prometheus' own promtool: the rules are valid, and its unit
tests (alerts/argos.rules.test.yml) show each alert firing on synthetic series, and not
firing where it must not. That the rules use only metrics a real server or gateway exposes
is tested in tests/server/test_metrics.py."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from helpers import REPO_ROOT

ALERTS = REPO_ROOT / "alerts"
PROMTOOL = shutil.which("promtool")
WAIT_S = 120.0  # a hang guard

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian's "
                                "prometheus package: bash scripts/setup.sh --test)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=ALERTS, capture_output=True, text=True,
                          timeout=WAIT_S, check=False)


def test_the_rules_file_is_valid() -> None:
    """promtool check rules accepts every rule of the file."""
    result = promtool("check", "rules", "argos.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_each_alert_fires_on_its_synthetic_series() -> None:
    """promtool test rules passes every case, and the cases cover every alert."""
    result = promtool("test", "rules", "argos.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    rules = (ALERTS / "argos.rules.yml").read_text()
    cases = (ALERTS / "argos.rules.test.yml").read_text()
    alerts = {line.split(":", 1)[1].strip() for line in rules.splitlines()
              if line.strip().startswith("- alert:")}
    tested = {line.split(":", 1)[1].strip() for line in cases.splitlines()
              if line.strip().startswith("alertname:")}
    assert len(alerts) == 8 and alerts == tested
