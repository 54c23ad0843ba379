"""The media workers' API (/api/v1/streams/..., issue 7): templates, groups,
recording and snapshot settings, jobs, recordings and snapshots, for the
owner and not for an outsider; errors name the field."""

from __future__ import annotations

import datetime as dt

import pytest

from mediajobs.models import MediaJob, Recording, Snapshot, TranscodeTemplate
from tests.apisupport import client_for
from tests.streamsupport import add_pair

pytestmark = pytest.mark.django_db

TEMPLATES = "/api/v1/streams/transcode-templates/"
GROUPS = "/api/v1/streams/template-groups/"
RECORD = "/api/v1/streams/record-configs/"
SNAPSHOT = "/api/v1/streams/snapshot-configs/"


def rows(response) -> list:
    data = response.json()
    return data["results"] if isinstance(data, dict) else data


def test_it_adds_a_standard_template_through_the_streaming_domain(owner):
    add_pair(owner)
    api = client_for(owner)
    r = api.post(TEMPLATES, {"domain": "play.example.com", "app": "live", "template_id": "lld"}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["domain_name"] == "push.example.com"  # kept on the ingest domain
    assert (r.json()["short_side"], r.json()["video_bitrate_kbps"], r.json()["standard"]) == (360, 470, True)
    listed = rows(api.get(TEMPLATES, {"domain": "push.example.com"}))
    assert [t["template_id"] for t in listed] == ["lld"]
    again = api.post(TEMPLATES, {"domain": "push.example.com", "app": "live", "template_id": "lld"}, format="json")
    assert again.status_code == 400 and "already has a template lld" in again.json()["template_id"][0]


def test_it_adds_a_custom_template_and_names_the_field_at_fault(owner):
    add_pair(owner)
    api = client_for(owner)
    bad = [
        ({"template_id": "my_tpl"}, "template_id", "letters, digits or '-'"),
        ({"template_id": "sd540"}, "video_bitrate_kbps", "is required for a custom template"),
        ({"template_id": "sd540", "video_bitrate_kbps": 9000}, "video_bitrate_kbps", "between 1 and 6000"),
        ({"template_id": "sd540", "video_bitrate_kbps": 900}, "short_side", "give the short side"),
        ({"template_id": "sd540", "video_bitrate_kbps": 900, "short_side": 540, "fps": 90}, "fps", "between 1 and 60"),
    ]
    for extra, field, words in bad:
        r = api.post(TEMPLATES, {"domain": "push.example.com", "app": "live", **extra}, format="json")
        assert r.status_code == 400 and words in r.json()[field][0], (extra, r.json())
    r = api.post(TEMPLATES, {"domain": "push.example.com", "app": "*", "template_id": "sd540", "short_side": 540,
                             "video_bitrate_kbps": 900, "fps": 25, "gop_seconds": 2, "profile": "main",
                             "lazy": False}, format="json")  # fmt: skip
    assert r.status_code == 201, r.content
    spec = TranscodeTemplate.objects.get(template_id="sd540").spec()
    assert (spec.short_side, spec.video_bitrate_kbps, spec.fps, spec.gop_seconds, spec.profile) == (
        540, 900, 25, 2, "main")  # fmt: skip
    r = api.delete(TEMPLATES, {"domain": "push.example.com", "app": "*", "template_id": "sd540"}, format="json")
    assert r.status_code == 204
    assert not TranscodeTemplate.objects.exists()


def test_it_groups_only_templates_the_app_has(owner):
    add_pair(owner)
    api = client_for(owner)
    api.post(TEMPLATES, {"domain": "push.example.com", "app": "*", "template_id": "lld"}, format="json")
    r = api.post(GROUPS, {"domain": "push.example.com", "app": "live", "group_id": "abr",
                          "template_ids": ["lld", "lhd"]}, format="json")  # fmt: skip
    assert r.status_code == 400 and "has no template lhd" in r.json()["template_ids"][0]
    r = api.post(GROUPS, {"domain": "push.example.com", "app": "live", "group_id": "abr", "template_ids": ["lld"]},
                 format="json")  # fmt: skip
    assert r.status_code == 201, r.content
    assert rows(api.get(GROUPS))[0]["template_ids"] == ["lld"]


def test_it_sets_recording_and_snapshots_within_the_references_ranges(owner):
    add_pair(owner)
    api = client_for(owner)
    r = api.post(SNAPSHOT, {"domain": "push.example.com", "app": "live", "interval_seconds": 2}, format="json")
    assert r.status_code == 400 and "between 5 and 3600" in r.json()["interval_seconds"][0]
    assert api.post(SNAPSHOT, {"domain": "push.example.com", "app": "live", "interval_seconds": 5},
                    format="json").status_code == 201  # fmt: skip
    r = api.post(RECORD, {"domain": "push.example.com", "app": "live", "cycle_seconds": 600,
                          "on_reconnect": "new_file"}, format="json")  # fmt: skip
    assert r.status_code == 201 and r.json()["on_reconnect"] == "new_file"
    # Setting it again changes it.
    api.post(RECORD, {"domain": "push.example.com", "app": "live", "cycle_seconds": 900}, format="json")
    assert [c["cycle_seconds"] for c in rows(api.get(RECORD))] == [900]


def test_it_keeps_an_operators_media_from_an_outsider(owner, outsider, tmp_path, settings):
    push, _ = add_pair(owner)
    settings.LIVECENTER_RECORDINGS_DIR = tmp_path
    settings.LIVECENTER_SNAPSHOTS_DIR = tmp_path
    (tmp_path / "a.mp4").write_bytes(b"\0\0\0\x18ftypisom")
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff")
    now = dt.datetime.now(dt.UTC)
    recording = Recording.objects.create(domain=push, domain_name=push.domain_name, app="live", stream="cam1",
                                         path="a.mp4", started_at=now, ended_at=now)  # fmt: skip
    snap = Snapshot.objects.create(domain=push, domain_name=push.domain_name, app="live", stream="cam1",
                                   taken_at=now, path="a.jpg", width=640, height=360)  # fmt: skip
    MediaJob.objects.create(kind="record", domain=push, domain_name=push.domain_name, app="live", stream="cam1",
                            node_host="127.0.0.1", node_rtmp_port=1935, node_http_port=8080, queued_at=now)  # fmt: skip
    mine, theirs = client_for(owner), client_for(outsider)
    r = theirs.post(TEMPLATES, {"domain": "push.example.com", "app": "live", "template_id": "lld"}, format="json")
    assert r.status_code == 400 and "is not one of your domains" in r.json()["domain"][0]
    for url in ("/api/v1/streams/recordings/", "/api/v1/streams/snapshots/", "/api/v1/streams/jobs/"):
        assert len(rows(mine.get(url))) == 1, url
        assert rows(theirs.get(url)) == [], url
    assert mine.get(f"/api/v1/streams/recordings/{recording.pk}/download/").status_code == 200
    assert theirs.get(f"/api/v1/streams/recordings/{recording.pk}/download/").status_code == 404
    assert mine.get(f"/api/v1/streams/snapshots/{snap.pk}/image/")["Content-Type"] == "image/jpeg"
    assert theirs.get(f"/api/v1/streams/snapshots/{snap.pk}/image/").status_code == 404
    assert client_for().get("/api/v1/streams/recordings/").status_code in (401, 403)


@pytest.mark.media
def test_it_records_hls_vod_and_serves_its_playlist_and_segments(owner, outsider, tmp_path, settings):
    import subprocess

    from mediajobs.transcode import pipeline

    push, _ = add_pair(owner)
    settings.LIVECENTER_RECORDINGS_DIR = tmp_path
    source = tmp_path / "source.flv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=15", "-f", "lavfi",
                    "-i", "sine", "-t", "14", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-c:a", "aac",
                    str(source)], check=True)  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    recording = Recording.objects.create(domain=push, domain_name=push.domain_name, app="live", stream="cam1",
                                         path="live/cam1/rec.m3u8", format="m3u8", started_at=now)  # fmt: skip

    class Control:
        def should_stop(self):
            return False

        def split_now(self):
            return False

        def source_live(self):
            return False

        def open_file(self, started_at):
            path = tmp_path / recording.path
            path.parent.mkdir(parents=True, exist_ok=True)
            return path

        def file_closed(self, path, started_at, ended_at, duration_s):
            from mediajobs import jobs as media_jobs

            media_jobs.recording_closed(recording, ended_at, duration_s)

    assert pipeline.record(str(source), Control(), cycle_seconds=3600) == "source ended"
    recording.refresh_from_db()
    assert 13.5 <= recording.duration_seconds <= 14.5
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            str(tmp_path / recording.path)], capture_output=True, text=True, check=True)  # fmt: skip
    assert 13.5 <= float(probe.stdout) <= 14.5

    mine, theirs = client_for(owner), client_for(outsider)
    url = rows(mine.get("/api/v1/streams/recordings/"))[0]["download_url"]
    playlist = mine.get(url)
    assert playlist["Content-Type"] == "application/vnd.apple.mpegurl"
    text = b"".join(playlist.streaming_content).decode()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and "#EXT-X-ENDLIST" in text
    segments = [line for line in text.splitlines() if line.endswith(".ts")]
    assert len(segments) >= 2
    segment = mine.get(url + segments[0])  # relative to the playlist, as a player resolves it
    assert segment.status_code == 200 and b"".join(segment.streaming_content)[:1] == b"G"  # MPEG-TS sync byte
    total = sum(p.stat().st_size for p in (tmp_path / "live/cam1").iterdir())
    assert recording.size_bytes == total
    assert theirs.get(url + segments[0]).status_code == 404
    assert mine.get(url + "..%2F..%2Fsource.flv").status_code == 404
    assert mine.get(url + "other.ts").status_code == 404
