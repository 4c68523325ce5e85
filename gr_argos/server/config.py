# SPDX-License-Identifier: GPL-3.0-or-later
"""The server's settings, each declared once, and the error a server raises when it cannot start.

These declarations are the sink's server parameters, the GRC block's, ``argos-spectrum``'s
and ``argos-gateway``'s flags and YAML keys (see :mod:`gr_argos.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gr_argos.protocol import ENCODING_CODES
from gr_argos.server.control import check_freq_ranges
from gr_argos.settings import at_least, in_range, non_negative, positive, setting, validate

__all__ = ["CONTROL", "RECORDING", "SECURITY", "SERVER", "ServerConfig", "ServerError",
           "parse_origins"]

#: ``--help`` sections.
SERVER = "server"
SECURITY = "security and limits (docs/operations.md)"
CONTROL = "control of the radio from clients (docs/control.md)"
RECORDING = "recording (docs/recording.md)"


class ServerError(RuntimeError):
    """The server could not start; the message says why and what to do."""


def parse_origins(value: str) -> tuple[str, ...]:
    """An origin allowlist from a comma-separated string; blanks are ignored.

    A trailing ``/`` is removed, since browsers send ``https://host`` without one.
    """
    items = (item.strip().rstrip("/") for item in value.split(","))
    return tuple(item for item in items if item)


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one WebSocket server (see each field's help; ``--help`` shows them all).

    Raises:
        ConfigError: a value of the wrong kind or out of range (naming the setting).
    """

    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 = every interface)",
                        group=SERVER)
    port: int = setting(8765, "TCP port for WebSocket, browser, /healthz and /metrics "
                        "(0 = any free port)",
                        check=in_range(0, 65535, "0 = any free port"), group=SERVER)
    queue_depth: int = setting(8, "spectrum frames queued per client before its oldest is "
                               "dropped", check=at_least(1), group=SERVER)
    message_queue_depth: int = setting(256, "JSON messages queued per client before it is "
                                       "closed as too slow", check=at_least(1), group=SERVER)
    ping_interval_s: float = setting(20.0, "seconds between WebSocket pings (0 = off)",
                                     check=non_negative, aliases=("ping_interval",),
                                     group=SERVER)
    ping_timeout_s: float = setting(20.0, "seconds without a pong before a client is dropped; "
                                    "with pings on, one that takes no data for ping_interval_s "
                                    "+ ping_timeout_s is dropped too", check=non_negative,
                                    aliases=("ping_timeout",), group=SERVER)
    write_limit: int = setting(32 * 1024, "bytes a client's transport may buffer before the "
                               "server queues for it instead", check=at_least(1024),
                               group=SERVER)
    reuse_port: bool = setting(False, "set SO_REUSEPORT so other processes can serve the same "
                               "port", group=SERVER)
    resume_buffer_bytes: int = setting(16 * 2**20, "bytes of each stream's newest frames "
                                       "(with the formats clients got) kept for clients that "
                                       "reconnect (resume_from) or ask for the last seconds "
                                       "(backfill_s); 16 MiB holds about 15 s of 4096 float32 "
                                       "bins at 30 fps (0 = none)", check=at_least(0),
                                       group=SERVER)
    resume_fps: float = setting(300.0, "frames per second sent from that ring to every "
                                "catching-up client together, beside the live stream",
                                check=positive, group=SERVER)
    permessage_deflate: bool = setting(False, "negotiate permessage-deflate with clients that "
                                       "offer it (compatibility; costs CPU and memory per "
                                       "client); never for ?compress=1 clients", group=SERVER)
    allowed_origins: str = setting("", "comma-separated browser origins allowed to connect, "
                                   "exact scheme://host[:port]; empty = only this server's "
                                   "own pages (same origin); * = any origin",
                                   group=SECURITY)
    allowed_hosts: str = setting("", "comma-separated host names clients may reach this server "
                                 "by (the Host header); empty = IP addresses, localhost, this "
                                 "machine's names and the hosts of allowed_origins; * = any",
                                 group=SECURITY)
    token: str = setting("", "shared secret clients must present (Authorization: Bearer "
                         "header or a first auth message; empty = no authentication); never "
                         "logged", group=SECURITY, secret=True)
    allow_query_token: bool = setting(False, "also accept the token as ?token= in the URL (it "
                                      "may land in proxy logs)", group=SECURITY)
    max_clients: int = setting(256, "clients served at once (0 = no limit); more get 503",
                               check=at_least(0), group=SECURITY)
    max_clients_per_ip: int = setting(32, "clients per address (0 = no limit); more get 429",
                                      check=at_least(0), group=SECURITY)
    handshake_timeout_s: float = setting(10.0, "seconds to complete the WebSocket handshake",
                                         check=positive, aliases=("handshake_timeout",),
                                         group=SECURITY)
    max_pending_handshakes: int = setting(128, "connections still in their WebSocket "
                                          "handshake at once (0 = no limit); past it, the "
                                          "oldest of them is dropped for a new one",
                                          check=at_least(0), group=SECURITY)
    max_pending_handshakes_per_ip: int = setting(16, "of those, per address (0 = no limit); "
                                                 "past it, new ones from that address are "
                                                 "dropped unread", check=at_least(0),
                                                 group=SECURITY)
    auth_timeout_s: float = setting(5.0, "seconds a connection without the token in its "
                                    "request has to send it in an auth message",
                                    check=positive, group=SECURITY)
    max_unauthenticated: int = setting(64, "connections waiting to send their auth message "
                                       "at once (0 = no limit); they never take clients' "
                                       "places", check=at_least(0), group=SECURITY)
    max_unauthenticated_per_ip: int = setting(8, "of those, per address (0 = no limit)",
                                              check=at_least(0), group=SECURITY)
    max_messages_per_s: float = setting(10.0, "messages per second a client may send (0 = no "
                                        "limit); over it: closed with 1008",
                                        check=non_negative, group=SECURITY)
    max_messages_burst: int = setting(20, "messages a client may send at once above that rate",
                                      check=at_least(1), group=SECURITY)
    max_formats: int = setting(8, "distinct frame formats (encoding, compression, uint8 step) "
                               "clients may get at once, each encoded once per frame (0 = no "
                               "limit); a client asking for another gets the nearest one in "
                               "use", check=at_least(0), group=SECURITY)
    max_views_per_stream: int = setting(32, "distinct views (zoom and pan at some resolution) "
                                        "clients may get of one stream at once, each made "
                                        "once per frame (0 = no limit); a client asking for "
                                        "another gets the nearest one in use",
                                        check=at_least(0), group=SECURITY)
    max_deflate_clients: int = setting(32, "with permessage_deflate: clients it is negotiated "
                                       "with at once (its cost is per client; 0 = no limit); "
                                       "others get uncompressed frames",
                                       check=at_least(0), group=SECURITY)
    max_pings_per_s: float = setting(5.0, "WebSocket pings per second a client may send (0 = "
                                     "no limit; a burst of 10 more); over it: closed with "
                                     "1008", check=non_negative, group=SECURITY)
    tls_cert: str = setting("", "PEM certificate (chain) file to serve TLS with: wss:// and "
                            "https:// (empty = plain ws:// and http://); needs tls_key",
                            group=SECURITY)
    tls_key: str = setting("", "PEM private key file of tls_cert (unencrypted; chmod 600)",
                           group=SECURITY)
    operator_tokens: tuple[str, ...] = setting(
        (), "tokens of operators: a client that presents one may watch, take the control "
        "lease and tune the radio; never logged (put them in the YAML file, not on the "
        "command line)", group=CONTROL, secret=True)
    admin_tokens: tuple[str, ...] = setting(
        (), "tokens of admins: operators who may also take the control lease from another "
        "client; never logged", group=CONTROL, secret=True)
    control_without_token: str = setting(
        "localhost", "who may control the radio when no operator_tokens or admin_tokens are "
        "set: localhost (clients on this machine, not through a proxy), anyone, or nobody",
        choices=("localhost", "anyone", "nobody"), group=CONTROL)
    control_idle_timeout_s: float = setting(
        300.0, "seconds without a change after which the control lease ends by itself",
        check=positive, group=CONTROL)
    control_freq_ranges: str = setting(
        "", "comma-separated frequency ranges clients may tune to, LOW-HIGH in Hz (e.g. "
        "88e6-108e6,430e6-440e6; empty = the device's whole range)",
        check=check_freq_ranges, group=CONTROL)
    control_max_gain: float = setting(
        0.0, "the highest gain in dB clients may set on each gain stage (0 = the device's "
        "maximum)", check=non_negative, group=CONTROL)
    control_allow_amp: bool = setting(
        False, "clients may switch on a HackRF's RF amplifier (+14 dB; strong signals "
        "nearby can damage it)", group=CONTROL)
    max_tunes_per_s: float = setting(
        2.0, "changes per second a client may ask for (a burst of 5 more; 0 = no limit); "
        "over it they are refused", check=non_negative, group=CONTROL)
    record_dir: str = setting("", "directory to record every frame and message published to "
                              "(rotating .args files in the wire format, with an index and a "
                              "JSON sidecar each; created if missing); empty = no recording",
                              group=RECORDING)
    record_encoding: str = setting("float32", "encoding of the recorded frames: float32 "
                                   "(exactly as published), int16 or uint8 (smaller, "
                                   "re-encoded on the recorder's thread)",
                                   choices=tuple(ENCODING_CODES), group=RECORDING)
    record_compress: bool = setting(False, "deflate the recorded frames' payloads",
                                    group=RECORDING)
    record_max_file_bytes: int = setting(256 * 2**20, "start a new file past this size",
                                         check=at_least(4096), group=RECORDING)
    record_max_file_s: float = setting(3600.0, "start a new file after this many seconds",
                                       check=positive, group=RECORDING)
    record_max_total_bytes: int = setting(0, "delete the oldest files of record_dir past this "
                                          "many bytes in all (0 = keep every file)",
                                          check=at_least(0), group=RECORDING)
    record_fsync_s: float = setting(1.0, "seconds between fsyncs of the file being written "
                                    "(a power cut loses at most about that much; 0 = after "
                                    "every write)", check=non_negative, group=RECORDING)
    record_buffer_bytes: int = setting(16 * 2**20, "bytes of frames and messages waiting for "
                                       "the disk; past it they are dropped, counted as a gap "
                                       "in the file's sidecar (the radio never waits)",
                                       check=at_least(65536), group=RECORDING)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def origins(self) -> tuple[str, ...]:
        """The origin allowlist (empty: any origin)."""
        return parse_origins(self.allowed_origins)

    @property
    def role_tokens(self) -> bool:
        """Whether operators or admins are told apart by tokens."""
        return bool(self.operator_tokens or self.admin_tokens)

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS (wss://, https://)."""
        return bool(self.tls_cert or self.tls_key)
