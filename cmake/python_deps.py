# SPDX-License-Identifier: GPL-3.0-or-later
"""Which of gr-argos's Python dependencies this interpreter lacks, or has in a version outside
the range pyproject.toml asks for.

    python3 cmake/python_deps.py pyproject.toml

Prints one line per dependency: ``ok NAME VERSION``, ``missing NAME SPEC`` or
``wrong NAME VERSION SPEC`` (SPEC is the requirement as pyproject.toml writes it, ready for
pip). Standard library only: it runs under the system Python at configure time.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata

_CLAUSE = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([0-9][0-9a-zA-Z.]*)\s*")


def version_tuple(text: str) -> tuple[int, ...]:
    """The leading numeric release of a version (``17.4`` -> (17, 4); ``0.16.0rc1`` ->
    (0, 16, 0))."""
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(piece):
            break
    return tuple(parts)


def satisfies(version: str, spec: str) -> bool:
    """Whether ``version`` meets every clause of ``spec`` (``>=14,<18``)."""
    have = version_tuple(version)
    for clause in filter(None, (part.strip() for part in spec.split(","))):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise ValueError(f"cannot read the version clause {clause!r}")
        op, wanted = match.group(1), version_tuple(match.group(2))
        width = max(len(have), len(wanted))
        left, right = have + (0,) * (width - len(have)), wanted + (0,) * (width - len(wanted))
        if not {">=": left >= right, "<=": left <= right, "==": left == right,
                "!=": left != right, ">": left > right, "<": left < right}[op]:
            return False
    return True


def check(requirements: list[str]) -> list[str]:
    lines = []
    for requirement in requirements:
        name, spec = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement).groups()  # type: ignore[union-attr]
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            lines.append(f"missing {name} {requirement.replace(' ', '')}")
            continue
        if spec and not satisfies(version, spec):
            lines.append(f"wrong {name} {version} {requirement.replace(' ', '')}")
        else:
            lines.append(f"ok {name} {version}")
    return lines


def main() -> None:
    with open(sys.argv[1], "rb") as pyproject:
        requirements = tomllib.load(pyproject)["project"]["dependencies"]
    print("\n".join(check(requirements)))


if __name__ == "__main__":
    main()
