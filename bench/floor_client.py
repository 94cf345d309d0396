"""The floor: a bare asyncio client doing N verified handshakes concurrently,
capturing protocol, cipher and chain, nothing else (issue 2's reference).

    python bench/floor_client.py TARGETS_FILE CA_BUNDLE   (targets: https://host:port lines, all on 127.0.0.1)
"""

import asyncio
import ssl
import sys


async def one(ctx: ssl.SSLContext, host: str, port: int) -> tuple:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=host)
    obj = writer.get_extra_info("ssl_object")
    chain = obj._sslobj.get_unverified_chain() if hasattr(obj, "_sslobj") else obj.get_unverified_chain()
    facts = (obj.version(), obj.cipher()[0], [c.public_bytes(2) if not isinstance(c, bytes) else c for c in chain])
    writer.transport.abort()
    return facts


async def main(path: str, ca: str) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    targets = []
    for line in open(path):
        host, _, port = line.strip().removeprefix("https://").partition(":")
        targets.append((host, int(port)))
    results = await asyncio.gather(*(one(ctx, h, p) for h, p in targets))
    print(len(results), "handshakes", results[0][0], results[0][1])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
