# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for gr_argos.gpsd: gpsd's JSON lines in, position reports out, no sockets.

The lines below are what gpsd 3.22 sent for tests/data/drive.nmea (replayed by gpsfake).
"""

from __future__ import annotations

import pytest

from gr_argos.gpsd import (WATCH_COMMAND, GpsdReportParser, disconnected_report,
                           parse_address)

VERSION = b'{"class":"VERSION","release":"3.22","rev":"3.22","proto_major":3,"proto_minor":14}'
WATCH = (b'{"class":"WATCH","enable":true,"json":true,"nmea":false,"raw":0,"scaled":false,'
         b'"timing":false,"split24":false,"pps":false}')
SKY_SEARCHING = (
    b'{"class":"SKY","device":"/dev/pts/1","nSat":10,"uSat":0,"satellites":['
    b'{"PRN":2,"el":45.0,"az":120.0,"ss":0.0,"used":false,"gnssid":0,"svid":2},'
    b'{"PRN":5,"el":62.0,"az":230.0,"ss":0.0,"used":false,"gnssid":0,"svid":5}]}')
SKY_TRACKING = (
    b'{"class":"SKY","device":"/dev/pts/1","hdop":0.92,"satellites":['
    b'{"PRN":2,"el":45.0,"az":120.0,"ss":41.0,"used":true,"gnssid":0,"svid":2},'
    b'{"PRN":5,"el":62.0,"az":230.0,"ss":44.0,"used":true,"gnssid":0,"svid":5},'
    b'{"PRN":18,"el":12.0,"az":200.0,"ss":29.0,"used":false,"gnssid":0,"svid":18}]}')
TPV_NO_FIX = b'{"class":"TPV","device":"/dev/pts/1","mode":1,"time":"2024-06-15T12:00:01.000Z"}'
TPV_3D = (b'{"class":"TPV","device":"/dev/pts/1","mode":3,"time":"2024-06-15T12:00:06.000Z",'
          b'"ept":0.005,"lat":52.516320333,"lon":13.378065333,"altHAE":74.1000,'
          b'"altMSL":34.4000,"alt":34.4000,"track":79.0000,"magtrack":83.0518,"magvar":4.1,'
          b'"speed":12.500,"geoidSep":39.700,"eph":17.480}')
TPV_2D = (b'{"class":"TPV","device":"/dev/pts/1","mode":2,"time":"2024-06-15T12:00:06.000Z",'
          b'"lat":52.516320333,"lon":13.378065333,"alt":34.4,"speed":12.500}')

TIME_NS_12_00_06 = 1_718_452_806_000_000_000  # 2024-06-15T12:00:06Z


def lines(*objects: bytes) -> bytes:
    return b"".join(obj + b"\r\n" for obj in objects)


def test_watch_command_asks_for_json_reports() -> None:
    """The command sent after connecting is gpsd's WATCH with JSON on, one line."""
    assert WATCH_COMMAND == b'?WATCH={"enable":true,"json":true};\n'


def test_3d_fix_becomes_a_full_report_with_the_latest_sky_counts() -> None:
    """A mode 3 TPV gives position, MSL altitude, speed, track, time, and the satellite
    counts of the SKY before it; VERSION and WATCH give nothing."""
    parser = GpsdReportParser()

    reports = parser.feed(lines(VERSION, WATCH, SKY_TRACKING, TPV_3D))

    assert reports == [{
        "connected": True, "mode": 3, "fix": True,
        "time": "2024-06-15T12:00:06.000Z", "time_ns": TIME_NS_12_00_06,
        "lat": 52.516320333, "lon": 13.378065333, "alt_m": 34.4,
        "speed_mps": 12.5, "track_deg": 79.0,
        "satellites_used": 2, "satellites_visible": 3,
    }]


def test_no_fix_reports_mode_and_time_but_no_position() -> None:
    """A mode 1 TPV is reported as no fix, with its time and satellites, and no lat/lon."""
    parser = GpsdReportParser()

    (report,) = parser.feed(lines(SKY_SEARCHING, TPV_NO_FIX))

    assert report["fix"] is False and report["mode"] == 1
    assert report["time"] == "2024-06-15T12:00:01.000Z"
    assert report["satellites_used"] == 0 and report["satellites_visible"] == 10
    assert "lat" not in report and "lon" not in report and "alt_m" not in report


def test_2d_fix_has_a_position_but_no_altitude() -> None:
    """A 2D fix gives lat/lon; its altitude is not a measurement and is left out."""
    (report,) = GpsdReportParser().feed(lines(TPV_2D))

    assert report["fix"] is True and report["mode"] == 2
    assert (report["lat"], report["lon"]) == (52.516320333, 13.378065333)
    assert "alt_m" not in report


def test_a_fix_mode_without_coordinates_is_no_fix() -> None:
    """A TPV claiming mode 3 without lat/lon is reported with fix false."""
    (report,) = GpsdReportParser().feed(lines(b'{"class":"TPV","mode":3}'))

    assert report == {"connected": True, "mode": 3, "fix": False}


def test_lines_split_across_reads_are_joined() -> None:
    """Bytes may arrive in any chunks; a report comes once its line is complete."""
    parser = GpsdReportParser()
    data = lines(SKY_TRACKING, TPV_3D)
    reports = []
    for start in range(0, len(data), 7):
        reports += parser.feed(data[start:start + 7])

    assert [r["lat"] for r in reports] == [52.516320333]


def test_garbage_lines_are_counted_and_skipped() -> None:
    """Lines that are not JSON objects do not stop the reports after them."""
    parser = GpsdReportParser()

    reports = parser.feed(lines(b"$GPGGA,not,json", b"[1, 2]", TPV_3D))

    assert parser.bad_lines == 2
    assert len(reports) == 1


def test_disconnected_report_says_no_fix() -> None:
    """The report for a lost gpsd has connected false and no fix or position."""
    assert disconnected_report() == {"connected": False, "mode": 0, "fix": False}


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:2947", ("127.0.0.1", 2947)),
    ("gps.local:3000", ("gps.local", 3000)),
    ("[::1]:2947", ("::1", 2947)),
])
def test_parse_address_splits_host_and_port(text: str, expected: tuple[str, int]) -> None:
    """HOST:PORT and [IPv6]:PORT give host and port."""
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["nohostport", ":2947", "host:", "host:0", "host:70000",
                                  "host:port"])
def test_parse_address_refuses_bad_values_with_an_example(text: str) -> None:
    """A value without host or a valid port is refused, the message showing the form."""
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_address(text)
