// Microbenchmark tracee: many cheap syscalls (getppid) and small reads from /dev/zero.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long ncalls = argc > 1 ? atol(argv[1]) : 200000;
    long nreads = argc > 2 ? atol(argv[2]) : 50000;
    char buf[64];
    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) { perror("open /dev/zero"); return 1; }
    for (long i = 0; i < ncalls; i++)
        syscall(SYS_getppid);
    for (long i = 0; i < nreads; i++)
        if (read(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror("read"); return 1; }
    close(fd);
    printf("done\n");
    return 0;
}
