# SPDX-License-Identifier: GPL-3.0-or-later
"""HTTP routes on the server's port (gr_argos/server/routes.py), as plain code: no sockets."""

from __future__ import annotations

import http
import json

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from gr_argos.server.routes import Routes, json_response, static_file


IP = "127.0.0.1"


def get(path: str) -> Request:
    return Request(path, Headers([("Host", "127.0.0.1:8765")]))


def body_of(response: Response) -> bytes:
    return bytes(response.body or b"")


def test_a_path_in_the_table_goes_to_its_handler_whatever_the_query() -> None:
    """The table is looked up by path without the query string."""
    seen: list[str] = []

    def health(request: Request, peer_ip: str) -> Response:
        seen.append(request.path + " from " + peer_ip)
        return json_response(http.HTTPStatus.OK, {"status": "ok"})

    response = Routes({"/healthz": health}).respond(get("/healthz?verbose=1"), "10.0.0.9")
    assert response.status_code == 200 and json.loads(body_of(response)) == {"status": "ok"}
    assert seen == ["/healthz?verbose=1 from 10.0.0.9"]


def test_the_viewer_and_its_files_are_served_with_their_types() -> None:
    """/ is the viewer's index.html; its script and style come with the right types."""
    routes = Routes({})
    index = routes.respond(get("/"), IP)
    assert index.status_code == 200 and b"<!doctype html>" in body_of(index).lower()
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert index.headers["Cache-Control"] == "no-cache"
    assert routes.respond(get("/argos-client.js"), IP).headers["Content-Type"] == (
        "text/javascript; charset=utf-8")


@pytest.mark.parametrize("path", ["/../pyproject.toml", "/web/index.html", "/.hidden.js",
                                  "/__init__.py", "/nothing.js", "/%2e%2e/setup.py"])
def test_anything_else_is_404_never_a_file_outside_the_viewer(path: str) -> None:
    """Only files of the packaged viewer with a known type are served."""
    assert static_file(path) is None
    response = Routes({}).respond(get(path), IP)
    assert response.status_code == 404
    assert body_of(response) == f"not found: {path}\n".encode()


def test_a_json_refusal_carries_retry_after() -> None:
    """json_response with retry_after_s sets the header clients honour."""
    response = json_response(http.HTTPStatus.SERVICE_UNAVAILABLE, {"error": "full"}, 5)
    assert response.headers["Retry-After"] == "5"
    assert json.loads(body_of(response)) == {"error": "full"}


@pytest.mark.parametrize("method", ["POST", "DELETE", "TRACE", "PUT", "OPTIONS"])
def test_only_get_is_served_other_methods_get_405(method: str) -> None:
    """A method other than GET and HEAD is refused with 405 and Allow, never served as GET."""
    request = Request("/healthz", Headers([("Host", "127.0.0.1:8765")]), method=method)
    response = Routes({"/healthz": lambda request, ip: json_response(
        http.HTTPStatus.OK, {"status": "ok"})}).respond(request, IP)
    assert response.status_code == 405 and response.headers["Allow"] == "GET, HEAD"


def test_head_has_the_headers_of_get_and_no_body() -> None:
    """HEAD answers with GET's status and headers (Content-Length too) and an empty body."""
    routes = Routes({})
    got = routes.respond(get("/"), IP)
    head = routes.respond(Request("/", Headers([("Host", "127.0.0.1:8765")]), method="HEAD"),
                          IP)
    assert head.status_code == got.status_code == 200
    assert head.headers["Content-Length"] == got.headers["Content-Length"] != "0"
    assert body_of(head) == b""
