"""Print signed ingest and playback URLs for a stream: the URL generator of
the console and of POST /api/v1/urls/, from the command line."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from domains import services
from domains.direct import direct_forms
from domains.serializers import GeneratedUrlsSerializer
from livecenter.lib.api import command_error

# The service names fields as the API does; the command names its options.
OPTION_FOR_FIELD = {
    "domain": "--domain",
    "app": "--app",
    "stream": "--stream",
    "template": "--template",
    "validity_minutes": "--validity",
}


class Command(BaseCommand):
    help = "Print signed ingest and playback URLs for a stream on one of an operator's domains."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="the operator (username) who owns the domain")
        parser.add_argument(
            "--domain", required=True, help="an ingest domain, or a streaming domain associated with one"
        )
        parser.add_argument("--app", required=True, help="the application name")
        parser.add_argument("--stream", required=True, help="the stream name")
        parser.add_argument("--template", help="a transcoding template id: playback URLs name {stream}_{template}")
        parser.add_argument(
            "--validity", type=int, metavar="MINUTES", help="how long the URLs stay valid (default: the domain's)"
        )
        parser.add_argument("--json", action="store_true", help="print the API's JSON instead of text")

    def handle(self, *args, **options):
        username = options["user"]
        try:
            owner = get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"--user: there is no operator named {username!r}") from None
        try:
            urls = services.generate_urls(
                owner,
                options["domain"],
                options["app"],
                options["stream"],
                template=options["template"],
                validity_minutes=options["validity"],
            )
        except ValidationError as exc:
            raise command_error(exc, OPTION_FOR_FIELD) from None
        forms = direct_forms(services.owned_domains(owner), urls)
        data = GeneratedUrlsSerializer(urls, context={"direct": forms}).data
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write(self.as_text(data))

    def as_text(self, data: dict) -> str:
        lines = [
            f"Ingest domain:    {data['ingest_domain'] or '-'}",
            f"Streaming domain: {data['streaming_domain'] or '-'}",
            f"Stream:           /{data['app']}/{data['stream']}"
            + (f" (template {data['template']})" if data["template"] else ""),
            f"Expires at:       {data['expires_at']}",
        ]
        for title, urls in (("Ingest", data["ingest"]), ("Playback", data["playback"])):
            if urls:
                lines += ["", title]
                lines += [f"  {protocol.upper():<5} {url}" for protocol, url in urls.items()]
        for side, form in data["direct"].items():
            lines += ["", f"{side.capitalize()}, direct to the media node at {form['host']} (no DNS)"]
            lines += [f"  ({'use these' if form['use'] else 'the DNS URLs apply'}: {form['reason']})"]
            lines += [f"  {protocol.upper():<5} {url}" for protocol, url in form["urls"].items()]
        if data["notes"]:
            lines += ["", "Notes"]
            lines += [f"  {note}" for note in data["notes"]]
        return "\n".join(lines)
