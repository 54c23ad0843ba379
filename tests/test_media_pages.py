"""The media workers' console pages (issue 7): settings and running jobs,
recordings with their downloads, the latest snapshot on the online list."""

from __future__ import annotations

import datetime as dt

import pytest

from mediajobs.models import Recording, Snapshot, TranscodeTemplate
from tests.pagesupport import page
from tests.streamsupport import add_pair, publish

pytestmark = pytest.mark.django_db


def test_it_adds_a_template_on_the_media_page_and_shows_errors(client, owner):
    add_pair(owner)
    client.force_login(owner)
    assert client.get("/streams/media/").status_code == 200
    form = {"template-domain": "push.example.com", "template-app": "live", "template-profile": "high"}
    r = client.post("/streams/media/?form=template", {**form, "template-template_id": "lhd"})
    assert r.status_code == 302
    assert TranscodeTemplate.objects.get().template_id == "lhd"
    assert "lhd" in page(client.get("/streams/media/"))
    r = client.post("/streams/media/?form=template", {**form, "template-template_id": "custom1"})
    assert r.status_code == 400
    assert "video bitrate (kbit/s) is required for a custom template" in page(r)
    r = client.post("/streams/media/delete/", {"what": "template", "domain": "push.example.com", "app": "live",
                                                "name": "lhd"})  # fmt: skip
    assert r.status_code == 302 and not TranscodeTemplate.objects.exists()


def test_it_lists_recordings_with_downloads_for_the_owner_only(client, owner, outsider, tmp_path, settings):
    push, _ = add_pair(owner)
    settings.LIVECENTER_RECORDINGS_DIR = tmp_path
    (tmp_path / "r.mp4").write_bytes(b"\0\0\0\x18ftypisom")
    now = dt.datetime.now(dt.UTC)
    rec = Recording.objects.create(domain=push, domain_name=push.domain_name, app="live", stream="cam1", path="r.mp4",
                                   started_at=now, ended_at=now, size_bytes=12, duration_seconds=10)  # fmt: skip
    client.force_login(owner)
    assert "r.mp4" in page(client.get("/streams/recordings/"))
    assert client.get(f"/streams/recordings/{rec.pk}/download/").status_code == 200
    client.force_login(outsider)
    assert "r.mp4" not in page(client.get("/streams/recordings/"))
    assert client.get(f"/streams/recordings/{rec.pk}/download/").status_code == 404


def test_it_shows_the_latest_snapshot_on_the_online_list(client, owner, tmp_path, settings):
    push, _ = add_pair(owner)
    settings.LIVECENTER_SNAPSHOTS_DIR = tmp_path
    publish("push.example.com", "live", "cam1", "s1")
    now = dt.datetime.now(dt.UTC)
    for i, name in enumerate(("old.jpg", "new.jpg")):
        (tmp_path / name).write_bytes(b"\xff\xd8\xff")
        Snapshot.objects.create(domain=push, domain_name=push.domain_name, app="live", stream="cam1",
                                taken_at=now + dt.timedelta(seconds=i), path=name)  # fmt: skip
    newest = Snapshot.objects.get(path="new.jpg")
    client.force_login(owner)
    html = page(client.get("/streams/"))
    assert f'src="/streams/snapshots/{newest.pk}.jpg"' in html
    assert client.get(f"/streams/snapshots/{newest.pk}.jpg")["Content-Type"] == "image/jpeg"
