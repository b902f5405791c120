// Exercises open(O_CREAT|O_TRUNC|O_RDWR), write, lseek, read, pread, close, unlink.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long sum(const char *p, ssize_t n, unsigned long h)
{
    for (ssize_t i = 0; i < n; i++)
        h = h * 31 + (unsigned char)p[i];
    return h;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[4096], line[64], buf[256];
    snprintf(path, sizeof path, "%s/rrv_fileio_%d.txt", dir, (int)getpid());
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0) { perror("open"); return 1; }
    long total = 0;
    for (int i = 0; i < 100; i++) {
        int n = snprintf(line, sizeof line, "line %03d: the quick brown fox\n", i);
        if (write(fd, line, n) != n) { perror("write"); return 1; }
        total += n;
    }
    printf("wrote %ld bytes\n", total);
    unsigned long h = 0;
    off_t offs[] = { 0, 17, 1000, 2500, total - 50 };
    for (unsigned i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        if (lseek(fd, offs[i], SEEK_SET) != offs[i]) { perror("lseek"); return 1; }
        ssize_t n = read(fd, buf, 100);
        if (n < 0) { perror("read"); return 1; }
        printf("read @%ld: %zd bytes\n", (long)offs[i], n);
        h = sum(buf, n, h);
    }
    for (off_t off = 0; off < total; off += 333) {
        ssize_t n = pread(fd, buf, sizeof buf, off);
        if (n < 0) { perror("pread"); return 1; }
        h = sum(buf, n, h);
    }
    off_t end = lseek(fd, 0, SEEK_END);
    printf("end offset %ld\n", (long)end);
    printf("checksum %016lx\n", h);
    close(fd);
    if (unlink(path) != 0) { perror("unlink"); return 1; }
    printf("done\n");
    return 0;
}
