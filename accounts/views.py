from django.contrib.auth import views as auth_views


class LoginView(auth_views.LoginView):
    """The console's login page: a throttled attempt gets the form back with
    the reason, as 429 with Retry-After."""

    def form_invalid(self, form):
        response = super().form_invalid(form)
        refusal = getattr(form, "throttled", None)
        if refusal is not None:
            response.status_code = 429
            response["Retry-After"] = str(refusal.retry_after_seconds)
        return response
