"""SRT (Secure Reliable Transport), sans-IO: draft-sharabayko-srt, live mode,
interoperable with libsrt.

- `packets`: the packet codecs (`parse_packet`, `bytes(packet)`).
- `sequence`: 31-bit sequence and 32-bit timestamp arithmetic.
- `crypto`: key material messages, PBKDF2, AES key wrap, AES-CTR payloads.
"""
