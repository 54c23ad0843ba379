"""kombu's filesystem transport, with messages that appear whole.

The embedded topology's Celery broker is a folder (livecenter/settings.py).
kombu writes a message by opening `{time}_{uuid}.{queue}.msg` and then
writing to it, while a worker polling the folder moves away and reads any
file with that name: a worker that comes between the two reads an empty
message, fails to decode it, and stops for good ("Unrecoverable error:
JSONDecodeError", seen in bench/soak). Here a message is written under a
name no queue matches and renamed into place, which is atomic within a
folder, so a reader sees all of it or nothing.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

# A message being written: no queue's `.{queue}.msg` ends like this.
PARTIAL_SUFFIX = ".partial"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + PARTIAL_SUFFIX
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
