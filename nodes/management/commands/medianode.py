"""`manage.py medianode`: the media node as a process of its own (scaled
topology), with the database policy, the control listener and its heartbeat
in the node registry (nodes/registry.py)."""

import asyncio
import signal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from domains.models import LiveCenter
from livecenter.lib.api import command_error
from livecenter.media.cluster import ROLES
from nodes.medianode import advertised_host, cluster_place, node_config, running_media_node

OPTIONS = {"role": "--role", "region": "--region"}


class Command(BaseCommand):
    help = "Run a media node (RTMP ingest and play, HTTP-FLV) until SIGINT or SIGTERM."

    def add_arguments(self, parser):
        config = node_config()
        parser.add_argument("--host", default=config.host)
        parser.add_argument("--rtmp-port", type=int, default=config.rtmp_port)
        parser.add_argument("--http-port", type=int, default=config.http_port)
        parser.add_argument(
            "--role",
            choices=ROLES,
            default=None,
            help="its role in the cluster (LIVECENTER_NODE_ROLE); none: a node alone, center and edge of every region",
        )
        parser.add_argument(
            "--region",
            choices=LiveCenter.values,
            default=None,
            help="the live center region it serves (LIVECENTER_NODE_REGION); needed with --role",
        )
        parser.add_argument(
            "--advertise",
            default=config.advertise_host,
            help="the address other nodes and media workers reach it on (LIVECENTER_MEDIA_INTERNAL_HOST);"
            " default: --host, or 127.0.0.1 when it is every address",
        )

    def handle(self, *args, host, rtmp_port, http_port, role, region, advertise, **options):
        config = node_config()
        config.host, config.rtmp_port, config.http_port = host, rtmp_port, http_port
        try:
            config.roles, config.region = cluster_place(
                settings.LIVECENTER_NODE_ROLE if role is None else role,
                settings.LIVECENTER_NODE_REGION if region is None else region,
            )
        except ValidationError as exc:
            raise command_error(exc, OPTIONS) from None
        config.advertise_host = advertise
        asyncio.run(self.run(config))

    async def run(self, config) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        async with running_media_node(config) as node:
            place = f"{'+'.join(sorted(config.roles))} of {config.region or 'every region'}"
            self.stdout.write(
                f"Media node {config.node_id} ({place}, reached at {advertised_host(config)}):"
                f" RTMP on {config.host}:{node.rtmp_port}, HTTP-FLV on {config.host}:{node.http_port} (Ctrl-C stops it)"
            )
            await stopping.wait()
        self.stdout.write("Media node stopped")
