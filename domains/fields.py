from django.conf import settings
from django.db import models

from .lib import secretbox


class EncryptedTextField(models.TextField):
    """Text stored encrypted (domains/lib/secretbox.py); Python sees plain text.

    Used for every secret the console keeps: URL-signing keys, SRT passphrases
    and certificate private keys. An empty value is stored empty.
    """

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return secretbox.decrypt(settings.LIVECENTER_ENCRYPTION_KEY, value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return secretbox.encrypt(settings.LIVECENTER_ENCRYPTION_KEY, value)
