"""nodes.bridge: the engine's policy and event sink over the database."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading

import pytest
from asgiref.sync import async_to_sync

from domains import services as domain_services
from livecenter.media.admission import Refusal, admit_publish
from livecenter.media.policy import DomainConfig, StreamInfo, StreamKey, StreamUpdated
from nodes.bridge import DatabaseEventSink, DatabasePolicy, _CachedLookup, close_orphaned_sessions
from streams import services
from streams.models import PublishSession
from tests.pagesupport import add_ingest, add_streaming
from tests.streamsupport import HD_INFO, add_pair, at, publish, unpublish

pytestmark = pytest.mark.django_db

KEY = StreamKey("push.example.com", "live", "cam1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(policy: DatabasePolicy, host: str) -> DomainConfig | None:
    return async_to_sync(policy.domain_config)(host)


def forbidden(policy: DatabasePolicy, key: StreamKey = KEY, now: float | None = None) -> bool:
    return async_to_sync(policy.is_forbidden)(key, dt.datetime.now(dt.UTC).timestamp() if now is None else now)


# --- Policy: domain configuration ---------------------------------------------------


def test_it_gives_an_ingest_domains_configuration(owner):
    push = add_ingest(owner)
    domain_services.configure_url_signing(push, secondary_key="second22", validity_minutes=30)
    push.refresh_from_db()
    got = config(DatabasePolicy(), "push.example.com")
    assert got == DomainConfig(
        name="push.example.com",
        kind="ingest",
        enabled=True,
        signing_keys=(push.auth_primary_key, "second22"),
        validity_seconds=1800,
        ingest_domain=None,
        rts_enabled=False,
        html5_transcode=False,
        srt_latency_ms=120,
        srt_passphrase=None,
        live_center="cn-shanghai",  # where an edge relays its streams
    )


def test_it_gives_an_ingest_domains_srt_latency_and_passphrase_without_showing_secrets(owner):
    push = add_ingest(owner)
    domain_services.configure_srt(push, srt_latency_ms=450, srt_passphrase="correct horse battery")
    got = config(DatabasePolicy(), "push.example.com")
    assert (got.srt_latency_ms, got.srt_passphrase) == (450, "correct horse battery")
    # A config in a log line or a traceback shows no secret.
    assert "horse" not in repr(got) and push.auth_primary_key not in repr(got)
    assert "srt_latency_ms=450" in repr(got)
    domain_services.configure_srt(push, srt_passphrase="")
    assert config(DatabasePolicy(), "push.example.com").srt_passphrase is None


def test_it_gives_no_signing_keys_when_signing_is_off(owner):
    push = add_ingest(owner)
    domain_services.configure_url_signing(push, enabled=False)
    assert config(DatabasePolicy(), "push.example.com").signing_keys is None


def test_it_gives_a_streaming_domains_ingest_domain_and_switches(owner):
    _, play = add_pair(owner)
    domain_services.set_switches(play, rts_enabled=False)
    got = config(DatabasePolicy(), "play.example.com")
    assert got.kind == "streaming"
    assert got.ingest_domain == "push.example.com"
    assert got.rts_enabled is False and got.html5_transcode is True
    assert got.signing_keys == (play.auth_primary_key,)


def test_it_gives_a_sub_streaming_domain_its_main_domains_ingest_domain(owner):
    _, play = add_pair(owner)
    sub = add_streaming(owner, "play2.example.com")
    domain_services.bind_main_domain(sub, play.domain_name)
    assert config(DatabasePolicy(), "play2.example.com").ingest_domain == "push.example.com"


def test_it_gives_an_unassociated_streaming_domain_no_ingest_domain(owner):
    add_streaming(owner)
    assert config(DatabasePolicy(), "play.example.com").ingest_domain is None


def test_it_knows_no_unknown_domain(owner):
    assert config(DatabasePolicy(), "nowhere.example.com") is None


def test_it_reports_a_disabled_domain(owner):
    domain_services.set_switches(add_ingest(owner), enabled=False)
    assert config(DatabasePolicy(), "push.example.com").enabled is False


def test_it_keeps_a_domains_configuration_for_the_cache_time(owner):
    push = add_ingest(owner)
    clock = Clock()
    policy = DatabasePolicy(ttl_seconds=2, clock=clock)
    assert config(policy, "push.example.com").enabled is True
    domain_services.set_switches(push, enabled=False)
    clock.now += 1.9
    assert config(policy, "push.example.com").enabled is True
    clock.now += 0.2
    assert config(policy, "push.example.com").enabled is False


def test_it_takes_its_cache_time_from_the_settings(owner, settings):
    settings.LIVECENTER_POLICY_CACHE_SECONDS = 0
    push = add_ingest(owner)
    policy = DatabasePolicy()
    assert config(policy, "push.example.com").enabled is True
    domain_services.set_switches(push, enabled=False)
    assert config(policy, "push.example.com").enabled is False


def test_it_caches_unknown_domains_too(owner):
    clock = Clock()
    policy = DatabasePolicy(ttl_seconds=2, clock=clock)
    assert config(policy, "push.example.com") is None
    add_ingest(owner)
    assert config(policy, "push.example.com") is None
    clock.now += 2.1
    assert config(policy, "push.example.com") is not None


def test_it_serves_a_burst_of_viewers_with_one_query(owner, django_assert_num_queries):
    add_pair(owner)
    policy = DatabasePolicy()

    async def burst():
        return await asyncio.gather(*(policy.domain_config("play.example.com") for _ in range(50)))

    with django_assert_num_queries(1):
        configs = async_to_sync(burst)()
    assert {c.ingest_domain for c in configs} == {"push.example.com"}
    with django_assert_num_queries(0):
        config(policy, "play.example.com")


def test_it_keeps_at_most_its_entry_limit(owner):
    for name in ("a.example.com", "b.example.com", "c.example.com"):
        add_ingest(owner, name)
    clock = Clock()
    policy = DatabasePolicy(ttl_seconds=60, max_entries=2, clock=clock)
    for name in ("a.example.com", "b.example.com", "c.example.com"):
        config(policy, name)
    assert len(policy._domains) == 2
    # The oldest went first: a change to it shows at once, one to the newest does not.
    for name in ("a.example.com", "c.example.com"):
        domain_services.set_switches(domain_services.get_owned_domain(owner, name), enabled=False)
    assert config(policy, "a.example.com").enabled is False
    assert config(policy, "c.example.com").enabled is True


# --- Policy: forbidden streams ----------------------------------------------------------


def test_it_says_a_forbidden_stream_is_forbidden_until_its_resume_time(owner):
    add_ingest(owner)
    now = dt.datetime.now(dt.UTC)
    resume = now + dt.timedelta(hours=1)
    services.forbid_stream(owner, "push.example.com", "live", "cam1", resume_at=resume)
    policy = DatabasePolicy()
    assert forbidden(policy, now=now.timestamp()) is True
    assert forbidden(policy, now=resume.timestamp() - 1) is True
    # The block's end is cached, not the answer: it ends on time.
    assert forbidden(policy, now=resume.timestamp()) is False
    assert forbidden(policy, StreamKey("push.example.com", "live", "cam2")) is False
    assert forbidden(policy, StreamKey("push.example.com", "other", "cam1")) is False


def test_it_sees_a_forbid_at_once_though_the_answer_was_cached(owner):
    add_ingest(owner)
    clock = Clock()
    policy = DatabasePolicy(ttl_seconds=60, clock=clock)
    assert forbidden(policy) is False
    services.forbid_stream(owner, "push.example.com", "live", "cam1")
    assert forbidden(policy) is True  # no time passed on the policy's clock


def test_it_sees_a_resume_at_once_in_the_same_process(owner):
    add_ingest(owner)
    services.forbid_stream(owner, "push.example.com", "live", "cam1")
    policy = DatabasePolicy(ttl_seconds=60, clock=Clock())
    assert forbidden(policy) is True
    services.resume_stream(owner, "push.example.com", "live", "cam1")
    assert forbidden(policy) is False


def test_it_makes_the_engine_refuse_a_forbidden_publish(owner):
    push = add_ingest(owner)
    domain_services.configure_url_signing(push, enabled=False)
    policy = DatabasePolicy()
    now = dt.datetime.now(dt.UTC).timestamp()
    admitted = async_to_sync(admit_publish)(policy, "push.example.com", "live", "cam1", None, now)
    assert admitted.ok
    services.forbid_stream(owner, "push.example.com", "live", "cam1")
    refused = async_to_sync(admit_publish)(policy, "push.example.com", "live", "cam1", None, now)
    assert refused.refusal == Refusal.FORBIDDEN


# --- The cache itself ---------------------------------------------------------------------


def test_it_shares_one_load_among_concurrent_misses_and_survives_a_waiter_giving_up():
    loads = []
    release = None

    async def load(key):
        loads.append(key)
        await release.wait()
        return key.upper()

    async def scenario():
        nonlocal release
        release = asyncio.Event()
        cache = _CachedLookup(load, ttl_seconds=10, max_entries=10, clock=Clock())
        quitter = asyncio.ensure_future(cache.get("a"))
        stayers = [asyncio.ensure_future(cache.get("a")) for _ in range(3)]
        await asyncio.sleep(0)
        quitter.cancel()
        release.set()
        return await asyncio.gather(*stayers), await cache.get("a")

    values, cached = asyncio.run(scenario())
    assert values == ["A", "A", "A"] and cached == "A"
    assert loads == ["a"]


def test_it_does_not_store_a_load_that_a_forget_overtook():
    answers = iter(["stale", "fresh"])
    release = None

    async def load(key):
        await release.wait()
        return next(answers)

    async def scenario():
        nonlocal release
        release = asyncio.Event()
        cache = _CachedLookup(load, ttl_seconds=10, max_entries=10, clock=Clock())
        loading = asyncio.ensure_future(cache.get("k"))
        await asyncio.sleep(0)
        cache.forget("k")  # a forbid, while the load was reading the old state
        release.set()
        first = await loading
        return first, await cache.get("k")

    assert asyncio.run(scenario()) == ("stale", "fresh")


def test_it_hands_a_forget_from_another_thread_to_the_caches_loop():
    # A forbid comes from a console view's thread; the cache is the node loop's.
    loads = []

    async def load(key):
        loads.append(key)
        return len(loads)

    async def scenario():
        loop_thread = threading.get_ident()
        cache = _CachedLookup(load, ttl_seconds=60, max_entries=10, clock=Clock())
        assert await cache.get("k") == 1
        forgot_on = []
        real_forget = cache._forget
        cache._forget = lambda key: (forgot_on.append(threading.get_ident()), real_forget(key))
        view = threading.Thread(target=cache.forget, args=("k",))
        view.start()
        await asyncio.to_thread(view.join)
        await asyncio.sleep(0)  # the handed-over forget runs in this turn of the loop
        assert forgot_on == [loop_thread]  # run on the loop, not in the view's thread
        return await cache.get("k")

    assert asyncio.run(scenario()) == 2


def test_it_forgets_at_once_on_its_own_loop_and_once_its_loop_is_closed():
    async def load(key):
        return "x"

    cache = _CachedLookup(load, ttl_seconds=60, max_entries=10, clock=Clock())
    asyncio.run(cache.get("k"))  # that loop is closed now
    assert len(cache) == 1
    cache.forget("k")
    assert len(cache) == 0


def test_it_does_not_cache_a_failed_load():
    calls = []

    async def load(key):
        calls.append(key)
        if len(calls) == 1:
            raise ConnectionError("database away")
        return "ok"

    async def scenario():
        cache = _CachedLookup(load, ttl_seconds=10, max_entries=10, clock=Clock())
        with pytest.raises(ConnectionError):
            await cache.get("k")
        return await cache.get("k")

    assert asyncio.run(scenario()) == "ok"
    assert len(calls) == 2


# --- Event sink -----------------------------------------------------------------------------


def test_it_records_a_published_stream(owner):
    push = add_ingest(owner)
    session = publish("push.example.com", "live", "cam1", "s1", started_at=at("2026-05-01T10:00:00"))
    assert session.domain == push
    assert session.domain_name == "push.example.com"
    assert (session.app, session.stream, session.node_id, session.protocol) == ("live", "cam1", "node-1", "rtmp")
    assert session.client_addr == "203.0.113.5:50000" and session.client_ip == "203.0.113.5"
    assert session.publish_url == "rtmp://push.example.com/live/cam1"
    assert session.started_at == at("2026-05-01T10:00:00")
    assert session.stopped_at is None and session.is_live


def test_it_ignores_a_repeated_published_event(owner):
    add_ingest(owner)
    publish("push.example.com", "live", "cam1", "s1", client_addr="203.0.113.5:1")
    publish("push.example.com", "live", "cam1", "s1", client_addr="203.0.113.9:2")
    assert PublishSession.objects.get().client_addr == "203.0.113.5:1"


def test_it_records_the_latest_media_info(owner):
    add_ingest(owner)
    session = publish("push.example.com", "live", "cam1", "s1", info=StreamInfo(video_codec="H264", width=640))
    async_to_sync(DatabaseEventSink().updated)(StreamUpdated(KEY, "s1", HD_INFO))
    session.refresh_from_db()
    assert (session.video_codec, session.audio_codec) == ("H264", "AAC")
    assert (session.width, session.height) == (1280, 720)
    assert session.frame_rate == pytest.approx(29.97)
    assert (session.video_bitrate, session.audio_bitrate) == (2_012_346, 128_400)
    assert (session.video_kbps, session.audio_kbps) == (2012, 128)
    assert session.video_profile == "High"
    assert (session.audio_sample_rate, session.audio_channels) == (44100, 2)
    assert not session.has_bframes
    async_to_sync(DatabaseEventSink().updated)(StreamUpdated(KEY, "s1", dataclasses.replace(HD_INFO, has_bframes=True)))
    session.refresh_from_db()
    assert session.has_bframes


def test_it_records_an_unpublish_once(owner):
    add_ingest(owner)
    session = publish("push.example.com", "live", "cam1", "s1")
    unpublish(session, at("2026-05-01T11:00:00"), "kicked")
    session = unpublish(session, at("2026-05-01T12:00:00"), "")
    assert session.stopped_at == at("2026-05-01T11:00:00")
    assert session.stop_reason == "kicked"
    assert not session.is_live


def test_it_keeps_history_when_the_domain_is_deleted(owner):
    push = add_ingest(owner)
    publish("push.example.com", "live", "cam1", "s1")
    domain_services.delete_domain(push)
    session = PublishSession.objects.get()
    assert session.domain is None and session.domain_name == "push.example.com"


def test_it_records_a_stream_of_a_domain_it_does_not_know(owner):
    session = publish("gone.example.com", "live", "cam1", "s1")
    assert session.domain is None and session.domain_name == "gone.example.com"


def test_it_closes_the_sessions_a_restarted_node_left_open(owner):
    add_ingest(owner)
    open_here = publish("push.example.com", "live", "cam1", "s1", node_id="node-1", info=HD_INFO)
    closed_here = unpublish(
        publish("push.example.com", "live", "cam2", "s2", node_id="node-1"), at("2026-05-01T11:00:00")
    )
    elsewhere = publish("push.example.com", "live", "cam3", "s3", node_id="node-2")
    assert close_orphaned_sessions("node-1") == 1
    open_here_after = PublishSession.objects.get(pk=open_here.pk)
    assert open_here_after.stopped_at == open_here.updated_at  # when the node last reported it
    assert open_here_after.stop_reason == "node restarted"
    assert PublishSession.objects.get(pk=closed_here.pk).stopped_at == at("2026-05-01T11:00:00")
    assert PublishSession.objects.get(pk=elsewhere.pk).is_live
    assert close_orphaned_sessions("node-1") == 0


@pytest.mark.parametrize(
    ("addr", "ip"),
    [("203.0.113.5:50000", "203.0.113.5"), ("[2001:db8::1]:50000", "2001:db8::1"), ("2001:db8::1", "2001:db8::1")],
)
def test_it_takes_the_ip_from_the_client_address(addr, ip):
    assert PublishSession(client_addr=addr).client_ip == ip


def test_it_serves_a_stale_answer_while_the_policy_is_unavailable_and_not_past_the_bound():
    from livecenter.media.policy import PolicyUnavailable

    clock = Clock()
    up = True

    async def load(key):
        if not up:
            raise PolicyUnavailable("the database is unreachable")
        return key.upper()

    async def scenario():
        nonlocal up
        cache = _CachedLookup(load, ttl_seconds=2, max_entries=10, clock=clock, stale_seconds=300)
        assert await cache.get("a") == "A"
        up = False
        clock.now += 299
        stale = await cache.get("a")
        with pytest.raises(PolicyUnavailable):
            await cache.get("b")  # never known
        clock.now += 2
        with pytest.raises(PolicyUnavailable):
            await cache.get("a")  # too old
        return stale

    assert asyncio.run(scenario()) == "A"


def test_it_admits_a_known_domain_from_the_cache_and_refuses_others_as_unavailable(owner, settings):
    from unittest import mock

    from django.db import OperationalError
    from django.db.backends.base.base import BaseDatabaseWrapper

    from livecenter import outage

    settings.LIVECENTER_DB_RETRY_SECONDS = 0
    push, _ = add_pair(owner)
    clock = Clock()
    policy = DatabasePolicy(ttl_seconds=1, stale_seconds=60, clock=clock)
    # Signed URLs are on: no auth_key is refused, but the domain was found (and cached).
    assert async_to_sync(admit_publish)(policy, push.domain_name, "live", "cam", None, 0).domain is not None
    clock.now += 30
    unreachable = mock.patch.object(BaseDatabaseWrapper, "ensure_connection", side_effect=OperationalError("down"))
    with unreachable:
        known = async_to_sync(admit_publish)(policy, push.domain_name, "live", "cam", None, 0)
        unknown = async_to_sync(admit_publish)(policy, "nobody.example.com", "live", "cam", None, 0)
    assert known.domain is not None and known.refusal != Refusal.POLICY_UNAVAILABLE
    assert unknown.refusal == Refusal.POLICY_UNAVAILABLE
    after = async_to_sync(admit_publish)(policy, "nobody.example.com", "live", "cam", None, 0)
    assert after.refusal == Refusal.UNKNOWN_DOMAIN and outage.database.up
