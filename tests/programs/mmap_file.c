// Exercises file-backed mmap (MAP_PRIVATE ro and rw), anonymous mmap, mremap, munmap.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FSZ (64 * 1024)
#define ASZ (1024 * 1024)

static unsigned long sum(const unsigned char *p, size_t n)
{
    unsigned long h = 0;
    for (size_t i = 0; i < n; i++)
        h = h * 31 + p[i];
    return h;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[4096];
    static unsigned char buf[FSZ];
    snprintf(path, sizeof path, "%s/rrv_mmap_%d.bin", dir, (int)getpid());
    for (int i = 0; i < FSZ; i++)
        buf[i] = (unsigned char)(i * 7 + (i >> 8));
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0) { perror("open"); return 1; }
    if (write(fd, buf, FSZ) != FSZ) { perror("write"); return 1; }
    unsigned char *ro = mmap(NULL, FSZ, PROT_READ, MAP_PRIVATE, fd, 0);
    unsigned char *rw = mmap(NULL, FSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (ro == MAP_FAILED || rw == MAP_FAILED) { perror("mmap file"); return 1; }
    printf("file ro checksum %016lx\n", sum(ro, FSZ));
    for (int i = 0; i < FSZ; i += 4096)
        rw[i] ^= 0xff;
    printf("file rw checksum %016lx\n", sum(rw, FSZ));
    printf("file ro after write %016lx\n", sum(ro, FSZ));
    unsigned char *anon = mmap(NULL, ASZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED) { perror("mmap anon"); return 1; }
    for (size_t i = 0; i < ASZ; i += 512)
        anon[i] = (unsigned char)(i >> 9);
    printf("anon checksum %016lx\n", sum(anon, ASZ));
    unsigned char *big = mremap(anon, ASZ, 2 * ASZ, MREMAP_MAYMOVE);
    if (big == MAP_FAILED) { perror("mremap"); return 1; }
    memset(big + ASZ, 0x5a, ASZ);
    printf("remapped checksum %016lx\n", sum(big, 2 * ASZ));
    if (munmap(ro, FSZ) || munmap(rw, FSZ) || munmap(big, 2 * ASZ)) { perror("munmap"); return 1; }
    close(fd);
    if (unlink(path) != 0) { perror("unlink"); return 1; }
    printf("done\n");
    return 0;
}
