# SPDX-License-Identifier: GPL-3.0-or-later
"""Control of the radio by clients: roles, the lease, checked changes, audit and metrics.

The pure parts (gr_argos.server.control) are tested as plain code; the rest through a real
server and real websockets clients on 127.0.0.1, with a tuner that records what reaches the
"radio" (the flowgraph tuners are tested with real flowgraphs in tests/test_control_flowgraph.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import urllib.request
from typing import Any, AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect

from gr_argos.server import SpectrumServer
from gr_argos.server.control import (
    ADMIN,
    OPERATOR,
    VIEWER,
    Capability,
    ControlLease,
    check_tune,
    control_role,
    is_local,
    parse_freq_ranges,
    role_of,
)
from gr_argos.settings import ConfigError
from gr_argos.server.config import ServerConfig
from tests.server_helpers import WAIT_S, StartServer

VIEWER_TOKEN, OPERATOR_TOKEN, OTHER_OPERATOR, ADMIN_TOKEN = (
    "viewer-secret-1", "operator-secret-2", "operator-secret-3", "admin-secret-4")
HACKRF_LIKE = {"center_freq": Capability(float, 1e6, 6e9, unit=" Hz"),
               "lna_gain": Capability(int, 0, 40, 8, unit=" dB"),
               "amp": Capability(bool)}


# -- plain code --------------------------------------------------------------------------------

def test_a_token_gives_its_role_and_an_unknown_one_none() -> None:
    tokens = (VIEWER_TOKEN, (OPERATOR_TOKEN, OTHER_OPERATOR), (ADMIN_TOKEN,))
    assert [role_of(token, *tokens) for token in
            (VIEWER_TOKEN, OTHER_OPERATOR, ADMIN_TOKEN, "guess", "", None, 42)] == [
        VIEWER, OPERATOR, ADMIN, None, None, None, None]
    assert role_of("", "", (), ()) is None  # no token configured is no token to match


def test_who_may_control() -> None:
    """With role tokens only operators and admins; without, control_without_token decides
    (localhost: this machine, not through a proxy) and those allowed are admins."""
    assert control_role(OPERATOR, True, "localhost", False) == (OPERATOR, "")
    role, why = control_role(VIEWER, True, "anyone", True)
    assert role is None and "operator or admin token" in why
    assert control_role(None, False, "localhost", True) == (ADMIN, "")
    role, why = control_role(None, False, "localhost", False)
    assert role is None and "control_without_token" in why
    assert control_role(None, False, "anyone", False) == (ADMIN, "")
    assert control_role(None, False, "nobody", True)[0] is None
    assert is_local("127.0.0.1", False) and is_local("::1", False)
    assert not is_local("127.0.0.1", True) and not is_local("192.0.2.7", False)


def test_the_lease_is_held_by_one_client_until_released_taken_or_idle() -> None:
    now = [100.0]
    lease = ControlLease(idle_timeout_s=60, clock=lambda: now[0], wall_ns=lambda: 0)
    assert lease.acquire(1, "alice", OPERATOR) is None
    refusal = lease.acquire(2, "bob", OPERATOR)
    assert refusal is not None and "held by alice (operator)" in refusal
    assert lease.acquire(1, "alice", OPERATOR) is None  # again: still hers
    former = lease.take(3, "root", ADMIN)
    assert former is not None and former.name == "alice" and lease.holds(3)
    assert not lease.release(1) and lease.release(3) and lease.holder is None
    lease.acquire(2, "bob", OPERATOR)
    now[0] += 59
    lease.touch(2)  # a change renews it
    now[0] += 59
    assert lease.holds(2)
    now[0] += 60
    expired = lease.expire()
    assert expired is not None and expired.name == "bob" and lease.holder is None
    assert lease.acquire(1, "alice", OPERATOR) is None  # free again


def test_changes_are_checked_against_the_source_and_the_limits() -> None:
    ranges = parse_freq_ranges("430e6-440e6, 2.4e9-2.5e9")
    ok = check_tune({"center_freq": 433.92e6, "lna_gain": 16.0, "amp": False}, HACKRF_LIKE,
                    ranges, 32.0, False)
    assert ok == {"center_freq": 433.92e6, "lna_gain": 16, "amp": False}
    for fields, words in [
        ({}, "at least one"), ({"vga_gain": 10}, "cannot be changed on this source"),
        ({"center_freq": "433"}, "must be a number"), ({"center_freq": float("nan")}, "number"),
        ({"center_freq": 7e9}, "outside the device's range"),
        ({"center_freq": 100e6}, "outside the ranges allowed here (430-440 MHz, 2400-2500 MHz)"),
        ({"lna_gain": 40}, "control_max_gain of 32 dB"), ({"amp": True}, "control_allow_amp"),
        ({"amp": 1}, "true or false"), ({"lna_gain": True}, "must be a number"),
    ]:
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            check_tune(fields, HACKRF_LIKE, ranges, 32.0, False)
    assert check_tune({"amp": True}, HACKRF_LIKE, (), 0.0, True) == {"amp": True}


def test_a_choice_takes_only_its_values_a_json_number_as_the_choice_it_is() -> None:
    """bins as argos-spectrum offers it: 4096.0 (a JSON number) is the choice 4096; a size
    not offered, its text or true are refused naming the sizes; "" is a choice that says
    itself."""
    from gr_argos.tuning import FFT_SIZES

    choices = {"bins": Capability(int, choices=FFT_SIZES),
               "second_detector": Capability(str, choices=("", "peak", "average"))}
    changes = check_tune({"bins": 4096.0, "second_detector": ""}, choices, (), 0.0, False)
    assert changes == {"bins": 4096, "second_detector": ""} and type(changes["bins"]) is int
    for bins in (3000, 8, 131072, "4096", True):
        with pytest.raises(ValueError, match="bins must be one of 16, 32, .*, 32768, 65536$"):
            check_tune({"bins": bins}, choices, (), 0.0, False)
    with pytest.raises(ValueError, match="second_detector must be one of '', peak, average"):
        check_tune({"second_detector": "max"}, choices, (), 0.0, False)


def test_bad_control_settings_are_refused_naming_them() -> None:
    with pytest.raises(ConfigError, match="control_freq_ranges.*LOW-HIGH"):
        ServerConfig(control_freq_ranges="88-MHz")
    with pytest.raises(ConfigError, match="control_freq_ranges.*0 <= LOW < HIGH"):
        ServerConfig(control_freq_ranges="108e6-88e6")
    with pytest.raises(ConfigError, match="control_without_token"):
        ServerConfig(control_without_token="everyone")
    assert ServerConfig(operator_tokens=["a", "b, c"]).operator_tokens == ("a", "b", "c")
    assert "operator_tokens" not in repr(ServerConfig(operator_tokens=("secret",)))


# -- through a real server ----------------------------------------------------------------------

class RecordingTuner:
    """A tuner whose "radio" records what it was told; a value over ``refuse_over`` fails
    as a device would (after the changes before it in the message)."""

    def __init__(self, refuse_over: float = float("inf")) -> None:
        self.applied: list[dict[str, Any]] = []
        self.now: dict[str, Any] = {"center_freq": 100e6, "lna_gain": 0, "amp": False}
        self.refuse_over = refuse_over
        self.threads: set[str] = set()

    def capabilities(self) -> dict[str, Capability]:
        return HACKRF_LIKE

    def values(self) -> dict[str, Any]:
        return dict(self.now)

    def apply(self, changes: dict[str, Any]) -> dict[str, Any]:
        from gr_argos.server.control import TuneError

        self.threads.add(threading.current_thread().name)
        if changes.get("center_freq", 0) > self.refuse_over:
            raise TuneError("tune: the device refused center_freq")
        rounded = {name: (round(value / 1e3) * 1e3 if name == "center_freq" else value)
                   for name, value in changes.items()}
        self.applied.append(rounded)
        self.now.update(rounded)
        return rounded


@contextlib.asynccontextmanager
async def joined(server: SpectrumServer, token: str | None = None,
                 headers: dict[str, str] | None = None) -> AsyncIterator[tuple[ClientConnection,
                                                                             dict[str, Any]]]:
    """A client (with ``token`` in its header) and the control object of its hello."""
    extra = dict(headers or {})
    if token:
        extra["Authorization"] = f"Bearer {token}"
    async with connect(server.url, open_timeout=WAIT_S, additional_headers=extra) as ws:
        hello = await next_message(ws, "hello")
        yield ws, hello["control"]


async def next_message(ws: ClientConnection, *types: str) -> dict[str, Any]:
    """The next text message of one of ``types`` (others and frames skipped)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            message = await ws.recv()
            if isinstance(message, str) and (decoded := json.loads(message))["type"] in types:
                return decoded


async def send(ws: ClientConnection, msg_type: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": msg_type, **fields}))


def scrape(server: SpectrumServer, token: str = "") -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        return response.read().decode()


@pytest.fixture
def tokens_server(start_server: StartServer) -> tuple[SpectrumServer, RecordingTuner]:
    server = start_server(token=VIEWER_TOKEN, operator_tokens=(OPERATOR_TOKEN, OTHER_OPERATOR),
                          admin_tokens=(ADMIN_TOKEN,), control_freq_ranges="90e6-110e6",
                          control_max_gain=32)
    tuner = RecordingTuner()
    server.set_tuner(tuner)
    return server, tuner


async def test_roles_and_the_lease_as_everyone_sees_them(
        tokens_server: tuple[SpectrumServer, RecordingTuner],
        caplog: pytest.LogCaptureFixture) -> None:
    """A viewer may not take control; an operator acquires it and everyone is told who;
    another operator is refused; an admin takes it; a disconnect releases it. Each event
    has its audit line and its count in /metrics."""
    server, tuner = tokens_server
    caplog.set_level(logging.INFO, logger="gr_argos.audit")
    async with joined(server, VIEWER_TOKEN) as (viewer, seen_by_viewer), \
            joined(server, OPERATOR_TOKEN) as (operator, seen_by_operator), \
            joined(server, OTHER_OPERATOR) as (other, _), joined(server, ADMIN_TOKEN) as (admin, _):
        assert seen_by_viewer["you"]["may_control"] is False
        assert "operator or admin token" in seen_by_viewer["you"]["why_not"]
        assert seen_by_operator["you"] == {"client_id": seen_by_operator["you"]["client_id"],
                                           "role": OPERATOR, "control_role": OPERATOR,
                                           "may_control": True, "holds": False}
        assert seen_by_operator["settings"]["center_freq"]["value"] == 100e6
        assert seen_by_operator["freq_ranges"] == [[90e6, 110e6]]

        await send(viewer, "control", action="acquire", name="eve")
        assert (await next_message(viewer, "error"))["code"] == "control_refused"
        await send(operator, "control", action="acquire", name="alice")
        for ws in (viewer, operator, other, admin):
            told = await next_message(ws, "control")
            assert told["event"] == "acquired" and told["holder"]["name"] == "alice"
            assert told["holder"]["role"] == OPERATOR
        await send(other, "control", action="acquire", name="bob")
        refused = await next_message(other, "error")
        assert refused["code"] == "control_refused" and "held by alice" in refused["message"]
        await send(other, "control", action="take", name="bob")
        assert "only an admin" in (await next_message(other, "error"))["message"]
        await send(admin, "control", action="take", name="root")
        taken = await next_message(viewer, "control")
        assert (taken["event"], taken["holder"]["name"]) == ("taken", "root")
        await send(operator, "tune", center_freq=101e6)
        assert "held by root" in (await next_message(operator, "error"))["message"]
    assert tuner.applied == []
    async with joined(server, OPERATOR_TOKEN) as (late, control):
        assert control["holder"] is None  # the admin's disconnect released it
    lines = [record.getMessage() for record in caplog.records if record.name == "gr_argos.audit"]
    assert any("action=acquire" in line and "name=alice" in line and "outcome=accepted" in line
               for line in lines)
    assert any("action=take" in line and "from_client=" in line for line in lines)
    assert any("outcome=disconnected" in line for line in lines)
    assert not any(token in "".join(lines) for token in (OPERATOR_TOKEN, ADMIN_TOKEN))
    metrics = await asyncio.to_thread(scrape, server, VIEWER_TOKEN)
    assert 'argos_control_events_total{action="acquire",outcome="refused"} 2.0' in metrics
    assert 'argos_control_events_total{action="take",outcome="accepted"} 1.0' in metrics


async def test_a_viewer_hammering_tune_cannot_flood_the_audit_log(
        start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    """240 tune, control, set_limits and record messages from a viewer (who may not control) are
    all refused and counted, but at most a burst of them each is written to the audit log; an operator's
    refusals are all written."""
    from gr_argos.server.control import UNPRIVILEGED_AUDIT_BURST

    server = start_server(token=VIEWER_TOKEN, operator_tokens=(OPERATOR_TOKEN,),
                          control_freq_ranges="90e6-110e6", max_messages_per_s=0,
                          max_tunes_per_s=0)
    server.set_tuner(RecordingTuner())
    caplog.set_level(logging.INFO, logger="gr_argos.audit")
    async with joined(server, VIEWER_TOKEN) as (viewer, _), \
            joined(server, OPERATOR_TOKEN) as (operator, _):
        for index in range(60):
            await send(viewer, "tune", center_freq=100e6 + index)
            await send(viewer, "control", action="acquire", name="eve")
            await send(viewer, "set_limits", control_max_gain=60)
            await send(viewer, "record", action="start")
        for _ in range(240):
            assert (await next_message(viewer, "error"))["code"] in (
                "tune_refused", "control_refused", "record_refused")
        await send(operator, "control", action="acquire", name="alice")
        await next_message(operator, "control")
        for _ in range(30):  # outside the allowed range
            await send(operator, "tune", center_freq=200e6)
            assert (await next_message(operator, "error"))["code"] == "tune_refused"
    lines = [record.getMessage() for record in caplog.records if record.name == "gr_argos.audit"]
    by_viewer = [line for line in lines if "role=-" in line]
    assert len([line for line in by_viewer if "action=limits" in line]) \
        <= UNPRIVILEGED_AUDIT_BURST
    assert 0 < len([line for line in by_viewer if "event=record" in line]) \
        <= UNPRIVILEGED_AUDIT_BURST
    assert 0 < len([line for line in by_viewer if "event=tune" in line]) \
        <= UNPRIVILEGED_AUDIT_BURST
    assert 0 < len([line for line in by_viewer if "event=control" in line]) \
        <= UNPRIVILEGED_AUDIT_BURST
    assert len([line for line in lines if "role=operator" in line
                and "outcome=refused" in line]) == 30
    metrics = await asyncio.to_thread(scrape, server, VIEWER_TOKEN)
    assert 'argos_control_events_total{action="tune",outcome="refused"} 90.0' in metrics
    assert 'argos_control_events_total{action="acquire",outcome="refused"} 60.0' in metrics
    assert 'argos_control_events_total{action="limits",outcome="refused"} 60.0' in metrics


async def test_the_holder_tunes_and_everyone_sees_old_and_new_values(
        tokens_server: tuple[SpectrumServer, RecordingTuner],
        caplog: pytest.LogCaptureFixture) -> None:
    """The holder's change reaches the radio once, off the server's loop; everyone gets a
    tuned message with the old value and the one the device took (rounded)."""
    server, tuner = tokens_server
    caplog.set_level(logging.INFO, logger="gr_argos.audit")
    async with joined(server, OPERATOR_TOKEN) as (operator, _), \
            joined(server, VIEWER_TOKEN) as (viewer, _):
        await send(operator, "control", action="acquire", name="alice")
        await next_message(operator, "control")
        await send(operator, "tune", center_freq=101.2344e6, lna_gain=16)
        for ws in (operator, viewer):
            tuned = await next_message(ws, "tuned")
            assert tuned["name"] == "alice" and tuned["role"] == OPERATOR
            assert tuned["changes"] == {"center_freq": {"old": 100e6, "new": 101.234e6},
                                        "lna_gain": {"old": 0, "new": 16}}
    assert tuner.applied == [{"center_freq": 101.234e6, "lna_gain": 16}]
    assert not any(name.startswith("argos-server") for name in tuner.threads)
    assert any("event=tune" in r.getMessage() and "center_freq=100000000->101234000"
               in r.getMessage() for r in caplog.records)


async def test_changes_outside_the_limits_apply_nothing_and_say_why(
        tokens_server: tuple[SpectrumServer, RecordingTuner]) -> None:
    """Outside the allowed ranges, over the gain cap, the amplifier forbidden, an unknown
    setting, a device refusal: each is refused with its reason, the radio untouched, and
    the connection keeps serving (frames too)."""
    server, tuner = tokens_server
    tuner.refuse_over = 105e6
    async with joined(server, OPERATOR_TOKEN) as (operator, _):
        await send(operator, "control", action="acquire")
        await next_message(operator, "control")
        for fields, words in [({"center_freq": 433e6}, "outside the ranges allowed"),
                              ({"lna_gain": 40}, "control_max_gain"),
                              ({"amp": True}, "control_allow_amp"),
                              ({"bandwidth": 5e6}, "cannot be changed on this source"),
                              ({"center_freq": 106e6}, "the device refused")]:
            await send(operator, "tune", **fields)
            error = await next_message(operator, "error")
            assert error["code"] == "tune_refused" and words in error["message"], fields
        assert tuner.applied == []
        await send(operator, "ping", id=1)
        assert (await next_message(operator, "pong"))["id"] == 1


async def test_a_control_storm_is_rate_limited_per_client(start_server: StartServer) -> None:
    """Changes over max_tunes_per_s (plus a burst of 5) are refused at once, counted, and
    never reach the radio; without tokens a local client may control (as an admin)."""
    server = start_server(max_tunes_per_s=1)
    tuner = RecordingTuner()
    server.set_tuner(tuner)
    async with joined(server) as (ws, control):
        assert control["you"]["control_role"] == ADMIN
        await send(ws, "control", action="acquire")
        await next_message(ws, "control")
        for step in range(12):  # within the message rate limit, over the tune limit
            await send(ws, "tune", center_freq=100e6 + step * 1e3)
        answers = [await next_message(ws, "tuned", "error") for _ in range(12)]
    refused = [a for a in answers if a["type"] == "error"]
    assert len(refused) >= 5 and all("changes per second" in a["message"] for a in refused)
    assert len(tuner.applied) == 12 - len(refused)
    metrics = await asyncio.to_thread(scrape, server)
    assert f'argos_control_events_total{{action="tune",outcome="rate_limited"}} {len(refused)}.0' \
        in metrics


async def test_through_a_proxy_a_local_address_is_not_local(start_server: StartServer) -> None:
    """Without tokens, a request that came through a reverse proxy (X-Forwarded-For) may not
    control, although its address is 127.0.0.1; a later auth message with a wrong token is
    refused and changes nothing."""
    server = start_server()
    server.set_tuner(RecordingTuner())
    async with joined(server, headers={"X-Forwarded-For": "203.0.113.9"}) as (ws, control):
        assert control["you"]["may_control"] is False
        await send(ws, "control", action="acquire")
        error = await next_message(ws, "error")
        assert error["code"] == "control_refused" and "own machine" in error["message"]


async def test_an_auth_message_later_raises_a_viewer_to_operator(
        tokens_server: tuple[SpectrumServer, RecordingTuner]) -> None:
    """A viewer page that learns an operator token sends it in an auth message: its role
    rises (it gets a control message saying so); a wrong token keeps its rights."""
    server, _ = tokens_server
    async with joined(server, VIEWER_TOKEN) as (ws, control):
        assert control["you"]["role"] == VIEWER
        await send(ws, "auth", token="not-a-token")
        assert (await next_message(ws, "error"))["code"] == "auth_failed"
        await send(ws, "auth", token=OPERATOR_TOKEN)
        raised = await next_message(ws, "control")
        assert raised["you"]["role"] == OPERATOR and raised["you"]["may_control"] is True
        await send(ws, "control", action="acquire", name="promoted")
        assert (await next_message(ws, "control"))["holder"]["name"] == "promoted"


async def test_without_a_tuner_tuning_is_refused_clearly(start_server: StartServer) -> None:
    server = start_server()
    async with joined(server) as (ws, control):
        assert control["settings"] == {}
        await send(ws, "control", action="acquire")
        await next_message(ws, "control")
        await send(ws, "tune", center_freq=101e6)
        assert "no tuner" in (await next_message(ws, "error"))["message"]
        await send(ws, "control", action="steal")
        error = await next_message(ws, "error")
        assert error["code"] == "bad_message" and "acquire or release or take" in error["message"]


async def test_an_idle_lease_ends_by_itself_and_everyone_is_told(
        start_server: StartServer) -> None:
    """control_idle_timeout_s after the last change the lease ends, with a control message
    saying it expired, without anyone asking."""
    server = start_server(control_idle_timeout_s=0.5)
    server.set_tuner(RecordingTuner())
    async with joined(server) as (holder, _), joined(server) as (watcher, _):
        await send(holder, "control", action="acquire", name="sleepy")
        assert (await next_message(watcher, "control"))["holder"]["name"] == "sleepy"
        ended = await next_message(watcher, "control")
        assert (ended["event"], ended["holder"]) == ("expired", None)


async def test_an_admin_changes_the_limits_and_the_next_changes_follow_them(
        tokens_server: tuple[SpectrumServer, RecordingTuner]) -> None:
    """set_limits is for admins; everyone is told the new limits; a change that the old
    limits allowed is then refused, and one they refused is applied; a bad limit is refused
    naming it and changes nothing."""
    server, tuner = tokens_server
    async with joined(server, OPERATOR_TOKEN) as (operator, control), \
            joined(server, ADMIN_TOKEN) as (admin, _):
        assert control["limits"] == {"control_freq_ranges": "9e+07-1.1e+08",
                                     "control_max_gain": 32.0, "control_allow_amp": False}
        await send(operator, "set_limits", control_allow_amp=True)
        assert "only an admin" in (await next_message(operator, "error"))["message"]
        for fields, words in [({"control_max_gain": -1}, "0 or more"),
                              ({"control_freq_ranges": "1-"}, "LOW-HIGH"),
                              ({"control_max_gains": 3}, "control_max_gains is not a limit"),
                              ({}, "name a limit")]:
            await send(admin, "set_limits", **fields)
            assert words in (await next_message(admin, "error"))["message"], fields
        await send(admin, "set_limits", control_freq_ranges="400e6-500e6",
                   control_allow_amp=True)
        told = await next_message(operator, "control")
        assert told["event"] == "limits" and told["limits"]["control_allow_amp"] is True
        await send(operator, "control", action="acquire")
        await next_message(operator, "control")
        await send(operator, "tune", center_freq=101e6)
        assert "outside the ranges" in (await next_message(operator, "error"))["message"]
        await send(operator, "tune", center_freq=433.92e6, amp=True)
        tuned = await next_message(operator, "tuned")
    assert tuned["changes"]["amp"]["new"] is True
    assert tuner.applied == [{"center_freq": 433.92e6, "amp": True}]
