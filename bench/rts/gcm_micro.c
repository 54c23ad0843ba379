/* The native sender's SRTP AES-GCM per packet, in process (issue 18;
 * bench/README.md, "bench/rts: SRTP AES-GCM per packet").
 *
 * Includes the sender's source (RTSSEND_SOURCE, built by gcm_micro.py:
 * this tree's livecenter/media/rts/_rtssend.c, or another commit's for a
 * before/after) and times its own gcm_protect, the function Group.send
 * calls per packet, with nothing else around it: no Python, no header
 * writing, no socket. Sessions are keyed as the node keys them (gcm_init,
 * from random master keys); each "frame" protects PACKETS packets of
 * PAYLOAD bytes behind a 24-byte header (RTP and one-byte extensions: what
 * the fast path writes) for every session in turn, each packet's sequence
 * number one on from the last. Between two sessions' packets it can write
 * POLLUTE_KB of unrelated memory, as the kernel's sendmmsg for the previous
 * viewer does in the node, so that a session's contexts are no longer
 * cached.
 *
 *     gcm_micro PROFILE SESSIONS FRAMES PACKETS PAYLOAD POLLUTE_KB REPEATS
 *
 * prints the median over REPEATS of nanoseconds per packet, and a
 * checksum of the last packets protected (equal for equal code paths).
 */
#include RTSSEND_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define HEADER_BYTES 24

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s PROFILE SESSIONS FRAMES PACKETS PAYLOAD POLLUTE_KB REPEATS\n", argv[0]);
        return 2;
    }
    int profile = atoi(argv[1]), sessions = atoi(argv[2]), frames = atoi(argv[3]), packets = atoi(argv[4]);
    int payload = atoi(argv[5]), repeats = atoi(argv[7]);
    size_t pollute = (size_t)atoi(argv[6]) * 1024;
    if (sessions < 1 || frames < 1 || packets < 1 || packets > BATCH_PACKETS || payload < 0 ||
        HEADER_BYTES + payload > MAX_RTP_BYTES - GCM_TAG_BYTES || repeats < 1 || repeats > 99) {
        fprintf(stderr, "out of range\n");
        return 2;
    }
    Py_Initialize(); /* for PyErr_* on a failure, and the module's own setup */
    PyObject *module = PyInit__rtssend();
    if (module == NULL) {
        PyErr_Print();
        return 1;
    }
    int key_bytes = profile == srtp_profile_aead_aes_256_gcm ? 32 : 16;
    SrtpObject *all = calloc((size_t)sessions, sizeof(SrtpObject));
    unsigned char *junk = pollute ? malloc(pollute * 16) : NULL;
    srand(1);
    for (int s = 0; s < sessions; s++) {
        unsigned char material[32 + GCM_SALT_BYTES];
        for (int i = 0; i < key_bytes + GCM_SALT_BYTES; i++)
            material[i] = (unsigned char)rand();
        if (gcm_init(&all[s], profile, material, key_bytes + GCM_SALT_BYTES) < 0) {
            PyErr_Print();
            return 1;
        }
    }
    static const unsigned char header[HEADER_BYTES] = {
        0x90, 102, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, /* V=2, X, PT 102, SSRC */
        0xBE, 0xDE, 0, 2, 0x22, 1, 2, 3, 0x10, 7, 0, 0,      /* abs-send-time, mid */
    };
    for (int i = 0; i < packets; i++) {
        memcpy(slots[i], header, HEADER_BYTES);
        for (int j = 0; j < payload; j++)
            slots[i][HEADER_BYTES + j] = (unsigned char)(i + j);
    }
    double runs[99];
    unsigned sequence = 0;
    for (int r = 0; r < repeats; r++) {
        double spent = 0;
        double started = now_ns();
        for (int f = 0; f < frames; f++) {
            for (int s = 0; s < sessions; s++) {
                double group = 0;
                if (pollute) {
                    memset(junk + (size_t)(s % 16) * pollute, s, pollute);
                    group = now_ns();
                }
                for (int i = 0; i < packets; i++) {
                    unsigned number = (sequence + (unsigned)i) & 0xFFFF;
                    slots[i][2] = (unsigned char)(number >> 8);
                    slots[i][3] = (unsigned char)number;
                    int length = HEADER_BYTES + payload;
                    if (gcm_protect(&all[s], slots[i], &length) < 0) {
                        PyErr_Print();
                        return 1;
                    }
                }
                if (pollute)
                    spent += now_ns() - group;
            }
            sequence += (unsigned)packets;
        }
        if (!pollute)
            spent = now_ns() - started;
        runs[r] = spent / ((double)frames * sessions * packets);
    }
    qsort(runs, (size_t)repeats, sizeof runs[0], compare);
    unsigned long checksum = 0;
    for (int i = 0; i < packets; i++)
        for (int j = 0; j < HEADER_BYTES + payload + GCM_TAG_BYTES; j++)
            checksum = checksum * 31 + slots[i][j];
    printf("%.1f %lx\n", runs[repeats / 2], checksum);
    Py_DECREF(module);
    return 0;
}
