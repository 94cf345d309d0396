"""The fleet harness talks to its server with Prefect's own client, retries included.

A Prefect server answers 503 while its database is busy (the CI failure that once
motivated a home-made retrying client: ``create_flow_run`` on the SQLite-backed
server). The harness now uses ``SyncPrefectClient`` (``cxhealth.lab.fleet.client``),
whose retries of 408/429/502/503 are Prefect's; these tests check, against a real
local HTTP server that is briefly busy, that the harness keeps them (it neither
disables nor wraps them) and that what is not transient is not retried.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cxhealth.lab import fleet


class _Busy:
    """An HTTP server that answers *busy* times with *status* (Retry-After: 0) before a 200."""

    def __init__(self, busy: int, status: int = 503) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests.append(self.path)
                if len(outer.requests) <= busy:
                    body, code = b'{"exception_message":"Service Unavailable"}', status
                else:
                    body, code = b"true", 200
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("retry-after", "0")  # no waiting in the test
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
def busy_server():
    servers: list[_Busy] = []

    def make(busy: int, status: int = 503) -> _Busy:
        servers.append(_Busy(busy, status))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_the_harness_client_is_prefects_own():
    from prefect.client.orchestration import SyncPrefectClient

    assert isinstance(fleet.client("http://127.0.0.1:9/api"), SyncPrefectClient)


def test_a_busy_server_is_retried_until_it_answers(busy_server):
    server = busy_server(busy=2)
    with fleet.client(server.url) as api:
        assert fleet.healthy(api)
    assert server.requests == ["/api/health"] * 3


def test_a_server_busy_past_prefects_retries_is_not_healthy(busy_server):
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

    server = busy_server(busy=100)
    with fleet.client(server.url) as api:
        assert not fleet.healthy(api)
    assert len(server.requests) == PREFECT_CLIENT_MAX_RETRIES.value() + 1


def test_a_client_error_is_not_retried(busy_server):
    server = busy_server(busy=1, status=422)
    with fleet.client(server.url) as api:
        assert not fleet.healthy(api)
    assert len(server.requests) == 1
