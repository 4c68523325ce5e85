# SPDX-License-Identifier: GPL-3.0-or-later
"""Recording switched on and off by clients: the ``record`` message (docs/protocol.md).

A server may have two recordings: ``spectrum``, its own recorder of every frame and message
(``record_dir``), and ``iq``, the SigMF recording of the source's samples that argos-spectrum
adds (``record_iq_dir``). Operators and admins (the clients who may control the radio, see
:mod:`gr_argos.server.control`) start and stop them; viewers are refused. Every request is
audited like a control event and counted, and a change is told to every client with a
``recording`` message; ``hello`` and ``status`` carry the state.

Plain code: no GNU Radio, no sockets.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Protocol

from gr_argos.server.control import Controller, Requester
from gr_argos.server.logs import quoted

__all__ = ["RECORD_ACTIONS", "RECORDING_KINDS", "Recording", "RecordingSwitch"]

#: What a client may ask of the recordings.
RECORD_ACTIONS = ("start", "stop")
#: The recordings a server may have, by the name the ``record`` message gives them.
RECORDING_KINDS = ("spectrum", "iq")
#: Which setting makes each one.
_SETTING = {"spectrum": "record_dir", "iq": "record_iq_dir"}


class Recording(Protocol):
    """A recording a client may switch on and off (the server's recorder, the IQ sink)."""

    @property
    def started(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


class RecordingSwitch:
    """Starts and stops a server's recordings for the clients allowed to.

    Args:
        controller: who may control the radio (the same clients may record).
        broadcast: sends a message to every client (``publish_message``).
        audit: writes one audit log line.
        count: counts an event by action and outcome (for ``/metrics``).
    """

    def __init__(self, controller: Controller,
                 broadcast: Callable[[str, dict[str, Any]], None],
                 audit: Callable[[str], None], count: Callable[[str, str], None]) -> None:
        self._controller = controller
        self._broadcast = broadcast
        self._audit = audit
        self._count = count
        self.recordings: dict[str, Recording] = {}
        self._lock = threading.Lock()  # one request at a time

    def state(self) -> dict[str, Any]:
        """Each recording's state by kind (``{}``: this server records nothing)."""
        return {kind: recording.status() for kind, recording in self.recordings.items()}

    def record(self, requester: Requester, action: str, kind: str | None) -> str | None:
        """Start or stop the recordings (``kind``: one of them; None: every one); None
        when done (everyone is told), or why not. Stopping writes what is queued: call it
        off the event loop."""
        with self._lock:
            return self._record(requester, action, kind)

    def _record(self, requester: Requester, action: str, kind: str | None) -> str | None:
        role, why = self._controller.role_for(requester)
        kinds = [kind] if kind is not None else list(self.recordings)
        problem: str | None = None
        if role is None:
            problem = why.replace("controlling the radio", "recording").replace(
                "control the radio", "start or stop a recording")
        elif not self.recordings:
            problem = ("this server records nothing: start it with record_dir (spectra) or, "
                       "in argos-spectrum, record_iq_dir (IQ samples as SigMF)")
        elif kind is not None and kind not in self.recordings:
            problem = (f"this server has no {kind} recording (set {_SETTING[kind]}); it has "
                       + ", ".join(self.recordings))
        changed = []
        if problem is None:
            for name in kinds:
                recording = self.recordings[name]
                if action == "start" and not recording.started:
                    recording.start()
                    changed.append(name)
                elif action == "stop" and recording.started:
                    recording.stop()
                    changed.append(name)
        outcome = "refused" if problem else "accepted"
        self._count(f"record_{action}", outcome)
        line = (f"event=record action={action} client={requester.client_id} "
                f"peer={requester.peer} role={role or '-'} kinds={','.join(kinds) or '-'} "
                f"outcome={outcome}"
                + (f" changed={','.join(changed)}" if changed and len(changed) != len(kinds)
                   else "")
                + (f" reason={quoted(problem)}" if problem else ""))
        if role is None:  # may not record at all: at a bounded rate, as the control's
            self._controller.audit_line(role, "record_refused_unprivileged", line)
        else:
            self._audit(line)
        if problem is None:
            self._broadcast("recording", {
                "event": "started" if action == "start" else "stopped",
                "kinds": kinds, "client_id": requester.client_id, "role": role,
                "recording": self.state()})
        return problem
