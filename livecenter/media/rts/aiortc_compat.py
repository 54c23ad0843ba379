"""Every private aiortc and aioice name RTS relies on, in one place.

aiortc has no public API for what a WHEP server of pre-encoded media needs:
its own stream id (msid) per track, a keyframe request (PLI/FIR) handed to
the media source rather than to an encoder, a packetiser instead of an
encoder, and ICE host candidates on chosen addresses. The pinned versions
(constraints.txt: aiortc 1.16.0, aioice 0.13.0) do these through the private
names below; tests/test_aiortc_compat.py fails, naming the attribute, when
an upgrade drops one. `missing_internals()` says the same at run time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import aioice.ice
from aiortc import RTCRtpSender

# The attribute the sender reads for the msid of its track's stream.
SENDER_STREAM_ID = "_stream_id"
# The method the sender calls on a PLI or FIR (RTCRtpSender._handle_rtcp_packet).
SENDER_KEYFRAME_HOOK = "_send_keyframe"
# The sender's encoder, made on first use unless set (name-mangled `__encoder`).
SENDER_ENCODER = "_RTCRtpSender__encoder"
# The function aioice asks for the addresses of its host candidates.
ICE_HOST_ADDRESSES = "get_host_addresses"
ICE_HOST_ADDRESSES_PARAMETERS = ("use_ipv4", "use_ipv6")

_default_host_addresses = aioice.ice.get_host_addresses


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """Give the sender's track a stream id (msid) of its own."""
    setattr(sender, SENDER_STREAM_ID, stream_id)


def on_keyframe_request(sender: RTCRtpSender, fn: Callable[[], None]) -> None:
    """Call `fn` (on the loop) when the peer asks for a keyframe (PLI or FIR)."""
    setattr(sender, SENDER_KEYFRAME_HOOK, fn)


def use_encoder(sender: RTCRtpSender, encoder) -> None:
    """Have the sender use `encoder` (an aiortc Encoder: `pack` for
    pre-encoded packets) rather than make one for its codec."""
    setattr(sender, SENDER_ENCODER, encoder)


def use_ice_addresses(addresses: Iterable[str]) -> None:
    """Offer ICE host candidates on these addresses only (every interface
    but loopback when empty, aioice's default). aioice has no per-connection
    setting, so this is for the whole process, like the node itself."""
    chosen = tuple(addresses)
    if chosen:

        def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

        aioice.ice.get_host_addresses = host_addresses
    else:
        aioice.ice.get_host_addresses = _default_host_addresses


def _reads(function, name: str) -> bool:
    return name in function.__code__.co_names


def missing_internals(sender: RTCRtpSender) -> list[str]:
    """What the installed aiortc/aioice lack of the names above, each naming
    the attribute (empty when all is there). `sender` is a real sender, made
    by an RTCPeerConnection's addTransceiver."""
    missing = []
    instance = vars(sender)
    for name in (SENDER_STREAM_ID, SENDER_ENCODER):
        if name not in instance:
            missing.append(f"RTCRtpSender instance attribute {name} is gone")
    if not callable(getattr(RTCRtpSender, SENDER_KEYFRAME_HOOK, None)):
        missing.append(f"RTCRtpSender.{SENDER_KEYFRAME_HOOK} is gone")
    handler = getattr(RTCRtpSender, "_handle_rtcp_packet", None)
    if handler is None or not _reads(handler, SENDER_KEYFRAME_HOOK):
        missing.append(f"RTCRtpSender._handle_rtcp_packet no longer calls {SENDER_KEYFRAME_HOOK}")
    encode = getattr(RTCRtpSender, "_next_encoded_frame", None)
    if encode is None or not _reads(encode, SENDER_ENCODER):
        missing.append(f"RTCRtpSender._next_encoded_frame no longer reads {SENDER_ENCODER}")
    function = getattr(aioice.ice, ICE_HOST_ADDRESSES, None)
    if function is None:
        missing.append(f"aioice.ice.{ICE_HOST_ADDRESSES} is gone")
    else:
        parameters = tuple(inspect.signature(_default_host_addresses).parameters)
        if parameters != ICE_HOST_ADDRESSES_PARAMETERS:
            missing.append(f"aioice.ice.{ICE_HOST_ADDRESSES} takes {parameters}, not {ICE_HOST_ADDRESSES_PARAMETERS}")
        if not any(_reads(f, ICE_HOST_ADDRESSES) for f in _functions_of(aioice.ice.Connection)):
            missing.append(f"aioice.ice.Connection no longer calls {ICE_HOST_ADDRESSES}")
    return missing


def _functions_of(cls) -> list:
    return [f for f in vars(cls).values() if inspect.isfunction(f)]
