# SPDX-License-Identifier: GPL-3.0-or-later
"""CURVE on the ZeroMQ link, with real sockets on 127.0.0.1: key files and their
permissions, the settings, who a publisher lets in and what it counts and logs, and the
argos-keys command."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gr_argos.settings import ConfigError
from gr_argos.zmq_curve import (
    AllowedKeys,
    ZmqKeyError,
    generate_key_pair,
    is_local_endpoint,
    load_key_pair,
    load_public_key,
)
from gr_argos.zmq_transport import (
    FramePublisher,
    FrameSubscriber,
    PublisherSettings,
    SubscriberSettings,
    gateway_command,
)

from helpers import ENV, REPO_ROOT

WAIT_S = 30.0  # a hang guard, not a speed requirement
HEARTBEAT_S = 0.1


class Keys:
    """Key pairs made with generate_key_pair: the publisher, an allowed gateway ("good"), a
    gateway nobody allowed ("stranger") and another publisher's ("other"); ``allowed`` holds
    only good.key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for name in ("publisher", "good", "stranger", "other"):
            generate_key_pair(root / name, name)
        self.allowed = root / "allowed"
        self.allowed.mkdir()
        (self.allowed / "good.key").write_bytes((root / "good" / "good.key").read_bytes())

    def secret(self, name: str) -> str:
        return str(self.root / name / f"{name}.key_secret")

    def public(self, name: str) -> str:
        return str(self.root / name / f"{name}.key")

    def publisher(self) -> FramePublisher:
        return FramePublisher("tcp://127.0.0.1:0", heartbeat_interval_s=HEARTBEAT_S,
                              zmq_secret_key=self.secret("publisher"),
                              zmq_allowed_keys=str(self.allowed))

    def subscriber(self, endpoint: str, name: str | None,
                   server: str = "publisher") -> FrameSubscriber:
        if name is None:
            return FrameSubscriber([endpoint])
        return FrameSubscriber([endpoint], zmq_secret_key=self.secret(name),
                               zmq_server_key=self.public(server))


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def publisher(keys: Keys) -> Iterator[FramePublisher]:
    pub = keys.publisher()
    try:
        yield pub
    finally:
        pub.close()


def frames_received(subscriber: FrameSubscriber, publisher: FramePublisher,
                    until: Any) -> int:
    """Publish a frame every 20 ms and count the frames ``subscriber`` gets, until
    ``until(frames so far)`` is true (or the hang guard)."""
    got = 0
    deadline = time.monotonic() + WAIT_S
    while not until(got) and time.monotonic() < deadline:
        publisher.publish_frame(0, b"ARGS frame")
        event = subscriber.receive(0.02)
        got += event is not None and event[0] == "frame"
    return got


# -- key files ---------------------------------------------------------------------------------

def test_a_generated_key_pair_loads_and_its_secret_half_is_private(tmp_path: Path) -> None:
    """generate_key_pair writes NAME.key (0644) and NAME.key_secret (0600) in a directory it
    makes (0700); both files give the same public key, and a second call refuses to
    overwrite them."""
    public, secret = generate_key_pair(tmp_path / "keys", "publisher")
    assert (public.name, secret.name) == ("publisher.key", "publisher.key_secret")
    assert (public.stat().st_mode & 0o777, secret.stat().st_mode & 0o777) == (0o644, 0o600)
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    pair = load_key_pair(str(secret), "zmq_secret_key")
    assert pair.public == load_public_key(str(public), "zmq_server_key")
    assert len(pair.public) == len(pair.secret) == 40
    assert pair.secret.decode() not in repr(pair)
    with pytest.raises(ZmqKeyError, match="never overwritten"):
        generate_key_pair(tmp_path / "keys", "publisher")
    with pytest.raises(ZmqKeyError, match="plain file name"):
        generate_key_pair(tmp_path, "../elsewhere")


def test_unusable_key_files_are_refused_naming_the_setting(tmp_path: Path) -> None:
    """A missing file, a file that is no key, and a public key where the key pair belongs
    each give an error that names the setting, the file and what to do."""
    public, _ = generate_key_pair(tmp_path, "gateway")
    with pytest.raises(ZmqKeyError, match=r"zmq_secret_key file .*missing.key_secret does not "
                                          r"exist \(make keys with argos-keys"):
        load_key_pair(str(tmp_path / "missing.key_secret"), "zmq_secret_key")
    garbage = tmp_path / "notes.key"
    garbage.write_text("not a key\n")
    with pytest.raises(ZmqKeyError, match="zmq_server_key file .*notes.key is not a ZeroMQ key"):
        load_public_key(str(garbage), "zmq_server_key")
    with pytest.raises(ZmqKeyError, match="holds only a public key: give the "
                                          "NAME.key_secret file"):
        load_key_pair(str(public), "zmq_secret_key")


def test_a_secret_key_every_user_can_read_is_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Like the TLS key: loading a key pair readable by every user logs
    event=zmq_key_readable with the file and the chmod to run; a private one logs nothing."""
    _, secret = generate_key_pair(tmp_path, "publisher")
    with caplog.at_level(logging.WARNING, logger="gr_argos.zmq_curve"):
        load_key_pair(str(secret), "zmq_secret_key")
        assert "zmq_key_readable" not in caplog.text
        secret.chmod(0o644)
        load_key_pair(str(secret), "zmq_secret_key")
    assert f"event=zmq_key_readable path={secret}" in caplog.text
    assert "chmod 600" in caplog.text


def test_an_allowed_keys_directory_without_keys_is_refused(tmp_path: Path) -> None:
    """An empty directory, or a path that is not one, cannot be zmq_allowed_keys."""
    with pytest.raises(ZmqKeyError, match="holds no NAME.key file"):
        AllowedKeys(str(tmp_path))
    with pytest.raises(ZmqKeyError, match="cannot read zmq_allowed_keys directory"):
        AllowedKeys(str(tmp_path / "nowhere"))


# -- settings ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "local"), [
    ("ipc:///tmp/argos.sock", True), ("tcp://127.0.0.1:5555", True),
    ("tcp://127.3.2.1:0", True), ("tcp://[::1]:5555", True), ("tcp://localhost:5555", True),
    ("tcp://lo:5555", True), ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
    ("tcp://10.0.0.2:5555", False), ("tcp://radio1:5555", False), ("tcp://eth0:5555", False),
    ("tcp://10.0.0.1;127.0.0.1:5555", True), ("pgm://eth0;239.192.1.1:5555", False),
])
def test_only_ipc_and_loopback_count_as_local(endpoint: str, local: bool) -> None:
    """What other machines cannot reach: ipc://, and tcp:// on a loopback address."""
    assert is_local_endpoint(endpoint) is local


def test_plain_publishing_on_the_network_needs_zmq_trusted_network() -> None:
    """Without keys a publisher may bind ipc:// or loopback; binding an address other
    machines reach is refused with an error naming the settings, unless the network is
    declared trusted."""
    PublisherSettings("ipc:///tmp/argos.sock")
    PublisherSettings("tcp://127.0.0.1:0")
    with pytest.raises(ConfigError) as refused:
        PublisherSettings("tcp://0.0.0.0:5555")
    message = str(refused.value)
    assert message.startswith("refusing to publish plain ZeroMQ on tcp://0.0.0.0:5555")
    for name in ("zmq_secret_key", "zmq_allowed_keys", "zmq_trusted_network"):
        assert name in message
    assert PublisherSettings("tcp://0.0.0.0:5555", zmq_trusted_network=True)
    with pytest.raises(ConfigError, match="refusing to publish plain ZeroMQ"):
        FramePublisher("tcp://0.0.0.0:0")


def test_half_of_the_curve_settings_is_refused() -> None:
    """A key pair without the other setting CURVE needs (and the other way round) is an
    error naming both, for the publisher and for the gateway."""
    with pytest.raises(ConfigError, match="zmq_secret_key is set but zmq_allowed_keys is empty"):
        PublisherSettings(zmq_secret_key="p.key_secret")
    with pytest.raises(ConfigError, match="zmq_allowed_keys is set but zmq_secret_key is empty"):
        PublisherSettings(zmq_allowed_keys="allowed")
    with pytest.raises(ConfigError, match="zmq_secret_key is set but zmq_server_key is empty"):
        SubscriberSettings(zmq_secret_key="g.key_secret")
    with pytest.raises(ConfigError, match="zmq_server_key is set but zmq_secret_key is empty"):
        SubscriberSettings(zmq_server_key="p.key")


def test_a_plain_subscription_to_another_machine_needs_zmq_trusted_network() -> None:
    """A gateway without keys may connect to ipc:// or loopback; to another host only with
    zmq_trusted_network (nothing needs to listen there to be refused)."""
    with pytest.raises(ConfigError, match="refusing to subscribe over plain ZeroMQ to "
                                          "tcp://192.0.2.1:5555.*zmq_server_key.*"
                                          "zmq_trusted_network"):
        FrameSubscriber(["tcp://127.0.0.1:5555", "tcp://192.0.2.1:5555"])
    FrameSubscriber(["tcp://192.0.2.1:5555"], zmq_trusted_network=True).close()


def test_the_publisher_and_the_gateway_take_the_curve_settings_by_the_same_names() -> None:
    """zmq_secret_key and zmq_trusted_network are one setting on both ends; each end has
    its own other one (the publisher's allowed keys, the gateway's server key)."""
    from gr_argos.apps.gateway import SETTINGS as GATEWAY_SETTINGS
    from gr_argos.apps.spectrum import SETTINGS as SPECTRUM_SETTINGS

    gateway = {s.name: s for s in GATEWAY_SETTINGS}
    spectrum = {s.name: s for s in SPECTRUM_SETTINGS}
    for name in ("zmq_secret_key", "zmq_trusted_network"):
        assert gateway[name] == spectrum[name]
    assert "zmq_allowed_keys" in spectrum and "zmq_allowed_keys" not in gateway
    assert "zmq_server_key" in gateway and "zmq_server_key" not in spectrum


# -- who gets in ---------------------------------------------------------------------------------

def test_only_the_allowed_gateway_gets_frames_and_every_refusal_is_counted(
        keys: Keys, publisher: FramePublisher, caplog: pytest.LogCaptureFixture) -> None:
    """Over CURVE the allowed gateway gets the frames; one with an unknown key, one without
    keys and one holding another server key get nothing. The publisher counts each refusal
    by reason (in stats(), so in the heartbeat), each gateway counts its failed handshakes,
    and the refusal lines stay few although the refusals keep coming."""
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    good = keys.subscriber(publisher.endpoint, "good")
    stranger = keys.subscriber(publisher.endpoint, "stranger")
    keyless = keys.subscriber(publisher.endpoint, None)
    misled = keys.subscriber(publisher.endpoint, "good", server="other")
    refused_ones = (stranger, keyless, misled)
    received_by_refused = 0

    def all_kinds_refused_many_times(_: int) -> bool:
        nonlocal received_by_refused
        for subscriber in refused_ones:  # they read on, as a gateway's relay thread does
            received_by_refused += subscriber.receive(0) is not None
        refused = publisher.stats()["refused"]
        return (refused.get("unknown_key", 0) > 0 and refused.get("wrong_server_key", 0) > 0
                and refused.get("no_key", 0) + refused.get("closed", 0) > 0
                and sum(refused.values()) > 5 * ((time.monotonic() - started) // 10 + 1))

    try:
        got = frames_received(good, publisher, all_kinds_refused_many_times)
        for subscriber in refused_ones:  # whatever reached them is waiting in their queues
            while subscriber.receive(0.05) is not None:
                received_by_refused += 1
    finally:
        for subscriber in (good, *refused_ones):
            subscriber.close()
    assert got > 0 and received_by_refused == 0
    refused = publisher.stats()["refused"]
    # A plain peer is refused as no_key, or as closed when it noticed first and hung up.
    assert refused["unknown_key"] and refused["wrong_server_key"], refused
    assert refused.get("no_key", 0) + refused.get("closed", 0) >= 1, refused
    assert dict(good.handshake_failures) == {}
    endpoint = publisher.endpoint
    assert stranger.handshake_failures[endpoint, "key_refused"] >= 1
    # Likewise the plain peer sees a mechanism mismatch or the connection closed.
    assert keyless.handshake_failures[endpoint, "mechanism_mismatch"] \
        + keyless.handshake_failures[endpoint, "closed"] >= 1
    assert misled.handshake_failures[endpoint, "closed"] >= 1
    lines = [r.getMessage() for r in caplog.records if "event=zmq_refused reason=" in
             r.getMessage()]
    assert any("reason=unknown_key" in line and "zmq_allowed_keys" in line for line in lines)
    windows = (time.monotonic() - started) // 10 + 1  # 5 lines per 10 s at most
    assert len(lines) <= 5 * windows < sum(refused.values()), (lines, refused)
    assert any("event=zmq_gateway_allowed" in r.getMessage() and "key_file=good.key" in
               r.getMessage() for r in caplog.records)


def test_a_key_added_to_the_allowed_directory_lets_its_gateway_in_without_restarts(
        keys: Keys, publisher: FramePublisher) -> None:
    """A refused gateway keeps trying (every RETRY_REFUSED_S); once its public key is
    copied into zmq_allowed_keys, the publisher reads the directory again and lets it in:
    neither end is restarted."""
    stranger = keys.subscriber(publisher.endpoint, "stranger")
    try:
        before = frames_received(stranger, publisher,
                                 lambda _: publisher.stats()["refused"].get("unknown_key"))
        (keys.allowed / "stranger.key").write_bytes(
            Path(keys.public("stranger")).read_bytes())
        after = frames_received(stranger, publisher, lambda got: got > 0)
    finally:
        stranger.close()
    assert before == 0 and after > 0


def test_a_stuck_zap_handler_never_holds_up_the_frames_of_connected_gateways(
        keys: Keys, publisher: FramePublisher) -> None:
    """While the publisher's ZAP handler is stuck deciding about a new gateway, publish
    keeps returning and the gateway already in keeps getting frames."""
    assert publisher.curve is not None
    good = keys.subscriber(publisher.endpoint, "good")
    stuck, release = threading.Event(), threading.Event()
    allowed = publisher.curve.allowed
    name_of = allowed.name_of

    def slow_name_of(public_key: bytes) -> str | None:
        if public_key == load_public_key(keys.public("stranger"), "test"):
            stuck.set()
            release.wait(WAIT_S)
        return name_of(public_key)

    stranger = None
    try:
        assert frames_received(good, publisher, lambda got: got > 0) > 0
        allowed.name_of = slow_name_of  # type: ignore[method-assign]
        stranger = keys.subscriber(publisher.endpoint, "stranger")
        assert stuck.wait(WAIT_S), "the stranger's handshake never reached the ZAP handler"
        got = frames_received(good, publisher, lambda got: got >= 10)
        assert got == 10 and stuck.is_set() and not release.is_set()
    finally:
        release.set()
        good.close()
        if stranger is not None:
            stranger.close()


def test_closing_a_curve_publisher_stops_its_threads(keys: Keys) -> None:
    """The ZAP handler and the handshake watch stop with the publisher: no thread is left."""
    before = set(threading.enumerate())
    publisher = keys.publisher()
    assert len(set(threading.enumerate()) - before) >= 3  # heartbeat, ZAP, handshake watch
    publisher.close()
    publisher.close()  # idempotent
    deadline = time.monotonic() + WAIT_S
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(threading.enumerate()) - before == set()


# -- argos-keys --------------------------------------------------------------------------------

def argos_keys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO_ROOT / "apps" / "argos-keys"), *args],
                          cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=60)


def test_argos_keys_generates_and_shows_a_key_pair(tmp_path: Path) -> None:
    """argos-keys generate NAME --dir DIR makes the pair and says what goes where; show
    prints the same public key for both files; generate refuses to overwrite (exit 1)."""
    made = argos_keys("generate", "gateway-1", "--dir", str(tmp_path / "keys"))
    assert made.returncode == 0, made.stderr
    public = load_public_key(str(tmp_path / "keys" / "gateway-1.key"), "test").decode()
    assert f"public key value: {public}" in made.stdout
    assert "zmq_allowed_keys" in made.stdout and "zmq_server_key" in made.stdout
    shown = argos_keys("show", str(tmp_path / "keys" / "gateway-1.key"),
                       str(tmp_path / "keys" / "gateway-1.key_secret"))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count(f"public key: {public}") == 2
    assert "public key only, mode 644" in shown.stdout
    assert "key pair (public and secret), mode 600" in shown.stdout
    again = argos_keys("generate", "gateway-1", "--dir", str(tmp_path / "keys"))
    assert again.returncode == 1 and "never overwritten" in again.stderr


def test_argos_keys_show_fails_on_a_secret_key_every_user_can_read(tmp_path: Path) -> None:
    """show exits 1 and says the chmod to run when a secret key file is world-readable."""
    _, secret = generate_key_pair(tmp_path, "publisher")
    os.chmod(secret, 0o644)
    shown = argos_keys("show", str(secret))
    assert shown.returncode == 1
    assert f"chmod 600 {secret}" in shown.stderr


def test_the_gateway_command_a_publisher_prints_names_a_host_and_the_keys() -> None:
    """What argos-spectrum and the zmq_sink print as the way to serve them: a wildcard bind
    becomes THIS-HOST (a gateway cannot connect to 0.0.0.0), and a CURVE publisher's gateway
    is told to bring its own key pair and this publisher's public key."""
    assert gateway_command("tcp://127.0.0.1:5555") == "argos-gateway --connect tcp://127.0.0.1:5555"
    assert gateway_command("ipc:///run/argos.sock") == "argos-gateway --connect ipc:///run/argos.sock"
    assert gateway_command("tcp://0.0.0.0:5555", "/etc/argos/radio1.key_secret") == (
        "argos-gateway --connect tcp://THIS-HOST:5555 --zmq-secret-key GATEWAY.key_secret "
        "--zmq-server-key /etc/argos/radio1.key")
    assert gateway_command("tcp://[::]:5556") == "argos-gateway --connect tcp://THIS-HOST:5556"
