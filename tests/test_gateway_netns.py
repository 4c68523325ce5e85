# SPDX-License-Identifier: GPL-3.0-or-later
"""argos-spectrum publishing over ZeroMQ in one network namespace and argos-gateway serving in
another, joined by a veth pair: the tcp:// path crosses a real network stack, not loopback.

The test makes the namespaces, the veth pair and its private addresses itself and removes them
in ``finally``; it skips only where the machine does not allow network namespaces.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from helpers import ENV, REPO_ROOT, running

pytest.importorskip("gnuradio.gr")

pytestmark = pytest.mark.slow

# Private addresses only these namespaces hold; the pid keeps parallel runs apart.
_TAG = os.getpid() % 10000
PUBLISHER_NS = f"argos-pub-{_TAG}"
GATEWAY_NS = f"argos-gw-{_TAG}"
THIRD_OCTET = 10 + os.getpid() % 200  # 10.200.THIRD_OCTET.0/24
PUBLISHER_ADDRESS = f"10.200.{THIRD_OCTET}.1"
GATEWAY_ADDRESS = f"10.200.{THIRD_OCTET}.2"
ZMQ_PORT = 5555
COMMAND_TIMEOUT_S = 10.0
FFT_SIZE = 256
# The client runs inside the gateway's namespace (the test process cannot reach it): it prints
# the hello and the bin count of the first frames as one JSON line.
CLIENT_SCRIPT = """
import json, sys
from helpers import receive
hello, frames = receive(sys.argv[1], 5)
print(json.dumps({"hello": hello, "bins": [f.bin_count for f in frames],
                  "sequences": [f.sequence for f in frames]}))
"""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S)


def _netns(name: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", name, *command]


@contextmanager
def veth_namespaces() -> Iterator[None]:
    """Two namespaces joined by a veth pair, PUBLISHER_ADDRESS <-> GATEWAY_ADDRESS; removed
    (with the pair) on the way out. Skips if the machine forbids namespaces."""
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is missing: apt-get install iproute2")
    made: list[str] = []
    try:
        for name in (PUBLISHER_NS, GATEWAY_NS):
            result = _ip("netns", "add", name)
            if result.returncode != 0:
                if not made and ("Operation not permitted" in result.stderr
                                 or "Permission denied" in result.stderr):
                    pytest.skip(f"network namespaces not allowed here: {result.stderr.strip()}")
                pytest.fail(f"ip netns add {name} failed: {result.stderr}")
            made.append(name)
        veth_publisher, veth_gateway = f"avp{_TAG}", f"avg{_TAG}"
        setup = [
            ("link", "add", veth_publisher, "netns", PUBLISHER_NS, "type", "veth", "peer",
             "name", veth_gateway, "netns", GATEWAY_NS),
            ("-n", PUBLISHER_NS, "addr", "add", f"{PUBLISHER_ADDRESS}/24", "dev", veth_publisher),
            ("-n", GATEWAY_NS, "addr", "add", f"{GATEWAY_ADDRESS}/24", "dev", veth_gateway),
            ("-n", PUBLISHER_NS, "link", "set", veth_publisher, "up"),
            ("-n", GATEWAY_NS, "link", "set", veth_gateway, "up"),
            ("-n", PUBLISHER_NS, "link", "set", "lo", "up"),
            ("-n", GATEWAY_NS, "link", "set", "lo", "up"),
        ]
        for args in setup:
            result = _ip(*args)
            assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr}"
        yield
    finally:
        for name in made:  # deleting a namespace deletes its end of the veth pair, and so both
            _ip("netns", "delete", name)


def test_gateway_in_another_namespace_relays_the_publisher_over_a_veth_link() -> None:
    """A client in the gateway's namespace gets the sim band's hello and frames, which the
    publisher sent from the other namespace to the gateway over tcp:// on the veth pair."""
    with veth_namespaces():
        ping = subprocess.run(_netns(GATEWAY_NS, "ping", "-c", "1", "-W", "2",
                                     PUBLISHER_ADDRESS), capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S) if shutil.which("ping") else None
        assert ping is None or ping.returncode == 0, ping.stdout + ping.stderr
        endpoint = f"tcp://{PUBLISHER_ADDRESS}:{ZMQ_PORT}"
        with running(
                _netns(PUBLISHER_NS, sys.executable, "-u", "-m", "gr_argos.apps.spectrum",
                       "--source", "sim", "--transport", "zmq", "--zmq-endpoint", endpoint,
                       "--bins", str(FFT_SIZE)),
                REPO_ROOT, url_pattern=re.compile(r"publishing on (tcp://\S+)"),
                name="argos-spectrum") as publisher:
            assert publisher.wait_for_url() == endpoint
            with running(
                    _netns(GATEWAY_NS, sys.executable, "-u", "-m", "gr_argos.apps.gateway",
                           "--connect", endpoint, "--host", "127.0.0.1", "--port", "0",
                           "--publisher-timeout-s", "10"),
                    REPO_ROOT, url_pattern=re.compile(r"connect to (ws://\S+)"),
                    name="argos-gateway") as gateway:
                url = gateway.wait_for_url()
                client = subprocess.run(
                    _netns(GATEWAY_NS, sys.executable, "-c", CLIENT_SCRIPT, url),
                    cwd=REPO_ROOT / "tests", env=ENV, capture_output=True, text=True,
                    timeout=30)
                assert client.returncode == 0, client.stderr + gateway.output()
                result = json.loads(client.stdout.strip().splitlines()[-1])
                assert "serving anyway" not in gateway.output(), gateway.output()
        assert [s["bins"] for s in result["hello"]["streams"]] == [FFT_SIZE]
        assert result["bins"] == [FFT_SIZE] * 5
        sequences = result["sequences"]
        assert sequences == sorted(sequences), sequences
