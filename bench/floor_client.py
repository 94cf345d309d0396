"""The floor: a bare asyncio client doing N verified handshakes concurrently,
capturing protocol, cipher and chain, nothing else (issue 2's reference).

    python bench/floor_client.py TARGETS_FILE CA_BUNDLE [PROXY_HOST:PORT]
    (targets: https://host:port lines, all on 127.0.0.1)

With PROXY_HOST:PORT every handshake goes through that HTTP proxy: a bare
CONNECT host:port, the answer head read, then the same handshake on the
tunnel (the floor for bench/bench_proxy.py).
"""

import asyncio
import socket
import ssl
import sys


async def tunnel(proxy: tuple[str, int], host: str, port: int):
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, proxy)
    await loop.sock_sendall(sock, f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise ConnectionError("proxy closed")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    return sock


async def one(ctx: ssl.SSLContext, host: str, port: int, proxy: tuple[str, int] | None = None) -> tuple:
    if proxy is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=host)
    else:
        sock = await tunnel(proxy, host, port)
        reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname=host)
    obj = writer.get_extra_info("ssl_object")
    chain = obj._sslobj.get_unverified_chain() if hasattr(obj, "_sslobj") else obj.get_unverified_chain()
    facts = (obj.version(), obj.cipher()[0], [c.public_bytes(2) if not isinstance(c, bytes) else c for c in chain])
    writer.transport.abort()
    return facts


async def main(path: str, ca: str, proxy_text: str | None = None) -> None:
    proxy = None
    if proxy_text:
        phost, _, pport = proxy_text.removeprefix("http://").partition(":")
        proxy = (phost, int(pport))
    ctx = ssl.create_default_context(cafile=ca)
    targets = []
    for line in open(path):
        host, _, port = line.strip().removeprefix("https://").partition(":")
        targets.append((host, int(port)))
    results = await asyncio.gather(*(one(ctx, h, p, proxy) for h, p in targets))
    print(len(results), "handshakes", results[0][0], results[0][1])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
