"""Command-line programs of gr-argos (console scripts declared in pyproject.toml)."""
