"""The fleet's REST client against a real local HTTP server that is briefly busy.

A Prefect server answers 503 while its database is busy (the CI failure that
motivated this: ``create_flow_run`` on the SQLite-backed server). The client
must ride it out the way Prefect's own client does, and must not retry what is
not transient.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from deployments.fleet import FleetAPI


class _Busy:
    """An HTTP server that answers *busy* 503s (or a fixed status) before a JSON 200."""

    def __init__(self, busy: int, status: int = 503) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.requests.append(self.path)
                if len(outer.requests) <= busy:
                    body, code = b'{"exception_message":"Service Unavailable"}', status
                else:
                    body, code = json.dumps({"id": "run-1"}).encode(), 201
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def busy_server(request):
    servers: list[_Busy] = []

    def make(busy: int, status: int = 503) -> _Busy:
        servers.append(_Busy(busy, status))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_a_busy_server_is_retried_until_it_answers(busy_server):
    server = busy_server(busy=2)
    with FleetAPI(server.url) as api:
        run = api.run_deployment("d-1", {"targets": ["a"]})
    assert run == {"id": "run-1"}
    assert server.requests == ["/api/deployments/d-1/create_flow_run"] * 3


def test_a_server_busy_past_the_attempts_fails_with_its_status(busy_server):
    server = busy_server(busy=10)
    with FleetAPI(server.url, attempts=3) as api, pytest.raises(httpx.HTTPStatusError, match="503"):
        api.run_deployment("d-1")
    assert len(server.requests) == 3


def test_a_client_error_is_not_retried(busy_server):
    server = busy_server(busy=1, status=422)
    with FleetAPI(server.url) as api, pytest.raises(httpx.HTTPStatusError, match="422"):
        api.run_deployment("d-1", {"bad": object.__name__})
    assert len(server.requests) == 1
