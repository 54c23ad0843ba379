"""Console forms for streams. They turn what a person typed into Python
values; the rules are in services.py, whose errors
livecenter.lib.pages.add_service_errors puts back on the field they name."""

from __future__ import annotations

from django import forms
from django.conf import settings

from domains.forms import ConsoleForm
from livecenter.media.liveurl import MAX_URL_CHARS

from .player import PROTOCOL_LABELS, PROTOCOLS

# <input type="datetime-local"> sends and shows this form; times are UTC.
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


def _datetime_field(label: str, help_text: str) -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        required=False,
        help_text=help_text,
        input_formats=[DATETIME_LOCAL, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
        error_messages={"invalid": f"{label.lower()} must be a date and time, like 2026-01-31T18:30"},
    )


class DomainFilterForm(ConsoleForm):
    """The filter above a list of streams (query parameters)."""

    domain = forms.ChoiceField(label="Domain", required=False)

    def __init__(self, *args, domains, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [("", "All ingest domains")] + [
            (d.domain_name, d.display_name) for d in domains
        ]


class StreamFilterForm(DomainFilterForm):
    app = forms.CharField(label="App name", required=False)
    stream = forms.CharField(
        label="Stream name", required=False, widget=forms.TextInput(attrs={"placeholder": "contains…"})
    )


class HistoryFilterForm(StreamFilterForm):
    start_time = _datetime_field("From (UTC)", "Default: a day before the end.")
    end_time = _datetime_field("To (UTC)", "Default: now. At most 30 days after the start.")


class ForbidForm(ConsoleForm):
    domain = forms.ChoiceField(label="Ingest domain")
    app = forms.CharField(label="App name")
    stream = forms.CharField(label="Stream name")
    oneshot = forms.BooleanField(
        label="Only this once",
        required=False,
        help_text="Cut the publisher now without blocking the stream: it may publish again at once.",
    )
    resume_time = _datetime_field("Resume time (UTC)", "When publishing is allowed again.")

    def __init__(self, *args, domains, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [(d.domain_name, d.display_name) for d in domains]
        days = settings.LIVECENTER_FORBID_DEFAULT_DAYS
        self.fields["resume_time"].help_text += f" Empty: {days} days from now."


class StreamForm(ConsoleForm):
    """The hidden fields of a Resume button."""

    domain = forms.CharField(label="Domain")
    app = forms.CharField(label="App name")
    stream = forms.CharField(label="Stream name")


class PlayerForm(ConsoleForm):
    """The web player's query: which stream, over which protocol; or a
    pasted playback URL (`url`), which then alone says what to play."""

    domain = forms.ChoiceField(label="Domain", required=False)
    app = forms.CharField(label="App name", required=False)
    stream = forms.CharField(label="Stream name", required=False)
    protocol = forms.ChoiceField(label="Protocol", required=False, choices=list(PROTOCOL_LABELS.items()))
    template = forms.CharField(label="Transcoding template", required=False)
    url = forms.CharField(
        label="Or a playback URL",
        required=False,
        max_length=MAX_URL_CHARS,
        widget=forms.TextInput(attrs={"placeholder": "http://…/live/stream.flv?auth_key=…", "spellcheck": "false"}),
    )

    def __init__(self, *args, domains, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [(d.domain_name, d.display_name) for d in domains]
        self.fields["protocol"].error_messages["invalid_choice"] = (
            f"protocol must be one of {', '.join(PROTOCOLS)}, not %(value)s"
        )

    def clean_protocol(self) -> str:
        return self.cleaned_data["protocol"] or "auto"

    def clean(self):
        data = super().clean()
        if not data.get("url"):
            for name in ("domain", "app", "stream"):
                if not data.get(name) and name not in self.errors:
                    self.add_error(name, f"{self.fields[name].label.lower()} is required, or paste a playback URL")
        return data


class GoLiveForm(ConsoleForm):
    """The Go live page's query: which stream of the ingest domain to publish."""

    app = forms.CharField(label="App name", widget=forms.TextInput(attrs={"placeholder": "live"}))
    stream = forms.CharField(label="Stream name", widget=forms.TextInput(attrs={"placeholder": "stream1"}))
