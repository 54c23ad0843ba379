"""The monitoring pages' forms (ConsoleForm: messages name their field)."""

from __future__ import annotations

from django import forms

from domains.forms import ConsoleForm


class StreamForm(ConsoleForm):
    domain = forms.CharField(label="Domain")
    app = forms.CharField(label="App name")
    stream = forms.CharField(label="Stream name")


class DomainForm(ConsoleForm):
    domain = forms.ChoiceField(label="Domain")

    def __init__(self, *args, domains, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [(d.domain_name, d.display_name) for d in domains]


class TroubleshootForm(ConsoleForm):
    url = forms.CharField(label="Ingest or playback URL", max_length=4096)


class StatisticsForm(DomainForm):
    app = forms.CharField(label="App name", required=False, help_text="Empty: the whole domain.")
    stream = forms.CharField(label="Stream name", required=False, help_text="Empty: the whole app.")
