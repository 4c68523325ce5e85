#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# gr-argos: one-time (and idempotent) machine + venv setup for Debian 12 / Debian 13.
#
#   bash scripts/setup.sh         # what running needs (make setup; make run calls it)
#   bash scripts/setup.sh --test  # that, and what the tests need (make test calls it)
#
# 1. apt: GNU Radio, gr-osmosdr, gnuradio-dev and the build tools the CMake install needs;
#    with --test also the tools the tests run (Chromium, Node.js, gpsd, nginx, tcpdump, promtool), with no
#    service left running or enabled (the tests start their own). Skipped entirely when dpkg
#    says every package is already installed.
# 2. .venv in the repo root, made from Debian's /usr/bin/python3 with --system-site-packages
#    (GNU Radio's Python bindings live in Debian's dist-packages and are built for that python).
#    Recreated when missing, broken, or made by a different python version.
# 3. numpy pin: .venv/constraints.txt holds "numpy==<Debian's numpy version>" and is passed
#    with -c to every pip install, so pip never swaps in a numpy GNU Radio was not built for.
# 4. pip install -e . (with --test: -e '.[test]'); skipped when pyproject.toml (and the pin)
#    did not change and what is installed covers what is asked.
# 5. Checks that the venv can import GNU Radio, osmosdr, websockets and numpy.
#
# Nothing here hard-codes a Debian release, a python version or a numpy version.
# Environment: ARGOS_SETUP_FORCE=1 forces the pip step; ARGOS_SKIP_APT=1 skips step 1.
set -euo pipefail

FOR_TESTS=0
case "${1:-}" in
    --test) FOR_TESTS=1 ;;
    "") ;;
    *) printf 'usage: bash scripts/setup.sh [--test]\n' >&2; exit 2 ;;
esac

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

SYS_PY=/usr/bin/python3          # Debian's python: never the python3 first on PATH (pyenv etc.)
VENV="$REPO_ROOT/.venv"
VPY="$VENV/bin/python"
STAMP="$VENV/.argos-setup-stamp"
CONSTRAINTS="$VENV/constraints.txt"

RUN_PACKAGES=(
    gnuradio gr-osmosdr gnuradio-dev   # GNU Radio 3.10 + osmosdr source + GnuradioConfig.cmake
    cmake make                          # CMake install and the Makefile
    g++                                 # GnuradioConfig's Boost/Threads checks need a C++ compiler
    python3-venv python3-dev            # venv for Debian's python (+ headers GrPython looks for)
    python3-pip                         # the CMake install fetches what the system Python lacks
    hackrf                              # hackrf_sweep, run by the sweep source
)
TEST_PACKAGES=(
    chromium                            # headless browser for the viewer tests (Playwright drives it)
    nodejs                              # runs the JavaScript client against the shared test vectors
    gpsd gpsd-clients                   # a real gpsd fed by gpsfake for the GPS tests
    nginx                               # TLS reverse proxy of tests/test_reverse_proxy.py
    tcpdump                             # sniffs the veth link of tests/test_gateway_netns.py (CURVE)
    xvfb gir1.2-gtk-3.0                 # GNU Radio Companion's own window, opened by the tests
    prometheus                          # promtool: checks and unit-tests alerts/argos.rules.yml
)
# Services the test packages bring, which the tests start themselves: never left running or
# enabled by this script (nginx would take port 80, gpsd may grab serial ports, prometheus
# would scrape and store on port 9090; the tests only run its promtool).
TEST_SERVICES=(nginx.service gpsd.service gpsd.socket prometheus.service)
APT_PACKAGES=("${RUN_PACKAGES[@]}")
EXTRAS=""
if [ "$FOR_TESTS" = 1 ]; then
    APT_PACKAGES+=("${TEST_PACKAGES[@]}")
    EXTRAS="[test]"
fi

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# Serialise concurrent runs (several `make test` at once must not race on the venv).
LOCK="${TMPDIR:-/tmp}/gr-argos-setup-$(id -u)-$(printf '%s' "$REPO_ROOT" | cksum | cut -d' ' -f1).lock"
exec 9>"$LOCK"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

# --- 1. Debian packages -----------------------------------------------------------------------
missing_packages() {
    local p status
    for p in "${APT_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
        [ "$status" = "installed" ] || printf '%s\n' "$p"
    done
}

if [ "${ARGOS_SKIP_APT:-0}" != 1 ]; then
    command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian 12/13 only"
    mapfile -t MISSING < <(missing_packages)
    if [ "${#MISSING[@]}" -gt 0 ]; then
        SUDO=()
        if [ "$(id -u)" -ne 0 ]; then
            command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing; install as root: apt-get install ${MISSING[*]}"
            SUDO=(sudo)
        fi
        log "installing Debian packages: ${MISSING[*]}"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq \
            || die "apt-get update failed"
        # No service starts during the install: Debian's invoke-rc.d and deb-systemd-invoke
        # ask policy-rc.d first (101: not allowed). One the machine already has is kept.
        POLICY=/usr/sbin/policy-rc.d
        OWN_POLICY=0
        if [ ! -e "$POLICY" ]; then
            printf '#!/bin/sh\n# gr-argos scripts/setup.sh: no service starts during its apt-get install\nexit 101\n' \
                | "${SUDO[@]}" tee "$POLICY" >/dev/null && "${SUDO[@]}" chmod 755 "$POLICY" && OWN_POLICY=1
        fi
        status=0
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
            --no-install-recommends "${MISSING[@]}" >/dev/null || status=$?
        [ "$OWN_POLICY" = 0 ] || "${SUDO[@]}" rm -f "$POLICY"
        [ "$status" = 0 ] || die "apt-get install ${MISSING[*]} failed (see the apt output above)"
        mapfile -t STILL < <(missing_packages)
        [ "${#STILL[@]}" -eq 0 ] || die "apt-get did not install: ${STILL[*]}"
        # Installing enables them on a systemd machine: disable them (and stop any running).
        if [ "$FOR_TESTS" = 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            for unit in "${TEST_SERVICES[@]}"; do
                if systemctl list-unit-files "$unit" >/dev/null 2>&1; then
                    "${SUDO[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
                fi
            done
        fi
    fi
fi

[ -x "$SYS_PY" ] || die "$SYS_PY not found (Debian's python3 package)"
SYS_PY_VERSION="$("$SYS_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
NUMPY_VERSION="$("$SYS_PY" -c 'import numpy; print(numpy.__version__)' 2>/dev/null)" \
    || die "Debian's numpy is not importable by $SYS_PY (apt-get install python3-numpy)"

# --- 2. venv ----------------------------------------------------------------------------------
venv_ok() {
    [ -x "$VPY" ] || return 1
    grep -Eq '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" 2>/dev/null || return 1
    local v
    v="$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || return 1
    [ "$v" = "$SYS_PY_VERSION" ] || return 1
    "$VPY" -m pip --version >/dev/null 2>&1 || return 1
}

if ! venv_ok; then
    if [ -e "$VENV" ]; then
        log "recreating broken or outdated venv at .venv"
        rm -rf "$VENV"
    else
        log "creating venv at .venv"
    fi
    "$SYS_PY" -m venv --system-site-packages "$VENV" \
        || die "could not create the venv (is python3-venv installed?)"
fi

# --- 3. numpy pin -----------------------------------------------------------------------------
WANT_CONSTRAINTS="# generated by scripts/setup.sh: Debian's numpy, the one GNU Radio was built against
numpy==$NUMPY_VERSION"
if [ "$(cat "$CONSTRAINTS" 2>/dev/null)" != "$WANT_CONSTRAINTS" ]; then
    printf '%s\n' "$WANT_CONSTRAINTS" >"$CONSTRAINTS"
fi

# --- 4. pip install -e . (or '.[test]') -------------------------------------------------------
WANT_STAMP="$(cat pyproject.toml "$CONSTRAINTS" | sha256sum | cut -d' ' -f1) py$SYS_PY_VERSION"
installed_ok() {
    [ "${ARGOS_SETUP_FORCE:-0}" != 1 ] || return 1
    local stamp
    stamp="$(cat "$STAMP" 2>/dev/null)"
    # What the tests need covers what running needs: a venv set up for tests serves `run`.
    [ "$stamp" = "$WANT_STAMP [test]" ] || { [ -z "$EXTRAS" ] && [ "$stamp" = "$WANT_STAMP " ]; } \
        || return 1
    "$VPY" -c 'import importlib.metadata as m; m.version("gr-argos")' >/dev/null 2>&1
}

if ! installed_ok; then
    log "pip install -e '.$EXTRAS' (numpy pinned to $NUMPY_VERSION)"
    rm -f "$STAMP"
    PIP=("$VPY" -m pip --disable-pip-version-check --no-input)
    "${PIP[@]}" install -q -c "$CONSTRAINTS" -e ".$EXTRAS" \
        || die "pip install -e '.$EXTRAS' failed (see the pip output above)"
    printf '%s\n' "$WANT_STAMP $EXTRAS" >"$STAMP"
fi

# A numpy inside the venv (someone ran pip without the pin) would shadow Debian's: remove it.
if compgen -G "$VENV/lib/python*/site-packages/numpy" >/dev/null; then
    log "removing the venv's own numpy (GNU Radio needs Debian's numpy $NUMPY_VERSION)"
    "$VPY" -m pip --disable-pip-version-check --no-input uninstall -q -y numpy \
        || die "could not uninstall numpy from .venv; rm -rf .venv and rerun"
fi

# --- 5. final check ---------------------------------------------------------------------------
CHECK_OUT="$("$VPY" -c '
import numpy, sys
from gnuradio import gr, fft
import osmosdr, websockets
want = sys.argv[1]
if numpy.__version__ != want:
    sys.exit("numpy %s in the venv, but GNU Radio needs Debian numpy %s" % (numpy.__version__, want))
print("ARGOS_GR_VERSION=" + gr.version())
' "$NUMPY_VERSION" 2>&1)" || {
    printf '%s\n' "$CHECK_OUT" >&2
    die "the venv cannot import GNU Radio / osmosdr / websockets / numpy (output above).
       Try: ARGOS_SETUP_FORCE=1 bash scripts/setup.sh, or rm -rf .venv and rerun."
}
GR_VERSION="$(printf '%s\n' "$CHECK_OUT" | sed -n 's/^ARGOS_GR_VERSION=//p')"
log "ok: GNU Radio $GR_VERSION, numpy $NUMPY_VERSION, python $SYS_PY_VERSION, venv .venv"
