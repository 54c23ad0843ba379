"""The player's failures as the beacon's error kinds (static/js/player.js,
static/js/beacon.js, livecenter/media/beacon.py): every place the player
fails names a kind the node takes, every refusal reason the node gives a
player has words and a kind, and a refusal without a known reason still
gets the kind its HTTP status says. Read from the files and run in Node,
so a message added without a kind fails here."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from livecenter.media.admission import Refusal
from livecenter.media.beacon import ERROR_KINDS
from livecenter.media.signing import AuthFailure

STATIC = Path(__file__).resolve().parent.parent / "static" / "js"
# Refusals only a publisher meets: not an ingest domain, and a name over
# admission.MAX_NAME_CHARS (play paths take at most that many: liveurl.NAME_RE).
PUBLISH_ONLY = (Refusal.NOT_INGEST, Refusal.NAME_TOO_LONG)
PLAYER = (STATIC / "player.js").read_text()
BEACON = (STATIC / "beacon.js").read_text()


def block(source: str, start: str) -> str:
    """From `start` to the first line that is only the closing brace at its indentation."""
    begin = source.index(start)
    indent = source[source.rindex("\n", 0, begin) + 1 : begin]
    end = source.index(f"\n{indent}}}", begin)
    return source[begin : source.index("\n", end + 1)]


def node(script: str):
    result = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


REFUSALS = block(PLAYER, "const REASONS = {") + "\n" + block(PLAYER, "function refusalOf(")


def reasons() -> dict[str, list[str]]:
    return node(REFUSALS + "\nconsole.log(JSON.stringify(REASONS));")


def refusal_of(reason: str | None, status: int) -> dict[str, str]:
    return node(REFUSALS + f"\nconsole.log(JSON.stringify(refusalOf({json.dumps(reason)}, {status})));")


def test_beacon_js_knows_the_nodes_error_kinds():
    found = re.search(r"const ERROR_KINDS = (\[[^\]]*\]);", BEACON)
    assert found and tuple(json.loads(found.group(1))) == ERROR_KINDS
    assert "errorKind" not in BEACON  # kinds come from the player, not from its wording


def test_every_failure_of_the_player_names_a_kind():
    calls = re.findall(r"(?<!function )\bfail\(attemptState, ([^,]+),", PLAYER)
    assert len(calls) == PLAYER.count("fail(attemptState,") - 1  # less the definition
    named = [c for c in calls if c != "refusal.kind"]
    assert calls.count("refusal.kind") == 1
    assert {json.loads(c) for c in named} <= set(ERROR_KINDS), named
    assert 'report("error", { kind: kind, message: message })' in PLAYER


def test_every_refusal_reason_has_words_and_a_kind():
    table = reasons()
    for reason, (words, kind) in table.items():
        assert words.endswith(".") and kind in ERROR_KINDS, reason
    # What the node can refuse a player with (admission, signing, play.py).
    sent = {f.value for f in AuthFailure} | {r.value for r in Refusal if r not in PUBLISH_ONLY}
    sent |= {"stream is not live", "media node at capacity", "RTS is off for this domain"}
    assert sent <= set(table), sent - set(table)


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("stream is not live", "not_live"),
        ("stream is forbidden", "denied"),
        ("invalid md5hash", "denied"),
        ("expired timestamp", "denied"),
        ("RTS is off for this domain", "unsupported"),
        ("media node at capacity", "network"),
    ],
)
def test_a_known_reason_gets_its_kind(reason, kind):
    assert refusal_of(reason, 403)["kind"] == kind


@pytest.mark.parametrize(
    ("reason", "status", "kind", "words"),
    [
        (None, 404, "not_live", "The stream is not live."),
        (None, 403, "denied", "Access denied."),
        ("address 10.0.0.1 is on the domain's deny list", 403, "denied",
         "The media server refused to play the stream: address 10.0.0.1 is on the domain's deny list."),
        (None, 502, "network", "The media server answered HTTP 502."),
    ],
)  # fmt: skip
def test_an_unknown_reason_gets_the_kind_of_its_status(reason, status, kind, words):
    assert refusal_of(reason, status) == {"words": words, "kind": kind}
