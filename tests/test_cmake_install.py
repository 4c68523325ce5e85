"""The GNU Radio out-of-tree CMake install works and installs an importable gr_argos.

Configures, builds and installs the repository into a temporary prefix with a temporary
build directory (never the repo's build/), then imports the installed package from a
subprocess whose cwd is outside the repository, so the repo's own copy cannot be the one
imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed (make setup installs it)"),
]

GRC_BLOCKS_DIR = Path("share/gnuradio/grc/blocks")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, **kw)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    return proc


def _package_files(root: Path) -> set[str]:
    """Relative paths of the files CMake must install from a gr_argos tree (no caches)."""
    out = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if (
            p.is_dir()
            or "__pycache__" in rel.parts
            or any(part.startswith(".") for part in rel.parts)
            or p.suffix in {".pyc", ".pyo"}
            or p.name.endswith("~")
        ):
            continue
        out.add(rel.as_posix())
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory, repo_root: Path) -> dict:
    work = tmp_path_factory.mktemp("cmake_install")
    build, prefix = work / "build", work / "prefix"
    _run(["cmake", "-S", str(repo_root), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}"])
    _run(["cmake", "--build", str(build)])
    _run(["cmake", "--install", str(build)])

    # lib/python3.X/site-packages for a non-system prefix (dist-packages for /usr/local)
    inits = sorted(p for p in prefix.rglob("gr_argos/__init__.py") if p.parent.parent.name.endswith("-packages"))
    assert len(inits) == 1, f"expected one installed gr_argos package under {prefix}, found {inits}"
    pkg_dir = inits[0].parent
    return {"prefix": prefix, "pkg_dir": pkg_dir, "python_dir": pkg_dir.parent, "outside": work}


def test_build_left_repo_clean(installed, repo_root: Path):
    # The build happened in a temporary dir: no byte-compiled output in the source tree.
    assert not list((repo_root / "gr_argos").rglob("*.pyo"))
    assert not list((repo_root / "gr_argos").glob("*.pyc"))


def test_every_package_file_installed(installed, repo_root: Path):
    want = _package_files(repo_root / "gr_argos")
    have = _package_files(installed["pkg_dir"])
    assert want, "no files found in gr_argos/"
    assert want - have == set(), f"not installed: {sorted(want - have)}"
    # GR_PYTHON_INSTALL byte-compiles every module.
    for rel in want:
        if rel.endswith(".py"):
            assert (installed["pkg_dir"] / (rel + "c")).is_file(), f"{rel} was not byte-compiled"


def test_installed_package_imports_from_prefix(installed):
    code = r"""
import json, sys
import gr_argos
import gr_argos.protocol
from gr_argos import websocket_sink
import importlib
ws_mod = importlib.import_module("gr_argos.websocket_sink")
print("ARGOS_JSON=" + json.dumps({
    "gr_argos": gr_argos.__file__,
    "protocol": gr_argos.protocol.__file__,
    "websocket_sink_module": ws_mod.__file__,
    "websocket_sink_is_class": isinstance(websocket_sink, type),
    "websocket_sink_repr": repr(websocket_sink),
}))
"""
    env = dict(os.environ)
    for var in ("PYTHONHOME", "PYTHONSAFEPATH", "PYTHONSTARTUP"):
        env.pop(var, None)
    env["PYTHONPATH"] = str(installed["python_dir"])
    env["PYTHONNOUSERSITE"] = "1"
    proc = _run([sys.executable, "-c", code], cwd=installed["outside"], env=env)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("ARGOS_JSON=")]
    assert line, f"no result from the import subprocess:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(line[-1].split("=", 1)[1])

    prefix = installed["prefix"].resolve()
    for key in ("gr_argos", "protocol", "websocket_sink_module"):
        path = Path(result[key]).resolve()
        assert path.is_relative_to(prefix), f"{key} imported from {path}, not from the install prefix {prefix}"
    # GRC's generated code does `from gr_argos import websocket_sink` and calls it: that name must
    # be the block class, not the gr_argos.websocket_sink module.
    assert result["websocket_sink_is_class"], (
        f"`from gr_argos import websocket_sink` gave {result['websocket_sink_repr']}, not the block class"
    )


def test_grc_block_files_installed(installed, repo_root: Path):
    blocks_dir = installed["prefix"] / GRC_BLOCKS_DIR
    for yml in sorted((repo_root / "grc").glob("*.block.yml")):
        target = blocks_dir / yml.name
        assert target.is_file(), f"{yml.name} not installed in {blocks_dir}"
        assert target.read_bytes() == yml.read_bytes()


def test_app_launchers_installed(installed, repo_root: Path):
    apps = repo_root / "apps"
    for app in sorted(apps.iterdir()) if apps.is_dir() else []:
        if not app.is_file() or app.name.startswith(".") or app.suffix in {".md", ".txt", ".rst"}:
            continue
        target = installed["prefix"] / "bin" / app.name
        assert target.is_file(), f"apps/{app.name} not installed to {target.parent}"
        assert os.access(target, os.X_OK), f"{target} is not executable"
