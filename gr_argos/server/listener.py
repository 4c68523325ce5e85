# SPDX-License-Identifier: GPL-3.0-or-later
"""The server's listening sockets, which still answer when the process is out of file
descriptors.

When every file descriptor the process may open is taken (a flood of connections, under a
low ``ulimit -n``), ``accept()`` fails with ``EMFILE`` and the connection waits in the
kernel's backlog, unanswered; asyncio's accept loop then logs a traceback for each of up to
100 more failing calls and stops listening for a second
([python/cpython#151615](https://github.com/python/cpython/issues/151615)). A
:class:`SheddingSocket` catches that failure itself: it gives back the few descriptors its
:class:`FdReserve` holds open on ``/dev/null``, accepts the connection with one of them,
writes a prepared answer (an HTTP 503 with ``Retry-After``), closes it, takes the reserve
again and reports the refusal; asyncio never sees the error.

:func:`listening_sockets` binds them as ``loop.create_server`` would (every address of the
host, ``SO_REUSEADDR``, IPv6 sockets IPv6-only), one port for all of them, even for port 0.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from typing import Callable

__all__ = ["FdReserve", "SheddingSocket", "listening_sockets"]

#: Connections a :meth:`SheddingSocket.accept` call refuses before it lets the event loop
#: run again (the loop calls it again while the listening socket is readable).
MAX_REFUSALS_PER_ACCEPT = 64

_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE)


class FdReserve:
    """A few file descriptors held open on ``/dev/null``, given back for a moment when the
    process runs out of them, so that it can still accept (and refuse) a connection.

    Args:
        count: descriptors to hold.
    """

    def __init__(self, count: int = 2) -> None:
        self._count = count
        self._fds: list[int] = []
        self.refill()

    def release(self) -> bool:
        """Close the descriptors held; whether there were any."""
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
        return bool(fds)

    def refill(self) -> None:
        """Open descriptors until ``count`` are held again, as far as the process may (a
        no-op when all are held)."""
        while len(self._fds) < self._count:
            try:
                self._fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:  # still out of descriptors: the next accept tries again
                return

    def close(self) -> None:
        self.release()
        self._count = 0


class SheddingSocket(socket.socket):
    """A listening TCP socket whose ``accept()`` refuses connections itself when the
    process is out of file descriptors, instead of failing.

    It answers each such connection with ``answer`` (nothing with TLS: a client expects a
    TLS handshake there, not HTTP), closes it and calls ``refused(peer)`` with its
    ``address:port``. Only when even the reserve could not be taken back does it let the
    ``EMFILE`` through (asyncio then pauses accepting for a second), once per pause.

    Args:
        family: the address family.
        proto: the protocol number from ``getaddrinfo``.
        reserve: the descriptors to give back to accept a connection over the limit.
        answer: the bytes a refused connection gets, or None to close it without a word.
        refused: called for each connection refused this way.
    """

    def __init__(self, family: int, proto: int, *, reserve: FdReserve, answer: bytes | None,
                 refused: Callable[[str], None]) -> None:
        super().__init__(family, socket.SOCK_STREAM, proto)
        self._reserve = reserve
        self._answer = answer
        self._refused = refused
        self._passed_on_failure = False

    def accept(self) -> tuple[socket.socket, object]:
        if self._passed_on_failure:
            # asyncio stopped listening after the failure let through: end its accept loop.
            self._passed_on_failure = False
            raise BlockingIOError(errno.EAGAIN, "accepting again later")
        self._reserve.refill()
        for _ in range(MAX_REFUSALS_PER_ACCEPT):
            try:
                return super().accept()
            except OSError as exc:
                if exc.errno not in _OUT_OF_FDS:
                    raise
                if not self._reserve.release():
                    self._passed_on_failure = True
                    raise
            try:
                connection, address = super().accept()
            except OSError as exc:
                self._reserve.refill()
                if exc.errno in _OUT_OF_FDS:
                    self._passed_on_failure = True
                raise
            self._refuse(connection)
            self._reserve.refill()
            self._refused(_address_text(address))
        raise BlockingIOError(errno.EAGAIN, "more connections to accept on the next round")

    def _refuse(self, connection: socket.socket) -> None:
        """Answer and close a connection accepted over the limit, without waiting for it."""
        with connection:
            connection.setblocking(False)
            if self._answer is None:
                return
            with contextlib.suppress(OSError):  # it went already: nothing to answer
                connection.send(self._answer)
            with contextlib.suppress(OSError):  # it sent nothing yet
                # Closing a socket with unread data resets the connection, and the client
                # might lose the answer with it: read what it sent so far.
                connection.recv(65536)


def listening_sockets(host: str, port: int, *, reuse_port: bool, reserve: FdReserve,
                      answer: bytes | None, refused: Callable[[str], None]
                      ) -> list[SheddingSocket]:
    """Bound (not yet listening) :class:`SheddingSocket` for every address of ``host``
    (``""``: every interface), all on one port (the first one's, when ``port`` is 0).

    Raises:
        OSError: the port is in use, or an address is not valid here (closed then).
    """
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                               0, socket.AI_PASSIVE)
    sockets: list[SheddingSocket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, _, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = SheddingSocket(family, proto, reserve=reserve, answer=answer,
                                  refused=refused)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _address_text(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
