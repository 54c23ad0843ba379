"""A GStreamer WHIP publisher (RFC 9725): GStreamer's webrtcbin does ICE,
DTLS-SRTP and RTP; this script only does the HTTP, as gst-plugins-rs's
`whipsink` does around the same element. Debian bookworm ships no whipsink
(it is in gst-plugins-rs) and its simple-whip-client aborts at start
(libsoup2, its own, and libsoup3, through libnice's gupnp-igd, in one
process): tests/test_interop_gstreamer_whip.py says so.

Run with the system Python and its GObject introspection (python3-gi,
gir1.2-gst-plugins-bad-1.0), not the project's virtualenv:

    /usr/bin/python3 tests/gst_whip_client.py URL --seconds 20 [--video PIPELINE] [--audio PIPELINE]

The pipelines end in RTP caps, as simple-whip-client's -V and -A do. No
trickle ICE: the offer is POSTed once every candidate is gathered. Prints
`connected` when ICE and DTLS are up, and exits 0 after --seconds (or
SIGINT, SIGTERM) and a DELETE of the session; non-zero, with the reason,
when refused or failed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import urllib.error
import urllib.request
from urllib.parse import urljoin

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=25/1 ! videoconvert"
    " ! queue ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=600 key-int-max=25"
    " ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 aggregate-mode=zero-latency"
    " ! application/x-rtp,media=video,encoding-name=H264,payload=96"
)
AUDIO = (
    "audiotestsrc is-live=true wave=sine freq=440 volume=0.1 ! audioconvert ! audioresample ! queue"
    " ! opusenc ! rtpopuspay ! application/x-rtp,media=audio,encoding-name=OPUS,payload=97"
)
HTTP_TIMEOUT_SECONDS = 15
CONNECT_TIMEOUT_SECONDS = 30


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/sdp"} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


class Client:
    def __init__(self, url: str, video: str, audio: str, seconds: float, addresses=()) -> None:
        self.url, self.seconds = url, seconds
        self.location: str | None = None
        self.error: str | None = None
        self.loop = GLib.MainLoop()
        parts = ["webrtcbin name=webrtc bundle-policy=max-bundle"]
        parts += [f"{pipeline} ! webrtc." for pipeline in (video, audio) if pipeline]
        self.pipeline = Gst.parse_launch(" ".join(parts))
        self.webrtc = self.pipeline.get_by_name("webrtc")
        # Held for the client's life: webrtcbin never sinks its agent's floating
        # reference, so PyGObject's wrapper takes it, and would free the agent
        # when the wrapper goes.
        ice = self.ice = self.webrtc.get_property("ice-agent")
        ice.set_property("ice-tcp", False)  # UDP, as WebRTC servers take it
        for address in addresses:
            # libnice gathers these alone (every interface but loopback otherwise).
            ice.emit("add-local-ip-address", address)
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_bus_error)
        self.offered = False

    def run(self) -> int:
        self.pipeline.set_state(Gst.State.PLAYING)
        # Publish, not receive: every transceiver webrtcbin made for a sink pad sends only.
        index = 0
        while (transceiver := self.webrtc.emit("get-transceiver", index)) is not None:
            transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
            index += 1
        GLib.timeout_add_seconds(CONNECT_TIMEOUT_SECONDS, self.on_connect_timeout)
        # SIGINT or SIGTERM ends the session as --seconds does: with a DELETE.
        for sig in (signal.SIGINT, signal.SIGTERM):
            GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, self.on_signal)
        self.loop.run()
        if self.location is not None:
            try:
                print(f"DELETE {http('DELETE', self.location)[0]}", flush=True)
            except OSError as exc:
                print(f"DELETE failed: {exc}", flush=True)
        self.pipeline.set_state(Gst.State.NULL)
        if self.error:
            print(f"gst_whip_client: {self.error}", file=sys.stderr, flush=True)
            return 1
        return 0

    def on_signal(self) -> bool:
        print("stopping", flush=True)
        self.loop.quit()
        return False

    def fail(self, reason: str) -> None:
        self.error = self.error or reason
        self.loop.quit()

    def on_bus_error(self, _bus, message) -> None:
        error, debug = message.parse_error()
        self.fail(f"pipeline error: {error.message} ({debug})")

    def on_negotiation_needed(self, element) -> None:
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, element, None)
        element.emit("create-offer", None, promise)

    def on_offer_created(self, promise, element, _data) -> None:
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None and reply.has_field("offer") else None
        if offer is None:
            GLib.idle_add(self.fail, f"webrtcbin made no offer: {reply.to_string() if reply else 'no reply'}")
            return
        element.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, element, _spec) -> None:
        state = element.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.offered:
            self.offered = True
            sdp = element.get_property("local-description").sdp.as_text()
            # HTTP off GStreamer's streaming thread; the answer is applied on the main loop.
            threading.Thread(target=self.post, args=(sdp,), daemon=True).start()

    def post(self, sdp: str) -> None:
        try:
            status, headers, body = http("POST", self.url, sdp.encode())
        except OSError as exc:
            GLib.idle_add(self.fail, f"POST failed: {exc}")
            return
        GLib.idle_add(self.on_answer, status, headers, body)

    def on_answer(self, status: int, headers: dict, body: bytes) -> bool:
        if status != 201:
            self.fail(f"WHIP POST answered {status}: {body.decode('utf-8', 'replace').strip()[:300]}")
            return False
        if "location" not in headers:
            self.fail("WHIP POST answered 201 without a Location")
            return False
        self.location = urljoin(self.url, headers["location"])
        print(f"answered: {self.location}", flush=True)
        result, message = GstSdp.SDPMessage.new_from_text(body.decode())
        if result != GstSdp.SDPResult.OK:
            self.fail(f"the answer is not SDP ({result})")
            return False
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        self.webrtc.emit("set-remote-description", answer, Gst.Promise.new())
        return False

    def on_connection_state(self, element, _spec) -> None:
        state = element.get_property("connection-state")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            print("connected", flush=True)
            GLib.timeout_add(int(self.seconds * 1000), self.loop.quit)
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            GLib.idle_add(self.fail, "the connection failed (ICE or DTLS)")

    def on_connect_timeout(self) -> bool:
        if self.webrtc.get_property("connection-state") != GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            self.fail(f"not connected after {CONNECT_TIMEOUT_SECONDS} s")
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=20, help="publish this long once connected")
    parser.add_argument("--video", default=VIDEO, help="a pipeline ending in RTP caps ('' for none)")
    parser.add_argument("--audio", default=AUDIO, help="a pipeline ending in RTP caps ('' for none)")
    parser.add_argument("--ice-address", action="append", default=[], help="gather ICE candidates on this address")
    args = parser.parse_args()
    Gst.init(None)
    client = Client(args.url, args.video, args.audio, args.seconds, args.ice_address)
    sys.exit(client.run())


if __name__ == "__main__":
    main()
