# SPDX-License-Identifier: GPL-3.0-or-later
"""argos-gateway processes fed by a real GNU Radio flowgraph whose sink publishes over ZeroMQ,
read by real WebSocket clients."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from helpers import REPO_ROOT, RECEIVE_TIMEOUT_S, RunningProcess, running

gr = pytest.importorskip("gnuradio.gr")
from gnuradio import blocks  # noqa: E402

from gr_argos.protocol import SpectrumFrame, decode_frame, decode_message  # noqa: E402
from gr_argos.server.spectrum_server import http_url  # noqa: E402
from gr_argos.zmq_sink import zmq_sink  # noqa: E402

pytestmark = pytest.mark.slow

WAIT_S = 30.0
VLEN = 16
VECTORS_PER_S = 20
PUBLISHER_TIMEOUT_S = 1.5
# Eight distinct spectra; vector k holds -10k dB plus a ramp, so any mix-up shows.
VECTORS = [np.float32(-10.0 * k) - np.arange(VLEN, dtype=np.float32) for k in range(8)]
URL_PATTERN = re.compile(r"connect to (ws://\S+)")


class Client:
    """A real WebSocket client on its own thread, keeping every message it gets."""

    def __init__(self, url: str) -> None:
        self.hello: dict[str, Any] | None = None
        self.events: list[SpectrumFrame | dict[str, Any]] = []  # frames and JSON, in order
        self.closed: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT_S) and self.hello is not None, "no hello from the gateway"

    def _read(self, url: str) -> None:
        with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as ws:
            self.hello = decode_message(ws.recv(timeout=RECEIVE_TIMEOUT_S))
            self._ready.set()
            try:
                while not self._stop.is_set():
                    try:
                        message = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    event = (decode_frame(message) if isinstance(message, bytes)
                             else decode_message(message))
                    with self._lock:
                        self.events.append(event)
            except ConnectionClosed as exc:
                self.closed = str(exc)

    def snapshot(self) -> list[SpectrumFrame | dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def frames(self) -> list[SpectrumFrame]:
        return [e for e in self.snapshot() if isinstance(e, SpectrumFrame)]

    def wait_for(self, what: str, predicate: Any) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return
            time.sleep(0.05)
        pytest.fail(f"client did not get {what} within {WAIT_S:.0f} s: {self.snapshot()[-5:]}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def publisher_status(events: list[Any], state: str) -> int | None:
    """Index of the first ``status`` message saying the publisher is ``state``, or None."""
    for index, event in enumerate(events):
        if isinstance(event, dict) and event.get("publisher") == state:
            return index
    return None


@pytest.fixture
def publisher_flowgraph() -> Iterator[tuple[Any, zmq_sink]]:
    """vector source -> throttle -> zmq_sink on a free tcp port.

    The source emits whole vectors, so a stop and start cannot shift them (a stream_to_vector
    could be left holding part of one).
    """
    tb = gr.top_block()
    source = blocks.vector_source_f(np.concatenate(VECTORS).tolist(), True, VLEN, [])
    throttle = blocks.throttle(gr.sizeof_float * VLEN, VECTORS_PER_S, True)
    throttle.set_max_noutput_items(1)
    sink = zmq_sink(bins=VLEN, center_freq=100e6, span=8e6, stream_name="zmq-test",
                    status_interval_s=0, zmq_endpoint="tcp://127.0.0.1:0")
    tb.connect(source, throttle, sink)
    try:
        yield tb, sink
    finally:
        tb.stop()
        tb.wait()
        sink.stop()


def gateway(endpoint: str) -> Any:
    return running(
        [sys.executable, "-u", "-m", "gr_argos.apps.gateway", "--connect", endpoint,
         "--port", "0", "--publisher-timeout-s", str(PUBLISHER_TIMEOUT_S)],
        REPO_ROOT, url_pattern=URL_PATTERN, name="argos-gateway")


def test_two_gateways_relay_the_same_frames_and_survive_a_publisher_restart(
        publisher_flowgraph: tuple[Any, zmq_sink]) -> None:
    """Clients of two gateways get the same sequence numbers and payloads; when the publisher
    stops they are told it went silent, stay connected, are told when it is back, and the
    frames resume with the sequence continuing past the last one seen (the sink keeps counting
    across stop/start; frames lost while the gateways reconnect show as a jump)."""
    tb, sink = publisher_flowgraph
    endpoint = sink.url
    assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":0")
    with ExitStack() as stack:
        gateways: list[RunningProcess] = [stack.enter_context(gateway(endpoint))
                                          for _ in range(2)]
        clients = []
        for process in gateways:
            client = Client(process.wait_for_url())
            stack.callback(client.close)
            clients.append(client)
        for client in clients:
            assert client.hello is not None
            (stream,) = client.hello["streams"]
            assert (stream["name"], stream["bins"], stream["center_freq_hz"],
                    stream["span_hz"]) == ("zmq-test", VLEN, 100e6, 8e6)

        tb.start()
        for client in clients:
            client.wait_for("10 frames", lambda events: sum(
                isinstance(e, SpectrumFrame) for e in events) >= 10)
        first, second = ({f.sequence: f for f in client.frames()} for client in clients)
        common = sorted(set(first) & set(second))
        assert len(common) >= 5, (sorted(first), sorted(second))
        for sequence in common:
            np.testing.assert_array_equal(first[sequence].power_db, second[sequence].power_db)
        for frames in (first, second):
            sequences = sorted(frames)
            assert sequences == list(range(sequences[0], sequences[-1] + 1))  # none lost
            for sequence, frame in frames.items():
                np.testing.assert_array_equal(frame.power_db, VECTORS[sequence % 8])

        tb.stop()
        tb.wait()  # the sink's stop() closes the publisher: no more heartbeats
        for client in clients:
            client.wait_for("publisher silent", lambda events: publisher_status(
                events, "silent") is not None)
        last_before = [max(f.sequence for f in client.frames()) for client in clients]

        tb.start()  # the sink binds the same endpoint again; ZeroMQ reconnects the gateways
        for client in clients:
            client.wait_for("publisher ok and 5 frames after it", lambda events: (
                (ok := publisher_status(events, "ok")) is not None
                and sum(isinstance(e, SpectrumFrame) for e in events[ok:]) >= 5))

        for client, last in zip(clients, last_before):
            assert client.closed is None, client.closed
            events = client.snapshot()
            silent, ok = publisher_status(events, "silent"), publisher_status(events, "ok")
            assert silent is not None and ok is not None and silent < ok
            assert not any(isinstance(e, SpectrumFrame) for e in events[silent:ok])
            after = [e for e in events[ok:] if isinstance(e, SpectrumFrame)]
            assert after[0].sequence > last, (last, after[0].sequence)  # continued, no restart
            sequences = [f.sequence for f in after]
            assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
            for frame in after:
                assert any(np.array_equal(frame.power_db, v) for v in VECTORS)
        for process in gateways:
            assert process.process.poll() is None, process.output()


def test_a_client_resumes_on_another_gateway_of_the_same_publisher(
        publisher_flowgraph: tuple[Any, zmq_sink]) -> None:
    """Gateways relaying the same publisher serve the same session (made from the
    publisher's), so a client that leaves one and reconnects to another (a worker of
    --workers, a host behind a balancer) resumes: the frames it missed come first, flagged
    as replayed, with the sequences following its last one, then the live ones; no gap."""
    tb, sink = publisher_flowgraph
    with ExitStack() as stack:
        first, second = (stack.enter_context(gateway(sink.url)) for _ in range(2))
        tb.start()
        leaving = Client(first.wait_for_url())
        stack.callback(leaving.close)
        leaving.wait_for("5 frames", lambda events: sum(
            isinstance(e, SpectrumFrame) for e in events) >= 5)
        leaving.close()
        assert leaving.hello is not None
        session, last = leaving.hello["session"], leaving.frames()[-1].sequence

        url = second.wait_for_url()
        time.sleep(1.0)  # the second gateway's ring fills with frames the client has not got
        with connect(f"{url}?resume_session={session}&resume_from=0:{last}",
                     open_timeout=RECEIVE_TIMEOUT_S) as ws:
            hello = decode_message(ws.recv(timeout=RECEIVE_TIMEOUT_S))
            assert hello["session"] == session
            frames = []
            while len(frames) < 30:
                message = ws.recv(timeout=RECEIVE_TIMEOUT_S)
                if isinstance(message, bytes):
                    frames.append(decode_frame(message))
                else:
                    assert decode_message(message)["type"] != "error", message
        sequences = [f.sequence for f in frames]
        assert sequences == list(range(last + 1, last + 1 + len(frames))), sequences
        assert frames[0].replayed and not frames[-1].replayed
        assert all(f.missed == 0 for f in frames)
        for frame in frames:
            np.testing.assert_array_equal(frame.power_db, VECTORS[frame.sequence % 8])
        for process in (first, second):
            sessions = re.findall(r"serving session (\w+)", process.output())
            assert sessions[-1:] == [session], process.output()


def test_workers_share_one_port_and_stop_with_the_first_gateway() -> None:
    """--workers 3 serves one port from three processes (three hello instances among many
    clients, each listing the publisher's stream, all of one session: the publisher's run);
    SIGINT stops them all."""
    from gr_argos.protocol import StreamInfo
    from gr_argos.zmq_transport import FramePublisher

    publisher = FramePublisher("tcp://127.0.0.1:0", heartbeat_interval_s=0.2)
    publisher.add_stream(StreamInfo(stream_id=4, name="shared", bins=VLEN))
    try:
        with running(
                [sys.executable, "-u", "-m", "gr_argos.apps.gateway", "--connect",
                 publisher.endpoint, "--port", "0", "--workers", "3"],
                REPO_ROOT, url_pattern=URL_PATTERN, name="argos-gateway") as process:
            url = process.wait_for_url()
            instances, sessions = set(), set()
            deadline = time.monotonic() + WAIT_S
            while len(instances) < 3 and time.monotonic() < deadline:
                with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as ws:
                    hello = decode_message(ws.recv(timeout=RECEIVE_TIMEOUT_S))
                if [s["name"] for s in hello["streams"]] == ["shared"]:
                    instances.add(hello["instance"])  # a worker may still await a heartbeat
                    sessions.add(hello["session"])
            assert len(instances) == 3, process.output()
            assert len(sessions) == 1, (sessions, process.output())
            pids = [int(pid) for pid in re.search(r"pids ([\d, ]+)", process.output())
                    .group(1).split(", ")]
        deadline = time.monotonic() + WAIT_S
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids), process.output()
    finally:
        publisher.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _FrameFeed:
    """A FramePublisher sending stream 4 at VECTORS_PER_S frames/s, sequences 0, 1, 2, ...,
    each frame the next of ``spectra`` (8 MHz wide at 100 MHz)."""

    def __init__(self, spectra: list[np.ndarray] = VECTORS) -> None:
        from gr_argos.protocol import StreamInfo
        from gr_argos.zmq_transport import FramePublisher

        self.spectra = spectra
        self.publisher = FramePublisher("tcp://127.0.0.1:0", heartbeat_interval_s=0.2)
        self.publisher.add_stream(StreamInfo(stream_id=4, name="shared", bins=len(spectra[0]),
                                             center_freq_hz=100e6, span_hz=8e6))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        from gr_argos.protocol import encode_frame

        sequence = 0
        while not self._stop.wait(1 / VECTORS_PER_S):
            self.publisher.publish_frame(4, encode_frame(
                self.spectra[sequence % len(self.spectra)], center_freq_hz=100e6, span_hz=8e6,
                timestamp_ns=time.time_ns(), sequence=sequence, stream_id=4))
            sequence += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.publisher.close()


class _Listener:
    """An ArgosClient on the test's event loop, keeping its frames and, for each connection,
    the process that served it: the one whose "relaying ... (process P, instance I, ...)"
    line names the instance of the connection's hello (the workers share a session).
    """

    def __init__(self, url: str, output: Any) -> None:
        from gr_argos.client import ArgosClient

        self.client = ArgosClient(url, backoff_base_s=0.2, backoff_cap_s=1.0,
                                  heartbeat_interval_s=0)
        self.instances: list[str] = []  # one per connection, from its hello
        self.frames_per_connection: list[int] = []
        self._output = output
        self.task = asyncio.ensure_future(self._listen())

    @property
    def pids(self) -> list[int]:
        """The process of each connection so far (-1 while its line is not printed yet)."""
        processes = {instance: int(pid) for pid, instance in
                     re.findall(r"\(process (\d+), instance ([0-9a-f]+),", self._output())}
        return [processes.get(instance, -1) for instance in self.instances]

    async def _listen(self) -> None:
        from gr_argos.client import FrameEvent, MessageEvent

        async for event in self.client:
            if isinstance(event, MessageEvent) and event.type == "hello":
                self.instances.append(str(event.message["instance"]))
                self.frames_per_connection.append(0)
            elif isinstance(event, FrameEvent) and self.frames_per_connection:
                self.frames_per_connection[-1] += 1


async def _until(what: str, predicate: Any, output: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_S:.0f} s: {what}\n{output()}")
        await asyncio.sleep(0.05)


async def test_a_killed_worker_is_restarted_and_only_its_clients_reconnect() -> None:
    """With --workers 3, SIGKILL of one worker: its ArgosClients report a reconnect and get
    frames again (from another process or the restarted one), the clients of the other two
    processes see neither a reconnect nor a gap, and a new worker process serves the port."""
    feed = _FrameFeed()
    listeners: list[_Listener] = []
    try:
        with running(
                [sys.executable, "-u", "-m", "gr_argos.apps.gateway", "--connect",
                 feed.publisher.endpoint, "--port", "0", "--workers", "3",
                 "--publisher-timeout-s", "5"],
                REPO_ROOT, url_pattern=URL_PATTERN, name="argos-gateway") as process:
            url = process.wait_for_url()
            await _until("3 gateway processes started", lambda: re.search(
                r"pids \d+, \d+", process.output()), process.output)
            worker_pids = {int(p) for p in re.search(r"pids ([\d, ]+)", process.output())
                           .group(1).split(", ")}
            # Spawned is not serving: each worker says "relaying ... (process PID" once it
            # listens; until then the kernel gives every connection to the first process.
            await _until("every worker serving", lambda: all(
                f"(process {pid}," in process.output() for pid in worker_pids), process.output)
            # New connections are spread over the processes by a hash: add clients until
            # each process has at least one (bounded).
            while len({pid for x in listeners for pid in x.pids}) < 3 and len(listeners) < 30:
                listeners.append(_Listener(url, process.output))
                await _until("a hello from a known process",
                             lambda: listeners[-1].pids and -1 not in listeners[-1].pids,
                             process.output)
            by_pid = {pid: [x for x in listeners if x.pids == [pid]]
                      for pid in worker_pids | {process.process.pid}}
            assert all(by_pid.values()), (by_pid, process.output())
            await _until("5 frames on every client", lambda: all(
                x.frames_per_connection[-1] >= 5 for x in listeners), process.output)

            victim = min(worker_pids)
            os.kill(victim, signal.SIGKILL)
            await _until("the victim's clients reconnected and got 5 frames", lambda: all(
                len(x.pids) == 2 and x.frames_per_connection[-1] >= 5
                for x in by_pid[victim]), process.output)
            await _until("the worker restarted", lambda: re.search(
                rf"restarted gateway worker {victim} as pid (\d+)", process.output()),
                process.output)
            new_pid = int(re.search(rf"restarted gateway worker {victim} as pid (\d+)",
                                    process.output()).group(1))
            assert "exited (killed by SIGKILL)" in process.output()
            # The restarted worker serves the port: new connections reach it (bounded).
            probes: list[_Listener] = []
            while not any(p.pids == [new_pid] for p in probes) and len(probes) < 30:
                probes.append(_Listener(url, process.output))
                listeners.append(probes[-1])
                await _until("a hello from a known process",
                             lambda: probes[-1].pids and -1 not in probes[-1].pids,
                             process.output)
            assert any(p.pids == [new_pid] for p in probes), process.output()

            for victim_client in by_pid[victim]:
                assert victim_client.client.stats.reconnects == 1
                assert victim_client.pids[1] != victim
            for pid, clients in by_pid.items():
                if pid == victim:
                    continue
                for survivor in clients:
                    stats = survivor.client.stats
                    assert (stats.reconnects, stats.gaps, survivor.pids) == (0, 0, [pid]), \
                        (stats, process.output())
            assert process.process.poll() is None, process.output()
    finally:
        for listener in listeners:
            await listener.client.close()
        await asyncio.gather(*(x.task for x in listeners), return_exceptions=True)
        feed.close()


def test_with_several_publishers_the_silent_one_is_named_and_its_return_too() -> None:
    """A gateway connected to two publishers tells clients which endpoint went silent when
    only one stops (the other is never reported), and which one is back when it returns on
    the same endpoint; its /metrics says the same in argos_publisher_silent{endpoint}."""
    from gr_argos.protocol import StreamInfo
    from gr_argos.zmq_transport import FramePublisher

    steady = FramePublisher("tcp://127.0.0.1:0", heartbeat_interval_s=0.2)
    steady.add_stream(StreamInfo(stream_id=1, name="steady", bins=VLEN))
    flaky = FramePublisher("tcp://127.0.0.1:0", heartbeat_interval_s=0.2)
    flaky.add_stream(StreamInfo(stream_id=2, name="flaky", bins=VLEN))
    flaky_endpoint = flaky.endpoint
    try:
        with running(
                [sys.executable, "-u", "-m", "gr_argos.apps.gateway", "--connect",
                 steady.endpoint, "--connect", flaky_endpoint, "--port", "0",
                 "--publisher-timeout-s", "1"],
                REPO_ROOT, url_pattern=URL_PATTERN, name="argos-gateway") as process:
            client = Client(process.wait_for_url())
            try:
                metrics_url = http_url(process.wait_for_url())
                assert _silent_gauges(metrics_url) == {steady.endpoint: 0, flaky_endpoint: 0}
                flaky.close()
                client.wait_for("flaky silent", lambda events: publisher_status(
                    events, "silent") is not None)
                assert _silent_gauges(metrics_url) == {steady.endpoint: 0, flaky_endpoint: 1}
                flaky = FramePublisher(flaky_endpoint, heartbeat_interval_s=0.2)
                client.wait_for("flaky ok", lambda events: publisher_status(
                    events, "ok") is not None)
                assert _silent_gauges(metrics_url) == {steady.endpoint: 0, flaky_endpoint: 0}
                time.sleep(1.5)  # longer than the timeout: steady must still not be reported
                statuses = [e for e in client.snapshot()
                            if isinstance(e, dict) and "publisher" in e]
                assert [(s["publisher"], s["endpoint"]) for s in statuses] == [
                    ("silent", flaky_endpoint), ("ok", flaky_endpoint)], process.output()
                assert statuses[1]["session"] == flaky.session
            finally:
                client.close()
    finally:
        steady.close()
        flaky.close()


def test_gateway_reads_its_settings_from_a_yaml_file(tmp_path: Any) -> None:
    """--config applies the same setting names as argos-spectrum: a token set in the file is
    required by the gateway, and an unknown key is refused naming the key (exit 2)."""
    from websockets.exceptions import InvalidStatus

    config = tmp_path / "gateway.yaml"
    config.write_text("token: yaml-secret-41\npublisher_timeout: 0.5\n")
    # Nobody publishes on port 9: the gateway serves anyway after the publisher timeout.
    command = [sys.executable, "-u", "-m", "gr_argos.apps.gateway", "--connect",
               "tcp://127.0.0.1:9", "--port", "0", "--config", str(config)]
    with running(command, REPO_ROOT, url_pattern=URL_PATTERN, name="argos-gateway") as relay:
        url = relay.wait_for_url()
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=RECEIVE_TIMEOUT_S,
                    additional_headers={"Authorization": "Bearer wrong"})
        assert refused.value.response.status_code == 401
        with connect(url, open_timeout=RECEIVE_TIMEOUT_S,
                     additional_headers={"Authorization": "Bearer yaml-secret-41"}) as ws:
            assert decode_message(ws.recv(timeout=RECEIVE_TIMEOUT_S))["type"] == "hello"

    config.write_text("tokn: typo\n")
    result = subprocess.run(
        [sys.executable, "-m", "gr_argos.apps.gateway", "--connect", "tcp://127.0.0.1:9",
         "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown key 'tokn'" in result.stderr


def test_a_gateway_sets_the_encoding_and_step_its_clients_get() -> None:
    """--encoding uint8 --step-db 1 (the names of argos-spectrum) replace the publisher's
    float32 for the gateway's clients: hello says so and the frames are uint8 on whole-dB
    levels; a gateway without them keeps the publisher's encoding."""
    feed = _FrameFeed()
    try:
        for flags, encoding in ((["--encoding", "uint8", "--step-db", "1"], 2), ([], 0)):
            command = [sys.executable, "-u", "-m", "gr_argos.apps.gateway", "--connect",
                       feed.publisher.endpoint, "--port", "0", *flags]
            with running(command, REPO_ROOT, url_pattern=URL_PATTERN,
                         name="argos-gateway") as relay:
                with connect(relay.wait_for_url(), open_timeout=RECEIVE_TIMEOUT_S) as ws:
                    hello = decode_message(ws.recv(timeout=RECEIVE_TIMEOUT_S))
                    frame = next(decode_frame(m) for m in iter(
                        lambda: ws.recv(timeout=RECEIVE_TIMEOUT_S), None)
                        if isinstance(m, bytes))
            (stream,) = hello["streams"]
            assert frame.encoding == encoding, flags
            if encoding == 2:
                assert (stream["encoding"], stream["step_db"]) == ("uint8", 1.0)
                assert np.all(frame.power_db == np.round(frame.power_db))
            else:
                assert stream["encoding"] == "float32" and "step_db" not in stream
    finally:
        feed.close()


def test_a_gateway_serves_views_cut_from_the_publishers_full_frames() -> None:
    """The publisher sends one 4096-bin frame; the gateway's clients ask for views (in the URL
    and with set_view) and get slices of it whose header says the band they cover, with a
    one-bin carrier at its full level; two clients asking alike share one view."""
    spectrum = np.full(4096, -100.0, dtype=np.float32)
    carrier = 2500  # 100 MHz + (2500 - 2048) * 1953.125 Hz = 100.8828 MHz
    spectrum[carrier] = -30.0
    feed = _FrameFeed([spectrum])
    query = "?center_freq_hz=100.88e6&span_hz=500e3&bins=64"
    try:
        command = [sys.executable, "-u", "-m", "gr_argos.apps.gateway", "--connect",
                   feed.publisher.endpoint, "--port", "0"]
        with running(command, REPO_ROOT, url_pattern=URL_PATTERN, name="argos-gateway") as relay:
            url = relay.wait_for_url()
            with connect(url + query, open_timeout=RECEIVE_TIMEOUT_S) as first, \
                    connect(url + query, open_timeout=RECEIVE_TIMEOUT_S) as second, \
                    connect(url, open_timeout=RECEIVE_TIMEOUT_S) as third:
                views = [_first_json(ws, "view") for ws in (first, second)]
                third.send('{"type": "set_view", "bins": 512, "fps_divisor": 2}')
                views.append(_first_json(third, "view"))
                frames = [_frames(ws, 3) for ws in (first, second, third)]
                found = _scrape(http_url(url))
    finally:
        feed.close()
    assert views[0] == views[1] and views[0]["level"] == 2 and views[0]["bins"] >= 64
    assert (views[2]["bins"], views[2]["level"], views[2]["fps_divisor"]) == (512, 3, 2)
    for view, got in zip(views, frames):
        for frame in got:
            assert (frame.center_freq_hz, frame.span_hz, frame.bin_count) == (
                view["center_freq_hz"], view["span_hz"], view["bins"])
            assert frame.power_db.max() == -30.0  # the carrier kept at every level
            peak_hz = frame.bin_freqs_hz()[int(np.argmax(frame.power_db))]
            assert abs(peak_hz - (100e6 + (carrier - 2048) * 8e6 / 4096)) <= frame.span_hz / (
                frame.bin_count * 2)
    # The first may be the frame current at set_view, sent again at once in the new view.
    assert {f.sequence % 2 for f in frames[2][1:]} == {0}
    assert found["argos_views"] == 2


def _first_json(ws: Any, msg_type: str) -> dict[str, Any]:
    """The first JSON message of ``msg_type`` (frames and other messages before it skipped)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        message = ws.recv(timeout=RECEIVE_TIMEOUT_S)
        if isinstance(message, str) and (decoded := decode_message(message))["type"] == msg_type:
            return decoded
    pytest.fail(f"no {msg_type} message within {WAIT_S:.0f} s")


def _frames(ws: Any, count: int) -> list[SpectrumFrame]:
    frames = []
    while len(frames) < count:
        message = ws.recv(timeout=RECEIVE_TIMEOUT_S)
        if isinstance(message, bytes):
            frames.append(decode_frame(message))
    return frames


def _metric_families(base_url: str) -> Iterator[Any]:
    """The metric families of the gateway's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(base_url.rstrip("/") + "/metrics", timeout=WAIT_S) as response:
        text = response.read().decode()
    return text_string_to_metric_families(text)


def _scrape(base_url: str) -> dict[str, float]:
    """The gateway's /metrics, each metric summed over its labels."""
    found: dict[str, float] = {}
    for family in _metric_families(base_url):
        for sample in family.samples:
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def _silent_gauges(base_url: str) -> dict[str, float]:
    """argos_publisher_silent of the gateway's /metrics, by endpoint."""
    return {sample.labels["endpoint"]: sample.value for family in _metric_families(base_url)
            if family.name == "argos_publisher_silent" for sample in family.samples}
