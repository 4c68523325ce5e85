# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmarks of gr-argos against a JSON/websockets baseline and a raw-socket ceiling.

Not part of the test suite; see benchmarks/README.md for the command and docs/performance.md
for measured results.
"""
