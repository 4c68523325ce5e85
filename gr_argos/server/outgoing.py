# SPDX-License-Identifier: GPL-3.0-or-later
"""What the hub sends: a published frame with the variants encoded from it, and a message
with its bytes on the wire, each built once however many clients get it.

A frame is published once, as float32 bytes. A client that asked for another format (int16
or uint8, deflated or not: :class:`~gr_argos.protocol.FrameFormat`), or a view of it (a
slice at some resolution: :mod:`gr_argos.server.views`), gets a variant derived from it
lazily, when it is first offered or sent to such a client, and cached on the frame's
:class:`PublishedFrame`: a variant is encoded at most once per frame, and never for a frame
every client dropped. Plain code: no GNU Radio, no sockets.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import struct
from collections import Counter
from typing import Callable, Iterable

from gr_argos.protocol import (
    FLAG_COMPRESSED,
    FLAG_SECOND_TRACE,
    HEADER_SIZE,
    FrameFormat,
    ProtocolError,
    compress_frame,
    decode_frame,
    reencode_frame,
)
from gr_argos.server.pyramid import Pyramid, encode_view
from gr_argos.server.logs import LimitRepeats
from gr_argos.server.views import StreamGeometry, ViewSlice

__all__ = ["DEFLATE_IN", "DEFLATE_OUT", "OutgoingMessage", "PYRAMID_LEVELS", "PublishedFrame",
           "Wrap", "nearest_format"]

log = logging.getLogger(__name__)
# A frame that cannot be encoded for a client is one of many alike (every frame of a stream
# until it is fixed): a few lines and a count, not one line per frame and format.
log.addFilter(LimitRepeats())

#: ``center_freq_hz`` and ``span_hz`` in a frame's header, at byte 40.
_BAND = struct.Struct("<dd")

#: Keys of the hub's ``encodes`` counter that add up the frame bytes deflated and the bytes
#: deflate made of them (``stats()`` reports them under ``total["deflate"]``).
DEFLATE_IN, DEFLATE_OUT = "deflate_in_bytes", "deflate_out_bytes"
#: Key of the hub's ``encodes`` counter that adds up the pyramid levels built for views
#: (``stats()`` reports it as ``total["pyramid_levels"]``).
PYRAMID_LEVELS = "pyramid_levels"

#: ``wrap(data, text)``: the bytes that carry ``data`` on the wire (text: a JSON message).
Wrap = Callable[[bytes, bool], bytes]


@functools.lru_cache(maxsize=64)
def _uncompressed(frame_format: FrameFormat) -> FrameFormat:
    """``frame_format`` without deflate (asked for each compressed variant encoded)."""
    return dataclasses.replace(frame_format, compress=False)


def nearest_format(wanted: FrameFormat, available: Iterable[FrameFormat]) -> FrameFormat:
    """The format of ``available`` closest to ``wanted``: the same encoding first, then the
    same compression, then the closest uint8 step (so a server at its limit of formats
    gives a client the nearest one already made for others)."""
    return min(available, key=lambda other: (
        other.encoding != wanted.encoding, other.compress != wanted.compress,
        other.second_trace != wanted.second_trace,
        abs(other.step_db - wanted.step_db)))


class PublishedFrame:
    """One published frame and the variants of it encoded so far (touched on the loop only).

    A variant is a format, or a view's slice of the frame (:mod:`gr_argos.server.views`) in
    a format; a slice is cut from the frame's :class:`~gr_argos.server.pyramid.Pyramid`,
    built on first use too.

    Args:
        stream_id: the stream the frame belongs to.
        data: the frame as published (float32, uncompressed, from every producer today).
        published_at: ``time.monotonic()`` when the producer published it (for the send
            latency metric).
    """

    __slots__ = ("stream_id", "data", "published_at", "_variants", "_wire", "_pyramid",
                 "_geometry")

    def __init__(self, stream_id: int, data: bytes, published_at: float = 0.0) -> None:
        self.stream_id = stream_id
        self.data = data
        self.published_at = published_at
        self._variants: dict[tuple[ViewSlice | None, FrameFormat], bytes] = {}
        self._wire: dict[tuple[ViewSlice | None, FrameFormat | None], tuple[bytes, bytes]] = {}
        self._pyramid: Pyramid | None = None
        self._geometry: StreamGeometry | None = None

    @property
    def sequence(self) -> int:
        """The frame's ``sequence`` (0 for a frame too short to have one)."""
        return int.from_bytes(self.data[16:24], "little")

    @property
    def timestamp_ns(self) -> int:
        """The frame's ``timestamp_ns`` (0 for a frame too short to have one)."""
        return int.from_bytes(self.data[32:40], "little", signed=True)

    def nbytes(self) -> int:
        """Bytes this frame holds after :meth:`trim`: as published plus the variants
        encoded of it (the memory a ring of recent frames accounts for)."""
        return len(self.data) + sum(len(variant) for variant in self._variants.values())

    def trim(self) -> None:
        """Forget what only the fan-out needs: the framed copies (a queued or replayed frame
        is framed by its sender) and the pyramid of levels (built again should a new view
        of this frame be asked for). Called once the frame was offered to every client."""
        self._wire.clear()
        self._pyramid = None

    def geometry(self) -> StreamGeometry | None:
        """The bins and band of the frame, from its header (None: too short to have them)."""
        if self._geometry is None and len(self.data) >= HEADER_SIZE:
            center_freq_hz, span_hz = _BAND.unpack_from(self.data, 40)
            self._geometry = StreamGeometry(int.from_bytes(self.data[28:32], "little"),
                                            center_freq_hz, span_hz)
        return self._geometry

    def on_wire(self, frame_format: FrameFormat | None, encodes: Counter[str],
                wrap: Wrap, view: ViewSlice | None = None) -> tuple[bytes, bytes]:
        """The frame in ``frame_format`` (of ``view``, if given) and those bytes as ``wrap``
        frames them, built once."""
        pair = self._wire.get((view, frame_format))
        if pair is None:
            data = self.in_format(frame_format, encodes, view)
            pair = self._wire[view, frame_format] = (data, wrap(data, False))
        return pair

    def in_format(self, frame_format: FrameFormat | None, encodes: Counter[str],
                  view: ViewSlice | None = None) -> bytes:
        """The frame in ``frame_format`` (None: as published), sliced to ``view`` when one
        is given, encoded on first use.

        A frame published with a second trace goes out with it only to formats that ask for
        it (``second_trace``); None and the others get the first trace alone, as a v1
        reader expects. A format asking for a second trace gets a frame without one as is.

        Each variant encoded is counted in ``encodes`` under its name (``+view`` added for a
        slice; the pyramid levels built under ``PYRAMID_LEVELS``); a compressed one deflates
        the uncompressed variant of its encoding, which is cached too (the bytes in and out
        of deflate are added up under ``DEFLATE_IN`` and ``DEFLATE_OUT``). A frame that does
        not decode, or no longer holds the view, is passed on as published (and
        ``encodes["errors"]`` counts it).
        """
        published = self._published_format()
        if frame_format is None:
            if published is None or (not published.second_trace and view is None):
                return self.data
            frame_format = dataclasses.replace(published, second_trace=False)
        elif frame_format.second_trace and not (published and published.second_trace):
            frame_format = dataclasses.replace(frame_format, second_trace=False)
        if frame_format == published and view is None:
            return self.data
        variant = self._variants.get((view, frame_format))
        if variant is None:
            name = frame_format.name + ("+view" if view is not None else "")
            try:
                if frame_format.compress:
                    source = self.in_format(_uncompressed(frame_format), encodes, view)
                    variant = compress_frame(source)
                    encodes[DEFLATE_IN] += len(source)
                    encodes[DEFLATE_OUT] += len(variant)
                elif view is not None:
                    variant = self._encode_view(view, frame_format, encodes)
                else:
                    variant = reencode_frame(self.data, frame_format)
            except (ProtocolError, ValueError) as exc:
                log.warning("cannot encode a frame of stream %d as %s: %s; sending it as "
                            "published", self.stream_id, name, exc)
                encodes["errors"] += 1
                variant = self.data
            else:
                encodes[name] += 1
            self._variants[view, frame_format] = variant
        return variant

    def _encode_view(self, view: ViewSlice, frame_format: FrameFormat,
                     encodes: Counter[str]) -> bytes:
        if self._pyramid is None:
            self._pyramid = Pyramid(decode_frame(self.data))
        built = self._pyramid.levels_built
        try:
            return encode_view(self._pyramid, view, frame_format)
        finally:
            encodes[PYRAMID_LEVELS] += self._pyramid.levels_built - built

    def _published_format(self) -> FrameFormat | None:
        data = self.data
        try:
            return FrameFormat(data[10], bool(data[8] & FLAG_COMPRESSED),
                               second_trace=bool(data[8] & FLAG_SECOND_TRACE))
        except (IndexError, ValueError):
            return None


class OutgoingMessage:
    """A JSON message and its bytes on the wire, built on first use (touched on the loop)."""

    __slots__ = ("text", "_pair")

    def __init__(self, text: str) -> None:
        self.text = text
        self._pair: tuple[bytes, bytes] | None = None

    def on_wire(self, wrap: Wrap) -> tuple[bytes, bytes]:
        if self._pair is None:
            data = self.text.encode()
            self._pair = (data, wrap(data, True))
        return self._pair
