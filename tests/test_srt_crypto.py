"""SRT encryption: key material messages, PBKDF2, AES key wrap, AES-CTR.

The expected bytes below come from the OpenSSL 3 command line, not from
our code: `openssl kdf ... PBKDF2` over the salt's last 8 bytes, `openssl
enc -id-aes128-wrap -iv A6A6A6A6A6A6A6A6` and `openssl enc -aes-128-ctr`
with the IV laid out as libsrt's hcrypt_SetCtrIV does."""

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

from livecenter.media.srt.crypto import (
    SrtCipher,
    SrtCryptoContext,
    SrtDecryptionFailed,
    SrtKeyMaterial,
    SrtKmState,
    aes_ctr,
    ctr_iv,
    derive_kek,
    km_state_word,
    parse_key_material,
    parse_km_state,
    wrap_key_material,
)
from livecenter.media.srt.errors import SrtProtocolError
from livecenter.media.srt.packets import SrtKeyFlag

PASSPHRASE = "correct horse battery"
SALT = bytes(range(16))
SEK_128 = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
KEK_128 = bytes.fromhex("805BECC03C656E51B1A8E7D1B11EBFB3")
WRAPPED_128 = bytes.fromhex("2bf0c2ea6993e47e75551c0015ad0353a66b1cb4da7a9253")
SEK_256 = bytes(range(32))
KEK_256 = bytes.fromhex("805BECC03C656E51B1A8E7D1B11EBFB396EAB54E7E661C4240B9AC5A5F4800ED")
WRAPPED_256 = bytes.fromhex("7bae457ff62f387f35b933b5a9ba8ddfd3d8677c693a629f9d62fef62e261eb65a1523c4d8a7322a")


def test_it_wraps_keys_as_rfc_3394_does():
    # RFC 3394 4.1 and 4.6.
    kek = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
    data = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert aes_key_wrap(kek, data) == bytes.fromhex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
    kek = bytes(range(32))
    data = bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
    wrapped = bytes.fromhex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
    assert aes_key_wrap(kek, data) == wrapped
    assert aes_key_unwrap(kek, wrapped) == data


def test_it_derives_the_kek_from_the_salts_last_8_bytes():
    assert derive_kek(PASSPHRASE, SALT, 16) == KEK_128
    assert derive_kek(PASSPHRASE, SALT, 32) == KEK_256
    # The first 8 bytes of the salt do not matter to the KEK.
    assert derive_kek(PASSPHRASE, b"\xff" * 8 + SALT[8:], 16) == KEK_128


def test_it_builds_the_ctr_iv_from_salt_and_sequence_number():
    assert ctr_iv(SALT, 0x01020304) == bytes.fromhex("000102030405060708090b090f090000")
    assert ctr_iv(SALT, 0) == SALT[:14] + b"\x00\x00"


def test_it_decrypts_a_payload_openssl_encrypted():
    ciphertext = bytes.fromhex("f5f038e056ddf1a94a41a9790ca2f47633f20dee59a2f7d1537b57226ac72f7592c08de32df2527971f3ac")
    assert aes_ctr(SEK_128, SALT, 0x01020304, ciphertext) == b"SRT payload: 188 bytes of TS would go here."
    assert aes_ctr(SEK_256, SALT, 0, bytes.fromhex("4cefae654b7e6b54a5f71bc0477bd2c7cb")) == b"odd key, 256 bits"


def test_it_wraps_a_key_material_message_as_openssl_does():
    material = wrap_key_material(PASSPHRASE, even=SEK_128, odd=None, salt=SALT)
    assert material.wrapped == WRAPPED_128
    data = bytes(material)
    # 3.2.2: V=1 PT=2, sign 0x2029, KK=01, KEKI 0, cipher 2 (CTR), auth 0,
    # SE 2, resv, SLen/4 = 4, KLen/4 = 4, then the salt and the wrapped key.
    assert data[:16] == bytes.fromhex("12202901 00000000 02000200 00000404")
    assert data[16:32] == SALT
    assert data[32:] == WRAPPED_128
    assert parse_key_material(data) == material


def test_it_unwraps_a_256_bit_key_openssl_wrapped():
    context = SrtCryptoContext(PASSPHRASE)
    context.install(parse_key_material(bytes(SrtKeyMaterial(SrtKeyFlag.ODD, 32, SALT, WRAPPED_256))))
    assert context.odd == (SALT, SEK_256)
    assert context.even is None


@pytest.mark.parametrize("size", [16, 24, 32])
def test_it_installs_and_uses_both_keys_of_every_size(size):
    even, odd = bytes([1]) * size, bytes([2]) * size
    material = wrap_key_material(PASSPHRASE, even=even, odd=odd)
    assert material.keys == SrtKeyFlag.BOTH
    parsed = parse_key_material(bytes(material))
    context = SrtCryptoContext(PASSPHRASE)
    context.install(parsed)
    payload = b"\x47" * 1316
    assert context.decrypt(SrtKeyFlag.EVEN, 7, aes_ctr(even, material.salt, 7, payload)) == payload
    assert context.decrypt(SrtKeyFlag.ODD, 8, aes_ctr(odd, material.salt, 8, payload)) == payload
    assert context.decrypt(SrtKeyFlag.NONE, 8, payload) is None


def test_it_keeps_the_even_key_when_only_the_odd_one_is_refreshed():
    context = SrtCryptoContext(PASSPHRASE)
    context.install(wrap_key_material(PASSPHRASE, even=SEK_128, odd=None, salt=SALT))
    assert context.odd is None
    context.install(wrap_key_material(PASSPHRASE, even=None, odd=bytes(16)))
    assert context.even == (SALT, SEK_128)
    assert context.odd[1] == bytes(16)


def test_it_refuses_key_material_under_another_passphrase():
    context = SrtCryptoContext("another passphrase")
    with pytest.raises(SrtDecryptionFailed, match="^key material does not unwrap with our passphrase$"):
        context.install(wrap_key_material(PASSPHRASE, even=SEK_128, odd=None, salt=SALT))
    assert context.even is None


def test_it_writes_a_km_state_as_libsrt_does_on_x86():
    assert km_state_word(SrtKmState.BADSECRET) == b"\x04\x00\x00\x00"
    assert parse_km_state(b"\x03\x00\x00\x00") == SrtKmState.NOSECRET
    assert parse_km_state(b"\x00\x00\x00\x04") == SrtKmState.BADSECRET
    assert parse_km_state(b"\x07\x00\x00\x09") is None
    assert parse_km_state(bytes(wrap_key_material(PASSPHRASE, SEK_128, None))) is None


def test_it_refuses_a_key_that_is_not_16_24_or_32_bytes():
    with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
        wrap_key_material(PASSPHRASE, even=bytes(20), odd=None)
    with pytest.raises(ValueError):
        wrap_key_material(PASSPHRASE, even=bytes(16), odd=bytes(32))


def good_km() -> bytes:
    return bytes(SrtKeyMaterial(SrtKeyFlag.EVEN, 16, SALT, WRAPPED_128))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (good_km()[:15], "key material of 15 bytes is shorter than 16"),
        (b"\x13" + good_km()[1:], "key material has a wrong version, type or signature"),
        (good_km()[:1] + b"\x20\x28" + good_km()[3:], "key material has a wrong version, type or signature"),
        (good_km()[:3] + b"\x00" + good_km()[4:], "key material carries no key"),
        (good_km()[:8] + bytes([SrtCipher.AES_GCM]) + good_km()[9:], "key material cipher 4 is not AES-CTR (2)"),
        (good_km()[:15] + b"\x05" + good_km()[16:], "key material key of 20 bytes is not 16, 24 or 32"),
        (good_km()[:14] + b"\x02" + good_km()[15:], "key material salt of 8 bytes is not 16"),
        (good_km()[:-1], "key material of 55 bytes is shorter than 56"),
    ],
)
def test_it_names_what_is_wrong_with_key_material(data, reason):
    with pytest.raises(SrtProtocolError) as error:
        parse_key_material(data)
    assert error.value.reason == reason
