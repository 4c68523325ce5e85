# SPDX-License-Identifier: GPL-3.0-or-later
"""Control of the radio from clients: roles, one controller at a time, checked changes.

- **Roles** come from the token a client presents: the server's ``token`` makes a viewer
  (watch), one of ``operator_tokens`` an operator (may ask for control and tune), one of
  ``admin_tokens`` an admin (may also take control from another). Without operator or
  admin tokens, ``control_without_token`` says who may control: clients on this machine
  (``localhost``, not through a proxy), ``anyone`` or ``nobody``; those allowed act as admins.
- **A lease**: one controller at a time (:class:`ControlLease`), acquired, released, taken by
  an admin, renewed by each change it makes, and ended by its holder's disconnection or
  ``control_idle_timeout_s`` without a change.
- **Changes** (``tune``): each key is a setting's name (``center_freq``, ``lna_gain``...),
  checked against what the source can do (its :class:`Capability`, from its
  :class:`Tuner`) and against the limits the server's settings set (``control_freq_ranges``,
  ``control_max_gain``, ``control_allow_amp``) before anything touches the radio
  (:func:`check_tune`).

Plain code: no GNU Radio, no sockets. The connection and the server wire it up
(:mod:`gr_argos.server.connection`), the sink or the app provides the :class:`Tuner`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from gr_argos.server.logs import EventLog, quoted

__all__ = ["ADMIN", "CONTROL_ACTIONS", "Capability", "ControlLease", "Controller", "Holder",
           "OPERATOR", "Requester", "TuneError", "Tuner", "VIEWER", "check_tune", "control_role",
           "is_local", "parse_freq_ranges", "role_of"]

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
#: Audit lines of refusals of clients that may not control at all (no operator's or admin's
#: token) per kind, at most, in each 10 s; the rest is said as ``event=KIND suppressed=N``.
#: Every refusal is still counted in /metrics; an operator's or admin's is always logged.
UNPRIVILEGED_AUDIT_BURST = 20

#: Longest name a client may give itself for the lease (what everyone sees).
MAX_NAME = 64


class TuneError(ValueError):
    """A change the source refused or cannot make; the message says why."""


@dataclass(frozen=True)
class Capability:
    """What a source can set one setting to: a number from ``low`` to ``high`` (rounded to
    a multiple of ``step`` by the device, when ``step`` is given), or a boolean."""

    kind: type  # float, int, bool or str
    low: float = -math.inf
    high: float = math.inf
    step: float = 0.0
    unit: str = ""
    choices: tuple[Any, ...] | None = None  # the values it takes, when a closed set

    def describe(self) -> dict[str, Any]:
        """The capability as ``hello`` and ``status`` state it."""
        if self.choices is not None:
            return {"type": "choice", "choices": list(self.choices)}
        if self.kind is bool:
            return {"type": "bool"}
        described: dict[str, Any] = {"type": "number", "min": self.low, "max": self.high}
        if self.step:
            described["step"] = self.step
        if self.unit:
            described["unit"] = self.unit
        return described


class Tuner(Protocol):
    """What applies clients' changes to a radio: the app's source, or a sink's ``command``
    message port."""

    def capabilities(self) -> dict[str, Capability]:
        """The settings it can change now, with the device's ranges."""

    def values(self) -> dict[str, Any]:
        """The values of those settings now."""

    def apply(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Make the changes (checked already); return the values now in force (the device's,
        where it rounds them). Called on a thread of its own, one change at a time.

        Raises:
            TuneError: the source refused a change (those before it stay made, and the
                message says which).
        """


def role_of(given: object, token: str, operator_tokens: tuple[str, ...],
            admin_tokens: tuple[str, ...]) -> str | None:
    """The role a presented token gives (None: it is none of them). Every comparison is
    made, in constant time, whatever matches."""
    if not isinstance(given, str):
        return None
    presented = given.encode("utf-8")
    found = None
    for role, tokens in ((ADMIN, admin_tokens), (OPERATOR, operator_tokens), (VIEWER, (token,))):
        for candidate in tokens:
            if candidate and hmac.compare_digest(presented, candidate.encode("utf-8")) \
                    and found is None:
                found = role
    return found


def control_role(role: str | None, tokens_set: bool, without_token: str,
                 local: bool) -> tuple[str | None, str]:
    """The role a client controls the radio with, or None and why it may not.

    Args:
        role: its role from its token (None: it presented none).
        tokens_set: the server has operator or admin tokens.
        without_token: the ``control_without_token`` setting.
        local: the client is on this machine and not behind a proxy.
    """
    if tokens_set:
        if role in (OPERATOR, ADMIN):
            return role, ""
        return None, ("controlling the radio needs an operator or admin token: send "
                      '{"type": "auth", "token": ...} with one')
    if without_token == "anyone" or (without_token == "localhost" and local):
        return ADMIN, ""
    if without_token == "localhost":
        return None, ("this server lets only clients on its own machine control the radio "
                      "(control_without_token: localhost); its operator sets "
                      "operator_tokens for others")
    return None, "this server lets nobody control the radio (control_without_token: nobody)"


def is_local(ip: str, forwarded: bool) -> bool:
    """Whether a client at ``ip`` is on this machine: a loopback address, and no proxy
    header says it came from elsewhere (``forwarded``)."""
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback and not forwarded
    except ValueError:
        return False


@dataclass
class Holder:
    """Who holds the lease: a client, the name it gave, its role, since when."""

    client_id: int
    name: str
    role: str
    since_ns: int
    active_at: float

    def describe(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "name": self.name, "role": self.role,
                "since_ns": self.since_ns}


class ControlLease:
    """One controller at a time.

    Args:
        idle_timeout_s: seconds without a change after which the lease ends by itself.
        clock: monotonic seconds (tests pass their own).
        wall_ns: wall-clock nanoseconds, for ``since_ns``.
    """

    def __init__(self, idle_timeout_s: float, clock: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._wall_ns = wall_ns
        self.holder: Holder | None = None

    def acquire(self, client_id: int, name: str, role: str) -> str | None:
        """Take the lease if it is free (or already this client's); None, or why not."""
        self.expire()
        holder = self.holder
        if holder is not None and holder.client_id != client_id:
            return (f"control is held by {holder.name} ({holder.role}) since "
                    f"{_clock_text(holder.since_ns)}"
                    + ("; an admin may take it" if role != ADMIN else "; send take to take it"))
        if holder is None:
            self.holder = Holder(client_id, name, role, self._wall_ns(), self._clock())
        else:
            holder.name, holder.active_at = name, self._clock()
        return None

    def take(self, client_id: int, name: str, role: str) -> Holder | None:
        """An admin takes the lease whoever holds it; return the former holder."""
        former = self.holder if self.holder and self.holder.client_id != client_id else None
        self.holder = Holder(client_id, name, role, self._wall_ns(), self._clock())
        return former

    def release(self, client_id: int) -> bool:
        """End the lease if this client holds it."""
        if self.holder is not None and self.holder.client_id == client_id:
            self.holder = None
            return True
        return False

    def holds(self, client_id: int) -> bool:
        self.expire()
        return self.holder is not None and self.holder.client_id == client_id

    def touch(self, client_id: int) -> None:
        """The holder made a change: the lease is renewed."""
        if self.holder is not None and self.holder.client_id == client_id:
            self.holder.active_at = self._clock()

    def expire(self) -> Holder | None:
        """End the lease after ``idle_timeout_s`` without a change; return who held it."""
        holder = self.holder
        if holder is not None and self._clock() - holder.active_at >= self.idle_timeout_s:
            self.holder = None
            return holder
        return None

    def describe(self) -> dict[str, Any] | None:
        return None if self.holder is None else self.holder.describe()


def _clock_text(when_ns: int) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(when_ns / 1e9))


def parse_freq_ranges(value: str) -> tuple[tuple[float, float], ...]:
    """``"88e6-108e6, 430e6-440e6"`` as ((low, high), ...) in Hz.

    Raises:
        ValueError: a range that is not ``LOW-HIGH`` with 0 <= LOW < HIGH.
    """
    ranges = []
    for part in (item.strip() for item in value.split(",")):
        if not part:
            continue
        low_text, dash, high_text = part.partition("-")
        try:
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise ValueError(f"{part!r} is not LOW-HIGH in Hz (e.g. 88e6-108e6)") from None
        if not dash or not (math.isfinite(low) and math.isfinite(high)) or not 0 <= low < high:
            raise ValueError(f"{part!r}: a range needs 0 <= LOW < HIGH, in Hz")
        ranges.append((low, high))
    return tuple(ranges)


def check_freq_ranges(value: str) -> str | None:
    """The ``control_freq_ranges`` setting's check."""
    try:
        parse_freq_ranges(value)
    except ValueError as exc:
        return str(exc)
    return None


#: Settings whose values are frequencies the radio goes to (``control_freq_ranges``).
FREQUENCIES = ("center_freq", "freq_min", "freq_max")
#: Settings whose values are gains in dB (``control_max_gain`` caps each).
GAINS = ("lna_gain", "vga_gain", "gain")


def check_tune(fields: dict[str, Any], capabilities: dict[str, Capability],
               freq_ranges: tuple[tuple[float, float], ...], max_gain: float,
               allow_amp: bool) -> dict[str, Any]:
    """The changes a ``tune`` message asks for, checked against the source and the limits.

    Args:
        fields: the message without ``type``.
        capabilities: what the source can set (:meth:`Tuner.capabilities`).
        freq_ranges: ``control_freq_ranges`` (empty: the device's range only).
        max_gain: ``control_max_gain`` in dB (0: the device's maximum).
        allow_amp: ``control_allow_amp``.

    Raises:
        ValueError: the first problem found; nothing is to be applied then.
    """
    changes: dict[str, Any] = {}
    if not fields:
        raise ValueError("tune: name at least one setting to change, e.g. "
                         '{"type": "tune", "center_freq": 433.92e6}')
    for name, value in fields.items():
        capability = capabilities.get(name)
        if capability is None:
            known = ", ".join(sorted(capabilities)) or "nothing"
            raise ValueError(f"tune: {name} cannot be changed on this source; it can change "
                             f"{known}")
        if capability.choices is not None:
            if isinstance(value, bool) or value not in capability.choices:
                raise ValueError(f"tune: {name} must be one of "
                                 + ", ".join(repr(choice) if choice == "" else str(choice)
                                             for choice in capability.choices))
            # 4096.0 from JSON is the choice 4096
            changes[name] = capability.kind(value) if capability.kind in (int, float) \
                else value
            continue
        if capability.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"tune: {name} must be true or false")
            if name == "amp" and value and not allow_amp:
                raise ValueError("tune: the RF amplifier may not be switched on here "
                                 "(control_allow_amp is false)")
            changes[name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"tune: {name} must be a number")
        if not capability.low <= value <= capability.high:
            raise ValueError(f"tune: {name} {value:g} is outside the device's range "
                             f"{capability.low:g}..{capability.high:g}{capability.unit}")
        if name in FREQUENCIES and freq_ranges \
                and not any(low <= value <= high for low, high in freq_ranges):
            allowed = ", ".join(f"{low / 1e6:g}-{high / 1e6:g} MHz" for low, high in freq_ranges)
            raise ValueError(f"tune: {name} {value / 1e6:g} MHz is outside the ranges "
                             f"allowed here ({allowed})")
        if name in GAINS and max_gain and value > max_gain:
            raise ValueError(f"tune: {name} {value:g} dB is over this server's "
                             f"control_max_gain of {max_gain:g} dB")
        changes[name] = int(value) if capability.kind is int else float(value)
    return changes


#: The limits an admin may change while the server runs (set_limits).
LIMITS = ("control_freq_ranges", "control_max_gain", "control_allow_amp")

#: What a client may do with the lease.
CONTROL_ACTIONS = ("acquire", "release", "take")


@dataclass(frozen=True)
class Requester:
    """The client that sent a control or tune message, as the controller sees it."""

    client_id: int
    peer: str
    role: str | None  # from its token (None: it presented none)
    local: bool  # on this machine and not through a proxy


class Controller:
    """The server's control of the radio: who may, who does, and the changes made.

    Touched on the server's event loop only; the tuner's :meth:`Tuner.apply` runs on a
    thread, one change at a time, so the loop keeps serving everyone meanwhile.

    Args:
        settings: the server's settings (``operator_tokens`` ... ``control_allow_amp``).
        broadcast: sends a message to every client (``publish_message``).
        audit: writes one log line (``event=control ...``), never rate-limited; the
            refusals of clients that may not control at all go to the ``gr_argos.audit``
            logger at a bounded rate instead (:data:`UNPRIVILEGED_AUDIT_BURST`), so that
            anyone who can connect cannot flood the log.
        count: counts an event by action and outcome (for ``/metrics``).
    """

    def __init__(self, settings: Any, broadcast: Callable[[str, dict[str, Any]], None],
                 audit: Callable[[str], None], count: Callable[[str, str], None]) -> None:
        self.settings = settings
        self.lease = ControlLease(settings.control_idle_timeout_s)
        self.tuner: Tuner | None = None
        self._broadcast = broadcast
        self._audit = audit
        self._unprivileged = EventLog(logging.getLogger("gr_argos.audit"),
                                      burst=UNPRIVILEGED_AUDIT_BURST)
        self._count = count
        # The limits: from the settings, changed by an admin's set_limits.
        self._freq_ranges = parse_freq_ranges(settings.control_freq_ranges)
        self._max_gain = float(settings.control_max_gain)
        self._allow_amp = bool(settings.control_allow_amp)
        self._applying: asyncio.Lock | None = None  # made on the loop, on first use

    # -- who -------------------------------------------------------------------------------

    def role_for(self, requester: Requester) -> tuple[str | None, str]:
        """The role ``requester`` controls with, or None and why not."""
        return control_role(requester.role, self.settings.role_tokens,
                            self.settings.control_without_token, requester.local)

    def state(self, requester: Requester | None = None) -> dict[str, Any]:
        """The ``control`` object of ``hello``, ``status`` and the ``control`` message: the
        holder, the settings that can change with their ranges and values, and (for one
        client) what it may do."""
        self._expire()
        tuner = self.tuner
        state: dict[str, Any] = {"holder": self.lease.describe(),
                                 "idle_timeout_s": self.lease.idle_timeout_s}
        if tuner is None:
            state["settings"] = {}
        else:
            values = tuner.values()
            state["settings"] = {name: {**capability.describe(), "value": values.get(name)}
                                 for name, capability in tuner.capabilities().items()}
        if self._freq_ranges:
            state["freq_ranges"] = [list(pair) for pair in self._freq_ranges]
        state["limits"] = self.limits()
        if requester is not None:
            role, why = self.role_for(requester)
            state["you"] = {"client_id": requester.client_id, "role": requester.role or VIEWER,
                            "control_role": role, "may_control": role is not None,
                            "holds": self.lease.holds(requester.client_id)}
            if role is None:
                state["you"]["why_not"] = why
        return state

    # -- the lease -------------------------------------------------------------------------

    def control(self, requester: Requester, action: str, name: str) -> str | None:
        """Acquire, release or take the lease; None when done (everyone is told), or why
        not."""
        role, why = self.role_for(requester)
        holder = self.lease.holder
        if action == "release" and holder is not None and holder.client_id == requester.client_id:
            name = holder.name
        name = name.strip()[:MAX_NAME] or f"client {requester.client_id}"
        problem: str | None = None
        former: Holder | None = None
        if role is None:
            problem = why
        elif action == "acquire":
            problem = self.lease.acquire(requester.client_id, name, role)
        elif action == "take":
            if role != ADMIN:
                problem = "only an admin may take control from another client"
            else:
                former = self.lease.take(requester.client_id, name, role)
        elif not self.lease.release(requester.client_id):
            problem = "this client does not hold control"
        outcome = "refused" if problem else "accepted"
        self._count(action, outcome)
        self.audit_line(role, "control_refused_unprivileged",
                         f"event=control action={action} client={requester.client_id} "
                         f"peer={requester.peer} name={_quoted(name)} role={role or '-'} "
                         f"outcome={outcome}"
                         + (f" from_client={former.client_id}" if former else "")
                         + (f" reason={_quoted(problem)}" if problem else ""))
        if problem is None:
            self._announce({"acquire": "acquired", "take": "taken", "release": "released"}
                           [action], requester.client_id)
        return problem

    def limits(self) -> dict[str, Any]:
        """The limits now, under their settings' names."""
        return {"control_freq_ranges": ",".join(f"{low:g}-{high:g}"
                                                for low, high in self._freq_ranges),
                "control_max_gain": self._max_gain, "control_allow_amp": self._allow_amp}

    def set_limits(self, requester: Requester, fields: dict[str, Any]) -> str | None:
        """An admin changes the limits (any of ``control_freq_ranges``,
        ``control_max_gain``, ``control_allow_amp``); None when done (everyone is told),
        or why not. They apply to the changes asked for from then on."""
        role, why = self.role_for(requester)
        problem = why if role is None else (
            None if role == ADMIN else "only an admin may change the limits")
        ranges, max_gain, allow_amp = self._freq_ranges, self._max_gain, self._allow_amp
        unknown = sorted(set(fields) - {"type", *LIMITS})
        if problem is None and (unknown or not set(fields) & set(LIMITS)):
            problem = (f"set_limits: {', '.join(unknown)} is not a limit; " if unknown else
                       "set_limits: name a limit to change; ") + "the limits are " + \
                ", ".join(LIMITS)
        if problem is None:
            try:
                if "control_freq_ranges" in fields:
                    value = fields["control_freq_ranges"]
                    if not isinstance(value, str):
                        raise ValueError("control_freq_ranges must be a string such as "
                                         "'430e6-440e6,2.4e9-2.5e9' ('' for any)")
                    ranges = parse_freq_ranges(value)
                if "control_max_gain" in fields:
                    value = fields["control_max_gain"]
                    if isinstance(value, bool) or not isinstance(value, (int, float)) \
                            or not math.isfinite(value) or value < 0:
                        raise ValueError("control_max_gain must be a number of dB, 0 or more")
                    max_gain = float(value)
                if "control_allow_amp" in fields:
                    if not isinstance(fields["control_allow_amp"], bool):
                        raise ValueError("control_allow_amp must be true or false")
                    allow_amp = fields["control_allow_amp"]
            except ValueError as exc:
                problem = f"set_limits: {exc}"
        outcome = "refused" if problem else "accepted"
        self._count("limits", outcome)
        if problem is None:
            self._freq_ranges, self._max_gain, self._allow_amp = ranges, max_gain, allow_amp
        self.audit_line(role, "control_refused_unprivileged",
                         f"event=control action=limits client={requester.client_id} "
                         f"peer={requester.peer} role={role or '-'} outcome={outcome} "
                         + " ".join(f"{name}={_value(value)}"
                                    for name, value in self.limits().items())
                         + (f" reason={_quoted(problem)}" if problem else ""))
        if problem is None:
            self._broadcast("control", {"event": "limits", "client_id": requester.client_id,
                                        "holder": self.lease.describe(),
                                        "limits": self.limits()})
        return problem

    def disconnected(self, client_id: int) -> None:
        """A client left: its lease ends."""
        if self.lease.release(client_id):
            self._count("release", "disconnected")
            self._audit(f"event=control action=release client={client_id} "
                        "outcome=disconnected")
            self._announce("disconnected", client_id)

    def _expire(self) -> None:
        holder = self.lease.expire()
        if holder is not None:
            self._count("release", "expired")
            self._audit(f"event=control action=release client={holder.client_id} "
                        f"name={_quoted(holder.name)} outcome=expired idle_timeout_s="
                        f"{self.lease.idle_timeout_s:g}")
            self._announce("expired", holder.client_id)

    def tick(self) -> None:
        """End an idle lease (the server calls this now and then)."""
        self._expire()

    def _announce(self, event: str, client_id: int) -> None:
        self._broadcast("control", {"event": event, "client_id": client_id,
                                    "holder": self.lease.describe()})

    # -- changes ---------------------------------------------------------------------------

    def check(self, requester: Requester, fields: dict[str, Any]) -> dict[str, Any]:
        """The changes of a ``tune`` message if this client may make them now (checked when
        the message arrives, in order with its other messages).

        Raises:
            TuneError: refused (not allowed, not the holder, or a bad value); counted and
                logged.
        """
        role, why = self.role_for(requester)
        problem = why if role is None else None
        tuner = self.tuner
        if problem is None and tuner is None:
            problem = ("this stream cannot be tuned from clients now (its flowgraph has no "
                       "tuner, or is still starting)")
        if problem is None and not self.lease.holds(requester.client_id):
            holder = self.lease.holder
            problem = ("acquire control first: send {\"type\": \"control\", \"action\": "
                       "\"acquire\"}" if holder is None else
                       f"control is held by {holder.name} ({holder.role})")
        if problem is None:
            assert tuner is not None
            try:
                return check_tune(fields, tuner.capabilities(), self._freq_ranges,
                                  self._max_gain, self._allow_amp)
            except ValueError as exc:
                problem = str(exc)
        self._refused_tune(requester, role, fields, problem)
        raise TuneError(problem)

    async def tune(self, requester: Requester, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply changes :meth:`check` passed; return what is now in force (everyone is
        told with a ``tuned`` message).

        Raises:
            TuneError: the source refused; counted and logged.
        """
        role, _ = self.role_for(requester)
        tuner = self.tuner
        if tuner is None:
            raise TuneError("this stream cannot be tuned from clients any more")
        assert tuner is not None
        if self._applying is None:
            self._applying = asyncio.Lock()
        async with self._applying:
            before = tuner.values()
            try:
                applied = await asyncio.to_thread(tuner.apply, changes)
            except TuneError as exc:
                self._refused_tune(requester, role, changes, str(exc))
                raise
        self.lease.touch(requester.client_id)
        self._count("tune", "applied")
        summary = " ".join(f"{name}={_value(before.get(name))}->{_value(value)}"
                           for name, value in applied.items())
        self._audit(f"event=tune client={requester.client_id} peer={requester.peer} "
                    f"role={role} outcome=applied {summary}")
        holder = self.lease.holder
        self._broadcast("tuned", {
            "client_id": requester.client_id, "name": holder.name if holder else "",
            "role": role,
            "changes": {name: {"old": before.get(name), "new": value}
                        for name, value in applied.items()}})
        return applied

    def _refused_tune(self, requester: Requester, role: str | None, fields: dict[str, Any],
                      problem: str) -> None:
        self._count("tune", "refused")
        asked = " ".join(f"{_quoted(str(name))[:40]}={_value(value)}"
                         for name, value in list(fields.items())[:8])
        self.audit_line(role, "tune_refused_unprivileged",
                         f"event=tune client={requester.client_id} peer={requester.peer} "
                         f"role={role or '-'} outcome=refused {asked} "
                         f"reason={_quoted(problem)}")

    def audit_line(self, role: str | None, kind: str, line: str) -> None:
        """Audit ``line``; at a bounded rate (as ``kind``) if the client may not control."""
        if role is None:
            self._unprivileged.log(logging.INFO, kind, "%s", line)
        else:
            self._audit(line)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (bool, int)) or value is None:
        return str(value).lower() if isinstance(value, bool) or value is None else str(value)
    return _quoted(str(value)[:40])


def _quoted(text: str) -> str:
    return quoted(text)
