# SPDX-License-Identifier: GPL-3.0-or-later
"""argos-spectrum publishing over ZeroMQ in one network namespace and argos-gateway serving in
another, joined by a veth pair: the tcp:// path crosses a real network stack, not loopback.

Plain, then with CURVE: only the allowed gateway gets frames, the others (an unknown key, no
key, another server key) get nothing and are counted and logged, and tcpdump on the veth link
sees the frames' magic in the clear only without CURVE. The tests make the namespaces, the
veth pair and its private addresses themselves and remove them in ``finally``; they skip only
where the machine does not allow network namespaces (or has no tcpdump).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

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
VETH_PUBLISHER, VETH_GATEWAY = f"avp{_TAG}", f"avg{_TAG}"
ZMQ_PORT = 5555
ENDPOINT = f"tcp://{PUBLISHER_ADDRESS}:{ZMQ_PORT}"
COMMAND_TIMEOUT_S = 10.0
WAIT_S = 30.0  # a hang guard, not a speed requirement
FFT_SIZE = 256
URL_PATTERN = re.compile(r"connect to (ws://\S+)")
PUBLISHING_PATTERN = re.compile(r"publishing on (tcp://\S+)")
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
        setup = [
            ("link", "add", VETH_PUBLISHER, "netns", PUBLISHER_NS, "type", "veth", "peer",
             "name", VETH_GATEWAY, "netns", GATEWAY_NS),
            ("-n", PUBLISHER_NS, "addr", "add", f"{PUBLISHER_ADDRESS}/24", "dev", VETH_PUBLISHER),
            ("-n", GATEWAY_NS, "addr", "add", f"{GATEWAY_ADDRESS}/24", "dev", VETH_GATEWAY),
            ("-n", PUBLISHER_NS, "link", "set", VETH_PUBLISHER, "up"),
            ("-n", GATEWAY_NS, "link", "set", VETH_GATEWAY, "up"),
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


@contextmanager
def sniffing(pcap: Path) -> Iterator[None]:
    """tcpdump on the gateway's end of the veth pair, writing every packet of the ZeroMQ
    port to ``pcap`` (each packet as it comes, -U) until the ``with`` block ends."""
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is missing: apt-get install tcpdump (bash scripts/setup.sh --test)")
    sniffer = subprocess.Popen(
        _netns(GATEWAY_NS, "tcpdump", "-i", VETH_GATEWAY, "-U", "-s", "0", "-w", str(pcap),
               "tcp", "port", str(ZMQ_PORT)),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert sniffer.stderr is not None
        line = sniffer.stderr.readline()  # "tcpdump: listening on avg..." once it captures
        assert "listening on" in line, line + sniffer.stderr.read()
        yield
    finally:
        sniffer.send_signal(signal.SIGINT)
        try:
            sniffer.wait(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            sniffer.kill()
            sniffer.wait(timeout=COMMAND_TIMEOUT_S)


def publisher(*flags: str) -> Any:
    """argos-spectrum --source sim publishing on ENDPOINT in the publisher's namespace."""
    return running(
        _netns(PUBLISHER_NS, sys.executable, "-u", "-m", "gr_argos.apps.spectrum",
               "--source", "sim", "--transport", "zmq", "--zmq-endpoint", ENDPOINT,
               "--bins", str(FFT_SIZE), *flags),
        REPO_ROOT, url_pattern=PUBLISHING_PATTERN, name="argos-spectrum")


def gateway(name: str, *flags: str) -> Any:
    """argos-gateway connected to ENDPOINT, serving on 127.0.0.1 in the gateway's
    namespace."""
    return running(
        _netns(GATEWAY_NS, sys.executable, "-u", "-m", "gr_argos.apps.gateway",
               "--connect", ENDPOINT, "--host", "127.0.0.1", "--port", "0", *flags),
        REPO_ROOT, url_pattern=URL_PATTERN, name=name)


def in_gateway_namespace(script: str, *args: str) -> Any:
    """Run a Python ``script`` in the gateway's namespace; its last stdout line, as JSON."""
    result = subprocess.run(_netns(GATEWAY_NS, sys.executable, "-c", script, *args),
                            cwd=REPO_ROOT / "tests", env=ENV, capture_output=True, text=True,
                            timeout=4 * WAIT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_gateway_in_another_namespace_relays_the_publisher_over_a_veth_link(
        tmp_path: Path) -> None:
    """Plain ZeroMQ, allowed on this link by zmq_trusted_network on both ends: a client in
    the gateway's namespace gets the sim band's hello and frames, which the publisher sent
    from the other namespace over tcp:// on the veth pair; and tcpdump there sees the
    frames in the clear (their magic, ARGS), which shows the sniffer of the CURVE test
    works."""
    pcap = tmp_path / "plain.pcap"
    with veth_namespaces():
        ping = subprocess.run(_netns(GATEWAY_NS, "ping", "-c", "1", "-W", "2",
                                     PUBLISHER_ADDRESS), capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S) if shutil.which("ping") else None
        assert ping is None or ping.returncode == 0, ping.stdout + ping.stderr
        with sniffing(pcap), publisher("--zmq-trusted-network") as pub:
            assert pub.wait_for_url() == ENDPOINT
            with gateway("argos-gateway", "--publisher-timeout-s", "10",
                         "--zmq-trusted-network") as relay:
                url = relay.wait_for_url()
                result = in_gateway_namespace(CLIENT_SCRIPT, url)
                assert "serving anyway" not in relay.output(), relay.output()
    assert [s["bins"] for s in result["hello"]["streams"]] == [FFT_SIZE]
    assert result["bins"] == [FFT_SIZE] * 5
    sequences = result["sequences"]
    assert sequences == sorted(sequences), sequences
    assert b"ARGS" in pcap.read_bytes()


# In the gateway's namespace: clients of every gateway (argv: name=url ...) until the first
# ("good") has 5 frames, then as long again for the others; then, until each gateway's
# /metrics shows what is expected of it (or the hang guard), its counters.
CURVE_CLIENT_SCRIPT = """
import json, sys, threading, time, urllib.request
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect
from gr_argos.protocol import decode_frame

WAIT_S = 30.0
urls = dict(arg.split("=", 1) for arg in sys.argv[1:])
got = {name: {"hello": None, "frames": 0} for name in urls}
stop = threading.Event()

def read(name, url):
    with connect(url, open_timeout=WAIT_S) as ws:
        got[name]["hello"] = json.loads(ws.recv(timeout=WAIT_S))
        while not stop.is_set():
            try:
                message = ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            if isinstance(message, bytes):
                got[name]["frames"] += 1
                got[name]["bins"] = decode_frame(message).bin_count

threads = [threading.Thread(target=read, args=item, daemon=True) for item in urls.items()]
for thread in threads:
    thread.start()
start = time.monotonic()
while got["good"]["frames"] < 5 and time.monotonic() < start + WAIT_S:
    time.sleep(0.05)
time.sleep(time.monotonic() - start)
stop.set()
for thread in threads:
    thread.join(WAIT_S)

def metrics(url):
    text = urllib.request.urlopen(url.replace("ws://", "http://") + "metrics",
                                  timeout=WAIT_S).read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("argos_zmq_"):
                key = sample.name + ":" + sample.labels["reason"]
                found[key] = found.get(key, 0) + sample.value
    return found

# every one of these counters above 0 (for keyless: one of them, as the publisher's answer
# to a plain peer reads as a mechanism mismatch or as the connection closed; the publisher
# counts that peer as no_key or closed in the same way)
expected = {"good": (all, ["argos_zmq_publisher_refused_total:" + r
                           for r in ("unknown_key", "wrong_server_key")]),
            "stranger": (all, ["argos_zmq_handshake_failures_total:key_refused"]),
            "keyless": (any, ["argos_zmq_handshake_failures_total:mechanism_mismatch",
                              "argos_zmq_handshake_failures_total:closed"]),
            "misled": (all, ["argos_zmq_handshake_failures_total:closed"])}
deadline = time.monotonic() + WAIT_S
counters = {}
for name, url in urls.items():
    test, keys = expected[name]
    while True:
        counters[name] = metrics(url)
        if test(counters[name].get(key) for key in keys) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
print(json.dumps({"clients": got, "metrics": counters}))
"""


def test_over_curve_only_the_allowed_gateway_gets_frames_and_the_link_is_encrypted(
        tmp_path: Path) -> None:
    """With CURVE (keys made by argos-keys) on a publisher bound to its veth address: the
    gateway whose key is allowed relays frames to a real client; gateways with an unknown key,
    with no key, or with another server key get nothing: their clients see no stream and no
    frame, each counts its failed handshakes in /metrics, the publisher counts each refusal
    by reason (the allowed gateway's /metrics shows them, from the heartbeat) and logs them
    at a bounded rate. tcpdump on the link sees traffic but no frame header (ARGS) and no
    topic in the clear."""
    keys = tmp_path / "keys"
    for directory, name in (("publisher", "publisher"), ("gateways", "good"),
                            ("gateways", "stranger"), ("elsewhere", "other")):
        made = subprocess.run([sys.executable, str(REPO_ROOT / "apps" / "argos-keys"),
                               "generate", name, "--dir", str(keys / directory)],
                              env=ENV, capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
    allowed = keys / "allowed"
    allowed.mkdir()
    shutil.copy(keys / "gateways" / "good.key", allowed)
    pcap = tmp_path / "curve.pcap"
    server_key = str(keys / "publisher" / "publisher.key")
    with veth_namespaces(), ExitStack() as stack:
        stack.enter_context(sniffing(pcap))
        started = time.monotonic()
        pub = stack.enter_context(publisher(
            "--zmq-secret-key", str(keys / "publisher" / "publisher.key_secret"),
            "--zmq-allowed-keys", str(allowed)))
        assert pub.wait_for_url() == ENDPOINT
        gateways = {
            "good": ("--zmq-secret-key", str(keys / "gateways" / "good.key_secret"),
                     "--zmq-server-key", server_key),
            "stranger": ("--zmq-secret-key", str(keys / "gateways" / "stranger.key_secret"),
                         "--zmq-server-key", server_key),
            "keyless": ("--zmq-trusted-network",),
            "misled": ("--zmq-secret-key", str(keys / "gateways" / "good.key_secret"),
                       "--zmq-server-key", str(keys / "elsewhere" / "other.key")),
        }
        relays = {name: stack.enter_context(gateway(
            f"argos-gateway ({name})", "--publisher-timeout-s", "3", *flags))
            for name, flags in gateways.items()}
        urls = {name: relay.wait_for_url() for name, relay in relays.items()}
        result = in_gateway_namespace(CURVE_CLIENT_SCRIPT,
                                      *(f"{name}={url}" for name, url in urls.items()))
        publisher_output = pub.output()
        elapsed_s = time.monotonic() - started
        outputs = {name: relay.output() for name, relay in relays.items()}
    clients, counters = result["clients"], result["metrics"]
    assert [s["bins"] for s in clients["good"]["hello"]["streams"]] == [FFT_SIZE], outputs
    assert clients["good"]["frames"] >= 5 and clients["good"]["bins"] == FFT_SIZE
    for name in ("stranger", "keyless", "misled"):
        assert clients[name]["hello"]["streams"] == [], outputs[name]
        assert clients[name]["frames"] == 0, outputs[name]
    refused = {reason: counters["good"].get(f"argos_zmq_publisher_refused_total:{reason}", 0)
               for reason in ("unknown_key", "no_key", "wrong_server_key", "closed")}
    assert refused["unknown_key"] and refused["wrong_server_key"], (refused, publisher_output)
    assert refused["no_key"] + refused["closed"] >= 1, (refused, publisher_output)
    assert counters["stranger"]["argos_zmq_handshake_failures_total:key_refused"] >= 1
    assert counters["keyless"]["argos_zmq_handshake_failures_total:mechanism_mismatch"] \
        + counters["keyless"]["argos_zmq_handshake_failures_total:closed"] >= 1
    assert counters["misled"]["argos_zmq_handshake_failures_total:closed"] >= 1
    assert "publisher refused this gateway's CURVE key" in outputs["stranger"]
    lines = re.findall(r"event=zmq_refused reason=(\w+)", publisher_output)
    assert set(lines) >= {"unknown_key", "wrong_server_key"}, publisher_output
    assert set(lines) & {"no_key", "closed"}, publisher_output
    assert len(lines) <= 5 * (elapsed_s // 10 + 1) < sum(refused.values()), publisher_output
    assert "key_file=good.key" in publisher_output
    captured = pcap.read_bytes()
    assert len(captured) > 5 * FFT_SIZE * 4, "the sniffer saw less than five frames' bytes"
    assert b"ARGS" not in captured and b"frame/" not in captured


def test_a_publisher_without_keys_refuses_to_bind_a_network_address() -> None:
    """Plain ZeroMQ on the veth address (no keys, no zmq_trusted_network): argos-spectrum
    does not start, and says which settings would let it."""
    with veth_namespaces():
        result = subprocess.run(
            _netns(PUBLISHER_NS, sys.executable, "-m", "gr_argos.apps.spectrum", "--source",
                   "sim", "--transport", "zmq", "--zmq-endpoint", ENDPOINT),
            cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=4 * WAIT_S)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"refusing to publish plain ZeroMQ on {ENDPOINT}" in result.stderr
    for name in ("zmq_secret_key", "zmq_allowed_keys", "zmq_trusted_network"):
        assert name in result.stderr
