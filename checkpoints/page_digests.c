/* The names of memory pages (checkpoints/pages.py): SHA-256 of the 4096 bytes, truncated to
 * 16 bytes, by OpenSSL's libcrypto (the same SHA-256 hashlib uses; SHA-NI where the CPU has it).
 * An all-zero page is named by 16 zero bytes and not hashed.
 *
 * A checkpoint names every page of a process. Hashed one call per page from Python, the
 * thread finishing checkpoints held the GIL between pages and took it from the tracer's
 * thread thousands of times a second; here a whole run of pages is one call, made with the
 * GIL released. */
#include <openssl/evp.h>
#include <pthread.h>

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

static int all_zero(const uint8_t *page) {
  uint64_t acc = 0;
  for (size_t i = 0; i < 4096; i += 8) {
    uint64_t w;
    memcpy(&w, page + i, 8);
    acc |= w;
  }
  return acc == 0;
}

/* out32 = the SHA-256 of len bytes of data. Returns 0, or -1 if libcrypto failed. */
static int sha256_into(EVP_MD_CTX *ctx, const uint8_t *data, size_t len, uint8_t *out32) {
  unsigned out_len;
  return EVP_DigestInit_ex2(ctx, sha256_md, NULL) == 1 && EVP_DigestUpdate(ctx, data, len) == 1 &&
                 EVP_DigestFinal_ex(ctx, out32, &out_len) == 1
             ? 0
             : -1;
}

/* out[16 * k] = the name of page which[k] of data (page k if which is NULL), for k < n.
 * Returns 0, or -1 if libcrypto failed. */
int rrv_page_digests(const uint8_t *data, const uint32_t *which, size_t n, uint8_t *out) {
  pthread_once(&sha256_once, fetch_sha256);
  if (!sha256_md) return -1;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) return -1;
  int rc = 0;
  for (size_t k = 0; k < n && rc == 0; k++) {
    const uint8_t *page = data + (size_t)(which ? which[k] : k) * 4096;
    uint8_t full[32];
    if (all_zero(page)) {
      memset(out + 16 * k, 0, 16);
      continue;
    }
    rc = sha256_into(ctx, page, 4096, full);
    if (rc == 0) memcpy(out + 16 * k, full, 16);
  }
  EVP_MD_CTX_free(ctx);
  return rc;
}
