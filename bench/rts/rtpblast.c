/* A stand-in server for measuring the light viewer generator's own limit
 * (bench/rts/run.py --parts generator): it sends a 30 fps video stream of
 * --bitrate bits a second as RTP (payload type 96, --packet-bytes
 * packets, the marker bit on each frame's last) and 50 Opus-sized packets
 * a second (payload type 111) to every connected UDP socket it is handed,
 * one sendmmsg a socket a frame. No SRTP, no ICE: the generator counts
 * RTP by its clear header anyway, and what is measured is its side.
 *
 * Control messages on --control-fd (one per datagram):
 *   "S" + one fd     a connected socket to send to
 *   "G"              start sending
 * It exits when every writer of the control socket has gone, or after
 * --seconds of sending; then it prints {"cpu": %, "packets": n}.
 *
 *   cc -O2 -Wall -o rtpblast rtpblast.c
 */
#define _GNU_SOURCE
#include "../common.h"

#include <poll.h>

#define FPS 30
#define AUDIO_EVERY_MS 20
#define MAX_PACKETS 64

static void rtp_header(unsigned char *p, int pt, int marker, uint16_t seq, uint32_t ts) {
    p[0] = 0x80;
    p[1] = (unsigned char)(pt | (marker ? 0x80 : 0));
    p[2] = seq >> 8, p[3] = seq & 0xFF;
    p[4] = ts >> 24, p[5] = ts >> 16, p[6] = ts >> 8, p[7] = ts & 0xFF;
    p[8] = 0x12, p[9] = 0x34, p[10] = 0x56, p[11] = pt;
}

int main(int argc, char **argv) {
    int control = -1, packet_bytes = 1200;
    double bitrate = 2e6, seconds = 600;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--control-fd")) control = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--bitrate")) bitrate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--packet-bytes")) packet_bytes = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else { fprintf(stderr, "rtpblast: unknown option %s\n", argv[i]); return 2; }
    }
    if (control < 0 || packet_bytes < 12 || packet_bytes > 1500) {
        fprintf(stderr, "usage: rtpblast --control-fd N [--bitrate 2e6] [--packet-bytes 1200] [--seconds 600]\n");
        return 2;
    }
    raise_fd_limit();
    int per_frame = (int)(bitrate / 8 / FPS / packet_bytes + 0.5);
    if (per_frame < 1) per_frame = 1;
    if (per_frame > MAX_PACKETS) per_frame = MAX_PACKETS;
    int *fds = NULL;
    size_t n = 0, cap = 0;
    for (int started = 0; !started;) {
        char msg[16], cbuf[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {msg, sizeof msg};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
        ssize_t got = recvmsg(control, &mh, MSG_CMSG_CLOEXEC);
        if (got <= 0) return 0;
        if (msg[0] == 'G') { started = 1; continue; }
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        if (msg[0] != 'S' || !c || c->cmsg_type != SCM_RIGHTS) continue;
        if (n == cap) fds = realloc(fds, (cap = cap ? cap * 2 : 1024) * sizeof *fds);
        memcpy(&fds[n++], CMSG_DATA(c), sizeof(int));
    }
    static unsigned char packets[MAX_PACKETS][1500], audio[100];
    struct iovec iovs[MAX_PACKETS];
    struct mmsghdr msgs[MAX_PACKETS];
    for (int i = 0; i < per_frame; i++) {
        memset(packets[i], 0xAB, sizeof packets[i]);
        iovs[i] = (struct iovec){packets[i], (size_t)packet_bytes};
        msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iovs[i], .msg_iovlen = 1};
    }
    uint16_t seq = 0, audio_seq = 0;
    uint64_t sent = 0;
    int64_t began = now_ms(), next_frame = began, next_audio = began;
    struct rusage r0;
    getrusage(RUSAGE_SELF, &r0);
    struct pollfd pfd = {.fd = control, .events = POLLIN};
    while (now_ms() - began < seconds * 1000) {
        int64_t now = now_ms();
        if (now >= next_frame) {
            uint32_t ts = (uint32_t)((next_frame - began) * 90);
            for (int i = 0; i < per_frame; i++) rtp_header(packets[i], 96, i == per_frame - 1, seq + i, ts);
            seq += per_frame;
            for (size_t k = 0; k < n; k++) {
                int done = sendmmsg(fds[k], msgs, per_frame, MSG_DONTWAIT);
                if (done > 0) sent += done;
            }
            next_frame += 1000 / FPS + (seq / per_frame % 3 == 0); /* 33, 33, 34 ms */
        }
        if (now >= next_audio) {
            rtp_header(audio, 111, 1, audio_seq++, (uint32_t)((next_audio - began) * 48));
            for (size_t k = 0; k < n; k++)
                if (send(fds[k], audio, sizeof audio, MSG_DONTWAIT) > 0) sent++;
            next_audio += AUDIO_EVERY_MS;
        }
        int64_t wait = (next_frame < next_audio ? next_frame : next_audio) - now_ms();
        if (poll(&pfd, 1, wait > 0 ? (int)wait : 0) > 0) {
            char msg[16];
            if (recv(control, msg, sizeof msg, MSG_DONTWAIT) == 0) break; /* every writer has gone */
        }
    }
    struct rusage r1;
    getrusage(RUSAGE_SELF, &r1);
    double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
                 (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    printf("{\"cpu\": %.1f, \"packets\": %lu, \"sockets\": %zu}\n", 100 * cpu / ((now_ms() - began) / 1000.0),
           (unsigned long)sent, n);
    return 0;
}
