# SPDX-License-Identifier: GPL-3.0-or-later
"""Command-line programs of gr-argos (console scripts declared in pyproject.toml)."""
