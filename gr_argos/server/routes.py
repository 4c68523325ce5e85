# SPDX-License-Identifier: GPL-3.0-or-later
"""HTTP on the WebSocket port: a table of routes, the browser's static files, and responses.

A request that is not a WebSocket upgrade is answered from :class:`Routes`: an exact path in
its table (``/healthz``, ``/metrics``), else a packaged browser file (``/`` is the viewer's
``index.html``), else 404. Only GET is served (HEAD too, without the body); other methods
get 405. Handlers are plain functions of the request; nothing here knows the server, which
builds the table with what each route needs.
"""

from __future__ import annotations

import http
import json
from importlib import resources
from typing import Any, Callable, Mapping

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from gr_argos import __version__

__all__ = ["Handler", "Routes", "json_response", "method_not_allowed", "request_method",
           "response", "static_file", "text_response"]

#: ``handler(request, peer_ip)`` -> the response.
Handler = Callable[[Request, str], Response]

SERVER_HEADER = f"gr-argos/{__version__}"
_WEB_PACKAGE = "gr_argos.web"
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ts": "text/plain; charset=utf-8",
}
_FALLBACK_INDEX = (
    "<!doctype html><meta charset=utf-8><title>gr-argos</title>"
    "<p>gr-argos is serving live spectrum on this port over WebSocket. "
    "Connect with <code>argos-client ws://HOST:PORT/</code>.</p>"
).encode()


class Routes:
    """Answers plain HTTP requests on the server's port.

    Args:
        table: exact path (without the query) -> handler.
    """

    def __init__(self, table: Mapping[str, Handler]) -> None:
        self._table = dict(table)

    def respond(self, request: Request, peer_ip: str) -> Response:
        """The response to a request (not a WebSocket upgrade) from ``peer_ip``."""
        method = request_method(request)
        if method not in ("GET", "HEAD"):
            return method_not_allowed(method)
        answer = self._get(request, peer_ip)
        if method == "HEAD":  # the same headers, Content-Length included, and no body
            answer = Response(answer.status_code, answer.reason_phrase, answer.headers, b"")
        return answer

    def _get(self, request: Request, peer_ip: str) -> Response:
        path = request.path.split("?", 1)[0]
        handler = self._table.get(path)
        if handler is not None:
            return handler(request, peer_ip)
        static = static_file(path)
        if static is not None:
            return response(http.HTTPStatus.OK, *static)
        return text_response(http.HTTPStatus.NOT_FOUND, f"not found: {path}\n")


def request_method(request: Request) -> str:
    """The request's method (websockets before 17.0 parsed only GET requests)."""
    return str(getattr(request, "method", "GET"))


def method_not_allowed(method: str) -> Response:
    """405 for a method other than GET and HEAD."""
    answer = text_response(http.HTTPStatus.METHOD_NOT_ALLOWED,
                           f"method {method[:16]} not allowed: use GET\n")
    answer.headers["Allow"] = "GET, HEAD"
    return answer


def static_file(path: str) -> tuple[str, bytes] | None:
    """The packaged browser file for ``path`` (``/`` is index.html) and its content type."""
    name = "index.html" if path == "/" else path.lstrip("/")
    if "/" in name or name.startswith(".") or not name:
        return None
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in _CONTENT_TYPES:
        return None
    try:
        data = resources.files(_WEB_PACKAGE).joinpath(name).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError, IsADirectoryError, NotADirectoryError):
        if name == "index.html":
            return _CONTENT_TYPES[".html"], _FALLBACK_INDEX
        return None
    return _CONTENT_TYPES[suffix], data


def response(status: http.HTTPStatus, content_type: str, body: bytes) -> Response:
    """A complete response with gr-argos' headers (never cached: it is live); websockets
    adds ``Server: SERVER_HEADER`` (the server passes it as ``server_header``)."""
    headers = Headers([
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ])
    return Response(status.value, status.phrase, headers, body)


def text_response(status: http.HTTPStatus, text: str) -> Response:
    return response(status, "text/plain; charset=utf-8", text.encode())


def json_response(status: http.HTTPStatus, body: dict[str, Any],
                  retry_after_s: int | None = None) -> Response:
    """A JSON response; with ``retry_after_s``, a ``Retry-After`` header too."""
    answer = response(status, "application/json", json.dumps(body).encode())
    if retry_after_s is not None:
        answer.headers["Retry-After"] = str(retry_after_s)
    return answer
