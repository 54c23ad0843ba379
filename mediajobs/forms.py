"""Console forms of the media workers' pages (issue 7). They turn what a
person typed into values; the rules are services.py's, whose errors
livecenter.lib.pages.add_service_errors puts back on the field they name."""

from __future__ import annotations

from django import forms

from domains.forms import ConsoleForm

from .models import ReconnectMode, VideoProfile


class _DomainAppForm(ConsoleForm):
    domain = forms.ChoiceField(label="Domain")
    app = forms.CharField(label="App name", initial="*", help_text="'*' for every app; an exact app name wins.")

    def __init__(self, *args, domains, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [(d.domain_name, d.display_name) for d in domains]


class TemplateForm(_DomainAppForm):
    template_id = forms.CharField(
        label="Template ID",
        help_text="lld (360p, 470 kbit/s), lsd (432p, 680), lhd (648p, 1500), lud (1080p, 2500), or your own.",
    )
    short_side = forms.IntegerField(label="Short side (px)", required=False, help_text="Custom only.")
    width = forms.IntegerField(label="Width (px)", required=False)
    height = forms.IntegerField(label="Height (px)", required=False)
    video_bitrate_kbps = forms.IntegerField(label="Video bitrate (kbit/s)", required=False)
    fps = forms.FloatField(label="Frame rate", required=False, help_text="Empty keeps the source's.")
    gop_seconds = forms.FloatField(label="GOP (s)", required=False, help_text="Empty: keyframes with the source.")
    profile = forms.ChoiceField(label="Profile", choices=VideoProfile.choices, initial=VideoProfile.HIGH)
    always = forms.BooleanField(
        label="Always run", required=False, help_text="Transcode whenever the source is live, not on the first viewer."
    )


class GroupForm(_DomainAppForm):
    group_id = forms.CharField(label="Group ID", help_text="Plays at {stream}_{group}.m3u8 (HLS, adaptive bitrate).")
    template_ids = forms.CharField(label="Templates", help_text="Template IDs, separated by commas: lld,lhd")


class RecordForm(_DomainAppForm):
    format = forms.ChoiceField(label="Format", choices=[("mp4", "MP4"), ("m3u8", "HLS VOD (M3U8 + TS)")])
    cycle_seconds = forms.IntegerField(label="Split files every (s)", initial=6 * 3600)
    on_reconnect = forms.ChoiceField(label="When the publisher reconnects", choices=ReconnectMode.choices)


class SnapshotForm(_DomainAppForm):
    interval_seconds = forms.IntegerField(label="Every (s)", initial=10, help_text="5-3600.")


class DeleteForm(ConsoleForm):
    what = forms.ChoiceField(choices=[(k, k) for k in ("template", "group", "record", "snapshot")])
    domain = forms.CharField()
    app = forms.CharField()
    name = forms.CharField(required=False)
