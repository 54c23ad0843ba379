"""`manage.py medianode`: the media node as a process of its own (scaled
topology), with the database policy and the control listener."""

import asyncio
import signal

from django.core.management.base import BaseCommand

from nodes.medianode import node_config, running_media_node


class Command(BaseCommand):
    help = "Run a media node (RTMP ingest and play, HTTP-FLV) until SIGINT or SIGTERM."

    def add_arguments(self, parser):
        config = node_config()
        parser.add_argument("--host", default=config.host)
        parser.add_argument("--rtmp-port", type=int, default=config.rtmp_port)
        parser.add_argument("--http-port", type=int, default=config.http_port)

    def handle(self, *args, host, rtmp_port, http_port, **options):
        config = node_config()
        config.host, config.rtmp_port, config.http_port = host, rtmp_port, http_port
        asyncio.run(self.run(config))

    async def run(self, config) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        async with running_media_node(config) as node:
            self.stdout.write(
                f"Media node {config.node_id}: RTMP on {config.host}:{node.rtmp_port},"
                f" HTTP-FLV on {config.host}:{node.http_port} (Ctrl-C stops it)"
            )
            await stopping.wait()
        self.stdout.write("Media node stopped")
