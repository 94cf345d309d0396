"""Total deadlines (issue 14): a token request or an endpoint GET whose answer trickles in
a byte at a time is given up at its total deadline, not held for as long as each read
keeps arriving within the per-read timeout."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest

from cxhealth.tasks.checks.http import total_deadline_s


class TricklingTLSServer:
    """HTTPS on 127.0.0.1: answers every request with a valid token response, one byte per
    ``pause_s`` (it would take minutes), and counts the requests."""

    BODY = b'{"access_token": "tok-trickle-secret", "token_type": "bearer", "expires_in": 3600}'

    def __init__(self, tls_lab, tmp_path, pause_s: float = 0.2) -> None:
        leaf = tls_lab.cas.public_issuing.issue_leaf(["trickle.faults.test"])
        files = leaf.write(tmp_path, "trickle")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(files.chain), str(files.key))
        self.pause_s = pause_s
        self.requests = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(raw,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                self.requests += 1
                answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          + f"Content-Length: {len(self.BODY)}\r\n\r\n".encode() + self.BODY)
                for i in range(len(answer)):
                    if self._stop.wait(self.pause_s):
                        return
                    conn.sendall(answer[i:i + 1])
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def test_a_token_answer_trickling_in_is_given_up_at_the_total_deadline(tls_lab, tmp_path, monkeypatch) -> None:
    from cxhealth.cli.run import check_all, load_run_config
    import asyncio

    server = TricklingTLSServer(tls_lab, tmp_path)
    monkeypatch.setenv("TRICKLE_SECRET", "trickle-client-secret")
    try:
        path = tmp_path / "targets.toml"
        path.write_text("\n".join([
            "[[target]]", 'name = "trickle"', 'platform = "generic"', 'client_id = "c"',
            'client_secret_env = "TRICKLE_SECRET"', "timeout = 1",
            f'token_url = "https://trickle.faults.test:{server.port}/oauth/token"',
            f'api_base = "https://trickle.faults.test:{server.port}"',
            f'resolve = ["trickle.faults.test:{server.port}:127.0.0.1"]', f'ca_bundle = "{tls_lab.client_store}"',
            "", "[breaker]", f'store = "sqlite:///{tmp_path}/b.sqlite3"', ""]))
        config, targets = load_run_config(str(path))
        started = time.monotonic()
        (report,) = asyncio.run(check_all(config, targets))
        elapsed = time.monotonic() - started
    finally:
        server.close()
    # The whole answer would take ~30 s (150 bytes at 0.2 s); the request gets 3 × timeout
    assert report["stage"] == "oauth" and report["oauth"]["ok"] is False
    assert elapsed < 15, elapsed
    assert server.requests == 1  # a timeout is not retried
    assert "tok-trickle-secret" not in str(report)


def test_the_total_deadline_is_three_steps_of_the_timeout() -> None:
    assert total_deadline_s(5) == 15
