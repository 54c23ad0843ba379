from django.contrib.auth.forms import AuthenticationForm

from accounts.forms import ThrottledLoginMixin


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    """The console's login form, with messages that name the field, throttled
    per account and per address (accounts/throttle.py)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].error_messages["required"] = "enter your user name"
        self.fields["password"].error_messages["required"] = "enter your password"
        self.error_messages["invalid_login"] = "user name or password is wrong; both are case-sensitive"
