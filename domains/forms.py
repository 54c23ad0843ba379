"""Console forms. They turn what a person typed into Python values; the rules
(quotas, name and key formats, live centers, certificates) are in services.py,
whose errors `livecenter.lib.pages.add_service_errors` puts back on the field they name."""

from __future__ import annotations

import re

from django import forms
from django.forms.utils import pretty_name

from livecenter.lib.pages import add_service_checks
from livecenter.media import access

from . import services
from .models import AccessListMode, DomainType, HttpsRedirect, LiveCenter, Region


class ConsoleForm(forms.Form):
    """Every message names its field ("domain name is required", not Django's
    "This field is required."), and widgets carry Bootstrap's classes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            label = str(field.label or pretty_name(name)).lower()
            messages = {"required": f"{label} is required"}
            if isinstance(field, forms.ChoiceField):
                messages["invalid_choice"] = f"{label} must be one of the listed choices"
            if isinstance(field, forms.IntegerField):
                messages["invalid"] = f"{label} must be a whole number"
            field.error_messages = {**field.error_messages, **messages}
            widget = field.widget
            if isinstance(widget, (forms.CheckboxInput, forms.RadioSelect)):
                css = "form-check-input"
            elif isinstance(widget, forms.Select):
                css = "form-select"
            else:
                css = "form-control"
            widget.attrs.setdefault("class", css)


class NeverShowValue:
    """A widget that renders empty whatever was submitted, so a secret typed
    into it never comes back in a page (like PasswordInput(render_value=False));
    a confirmation says it was replaced, never what it is."""

    never_shows_value = True

    def format_value(self, value):
        return None


class SecretInput(NeverShowValue, forms.TextInput):
    def __init__(self, attrs=None) -> None:
        super().__init__({"autocomplete": "off", "spellcheck": "false", **(attrs or {})})


class SecretTextarea(NeverShowValue, forms.Textarea):
    def __init__(self, attrs=None) -> None:
        super().__init__({"autocomplete": "off", "spellcheck": "false", "rows": 8, **(attrs or {})})


def live_center_choices() -> list[tuple[str, str]]:
    return [(c.value, f"{c.label} — {c.value}") for c in LiveCenter]


def domain_choices(domains) -> list[tuple[str, str]]:
    return [(d.domain_name, f"{d.display_name} ({d.get_domain_type_display().lower()})") for d in domains]


class AddDomainForm(ConsoleForm):
    domain_type = forms.ChoiceField(
        label="Domain type",
        choices=DomainType.choices,
        widget=forms.RadioSelect,
        help_text="The type cannot be changed later.",
    )
    domain_name = forms.CharField(
        label="Domain name",
        help_text="For example live.example.com. No wildcards; internationalised names are accepted.",
        widget=forms.TextInput(attrs={"placeholder": "live.example.com", "autocomplete": "off"}),
    )
    region = forms.ChoiceField(label="Acceleration region", choices=Region.choices, initial=Region.MAINLAND)
    live_center = forms.ChoiceField(
        label="Live center",
        choices=live_center_choices,
        initial=LiveCenter.CN_SHANGHAI,
        help_text="An ingest domain and its streaming domain must share a live center. It cannot be changed later.",
    )
    local = forms.BooleanField(
        label="Local or test domain (no DNS)",
        required=False,
        help_text="For one machine or a lab: online without a CNAME record; clients reach the media node by its"
        " address with domain=. Always on for names under .test, .localhost, .invalid and .example.",
    )

    def clean_domain_name(self) -> str:
        # The service's own rule, checked here too so that a bad name shows
        # beside the form's other errors (issue 19: all errors at once).
        name = self.cleaned_data["domain_name"]
        try:
            services.normalize_domain_name(name)
        except services.HostnameError as exc:
            raise forms.ValidationError(str(exc)) from None
        return name

    def selection(self) -> tuple[str, str]:
        """The region and live center currently chosen (submitted or initial)."""
        return str(self["region"].value() or ""), str(self["live_center"].value() or "")


class AssociateIngestForm(ConsoleForm):
    ingest_domain = forms.ChoiceField(label="Ingest domain")

    def __init__(self, *args, ingest_domains, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["ingest_domain"].choices = [
            (d.domain_name, f"{d.display_name} ({d.get_live_center_display()})") for d in ingest_domains
        ]


class BindMainDomainForm(ConsoleForm):
    main_domain = forms.ChoiceField(label="Main streaming domain")

    def __init__(self, *args, streaming_domains, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["main_domain"].choices = [
            (d.domain_name, f"{d.display_name} ({d.get_live_center_display()})") for d in streaming_domains
        ]


class CertificateForm(ConsoleForm):
    name = forms.CharField(
        label="Certificate name",
        required=False,
        help_text="Optional; defaults to the domain name and the expiry date.",
    )
    certificate = forms.CharField(
        label="Certificate",
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "placeholder": "-----BEGIN CERTIFICATE-----"}),
        help_text="PEM: the certificate for this domain first, then any intermediate certificates.",
    )
    private_key = forms.CharField(
        label="Private key",
        widget=SecretTextarea(attrs={"placeholder": "-----BEGIN PRIVATE KEY-----"}),
        help_text="PEM, unencrypted. It is stored encrypted and never shown again.",
    )


class HttpsForm(ConsoleForm):
    https_enabled = forms.BooleanField(
        label="HTTPS",
        required=False,
        help_text="Serve HTTPS (FLV, HLS, WHEP) and RTMPS with this certificate, chosen by the name clients ask for.",
    )
    https_redirect = forms.ChoiceField(
        label="Force redirect",
        choices=HttpsRedirect.choices,
        required=False,
        help_text="Answer requests on the other scheme with a 301 to this one.",
    )


class RtsForm(ConsoleForm):
    rts_enabled = forms.BooleanField(label="RTS", required=False)
    html5_transcode = forms.BooleanField(
        label="HTML5 auto-transcoding",
        required=False,
        help_text="Browsers' WebRTC plays neither B-frames nor AAC: this removes B-frames and converts"
        " AAC to Opus for browser viewers.",
    )


class HlsEncryptionForm(ConsoleForm):
    hls_encryption = forms.BooleanField(
        label="HLS encryption",
        required=False,
        help_text="Encrypt HLS and LL-HLS segments with AES-128. Players fetch the keys with the playlist's own"
        " token, so hls.js, Safari and ffmpeg play as before. RTS, FLV and RTMP are not changed.",
    )
    hls_key_rotation_segments = forms.IntegerField(
        label="Key rotation",
        help_text=f"A new key every this many segments, {services.MIN_KEY_ROTATION_SEGMENTS}"
        f"-{services.MAX_KEY_ROTATION_SEGMENTS}; default 10 (segments last a second or so).",
        widget=forms.NumberInput(
            attrs={"min": services.MIN_KEY_ROTATION_SEGMENTS, "max": services.MAX_KEY_ROTATION_SEGMENTS}
        ),
    )
    hls_encryption_apps = forms.CharField(
        label="Apps",
        required=False,
        help_text="Comma-separated app names to encrypt; leave empty to encrypt every app.",
    )

    change_phrases = {"hls_key_rotation_segments": lambda n: f"a new key every {n} segments"}

    def changes(self) -> dict:
        """Keyword arguments for services.configure_hls_encryption."""
        data = self.cleaned_data
        return {
            "enabled": data["hls_encryption"],
            "key_rotation_segments": data["hls_key_rotation_segments"],
            "apps": data["hls_encryption_apps"].split(","),
        }


class UrlSigningForm(ConsoleForm):
    enabled = forms.BooleanField(label="URL signing (Type A)", required=False)
    primary_key = forms.CharField(
        label="Primary key",
        required=False,
        widget=SecretInput(),
        help_text=f"Leave empty to keep the current key. A new key is {services.SIGNING_KEY_RULE}.",
    )
    secondary_key = forms.CharField(
        label="Secondary key",
        required=False,
        widget=SecretInput(),
        help_text=f"Leave empty to keep the current key. A new key is {services.SIGNING_KEY_RULE}.",
    )
    remove_secondary_key = forms.BooleanField(label="Remove the secondary key", required=False)
    validity_minutes = forms.IntegerField(
        label="Validity period",
        help_text="Minutes a signed URL can start a session; default 1,440 (one day).",
        widget=forms.NumberInput(attrs={"min": services.MIN_VALIDITY_MINUTES}),
    )

    change_phrases = {
        "remove_secondary_key": lambda remove: "secondary key removed" if remove else None,
        "validity_minutes": lambda minutes: f"validity period set to {minutes} minutes",
    }

    def clean(self):
        data = super().clean()
        if data.get("remove_secondary_key") and data.get("secondary_key"):
            self.add_error(
                "secondary_key",
                "secondary key: enter a new key or tick “Remove the secondary key”, not both",
            )
        add_service_checks(self, services.check_url_signing, primary_key=data.get("primary_key") or None,
                           secondary_key=data.get("secondary_key") or None,
                           validity_minutes=data.get("validity_minutes"))  # fmt: skip
        return data

    def changes(self) -> dict:
        """Keyword arguments for services.configure_url_signing: an empty key
        input keeps the key; removing the secondary key sets it empty."""
        data = self.cleaned_data
        secondary = "" if data["remove_secondary_key"] else (data["secondary_key"] or None)
        return {
            "enabled": data["enabled"],
            "primary_key": data["primary_key"] or None,
            "secondary_key": secondary,
            "validity_minutes": data["validity_minutes"],
        }


class SrtForm(ConsoleForm):
    srt_latency_ms = forms.IntegerField(
        label="SRT latency",
        help_text=f"Milliseconds, {services.MIN_SRT_LATENCY_MS}-{services.MAX_SRT_LATENCY_MS}; default 120. The"
        " node buffers each publisher this long to recover lost packets; the larger of this and the publisher's own"
        " latency applies. Set it to at least 3-4 times the round trip to your publishers.",
        widget=forms.NumberInput(attrs={"min": services.MIN_SRT_LATENCY_MS, "max": services.MAX_SRT_LATENCY_MS}),
    )
    srt_passphrase = forms.CharField(
        label="SRT passphrase",
        required=False,
        strip=False,  # the service refuses surrounding spaces rather than dropping them unseen
        widget=SecretInput(),
        help_text=f"Leave empty to keep the current passphrase. A new one is {services.SRT_PASSPHRASE_RULE};"
        " publishers must then encrypt with it.",
    )
    remove_srt_passphrase = forms.BooleanField(
        label="Remove the passphrase (publishers push unencrypted)", required=False
    )

    change_phrases = {
        "srt_latency_ms": lambda ms: f"SRT latency set to {ms} ms",
        "remove_srt_passphrase": lambda remove: "SRT passphrase removed" if remove else None,
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # ConsoleForm writes labels in lower case; "srt" is an acronym.
        self.fields["srt_latency_ms"].error_messages.update(
            required="SRT latency is required", invalid="SRT latency must be a whole number of milliseconds"
        )

    def clean(self):
        data = super().clean()
        if data.get("remove_srt_passphrase") and data.get("srt_passphrase"):
            self.add_error(
                "srt_passphrase",
                "SRT passphrase: enter a new passphrase or tick “Remove the passphrase”, not both",
            )
        add_service_checks(self, services.check_srt, srt_latency_ms=data.get("srt_latency_ms"),
                           srt_passphrase=data.get("srt_passphrase") or None)  # fmt: skip
        return data

    def changes(self) -> dict:
        """Keyword arguments for services.configure_srt: an empty passphrase
        input keeps the passphrase; removing it sets it empty."""
        data = self.cleaned_data
        passphrase = "" if data["remove_srt_passphrase"] else (data["srt_passphrase"] or None)
        return {"srt_latency_ms": data["srt_latency_ms"], "srt_passphrase": passphrase}


class UrlGeneratorForm(ConsoleForm):
    domain = forms.ChoiceField(
        label="Domain",
        help_text="An ingest domain or a streaming domain; URLs for the other side of its association are included.",
    )
    app = forms.CharField(label="App name", widget=forms.TextInput(attrs={"placeholder": "live"}))
    stream = forms.CharField(label="Stream name", widget=forms.TextInput(attrs={"placeholder": "stream1"}))
    template = forms.CharField(
        label="Transcoding template id",
        required=False,
        help_text="Optional: playback URLs for the transcoded stream {stream}_{template}.",
    )
    validity_minutes = forms.IntegerField(
        label="Validity",
        required=False,
        help_text="Optional, in minutes; defaults to the domain's validity period.",
        widget=forms.NumberInput(attrs={"min": services.MIN_VALIDITY_MINUTES}),
    )

    def __init__(self, *args, domains, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = domain_choices(domains)


def _entry_lines(text: str) -> list[str]:
    """One entry a line (commas and spaces separate too, as pasted lists have them)."""
    return [entry for entry in re.split(r"[\s,]+", text or "") if entry]


class AccessControlForm(ConsoleForm):
    ip_mode = forms.ChoiceField(
        label="IP list",
        choices=AccessListMode.choices,
        widget=forms.RadioSelect,
        help_text="An allow list admits only the addresses on it; a deny list refuses them. Never both.",
    )
    ip_entries = forms.CharField(
        label="Addresses and networks",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "placeholder": "203.0.113.0/24\n2001:db8::/32"}),
        help_text=f"One a line: IPv4 or IPv6 addresses and CIDR networks, at most {access.MAX_IP_ENTRIES}.",
    )
    referer_mode = forms.ChoiceField(
        label="Referer list",
        choices=AccessListMode.choices,
        widget=forms.RadioSelect,
        help_text="For HTTP-FLV, HLS and RTS (WHEP): the page a player runs in.",
    )
    referer_entries = forms.CharField(
        label="Hosts",
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 6, "spellcheck": "false", "placeholder": "player.example.com\n*.example.com"}
        ),
        help_text="One a line: a host, or *.example.com for any name under example.com (not example.com itself);"
        f" at most {access.MAX_REFERER_ENTRIES}.",
    )
    referer_allow_empty = forms.BooleanField(
        label="Allow an empty Referer",
        required=False,
        help_text="Allow list only: admit requests with no Referer (apps, players opened directly).",
    )

    def __init__(self, *args, streaming: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not streaming:  # publishers (RTMP, SRT) send no Referer
            for name in ("referer_mode", "referer_entries", "referer_allow_empty"):
                del self.fields[name]

    def changes(self) -> dict:
        """Keyword arguments for services.configure_access_control: a list
        switched off forgets its entries (whatever the box still holds)."""
        data = self.cleaned_data
        changes = {"ip_mode": data["ip_mode"]}
        changes["ip_entries"] = None if data["ip_mode"] == AccessListMode.OFF else _entry_lines(data["ip_entries"])
        if "referer_mode" in data:
            mode = data["referer_mode"]
            changes["referer_mode"] = mode
            changes["referer_entries"] = None if mode == AccessListMode.OFF else _entry_lines(data["referer_entries"])
            changes["referer_allow_empty"] = data["referer_allow_empty"] if mode == AccessListMode.ALLOW else None
        return changes
