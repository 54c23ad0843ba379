"""The streams API in the OpenAPI schema, and token access to it."""

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from accounts.models import ApiToken
from livecenter import urls
from tests.pagesupport import add_ingest
from tests.streamsupport import publish

pytestmark = pytest.mark.django_db

STREAM_PATHS = {
    "/api/v1/streams/online/",
    "/api/v1/streams/history/",
    "/api/v1/streams/forbid/",
    "/api/v1/streams/resume/",
    "/api/v1/streams/blocked/",
    "/api/v1/streams/control-history/",
    # The media workers' (issue 7).
    "/api/v1/streams/transcode-templates/",
    "/api/v1/streams/template-groups/",
    "/api/v1/streams/record-configs/",
    "/api/v1/streams/snapshot-configs/",
    "/api/v1/streams/jobs/",
    "/api/v1/streams/recordings/",
    "/api/v1/streams/recordings/{recording_id}/download/",
    "/api/v1/streams/recordings/{recording_id}/download/{name}",
    "/api/v1/streams/snapshots/",
    "/api/v1/streams/snapshots/{snapshot_id}/image/",
}


def test_it_generates_the_schema_without_warnings():
    GENERATOR_STATS.reset()
    # The streams and media workers' endpoints, mounted together (issue 12).
    patterns = [p for p in urls.urlpatterns if str(p.pattern) == "api/v1/streams/"]
    generator = SchemaGenerator(patterns=patterns)
    schema = generator.get_schema(request=None, public=True)
    assert not GENERATOR_STATS, "drf-spectacular warned while generating the API schema"
    validate_schema(schema)
    assert set(schema["paths"]) == STREAM_PATHS
    online = schema["components"]["schemas"]["OnlineStream"]["properties"]
    assert {"publish_time", "video_data_rate", "audio_data_rate", "frame_rate", "client_ip"} <= set(online)
    parameters = {p["name"] for p in schema["paths"]["/api/v1/streams/history/"]["get"]["parameters"]}
    assert {"domain", "start_time", "end_time", "app", "stream", "query_type", "order_by", "page"} <= parameters


def test_it_serves_the_streams_api_in_the_schema(owner):
    client = APIClient()
    client.force_login(owner)
    assert STREAM_PATHS <= set(client.get("/api/v1/schema/", {"format": "json"}).json()["paths"])


def test_it_authenticates_with_a_token(owner):
    add_ingest(owner)
    publish("push.example.com", "live", "cam1", "s1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(owner)[1]}")
    assert client.get("/api/v1/streams/online/").json()["count"] == 1
