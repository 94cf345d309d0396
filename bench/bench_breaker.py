"""What does asking the breaker cost, next to the handshake it guards?

Measures ``Breaker.admit`` (p50/p99) on the memory, SQLite and Redis stores, in
the CLOSED state (the every-check path) and the OPEN state (the rejection that
replaces a handshake), and, in the same run, one verified TLS handshake
(TCP connect + TLS 1.3 handshake, certificate and host name checked) to a TLS
server on 127.0.0.1 with a throwaway CA made with ``cryptography``.

    python bench/bench_breaker.py [--iterations 5000] [--handshakes 300]

Redis is measured when it answers at 127.0.0.1:6379 (or --redis URL).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from cxhealth.tasks.breaker import BreakerConfig, open_breaker  # noqa: E402

HOST = "api.bench.test"
CAUSE = {"cause": "cert_expired", "summary": "bench"}


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    """(p50, p99) in microseconds."""
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return cuts[49] / 1000, cuts[98] / 1000


def time_calls(fn, iterations: int, warmup: int = 200) -> list[int]:
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        start = clock()
        fn()
        samples.append(clock() - start)
    return samples


def bench_store(name: str, url: str, iterations: int, **kwargs) -> list[tuple[str, str, list[int]]]:
    breaker = open_breaker(url, BreakerConfig(), **kwargs)
    if breaker.fallback_reason:
        print(f"  {name}: skipped ({breaker.fallback_reason})")
        return []
    closed_host, open_host = f"closed.{HOST}", f"open.{HOST}"
    assert breaker.admit(closed_host).admitted
    breaker.record_failure(open_host, CAUSE)
    breaker.record_failure(open_host, CAUSE)
    assert not breaker.admit(open_host).admitted
    rows = [
        (name, "closed (admit)", time_calls(lambda: breaker.admit(closed_host), iterations)),
        (name, "open (reject)", time_calls(lambda: breaker.admit(open_host), iterations)),
    ]
    fallback = breaker.admit(closed_host).fallback
    assert fallback is None, fallback
    breaker.close()
    return rows


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf for localhost/127.0.0.1 (P-256, valid one day)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cxhealth bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


def bench_handshake(iterations: int) -> list[int]:
    with tempfile.TemporaryDirectory() as tmp:
        ca_pem, cert_pem, key_pem = make_certificates(Path(tmp))
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert_pem, key_pem)
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                try:
                    with server_ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)  # wait for the client to close
                except (ssl.SSLError, OSError):
                    pass

        threading.Thread(target=serve, daemon=True).start()
        client_ctx = ssl.create_default_context(cafile=str(ca_pem))  # verifying

        def handshake() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    assert tls.version() in ("TLSv1.3", "TLSv1.2")

        try:
            return time_calls(handshake, iterations, warmup=20)
        finally:
            listener.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=5000, help="admit calls per row")
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    rows: list[tuple[str, str, list[int]]] = []
    rows += bench_store("memory", "memory://", args.iterations * 4)
    with tempfile.TemporaryDirectory() as tmp:
        rows += bench_store("sqlite", f"sqlite:///{tmp}/breaker.sqlite3", args.iterations)
    prefix = f"cxhealth-bench:{uuid.uuid4().hex}"
    rows += bench_store("redis", args.redis, args.iterations, key_prefix=prefix)
    try:
        import redis

        client = redis.Redis.from_url(args.redis, socket_connect_timeout=1)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    except Exception:  # noqa: BLE001 - the cleanup of a bench is best effort
        pass
    handshake = bench_handshake(args.handshakes)
    hs_p50, hs_p99 = percentiles(handshake)

    print()
    print(f"{'store':<8} {'state':<16} {'n':>6} {'p50 µs':>9} {'p99 µs':>9} {'handshake/admit (p50)':>22}")
    for store, state, samples in rows:
        p50, p99 = percentiles(samples)
        print(f"{store:<8} {state:<16} {len(samples):>6} {p50:>9.1f} {p99:>9.1f} {hs_p50 / p50:>21.0f}x")
    print(f"{'TLS':<8} {'handshake':<16} {len(handshake):>6} {hs_p50:>9.1f} {hs_p99:>9.1f} {1:>21.0f}x")
    print("\nhandshake: TCP connect + verified TLS handshake to 127.0.0.1 (no network latency);"
          "\na real platform adds RTTs, so the ratios here are a floor.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
