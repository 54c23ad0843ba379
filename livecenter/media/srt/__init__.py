"""SRT (Secure Reliable Transport), sans-IO: draft-sharabayko-srt, live mode,
interoperable with libsrt.

- `packets`: the packet codecs (`parse_packet`, `bytes(packet)`).
- `sequence`: 31-bit sequence and 32-bit timestamp arithmetic.
- `listener`: `SrtListener`, every conversation on one UDP port: SYN-cookie
  handshakes, accept/reject on the stream ID, routing to connections.
- `caller`: `SrtCaller`, our own call to a listener (the caller side of
  the handshake), handing over to an `SrtConnection`.
- `connection`: `SrtConnection`, one connection, either side, receiving
  (ACK/NAK, TSBPD release, too-late drop) and sending (retransmission on
  NAK, drop of what is too old), keepalive, idle timeout.
- `events`: what they report.
- `crypto`: key material messages, PBKDF2, AES key wrap, AES-CTR payloads.
"""
