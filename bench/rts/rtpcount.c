/* The light viewer generator's counter (bench/rts/viewers.py --client light).
 *
 * Python (aiortc) does each viewer's signalling, ICE and DTLS handshake,
 * then hands the viewer's UDP sockets (its nominated pair's first, then
 * every other host candidate's) to this process over a Unix SOCK_SEQPACKET
 * socket (SCM_RIGHTS) and exits without a DTLS close or an ICE teardown.
 * From then on this process is the viewer, as the browser would be to the
 * server, on all of its sockets: with more than one local address (another
 * interface up while the viewer gathered), aioice's aggressive nomination
 * nominates every pair that succeeds and each side keeps the last to
 * complete, so the server may send on a pair other than the one the viewer
 * last nominated. A browser still receives there; so does this process:
 *
 *   - it reads every socket with one epoll and recvmmsg, a turn at most
 *     every --poll-ms, and only each datagram's first bytes (the clear RTP
 *     header: RTP is counted before SRTP, never decrypted);
 *   - RTP (RFC 7983: first byte 128-191) whose second byte is not RTCP's
 *     192-223: a video frame is a packet with the marker bit on one of the
 *     peer's video payload types; any other RTP packet counts as audio;
 *   - it answers the server's ICE consent checks (RFC 7675: STUN Binding
 *     requests every ~5 s; aioice drops the pair after ~30 s unanswered)
 *     with a Binding success response: XOR-MAPPED-ADDRESS,
 *     MESSAGE-INTEGRITY keyed with the peer's local ICE password, and
 *     FINGERPRINT (RFC 8489 14.2, 14.5, 14.7);
 *   - it reads each socket's drop counter (SO_RXQ_OVFL): datagrams the
 *     kernel dropped because this process did not read in time, which is
 *     where its own limit shows.
 *
 * Control messages on --control-fd (one per datagram):
 *   "P <ice password> <pt>[,<pt>...]" + fds      a viewer (index = arrival order):
 *                                                its nominated socket, then its others
 *   "B"                                          the measuring window begins
 *   "E"                                          it ends: print one JSON line, exit
 * It exits by itself when every writer of the control socket has gone.
 *
 *   cc -O2 -Wall -o rtpcount rtpcount.c -lcrypto
 */
#define _GNU_SOURCE
#include "../common.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/time.h>

#define MAX_EVENTS 4096
#define BATCH 64               /* datagrams a recvmmsg */
#define HEAD_BYTES 64          /* what is read of each: RTP header, STUN header and more */
#define MAX_PASSWORD_BYTES 256 /* RFC 8445 15.4: ice-pwd is 22-256 characters */
#define MAX_SOCKETS 8          /* a viewer's: one per local host candidate */
#define CONTROL_ID UINT64_MAX
#define STUN_COOKIE 0x2112A442u

typedef struct {
    int fd;
    uint32_t drops, drops_at_start; /* SO_RXQ_OVFL: the socket's count so far */
} sock_t;

typedef struct {
    sock_t socks[MAX_SOCKETS]; /* [0]: the nominated pair's */
    int n_socks;
    unsigned char video_types[16]; /* a bit per payload type 0-127 */
    char password[MAX_PASSWORD_BYTES + 1];
    size_t password_len;
    uint64_t frames, audio, frames_at_start, audio_at_start;
    uint64_t frames_elsewhere, frames_elsewhere_at_start; /* those on a socket other than [0] */
    uint64_t stun_answers;
} peer_t;

static peer_t *peers;
static size_t n_peers, cap_peers;

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_of(const unsigned char *p, size_t len) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put16(unsigned char *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xFF; }
static void put32(unsigned char *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v & 0xFFFF); }

static double wall(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* A Binding success response to the request `req` (its first 20 bytes are
   read) from `from`: RFC 8489 14.2 XOR-MAPPED-ADDRESS, 14.5
   MESSAGE-INTEGRITY, 14.7 FINGERPRINT. */
static void answer_binding(peer_t *p, int fd, const unsigned char *req, const struct sockaddr_storage *from, socklen_t from_len) {
    unsigned char m[128];
    size_t at = 20;
    put16(m, 0x0101);
    put32(m + 4, STUN_COOKIE);
    memcpy(m + 8, req + 8, 12); /* the transaction id */
    if (from->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)from;
        put16(m + at, 0x0020), put16(m + at + 2, 8);
        m[at + 4] = 0, m[at + 5] = 1;
        put16(m + at + 6, ntohs(a->sin_port) ^ (STUN_COOKIE >> 16));
        put32(m + at + 8, ntohl(a->sin_addr.s_addr) ^ STUN_COOKIE);
        at += 12;
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)from;
        put16(m + at, 0x0020), put16(m + at + 2, 20);
        m[at + 4] = 0, m[at + 5] = 2;
        put16(m + at + 6, ntohs(a->sin6_port) ^ (STUN_COOKIE >> 16));
        for (int i = 0; i < 16; i++) m[at + 8 + i] = a->sin6_addr.s6_addr[i] ^ m[4 + i]; /* cookie, then the id */
        at += 24;
    }
    /* The length counts MESSAGE-INTEGRITY when it is computed (14.5). */
    put16(m + 2, (uint16_t)(at - 20 + 24));
    unsigned int mac_len = 20;
    put16(m + at, 0x0008), put16(m + at + 2, 20);
    HMAC(EVP_sha1(), p->password, (int)p->password_len, m, at, m + at + 4, &mac_len);
    at += 24;
    put16(m + 2, (uint16_t)(at - 20 + 8));
    put16(m + at, 0x8028), put16(m + at + 2, 4);
    put32(m + at + 4, crc32_of(m, at) ^ 0x5354554Eu);
    at += 8;
    if (sendto(fd, m, at, MSG_DONTWAIT, (const struct sockaddr *)from, from_len) == (ssize_t)at) p->stun_answers++;
}

/* "P <password> <pt>,<pt>..." with its fds (the nominated socket first). */
static void add_peer(int ep, const char *msg, const int *fds, int n_fds) {
    char password[MAX_PASSWORD_BYTES + 1], types[512];
    if (n_fds < 1 || sscanf(msg, "P %256s %511s", password, types) != 2) {
        fprintf(stderr, "rtpcount: bad peer message: %.80s\n", msg);
        for (int i = 0; i < n_fds; i++) close(fds[i]);
        return;
    }
    if (n_peers == cap_peers) {
        cap_peers = cap_peers ? cap_peers * 2 : 1024;
        peers = realloc(peers, cap_peers * sizeof *peers);
    }
    peer_t *p = &peers[n_peers];
    memset(p, 0, sizeof *p);
    snprintf(p->password, sizeof p->password, "%s", password);
    p->password_len = strlen(p->password);
    for (char *t = strtok(types, ","); t; t = strtok(NULL, ",")) {
        int pt = atoi(t);
        if (pt >= 0 && pt < 128) p->video_types[pt / 8] |= 1 << (pt % 8);
    }
    for (int i = 0; i < n_fds; i++) {
        int fd = fds[i], one = 1, buffer = 1 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
        /* A keyframe is a burst of ~60 packets; between two turns a socket
           should hold several. FORCE needs root; else the plain call, capped. */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer) < 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)n_peers << 8 | (uint64_t)p->n_socks};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            perror("rtpcount: epoll_ctl");
            close(fd);
            if (i == 0) { /* without its nominated socket it is no viewer */
                for (int j = 1; j < n_fds; j++) close(fds[j]);
                return;
            }
            continue;
        }
        p->socks[p->n_socks++] = (sock_t){.fd = fd};
    }
    n_peers++;
}

static unsigned char heads[BATCH][HEAD_BYTES];
static struct sockaddr_storage froms[BATCH];
static char controls[BATCH][CMSG_SPACE(sizeof(uint32_t))];
static struct iovec iovs[BATCH];
static struct mmsghdr msgs[BATCH];

static void read_socket(peer_t *p, int index) {
    sock_t *s = &p->socks[index];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iovs[i] = (struct iovec){heads[i], HEAD_BYTES};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &froms[i], .msg_namelen = sizeof froms[i],
                                              .msg_iov = &iovs[i], .msg_iovlen = 1,
                                              .msg_control = controls[i], .msg_controllen = sizeof controls[i]};
        }
        int got = recvmmsg(s->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (got <= 0) return;
        for (int i = 0; i < got; i++) {
            const unsigned char *h = heads[i];
            size_t len = msgs[i].msg_len; /* the datagram's length, even when cut to HEAD_BYTES */
            if (len >= 12 && h[0] >= 128 && h[0] < 192) {
                if (h[1] >= 192 && h[1] <= 223) continue; /* RTCP */
                int pt = h[1] & 0x7F;
                if (p->video_types[pt / 8] & (1 << (pt % 8))) {
                    p->frames += h[1] >> 7; /* the marker bit ends a frame */
                    if (index) p->frames_elsewhere += h[1] >> 7;
                } else
                    p->audio++;
            } else if (len >= 20 && h[0] == 0 && h[1] == 1 &&
                       ((uint32_t)h[4] << 24 | h[5] << 16 | h[6] << 8 | h[7]) == STUN_COOKIE) {
                answer_binding(p, s->fd, h, &froms[i], msgs[i].msg_hdr.msg_namelen); /* Binding request */
            }
        }
        struct msghdr *last = &msgs[got - 1].msg_hdr;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(last); c; c = CMSG_NXTHDR(last, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) memcpy(&s->drops, CMSG_DATA(c), 4);
        if (got < BATCH) return;
    }
}

static void print_window(double start, double end, double cpu) {
    uint64_t drops = 0, answers = 0, sockets = 0, elsewhere = 0;
    printf("{\"window\": [%.3f, %.3f], \"peers\": %zu, \"counter_cpu\": %.1f, \"video_frames\": [", start, end,
           n_peers, 100 * cpu / (end - start));
    for (size_t i = 0; i < n_peers; i++) printf(i ? ", %lu" : "%lu", (unsigned long)(peers[i].frames - peers[i].frames_at_start));
    printf("], \"audio_packets\": [");
    for (size_t i = 0; i < n_peers; i++) printf(i ? ", %lu" : "%lu", (unsigned long)(peers[i].audio - peers[i].audio_at_start));
    for (size_t i = 0; i < n_peers; i++) {
        peer_t *p = &peers[i];
        for (int k = 0; k < p->n_socks; k++) drops += p->socks[k].drops - p->socks[k].drops_at_start;
        answers += p->stun_answers, sockets += p->n_socks;
        elsewhere += p->frames_elsewhere > p->frames_elsewhere_at_start;
    }
    /* off_nominated: viewers sent video in the window on a socket other
       than their nominated pair's (the server's pair is another one). */
    printf("], \"socket_drops\": %lu, \"stun_answers\": %lu, \"sockets\": %lu, \"off_nominated\": %lu}\n",
           (unsigned long)drops, (unsigned long)answers, (unsigned long)sockets, (unsigned long)elsewhere);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int control = -1, poll_ms = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--control-fd")) control = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--poll-ms")) poll_ms = atoi(argv[i + 1]);
        else { fprintf(stderr, "rtpcount: unknown option %s\n", argv[i]); return 2; }
    }
    if (control < 0) { fprintf(stderr, "usage: rtpcount --control-fd N [--poll-ms 5]\n"); return 2; }
    raise_fd_limit();
    crc_init();
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = CONTROL_ID};
    epoll_ctl(ep, EPOLL_CTL_ADD, control, &ev);
    static struct epoll_event events[MAX_EVENTS];
    int64_t last_wait = 0;
    double start = 0, cpu_at_start = 0;
    for (;;) {
        int k = epoll_turn(ep, events, MAX_EVENTS, poll_ms, &last_wait);
        for (int e = 0; e < k; e++) {
            uint64_t id = events[e].data.u64;
            if (id != CONTROL_ID) {
                read_socket(&peers[id >> 8], (int)(id & 0xFF));
                continue;
            }
            char msg[1024], cbuf[CMSG_SPACE(MAX_SOCKETS * sizeof(int))];
            struct iovec iov = {msg, sizeof msg - 1};
            struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
            ssize_t got = recvmsg(control, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            if (got == 0) return 0; /* every writer has gone */
            if (got < 0) continue;
            msg[got] = 0;
            int fds[MAX_SOCKETS], n_fds = 0;
            struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
            if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                n_fds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                if (n_fds > MAX_SOCKETS) n_fds = MAX_SOCKETS;
                memcpy(fds, CMSG_DATA(c), n_fds * sizeof(int));
            }
            if (mh.msg_flags & MSG_CTRUNC) fprintf(stderr, "rtpcount: more than %d sockets for a viewer\n", MAX_SOCKETS);
            if (msg[0] == 'P') {
                add_peer(ep, msg, fds, n_fds);
            } else if (msg[0] == 'B') {
                for (size_t i = 0; i < n_peers; i++) {
                    peer_t *p = &peers[i];
                    p->frames_at_start = p->frames, p->audio_at_start = p->audio;
                    p->frames_elsewhere_at_start = p->frames_elsewhere;
                    for (int k = 0; k < p->n_socks; k++) p->socks[k].drops_at_start = p->socks[k].drops;
                }
                start = wall(), cpu_at_start = cpu_seconds();
            } else if (msg[0] == 'E') {
                print_window(start, wall(), cpu_seconds() - cpu_at_start);
                return 0;
            }
        }
    }
}
