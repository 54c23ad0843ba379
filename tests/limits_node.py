"""A media node under a lowered descriptor limit, for test_media_limits.py.

Runs in its own process (`python tests/limits_node.py --nofile N`), since
the limit is the whole process's. Beside the node, in the same event loop,
a stand-in for the console (an HTTP server answering 200) shows whether the
rest of the process still gets descriptors. Prints `READY rtmp http
console` once listening; then reads commands from stdin, one a line:
`fill K` takes every free descriptor but K (as other parts of a process
would), `free` gives them back, `quit` stops. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livecenter.media import listener  # noqa: E402
from livecenter.media.node import MediaNode, NodeConfig  # noqa: E402
from livecenter.media.policy import MemorySink  # noqa: E402
from tests.mediasupport import default_policy  # noqa: E402


async def console(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nconsole\n")
    await writer.drain()
    writer.close()


async def main(args) -> None:
    loop = asyncio.get_running_loop()
    config = NodeConfig(
        host="127.0.0.1",
        rtmp_port=0,
        http_port=0,
        node_id="limits",
        reserve_descriptors=args.reserve,
        handshake_timeout_seconds=120,
    )
    node = MediaNode(config, default_policy(), MemorySink())
    await node.start()
    console_server = await asyncio.start_server(console, "127.0.0.1", 0)
    print("READY", node.rtmp_port, node.http_port, console_server.sockets[0].getsockname()[1], flush=True)
    filler: list[int] = []
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while line := (await stdin.readline()).decode().split():
        if line[0] == "fill":
            for _ in range(100):  # the connections of before gone first
                if not node.gate.open:
                    break
                await asyncio.sleep(0.1)
            while True:
                try:
                    filler.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            for _ in range(int(line[1])):
                os.close(filler.pop())
            print("FILLED", len(filler), flush=True)
        elif line[0] == "free":
            while filler:
                os.close(filler.pop())
            print("FREED", flush=True)
        elif line[0] == "quit":
            break
    console_server.close()
    await node.stop()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--nofile", type=int, required=True)
    parser.add_argument("--reserve", type=int, default=64)
    parser.add_argument("--summary-seconds", type=float, default=5)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
    listener.LOG_SUMMARY_SECONDS = args.summary_seconds
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main(args))
