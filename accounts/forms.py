from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate

from . import throttle


class ThrottledLoginMixin:
    """An AuthenticationForm whose password check goes through the login
    throttle (accounts/throttle.py). `throttled` is the refusal, if any, so
    that the view can answer 429 with Retry-After."""

    throttled: throttle.LoginThrottled | None = None

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return self.cleaned_data  # the fields' own errors say what is missing
        try:
            attempt = throttle.begin_login(username, throttle.client_address(self.request))
        except throttle.LoginThrottled as exc:
            self.throttled = exc
            raise forms.ValidationError(str(exc), code="throttled") from None
        self.user_cache = authenticate(self.request, username=username, password=password)
        if self.user_cache is None:
            raise self.get_invalid_login_error()
        self.confirm_login_allowed(self.user_cache)
        throttle.login_succeeded(attempt)
        return self.cleaned_data


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass
