# SPDX-License-Identifier: GPL-3.0-or-later
"""Tabs of one viewer share one connection (gr_argos/web/shared-connection.js), in real
headless Chromium (pages of one browser context: tabs of one browser) against a real
in-process :class:`~gr_argos.server.SpectrumServer` publishing at about 30 frames/s.

Five tabs: the server counts one client and every tab draws; the leader tab closes: another
takes over (one client again), every tab keeps drawing, and each tab's missed count is the
number of frames it did not get (the new leader, resuming from the server's ring, none).
Without Web Locks (a page over plain http from another machine) the tabs elect their leader
over the BroadcastChannel alone, and two tabs that led at once resolve to one without losing
a frame; a leader that goes silent is taken for gone. Each tab gets the answers to its own
requests (pongs, stats, detections) only.
With ``?share=0`` every tab has its own connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from viewer_page import VIEW_DRAWN, WAIT_MS, Viewer, open_viewer
from viewer_server import SPAN_HZ, Served, serve, start_server

pytestmark = pytest.mark.slow

TABS = 5

# Record the sequence of every frame the page's client gets from now on, and the viewer's
# missed count now; RECORDED_JS reads them back with the missed count then.
RECORD_JS = """() => {
    const viewer = window.argosViewer;
    window.__recorded = { sequences: [], missedBefore: viewer.stats().framesMissed };
    viewer.client.addEventListener("frame", (event) => {
        window.__recorded.sequences.push(event.detail.frame.sequence);
    });
}"""
RECORDED_JS = """() => ({ ...window.__recorded,
                          missedAfter: window.argosViewer.stats().framesMissed })"""


# A browser without Web Locks, as for a page over plain http from another machine (Web Locks
# exist only in a secure context, and the tests' http://127.0.0.1 is one).
NO_WEB_LOCKS_JS = "delete Navigator.prototype.locks;"

# No Web Locks, and the tab's BroadcastChannels hear and say nothing while window.__deaf is
# true: tabs that cannot hear each other each lead, as when a claim is not heard in time on a
# busy machine, and a leader that says nothing looks gone.
SWITCHED_CHANNEL_JS = NO_WEB_LOCKS_JS + """
window.__deaf = false;
window.BroadcastChannel = class extends BroadcastChannel {
    postMessage(message) { if (!window.__deaf) super.postMessage(message); }
    set onmessage(listener) {
        super.onmessage = (event) => { if (!window.__deaf) listener(event); };
    }
};
"""


@pytest.fixture
def served(no_server_thread_left: None) -> Iterator[Served]:
    yield from serve()


def wait_for_clients(served: Served, count: int) -> None:
    """Wait until the server has ``count`` clients connected."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while served.server.hub.client_count != count:
        assert time.monotonic() < deadline, (
            f"the server has {served.server.hub.client_count} clients, expected {count}")
        time.sleep(0.05)


def role(viewer: Viewer) -> str:
    return str(viewer.stats()["shared"]["role"])


def holes(sequences: list[int]) -> int:
    """How many sequences between the first and the last recorded are not there."""
    return (max(sequences) - min(sequences) + 1) - len(set(sequences))


@pytest.mark.parametrize("election", ["lock", "channel"])
def test_five_tabs_share_one_connection_and_the_next_tab_takes_over(
        served: Served, context: BrowserContext, election: str) -> None:
    """Five tabs of the viewer: one connection on the server, one leader, every tab draws;
    closing the leader hands the connection to another tab: still one connection, frames
    keep coming to every tab, and each tab's missed count is what it did not get. The same
    in a browser without Web Locks (a page over plain http from another machine): the tabs
    elect their leader over the BroadcastChannel alone."""
    if election == "channel":
        context.add_init_script(NO_WEB_LOCKS_JS)
    viewers = [open_viewer(context, served.page_url) for _ in range(TABS)]
    for viewer in viewers:
        viewer.wait_for("s.state === 'open' && s.framesDrawn >= 3 && s.rowsDrawn >= 1")
    wait_for_clients(served, 1)
    roles = [role(viewer) for viewer in viewers]
    assert sorted(roles) == ["follower"] * (TABS - 1) + ["leader"], roles
    assert served.server.hub.client_count == 1
    assert {viewer.stats()["shared"]["election"] for viewer in viewers} == {election}

    for viewer in viewers:
        viewer.page.evaluate(RECORD_JS)
    for viewer in viewers:
        viewer.wait_for_more_frames(5)
    leader = viewers[roles.index("leader")]
    leader.page.close()
    rest = [viewer for viewer in viewers if viewer is not leader]

    deadline = time.monotonic() + WAIT_MS / 1000
    while [role(viewer) for viewer in rest].count("leader") != 1:
        assert time.monotonic() < deadline, [role(viewer) for viewer in rest]
        time.sleep(0.1)
    for viewer in rest:
        viewer.wait_for("s.state === 'open' && s.client.reconnects >= 1")
        viewer.wait_for_more_frames(10)
    wait_for_clients(served, 1)

    for viewer in rest:
        recorded = viewer.page.evaluate(RECORDED_JS)
        sequences = recorded["sequences"]
        missed = recorded["missedAfter"] - recorded["missedBefore"]
        assert holes(sequences) == missed, (role(viewer), missed, sequences)
        if role(viewer) == "leader":
            assert missed == 0  # resumed from the server's ring
        assert viewer.errors == []
    assert served.server.hub.client_count == 1


def test_share_0_gives_every_tab_its_own_connection(served: Served,
                                                    context: BrowserContext) -> None:
    """With ?share=0 two tabs are two clients of the server, each drawing."""
    viewers = [open_viewer(context, served.page_url + "?share=0") for _ in range(2)]
    for viewer in viewers:
        viewer.wait_for("s.state === 'open' && s.framesDrawn >= 3")
        assert viewer.stats()["shared"]["role"] == "off"
    wait_for_clients(served, 2)


@pytest.mark.parametrize("zooming", ["follower", "leader"])
def test_a_tab_that_zooms_gets_its_own_connection_and_the_others_keep_sharing(
        served: Served, context: BrowserContext, zooming: str) -> None:
    """Three tabs share one connection; one zooms in (a follower, or the leader, which keeps
    its connection and hands the group over): it has a connection of its own that gets its
    window (the server counts two clients), and the two others share the whole stream, still
    drawing."""
    viewers = [open_viewer(context, served.page_url) for _ in range(3)]
    for viewer in viewers:
        viewer.wait_for("s.state === 'open' && s.framesDrawn >= 3")
    wait_for_clients(served, 1)
    zoomer = next(viewer for viewer in viewers if role(viewer) == zooming)
    zoomer.page.evaluate("""() => {
        const w = window.argosViewer.stats().window;
        const quarter = (w.stopHz - w.startHz) / 4;
        window.argosViewer.zoom.setWindow(w.startHz + quarter, w.stopHz - quarter);
    }""")
    zoomer.wait_for(f"s.shared.role === 'own' && s.state === 'open' && {VIEW_DRAWN}")
    assert zoomer.stats()["lastView"]["span_hz"] < SPAN_HZ
    wait_for_clients(served, 2)
    others = [viewer for viewer in viewers if viewer is not zoomer]
    for viewer in others:
        viewer.wait_for("s.state === 'open' && ['leader', 'follower'].includes(s.shared.role)")
        viewer.wait_for_more_frames(5)
        assert viewer.stats()["window"]["stopHz"] - viewer.stats()["window"]["startHz"] \
            == pytest.approx(SPAN_HZ)
        assert viewer.errors == []
    assert sorted(role(viewer) for viewer in others) == ["follower", "leader"]


def test_shared_tabs_follow_a_server_restart_whose_sequences_start_again(
        served: Served, context: BrowserContext) -> None:
    """The server restarts on its port and the stream's sequence starts again from 0: both
    tabs of the group reconnect, one connection again, and draw the new frames at once (no
    frame taken for one already seen), with the restart's gap counted in each."""
    viewers = [open_viewer(context, served.page_url + "?backoffCapMs=1000") for _ in range(2)]
    for viewer in viewers:
        viewer.wait_for("s.state === 'open' && s.framesReceived >= 150")
    port = served.server.port
    served.server.stop()
    for viewer in viewers:
        viewer.wait_for("s.state !== 'open'")
    # The frames from now on: those of the restarted stream, from 0, must not be taken for
    # the ones already seen (up to `seen`).
    seen = max(viewer.stats()["lastSequence"] for viewer in viewers)
    for viewer in viewers:
        viewer.page.evaluate(RECORD_JS)
    served.server = start_server(port)
    served.publisher.sequence = 0
    served.publisher.server = served.server
    for viewer in viewers:
        viewer.wait_for("s.state === 'open' && s.gapEvents >= 1")
        viewer.wait_for_more_frames(5)
        assert min(viewer.page.evaluate(RECORDED_JS)["sequences"]) < seen
        assert viewer.stats()["shared"]["skippedAgain"] == 0
        # The browser logs each refused attempt while the server is down; nothing else.
        assert [e for e in viewer.errors if "ERR_CONNECTION_REFUSED" not in e] == []
    wait_for_clients(served, 1)
    assert sorted(role(viewer) for viewer in viewers) == ["follower", "leader"]


def test_two_tabs_leading_at_once_resolve_to_one_without_losing_frames(
        served: Served, context: BrowserContext) -> None:
    """Without Web Locks, two tabs that could not hear each other both lead (two
    connections); once they hear each other the one that led first stays and the other
    follows it: one connection, both drawing, and the tab that gave up its connection
    missed no frame (it resumes through the leader's recent frames)."""
    context.add_init_script(SWITCHED_CHANNEL_JS + "window.__deaf = true;")
    first = open_viewer(context, served.page_url)
    first.wait_for("s.state === 'open' && s.shared.role === 'leader' && s.framesDrawn >= 3")
    second = open_viewer(context, served.page_url)
    second.wait_for("s.state === 'open' && s.shared.role === 'leader' && s.framesDrawn >= 3")
    wait_for_clients(served, 2)
    for viewer in (first, second):
        viewer.page.evaluate(RECORD_JS)
        viewer.wait_for_more_frames(5)

    for viewer in (first, second):
        viewer.page.evaluate("window.__deaf = false")
    second.wait_for("s.shared.role === 'follower' && s.shared.yielded === 1 && "
                    "s.state === 'open' && s.client.reconnects >= 1")
    wait_for_clients(served, 1)
    for viewer in (first, second):
        viewer.wait_for_more_frames(10)
    assert role(first) == "leader"
    assert first.stats()["shared"]["yielded"] == 0
    recorded = second.page.evaluate(RECORDED_JS)
    assert recorded["missedAfter"] == recorded["missedBefore"]
    assert holes(recorded["sequences"]) == 0
    for viewer in (first, second):
        assert viewer.errors == []
    assert served.server.hub.client_count == 1


# Record the answers the page's client gets from now on: pongs (their ids), stats,
# detections and errors; and the ids of the pings it sends.
RECORD_ANSWERS_JS = """() => {
    const client = window.argosViewer.client;
    const answers = { pings: [], pongs: [], stats: 0, detections: [], errors: [] };
    window.__answers = answers;
    const watch = (ws) => {
        const send = ws.send.bind(ws);
        ws.send = (data) => {
            const message = typeof data === "string" ? JSON.parse(data) : {};
            if (message.type === "ping") answers.pings.push(message.id);
            return send(data);
        };
    };
    watch(client._ws);
    client.addEventListener("state", () => { if (client._ws) watch(client._ws); });
    client.addEventListener("pong", (event) => answers.pongs.push(event.detail.id));
    client.addEventListener("stats", () => { answers.stats += 1; });
    client.addEventListener("detections", (event) => answers.detections.push(event.detail.events));
    client.addEventListener("error", (event) => answers.errors.push(event.detail.message));
}"""


def test_each_tab_gets_the_answers_to_its_own_requests(served: Served,
                                                       context: BrowserContext) -> None:
    """Two tabs sharing a connection each ping every 0.5 s: each gets the pongs of its own
    pings only, with a round-trip time of its own; a follower's stats and detections
    requests are answered to it alone, the leader's to the leader alone, and a follower's
    bad request gets its error in that tab only."""
    url = served.page_url + "?heartbeatIntervalMs=500"
    viewers = [open_viewer(context, url) for _ in range(2)]
    for viewer in viewers:
        viewer.wait_for("s.state === 'open' && s.framesDrawn >= 3")
    wait_for_clients(served, 1)
    leader = next(viewer for viewer in viewers if role(viewer) == "leader")
    follower = next(viewer for viewer in viewers if role(viewer) == "follower")
    for viewer in viewers:
        viewer.page.evaluate(RECORD_ANSWERS_JS)

    follower.page.evaluate("""() => {
        const client = window.argosViewer.client;
        client.send({ type: "stats" });
        client.send({ type: "stats" });
        client.requestDetections({ limit: 5 });
        client.send({ type: "detections", limit: 0 });
    }""")
    leader.page.evaluate("window.argosViewer.client.requestDetections({ limit: 7 })")
    answers_js = "window.__answers"
    follower.page.wait_for_function(
        f"{answers_js}.stats >= 2 && {answers_js}.detections.length >= 1 && "
        f"{answers_js}.errors.length >= 1 && {answers_js}.pongs.length >= 4", timeout=WAIT_MS)
    leader.page.wait_for_function(
        f"{answers_js}.detections.length >= 1 && {answers_js}.pongs.length >= 4",
        timeout=WAIT_MS)
    time.sleep(1)  # time for any answer sent to the wrong tab to arrive there too

    follower_answers = follower.page.evaluate(answers_js)
    leader_answers = leader.page.evaluate(answers_js)
    assert follower_answers["stats"] == 2 and leader_answers["stats"] == 0
    assert len(follower_answers["detections"]) == 1
    assert len(leader_answers["detections"]) == 1
    assert len(follower_answers["errors"]) == 1
    assert "detections: field 'limit'" in follower_answers["errors"][0]
    assert leader_answers["errors"] == []
    for answers in (follower_answers, leader_answers):
        # Each pong answers a ping of this tab's (one sent since recording, or just before),
        # once: no pong of the other tab's.
        pings, pongs = answers["pings"], answers["pongs"]
        assert len(set(pongs)) == len(pongs) <= len(pings) + 1, answers
        assert all(pong in pings or pong < min(pings) for pong in pongs), answers
    for viewer in viewers:
        assert viewer.stats()["client"]["lastRttMs"] is not None
        assert viewer.errors == []


def test_a_silent_leader_is_taken_for_gone_and_leads_again_once_heard(
        served: Served, context: BrowserContext) -> None:
    """Without Web Locks, three tabs share; the leader says nothing more on the channel (as
    a crashed tab): the two others take it for gone within seconds, one of them leads and
    the other follows it, both drawing, each with its missed count the frames it did not
    get. Heard again, the old leader, which led first, stays: one connection again."""
    context.add_init_script(SWITCHED_CHANNEL_JS)
    viewers = [open_viewer(context, served.page_url) for _ in range(3)]
    for viewer in viewers:
        viewer.wait_for("s.state === 'open' && s.framesDrawn >= 3")
    wait_for_clients(served, 1)
    leader = next(viewer for viewer in viewers if role(viewer) == "leader")
    rest = [viewer for viewer in viewers if viewer is not leader]
    for viewer in rest:
        viewer.page.evaluate(RECORD_JS)
    leader.page.evaluate("window.__deaf = true")

    deadline = time.monotonic() + WAIT_MS / 1000
    while sorted(role(viewer) for viewer in rest) != ["follower", "leader"]:
        assert time.monotonic() < deadline, [role(viewer) for viewer in rest]
        time.sleep(0.1)
    wait_for_clients(served, 2)  # the silent leader still has its own
    for viewer in rest:
        viewer.wait_for("s.state === 'open' && s.client.reconnects >= 1")
        viewer.wait_for_more_frames(10)
        recorded = viewer.page.evaluate(RECORDED_JS)
        missed = recorded["missedAfter"] - recorded["missedBefore"]
        assert holes(recorded["sequences"]) == missed, (role(viewer), missed, recorded)

    leader.page.evaluate("window.__deaf = false")
    wait_for_clients(served, 1)
    assert role(leader) == "leader"
    for viewer in viewers:
        viewer.wait_for("s.state === 'open'")
        viewer.wait_for_more_frames(5)
        assert viewer.errors == []
    assert sorted(role(viewer) for viewer in rest) == ["follower", "follower"]


def test_a_tab_opened_after_a_handover_joins_a_second_trace_stream(
        no_server_thread_left: None, context: BrowserContext) -> None:
    """A stream with a second trace (every tab asks for the format that carries it): after
    the leader closes, the tab that takes over reconnects with that format in its URL, and
    a tab opened then still joins the group (one connection), drawing both traces."""
    for served in serve(second_trace=True):
        first, second = (open_viewer(context, served.page_url) for _ in range(2))
        for viewer in (first, second):
            viewer.wait_for("s.state === 'open' && s.secondFramesReceived >= 3")
        wait_for_clients(served, 1)
        leader, other = (first, second) if role(first) == "leader" else (second, first)
        leader.page.close()
        other.wait_for("s.shared.role === 'leader' && s.client.reconnects >= 1")
        other.wait_for_more_frames(5)
        late = open_viewer(context, served.page_url)
        late.wait_for("s.state === 'open' && s.secondFramesReceived >= 3")
        assert role(late) == "follower", late.stats()["shared"]
        wait_for_clients(served, 1)
        assert other.errors == [] and late.errors == []
