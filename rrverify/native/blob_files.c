/* Blobs stored many at a time (rrverify/trace.py: TraceWriter.put_blobs): their SHA-256s in
 * one call, which of them the trace lacks in one, and the missing ones written in one.
 *
 * The thread that finishes checkpoints stores a checkpoint's page chunks, its page map and its
 * registers as blobs. Stored one by one, each blob was ten or so system calls from Python, and
 * each gave up the GIL and took it back: the recorder's tracer thread, which needs the GIL at
 * every stop it handles in Python, paid for each hand-over (a wake-up of another CPU). Three
 * calls per checkpoint instead. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* out[32 * i] = the SHA-256 of datas[i] (lens[i] bytes), for i < n. Returns 0, or -1 if
 * libcrypto failed. */
int rrv_sha256_many(const uint8_t *const *datas, const uint64_t *lens, size_t n, uint8_t *out) {
  pthread_once(&sha256_once, fetch_sha256);
  if (!sha256_md) return -1;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) return -1;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) rc = sha256_into(ctx, datas[i], lens[i], out + 32 * i);
  EVP_MD_CTX_free(ctx);
  return rc;
}

/* present[i] = 1 if paths[i] exists, else 0. */
void rrv_files_exist(const char *const *paths, size_t n, uint8_t *present) {
  struct stat st;
  for (size_t i = 0; i < n; i++) present[i] = stat(paths[i], &st) == 0;
}

static int write_whole(int fd, const uint8_t *data, uint64_t len) {
  while (len) {
    ssize_t w = write(fd, data, len > (1u << 30) ? (1u << 30) : len);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    data += w;
    len -= (uint64_t)w;
  }
  return 0;
}

/* Write datas[i] to paths[i], each whole or not at all: into a temporary file of this thread's
 * beside it, then renamed (two threads storing the same blob each write their own); a missing
 * parent directory is made. Returns 0, or -errno of the first failure (the failed blob's
 * temporary file removed; the blobs before it written). */
int rrv_write_files(const char *const *paths, const uint8_t *const *datas, const uint64_t *lens,
                    size_t n) {
  for (size_t i = 0; i < n; i++) {
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", paths[i], (int)gettid()) >= (int)sizeof tmp)
      return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
      snprintf(dir, sizeof dir, "%s", paths[i]);
      char *slash = strrchr(dir, '/');
      if (slash) {
        *slash = 0;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) return -errno;
      }
      fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (fd < 0) return -errno;
    int failed = write_whole(fd, datas[i], lens[i]) < 0 ? errno : 0;
    if (close(fd) < 0 && !failed) failed = errno;
    if (!failed && rename(tmp, paths[i]) < 0) failed = errno;
    if (failed) {
      unlink(tmp);
      return -failed;
    }
  }
  return 0;
}
