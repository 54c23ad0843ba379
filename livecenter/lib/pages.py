"""What every app's console pages share: a service's error shown on the form
field it names (the page side of `livecenter.lib.api.invalid`), a settings
form saved with a confirmation that says what changed, and a list page's
filter, rows and pages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.forms.utils import pretty_name
from django.http import HttpRequest

ROWS_PER_PAGE = 100


def add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Show a service's ValidationError on the form field it names, or above
    the form when the form has no such field."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, errors in exc.error_dict.items():
        form.add_error(field if field in form.fields else None, errors)


def add_service_checks(form: forms.Form, check: Callable[..., None], **values) -> None:
    """For a form's clean(): when the form has errors of its own, also show
    what the service's checks say about its other fields, so that every
    error comes at once (a secret, never shown again, is typed once more,
    not once per mistake). A valid form leaves them to the service itself."""
    if not form._errors:
        return
    try:
        check(**values)
    except ValidationError as exc:
        for field, errors in getattr(exc, "error_dict", {}).items():
            if field in form.fields and field not in form._errors:
                form.add_error(field, errors)


def save_settings(
    request: HttpRequest, form: forms.Form, subject: str, save: Callable[[], object], note: str = ""
) -> bool:
    """The settings pages' one shape: a valid POST is saved with `save()` and
    confirmed with what changed ("HTML5 auto-transcoding turned off for
    play.example.com"); a service's errors go back on the form, which keeps
    what was typed (secret inputs excepted: their widgets never render a
    value). True when saved: the view then redirects."""
    if not (form.is_bound and form.is_valid()):
        return False
    summary = describe_changes(form)  # before save(): the form's initial is the state before
    try:
        save()
    except ValidationError as exc:
        add_service_errors(form, exc)
        return False
    text = f"{summary} for {subject}" if summary else f"Nothing changed for {subject}"
    messages.success(request, f"{text}{'; ' + note if note and summary else ''}.")
    return True


def describe_changes(form: forms.Form) -> str:
    """The fields a valid form changed from its initial values, as a phrase:
    "RTS turned on and validity period set to 60". A secret is "replaced",
    never shown; a form's `change_phrases` ({field: value -> phrase or None})
    words a field its own way."""
    phrases = []
    custom = getattr(form, "change_phrases", {})
    for name in form.changed_data:
        field, value = form.fields[name], form.cleaned_data.get(name)
        label = str(field.label or pretty_name(name))
        if name in custom:
            phrase = custom[name](value)
        elif getattr(field.widget, "never_shows_value", False):
            phrase = f"{label} replaced" if value else None
        elif isinstance(field, forms.BooleanField):
            phrase = f"{label} turned {'on' if value else 'off'}"
        elif isinstance(field, forms.ChoiceField):
            phrase = f"{label} set to {dict(field.choices).get(value, value) or 'none'}"
        elif isinstance(field.widget, forms.Textarea):
            phrase = f"{label} updated"
        else:
            phrase = f"{label} set to {value}" if value not in (None, "") else f"{label} cleared"
        if phrase:
            phrases.append(phrase if not phrases or label[1:2].isupper() else phrase[0].lower() + phrase[1:])
    if not phrases:
        return ""
    text = ", ".join(phrases[:-1]) + " and " + phrases[-1] if len(phrases) > 1 else phrases[0]
    return text[0].upper() + text[1:]


def read_filter(request: HttpRequest, form_class: type[forms.Form], **form_kwargs) -> tuple[forms.Form, dict | None]:
    """The list filter from the query string, and its values: {} when the
    query string is empty, None when the filter is invalid."""
    form = form_class(request.GET or None, **form_kwargs)
    if not form.is_bound:
        return form, {}
    return form, (form.cleaned_data if form.is_valid() else None)


def service_rows(form: forms.Form, service: Callable[..., Sequence], *args, **kwargs) -> Sequence:
    """A service's rows, or none with its error on the form."""
    try:
        return service(*args, **kwargs)
    except ValidationError as exc:
        add_service_errors(form, exc)
        return []


def paginate(request: HttpRequest, rows: Sequence) -> tuple[Page, str]:
    """One page of `rows`, and the query string of the filter for its links."""
    query = urlencode([(k, v) for k, v in request.GET.items() if k != "page" and v])
    return Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("page")), query
