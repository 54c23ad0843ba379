"""Issue 11 item 1, measured: publish ~150 MB through a node after one video
frame stamped 0xFFFFFFF0, an HLS client polling; print what the packager
holds and the process RSS before and after. Run from the repository root:

    flock /tmp/livecenter-bench.lock .venv/bin/python bench/timestamps/hls_memory.py
"""

import sys
import threading
import time

sys.path.insert(0, ".")
from tests.mediasupport import NodeThread, TagPublisher
from tests.test_hls_integration import fetch, m3u8_url
from tests.test_timestamp_jumps import first_keyframe, packager, send, source


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024


media = NodeThread(play_wait_seconds=5).start()
headers, tags = source()
per_round = sum(len(t.body) for t in tags)
pub = TagPublisher(media.publish_url())
send(pub, headers)
# The packager starts (a playlist request) before the bad frame, so it sees it.
t = threading.Thread(target=lambda: fetch(m3u8_url(media), timeout=30))
t.start()
while not media.run_sync(lambda: bool(media.node.hls.streams)):
    time.sleep(0.05)
pub.send("video", 0xFFFF_FFF0, first_keyframe(tags).body)
send(pub, tags[1:], offset=33)
send(pub, tags, offset=6033)
t.join()
before = rss_mb()
sent, r = 0, 2
while sent < 150e6:
    send(pub, tags, offset=6000 * r + 33)
    sent += per_round
    r += 1
    if r % 20 == 0:
        fetch(m3u8_url(media))
time.sleep(1)


def held_bytes(p) -> int:
    # What HlsPackager.held_bytes says (computed here too, for the code before it).
    return sum(len(s.data) for s in p._segments) + (len(p._open.data) if p._open is not None else 0)


held = media.run_sync(lambda: held_bytes(packager(media)))
msn = media.run_sync(lambda: packager(media).last_msn_part())
print(f"sent {sent / 1e6:.0f} MB in {r} rounds; packager holds {held / 1e6:.1f} MB, last part {msn}")
print(f"RSS {before:.0f} -> {rss_mb():.0f} MB")
pub.close()
media.stop()
