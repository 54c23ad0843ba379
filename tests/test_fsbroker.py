"""The embedded broker's messages appear whole (livecenter/lib/fsbroker.py):
a worker polling the folder never reads one that is still being written."""

from __future__ import annotations

import os

import pytest
from kombu import Connection
from kombu.transport import filesystem

from livecenter.lib.fsbroker import PARTIAL_SUFFIX


@pytest.fixture
def channel(tmp_path):
    folders = {name: tmp_path / name for name in ("out", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    options = {
        "data_folder_in": str(folders["out"]),
        "data_folder_out": str(folders["out"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
    }
    with Connection("livecenterfs://", transport_options=options) as connection:
        yield connection.default_channel, folders["out"]


def test_it_writes_a_message_whole_under_its_queue_name(channel):
    ch, folder = channel
    ch._put("media", {"task": "x", "args": [1, 2]})
    names = os.listdir(folder)
    assert len(names) == 1 and names[0].endswith(".media.msg")
    assert ch._get("media") == {"task": "x", "args": [1, 2]}
    assert os.listdir(folder) == []


def test_a_message_being_written_is_not_taken(channel, monkeypatch):
    # kombu's own transport opens the final name, then writes: a reader in
    # between took an empty message and the worker died on it.
    ch, folder = channel
    seen = []

    def replace(src, dst):
        # The moment before the rename: what would a polling worker find?
        with pytest.raises(Exception) as found:
            ch._get("media")
        seen.append((type(found.value).__name__, sorted(os.listdir(folder))))
        os.rename(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    ch._put("media", {"task": "y"})
    assert seen[0][0] == "Empty"
    assert seen[0][1][0].endswith(".media.msg" + PARTIAL_SUFFIX)
    assert ch._get("media") == {"task": "y"}


def test_kombus_own_transport_has_the_race_we_close(tmp_path):
    # The empty file kombu's `_put` leaves between open and write is taken.
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "1_x.media.msg").write_bytes(b"")
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False}
    with Connection("filesystem://", transport_options=options) as connection:
        assert isinstance(connection.default_channel, filesystem.Channel)
        with pytest.raises(ValueError):  # JSONDecodeError: the worker's "Unrecoverable error"
            connection.default_channel._get("media")
