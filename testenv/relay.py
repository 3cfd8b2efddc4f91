#!/usr/bin/env python3
"""A TCP relay: listens on ADDRESS:PORT for each given port and forwards every connection to the
same port on 127.0.0.1. The test environment's servers listen on loopback only; the relay lets
the local node's pods reach the apiserver, OpenBao and the AWS proxy through the node's veth,
and nothing else. Standard library only.

usage: relay.py ADDRESS PORT [PORT ...]
"""

from __future__ import annotations

import asyncio
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass


def handler(port: int):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        for w in (writer, up_writer):
            w.close()
    return handle


async def main(address: str, ports: list[int]) -> None:
    servers = [await asyncio.start_server(handler(p), address, p, reuse_address=True)
               for p in ports]
    print(f"relaying {address}:{{{','.join(map(str, ports))}}} to 127.0.0.1", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], [int(p) for p in sys.argv[2:]]))
