"""The trace's one hash: SHA-256, OpenSSL's (hashlib here, libcrypto in the native core,
checkpoints/page_digests.c), which uses the CPU's SHA instructions where it has them: on this
project's machines 1.8 times BLAKE2b's speed. Blobs, files and the integrity records are named
by all 32 bytes; event frames and memory pages by the first 16."""
from __future__ import annotations

import hashlib


def digest(data) -> bytes:
    return hashlib.sha256(data).digest()


def hex_digest(data) -> str:
    return hashlib.sha256(data).hexdigest()


def short_digest(data) -> bytes:
    return hashlib.sha256(data).digest()[:16]


def content_check(data, sha256_hex: str) -> str:
    """Not a name: a fast 64-bit digest of data (16 hex digits), seeded by (a fast digest of)
    the whole SHA-256 it is known by, that a later recording checks a file's content with
    instead of hashing it again (analysis_cache.KnownFiles): other content, or a digest
    damaged anywhere, fails it. It is no defence against whoever can write the cache."""
    from ._native import ffi, lib
    seed = lib.rrv_fast_digest(ffi.from_buffer(bytes.fromhex(sha256_hex)), 32, 0)
    return f"{lib.rrv_fast_digest(ffi.from_buffer(data), len(data), seed):016x}"
