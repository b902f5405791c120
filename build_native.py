"""Build rrverify's native core with cffi (run by `pip install`, via setup.py's cffi_modules).

One extension, rrverify._native, compiled as a single translation unit: the shared tracee
helpers, the recorder loop and the replayer loop, plus the syscall table generated from
recorder/syscalls.py. rrverify/native/rrv.h is both the cdef and the C header.
"""
import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _syscall_table_source() -> str:
    # Import the table module by path: the package may not be installed yet at build time.
    import importlib.util
    import types

    pkg = types.ModuleType("rrverify")
    pkg.__path__ = []
    sys.modules.setdefault("rrverify", pkg)
    rec = types.ModuleType("rrverify.recorder")
    rec.__path__ = [os.path.join(HERE, "recorder")]
    sys.modules.setdefault("rrverify.recorder", rec)
    for name in ("syscalls", "gen_syscalls"):
        spec = importlib.util.spec_from_file_location(
            f"rrverify.recorder.{name}", os.path.join(HERE, "recorder", f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return sys.modules["rrverify.recorder.gen_syscalls"].generate()


def _read(*parts) -> str:
    with open(os.path.join(HERE, *parts)) as f:
        return f.read()


ffibuilder = FFI()
ffibuilder.cdef(_read("rrverify", "native", "rrv.h") + """
extern "Python+C" int rrv_py_blob_put(void *, const uint8_t *, size_t, uint8_t *);
extern "Python+C" int rrv_py_blob_get(void *, const uint8_t *, const uint8_t **, size_t *);
extern "Python+C" int rrv_py_file_mapped(void *, int, int, uint64_t, uint64_t, uint64_t *);
extern "Python+C" int rrv_py_file_fd(void *, uint64_t, uint64_t, uint64_t, uint64_t,
                                     int64_t *);
""")
ffibuilder.set_source(
    "rrverify._native",
    "#ifndef _GNU_SOURCE\n#define _GNU_SOURCE\n#endif\n#include <stdarg.h>\n#include <stdint.h>\n#include <sys/mman.h>\n"
    + _syscall_table_source()
    + '#include "tracee.c"\n#include "syscallbuf.c"\n#include "program_filter.c"\n#include "shared_memory.c"\n#include "recorder.c"\n#include "page_digests.c"\n#include "blob_files.c"\n#include "unchanged_pages.c"\n#include "memory_reader.c"\n'
      '#include "replayer.c"\n',
    include_dirs=[os.path.join(HERE, d) for d in ("rrverify/native", "recorder", "replayer", "checkpoints")],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function", "-std=gnu11"],
    libraries=["crypto"],     # OpenSSL's SHA-256: page names (checkpoints/page_digests.c)
    depends=[os.path.join(HERE, p) for p in (
        "rrverify/native/rrv.h", "rrverify/native/internal.h", "rrverify/native/tracee.c",
        "rrverify/native/syscallbuf.c", "rrverify/native/blob_files.c",
        "recorder/recorder.c", "recorder/program_filter.c", "checkpoints/page_digests.c", "checkpoints/unchanged_pages.c", "checkpoints/memory_reader.c", "recorder/shared_memory.c", "replayer/replayer.c",
        "recorder/syscalls.py")],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, "build", "cffi"), verbose=True)
