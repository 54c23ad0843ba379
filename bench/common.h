/* What the benches' C viewers share (bench/fanout/loadgen.c, bench/soak/viewers.c),
 * as bench/common.py is for the Python side: the clock, reading the opening
 * bytes, a non-blocking connect, one paced epoll turn, and the client side of
 * the RTMP handshake and acknowledgements.
 *
 * Header-only (static inline) so each viewer still builds from its one .c file
 * (cc -O2 -Wall -o loadgen loadgen.c, as the benches' run.py do). Define
 * _GNU_SOURCE before including it.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_BUFFER_BYTES (1 << 20)
#define HANDSHAKE_BYTES 1536                      /* RTMP 5.2.3: C1, S1, C2 and S2 */
#define S0S1S2_BYTES (1 + 2 * HANDSHAKE_BYTES)
#define ACK_EVERY_BYTES 1000000 /* below any server's window (ours 2.5 MB, nginx-rtmp 5 MB) */

static inline int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(size > 0 ? size : 1);
    if (size > 0 && fread(data, 1, size, f) != (size_t)size) { perror(path); exit(2); }
    fclose(f);
    *len = (size_t)size;
    return data;
}

/* Raise the soft limit on descriptors to the hard one; returns the hard one. */
static inline rlim_t raise_fd_limit(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_max;
}

static inline int write_all(int fd, const unsigned char *data, size_t len) {
    /* The opening bytes are small and the socket is fresh: one send fits.
       A short write is treated as a failed viewer, not retried. */
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    return n == (ssize_t)len ? 0 : -1;
}

/* A TCP_NODELAY socket connecting to `addr` without blocking, or -1. */
static inline int connect_nonblocking(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The socket `id` connected: from now on wait for reads only, and send the
   opening bytes (C0+C1, or an HTTP request). -1 if the send fell short. */
static inline int send_opening(int ep, int fd, uint32_t id, const unsigned char *data, size_t len) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = id};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    return write_all(fd, data, len);
}

/* One epoll turn, at most one per `poll_ms`: data gathers in the socket
   buffers and each recv takes several messages, not one syscall per message. */
static inline int epoll_turn(int ep, struct epoll_event *events, int max_events, int poll_ms, int64_t *last_wait) {
    int64_t since = now_ms() - *last_wait;
    if (since < poll_ms) usleep((useconds_t)(poll_ms - since) * 1000);
    *last_wait = now_ms();
    return epoll_wait(ep, events, max_events, 20);
}

/* RTMP 5.2.2: C0 (version 3) and C1 (time 0, zero 0, then random bytes). */
static inline void rtmp_c0c1(unsigned char c0c1[1 + HANDSHAKE_BYTES], unsigned int seed) {
    c0c1[0] = 3;
    memset(c0c1 + 1, 0, 8);
    srand(seed);
    for (int i = 9; i < 1 + HANDSHAKE_BYTES; i++) c0c1[i] = (unsigned char)rand();
}

/* `got` more bytes of S0+S1+S2 are in *s012 (S0S1S2_BYTES long). Once all are:
   send C2, which echoes S1 (RTMP 5.2.4), then `blob` (the play commands), free
   the buffer and return 1. 0 while more are due; -1 if a send fell short. */
static inline int rtmp_handshake_read(int fd, unsigned char **s012, int *s012_len, ssize_t got,
                                      const unsigned char *blob, size_t blob_len) {
    *s012_len += (int)got;
    if (*s012_len < S0S1S2_BYTES) return 0;
    if (write_all(fd, *s012 + 1, HANDSHAKE_BYTES) || write_all(fd, blob, blob_len)) return -1;
    free(*s012);
    *s012 = NULL;
    return 1;
}

/* Count `got` bytes read and, every ACK_EVERY_BYTES, send the server an
   Acknowledgement (RTMP 5.4.3: chunk stream 2, type 3, sequence number). */
static inline void rtmp_count_and_ack(int fd, uint64_t *total_in, uint64_t *acked, ssize_t got) {
    *total_in += (uint64_t)got;
    if (*total_in - *acked < ACK_EVERY_BYTES) return;
    unsigned char ack[16] = {0x02, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0};
    uint32_t seq = htonl((uint32_t)*total_in);
    memcpy(ack + 12, &seq, 4);
    send(fd, ack, sizeof ack, MSG_NOSIGNAL | MSG_DONTWAIT);
    *acked = *total_in;
}

#endif
