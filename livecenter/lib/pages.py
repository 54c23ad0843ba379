"""What every app's console pages share: a service's error shown on the form
field it names (the page side of `livecenter.lib.api.invalid`), and a list
page's filter, rows and pages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlencode

from django import forms
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
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
