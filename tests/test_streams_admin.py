"""The admin shows stream rows but adds none (the services kick and record)."""

import pytest

from streams import services
from tests.pagesupport import add_ingest
from tests.streamsupport import publish

pytestmark = pytest.mark.django_db


def test_it_lists_stream_rows_to_a_superuser_without_an_add_button(client, owner, django_user_model):
    add_ingest(owner)
    publish("push.example.com", "live", "cam1", "s1")
    services.forbid_stream(owner, "push.example.com", "live", "cam1")
    client.force_login(django_user_model.objects.create_superuser("root", password="root-pass-123"))
    for model in ("publishsession", "streamblock", "streamcontrolevent"):
        response = client.get(f"/admin/streams/{model}/")
        assert response.status_code == 200
        assert "cam1" in response.content.decode()
        assert client.get(f"/admin/streams/{model}/add/").status_code == 403
