/* The fast path's native sender (issue 18): one call per viewer per frame
 * writes the viewer's RTP headers for the frame's packets (from the shared
 * history's payloads), SRTP-protects them (AES-GCM with OpenSSL, AES-CM with
 * the system libsrtp2) and sends them with one sendmmsg(2) on the viewer's
 * ICE socket.
 *
 * Built by `make native` (the Makefile; `setup` depends on it) into
 * livecenter/media/rts/; fastpath_native.py imports it, or falls back to the
 * pure-Python path (fastpath.py, srtp.py) when it is absent.
 *
 * Only the event loop's thread calls in: the GIL is held throughout (a
 * non-blocking sendmmsg of a frame is a few microseconds) and the batch
 * buffers are static.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <srtp2/srtp.h>
#include <string.h>
#include <strings.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, Linux 4.18 */
#endif

/* A packet's slot: header (fastpath.MAX_HEADER_BYTES), RTX OSN, payload
 * (fastpath.MAX_PAYLOAD_BYTES) and the SRTP trailer (SRTP_MAX_TRAILER_LEN). */
#define SLOT_BYTES 1536
#define MAX_RTP_BYTES (SLOT_BYTES - SRTP_MAX_TRAILER_LEN)
/* Packets protected and sent per sendmmsg; a longer frame takes several. */
#define BATCH_PACKETS 64
#define RTP_HEADER_BYTES 12

static unsigned char slots[BATCH_PACKETS][SLOT_BYTES] __attribute__((aligned(16)));
static struct mmsghdr messages[BATCH_PACKETS];
static struct iovec vectors[BATCH_PACKETS];

/* UDP GSO (UDP_SEGMENT, Linux 4.18): a run of a frame's packets of one
 * length (the H.264 packetiser splits a NAL unit into equal fragments, the
 * first ones a byte longer), optionally ended by one shorter packet, goes
 * as one message whose segment size is that length; the kernel cuts it
 * into the same datagrams, once, at the end of its output path (and on
 * loopback at the receiver, udp_rcv_segment, unless the receiving socket
 * asked for UDP_GRO). Off after the first refusal (EIO: no checksum
 * offload on the route's device; EINVAL: an old kernel, a socket without
 * UDP checksums; also one that surfaces at the socket's next send) and
 * with gso(False). */
#define GSO_MAX_BYTES 60000      /* a message's bytes: under IP's 65535 with headers */
#define GSO_MAX_SEGMENTS 64      /* UDP_MAX_SEGMENTS on Linux 4.18 to 6.x */
static int gso_enabled = 1;
static int message_first[BATCH_PACKETS + 1]; /* a message's first packet; [messages] = the batch's packets */
static union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
} controls[BATCH_PACKETS];

static PyObject *name_payload, *name_timestamp, *name_marker;

static const char *srtp_status_name(srtp_err_status_t status) {
    switch (status) {
    case srtp_err_status_bad_param: return "bad_param";
    case srtp_err_status_alloc_fail: return "alloc_fail";
    case srtp_err_status_init_fail: return "init_fail";
    case srtp_err_status_cipher_fail: return "cipher_fail";
    case srtp_err_status_auth_fail: return "auth_fail";
    case srtp_err_status_replay_fail: return "replay_fail";
    case srtp_err_status_replay_old: return "replay_old";
    case srtp_err_status_no_ctx: return "no_ctx";
    case srtp_err_status_key_expired: return "key_expired";
    default: return "error";
    }
}

/* --- Srtp: one session for any outbound SSRC, repeats allowed --------------
 *
 * AEAD_AES_128_GCM and AEAD_AES_256_GCM (RFC 7714) with OpenSSL's AES-GCM,
 * one cipher context whose key schedule is made once: Debian's libsrtp2 does
 * its GCM through NSS, which sets up a PKCS #11 context per packet (about
 * a microsecond a packet more at a thousand viewers). AES_CM_128_HMAC_SHA1_80
 * (and anything else) through the system libsrtp2.
 *
 * The GCM is OpenSSL's provider implementation (the one EVP_CIPHER_fetch
 * picks), called through its dispatch table rather than through EVP: per
 * packet, OpenSSL 3.0's EVP_EncryptInit_ex asks the provider for the IV
 * length with an OSSL_PARAM lookup and EVP_CIPHER_CTX_ctrl builds another
 * for the tag: ~90 ns of a 1,200-byte packet's ~400, ~75 of a 100-byte
 * (Opus) packet's ~235 (bench/README.md, "bench/rts: SRTP AES-GCM per
 * packet").
 * The same functions run under EVP: the key schedule, the IV set, the AAD,
 * the stitched AES-NI/CLMUL encryption, the tag. */

#define GCM_SALT_BYTES 12
#define GCM_TAG_BYTES 16
#define MAX_SSRCS 8 /* srtp.MAX_SSRCS_PER_PROTECTOR: a viewer's media and RTX SSRCs of its bundle */
#define HALF_SEQ 0x8000

typedef struct {
    uint32_t ssrc;
    uint32_t roc;
    uint16_t highest;
} Rollover;

/* A provider's AES-GCM, resolved once at import (gcm_resolve). */
typedef struct {
    EVP_CIPHER *cipher; /* the fetched cipher: holds its provider loaded */
    void *provider_context;
    OSSL_FUNC_cipher_newctx_fn *newctx;
    OSSL_FUNC_cipher_freectx_fn *freectx;
    OSSL_FUNC_cipher_encrypt_init_fn *encrypt_init;
    OSSL_FUNC_cipher_update_fn *update;
    OSSL_FUNC_cipher_final_fn *final;
    OSSL_FUNC_cipher_get_ctx_params_fn *get_ctx_params;
} GcmCipher;

static GcmCipher aes_128_gcm, aes_256_gcm;

typedef struct {
    PyObject_HEAD
    srtp_t session;           /* libsrtp2, or NULL */
    void *gcm;                /* the provider's AES-GCM context, or NULL */
    const GcmCipher *cipher;  /* gcm's functions */
    unsigned char salt[GCM_SALT_BYTES];
    Rollover rollovers[MAX_SSRCS];
    int ssrcs;
} SrtpObject;

/* RFC 3711 3.3.1 as the sender sees it (srtp._RolloverCounters, libsrtp's
 * estimate): a sequence number far below the highest sent is the next
 * cycle, one far above it a packet of the previous cycle sent again. */
static int rollover_of(SrtpObject *self, uint32_t ssrc, uint16_t seq, uint32_t *roc) {
    Rollover *state = NULL;
    for (int i = 0; i < self->ssrcs; i++)
        if (self->rollovers[i].ssrc == ssrc)
            state = &self->rollovers[i];
    if (state == NULL) {
        if (self->ssrcs == MAX_SSRCS) {
            PyErr_Format(PyExc_ValueError, "more than %d SSRCs in one SRTP session", MAX_SSRCS);
            return -1;
        }
        state = &self->rollovers[self->ssrcs++];
        state->ssrc = ssrc;
        state->roc = 0;
        state->highest = seq;
        *roc = 0;
        return 0;
    }
    if (seq > state->highest) {
        if (seq - state->highest > HALF_SEQ) {
            *roc = state->roc - 1; /* an old packet again */
            return 0;
        }
        state->highest = seq;
    } else if (state->highest - seq > HALF_SEQ) {
        state->roc += 1;
        state->highest = seq;
    }
    *roc = state->roc;
    return 0;
}

/* RFC 7714 8: the header is the associated data, the payload is encrypted
 * in place and the 16-byte tag follows it; IV = (0x0000 || SSRC || ROC ||
 * SEQ) XOR the session salt. */
static int gcm_protect(SrtpObject *self, unsigned char *packet, int *length) {
    int header = RTP_HEADER_BYTES + 4 * (packet[0] & 0x0F);
    if ((packet[0] >> 6) != 2 || header > *length) {
        PyErr_SetString(PyExc_ValueError, "not an RTP version 2 packet");
        return -1;
    }
    if (packet[0] & 0x10) {
        if (header + 4 > *length) {
            PyErr_SetString(PyExc_ValueError, "RTP header extension runs past the packet");
            return -1;
        }
        header += 4 + 4 * ((packet[header + 2] << 8) | packet[header + 3]);
        if (header > *length) {
            PyErr_SetString(PyExc_ValueError, "RTP header runs past the packet");
            return -1;
        }
    }
    uint16_t seq = (uint16_t)((packet[2] << 8) | packet[3]);
    uint32_t ssrc = ((uint32_t)packet[8] << 24) | ((uint32_t)packet[9] << 16) | ((uint32_t)packet[10] << 8) | packet[11];
    uint32_t roc;
    if (rollover_of(self, ssrc, seq, &roc) < 0)
        return -1;
    unsigned char iv[GCM_SALT_BYTES] = {0, 0,
                                        (unsigned char)(ssrc >> 24), (unsigned char)(ssrc >> 16),
                                        (unsigned char)(ssrc >> 8), (unsigned char)ssrc,
                                        (unsigned char)(roc >> 24), (unsigned char)(roc >> 16),
                                        (unsigned char)(roc >> 8), (unsigned char)roc,
                                        (unsigned char)(seq >> 8), (unsigned char)seq};
    for (int i = 0; i < GCM_SALT_BYTES; i++)
        iv[i] ^= self->salt[i];
    size_t out, payload = (size_t)(*length - header);
    OSSL_PARAM tag[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, packet + *length, GCM_TAG_BYTES),
        OSSL_PARAM_construct_end(),
    };
    const GcmCipher *cipher = self->cipher;
    void *ctx = self->gcm;
    /* The key stays; a new IV starts the next message. An update's output
     * size must cover its input, the AAD's too (which writes nothing). */
    if (cipher->encrypt_init(ctx, NULL, 0, iv, GCM_SALT_BYTES, NULL) != 1 ||
        cipher->update(ctx, NULL, &out, (size_t)header, packet, (size_t)header) != 1 ||
        (payload > 0 && cipher->update(ctx, packet + header, &out, payload, packet + header, payload) != 1) ||
        cipher->final(ctx, packet + *length, &out, GCM_TAG_BYTES) != 1 ||
        cipher->get_ctx_params(ctx, tag) != 1) {
        PyErr_SetString(PyExc_ValueError, "OpenSSL's AES-GCM failed");
        return -1;
    }
    *length += GCM_TAG_BYTES;
    return 0;
}

/* RFC 3711 4.3.1 with r = 0 (DTLS-SRTP): the session key or salt for
 * `label` is AES-CM keystream under the master key from IV ((salt padded
 * to 14 bytes) XOR (label << 48)) * 2^16. */
static int derive(const unsigned char *master_key, int key_bytes, const unsigned char *master_salt, int salt_bytes,
                  int label, unsigned char *out, int out_bytes) {
    unsigned char iv[16] = {0};
    memcpy(iv, master_salt, salt_bytes);
    iv[7] ^= (unsigned char)label;
    unsigned char zeros[32] = {0};
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ok = ctx != NULL &&
             EVP_EncryptInit_ex(ctx, key_bytes == 32 ? EVP_aes_256_ctr() : EVP_aes_128_ctr(), NULL, master_key, iv) == 1 &&
             EVP_EncryptUpdate(ctx, out, &out_bytes, zeros, out_bytes) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* Whether the colon-separated `names` of a provider's algorithm include `name`. */
static int names_include(const char *names, const char *name) {
    size_t length = strlen(name);
    for (const char *at = names; at != NULL; at = strchr(at, ':')) {
        if (*at == ':')
            at++;
        if (strncasecmp(at, name, length) == 0 && (at[length] == ':' || at[length] == '\0'))
            return 1;
    }
    return 0;
}

/* The functions of the AES-GCM implementation that EVP_CIPHER_fetch picks
 * for `name`, from its provider's table of ciphers (a provider has one
 * implementation of a name: OpenSSL's default and FIPS providers do). */
static int gcm_resolve(GcmCipher *cipher, const char *name) {
    cipher->cipher = EVP_CIPHER_fetch(NULL, name, NULL);
    if (cipher->cipher == NULL)
        return -1;
    const OSSL_PROVIDER *provider = EVP_CIPHER_get0_provider(cipher->cipher);
    int no_store = 0;
    const OSSL_ALGORITHM *algorithms = OSSL_PROVIDER_query_operation(provider, OSSL_OP_CIPHER, &no_store);
    for (const OSSL_ALGORITHM *algorithm = algorithms; algorithm != NULL && algorithm->algorithm_names != NULL;
         algorithm++) {
        if (!names_include(algorithm->algorithm_names, name))
            continue;
        for (const OSSL_DISPATCH *function = algorithm->implementation; function->function_id != 0; function++) {
            switch (function->function_id) {
            case OSSL_FUNC_CIPHER_NEWCTX: cipher->newctx = OSSL_FUNC_cipher_newctx(function); break;
            case OSSL_FUNC_CIPHER_FREECTX: cipher->freectx = OSSL_FUNC_cipher_freectx(function); break;
            case OSSL_FUNC_CIPHER_ENCRYPT_INIT: cipher->encrypt_init = OSSL_FUNC_cipher_encrypt_init(function); break;
            case OSSL_FUNC_CIPHER_UPDATE: cipher->update = OSSL_FUNC_cipher_update(function); break;
            case OSSL_FUNC_CIPHER_FINAL: cipher->final = OSSL_FUNC_cipher_final(function); break;
            case OSSL_FUNC_CIPHER_GET_CTX_PARAMS:
                cipher->get_ctx_params = OSSL_FUNC_cipher_get_ctx_params(function);
                break;
            }
        }
        break;
    }
    if (algorithms != NULL)
        OSSL_PROVIDER_unquery_operation(provider, OSSL_OP_CIPHER, algorithms);
    cipher->provider_context = OSSL_PROVIDER_get0_provider_ctx(provider);
    return cipher->newctx != NULL && cipher->freectx != NULL && cipher->encrypt_init != NULL &&
                   cipher->update != NULL && cipher->final != NULL && cipher->get_ctx_params != NULL
               ? 0
               : -1;
}

static int gcm_init(SrtpObject *self, int profile, const unsigned char *material, Py_ssize_t length) {
    int key_bytes = profile == srtp_profile_aead_aes_256_gcm ? 32 : 16;
    if (length != key_bytes + GCM_SALT_BYTES) {
        PyErr_Format(PyExc_ValueError, "profile %d takes %d bytes of key and salt", profile, key_bytes + GCM_SALT_BYTES);
        return -1;
    }
    unsigned char key[32];
    if (derive(material, key_bytes, material + key_bytes, GCM_SALT_BYTES, 0x00, key, key_bytes) < 0 ||
        derive(material, key_bytes, material + key_bytes, GCM_SALT_BYTES, 0x02, self->salt, GCM_SALT_BYTES) < 0) {
        PyErr_SetString(PyExc_ValueError, "SRTP key derivation failed");
        return -1;
    }
    self->cipher = key_bytes == 32 ? &aes_256_gcm : &aes_128_gcm;
    self->gcm = self->cipher->newctx(self->cipher->provider_context);
    int ok = self->gcm != NULL && self->cipher->encrypt_init(self->gcm, key, (size_t)key_bytes, NULL, 0, NULL) == 1;
    memset(key, 0, sizeof key);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "OpenSSL's AES-GCM could not be set up");
        return -1;
    }
    return 0;
}

static int protect_in_place(SrtpObject *self, unsigned char *packet, int *length) {
    if (self->gcm != NULL)
        return gcm_protect(self, packet, length);
    srtp_err_status_t status = srtp_protect(self->session, packet, length);
    if (status != srtp_err_status_ok) {
        PyErr_Format(PyExc_ValueError, "libsrtp refused the packet (%s)", srtp_status_name(status));
        return -1;
    }
    return 0;
}

static int Srtp_init(SrtpObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"profile", "key_and_salt", "window_size", NULL};
    int profile;
    Py_buffer key;
    unsigned long window_size = 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iy*|k", keywords, &profile, &key, &window_size))
        return -1;
    if (self->session != NULL || self->gcm != NULL) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_RuntimeError, "Srtp is already initialised");
        return -1;
    }
    if (profile == srtp_profile_aead_aes_128_gcm || profile == srtp_profile_aead_aes_256_gcm) {
        int status = gcm_init(self, profile, key.buf, key.len);
        PyBuffer_Release(&key);
        return status;
    }
    srtp_policy_t policy;
    memset(&policy, 0, sizeof policy);
    if (srtp_crypto_policy_set_from_profile_for_rtp(&policy.rtp, (srtp_profile_t)profile) != srtp_err_status_ok ||
        srtp_crypto_policy_set_from_profile_for_rtcp(&policy.rtcp, (srtp_profile_t)profile) != srtp_err_status_ok) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "unknown libsrtp profile %d", profile);
        return -1;
    }
    Py_ssize_t expected = srtp_profile_get_master_key_length((srtp_profile_t)profile) +
                          srtp_profile_get_master_salt_length((srtp_profile_t)profile);
    if (key.len != expected) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "profile %d takes %zd bytes of key and salt", profile, expected);
        return -1;
    }
    unsigned char material[64];
    memcpy(material, key.buf, key.len);
    PyBuffer_Release(&key);
    policy.ssrc.type = ssrc_any_outbound;
    policy.key = material;
    policy.window_size = window_size;
    policy.allow_repeat_tx = 1;
    srtp_err_status_t status = srtp_create(&self->session, &policy);
    memset(material, 0, sizeof material);
    if (status != srtp_err_status_ok) {
        self->session = NULL;
        PyErr_Format(PyExc_ValueError, "srtp_create failed (%s)", srtp_status_name(status));
        return -1;
    }
    return 0;
}

static void Srtp_dealloc(SrtpObject *self) {
    if (self->session != NULL)
        srtp_dealloc(self->session);
    if (self->gcm != NULL)
        self->cipher->freectx(self->gcm);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_session(SrtpObject *self) {
    if (self->session == NULL && self->gcm == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Srtp is not initialised");
        return -1;
    }
    return 0;
}

static PyObject *Srtp_protect(SrtpObject *self, PyObject *arg) {
    if (check_session(self) < 0)
        return NULL;
    Py_buffer packet;
    if (PyObject_GetBuffer(arg, &packet, PyBUF_SIMPLE) < 0)
        return NULL;
    if (packet.len < RTP_HEADER_BYTES || packet.len > MAX_RTP_BYTES) {
        Py_ssize_t length = packet.len;
        PyBuffer_Release(&packet);
        PyErr_Format(PyExc_ValueError, "RTP packet of %zd bytes is outside %d..%d", length, RTP_HEADER_BYTES,
                     MAX_RTP_BYTES);
        return NULL;
    }
    unsigned char *slot = slots[0];
    memcpy(slot, packet.buf, packet.len);
    int length = (int)packet.len;
    PyBuffer_Release(&packet);
    if (protect_in_place(self, slot, &length) < 0)
        return NULL;
    return PyBytes_FromStringAndSize((const char *)slot, length);
}

static PyMethodDef Srtp_methods[] = {
    {"protect", (PyCFunction)Srtp_protect, METH_O, "protect(rtp_packet) -> srtp_packet"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SrtpType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "livecenter.media.rts._rtssend.Srtp",
    .tp_basicsize = sizeof(SrtpObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Srtp(profile, key_and_salt, window_size=1024): an SRTP session for any outbound SSRC",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Srtp_init,
    .tp_dealloc = (destructor)Srtp_dealloc,
    .tp_methods = Srtp_methods,
};

/* --- sockaddr(host, port) -> bytes ----------------------------------------- */

static PyObject *sockaddr_of(PyObject *module, PyObject *args) {
    const char *host;
    int port;
    if (!PyArg_ParseTuple(args, "si", &host, &port))
        return NULL;
    if (port < 0 || port > 65535)
        return PyErr_Format(PyExc_ValueError, "port %d is not 0..65535", port);
    struct sockaddr_in v4;
    memset(&v4, 0, sizeof v4);
    if (inet_pton(AF_INET, host, &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        v4.sin_port = htons((uint16_t)port);
        return PyBytes_FromStringAndSize((const char *)&v4, sizeof v4);
    }
    struct sockaddr_in6 v6;
    memset(&v6, 0, sizeof v6);
    if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1) {
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons((uint16_t)port);
        return PyBytes_FromStringAndSize((const char *)&v6, sizeof v6);
    }
    return PyErr_Format(PyExc_ValueError, "host %R is not a numeric IPv4 or IPv6 address", PyTuple_GET_ITEM(args, 0));
}

/* --- send_frame ------------------------------------------------------------- */

/* A history packet's fields, read once per call (not once per viewer). */
typedef struct {
    PyObject *payload; /* bytes, a new reference */
    uint32_t timestamp;
    int marker;
} Fields;

static void release_fields(Fields *fields, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++)
        Py_XDECREF(fields[i].payload);
    PyMem_Free(fields);
}

/* The fields of each of `packets` (a list of fastpath.HistoryPacket), or
 * NULL with an exception set. */
static Fields *read_fields(PyObject *packets, Py_ssize_t header_bytes) {
    Py_ssize_t total = PyList_GET_SIZE(packets);
    Fields *fields = PyMem_Calloc(total > 0 ? (size_t)total : 1, sizeof(Fields));
    if (fields == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < total; i++) {
        PyObject *packet = PyList_GET_ITEM(packets, i);
        PyObject *payload = PyObject_GetAttr(packet, name_payload);
        if (payload == NULL)
            goto fail;
        fields[i].payload = payload;
        if (!PyBytes_Check(payload)) {
            PyErr_SetString(PyExc_TypeError, "a history packet's payload must be bytes");
            goto fail;
        }
        if (header_bytes + PyBytes_GET_SIZE(payload) > MAX_RTP_BYTES) {
            PyErr_Format(PyExc_ValueError, "RTP packet of %zd bytes is over %d",
                         header_bytes + PyBytes_GET_SIZE(payload), MAX_RTP_BYTES);
            goto fail;
        }
        PyObject *timestamp_object = PyObject_GetAttr(packet, name_timestamp);
        if (timestamp_object == NULL)
            goto fail;
        fields[i].timestamp = (uint32_t)PyLong_AsUnsignedLongMask(timestamp_object);
        Py_DECREF(timestamp_object);
        PyObject *marker_object = PyObject_GetAttr(packet, name_marker);
        fields[i].marker = marker_object == NULL ? -1 : PyObject_IsTrue(marker_object);
        Py_XDECREF(marker_object);
        if (fields[i].marker < 0 || PyErr_Occurred())
            goto fail;
    }
    return fields;
fail:
    release_fields(fields, total);
    return NULL;
}

/* Write one packet's header and payload into `slot`: the template's constant
 * bytes, then marker|payload type, sequence number, timestamp and the 24-bit
 * abs-send-time (after its id/length byte at abs_offset), as
 * fastpath.RtpWriter.write does. Returns the RTP length. */
static int write_packet(unsigned char *slot, const unsigned char *template, Py_ssize_t header_bytes,
                        Py_ssize_t abs_offset, int payload_type, unsigned sequence_number, uint32_t offset,
                        uint32_t abs_send_time, const Fields *packet) {
    Py_ssize_t payload_bytes = PyBytes_GET_SIZE(packet->payload);
    memcpy(slot, template, header_bytes);
    slot[1] = (unsigned char)(payload_type | (packet->marker ? 0x80 : 0));
    slot[2] = (unsigned char)(sequence_number >> 8);
    slot[3] = (unsigned char)sequence_number;
    uint32_t timestamp = packet->timestamp + offset;
    slot[4] = (unsigned char)(timestamp >> 24);
    slot[5] = (unsigned char)(timestamp >> 16);
    slot[6] = (unsigned char)(timestamp >> 8);
    slot[7] = (unsigned char)timestamp;
    if (abs_offset >= 0) {
        slot[abs_offset + 1] = (unsigned char)(abs_send_time >> 16);
        slot[abs_offset + 2] = (unsigned char)(abs_send_time >> 8);
        slot[abs_offset + 3] = (unsigned char)abs_send_time;
    }
    memcpy(slot + header_bytes, PyBytes_AS_STRING(packet->payload), payload_bytes);
    return (int)(header_bytes + payload_bytes);
}

/* Send messages[first:count] with sendmmsg; a message the kernel refuses for
 * another reason than a full buffer is dropped (as asyncio's sendto drops it,
 * reporting it to the protocol). Returns the index of the first message not
 * sent (count when all went: EAGAIN stops it early), or -1 with an exception
 * set on EBADF/ENOTSOCK/EINVAL/EFAULT (the caller's fd or address is wrong);
 * -2 - i when message i was refused as GSO may be (while it is on). */
static int send_messages(int fd, int first, int count, int *dropped) {
    while (first < count) {
        int sent = sendmmsg(fd, messages + first, (unsigned)(count - first), MSG_DONTWAIT);
        if (sent > 0) {
            first += sent;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return first;
        /* A GSO message refused (sendmmsg(2) loses the error of a message
         * after others went; the call again from it gets it back). A plain
         * message's EINVAL is its address's, not GSO's: GSO stays on for
         * every other viewer. */
        if (gso_enabled && messages[first].msg_hdr.msg_iovlen > 1 &&
            (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT))
            return -2 - first; /* send_batch: GSO off, then again */
        if (errno == EBADF || errno == ENOTSOCK || errno == EINVAL || errno == EFAULT || errno == EAFNOSUPPORT ||
            errno == EDESTADDRREQ) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        first += 1; /* ECONNREFUSED, ENOBUFS, EHOSTUNREACH ...: this packet is lost */
        *dropped += 1;
    }
    return count;
}

/* Group vectors[0:count] into messages (GSO runs when gso_enabled, else
 * one a packet); returns how many. */
static int make_messages(char *name, socklen_t name_bytes, int start, int count) {
    int used = 0;
    for (int i = start; i < count; used++) {
        size_t size = vectors[i].iov_len;
        int end = i + 1;
        if (gso_enabled) {
            size_t bytes = size;
            /* equal lengths, then at most one shorter packet */
            while (end < count && end - i < GSO_MAX_SEGMENTS && bytes + vectors[end].iov_len <= GSO_MAX_BYTES &&
                   vectors[end].iov_len <= size) {
                bytes += vectors[end].iov_len;
                end++;
                if (vectors[end - 1].iov_len < size)
                    break;
            }
        }
        struct msghdr *header = &messages[used].msg_hdr;
        memset(&messages[used], 0, sizeof messages[used]);
        header->msg_name = name;
        header->msg_namelen = name_bytes;
        header->msg_iov = &vectors[i];
        header->msg_iovlen = (size_t)(end - i);
        if (end - i > 1) {
            header->msg_control = controls[used].buf;
            header->msg_controllen = sizeof controls[used].buf;
            struct cmsghdr *control = CMSG_FIRSTHDR(header);
            control->cmsg_level = SOL_UDP;
            control->cmsg_type = UDP_SEGMENT;
            control->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t segment = (uint16_t)size;
            memcpy(CMSG_DATA(control), &segment, sizeof segment);
        }
        message_first[used] = i;
        i = end;
    }
    message_first[used] = count;
    return used;
}

/* Send vectors[0:count]; returns the index of the first packet not sent
 * (count when all went), or -1 with an exception set (send_messages). A GSO
 * message the kernel refuses turns GSO off and the batch goes again, one
 * message a packet. */
static int send_batch(int fd, char *name, socklen_t name_bytes, int count, int *dropped) {
    int used = make_messages(name, name_bytes, 0, count);
    int first = send_messages(fd, 0, used, dropped);
    if (first <= -2) { /* message -first-2 was refused as GSO: the rest again without */
        gso_enabled = 0;
        int start = message_first[-first - 2];
        used = make_messages(name, name_bytes, start, count);
        first = send_messages(fd, 0, used, dropped);
    }
    return first < 0 ? -1 : message_first[first];
}

static PyObject *gso(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "gso([enabled]) -> whether frames go as UDP GSO messages");
        return NULL;
    }
    if (nargs == 1) {
        int enabled = PyObject_IsTrue(args[0]);
        if (enabled < 0)
            return NULL;
        gso_enabled = enabled;
    }
    return PyBool_FromLong(gso_enabled);
}

/* One viewer's header: what send_frame takes as arguments and a Group entry keeps. */
typedef struct {
    unsigned char bytes[64];
    Py_ssize_t header_bytes;
    Py_ssize_t abs_offset;
    int payload_type;
} Header;

/* Header from (template, header_bytes, abs_offset, payload_type), or -1. */
static int read_header(Header *header, PyObject *template_object, PyObject *header_bytes_object,
                       PyObject *abs_offset_object, PyObject *payload_type_object) {
    header->header_bytes = PyLong_AsSsize_t(header_bytes_object);
    header->abs_offset = PyLong_AsSsize_t(abs_offset_object);
    long payload_type = PyLong_AsLong(payload_type_object);
    if (PyErr_Occurred())
        return -1;
    if (payload_type < 0 || payload_type > 127) {
        PyErr_SetString(PyExc_ValueError, "payload_type must be 0..127");
        return -1;
    }
    header->payload_type = (int)payload_type;
    Py_buffer template;
    if (PyObject_GetBuffer(template_object, &template, PyBUF_SIMPLE) < 0)
        return -1;
    if (header->header_bytes < RTP_HEADER_BYTES || header->header_bytes > template.len ||
        header->header_bytes > (Py_ssize_t)sizeof header->bytes || header->abs_offset + 4 > header->header_bytes) {
        PyBuffer_Release(&template);
        PyErr_SetString(PyExc_ValueError, "header_bytes or abs_offset is outside the template");
        return -1;
    }
    memcpy(header->bytes, template.buf, header->header_bytes);
    PyBuffer_Release(&template);
    return 0;
}

/* Write, protect and send `total` packets for one viewer, sequence numbers
 * from `sequence_number`, with one sendmmsg per BATCH_PACKETS. Returns 0
 * with *unsent NULL (all sent) or a list of the protected packets the
 * kernel would not take (EAGAIN: the caller buffers them), or -1 with an
 * exception set (nothing more sent). */
static int send_packets(SrtpObject *srtp, int fd, char *name, socklen_t name_bytes, const Header *header,
                        unsigned sequence_number, uint32_t offset, uint32_t abs_send_time, const Fields *fields,
                        Py_ssize_t total, PyObject **unsent) {
    int dropped = 0;
    *unsent = NULL;
    for (Py_ssize_t done = 0; done < total;) {
        int count = 0;
        for (; count < BATCH_PACKETS && done + count < total; count++) {
            unsigned char *slot = slots[count];
            int length = write_packet(slot, header->bytes, header->header_bytes, header->abs_offset,
                                      header->payload_type, (unsigned)((sequence_number + done + count) & 0xFFFF),
                                      offset, abs_send_time, &fields[done + count]);
            if (protect_in_place(srtp, slot, &length) < 0)
                goto fail;
            vectors[count].iov_base = slot;
            vectors[count].iov_len = (size_t)length;
        }
        int first = count;
        if (*unsent == NULL) {
            int sent = send_batch(fd, name, name_bytes, count, &dropped);
            if (sent < 0)
                goto fail;
            first = sent;
        }
        if (first < count && *unsent == NULL) {
            *unsent = PyList_New(0);
            if (*unsent == NULL)
                goto fail;
        }
        /* The kernel's buffer is full: the rest (protected: their SRTP
         * indexes are used) go back to the caller, for asyncio's buffer. */
        for (int i = first; i < count; i++) {
            PyObject *data = PyBytes_FromStringAndSize((const char *)slots[i], (Py_ssize_t)vectors[i].iov_len);
            if (data == NULL || PyList_Append(*unsent, data) < 0) {
                Py_XDECREF(data);
                goto fail;
            }
            Py_DECREF(data);
        }
        done += count;
    }
    return 0;
fail:
    Py_CLEAR(*unsent);
    return -1;
}

/* An argument that must be an initialised Srtp, or NULL (exception set). */
static SrtpObject *session_arg(PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &SrtpType)) {
        PyErr_SetString(PyExc_TypeError, "srtp must be an Srtp");
        return NULL;
    }
    return check_session((SrtpObject *)arg) < 0 ? NULL : (SrtpObject *)arg;
}

/* An argument that must be an open file descriptor's number, or -1 (exception set). */
static int fd_arg(PyObject *arg) {
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "fd must be an open file descriptor");
        return -1;
    }
    return (int)fd;
}

static PyObject *send_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError,
                        "send_frame(srtp, fd, sockaddr, template, header_bytes, abs_offset, payload_type, "
                        "sequence_number, timestamp_offset, abs_send_time, packets)");
        return NULL;
    }
    SrtpObject *srtp = session_arg(args[0]);
    int fd = srtp == NULL ? -1 : fd_arg(args[1]);
    if (fd < 0)
        return NULL;
    unsigned long sequence_number = PyLong_AsUnsignedLongMask(args[7]);
    uint32_t offset = (uint32_t)PyLong_AsUnsignedLongMask(args[8]);
    uint32_t abs_send_time = (uint32_t)PyLong_AsUnsignedLongMask(args[9]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyBytes_Check(args[2]) || !PyList_Check(args[10])) {
        PyErr_SetString(PyExc_TypeError, "sockaddr must be bytes and packets a list");
        return NULL;
    }
    Header header;
    if (read_header(&header, args[3], args[4], args[5], args[6]) < 0)
        return NULL;
    PyObject *packets = args[10];
    Py_ssize_t total = PyList_GET_SIZE(packets);
    Fields *fields = read_fields(packets, header.header_bytes);
    if (fields == NULL)
        return NULL;
    PyObject *unsent;
    int status = send_packets(srtp, fd, PyBytes_AS_STRING(args[2]), (socklen_t)PyBytes_GET_SIZE(args[2]),
                              &header, (unsigned)sequence_number, offset, abs_send_time, fields, total, &unsent);
    release_fields(fields, total);
    if (status < 0)
        return NULL;
    if (unsent == NULL)
        Py_RETURN_NONE;
    return unsent;
}

/* --- Group: one call per frame for all of a track's viewers (step 5) ------
 *
 * An entry per viewer: its SRTP session, its own duplicate of its ICE
 * socket's fd (so that a socket closed before the entry is removed can
 * never be confused with another that reuses its number), the peer's
 * address, its header template, payload type, the next sequence number and
 * its timestamp offset. `send(packets, abs_send_time)` sends the packets to
 * every entry, each entry's sequence numbers following on; the caller
 * (fanout.py) keeps the writers' bookkeeping from the group's count. */

typedef struct {
    int used;
    SrtpObject *srtp; /* a strong reference while used */
    int fd;           /* a dup, closed on removal */
    struct sockaddr_storage address;
    socklen_t address_bytes;
    Header header;
    uint16_t sequence_number; /* the next packet's */
    uint32_t offset;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *entries;
    Py_ssize_t capacity; /* entries allocated */
    Py_ssize_t high;     /* entries[high:] are all unused */
    Py_ssize_t count;    /* entries used */
} GroupObject;

static void clear_entry(Entry *entry) {
    if (!entry->used)
        return;
    entry->used = 0;
    if (entry->fd >= 0)
        close(entry->fd);
    entry->fd = -1;
    Py_CLEAR(entry->srtp);
}

static void Group_dealloc(GroupObject *self) {
    for (Py_ssize_t i = 0; i < self->high; i++)
        clear_entry(&self->entries[i]);
    PyMem_Free(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t Group_length(GroupObject *self) { return self->count; }

static PyObject *Group_add(GroupObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "add(srtp, fd, sockaddr, template, header_bytes, abs_offset, payload_type, "
                        "sequence_number, timestamp_offset) -> slot");
        return NULL;
    }
    int fd = session_arg(args[0]) == NULL ? -1 : fd_arg(args[1]);
    if (fd < 0)
        return NULL;
    unsigned long sequence_number = PyLong_AsUnsignedLongMask(args[7]);
    uint32_t offset = (uint32_t)PyLong_AsUnsignedLongMask(args[8]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyBytes_Check(args[2]) || PyBytes_GET_SIZE(args[2]) > (Py_ssize_t)sizeof(struct sockaddr_storage)) {
        PyErr_SetString(PyExc_TypeError, "sockaddr must be the bytes of a struct sockaddr (sockaddr()), or b''");
        return NULL;
    }
    Header header;
    if (read_header(&header, args[3], args[4], args[5], args[6]) < 0)
        return NULL;
    Py_ssize_t slot = 0;
    while (slot < self->high && self->entries[slot].used)
        slot++;
    if (slot == self->capacity) {
        Py_ssize_t capacity = self->capacity ? self->capacity * 2 : 64;
        Entry *entries = PyMem_Realloc(self->entries, (size_t)capacity * sizeof(Entry));
        if (entries == NULL)
            return PyErr_NoMemory();
        memset(entries + self->capacity, 0, (size_t)(capacity - self->capacity) * sizeof(Entry));
        self->entries = entries;
        self->capacity = capacity;
    }
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Entry *entry = &self->entries[slot];
    memset(entry, 0, sizeof *entry);
    entry->used = 1;
    entry->fd = copy;
    Py_INCREF(args[0]);
    entry->srtp = (SrtpObject *)args[0];
    memcpy(&entry->address, PyBytes_AS_STRING(args[2]), (size_t)PyBytes_GET_SIZE(args[2]));
    entry->address_bytes = (socklen_t)PyBytes_GET_SIZE(args[2]);
    entry->header = header;
    entry->sequence_number = (uint16_t)sequence_number;
    entry->offset = offset;
    if (slot == self->high)
        self->high++;
    self->count++;
    return PyLong_FromSsize_t(slot);
}

static Entry *entry_of(GroupObject *self, PyObject *slot_object) {
    Py_ssize_t slot = PyLong_AsSsize_t(slot_object);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (slot < 0 || slot >= self->high || !self->entries[slot].used) {
        PyErr_Format(PyExc_KeyError, "no entry in slot %zd", slot);
        return NULL;
    }
    return &self->entries[slot];
}

static PyObject *Group_remove(GroupObject *self, PyObject *slot_object) {
    Entry *entry = entry_of(self, slot_object);
    if (entry == NULL)
        return NULL;
    long sequence_number = entry->sequence_number;
    clear_entry(entry);
    self->count--;
    while (self->high > 0 && !self->entries[self->high - 1].used)
        self->high--;
    return PyLong_FromLong(sequence_number);
}

static PyObject *Group_sequence_number(GroupObject *self, PyObject *slot_object) {
    Entry *entry = entry_of(self, slot_object);
    return entry == NULL ? NULL : PyLong_FromLong(entry->sequence_number);
}

/* send(packets, abs_send_time) -> None, or [(slot, unsent, error)] for the
 * entries whose kernel buffer filled (unsent: the protected packets it would
 * not take, for the caller's asyncio buffer) or whose send failed (error:
 * the exception; the rest of their packets are lost). Every entry's
 * sequence numbers move on by len(packets) either way. */
static PyObject *Group_send(GroupObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "send(packets: list, abs_send_time)");
        return NULL;
    }
    uint32_t abs_send_time = (uint32_t)PyLong_AsUnsignedLongMask(args[1]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *packets = args[0];
    Py_ssize_t total = PyList_GET_SIZE(packets);
    if (total == 0 || self->count == 0)
        Py_RETURN_NONE;
    /* MAX_HEADER_BYTES: every entry's header fits (read_header checked 64). */
    Fields *fields = read_fields(packets, 64);
    if (fields == NULL)
        return NULL;
    PyObject *report = NULL;
    for (Py_ssize_t slot = 0; slot < self->high; slot++) {
        Entry *entry = &self->entries[slot];
        if (!entry->used)
            continue;
        PyObject *unsent;
        int status = send_packets(entry->srtp, entry->fd, entry->address_bytes ? (char *)&entry->address : NULL,
                                  entry->address_bytes,
                                  &entry->header, entry->sequence_number, entry->offset, abs_send_time, fields,
                                  total, &unsent);
        entry->sequence_number = (uint16_t)(entry->sequence_number + total);
        if (status == 0 && unsent == NULL)
            continue;
        PyObject *error = Py_None, *type = NULL, *traceback = NULL;
        if (status < 0) {
            PyErr_Fetch(&type, &error, &traceback);
            PyErr_NormalizeException(&type, &error, &traceback);
            Py_XDECREF(type);
            Py_XDECREF(traceback);
            if (error == NULL) {
                error = Py_None;
                Py_INCREF(error);
            }
            unsent = Py_None;
            Py_INCREF(unsent);
        } else {
            Py_INCREF(error);
        }
        PyObject *item = Py_BuildValue("(nNN)", slot, unsent, error);
        if (item == NULL || (report == NULL && (report = PyList_New(0)) == NULL) || PyList_Append(report, item) < 0) {
            Py_XDECREF(item);
            Py_XDECREF(report);
            release_fields(fields, total);
            return NULL;
        }
        Py_DECREF(item);
    }
    release_fields(fields, total);
    if (report == NULL)
        Py_RETURN_NONE;
    return report;
}

static PyMethodDef Group_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Group_add, METH_FASTCALL,
     "add(srtp, fd, sockaddr, template, header_bytes, abs_offset, payload_type, sequence_number, "
     "timestamp_offset) -> slot (the fd is duplicated)"},
    {"remove", (PyCFunction)Group_remove, METH_O, "remove(slot) -> the entry's next sequence number"},
    {"sequence_number", (PyCFunction)Group_sequence_number, METH_O, "sequence_number(slot) -> the next one"},
    {"send", (PyCFunction)(void (*)(void))Group_send, METH_FASTCALL,
     "send(packets, abs_send_time) -> None, or [(slot, unsent packets or None, exception or None)]"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Group_sequence = {
    .sq_length = (lenfunc)Group_length,
};

static PyTypeObject GroupType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "livecenter.media.rts._rtssend.Group",
    .tp_basicsize = sizeof(GroupObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Group(): one track's viewers, sent a frame in one call (send)",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Group_dealloc,
    .tp_methods = Group_methods,
    .tp_as_sequence = &Group_sequence,
};

static PyMethodDef module_methods[] = {
    {"send_frame", (PyCFunction)(void (*)(void))send_frame, METH_FASTCALL,
     "send_frame(srtp, fd, sockaddr, template, header_bytes, abs_offset, payload_type, sequence_number, "
     "timestamp_offset, abs_send_time, packets) -> None, or the protected packets the kernel would not take"},
    {"gso", (PyCFunction)(void (*)(void))gso, METH_FASTCALL,
     "gso([enabled]) -> whether a frame's equal-size packets go as one UDP GSO message (UDP_SEGMENT)"},
    {"sockaddr", sockaddr_of, METH_VARARGS, "sockaddr(host, port) -> the struct sockaddr as bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_rtssend", "The fast path's native sender (issue 18).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__rtssend(void) {
    if (srtp_init() != srtp_err_status_ok) {
        PyErr_SetString(PyExc_ImportError, "srtp_init failed");
        return NULL;
    }
    if (gcm_resolve(&aes_128_gcm, "AES-128-GCM") < 0 || gcm_resolve(&aes_256_gcm, "AES-256-GCM") < 0) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL's AES-GCM provider functions were not found");
        return NULL;
    }
    if (PyType_Ready(&SrtpType) < 0 || PyType_Ready(&GroupType) < 0)
        return NULL;
    name_payload = PyUnicode_InternFromString("payload");
    name_timestamp = PyUnicode_InternFromString("timestamp");
    name_marker = PyUnicode_InternFromString("marker");
    if (name_payload == NULL || name_timestamp == NULL || name_marker == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&SrtpType);
    Py_INCREF(&GroupType);
    if (PyModule_AddObject(module, "Srtp", (PyObject *)&SrtpType) < 0 ||
        PyModule_AddObject(module, "Group", (PyObject *)&GroupType) < 0 ||
        PyModule_AddIntConstant(module, "BATCH_PACKETS", BATCH_PACKETS) < 0 ||
        PyModule_AddIntConstant(module, "MAX_RTP_BYTES", MAX_RTP_BYTES) < 0 ||
        PyModule_AddIntConstant(module, "PROFILE_AES128_CM_SHA1_80", srtp_profile_aes128_cm_sha1_80) < 0 ||
        PyModule_AddIntConstant(module, "PROFILE_AEAD_AES_128_GCM", srtp_profile_aead_aes_128_gcm) < 0 ||
        PyModule_AddIntConstant(module, "PROFILE_AEAD_AES_256_GCM", srtp_profile_aead_aes_256_gcm) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
