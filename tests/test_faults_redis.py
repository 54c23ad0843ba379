"""Redis unreachable in the scaled topology (issue 11, Faults): a TCP relay
the test controls sits between the media node and Redis (its channel layer)
and is cut for an outage. The streams keep flowing, nothing crashes, and the
node's control listener joins again afterwards: a kick sent through Redis
after the outage still cuts the publisher."""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels_redis.core import RedisChannelLayer

from livecenter.media.policy import StreamKey
from nodes import control
from tests.faultsupport import TcpRelay, wait_until
from tests.streamsupport import add_pair

pytestmark = [
    pytest.mark.redis,
    pytest.mark.backends,
    pytest.mark.media,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis: set REDIS_URL (CI does)"),
]

OUTAGE_SECONDS = float(os.environ.get("LIVECENTER_TEST_OUTAGE_SECONDS", 4))


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


def test_it_rides_out_a_redis_outage(owner, settings):
    from domains import services as domain_services
    from tests.workersupport import MediaNodeThread, probe, start_publisher, stop

    redis_url = os.environ["REDIS_URL"]
    target = urlsplit(redis_url)
    with TcpRelay((target.hostname or "127.0.0.1", target.port or 6379)) as relay:
        relayed = through(redis_url, relay.port)
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                               "CONFIG": {"hosts": [{"address": relayed, "socket_connect_timeout": 3,
                                                                     "socket_timeout": 10}],
                                                          "prefix": f"faults{os.getpid()}"}}}  # fmt: skip
        channel_layers.backends.clear()
        settings.LIVECENTER_POLICY_CACHE_SECONDS = 0
        push, _ = add_pair(owner, "push.redis.test", "play.redis.test")
        urls = domain_services.generate_urls(owner, push.domain_name, "live", "cam1")
        sender = RedisChannelLayer(hosts=[redis_url], prefix=f"faults{os.getpid()}")
        publisher = None
        try:
            with MediaNodeThread(play_wait_seconds=10) as node:
                publisher = start_publisher(
                    node.local(urls.ingest["rtmp"]), seconds=120 + OUTAGE_SECONDS, size="320x240"
                )
                flv = node.local(urls.playback["flv"])
                assert probe(flv, seconds=1)["packets"]
                relay.cut()
                began = time.monotonic()
                # Streams flow while Redis is gone.
                while time.monotonic() - began < OUTAGE_SECONDS:
                    assert probe(flv, seconds=1)["packets"]
                relay.restore()
                assert publisher.poll() is None
                # The listener is back on the group: a kick through Redis lands.
                key = f"{push.domain_name}/live/cam1"

                def kicked() -> bool:
                    async_to_sync(sender.group_send)(control.GROUP, {"type": control.KICK, "key": key,
                                                                     "origin": "another-console"})  # fmt: skip
                    return not node.node.hub.is_live(StreamKey.parse(key))

                assert wait_until(kicked, 60, interval=2)
        finally:
            if publisher is not None:
                stop(publisher)
            channel_layers.backends.clear()
