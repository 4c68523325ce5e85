# SPDX-License-Identifier: GPL-3.0-or-later
"""The GNU Radio out-of-tree CMake install works and installs an importable gr_argos.

Configures, builds and installs the repository into a temporary prefix with a temporary
build directory (never the repo's build/), then imports the installed package from a
subprocess whose cwd is outside the repository, so the repo's own copy cannot be the one
imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
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
    # Every module is byte-compiled where Python reads it (__pycache__), for the system Python
    # (the one the tests' venv is made from), whatever GNU Radio's GR_PYTHON_INSTALL does.
    for rel in want:
        if rel.endswith(".py"):
            compiled = Path(importlib.util.cache_from_source(str(installed["pkg_dir"] / rel)))
            assert compiled.is_file(), f"{rel} was not byte-compiled to {compiled}"


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


SYSTEM_PYTHON = Path("/usr/bin/python3")


def _system_env(python_dir: Path) -> dict[str, str]:
    """The environment of a user's shell: the prefix's Python directory on PYTHONPATH, no
    venv (neither its interpreter nor its packages), no user site-packages."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p != venv_bin)
    env["PYTHONPATH"] = str(python_dir)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _system_lacks(repo_root: Path) -> set[str]:
    """The pyproject dependencies the system Python lacks or has too old (configure's check)."""
    report = _run([str(SYSTEM_PYTHON), str(repo_root / "cmake" / "python_deps.py"),
                   str(repo_root / "pyproject.toml")]).stdout
    return {line.split()[1] for line in report.splitlines() if not line.startswith("ok ")}


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3")
def test_dependencies_the_system_python_lacks_are_installed_privately(installed, repo_root: Path):
    """What the system Python lacks (Debian 12 and 13: websockets >= 17, prometheus-client) is in
    gr_argos/_deps, and the system Python, given only the prefix, imports it from there."""
    lacks = _system_lacks(repo_root)
    deps = installed["pkg_dir"] / "_deps"
    bundled = {p.name.split("-")[0].lower().replace("_", "-") for p in deps.glob("*.dist-info")}
    assert bundled == {name.lower() for name in lacks}
    code = ("import json, gr_argos, websockets, prometheus_client, yaml, zmq; "
            "print(json.dumps([websockets.__file__, websockets.__version__]))")
    proc = _run([str(SYSTEM_PYTHON), "-c", code], cwd=installed["outside"],
                env=_system_env(installed["python_dir"]))
    where, version = json.loads(proc.stdout.splitlines()[-1])
    if "websockets" in lacks:
        assert Path(where).is_relative_to(deps.resolve()), where
    assert int(version.split(".")[0]) >= 17


def _grc_env(installed: dict, home: Path) -> dict[str, str]:
    """A user's environment for GNU Radio Companion with the prefix's blocks and package."""
    return {**_system_env(installed["python_dir"]), "HOME": str(home),
            "GRC_BLOCKS_PATH": str(installed["prefix"] / GRC_BLOCKS_DIR)}


def _grc_command(repo_root: Path, tool: str, *args: str) -> list[str]:
    """tests/tools/TOOL run by the system Python (GRC's) under Xvfb; screenshots go to
    test-artifacts/grc/."""
    artifacts = Path(os.environ.get("ARGOS_TEST_ARTIFACTS", repo_root / "test-artifacts")) / "grc"
    return ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", str(SYSTEM_PYTHON),
            str(repo_root / "tests" / "tools" / tool), str(artifacts), *args]


@pytest.mark.skipif(not SYSTEM_PYTHON.exists() or shutil.which("grcc") is None,
                    reason="needs /usr/bin/python3 and grcc")
def test_an_installed_example_runs_with_the_system_python(installed, repo_root: Path):
    """The installed sim_spectrum.grc, compiled by grcc with the installed block definitions
    and run by the system Python with only the prefix on its path (no venv), serves frames
    that a client receives."""
    from helpers import receive, running

    prefix = installed["prefix"]
    out = installed["outside"] / "grcc"
    out.mkdir(exist_ok=True)
    env = {**_system_env(installed["python_dir"]),
           "GRC_BLOCKS_PATH": str(prefix / GRC_BLOCKS_DIR)}
    _run([shutil.which("grcc"), "-o", str(out),
          str(prefix / "share/gr-argos/examples/sim_spectrum.grc")], env=env)
    command = [str(SYSTEM_PYTHON), "-u", str(out / "sim_spectrum.py"), "--port", "0"]
    with running(command, installed["outside"], url_pattern=re.compile(
            r"(ws://127\.0\.0\.1:\d+/)"), name="installed sim_spectrum", env=env) as flowgraph:
        url = flowgraph.wait_for_url()
        hello, frames = receive(url, 3)
    assert hello["streams"][0]["bins"] == 2048
    assert len(frames) == 3 and all(f.bin_count == 2048 for f in frames)


def test_uninstall_removes_everything_it_installed(tmp_path: Path, repo_root: Path):
    """The uninstall target leaves the prefix with no file of gr-argos: the package, the
    private dependencies, what Python byte-compiled at run time, blocks, apps, examples."""
    build, prefix = tmp_path / "build", tmp_path / "prefix"
    _run(["cmake", "-S", str(repo_root), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}"])
    _run(["cmake", "--build", str(build)])
    _run(["cmake", "--install", str(build)])
    (package,) = prefix.rglob("gr_argos/__init__.py")
    (package.parent / "__pycache__").mkdir(exist_ok=True)
    (package.parent / "__pycache__" / "run_time.cpython-311.pyc").write_bytes(b"")
    _run(["cmake", "--build", str(build), "--target", "uninstall"])
    left = sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*") if not p.is_dir())
    assert left == []
    assert not (package.parent).exists() and not (prefix / "share/gr-argos").exists()


@pytest.mark.skipif(not SYSTEM_PYTHON.exists() or shutil.which("xvfb-run") is None,
                    reason="needs /usr/bin/python3 and xvfb-run (scripts/setup.sh --test)")
def test_grc_opens_every_installed_example_without_errors(installed, repo_root: Path):
    """GNU Radio Companion itself (the system Python, under Xvfb, only the prefix on its
    paths) opens every installed example: GRC's own validation finds no error, no two blocks
    are drawn over each other, and a screenshot of each is kept in test-artifacts/grc/ for a
    person to look at."""
    prefix = installed["prefix"]
    examples = sorted((prefix / "share/gr-argos/examples").glob("*.grc"))
    proc = _run(_grc_command(repo_root, "grc_gui_check.py", *map(str, examples)),
                cwd=installed["outside"], env=_grc_env(installed, installed["outside"]))
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    opened = report["flowgraphs"]
    assert sorted(opened) == [str(p.resolve()) for p in examples]
    for path, found in opened.items():
        assert found["errors"] == [] and found["overlaps"] == [], (path, found)
        assert found["blocks"] > 3 and Path(found["screenshot"]).stat().st_size > 10_000
    assert not [line for line in report["console"] if "rror" in line], report["console"]


@pytest.mark.skipif(not SYSTEM_PYTHON.exists() or shutil.which("xvfb-run") is None,
                    reason="needs /usr/bin/python3 and xvfb-run (scripts/setup.sh --test)")
def test_grc_run_serves_frames_and_kill_stops_the_flowgraph(installed, repo_root: Path,
                                                             tmp_path: Path):
    """In GNU Radio Companion (the system Python, only the prefix on its paths), with the
    terminal setting docs/install.md gives (none: the flowgraph's output in GRC's console),
    Run on the installed sim_spectrum.grc, its port Parameter set to 0, starts the flowgraph:
    GRC's console shows the sink's URL and a client receives frames from it. Kill stops it
    cleanly: connected clients get close code 1001, the flowgraph exits 0 and GRC says so."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from helpers import RECEIVE_TIMEOUT_S, receive, running

    home = tmp_path / "home"
    (home / ".gnuradio").mkdir(parents=True)
    (home / ".gnuradio" / "config.conf").write_text("[grc]\nxterm_executable =\n")
    flowgraph = tmp_path / "sim_spectrum.grc"  # GRC saves it before running it
    shutil.copy(installed["prefix"] / "share/gr-argos/examples/sim_spectrum.grc", flowgraph)
    command = _grc_command(repo_root, "grc_run_check.py", str(flowgraph), "port=0")
    with running(command, tmp_path, url_pattern=re.compile(r'"url": "(ws://[^"]+)"'),
                 name="GNU Radio Companion", env=_grc_env(installed, home),
                 process_group=True) as grc:
        url = grc.wait_for_url(timeout_s=120)
        started = json.loads(next(line for line in grc.lines if '"url"' in line))
        hello, frames = receive(url, 3)
        assert hello["streams"][0]["bins"] == 2048 and len(frames) == 3
        with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as client:
            client.recv(timeout=RECEIVE_TIMEOUT_S)  # hello
            os.kill(started["tool_pid"], signal.SIGUSR1)  # GRC's Kill
            with pytest.raises(ConnectionClosed):
                for _ in range(10_000):  # frames until the server closes: at 30/s, far less
                    client.recv(timeout=RECEIVE_TIMEOUT_S)
            assert client.close_code == 1001
        assert grc.wait_for_exit() == 0, grc.output()
    ended = json.loads(next(line for line in grc.lines if '"returncode"' in line))
    assert ended["returncode"] == 0, ended["console"]
    assert f"on {url}" in ended["console"] and "Executing: " in ended["console"]
    assert Path(started["screenshot"]).stat().st_size > 10_000
    with pytest.raises(ProcessLookupError):
        os.kill(started["pid"], 0)
