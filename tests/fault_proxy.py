# SPDX-License-Identifier: GPL-3.0-or-later
"""A TCP proxy for network-fault tests: it sits between a server and its clients and the test
cuts, stalls or throttles the connections through it.

:class:`FaultProxy` listens on ``127.0.0.1`` port 0 and forwards every connection to a target
port on ``127.0.0.1``, byte for byte in both directions, until the test calls:

- :meth:`FaultProxy.cut`: reset every current connection on both sides (TCP RST), as when a
  link drops; new connections are forwarded again at once;
- :meth:`FaultProxy.refuse_new`: reset new connections as soon as they are accepted, as while
  the link stays down;
- :meth:`FaultProxy.stall` / :meth:`FaultProxy.resume`: stop forwarding server-to-client
  bytes while the sockets stay open, so the server's socket buffers fill up;
- :meth:`FaultProxy.throttle`: limit the server-to-client rate of each connection.

The socket to the server asks for a small receive buffer and segment size, so the proxy
itself holds only some tens of kB of what the server sent (not megabytes, as loopback
autotuning would give it); the server's own send buffer, which the kernel may grow past 1 MB
while the link is fast, still has to fill before the server drops frames.

Use it as ``async with FaultProxy(server.port) as proxy:``; leaving the block closes the
listening socket and every connection. This is a plain module the tests import (``tests/`` is
on ``sys.path``), like ``server_helpers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

__all__ = ["FaultProxy"]

HOST = "127.0.0.1"
#: Receive buffer and segment size of the proxy's sockets to the server, in bytes.
UPSTREAM_RCVBUF = 8192
UPSTREAM_MSS = 1024
#: What the proxy holds in user space per direction before it stops reading, in bytes.
STREAM_LIMIT = 16384
CHUNK = 65536
#: Throttled connections forward about this many chunks a second.
THROTTLE_CHUNKS_PER_S = 20


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection with a TCP RST (SO_LINGER 0), discarding what is unsent."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: the client's side and the side to the server."""

    def __init__(self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 server: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        host, port = self.server_writer.get_extra_info("sockname")[:2]
        #: This connection's address as the server sees it, ``"127.0.0.1:PORT"``.
        self.server_side_peer = f"{host}:{port}"

    def reset(self) -> None:
        """Reset both sides."""
        _reset(self.client_writer)
        _reset(self.server_writer)


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>`` whose
    connections the test can cut, stall and throttle (see the module docstring).

    Args:
        target_port: the server's port on 127.0.0.1.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections_accepted = 0
        self.connections_refused = 0
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._rate: float | None = None  # server-to-client bytes/s per connection, or None
        self._refusing = False

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, HOST, 0, limit=STREAM_LIMIT)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        assert self._server is not None, "use FaultProxy in an async with block"
        return self._server.sockets[0].getsockname()[1]

    def url(self, scheme: str = "ws", path: str = "/") -> str:
        """``scheme://127.0.0.1:<port><path>``: the server's address through the proxy."""
        return f"{scheme}://{HOST}:{self.port}{path}"

    def server_side_peers(self) -> list[str]:
        """The current connections as the server sees them (``"127.0.0.1:PORT"``, the
        ``peer`` of the server's per-client stats)."""
        return sorted(link.server_side_peer for link in self._links)

    # -- faults ----------------------------------------------------------------------------

    def cut(self) -> int:
        """Reset every current connection on both sides; return how many there were."""
        links, self._links = self._links, set()
        for link in links:
            link.reset()
        return len(links)

    def refuse_new(self, refuse: bool = True) -> None:
        """Reset (True) or forward again (False) connections accepted from now on."""
        self._refusing = refuse

    def stall(self) -> None:
        """Stop forwarding server-to-client bytes; the connections stay open."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward server-to-client bytes again after :meth:`stall`."""
        self._flowing.set()

    def throttle(self, bytes_per_s: float | None) -> None:
        """Limit each connection's server-to-client bytes per second (None: no limit)."""
        if bytes_per_s is not None and bytes_per_s <= 0:
            raise ValueError(f"bytes_per_s must be > 0, got {bytes_per_s}")
        self._rate = bytes_per_s

    # -- forwarding ------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop listening, reset every connection and wait for the forwarding tasks."""
        if self._server is not None:
            self._server.close()
        self.cut()
        self._flowing.set()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self._refusing:
                self.connections_refused += 1
                _reset(client_writer)
                return
            try:
                server_side = await self._connect_to_server()
            except OSError:
                _reset(client_writer)
                return
            self.connections_accepted += 1
            await self._forward(_Link((client_reader, client_writer), server_side))
        finally:
            self._handlers.discard(task)

    async def _connect_to_server(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UPSTREAM_RCVBUF)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, UPSTREAM_MSS)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (HOST, self.target_port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT)

    async def _forward(self, link: _Link) -> None:
        """Pump both directions until both ended; a reset of either side resets both."""
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(link, link.client_reader, link.server_writer, to_client=False),
                self._pump(link, link.server_reader, link.client_writer, to_client=True))
        finally:
            self._links.discard(link)
            for writer in (link.client_writer, link.server_writer):
                writer.transport.abort()

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, *, to_client: bool) -> None:
        """Copy one direction; at its end pass the half-close on."""
        try:
            while data := await reader.read(self._chunk_size(to_client)):
                if to_client:
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()
                if to_client and self._rate is not None:
                    await asyncio.sleep(len(data) / self._rate)
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        except OSError:  # ConnectionResetError and the like: the link is gone
            link.reset()

    def _chunk_size(self, to_client: bool) -> int:
        if to_client and self._rate is not None:
            return max(256, min(CHUNK, int(self._rate / THROTTLE_CHUNKS_PER_S)))
        return CHUNK
