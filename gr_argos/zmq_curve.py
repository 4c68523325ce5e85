# SPDX-License-Identifier: GPL-3.0-or-later
"""CURVE on the ZeroMQ link between a publisher and its gateways: the key files, the
gateways a publisher allows, the handshakes it refuses, and where plain ZeroMQ is allowed.

ZeroMQ's CURVE mechanism encrypts the link and authenticates both ends with Curve25519 key
pairs, kept in ZeroMQ's certificate files (``zmq.auth.create_certificates``; ``argos-keys``
makes them): ``NAME.key`` holds the public key, ``NAME.key_secret`` the public and the secret
key.

- The publisher is the CURVE server. It has a key pair of its own (``zmq_secret_key``) and
  lets in only the gateways whose public keys are files in its ``zmq_allowed_keys``
  directory: :class:`CurveServer` runs pyzmq's ZAP handler (``ThreadAuthenticator``) on a
  thread of its own, and watches the socket's handshakes, so that every refused peer is
  counted by reason and logged at a bounded rate.
- A gateway is a CURVE client: a key pair of its own (``zmq_secret_key``) and the
  publisher's public key (``zmq_server_key``); :func:`secure_client` sets them on a socket,
  :func:`handshake_failure` names what went wrong when its publisher refuses it.
- Without keys, ZeroMQ is plain: no encryption, no authentication. :func:`check_plain` allows
  that on ``ipc://`` and loopback only, unless ``zmq_trusted_network`` says the network is
  trusted.

No GNU Radio import.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from gr_argos.key_files import warn_if_readable_by_others
from gr_argos.server.logs import EventLog, quoted
from gr_argos.settings import ConfigError

__all__ = [
    "AllowedKeys",
    "CLIENT_FAILURE_REASONS",
    "CurveServer",
    "HANDSHAKE_EVENTS",
    "KeyPair",
    "PUBLIC_KEY_SUFFIX",
    "REFUSAL_REASONS",
    "SECRET_KEY_SUFFIX",
    "ZmqKeyError",
    "check_plain",
    "generate_key_pair",
    "handshake_failure",
    "is_local_endpoint",
    "load_key_pair",
    "load_public_key",
    "secure_client",
]

log = logging.getLogger(__name__)

#: What ``zmq.auth.create_certificates`` names the two files of a key pair.
PUBLIC_KEY_SUFFIX = ".key"
SECRET_KEY_SUFFIX = ".key_secret"
_Z85_KEY_LENGTH = 40

#: Why a publisher refused a peer's handshake (label ``reason`` of the counts).
REFUSAL_REASONS = ("unknown_key", "no_key", "wrong_server_key", "closed", "protocol")
#: Why a gateway's handshake with its publisher failed.
CLIENT_FAILURE_REASONS = ("key_refused", "mechanism_mismatch", "closed", "protocol")
#: The socket monitor events a handshake failure shows as.
HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_WATCH_POLL_MS = 100


class ZmqKeyError(ConfigError):
    """A key file or a CURVE setting cannot be used; the message names the setting and the
    file, and says what to do."""


@dataclass(frozen=True, repr=False)
class KeyPair:
    """One end's CURVE keys, Z85-encoded (40 characters each). Never printed whole."""

    public: bytes
    secret: bytes

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.decode()!r})"


# -- key files ---------------------------------------------------------------------------------

def generate_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """Make ``NAME.key`` and ``NAME.key_secret`` in ``directory`` (created if missing, mode
    700); the secret file is readable by its owner only (600) from the start.

    Returns:
        The public and the secret key file.

    Raises:
        ZmqKeyError: ``name`` is not a plain file name, or a file of that pair exists already
            (keys are never overwritten).
    """
    if not name or name != Path(name).name or name.startswith("."):
        raise ZmqKeyError(f"bad key name {name!r}: give a plain file name such as "
                          "'publisher' or 'gateway-1'")
    public, secret = (directory / (name + PUBLIC_KEY_SUFFIX),
                      directory / (name + SECRET_KEY_SUFFIX))
    for path in (public, secret):
        if path.exists():
            raise ZmqKeyError(f"{path} exists already: keys are never overwritten (remove it "
                              "first, or choose another name)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    previous = os.umask(0o077)  # the secret file is never readable by others, even briefly
    try:
        zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(previous)
    public.chmod(0o644)  # the public half is meant to be copied
    return public, secret


def load_key_pair(path: str, setting: str) -> KeyPair:
    """The key pair in a ``NAME.key_secret`` file; warns if every user may read it.

    Raises:
        ZmqKeyError: the file is missing, unreadable, not a ZeroMQ certificate, or holds only
            a public key.
    """
    public, secret = _load_certificate(path, setting)
    if secret is None:
        raise ZmqKeyError(f"{setting} file {path} holds only a public key: give the "
                          f"NAME{SECRET_KEY_SUFFIX} file of the key pair (argos-keys generate "
                          "NAME makes both)")
    warn_if_readable_by_others(path, "zmq_key_readable", "the ZeroMQ CURVE secret key", log)
    return KeyPair(public, secret)


def load_public_key(path: str, setting: str) -> bytes:
    """The public key (Z85) in a ``NAME.key`` (or ``NAME.key_secret``) file.

    Raises:
        ZmqKeyError: the file is missing, unreadable or not a ZeroMQ certificate.
    """
    return _load_certificate(path, setting)[0]


def _load_certificate(path: str, setting: str) -> tuple[bytes, bytes | None]:
    if not os.path.isfile(path):
        raise ZmqKeyError(f"{setting} file {path} does not exist (make keys with argos-keys "
                          "generate NAME; docs/zmq.md)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise ZmqKeyError(f"cannot read {setting} file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ZmqKeyError(f"{setting} file {path} is not a ZeroMQ key file ({exc}): make "
                          "keys with argos-keys generate NAME") from exc
    for key in (public, secret):
        if key is not None and len(key) != _Z85_KEY_LENGTH:
            raise ZmqKeyError(f"{setting} file {path} holds a key of {len(key)} characters, "
                              f"not {_Z85_KEY_LENGTH}: make keys with argos-keys generate NAME")
    return public, secret


class AllowedKeys:
    """The public keys of the gateways a publisher lets in: the ``NAME.key`` files of one
    directory. The directory is read again when it changes (a file added, removed or renamed),
    so a gateway is added or revoked without restarting the flowgraph; a gateway already
    connected keeps its connection until it reconnects.

    Args:
        directory: the ``zmq_allowed_keys`` directory.

    Raises:
        ZmqKeyError: it is not a directory, or holds no key file.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._names: dict[bytes, str] = {}
        self._lock = threading.Lock()
        self._mtime_ns = self._stat()
        self._names = self._read()
        if not self._names:
            raise ZmqKeyError(f"zmq_allowed_keys directory {directory} holds no "
                              f"NAME{PUBLIC_KEY_SUFFIX} file: copy there the public key of "
                              "each gateway allowed to subscribe (argos-keys generate NAME, on "
                              "the gateway)")

    def _stat(self) -> int:
        try:
            return os.stat(self.directory).st_mtime_ns
        except OSError as exc:
            raise ZmqKeyError(f"cannot read zmq_allowed_keys directory {self.directory}: "
                              f"{exc.strerror or exc}") from exc

    def _read(self) -> dict[bytes, str]:
        if not os.path.isdir(self.directory):
            raise ZmqKeyError(f"zmq_allowed_keys {self.directory} is not a directory: give "
                              "the directory of the gateways' public keys")
        names: dict[bytes, str] = {}
        for entry in sorted(os.listdir(self.directory)):
            if not entry.endswith(PUBLIC_KEY_SUFFIX):
                continue
            path = os.path.join(self.directory, entry)
            try:
                names[load_public_key(path, "zmq_allowed_keys")] = entry
            except ZmqKeyError as exc:
                log.warning("event=zmq_allowed_key_skipped %s", exc)
        return names

    def name_of(self, public_key: bytes) -> str | None:
        """The file that allows ``public_key`` (Z85), or None; reads the directory again first
        if it changed since the last look."""
        with self._lock:
            try:
                mtime_ns = self._stat()
                if mtime_ns != self._mtime_ns:
                    self._names, self._mtime_ns = self._read(), mtime_ns
                    log.info("event=zmq_allowed_keys_reloaded directory=%s keys=%d",
                             self.directory, len(self._names))
            except ZmqKeyError as exc:  # gone or unreadable now: keep what was allowed
                log.warning("event=zmq_allowed_keys_unreadable %s", exc)
            return self._names.get(public_key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._names)


# -- plain or CURVE ----------------------------------------------------------------------------

def is_local_endpoint(endpoint: str) -> bool:
    """Whether only this machine can reach ``endpoint``: ``ipc://``, ``inproc://``, or
    ``tcp://`` on a loopback address (127.0.0.0/8, ::1, localhost, the interface ``lo``)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].rsplit(";", 1)[-1].strip("[]")  # "source;host" on connect
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", a host name or an interface other than lo
        return False


def check_plain(endpoint: str, trusted_network: bool, role: str) -> None:
    """Refuse plain ZeroMQ on an endpoint other machines can reach, unless the network is
    declared trusted.

    Args:
        endpoint: where the publisher binds or the gateway connects.
        trusted_network: the ``zmq_trusted_network`` setting.
        role: "publisher" or "gateway" (the settings named in the error differ).

    Raises:
        ConfigError: plain ZeroMQ is not allowed there; the message names the settings.
    """
    if trusted_network or is_local_endpoint(endpoint) or "://" not in endpoint:
        return  # (not an endpoint at all: binding or connecting says so)
    if role == "publisher":
        raise ConfigError(
            f"refusing to publish plain ZeroMQ on {endpoint}: other machines can reach it, "
            "and without CURVE anyone there could read the spectrum or pose as this "
            "publisher. Set zmq_secret_key and zmq_allowed_keys (keys from argos-keys, "
            "docs/zmq.md), or bind to 127.0.0.1 or ipc://, or set zmq_trusted_network if "
            "this network is trusted")
    raise ConfigError(
        f"refusing to subscribe over plain ZeroMQ to {endpoint}: it is not on this machine, "
        "and without CURVE anyone on the network could read the spectrum or pose as the "
        "publisher. Set zmq_secret_key and zmq_server_key (keys from argos-keys, "
        "docs/zmq.md), or set zmq_trusted_network if the network to the publisher is trusted")


def secure_client(socket: zmq.Socket[bytes], keys: KeyPair, server_key: bytes) -> None:
    """Make ``socket`` a CURVE client with ``keys`` that accepts only the server holding
    ``server_key`` (call before connecting)."""
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    socket.setsockopt(zmq.CURVE_SERVERKEY, server_key)


def handshake_failure(event: Mapping[str, Any]) -> str | None:
    """The reason (of :data:`CLIENT_FAILURE_REASONS`) a gateway's socket monitor event says
    its handshake with the publisher failed for, or None for another event."""
    kind, value = event["event"], event["value"]
    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return "key_refused"
    if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return ("mechanism_mismatch" if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
                else "protocol")
    if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return "closed"
    return None


def _refusal(event: Mapping[str, Any]) -> str | None:
    """The reason (of :data:`REFUSAL_REASONS`) a publisher's monitor event says it refused a
    peer for, or None for another event."""
    kind, value = event["event"], event["value"]
    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return "unknown_key"
    if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "no_key"
        if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return "wrong_server_key"
        return "protocol"
    if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return "closed"
    return None


# -- the publisher's side ----------------------------------------------------------------------

class CurveServer:
    """The CURVE server side of one publisher socket: its keys, the ZAP handler that lets in
    the allowed gateways, and the watch that counts and logs every refused handshake.

    The ZAP handler and the watch run on threads of their own; the socket's sends never wait
    for them (ZeroMQ's I/O thread asks the handler about a new connection while frames keep
    going to the gateways already in). Use: :meth:`secure` the socket before binding it,
    :meth:`close` after closing it.

    Args:
        context: the publisher's own context (ZAP handlers are per context, one per
            publisher).
        keys: the publisher's key pair (``zmq_secret_key``).
        allowed: the gateways' public keys (``zmq_allowed_keys``).
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], keys: KeyPair,
                 allowed: AllowedKeys) -> None:
        self.keys = keys
        self.allowed = allowed
        self.events = EventLog(log, bursts={"zmq_gateway_allowed": 20})
        self._refused: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._context = context
        self._authenticator = ThreadAuthenticator(context, log=logging.getLogger("zmq.auth"))
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self._endpoint = ""

    def secure(self, socket: zmq.Socket[bytes]) -> None:
        """Start the ZAP handler (before any peer can connect) and make ``socket`` a CURVE
        server with the publisher's keys whose handshakes are watched."""
        self._authenticator.start()
        self._authenticator.configure_curve_callback("*", self)
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        socket.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
        monitor = socket.get_monitor_socket(HANDSHAKE_EVENTS)
        self._watch = threading.Thread(target=self._watch_handshakes, args=(monitor,),
                                       name="argos-zmq-handshakes", daemon=True)
        self._watch.start()

    def bound(self, endpoint: str) -> None:
        """Say where the socket was bound (for the log lines)."""
        self._endpoint = endpoint

    def callback(self, domain: str, public_key: bytes) -> bool:
        """ZAP: whether the gateway with ``public_key`` (Z85) may subscribe (the handler
        thread calls this for every CURVE handshake)."""
        name = self.allowed.name_of(public_key)
        if name is None:
            self.events.log(logging.WARNING, "zmq_refused",
                            "event=zmq_refused reason=unknown_key endpoint=%s key=%s: a peer's "
                            "CURVE key is not in zmq_allowed_keys %s (if it is one of your "
                            "gateways, copy its NAME%s there)", self._endpoint,
                            quoted(public_key.decode(errors="replace")),
                            self.allowed.directory, PUBLIC_KEY_SUFFIX)
            return False
        self.events.log(logging.INFO, "zmq_gateway_allowed",
                        "event=zmq_gateway_allowed endpoint=%s key_file=%s", self._endpoint,
                        quoted(name))
        return True

    def refused(self) -> dict[str, int]:
        """Peers refused since the start, by reason (:data:`REFUSAL_REASONS`)."""
        with self._lock:
            return dict(self._refused)

    def _watch_handshakes(self, monitor: zmq.Socket[bytes]) -> None:
        try:
            while not self._stop.is_set():
                if not monitor.poll(_WATCH_POLL_MS):
                    continue
                try:
                    event = recv_monitor_message(monitor)
                except zmq.ZMQError:
                    return
                reason = _refusal(event)
                if reason is None:
                    continue
                with self._lock:
                    self._refused[reason] += 1
                if reason != "unknown_key":  # the ZAP handler logged it, with the key
                    self.events.log(logging.WARNING, "zmq_refused",
                                    "event=zmq_refused reason=%s endpoint=%s: %s", reason,
                                    self._endpoint, _REFUSAL_HELP[reason])
        finally:
            monitor.close()

    def close(self) -> None:
        """Stop the watch and the ZAP handler (after the socket is closed). Idempotent."""
        self._stop.set()
        if self._watch is not None:
            self._watch.join()
            self._watch = None
        self._authenticator.stop()
        self.events.flush()


_REFUSAL_HELP = {
    "no_key": "a peer without CURVE keys tried to subscribe (a gateway needs zmq_secret_key "
              "and zmq_server_key)",
    "wrong_server_key": "a peer's CURVE handshake was made for another server key (its "
                        "zmq_server_key is not this publisher's public key)",
    "closed": "a peer closed its connection during the CURVE handshake",
    "protocol": "a peer broke the ZeroMQ handshake protocol",
}
