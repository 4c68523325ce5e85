# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared pytest helpers for gr-argos. Keep this small; add fixtures below as needed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gr_argos.protocol import StreamInfo
from gr_argos.server import ServerConfig, SpectrumServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

#: The repository root (the directory holding pyproject.toml).
REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: takes seconds (builds, installs or runs real flowgraphs)"
    )


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root as a Path."""
    return REPO_ROOT


#: How long a test waits for something that normally takes milliseconds (a loaded 2-core
#: machine can be very slow; a test only waits this long when it is about to fail anyway).
WAIT_TIMEOUT_S = 20.0

WaitUntil = Callable[..., Awaitable[None]]


async def _wait_until(
    predicate: Callable[[], object], timeout: float = WAIT_TIMEOUT_S, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for "
                                 f"{what or getattr(predicate, '__name__', 'a condition')}")
        await asyncio.sleep(0.02)


@pytest.fixture
def wait_until() -> WaitUntil:
    """``await wait_until(predicate, timeout=20, what="...")``: poll until true, else fail.

    It sleeps on the running event loop between polls, so clients and hub callbacks on that
    loop keep running while the test waits.
    """
    return _wait_until


def _argos_server_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("argos-server-")}


@pytest.fixture
def no_server_thread_left() -> Iterator[None]:
    """Fail the test if a SpectrumServer loop thread it started is still alive afterwards.

    Use it as the first fixture of a test (or with ``usefixtures``) so it checks after the
    test's own fixtures have stopped their servers and flowgraphs.
    """
    before = _argos_server_threads()
    yield
    left = sorted(t.name for t in _argos_server_threads() - before)
    assert not left, f"server threads still running after the test: {left}"


@pytest.fixture
def start_server(no_server_thread_left: None) -> Iterator[Callable[..., SpectrumServer]]:
    """``start_server(**ServerConfig settings)``: a running server on a free port, stopped
    after the test."""
    servers: list[SpectrumServer] = []

    def start(**settings: Any) -> SpectrumServer:
        server = SpectrumServer(ServerConfig(port=0, **settings))
        server.add_stream(StreamInfo(stream_id=0, name="spectrum", bins=2048,
                                     center_freq_hz=100e6, span_hz=2.048e6, fps=30.0))
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


# -- the browser viewer (tests/viewer_page.py) ---------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module; every test opens its own context."""
    from helpers import headless_chromium

    with headless_chromium() as chromium:
        yield chromium


def _browser_context(browser: Browser, **options: Any) -> Iterator[BrowserContext]:
    ctx = browser.new_context(**options)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A 1280x800 screen with a mouse."""
    yield from _browser_context(browser, viewport={"width": 1280, "height": 800})


@pytest.fixture
def desktop(browser: Browser) -> Iterator[BrowserContext]:
    """A 1440x900 desktop screen with a mouse."""
    yield from _browser_context(browser, viewport={"width": 1440, "height": 900})


@pytest.fixture
def phone(browser: Browser) -> Iterator[BrowserContext]:
    """A 390x844 phone screen with touch."""
    yield from _browser_context(browser, viewport={"width": 390, "height": 844},
                                device_scale_factor=3, is_mobile=True, has_touch=True)
