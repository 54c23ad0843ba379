import os

from django.apps import AppConfig
from django.db.backends.signals import connection_created

# The SQLite database (and the journal files SQLite makes beside it, which
# take its mode) is readable by the user the product runs as, nobody else.
SQLITE_FILE_MODE = 0o600


def make_sqlite_file_private(sender, connection, **kwargs) -> None:
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict["NAME"])
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    try:
        if os.stat(name).st_mode & 0o777 != SQLITE_FILE_MODE:
            os.chmod(name, SQLITE_FILE_MODE)
    except OSError:  # not created yet, or not ours
        pass


class LivecenterConfig(AppConfig):
    # Installed as an app for its management commands (the runner) and the
    # database file's mode.
    name = "livecenter"
    verbose_name = "LiveCenter"

    def ready(self) -> None:
        connection_created.connect(make_sqlite_file_private, dispatch_uid="livecenter.sqlite-mode")
