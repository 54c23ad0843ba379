/* Fan-out load generator: N viewers of one live stream over RTMP, HTTP-FLV
 * or HTTP-FLV over TLS (https-flv: OpenSSL, SNI --servername, no
 * certificate check: the bench measures the server's cost, not the PKI).
 *
 * One thread, epoll, non-blocking sockets; every byte read goes into one
 * large buffer and is discarded, so the generator costs little more than the
 * kernel's copy. The client's opening bytes are prepared by run.py:
 *
 *   rtmp: send C0+C1, read S0+S1+S2, send C2 (= S1) and the blob (connect,
 *         createStream, set buffer length, play); then read.
 *   flv:  send the blob (the GET request); then read.
 *   https-flv: the TLS handshake, then as flv over it.
 *
 * It opens viewers at --connect-rate per second, waits --warmup seconds once
 * all are open, then measures for --measure seconds. A viewer stalls if in
 * that window it received less than --min-fraction of --rate bytes per second,
 * had a gap of --max-gap-ms without data, or was closed; a viewer the server
 * refused (HTTP 503, RTMP NetStream.Play.Failed) is counted apart, not as a
 * stall. It stops by itself at
 * the end of the window (or at a hard deadline) and prints one JSON line.
 *
 * Lines on stdout, for run.py to time its samples by:
 *   OPENED <n>
 *   MEASURE_START
 *   MEASURE_END
 *   RESULT {...}
 */
#define _GNU_SOURCE
#include "../common.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_EVENTS 16384

enum { ST_CONNECTING, ST_HANDSHAKE, ST_TLS, ST_STREAMING, ST_CLOSED };

typedef struct {
    int fd;
    int state;
    int s012_len;              /* bytes of S0+S1+S2 read so far */
    unsigned char *s012;       /* only during the RTMP handshake */
    uint64_t bytes;            /* media bytes after the opening exchange */
    uint64_t bytes_at_start;   /* at MEASURE_START */
    uint64_t bytes_at_end;     /* at MEASURE_END */
    uint64_t acked;            /* RTMP: bytes counted in the last Acknowledgement */
    uint64_t total_in;         /* RTMP: every byte read, for acknowledgements */
    int64_t last_data_ms;
    int64_t max_gap_ms;        /* longest gap inside the window */
    int closed_in_window;
    int refused;               /* the server refused the play (HTTP 503, NetStream.Play.Failed) */
    SSL *ssl;                  /* https-flv only */
} viewer_t;

/* One step of a TLS client handshake on `x`, waiting for what OpenSSL
   wants next; once it is done, the request goes out over TLS. 1 done, 0
   more to come, -1 failed. */
static int tls_step(int ep, uint32_t id, viewer_t *x, const unsigned char *blob, size_t blob_len) {
    int r = SSL_do_handshake(x->ssl);
    if (r == 1) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = id};
        epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &ev);
        return SSL_write(x->ssl, blob, (int)blob_len) == (int)blob_len ? 1 : -1;
    }
    int err = SSL_get_error(x->ssl, r);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return -1;
    struct epoll_event ev = {.events = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT, .data.u32 = id};
    epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &ev);
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *mode = "rtmp", *blob_path = NULL, *host = "127.0.0.1", *servername = NULL;
    int port = 0, n = 0, connect_rate = 500, poll_ms = 10;
    double rate = 0, warmup = 5, measure = 15, min_fraction = 0.9;
    int64_t max_gap_ms = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--mode")) mode = v;
        else if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--servername")) servername = v;
        else if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--n")) n = atoi(v);
        else if (!strcmp(k, "--blob")) blob_path = v;
        else if (!strcmp(k, "--rate")) rate = atof(v);
        else if (!strcmp(k, "--warmup")) warmup = atof(v);
        else if (!strcmp(k, "--measure")) measure = atof(v);
        else if (!strcmp(k, "--min-fraction")) min_fraction = atof(v);
        else if (!strcmp(k, "--max-gap-ms")) max_gap_ms = atoll(v);
        else if (!strcmp(k, "--connect-rate")) connect_rate = atoi(v);
        else if (!strcmp(k, "--poll-ms")) poll_ms = atoi(v);
        else { fprintf(stderr, "unknown option %s\n", k); return 2; }
    }
    int rtmp = !strcmp(mode, "rtmp"), tls = !strcmp(mode, "https-flv");
    if (!blob_path || port <= 0 || n <= 0 || rate <= 0 || (tls && !servername)) {
        fprintf(stderr, "usage: loadgen --mode rtmp|flv|https-flv --port P --n N --blob FILE --rate BYTES_PER_S "
                        "[--servername NAME (https-flv)] [--warmup S] [--measure S] [--connect-rate PER_S]\n");
        return 2;
    }
    SSL_CTX *tls_ctx = NULL;
    if (tls) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
        /* TLS 1.3 suites as Firefox orders them (Chromium too puts AES-128-GCM first):
         * the node takes the client's order, so viewers here cost what browsers' do. */
        SSL_CTX_set_ciphersuites(tls_ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384");
        /* The reads are counted, not kept: let OpenSSL drop its read buffers between records. */
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_RELEASE_BUFFERS);
    }
    rlim_t max_fds = raise_fd_limit();
    if ((rlim_t)n + 64 > max_fds) { fprintf(stderr, "--n %d needs more descriptors than %lu\n", n, (unsigned long)max_fds); return 2; }

    size_t blob_len;
    unsigned char *blob = read_file(blob_path, &blob_len);
    unsigned char c0c1[1 + HANDSHAKE_BYTES];
    rtmp_c0c1(c0c1, 12345);

    static unsigned char buf[READ_BUFFER_BYTES];
    viewer_t *v = calloc(n, sizeof *v);
    int ep = epoll_create1(0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &addr.sin_addr);

    int64_t t0 = now_ms(), measure_start = 0, measure_end = 0;
    /* Hard bound: opening may take n / rate plus 10 s; then warm-up and window. */
    int64_t open_deadline = t0 + (int64_t)(1000.0 * n / connect_rate) + 10000;
    int64_t hard_deadline = open_deadline + (int64_t)(1000 * (warmup + measure)) + 5000;
    int opened = 0, failed_open = 0, last_reported = 0, started = 0;
    static struct epoll_event events[MAX_EVENTS];
    int64_t last_wait = 0;

    for (;;) {
        int64_t now = now_ms();
        if (now >= hard_deadline) break;
        if (measure_end && now >= measure_end) break;
        /* Open viewers at the connect rate. */
        int due = (int)((now - t0) * (int64_t)connect_rate / 1000) + 1;
        while (opened < n && opened < due) {
            viewer_t *x = &v[opened];
            x->fd = connect_nonblocking(&addr);
            x->state = ST_CONNECTING;
            if (x->fd < 0) { x->state = ST_CLOSED; failed_open++; opened++; continue; }
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)opened};
            epoll_ctl(ep, EPOLL_CTL_ADD, x->fd, &ev);
            opened++;
        }
        if (opened == n && last_reported != n) {
            printf("OPENED %d\n", n);
            fflush(stdout);
            last_reported = n;
        }
        if (!measure_start && opened == n) {
            int streaming = 0;
            for (int i = 0; i < n; i++) streaming += (v[i].state == ST_STREAMING && v[i].bytes > 0) || v[i].refused;
            if (streaming == n || now >= open_deadline) {
                measure_start = now + (int64_t)(warmup * 1000);
                measure_end = measure_start + (int64_t)(measure * 1000);
            }
        }
        if (measure_start && now >= measure_start && !started) {
            /* First turn inside the window: snapshot the counters. */
            started = 1;
            for (int i = 0; i < n; i++) {
                v[i].bytes_at_start = v[i].bytes;
                if (v[i].state == ST_CLOSED) v[i].closed_in_window = 1;
            }
            printf("MEASURE_START\n");
            fflush(stdout);
        }
        int k = epoll_turn(ep, events, MAX_EVENTS, poll_ms, &last_wait);
        now = now_ms();
        int in_window = measure_start && now >= measure_start;
        for (int e = 0; e < k; e++) {
            viewer_t *x = &v[events[e].data.u32];
            if (x->state == ST_CLOSED) continue;
            uint32_t what = events[e].events;
            if (x->state == ST_CONNECTING) {
                if (what & (EPOLLERR | EPOLLHUP)) goto close_it;
                if (!(what & EPOLLOUT)) continue;
                if (rtmp) {
                    if (send_opening(ep, x->fd, events[e].data.u32, c0c1, sizeof c0c1)) goto close_it;
                    x->s012 = malloc(S0S1S2_BYTES);
                    x->state = ST_HANDSHAKE;
                } else if (tls) {
                    x->ssl = SSL_new(tls_ctx);
                    SSL_set_tlsext_host_name(x->ssl, servername);
                    SSL_set_fd(x->ssl, x->fd);
                    SSL_set_connect_state(x->ssl);
                    x->state = ST_TLS;
                    if (tls_step(ep, events[e].data.u32, x, blob, blob_len) < 0) goto close_it;
                } else {
                    if (send_opening(ep, x->fd, events[e].data.u32, blob, blob_len)) goto close_it;
                    x->state = ST_STREAMING;
                    x->last_data_ms = now;
                }
                continue;
            }
            if (x->state == ST_TLS) {
                if (what & (EPOLLERR | EPOLLHUP)) goto close_it;
                int done = tls_step(ep, events[e].data.u32, x, blob, blob_len);
                if (done < 0) goto close_it;
                if (!done) continue;
                x->state = ST_STREAMING;
                x->last_data_ms = now;
                continue;
            }
            for (;;) {
                ssize_t got;
                if (x->state == ST_HANDSHAKE) {
                    got = recv(x->fd, x->s012 + x->s012_len, S0S1S2_BYTES - x->s012_len, 0);
                } else if (tls) {
                    /* Until OpenSSL wants more from the socket: a record it already read is not an epoll event. */
                    int r = SSL_read(x->ssl, buf, (int)sizeof buf);
                    if (r <= 0) {
                        int err = SSL_get_error(x->ssl, r);
                        if (err == SSL_ERROR_WANT_READ) break;
                        goto close_it;
                    }
                    got = r;
                } else {
                    got = recv(x->fd, buf, sizeof buf, 0);
                }
                if (got == 0) goto close_it;
                if (got < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                    if (errno == EINTR) continue;
                    goto close_it;
                }
                if (x->state == ST_HANDSHAKE) {
                    x->total_in += (uint64_t)got;
                    int done = rtmp_handshake_read(x->fd, &x->s012, &x->s012_len, got, blob, blob_len);
                    if (done < 0) goto close_it;
                    if (done) {
                        x->state = ST_STREAMING;
                        x->last_data_ms = now;
                    }
                    continue;
                }
                if (in_window) {
                    int64_t from = x->last_data_ms > measure_start ? x->last_data_ms : measure_start;
                    if (now - from > x->max_gap_ms) x->max_gap_ms = now - from;
                }
                x->last_data_ms = now;
                /* A refusal comes first, before any media: an HTTP status line, or the play's onStatus. */
                if (!x->refused && x->bytes < 65536) {
                    if (!rtmp && x->bytes == 0 && got >= 12 && memcmp(buf, "HTTP/1.1 503", 12) == 0) x->refused = 1;
                    if (rtmp && memmem(buf, (size_t)got, "NetStream.Play.Failed", 21)) x->refused = 1;
                }
                x->bytes += (uint64_t)got;
                if (rtmp) rtmp_count_and_ack(x->fd, &x->total_in, &x->acked, got);
                if (!tls && got < (ssize_t)sizeof buf) break;
            }
            continue;
        close_it:
            if (in_window && !(measure_end && now >= measure_end)) x->closed_in_window = 1;
            if (measure_start && now < measure_start) x->closed_in_window = 1;
            epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
            if (x->ssl) { SSL_free(x->ssl); x->ssl = NULL; }
            close(x->fd);
            free(x->s012);
            x->s012 = NULL;
            x->state = ST_CLOSED;
        }
    }
    int64_t end = now_ms();
    int measured = measure_start && end >= measure_start;
    if (measured) {
        printf("MEASURE_END\n");
        fflush(stdout);
    }
    double window_s = measured ? (end - measure_start) / 1000.0 : 0;
    int stalled = 0, closed = 0, never_streamed = 0, slow = 0, gapped = 0, refused = 0, admitted = 0;
    int64_t worst_gap = 0;
    uint64_t total = 0;
    uint64_t *rates = calloc(n, sizeof *rates);
    for (int i = 0; i < n; i++) {
        viewer_t *x = &v[i];
        x->bytes_at_end = x->bytes;
        if (x->state != ST_CLOSED && measured) {
            int64_t from = x->last_data_ms > measure_start ? x->last_data_ms : measure_start;
            if (end - from > x->max_gap_ms) x->max_gap_ms = end - from;
        }
        /* A refused viewer is counted as refused, not as a stall: the verdict is on those admitted. */
        if (x->refused) { refused++; continue; }
        uint64_t got = x->bytes_at_end - x->bytes_at_start;
        total += got;
        uint64_t r = window_s > 0 ? (uint64_t)(got / window_s) : 0;
        rates[admitted++] = r;
        int is_closed = x->state == ST_CLOSED || x->closed_in_window;
        int is_slow = r < min_fraction * rate;
        int is_gapped = x->max_gap_ms > max_gap_ms;
        closed += is_closed;
        never_streamed += x->bytes == 0;
        slow += is_slow;
        gapped += is_gapped;
        stalled += is_closed || is_slow || is_gapped || !measured;
        if (x->max_gap_ms > worst_gap) worst_gap = x->max_gap_ms;
    }
    qsort(rates, admitted, sizeof *rates, cmp_u64);
    int last = admitted > 0 ? admitted - 1 : 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_s = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("RESULT {\"n\": %d, \"admitted\": %d, \"refused\": %d, \"stalled\": %d, \"closed\": %d, \"never_streamed\": %d, \"slow\": %d, "
           "\"gapped\": %d, \"failed_open\": %d, \"window_s\": %.2f, \"expected_rate\": %.0f, "
           "\"min_rate\": %llu, \"median_rate\": %llu, \"max_rate\": %llu, \"total_rate\": %.0f, "
           "\"worst_gap_ms\": %lld, \"loadgen_cpu_s\": %.2f, \"loadgen_wall_s\": %.2f}\n",
           n, admitted, refused, stalled, closed, never_streamed, slow, gapped, failed_open, window_s, rate,
           (unsigned long long)rates[0], (unsigned long long)rates[admitted / 2], (unsigned long long)rates[last],
           window_s > 0 ? total / window_s : 0.0, (long long)worst_gap, cpu_s, (end - t0) / 1000.0);
    fflush(stdout);
    return 0;
}
