// Exercises socketpair + send/sendmsg/recv/recvmsg, and a UDP loopback socket (bind/getsockname/sendto/recvfrom).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int main(void)
{
    int sv[2];
    char buf[128];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) { perror("socketpair"); return 1; }
    const char *m1 = "plain send";
    if (send(sv[0], m1, strlen(m1), 0) != (ssize_t)strlen(m1)) { perror("send"); return 1; }
    ssize_t n = recv(sv[1], buf, sizeof buf - 1, 0);
    if (n < 0) { perror("recv"); return 1; }
    buf[n] = 0;
    printf("recv %zd: '%s'\n", n, buf);
    char a[] = "sendmsg part one, ", b[] = "part two";
    struct iovec iov[2] = { { a, strlen(a) }, { b, strlen(b) } };
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
    if (sendmsg(sv[1], &mh, 0) < 0) { perror("sendmsg"); return 1; }
    char r1[10], r2[64];
    memset(r2, 0, sizeof r2);
    struct iovec riov[2] = { { r1, sizeof r1 }, { r2, sizeof r2 - 1 } };
    struct msghdr rmh = { .msg_iov = riov, .msg_iovlen = 2 };
    n = recvmsg(sv[0], &rmh, 0);
    if (n < 0) { perror("recvmsg"); return 1; }
    printf("recvmsg %zd: '%.10s' + '%s'\n", n, r1, r2);
    close(sv[0]);
    close(sv[1]);

    int u = socket(AF_INET, SOCK_DGRAM, 0);
    if (u < 0) { perror("socket"); return 1; }
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = 0 };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(u, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("bind"); return 1; }
    socklen_t alen = sizeof addr;
    if (getsockname(u, (struct sockaddr *)&addr, &alen) != 0) { perror("getsockname"); return 1; }
    printf("bound port nonzero: %d\n", addr.sin_port != 0);
    const char *dg = "udp datagram to self";
    if (sendto(u, dg, strlen(dg), 0, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("sendto"); return 1; }
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    n = recvfrom(u, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &flen);
    if (n < 0) { perror("recvfrom"); return 1; }
    buf[n] = 0;
    printf("recvfrom %zd: '%s' from %s same-port=%d\n", n, buf, inet_ntoa(from.sin_addr),
           from.sin_port == addr.sin_port);
    close(u);
    return 0;
}
