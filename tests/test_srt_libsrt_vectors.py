"""Datagrams a real libsrt peer sent: ffmpeg 7 with libsrt 1.5.1 (Debian's
libsrt-gnutls) publishing to our listener with

    srt://127.0.0.1:19005?streamid=#!::r=live/cam1,m=publish&latency=200000&passphrase=ten chars or more

captured on the listener's socket. They pin our codecs to what libsrt
actually writes: the word-reversed stream ID, HSREQ, the KMREQ, and a data
packet encrypted with the even key."""

from livecenter.media.srt.crypto import SrtCryptoContext, parse_key_material
from livecenter.media.srt.packets import (
    SrtDataPacket,
    SrtFlag,
    SrtHandshake,
    SrtHandshakeExtensionType,
    SrtHandshakeType,
    SrtKeyFlag,
    SrtPacketPosition,
    parse_packet,
)

PASSPHRASE = "ten chars or more"
CONCLUSION = bytes.fromhex(
    "80000000000000000000753c00000000000000050000000776ba5fdc000005dc00002000ffffffff27254b747ebc7596"
    "0100007f0000000000000000000000000001000300010501000000bf00c800c8000500073a3a2123696c3d72632f6576"
    "2c316d6175703d6d73696c62000000680003000e1220290100000000020002000000040411dee96cc71b628963669fc4"
    "4bc42d8581900d4c447d462f05e50edb9b6e70b6cc301cf2f78392ae"
)
DATA = bytes.fromhex(
    "76ba5fdce800000100029f3d7ace80029186b5d22f956cc232ec0b93a87f3f13f83d1e07b5bb6b4c503619ecd0144335"
    "3641792eb2564239127c38e0b79d4a9cddea255fae0af95ecfe3048f67acaae25488d2bbf103d1dcc1700dfb8638bd2a"
    "6a992db435f35a727e3f9217ffc4626deccd08feb503bb3e63a0e42a77674c766278756c3646e5d929f83fa1f767187a"
    "84ff5e21379c5d2d330054651111127f5faa8786bcc360e7fc08c6691b822c6c840b6a235f9364b446dfbc4e5811ae7c"
    "eee8ddceb4cfc59d07c5e297ca51b4311405a7cf501e105feff06ff345391000ab5904b1b2bcc2f8388fd7abacdbb7d9"
    "7c2b0db01c1bbf7b7648d11852675724ca234549e3267df4f445d54a1ad0bc6891905ff90ca24a6da3c9ad5f5317cff9"
    "7b3ebc1f724b19e1560f41420c520ef4a3cd49cabec0fa1a43af1a3d5de795ee49f354f5218ea1ad18bb8a96b5aff142"
    "32aba2c482584b6eff6255512d440c3d6dcaeaaceec9d8169fba14eed13b8c534cfdfffddeac66f84b100cffecb6b0aa"
    "b6100c3513661a145dced1680d47ab57c8dcc95da780852d4f3a8ded1d127f0b82bf5c5bdf153ab67f383c1c1858ea2d"
    "ebfdf64a36da03222e531206c42496005a29c9eeae168bd39c2397eb0ae4d1d460ceba76b05581f48aecb38309999a58"
    "2b94deb1fb9fdd9107e08b957546293adb1170475cb1c1f0873278d876c55b0477d32d48a8d3b8efdd2d5bbeec17d289"
    "76fbf6547335dec6cb465c8f3b03718c3b095dd5e326daa78d6b7475887bdb8fca3e09ae7e824ed1cab5f6b9703fd0a1"
    "b5489a110828f6eb3b1fecb208ba29750d5f93e50524b3c93ff5ed1c1647d09762d61e6fc7d4e41d0ce665a08cf5ca33"
    "28938b279cbfdad204c21a9cfca6521b971ac83a6f01d4ddb6935fd936e80eb279d81d4cdbd4eeb9272f48ded00369e7"
    "a817eb253a004c1d05ecb8ba94495011a444b99bb6c4968c2f3546a81ac3b87bb0a3df51edae4e10e360302ef15a722b"
    "12b4a1e928e31b42b26bfe7d8d423ed25ec796fbc388d64e24950b2fd9f27d9f9ed0e2a1189cec77f91130d3ae1a763d"
    "8e372bc2d527b656e273de44cd73f21eaf29a8faf2bd9073265624a0522afdb1b9b73dffbf70395cf60b37dda82c8065"
    "c43ec89d15974411b0256844a0a883cef88cf0ca07b0c81293765f9176402825593ba9c74f90a0f6c2e132d70140cffb"
    "411ee8af5e423a1416e12f28aa172c1e04f782a752bd48fb36be12f3f591fa5774cf112b0c75b1306ee0181749d189fe"
    "91ff9d9190388cbbc41194567daa35f75d4235b99fc12d2669c24a935154cf9b33ffd15deb79b7acbf9899ef0fc44886"
    "e968bb3ed5236625e5916614a233cf2c75c4a0f58d2ac064d42136b01881e3ee713f0b4ebb6698394f85b0915d66cb83"
    "4d54b6721da95a60f92c3672dddbe8180db95b6ca2910ec3f85b4a38fa778a333bdef26e598c72ecac17133c7a1fb7ec"
    "5b61e96562389c251c62c87b0cf23f00161cb40bd6f43406105ba7f82e1af4bcfd40949485d9fa042a71821b43b3bd24"
    "7d7ded4aa4e82400e7c4ea84329e0da19e9cafbdc2f64fe4b38c928b070396d4d5b08028a283103dfd422680a899a00b"
    "6c7e55d3316676c7f8ed4023e644c2852817afbfb643402c4b9bad22ee10fc000eb4c160c7fc711877ea9f9ebca2e9c9"
    "3b3c5b6c182e4f388682484e84220b92101733d7a989ddbb574a728f5738fa9222b747f8877255dc8d4678adcf1d5f6e"
    "6c7b6bf7eda8fa692b5e429d9a9ad43b6f10374085930f151d6c6e6fa0fafd2b1bd76a1e2a38c80888aa596db486e235"
    "1fa35f9b4017d65d57b9dfbb54ce0c8f6bbbe925d97a863b929423c6c9b1f05609ba95c6"
)


def test_it_reads_libsrts_conclusion():
    handshake = parse_packet(CONCLUSION)
    assert isinstance(handshake, SrtHandshake)
    assert handshake.version == 5
    assert handshake.handshake_type == SrtHandshakeType.CONCLUSION
    assert handshake.dest_socket_id == 0
    assert handshake.extension_field == 0x7  # HSREQ | KMREQ | CONFIG
    assert handshake.encryption_field == 0  # libsrt leaves the key size to the KMREQ
    assert handshake.mtu_bytes == 1500 and handshake.flow_window_packets == 8192
    assert handshake.peer_ip[:4] == bytes([127, 0, 0, 1])
    assert handshake.stream_id == "#!::r=live/cam1,m=publish"
    assert handshake.hs_command == SrtHandshakeExtensionType.HSREQ
    assert handshake.hs.srt_version == 0x010501
    assert handshake.hs.flags == (
        SrtFlag.TSBPDSND
        | SrtFlag.TSBPDRCV
        | SrtFlag.CRYPT
        | SrtFlag.TLPKTDROP
        | SrtFlag.PERIODICNAK
        | SrtFlag.REXMITFLG
        | SrtFlag.PACKET_FILTER
    )
    assert (handshake.hs.receiver_delay_ms, handshake.hs.sender_delay_ms) == (200, 200)
    assert handshake.km_command == SrtHandshakeExtensionType.KMREQ
    # Our encoder writes back the very bytes libsrt sent.
    assert bytes(handshake) == CONCLUSION


def test_it_opens_libsrts_key_material_and_decrypts_its_payload():
    material = parse_key_material(parse_packet(CONCLUSION).km)
    assert material.keys == SrtKeyFlag.EVEN and material.key_bytes == 16
    context = SrtCryptoContext(PASSPHRASE)
    context.install(material)
    packet = parse_packet(DATA)
    assert isinstance(packet, SrtDataPacket)
    assert packet.key == SrtKeyFlag.EVEN
    assert packet.position == SrtPacketPosition.SINGLE and packet.in_order
    assert len(packet.payload) == 7 * 188
    clear = context.decrypt(packet.key, packet.seq, packet.payload)
    assert clear[::188] == b"\x47" * 7  # seven MPEG-TS packets
    assert clear[1:3] == b"\x40\x11"  # the first one starts the SDT, as ffmpeg writes it
    assert bytes(packet) == DATA
