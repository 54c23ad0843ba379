from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from .models import ApiToken


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's TokenAuthentication, with the
    key looked up by its SHA-256 (accounts.models.ApiToken)."""

    def authenticate_credentials(self, key):
        try:
            token = ApiToken.objects.select_related("user").get(digest=ApiToken.digest_of(key))
        except ApiToken.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return (token.user, token)
