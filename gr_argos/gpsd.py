# SPDX-License-Identifier: GPL-3.0-or-later
"""The gpsd JSON protocol, as plain code: the watch command, addresses and position reports.

gpsd (https://gpsd.io/gpsd_json.html) answers ``?WATCH={"enable":true,"json":true};`` with one
JSON object per line. :class:`GpsdReportParser` is fed the bytes read from the socket and
returns one position report per ``TPV`` object, with the satellite counts of the latest
``SKY`` object. It opens no socket and imports no GNU Radio: ``gpsd_source`` owns the
connection, and the tests feed the parser recorded lines.

A report is a flat dict of JSON-friendly values, the body of a gr-argos ``gps`` message:

    connected           bool   true while gpsd is reachable
    mode                int    0 unknown, 1 no fix, 2 2D fix, 3 3D fix (gpsd's TPV mode)
    fix                 bool   mode >= 2: lat/lon are a position
    time                str    UTC of the fix as gpsd gives it ("2024-06-15T12:00:04.000Z")
    time_ns             int    the same time in ns since the Unix epoch
    lat, lon            float  degrees (north, east positive); only with a fix
    alt_m               float  altitude above mean sea level in m; only with a 3D fix
    speed_mps           float  ground speed in m/s
    track_deg           float  course over ground in degrees from true north
    satellites_used     int    satellites in the solution (latest SKY)
    satellites_visible  int    satellites in view (latest SKY)

A key is left out when gpsd did not send the value: nothing is invented, so a report without
a fix has no ``lat``/``lon``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, TypeGuard

__all__ = [
    "DEFAULT_PORT",
    "WATCH_COMMAND",
    "GpsdReportParser",
    "disconnected_report",
    "parse_address",
]

DEFAULT_PORT = 2947
#: Turns on JSON reports for every device gpsd knows (and any it finds later).
WATCH_COMMAND = b'?WATCH={"enable":true,"json":true};\n'
#: gpsd's longest objects (SKY with many satellites) are a few kB; a longer line is garbage.
MAX_LINE_BYTES = 65536

# TPV field -> report key, for the plain numbers copied as they are.
_TPV_NUMBERS = {"speed": "speed_mps", "track": "track_deg"}


def parse_address(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[IPv6]:PORT`` for IPv6) into host and port.

    Raises:
        ValueError: no host, no port, or a port outside 1..65535.
    """
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT of a gpsd, e.g. 127.0.0.1:{DEFAULT_PORT}, "
                         f"got {text!r}")
    return host, int(port_text)


def disconnected_report() -> dict[str, Any]:
    """The report that says gpsd cannot be reached: no fix, nothing else known."""
    return {"connected": False, "mode": 0, "fix": False}


class GpsdReportParser:
    """Turns the bytes gpsd sends into position reports (see the module docstring).

    Feed it whatever ``recv()`` returned; lines split across reads are joined. Lines that are
    not JSON objects are counted in ``bad_lines`` and skipped. Use a new parser for each
    connection.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._satellites_used: int | None = None
        self._satellites_visible: int | None = None
        self.bad_lines = 0

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Parse the complete lines in ``data`` (plus what was left over); return the reports."""
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE_BYTES:
            self._pending = b""
            self.bad_lines += 1
        reports = []
        for line in lines:
            if not line.strip():
                continue
            report = self.feed_line(line)
            if report is not None:
                reports.append(report)
        return reports

    def feed_line(self, line: bytes | str) -> dict[str, Any] | None:
        """Parse one JSON line; return a report for a TPV object, else None."""
        try:
            obj = json.loads(line)
        except ValueError:
            self.bad_lines += 1
            return None
        if not isinstance(obj, dict):
            self.bad_lines += 1
            return None
        kind = obj.get("class")
        if kind == "SKY":
            self._read_sky(obj)
        elif kind == "TPV":
            return self._report(obj)
        return None

    def _read_sky(self, sky: dict[str, Any]) -> None:
        satellites = sky.get("satellites")
        if isinstance(satellites, list):
            self._satellites_visible = len(satellites)
            self._satellites_used = sum(
                1 for sat in satellites if isinstance(sat, dict) and sat.get("used") is True)
        # Newer gpsd sends the counts too, also in SKY objects that carry no satellite list.
        if _is_count(sky.get("nSat")):
            self._satellites_visible = sky["nSat"]
        if _is_count(sky.get("uSat")):
            self._satellites_used = sky["uSat"]

    def _report(self, tpv: dict[str, Any]) -> dict[str, Any]:
        mode = tpv.get("mode")
        mode = mode if isinstance(mode, int) and 0 <= mode <= 3 else 0
        report: dict[str, Any] = {"connected": True, "mode": mode, "fix": mode >= 2}
        time_text = tpv.get("time")
        if isinstance(time_text, str):
            time_ns = _iso_to_ns(time_text)
            if time_ns is not None:
                report["time"] = time_text
                report["time_ns"] = time_ns
        if mode >= 2 and _is_number(tpv.get("lat")) and _is_number(tpv.get("lon")):
            report["lat"] = float(tpv["lat"])
            report["lon"] = float(tpv["lon"])
            # gpsd 3.20+ names the MSL altitude altMSL; "alt" is the older name for it.
            altitude = tpv.get("altMSL", tpv.get("alt"))
            if mode == 3 and _is_number(altitude):
                report["alt_m"] = float(altitude)
        else:
            report["fix"] = False  # a mode that claims a fix without a position is no fix
        for field, key in _TPV_NUMBERS.items():
            if _is_number(tpv.get(field)):
                report[key] = float(tpv[field])
        if self._satellites_used is not None:
            report["satellites_used"] = self._satellites_used
        if self._satellites_visible is not None:
            report["satellites_visible"] = self._satellites_visible
        return report


def _is_number(value: Any) -> TypeGuard[int | float]:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _iso_to_ns(text: str) -> int | None:
    """ns since the epoch for gpsd's ISO 8601 UTC time, or None if it is not one."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    whole = moment.replace(microsecond=0)
    return int(whole.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
