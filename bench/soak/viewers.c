/* Soak viewers: N RTMP or HTTP-FLV viewers over S streams that join and
 * leave all the time, each checking that it lost no frame.
 *
 * bench/fanout/loadgen.c's epoll loop (one thread, non-blocking sockets; the
 * parts both use are in bench/common.h), with two additions:
 *
 *   - churn: each viewer session lasts a random time in [--min-life,
 *     --max-life] seconds, then closes and a new session of the same slot
 *     opens at once, so the node always has --n viewers and sees a steady
 *     stream of joins and leaves;
 *   - continuity: every FLV tag (HTTP-FLV) or RTMP message (RTMP chunk
 *     stream, RTMP 5.3) is parsed, and each video frame's timestamp is
 *     compared with the one before it: a step of more than --max-step-ms
 *     (frames skipped, as a lagging viewer's skip to the next keyframe) or
 *     backwards counts as a gap.
 *
 *   - refusals: a play the node refuses (HTTP 503, or RTMP onStatus
 *     NetStream.Play.Failed: the node at capacity) is not a session; the
 *     slot waits as a player does before it tries again: the node's
 *     Retry-After (HTTP), else 1 s, 2 s, 4 s ... up to --backoff-max-s,
 *     with jitter (bench/common.py refusal_delay), and counts it.
 *
 * Slot i plays stream i % S; --blobs DIR holds the opening bytes of each
 * stream (blob-0, blob-1, ...), prepared by run.py as for loadgen.c.
 *
 * Every --report seconds, and at the end, one line on stdout:
 *   STATS {"sessions": ..., "ended_by_us": ..., "cut_by_server": ..., ...}
 * counting finished sessions since the start, plus the open ones.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stddef.h>

#include "../common.h"

#define MAX_EVENTS 4096
#define MAX_CSID 64
#define MAX_STREAMS 256
/* What of an HTTP response head and of an RTMP command is kept to read a refusal. */
#define HEAD_BYTES 1024
#define CMD_BYTES 512
/* A refused viewer's back-off (bench/common.py: the same policy). */
#define BACKOFF_FIRST_MS 1000
#define RETRY_AFTER_JITTER 0.2

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_STREAMING };

typedef struct {
    uint32_t timestamp, length, remaining;
    uint8_t type, ext;
    uint32_t delta;
    uint8_t head[2]; /* first bytes of the message body */
    uint8_t head_len;
} csid_t;

typedef struct {
    int fd, state, stream;
    int64_t opened_ms, end_ms, last_data_ms;
    int64_t next_open_ms; /* a refused slot waits until then */
    int refusals;         /* in a row */
    /* Everything from here on is cleared when a session opens. */
    unsigned char *s012;
    int s012_len;
    uint64_t total_in, acked;
    /* parsing */
    unsigned char hdr[32];
    int hdr_len, hdr_need; /* bytes of the header being gathered */
    uint32_t skip;         /* FLV: body bytes still to pass over */
    uint32_t chunk_size;   /* RTMP: the server's chunk size */
    int csid;              /* RTMP: chunk stream of the payload being read */
    uint32_t chunk_left;   /* RTMP: payload bytes of the current chunk */
    csid_t *cs;            /* RTMP: per chunk stream */
    /* what the session saw */
    uint64_t video, audio;
    int64_t last_video_ts;
    int gaps, backwards, parse_error, refused;
    int64_t retry_after_ms;
    char head[HEAD_BYTES]; /* HTTP-FLV: the response head */
    int head_len;
    char cmd[CMD_BYTES]; /* RTMP: the command message being read, before the first video frame */
    int cmd_len;
} viewer_t;

static int rtmp_mode;
static int64_t max_step_ms = 1000, backoff_max_ms = 30000;
static uint64_t refused_total, sessions, ended_by_us, cut_by_server, never_played, failed_open, sessions_with_gaps, parse_errors;
static uint64_t video_total, audio_total, gaps_total, worst_step;

static void on_video(viewer_t *x, uint32_t ts, const uint8_t *head, int head_len) {
    /* AVC sequence headers (AVCPacketType 0) carry no frame. */
    if (head_len >= 2 && (head[0] & 0x0f) == 7 && head[1] == 0) return;
    x->video++;
    if (x->last_video_ts >= 0) {
        int64_t step = (int64_t)ts - x->last_video_ts;
        if (step < 0) x->backwards++;
        if (step > max_step_ms || step < 0) x->gaps++;
        if (step > 0 && (uint64_t)step > worst_step && step <= 0x7fffffff) worst_step = (uint64_t)step;
    }
    x->last_video_ts = ts;
}

/* HTTP-FLV: 9-byte header + 4-byte PreviousTagSize0, then tags of an 11-byte
   header, the body and a 4-byte PreviousTagSize (FLV 1.0 E.3). The HTTP
   response head comes first and ends with CRLFCRLF. */
static int feed_flv(viewer_t *x, const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (x->skip) {
            size_t k = n - i < x->skip ? n - i : x->skip;
            x->skip -= (uint32_t)k;
            i += k;
            continue;
        }
        if (x->hdr_need == -1) { /* the HTTP response head, up to CRLFCRLF */
            if (x->head_len < HEAD_BYTES - 1) x->head[x->head_len++] = (char)p[i];
            memmove(x->hdr, x->hdr + 1, 3);
            x->hdr[3] = p[i];
            x->hdr_len++;
            i++;
            if (x->hdr_len >= 4 && !memcmp(x->hdr, "\r\n\r\n", 4)) {
                if (x->head_len < 12 || memcmp(x->head, "HTTP/1.1 200", 12)) {
                    x->head[x->head_len] = 0;
                    x->refused = 1;
                    const char *after = strcasestr(x->head, "\r\nRetry-After:");
                    if (after) x->retry_after_ms = atoll(after + 14) * 1000;
                    return -1;
                }
                x->hdr_len = 0;
                x->skip = 13; /* FLV header and PreviousTagSize0 */
                x->hdr_need = 13;
            }
            continue;
        }
        size_t k = n - i < (size_t)(x->hdr_need - x->hdr_len) ? n - i : (size_t)(x->hdr_need - x->hdr_len);
        memcpy(x->hdr + x->hdr_len, p + i, k);
        x->hdr_len += (int)k;
        i += k;
        if (x->hdr_len < x->hdr_need) break;
        /* 11-byte tag header + the first 2 body bytes (every tag we send has them). */
        uint8_t type = x->hdr[0] & 0x1f;
        uint32_t size = (uint32_t)x->hdr[1] << 16 | x->hdr[2] << 8 | x->hdr[3];
        uint32_t ts = (uint32_t)x->hdr[7] << 24 | (uint32_t)x->hdr[4] << 16 | x->hdr[5] << 8 | x->hdr[6];
        if (size < 2) { x->parse_error = 1; return -1; }
        if (type == 9) on_video(x, ts, x->hdr + 11, 2);
        else if (type == 8) x->audio++;
        x->skip = size - 2 + 4;
        x->hdr_len = 0;
    }
    return 0;
}

/* RTMP chunk stream (RTMP 5.3.1): basic header, message header of 11, 7, 3 or
   0 bytes by fmt, extended timestamp when the field is 0xffffff, then up to
   chunk_size payload bytes. Set Chunk Size (type 1) changes chunk_size. */
static int rtmp_header_need(viewer_t *x) {
    /* How many header bytes are needed given what has been gathered. */
    if (x->hdr_len < 1) return 1;
    int fmt = x->hdr[0] >> 6, id = x->hdr[0] & 0x3f;
    int basic = id == 0 ? 2 : id == 1 ? 3 : 1;
    int msg = fmt == 0 ? 11 : fmt == 1 ? 7 : fmt == 2 ? 3 : 0;
    if (x->hdr_len < basic) return basic;
    int csid = id == 0 ? 64 + x->hdr[1] : id == 1 ? 64 + x->hdr[1] + 256 * x->hdr[2] : id;
    if (csid >= MAX_CSID) return -1;
    int need = basic + msg;
    if (x->hdr_len < need) return need;
    int ext;
    if (fmt == 3) ext = x->cs[csid].ext;
    else {
        const unsigned char *m = x->hdr + basic;
        ext = ((uint32_t)m[0] << 16 | m[1] << 8 | m[2]) == 0xffffff;
    }
    return need + (ext ? 4 : 0);
}

/* -1 when the message is the node's refusal of the play (onStatus
   NetStream.Play.Failed, RTMP 7.2.2): the node closes the connection next. */
static int rtmp_message_done(viewer_t *x, csid_t *c) {
    if (c->type == 9) on_video(x, c->timestamp, c->head, c->head_len);
    else if (c->type == 8) x->audio++;
    else if (c->type == 20 && x->video == 0) {
        int failed = memmem(x->cmd, (size_t)x->cmd_len, "NetStream.Play.Failed", 21) != NULL;
        x->cmd_len = 0;
        if (failed) { x->refused = 1; return -1; }
    }
    return 0;
}

static int feed_rtmp(viewer_t *x, const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (x->chunk_left) {
            csid_t *c = &x->cs[x->csid];
            size_t k = n - i < x->chunk_left ? n - i : x->chunk_left;
            /* Keep the first bytes of the body: the video header, or Set Chunk Size's value. */
            uint32_t offset = c->length - c->remaining;
            for (size_t j = 0; j < k && offset + j < 4; j++) {
                if (offset + j < 2) c->head[offset + j] = p[i + j];
                if (c->type == 1) x->hdr[16 + offset + j] = p[i + j];
            }
            if (offset + k >= 2) c->head_len = 2;
            if (c->type == 20 && x->video == 0) {
                size_t room = CMD_BYTES - (size_t)x->cmd_len, take = k < room ? k : room;
                memcpy(x->cmd + x->cmd_len, p + i, take);
                x->cmd_len += (int)take;
            }
            c->remaining -= (uint32_t)k;
            x->chunk_left -= (uint32_t)k;
            i += k;
            if (c->remaining == 0) {
                if (c->type == 1 && c->length >= 4) {
                    x->chunk_size = ((uint32_t)x->hdr[16] << 24 | x->hdr[17] << 16 | x->hdr[18] << 8 | x->hdr[19]) & 0x7fffffff;
                    if (x->chunk_size == 0) return -1;
                }
                if (rtmp_message_done(x, c)) return -1;
            }
            continue;
        }
        int need = rtmp_header_need(x);
        if (need < 0) return -1;
        if (x->hdr_len < need) {
            x->hdr[x->hdr_len++] = p[i++];
            continue;
        }
        /* A whole chunk header. */
        int fmt = x->hdr[0] >> 6, id = x->hdr[0] & 0x3f;
        int basic = id == 0 ? 2 : id == 1 ? 3 : 1;
        int csid = id == 0 ? 64 + x->hdr[1] : id == 1 ? 64 + x->hdr[1] + 256 * x->hdr[2] : id;
        csid_t *c = &x->cs[csid];
        const unsigned char *m = x->hdr + basic;
        int start = c->remaining == 0; /* this chunk begins a message */
        if (fmt <= 2) {
            uint32_t t = (uint32_t)m[0] << 16 | m[1] << 8 | m[2];
            c->ext = t == 0xffffff;
            if (c->ext) {
                const unsigned char *e = m + (fmt == 0 ? 11 : fmt == 1 ? 7 : 3);
                t = (uint32_t)e[0] << 24 | e[1] << 16 | e[2] << 8 | e[3];
            }
            if (fmt == 0) c->timestamp = t, c->delta = 0;
            else c->delta = t, c->timestamp += t;
            if (fmt <= 1) {
                c->length = (uint32_t)m[3] << 16 | m[4] << 8 | m[5];
                c->type = m[6];
            }
        } else if (start) {
            c->timestamp += c->delta; /* RTMP 5.3.1.2.4: a new message with the last delta */
        }
        if (!start && fmt != 3) return -1; /* a new header in the middle of a message */
        if (start) {
            c->remaining = c->length;
            c->head_len = 0;
            if (c->type == 20) x->cmd_len = 0;
            if (c->length == 0) { rtmp_message_done(x, c); x->hdr_len = 0; continue; }
        }
        x->csid = csid;
        x->chunk_left = c->remaining < x->chunk_size ? c->remaining : x->chunk_size;
        x->hdr_len = 0;
    }
    return 0;
}

/* How long a slot waits after its `attempt`-th refusal in a row. */
static int64_t refusal_delay_ms(int attempt, int64_t retry_after_ms) {
    double r = rand() / (double)RAND_MAX;
    if (retry_after_ms > 0) return retry_after_ms + (int64_t)(retry_after_ms * RETRY_AFTER_JITTER * r);
    int64_t ceiling = BACKOFF_FIRST_MS;
    for (int i = 1; i < attempt && ceiling < backoff_max_ms; i++) ceiling *= 2;
    if (ceiling > backoff_max_ms) ceiling = backoff_max_ms;
    return ceiling / 2 + (int64_t)(ceiling / 2 * r); /* at least half the step */
}

static void finish_session(viewer_t *x, int by_us) {
    if (x->state == ST_IDLE) return;
    if (x->refused) {
        /* Not a session: the slot backs off and tries again. */
        refused_total++;
        x->refusals++;
        x->next_open_ms = now_ms() + refusal_delay_ms(x->refusals, x->retry_after_ms);
    } else {
        sessions++;
        if (by_us) ended_by_us++;
        else cut_by_server++;
        if (x->video == 0) never_played++;
        else x->refusals = 0;
        if (x->parse_error) parse_errors++;
    }
    if (x->gaps) sessions_with_gaps++;
    video_total += x->video;
    audio_total += x->audio;
    gaps_total += (uint64_t)x->gaps;
    if (x->fd >= 0) close(x->fd);
    free(x->s012);
    free(x->cs);
    x->s012 = NULL;
    x->cs = NULL;
    x->fd = -1;
    x->state = ST_IDLE;
}

static void print_stats(const viewer_t *v, int n) {
    uint64_t open = 0, open_video = 0, open_gaps = 0;
    for (int i = 0; i < n; i++) {
        if (v[i].state == ST_IDLE) continue;
        open++;
        open_video += v[i].video;
        open_gaps += (uint64_t)v[i].gaps;
    }
    printf("STATS {\"sessions\": %llu, \"ended_by_us\": %llu, \"cut_by_server\": %llu, \"never_played\": %llu, "
           "\"refused\": %llu, \"failed_open\": %llu, \"sessions_with_gaps\": %llu, \"parse_errors\": %llu, "
           "\"video_frames\": %llu, \"audio_frames\": %llu, \"gaps\": %llu, \"worst_step_ms\": %llu, "
           "\"open\": %llu, \"open_video\": %llu, \"open_gaps\": %llu}\n",
           (unsigned long long)sessions, (unsigned long long)ended_by_us, (unsigned long long)cut_by_server,
           (unsigned long long)never_played, (unsigned long long)refused_total, (unsigned long long)failed_open,
           (unsigned long long)sessions_with_gaps, (unsigned long long)parse_errors, (unsigned long long)video_total,
           (unsigned long long)audio_total, (unsigned long long)gaps_total, (unsigned long long)worst_step,
           (unsigned long long)open, (unsigned long long)open_video, (unsigned long long)open_gaps);
    fflush(stdout);
}

static volatile sig_atomic_t stopping;
static void on_term(int sig) { (void)sig; stopping = 1; }

int main(int argc, char **argv) {
    const char *mode = "rtmp", *blob_dir = NULL, *host = "127.0.0.1";
    int port = 0, n = 0, streams = 1, connect_rate = 200, poll_ms = 10;
    double min_life = 20, max_life = 120, duration = 60, report = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--mode")) mode = v;
        else if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--n")) n = atoi(v);
        else if (!strcmp(k, "--streams")) streams = atoi(v);
        else if (!strcmp(k, "--blobs")) blob_dir = v;
        else if (!strcmp(k, "--min-life")) min_life = atof(v);
        else if (!strcmp(k, "--max-life")) max_life = atof(v);
        else if (!strcmp(k, "--duration")) duration = atof(v);
        else if (!strcmp(k, "--report")) report = atof(v);
        else if (!strcmp(k, "--max-step-ms")) max_step_ms = atoll(v);
        else if (!strcmp(k, "--connect-rate")) connect_rate = atoi(v);
        else if (!strcmp(k, "--poll-ms")) poll_ms = atoi(v);
        else if (!strcmp(k, "--backoff-max-s")) backoff_max_ms = (int64_t)(atof(v) * 1000);
        else { fprintf(stderr, "unknown option %s\n", k); return 2; }
    }
    rtmp_mode = !strcmp(mode, "rtmp");
    if (!blob_dir || port <= 0 || n <= 0 || streams <= 0 || streams > MAX_STREAMS || max_life < min_life) {
        fprintf(stderr, "usage: viewers --mode rtmp|flv --port P --n N --streams S --blobs DIR "
                        "[--min-life S] [--max-life S] [--duration S] [--report S] [--max-step-ms MS] [--backoff-max-s S]\n");
        return 2;
    }
    raise_fd_limit();
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);

    unsigned char *blobs[MAX_STREAMS];
    size_t blob_lens[MAX_STREAMS];
    for (int s = 0; s < streams; s++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/blob-%d", blob_dir, s);
        blobs[s] = read_file(path, &blob_lens[s]);
    }
    unsigned char c0c1[1 + HANDSHAKE_BYTES];
    rtmp_c0c1(c0c1, 12345 + rtmp_mode); /* also seeds the session lives below */

    static unsigned char buf[READ_BUFFER_BYTES];
    viewer_t *v = calloc(n, sizeof *v);
    for (int i = 0; i < n; i++) v[i].fd = -1, v[i].state = ST_IDLE, v[i].stream = i % streams;
    int ep = epoll_create1(0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    static struct epoll_event events[MAX_EVENTS];

    int64_t t0 = now_ms(), end = t0 + (int64_t)(duration * 1000), next_report = t0 + (int64_t)(report * 1000);
    int64_t last_wait = 0;
    int started = 0; /* slots opened at least once (the first ones at --connect-rate) */
    while (!stopping) {
        int64_t now = now_ms();
        if (now >= end) break;
        int due = (int)((now - t0) * (int64_t)connect_rate / 1000) + 1;
        if (due > n) due = n;
        for (int i = 0; i < n; i++) {
            viewer_t *x = &v[i];
            if (x->state != ST_IDLE && now >= x->end_ms) finish_session(x, 1);
            if (x->state != ST_IDLE || now < x->next_open_ms) continue;
            if (i >= started) {
                if (started >= due) continue;
                started = i + 1;
            }
            memset((char *)x + offsetof(viewer_t, s012), 0, sizeof *x - offsetof(viewer_t, s012));
            x->opened_ms = now;
            x->last_video_ts = -1;
            double life = min_life + (max_life - min_life) * (rand() / (double)RAND_MAX);
            x->end_ms = now + (int64_t)(life * 1000);
            x->fd = connect_nonblocking(&addr);
            if (x->fd < 0) { failed_open++; continue; }
            x->state = ST_CONNECTING;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, x->fd, &ev);
        }
        if (now >= next_report) {
            print_stats(v, n);
            next_report += (int64_t)(report * 1000);
        }
        int k = epoll_turn(ep, events, MAX_EVENTS, poll_ms, &last_wait);
        now = now_ms();
        for (int e = 0; e < k; e++) {
            viewer_t *x = &v[events[e].data.u32];
            if (x->state == ST_IDLE) continue;
            uint32_t what = events[e].events;
            if (x->state == ST_CONNECTING) {
                if (what & (EPOLLERR | EPOLLHUP)) { failed_open++; x->state = ST_STREAMING; goto cut; }
                if (!(what & EPOLLOUT)) continue;
                if (rtmp_mode) {
                    if (send_opening(ep, x->fd, events[e].data.u32, c0c1, sizeof c0c1)) goto cut;
                    x->s012 = malloc(S0S1S2_BYTES);
                    x->state = ST_HANDSHAKE;
                } else {
                    if (send_opening(ep, x->fd, events[e].data.u32, blobs[x->stream], blob_lens[x->stream])) goto cut;
                    x->state = ST_STREAMING;
                    x->hdr_need = -1;
                }
                continue;
            }
            for (;;) {
                ssize_t got;
                if (x->state == ST_HANDSHAKE) got = recv(x->fd, x->s012 + x->s012_len, S0S1S2_BYTES - x->s012_len, 0);
                else got = recv(x->fd, buf, sizeof buf, 0);
                if (got == 0) goto cut;
                if (got < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                    if (errno == EINTR) continue;
                    goto cut;
                }
                x->last_data_ms = now;
                if (x->state == ST_HANDSHAKE) {
                    x->total_in += (uint64_t)got;
                    int done = rtmp_handshake_read(x->fd, &x->s012, &x->s012_len, got, blobs[x->stream], blob_lens[x->stream]);
                    if (done < 0) goto cut;
                    if (done) {
                        x->state = ST_STREAMING;
                        x->chunk_size = 128;
                        x->cs = calloc(MAX_CSID, sizeof *x->cs);
                    }
                    continue;
                }
                int bad;
                if (rtmp_mode) {
                    rtmp_count_and_ack(x->fd, &x->total_in, &x->acked, got);
                    bad = feed_rtmp(x, buf, (size_t)got);
                } else {
                    bad = feed_flv(x, buf, (size_t)got);
                }
                if (bad) { x->parse_error = 1; goto cut; }
                if (got < (ssize_t)sizeof buf) break;
            }
            continue;
        cut:
            epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
            finish_session(x, 0);
        }
    }
    /* Sessions still open at the end: counted as ended by us. */
    for (int i = 0; i < n; i++) finish_session(&v[i], 1);
    print_stats(v, n);
    return 0;
}
