// Exercises pipe, write/read in one process, dup, dup2, fcntl(F_GETFL/F_SETFL O_NONBLOCK), poll.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    int p[2];
    char msg[64], buf[64];
    if (pipe(p) != 0) { perror("pipe"); return 1; }
    int wfd = dup(p[1]);
    int rfd = dup2(p[0], 20);
    if (wfd < 0 || rfd != 20) { perror("dup"); return 1; }
    int fl = fcntl(rfd, F_GETFL);
    if (fl < 0 || fcntl(rfd, F_SETFL, fl | O_NONBLOCK) != 0) { perror("fcntl"); return 1; }
    printf("nonblock set: %d\n", (fcntl(rfd, F_GETFL) & O_NONBLOCK) != 0);
    struct pollfd pfd = { .fd = rfd, .events = POLLIN };
    printf("poll empty: %d\n", poll(&pfd, 1, 0));
    ssize_t n = read(rfd, buf, sizeof buf);
    printf("read empty: %zd %s\n", n, (n < 0 && errno == EAGAIN) ? "EAGAIN" : "?");
    for (int i = 0; i < 10; i++) {
        memset(msg, 0, sizeof msg);
        snprintf(msg, sizeof msg, "message %d", i);
        if (write(i % 2 ? wfd : p[1], msg, 16) != 16) { perror("write"); return 1; }
    }
    pfd.revents = 0;
    int r = poll(&pfd, 1, 1000);
    printf("poll full: %d revents=%s\n", r, (pfd.revents & POLLIN) ? "POLLIN" : "none");
    for (int i = 0; i < 10; i++) {
        memset(buf, 0, sizeof buf);
        n = read(i % 2 ? rfd : p[0], buf, 16);
        if (n != 16) { printf("short read %zd\n", n); return 1; }
        printf("got '%s'\n", buf);
    }
    close(p[1]);
    close(wfd);
    pfd.revents = 0;
    r = poll(&pfd, 1, 1000);
    printf("poll closed: %d hup=%d\n", r, (pfd.revents & POLLHUP) != 0);
    printf("read eof: %zd\n", read(rfd, buf, sizeof buf));
    close(rfd);
    close(p[0]);
    return 0;
}
