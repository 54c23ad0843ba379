import io
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from domains import services
from livecenter.media.signing import verify
from tests.apisupport import add_ingest, add_streaming

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(owner):
    ingest, streaming = add_ingest(owner), add_streaming(owner)
    services.configure_url_signing(streaming, primary_key="playKey1", validity_minutes=30)
    services.associate_ingest(streaming, ingest.domain_name)
    streaming.refresh_from_db()
    return ingest, streaming


def live_urls(*args: str) -> str:
    out = io.StringIO()
    call_command("live_urls", *args, stdout=out)
    return out.getvalue()


def auth_key(url: str) -> str:
    return parse_qs(urlsplit(url).query)["auth_key"][0]


def test_it_prints_the_urls(pair):
    text = live_urls("--user", "owner", "--domain", "push.example.com", "--app", "live", "--stream", "cam1")
    assert "Ingest domain:    push.example.com" in text
    assert "Streaming domain: play.example.com" in text
    assert "  RTMP  rtmp://push.example.com:1935/live/cam1?auth_key=" in text
    assert "  SRT   srt://push.example.com:1105?streamid=#!::h=push.example.com,r=/live/cam1?auth_key=" in text
    assert "  WHIP  http://push.example.com:8080/live/cam1.whip?auth_key=" in text
    assert "  FLV   http://play.example.com:8080/live/cam1.flv?auth_key=" in text
    assert "  M3U8  http://play.example.com:8080/live/cam1.m3u8?auth_key=" in text
    assert "  WHEP  http://play.example.com:8080/live/cam1.whep?auth_key=" in text
    assert "  SRT   srt://play.example.com:1105?streamid=#!::h=play.example.com,r=/live/cam1?auth_key=" in text


def test_it_prints_the_apis_json_and_the_urls_verify(pair):
    ingest, streaming = pair
    args = "--user owner --domain play.example.com --app live --stream cam1 --template hd --validity 5 --json"
    data = json.loads(live_urls(*args.split()))
    assert data["template"] == "hd"
    assert data["expires_at"].endswith("Z")
    now = time.time()
    rtmp = verify("/live/cam1", auth_key(data["ingest"]["rtmp"]), ingest.signing_keys(), ingest.validity_seconds, now)
    whip = verify("/live/cam1", auth_key(data["ingest"]["whip"]), ingest.signing_keys(), ingest.validity_seconds, now)
    assert whip.ok
    flv = data["playback"]["flv"]
    assert flv.startswith("http://play.example.com:8080/live/cam1_hd.flv?")
    played = verify("/live/cam1_hd.flv", auth_key(flv), streaming.signing_keys(), streaming.validity_seconds, now)
    assert rtmp.ok and played.ok
    assert abs(played.expires_at - (now + 300)) < 5


def test_it_prints_notes_when_a_side_is_missing(owner):
    add_ingest(owner)
    text = live_urls("--user", "owner", "--domain", "push.example.com", "--app", "live", "--stream", "cam1")
    assert "Playback" not in text
    assert "push.example.com has no associated streaming domain" in text


@pytest.mark.parametrize(
    "change, message",
    [
        (("--domain", "nothing.example.com"), "--domain: nothing.example.com is not one of your domains"),
        (("--app", "li/ve"), "--app: app name must be 1-255 letters, digits, '_' or '-'"),
        (("--stream", "cam 1"), "--stream: stream name must be"),
        (("--template", "h_d"), "--template: transcoding template id must be"),
        (("--validity", "0"), "--validity: validity must be between 1 and"),
        (("--user", "nobody"), "--user: there is no operator named 'nobody'"),
    ],
)
def test_it_names_the_bad_option(pair, change, message):
    options = {"--user": "owner", "--domain": "push.example.com", "--app": "live", "--stream": "cam1"}
    options[change[0]] = change[1]
    args = [word for option in options.items() for word in option]
    with pytest.raises(CommandError) as error:
        live_urls(*args)
    assert message in str(error.value)


def test_it_treats_another_operators_domain_as_unknown(pair, outsider):
    with pytest.raises(CommandError, match="--domain: push.example.com is not one of your domains"):
        live_urls("--user", "outsider", "--domain", "push.example.com", "--app", "live", "--stream", "cam1")
