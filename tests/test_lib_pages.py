"""livecenter/lib/pages.py and dates.py: what every app's pages share."""

import datetime as dt

from django import forms
from django.core.exceptions import ValidationError
from django.test import RequestFactory

from livecenter.lib.api import invalid
from livecenter.lib.dates import aware
from livecenter.lib.pages import add_service_errors, paginate, read_filter, service_rows


class NameForm(forms.Form):
    name = forms.CharField(required=False, max_length=3)


def test_it_puts_a_service_error_on_the_field_it_names_or_above_the_form():
    form = NameForm({"name": "a"})
    assert form.is_valid()
    add_service_errors(form, invalid("name", "name is taken"))
    add_service_errors(form, invalid("quota", "too many names"))
    add_service_errors(form, ValidationError("the service is down"))
    assert form.errors == {"name": ["name is taken"], "__all__": ["too many names", "the service is down"]}


def test_it_reads_a_filter_from_the_query_string():
    get = RequestFactory().get
    assert read_filter(get("/"), NameForm)[1] == {}
    assert read_filter(get("/", {"name": "abcd"}), NameForm)[1] is None
    assert read_filter(get("/", {"name": "abc"}), NameForm)[1] == {"name": "abc"}


def test_it_shows_a_service_error_instead_of_rows():
    form = NameForm({})
    form.is_valid()

    def refuse():
        raise invalid("name", "name is not one of your domains")

    assert service_rows(form, lambda prefix: [prefix + "1"], "cam") == ["cam1"]
    assert service_rows(form, refuse) == []
    assert form.errors == {"name": ["name is not one of your domains"]}


def test_it_pages_rows_and_keeps_the_filter_for_the_links(monkeypatch):
    monkeypatch.setattr("livecenter.lib.pages.ROWS_PER_PAGE", 2)
    page, query = paginate(RequestFactory().get("/", {"app": "live", "stream": "", "page": "2"}), list(range(5)))
    assert list(page.object_list) == [2, 3] and page.paginator.num_pages == 3
    assert query == "app=live"


def test_it_reads_a_naive_time_as_utc():
    naive = dt.datetime(2026, 5, 1, 12, 0)
    assert aware(naive) == naive.replace(tzinfo=dt.UTC)
    eastern = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert aware(eastern) is eastern
