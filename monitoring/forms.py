"""The monitoring pages' forms (ConsoleForm: messages name their field)."""

from __future__ import annotations

from django import forms

from domains.forms import ConsoleForm

from . import alarms
from .models import AlarmComparison, AlarmMetric


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


class AlarmRuleForm(ConsoleForm):
    """An alarm rule (alarms.py holds the rules: ranges, comparisons, one rule per scope and metric);
    without `domains` it edits a rule, whose domain stays."""

    domain = forms.ChoiceField(label="Domain")
    app = forms.CharField(label="App name", required=False, max_length=255, help_text="Empty: every app of the domain.")
    metric = forms.ChoiceField(label="Metric", choices=AlarmMetric.choices)
    comparison = forms.ChoiceField(
        label="Comparison",
        required=False,
        choices=[("", "the metric's own"), *AlarmComparison.choices],
        help_text="Frame rate alarms go below; keyframe interval, interruption and stall ratio above; bitrate either.",
    )
    threshold = forms.FloatField(
        label="Threshold",
        help_text="Frame rate in fps, bitrate in kbit/s, keyframe interval in seconds, stall ratio in percent of"
        " viewers' watch time; interruption: seconds without data from the publisher.",
    )
    duration_seconds = forms.IntegerField(
        label="Duration",
        initial=alarms.DEFAULT_DURATION_SECONDS,
        help_text=f"Seconds, {alarms.MIN_DURATION_SECONDS}-{alarms.MAX_DURATION_SECONDS}: how long the condition"
        " must hold before the alarm opens, and be clear before it closes (an interruption opens at its threshold;"
        " a stall ratio, reported per minute, takes at least 60).",
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def __init__(self, *args, domains=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["threshold"].error_messages["invalid"] = "threshold must be a number"
        if domains is None:
            del self.fields["domain"]
        else:
            self.fields["domain"].choices = [(d.domain_name, d.display_name) for d in domains]

    def changes(self) -> dict:
        """Keyword arguments for alarms.add_rule / update_rule."""
        data = dict(self.cleaned_data)
        data.pop("domain", None)
        data["comparison"] = data["comparison"] or None
        return data
