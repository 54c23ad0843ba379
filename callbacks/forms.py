"""The callbacks page's form; the rules are services.configure_callbacks'."""

from __future__ import annotations

from django import forms

from domains.forms import ConsoleForm, SecretInput
from livecenter.lib.pages import add_service_checks

from . import services


class CallbacksForm(ConsoleForm):
    url = forms.CharField(
        label="Callback URL",
        required=False,
        max_length=2000,
        help_text="http:// or https://. Receives every event of this domain's streams as a signed JSON POST"
        " (stream published and unpublished, recording ready, snapshot taken, transcode failed, alarm opened and"
        " closed). Empty: no events.",
    )
    secret = forms.CharField(
        label="Secret",
        required=False,
        strip=False,
        widget=SecretInput(),
        help_text=f"Leave empty to keep the current secret. {services.MIN_SECRET_CHARS} to"
        f" {services.MAX_SECRET_CHARS} characters; it signs every callback (HMAC-SHA256) and is never shown again.",
    )
    publish_hook_url = forms.CharField(
        label="Publish authorisation URL",
        required=False,
        max_length=2000,
        help_text="Asked before each publish (after its signed URL): a 2xx answer admits the publisher, anything"
        " else refuses it with the answer's text as the reason. Empty: publishers are not asked about.",
    )
    publish_hook_timeout_ms = forms.IntegerField(
        label="Publish authorisation timeout",
        min_value=services.MIN_HOOK_TIMEOUT_MS,
        max_value=services.MAX_HOOK_TIMEOUT_MS,
        help_text=f"Milliseconds, {services.MIN_HOOK_TIMEOUT_MS}-{services.MAX_HOOK_TIMEOUT_MS}; default 2000. The"
        " longest a publisher waits for the answer.",
    )
    publish_hook_allow_when_unreachable = forms.BooleanField(
        label="Admit publishers when the publish authorisation URL does not answer in time", required=False
    )

    change_phrases = {"publish_hook_timeout_ms": lambda ms: f"publish authorisation timeout set to {ms} ms"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        timeout = self.fields["publish_hook_timeout_ms"]
        timeout.error_messages.update(
            min_value=f"publish authorisation timeout must be at least {services.MIN_HOOK_TIMEOUT_MS} milliseconds",
            max_value=f"publish authorisation timeout must be at most {services.MAX_HOOK_TIMEOUT_MS} milliseconds",
        )

    def clean(self):
        data = super().clean()
        add_service_checks(self, services.check_callbacks, url=data.get("url"), secret=data.get("secret") or None,
                           publish_hook_url=data.get("publish_hook_url"),
                           publish_hook_timeout_ms=data.get("publish_hook_timeout_ms"))  # fmt: skip
        return data

    def changes(self) -> dict:
        """Keyword arguments for services.configure_callbacks: an empty
        secret input keeps the secret."""
        data = dict(self.cleaned_data)
        data["secret"] = data["secret"] or None
        return data
