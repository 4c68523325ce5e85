# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio block that publishes gpsd position reports as messages."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pmt
from gnuradio import gr

from gr_argos.gpsd import DEFAULT_PORT, WATCH_COMMAND, GpsdReportParser, disconnected_report

__all__ = ["gpsd_source"]

#: How long one connection attempt may take before it counts as failed.
CONNECT_TIMEOUT_S = 5.0
#: How often the reader wakes up to check whether the block was stopped.
_POLL_S = 0.25


class gpsd_source(gr.basic_block):
    """Position, time and satellite counts from gpsd, as PMT dict messages on port ``gps``.

    The block has no stream ports. While the flowgraph runs, a thread connects to gpsd over
    TCP, asks for JSON reports (``?WATCH={"enable":true,"json":true};``) and publishes one
    message per gpsd ``TPV`` report: ``connected``, ``mode`` (0/1 no fix, 2 2D, 3 3D),
    ``fix``, ``time`` (ISO 8601 UTC) and ``time_ns``, ``lat``, ``lon`` (degrees),
    ``alt_m``, ``speed_mps``, ``track_deg``, ``satellites_used``, ``satellites_visible``
    (see :mod:`gr_argos.gpsd`). Without a fix there is no ``lat``/``lon``. Connect ``gps``
    to a websocket_sink's ``msg`` port with msg_channel "gps" to send them to clients.

    gpsd not running is not an error: the block logs that it will retry and tries again every
    ``reconnect_interval_s`` seconds; when a connection is lost it publishes one report with
    ``connected`` false and no fix, then reconnects the same way.

    Args:
        host: host name or address of gpsd.
        port: gpsd's TCP port (2947 is gpsd's default).
        reconnect_interval_s: seconds between connection attempts while gpsd is unreachable.
    """

    GPS_PORT = pmt.intern("gps")

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        reconnect_interval_s: float = 2.0,
    ) -> None:
        gr.basic_block.__init__(self, name="gpsd_source", in_sig=None, out_sig=None)
        if not str(host):
            raise ValueError("host must name gpsd's machine, e.g. 127.0.0.1")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"port must be in 1..65535, got {port}")
        if not float(reconnect_interval_s) > 0:
            raise ValueError(f"reconnect_interval_s must be positive, got {reconnect_interval_s} s")
        self.host = str(host)
        self.port = int(port)
        self.reconnect_interval_s = float(reconnect_interval_s)
        self.message_port_register_out(self.GPS_PORT)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._socket_lock = threading.Lock()

    @property
    def address(self) -> str:
        """``host:port`` of gpsd, for messages."""
        return f"{self.host}:{self.port}"

    def start(self) -> bool:
        """Start the reader thread. Never raises: gpsd is reached (or not) in the thread."""
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"argos-gpsd-{self.address}", daemon=True)
            self._thread.start()
        return True

    def stop(self) -> bool:
        """Close the connection and end the reader thread."""
        self._stopping.set()
        with self._socket_lock:
            if self._socket is not None:
                try:
                    self._socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by gpsd
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=CONNECT_TIMEOUT_S + 1.0)
        return True

    # -- the reader thread -----------------------------------------------------------------

    def _run(self) -> None:
        warned = False
        while not self._stopping.is_set():
            connected = False
            try:
                with socket.create_connection((self.host, self.port),
                                              timeout=CONNECT_TIMEOUT_S) as sock:
                    with self._socket_lock:
                        self._socket = sock
                    if self._stopping.is_set():
                        break
                    sock.sendall(WATCH_COMMAND)
                    connected = True
                    warned = False
                    self.logger.info(f"connected to gpsd at {self.address}")
                    self._read(sock)
            except OSError as exc:
                if self._stopping.is_set():
                    break
                if connected:
                    self._publish(disconnected_report())
                    self.logger.warn(f"lost gpsd at {self.address} ({exc}): reconnecting "
                                     f"every {self.reconnect_interval_s:g} s")
                elif not warned:
                    self.logger.warn(f"cannot reach gpsd at {self.address} ({exc}): is it "
                                     f"running? Retrying every {self.reconnect_interval_s:g} s")
                    warned = True
            finally:
                with self._socket_lock:
                    self._socket = None
            self._stopping.wait(self.reconnect_interval_s)

    def _read(self, sock: socket.socket) -> None:
        """Publish the reports read from ``sock`` until the block stops; OSError on loss."""
        parser = GpsdReportParser()
        sock.settimeout(_POLL_S)
        while not self._stopping.is_set():
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise ConnectionResetError("gpsd closed the connection")
            bad_before = parser.bad_lines
            for report in parser.feed(data):
                self._publish(report)
            if parser.bad_lines > bad_before:
                self.logger.warn(f"skipped {parser.bad_lines - bad_before} line(s) from "
                                 f"{self.address} that are not gpsd JSON")

    def _publish(self, report: dict[str, Any]) -> None:
        self.message_port_pub(self.GPS_PORT, pmt.to_pmt(report))
