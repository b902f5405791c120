// Exercises mkdir, stat/lstat/fstat, opendir/readdir (getdents64), unlink, rmdir.
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : "/tmp";
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/rrv_statdir_%d", base, (int)getpid());
    if (mkdir(dir, 0755) != 0) { perror("mkdir"); return 1; }
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/file%d", dir, 4 - i);
        int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd < 0) { perror("open"); return 1; }
        char data[512];
        memset(data, 'a' + i, sizeof data);
        if (write(fd, data, 100 * (i + 1)) != 100 * (i + 1)) { perror("write"); return 1; }
        struct stat fs, ss, ls;
        if (fstat(fd, &fs) || stat(path, &ss) || lstat(path, &ls)) { perror("stat"); return 1; }
        if (fs.st_size != ss.st_size || ss.st_size != ls.st_size || fs.st_ino != ss.st_ino)
            printf("stat mismatch for file%d\n", 4 - i);
        close(fd);
    }
    DIR *d = opendir(dir);
    if (!d) { perror("opendir"); return 1; }
    char *names[16];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n < 16)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp);
    printf("%d entries\n", n);
    for (int i = 0; i < n; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (lstat(path, &st) != 0) { perror("lstat"); return 1; }
        printf("%s %ld %s\n", names[i], (long)st.st_size, S_ISREG(st.st_mode) ? "reg" : "other");
        if (unlink(path) != 0) { perror("unlink"); return 1; }
        free(names[i]);
    }
    if (rmdir(dir) != 0) { perror("rmdir"); return 1; }
    printf("removed\n");
    return 0;
}
